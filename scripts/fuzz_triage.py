#!/usr/bin/env python3
"""fuzz_triage.py: sort what a fuzzing campaign found (docs/robustness.md).

    scripts/fuzz_triage.py HARNESS [FILE...]     (default: build/fuzz/findings/HARNESS/*)

Replays each file once through build/fuzz/fuzz_HARNESS, in this process's
environment (so DISTIL_FUZZ_IN_PROCESS=1 replays the drive-log files without
the wall), and prints one line per file: what happened (SEGV, a sanitizer's
report, a timeout, out of memory, or nothing), the first stack frame that is
not the sanitizer's own, and whether that frame is distil's code (a bug to
fix) or a library's (libhdf5's, on a damaged file: what the wall is for).
For drive-log files it also prints the offsets where the file differs from
DISTIL_FUZZ_SHARD (the seed). Exits 1 when a finding points into distil.
"""
import glob
import os
import re
import subprocess
import sys

FUZZ = "build/fuzz"


def first_frame(report):
    """The first frame of the first stack in a sanitizer report that is not an interceptor."""
    for line in report.splitlines():
        m = re.match(r"\s+#\d+ 0x[0-9a-f]+ in (\S+) (\S+)", line) or re.match(r"\s+#\d+ 0x[0-9a-f]+ +\((\S+)\+", line)
        if not m:
            continue
        if len(m.groups()) == 2:
            func, where = m.group(1), m.group(2)
        else:
            func, where = "?", m.group(1)
        if func.startswith(("__asan", "__interceptor", "__sanitizer", "__ubsan", "__lsan")) or "compiler-rt" in where:
            continue
        if func in ("malloc", "calloc", "realloc", "free", "memcpy", "memmove", "memset", "strlen"):
            continue
        return func, where
    return None, None


def kind_of(report, rc, timed_out):
    if timed_out or "ERROR: libFuzzer: timeout" in report:
        return "timeout"
    if "out-of-memory" in report or "allocation-size-too-big" in report or "requested allocation size" in report:
        return "out of memory"
    m = re.search(r"ERROR: (?:AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer): ([\w-]+)", report)
    if m:
        return m.group(1)
    if "runtime error:" in report:
        return "undefined behaviour"
    if "deadly signal" in report:
        return "signal"
    return "nothing" if rc == 0 else f"exit {rc}"


def diff_offsets(path, seed):
    a, b = open(path, "rb").read(), open(seed, "rb").read()
    offs = [i for i in range(min(len(a), len(b))) if a[i] != b[i]]
    extra = "" if len(a) == len(b) else f" (size {len(a)}, seed {len(b)})"
    return (",".join(map(str, offs[:4])) + ("..." if len(offs) > 4 else "")) + extra


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    harness = sys.argv[1]
    files = sys.argv[2:] or sorted(glob.glob(f"{FUZZ}/findings/{harness}/*"))
    binary = f"{FUZZ}/fuzz_{harness}"
    seed = os.environ.get("DISTIL_FUZZ_SHARD")
    env = dict(os.environ, ASAN_OPTIONS="fast_unwind_on_malloc=0:" + os.environ.get("ASAN_OPTIONS", ""))
    ours = 0
    for path in files:
        timed_out = False
        try:
            r = subprocess.run([binary, "-timeout=20", "-rss_limit_mb=3072", "-malloc_limit_mb=3072", path],
                               capture_output=True, text=True, timeout=120, env=env)
            report, rc = r.stdout + r.stderr, r.returncode
        except subprocess.TimeoutExpired as e:
            report, rc, timed_out = (e.stdout or b"").decode() + (e.stderr or b"").decode(), -1, True
        kind = kind_of(report, rc, timed_out)
        func, where = first_frame(report)
        if kind in ("nothing", "timeout", "out of memory") or not func and not where:
            owner = "-"
        else:
            owner = "distil" if where and re.search(r"/(data|train|autograd|kernels|fuzz)/", where) else "library"
        ours += owner == "distil"
        damage = f"  bytes {diff_offsets(path, seed)}" if seed and harness.startswith("drivelog_file") else ""
        print(f"{os.path.basename(path)}  {kind}  {owner}  {func or ''} {os.path.basename(where or '')}{damage}")
    return 1 if ours else 0


if __name__ == "__main__":
    sys.exit(main())
