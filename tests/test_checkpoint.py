#!/usr/bin/env python3
"""test_checkpoint.py: checkpoints and resume, end to end through `distil train`.

- An interrupted run resumed (after a clean --max-steps stop, and after a real
  kill -9) ends byte-identical to an uninterrupted one: model.safetensors,
  state.bin, eval.json, and metrics.jsonl but for its wall-clock field.
- A run stopped with one OpenMP thread and resumed with two: byte-identical
  where the startup line says the products give the same bits for any
  thread count (the AVX-512 kernels), else the resume says it will not be.
- kill -9 at random instants, 20 times in a row, with a checkpoint every step:
  `latest` always names a complete checkpoint that a resume loads and trains on.
- keep_checkpoints prunes to the newest N (0 keeps all), and leaves no
  temporary directories behind; a save removes only its own process's
  temporaries, the next run into the directory sweeps a killed one's.
- SIGTERM at a random step: exit 143, the checkpoint of that step, and the
  resumed run ends byte-identical to an uninterrupted one; a second SIGINT
  aborts at once.
- One writer per run directory: a second `distil train` on the same --out
  exits 2 naming the first's pid and host, and the first ends untouched; the
  lock of a killed run does not stop its resume.
- state.bin is laid out as docs/checkpoints.md says (read here by an
  independent parser).
- Every bad checkpoint (truncated, flipped bytes, another format version,
  missing files, another recipe) is exit status 2 and one error line.

Run from the repository root with DISTIL=<distil binary>; prints
"TESTS p passed, f failed, s skipped" last.
"""
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import tiny_recipe  # noqa: E402  (tests/harness.py)

DISTIL = os.path.abspath(os.environ.get("DISTIL", "build/cpu/distil"))
# Bit-exact resume across thread counts holds only where the products' sums
# do not depend on the count (test_resume_with_other_thread_count), so every
# other run here uses the same one.
ENV = dict(os.environ, OMP_NUM_THREADS="2")
# Sanitizer builds run several times slower.
SLOW = 3.0 if "/san" in DISTIL else 1.0

passed = failed = skipped = 0


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def run_test(fn):
    global passed, failed
    t0 = time.time()
    try:
        fn()
        passed += 1
        print(f"ok   {fn.__name__} ({time.time() - t0:.1f} s)", flush=True)
    except Failure as e:
        failed += 1
        print(f"FAIL {fn.__name__}: {e}", flush=True)


# ---- the fleet, the recipe, running distil -------------------------------------

TMP = tempfile.mkdtemp(prefix="distil_test_checkpoint_")



def setup():
    subprocess.run([DISTIL, "logs", "synth", "--out", f"{TMP}/fleet", "--preset", "demo", "--shards", "2",
                    "--samples-per-shard", "64", "--seed", "5", "--eval-shards", "1",
                    "--eval-samples-per-shard", "16"], check=True, stdout=subprocess.DEVNULL, env=ENV)
    tiny_recipe(f"{TMP}/tiny.yaml", f"{TMP}/fleet", train__micro_batch=4, train__warmup_steps=2, train__eval_every=2,
                train__eval_samples=8, train__checkpoint_every=4, train__keep_checkpoints=3, train__log_every=100)


def train(out, *args, expect=0, env=None):
    """Run distil train on the tiny recipe into run directory `out`."""
    cmd = [DISTIL, "train", f"{TMP}/tiny.yaml", "--out", out, *args]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env or ENV, timeout=120 * SLOW)
    if expect is not None and p.returncode != expect:
        raise Failure(f"{' '.join(cmd[1:])}: exit {p.returncode}, expected {expect}; stderr: {p.stderr.strip()[-600:]}")
    return p


def read(path, mode="rb"):
    with open(path, mode) as f:
        return f.read()


def metrics_without_clock(run):
    """metrics.jsonl's objects without the wall-clock field."""
    lines = []
    for line in read(f"{run}/metrics.jsonl", "r").splitlines():
        obj = json.loads(line)
        obj.pop("samples_per_s", None)
        lines.append(obj)
    return lines


def latest(run):
    return os.path.join(run, "checkpoints", os.readlink(f"{run}/checkpoints/latest"))


def assert_same_run(a, b):
    for name in ("model.safetensors", "state.bin", "vocab.json"):
        check(read(f"{latest(a)}/{name}") == read(f"{latest(b)}/{name}"),
              f"{name} differs between {latest(a)} and {latest(b)}")
    check(os.path.basename(latest(a)) == os.path.basename(latest(b)), "latest names different steps")
    ma, mb = metrics_without_clock(a), metrics_without_clock(b)
    check(len(ma) == len(mb), f"metrics.jsonl: {len(ma)} lines straight, {len(mb)} resumed")
    for i, (x, y) in enumerate(zip(ma, mb)):
        check(x == y, f"metrics.jsonl line {i + 1} differs: {x} vs {y}")
    check(read(f"{a}/eval.json") == read(f"{b}/eval.json"), "eval.json differs")


# ---- state.bin, as docs/checkpoints.md specifies it --------------------------------

# The first 44 bytes: magic, version, payload bytes, compressed bytes, payload
# CRC, two reserved words; then the CRC of those 44 bytes.
HEADER = struct.Struct("<9s3xIQQIII")


class Reader:
    def __init__(self, b):
        self.b, self.at = b, 0

    def take(self, fmt):
        v = struct.unpack_from("<" + fmt, self.b, self.at)
        self.at += struct.calcsize("<" + fmt)
        return v if len(v) > 1 else v[0]


def parse_state(path):
    import zstandard
    raw = read(path)
    magic, version, n, nc, pcrc, _, _ = HEADER.unpack_from(raw, 0)
    (hcrc,) = struct.unpack_from("<I", raw, 44)
    check(magic == b"DSTLSTATE" and version == 1, f"{path}: magic {magic!r} version {version}")
    check(hcrc == zlib.crc32(raw[:44]), "header CRC")
    check(len(raw) == 48 + nc, "file size vs header")
    payload = zstandard.ZstdDecompressor().decompress(raw[48:])
    check(len(payload) == n and zlib.crc32(payload) == pcrc, "payload size or CRC")
    r = Reader(payload)
    s = {}
    for k in ("step", "adam_step", "bad_in_a_row", "bad_total", "loader_epoch", "loader_step"):
        s[k] = r.take("q")
    s["micro_batch"], s["world"], s["threads"] = r.take("III")
    s["seed"] = r.take("Q")
    s["rng"] = r.take("QQQQ")
    s["rng_has_spare"], s["rng_spare"] = r.take("I"), r.take("f")
    s["vocab_mode"], s["vocab_teacher_size"], s["vocab_size"] = r.take("III")
    s["to_teacher"] = list(struct.unpack_from(f"<{s['vocab_size']}i", payload, r.at))
    r.at += 4 * s["vocab_size"]
    s["files"] = [r.take("QI") for _ in range(2)]
    s["params"] = []
    for _ in range(r.take("I")):
        length = r.take("I")
        name = payload[r.at:r.at + length].decode()
        r.at += length
        s["params"].append((name, *r.take("QQ")))
    s["grad_numel"] = r.take("Q")
    s["moments_at"] = r.at
    r.at += 8 * s["grad_numel"]
    check(r.at == len(payload), f"payload: {len(payload) - r.at} bytes unparsed")
    return s, payload


def write_state(path, payload, version=1):
    """A state.bin for payload, with valid checksums, as distil writes one."""
    import zstandard
    frame = zstandard.ZstdCompressor(level=3, write_checksum=True, write_content_size=True).compress(payload)
    head = HEADER.pack(b"DSTLSTATE", version, len(payload), len(frame), zlib.crc32(payload), 0, 0)
    with open(path, "wb") as f:
        f.write(head + struct.pack("<I", zlib.crc32(head)) + frame)


def set_file_sum(payload, index, data):
    """payload with file `index`'s recorded size and CRC set to those of data."""
    s = Reader(payload)
    s.at = 8 * 6 + 4 * 3 + 8 + 32 + 8
    vocab_size = struct.unpack_from("<III", payload, s.at)[2]
    at = s.at + 12 + 4 * vocab_size + 12 * index
    return payload[:at] + struct.pack("<QI", len(data), zlib.crc32(data)) + payload[at + 12:]


# ---- the tests --------------------------------------------------------------------

STRAIGHT = f"{TMP}/straight"


def test_resume_after_clean_stop_is_exact():
    """8 steps straight == 4 steps (--max-steps), resume, 4 more. The resumed
    step (4) is also an eval step, whose line the resume rewrites."""
    train(STRAIGHT, "--max-steps", "8")
    run = f"{TMP}/clean"
    train(run, "--max-steps", "4")
    check(os.readlink(f"{run}/checkpoints/latest") == "step_0000004", "latest after 4 steps")
    p = train(run, "--max-steps", "8", "--resume")
    check("resuming from" in p.stdout and "at step 4" in p.stdout, f"no resume line: {p.stdout[:300]}")
    assert_same_run(STRAIGHT, run)


def test_resume_with_other_thread_count():
    """4 steps on one thread (--max-steps), resumed on two to 8: the same
    bytes as 8 steps on two where the products' sums do not depend on the
    thread count (distil's own reductions never do); where they do
    (OpenBLAS's sgemm), the resume says so in a note."""
    if not os.path.islink(f"{STRAIGHT}/checkpoints/latest"):
        train(STRAIGHT, "--max-steps", "8")
    run = f"{TMP}/threads"
    one = train(run, "--max-steps", "4", env=dict(ENV, OMP_NUM_THREADS="1"))
    line = next((l for l in one.stdout.splitlines() if l.startswith("cpu: ")), "")
    check(line.startswith("cpu: 1 OpenMP thread; matrix products: "), f"no cpu line: {one.stdout[:400]}")
    p = train(run, "--max-steps", "8", "--resume")
    note = "depend on the count" in p.stdout
    if "the same bits for any thread count" in line:
        check(not note, f"a note that the resume is not exact, where it is: {p.stdout[:600]}")
        assert_same_run(STRAIGHT, run)
        print(f"  {line[5:]}: one thread then two == two throughout", flush=True)
    else:
        check("whose sums depend on the thread count" in line, f"the cpu line names no kind of sums: {line}")
        check(note, f"no note that a resume on another thread count is not exact: {p.stdout[:600]}")
        print(f"  {line[5:]}: the resume says so", flush=True)


def test_resume_after_kill_is_exact():
    """The same, but the first run is killed (SIGKILL) just after its step-4
    checkpoint, mid-run: its metrics lines after step 4 are dropped."""
    for attempt in range(3):
        run = f"{TMP}/killed{attempt}"
        cmd = [DISTIL, "train", f"{TMP}/tiny.yaml", "--out", run, "--max-steps", "8"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
        deadline = time.time() + 60 * SLOW
        while proc.poll() is None and time.time() < deadline:
            if os.path.islink(f"{run}/checkpoints/latest"):
                break
            time.sleep(0.002)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.returncode == -signal.SIGKILL and os.readlink(f"{run}/checkpoints/latest") == "step_0000004":
            break
    else:
        raise Failure("could not kill the run between its step-4 checkpoint and its end in 3 tries")
    # The killed run's lock is still on disk, and free: the resume takes it.
    holder = read(f"{run}/train.lock", "r")
    check(holder.startswith(f"pid {proc.pid} on host "), f"train.lock of the killed run says: {holder!r}")
    train(run, "--max-steps", "8", "--resume")
    assert_same_run(STRAIGHT, run)


def complete_checkpoint(path):
    names = sorted(os.listdir(path))
    check(names == ["model.safetensors", "state.bin", "vocab.json"], f"{path} holds {names}")
    parse_state(f"{path}/state.bin")


def test_kill9_at_random_instants():
    """20 times: a run (a checkpoint every step) killed after a random delay;
    then `latest` names a complete checkpoint, and a resume for one more
    step from it succeeds and moves `latest` on."""
    seed = int(os.environ.get("DISTIL_TEST_SEED", time.time()))
    print(f"  kill -9 delays: seed {seed} (replay with DISTIL_TEST_SEED={seed})", flush=True)
    rng = random.Random(seed)
    run = f"{TMP}/kill9"
    sets = ["--set", "train.checkpoint_every=1", "--set", "train.keep_checkpoints=2", "--set", "data.eval=[]",
            "--set", "train.steps=100000", "--set", "train.micro_batch=4", "--set", "train.batch_size=4"]
    # The delays span about three times what a start-up, a step and a save
    # take here, so that most kills land while training, some in start-up.
    t0 = time.time()
    train(run, *sets, "--max-steps", "1")
    span = 3 * (time.time() - t0)
    advanced = partial = 0
    last_step = 1
    for i in range(20):
        cmd = [DISTIL, "train", f"{TMP}/tiny.yaml", "--out", run, *sets, "--resume"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
        time.sleep(rng.uniform(0.0, span))
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
        check(proc.returncode in (-signal.SIGKILL, 0) or not err, f"kill {i}: the run failed before the kill: {err[-400:]}")
        target = os.readlink(f"{run}/checkpoints/latest")
        check(target.startswith("step_") and target[5:].isdigit(), f"kill {i}: latest -> {target}")
        complete_checkpoint(f"{run}/checkpoints/{target}")
        step = int(target[5:])
        leftovers = [n for n in os.listdir(f"{run}/checkpoints") if n.startswith(".")]
        partial += bool(leftovers)
        advanced += step > last_step
        last_step = step
        p = train(run, *sets, "--resume", "--max-steps", str(step + 1))
        check(f"at step {step}" in p.stdout, f"kill {i}: did not resume at step {step}: {p.stdout[:200]}")
        check(os.readlink(f"{run}/checkpoints/latest") == f"step_{step + 1:07d}", f"kill {i}: latest did not advance")
        left = [n for n in os.listdir(f"{run}/checkpoints") if n.startswith(".")]
        check(not left, f"kill {i}: temporary entries left after a clean save: {left}")
        steps = [json.loads(l)["step"] for l in read(f"{run}/metrics.jsonl", "r").splitlines()]
        check(steps == list(range(1, step + 2)), f"kill {i}: metrics.jsonl steps {steps[-5:]}, expected 1..{step + 1}")
        last_step = step + 1
    print(f"  {advanced} of 20 killed runs had checkpointed new steps; {partial} were killed mid-save "
          "(a .tmp or .trash directory left)", flush=True)
    check(advanced >= 3, "fewer than 3 of the kills came after training had started: the delays are too short here")


def test_keep_checkpoints():
    run = f"{TMP}/keep"
    train(run, "--max-steps", "5", "--set", "train.checkpoint_every=1", "--set", "train.keep_checkpoints=2",
          "--set", "data.eval=[]")
    names = sorted(os.listdir(f"{run}/checkpoints"))
    check(names == ["latest", "step_0000004", "step_0000005"], f"keep 2: {names}")
    check(os.readlink(f"{run}/checkpoints/latest") == "step_0000005", "latest")
    run = f"{TMP}/keepall"
    train(run, "--max-steps", "3", "--set", "train.checkpoint_every=1", "--set", "train.keep_checkpoints=0",
          "--set", "data.eval=[]")
    names = sorted(os.listdir(f"{run}/checkpoints"))
    check(names == ["latest", "step_0000001", "step_0000002", "step_0000003"], f"keep 0: {names}")
    # Leftovers of killed saves go when the next run takes the directory; a
    # fresh run into the directory replaces the earlier run's checkpoints
    # (here: step 3).
    os.mkdir(f"{run}/checkpoints/.tmp-step_0000009-1")
    train(run, "--max-steps", "2", "--set", "train.checkpoint_every=1", "--set", "train.keep_checkpoints=0",
          "--set", "data.eval=[]")
    names = sorted(os.listdir(f"{run}/checkpoints"))
    check(names == ["latest", "step_0000001", "step_0000002"], f"after a fresh run: {names}")


def test_saves_leave_other_temporaries():
    """A save removes its own process's leftovers only: a .tmp directory of
    another process that appears during a run survives the run's saves (the
    next run into the directory, holding its lock, sweeps it)."""
    run = f"{TMP}/foreign"
    sets = ["--set", "train.checkpoint_every=1", "--set", "data.eval=[]", "--set", "train.steps=100000"]
    proc = subprocess.Popen([DISTIL, "train", f"{TMP}/tiny.yaml", "--out", run, *sets, "--max-steps", "12"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    foreign = f"{run}/checkpoints/.tmp-step_0000099-1"
    deadline = time.time() + 60 * SLOW
    while proc.poll() is None and time.time() < deadline and not os.path.islink(f"{run}/checkpoints/latest"):
        time.sleep(0.005)
    os.mkdir(foreign)
    seen = os.readlink(f"{run}/checkpoints/latest")
    _, err = proc.communicate()
    check(proc.returncode == 0, f"the run failed: {err[-300:]}")
    check(os.readlink(f"{run}/checkpoints/latest") > seen, "the run saved nothing after the foreign directory appeared")
    check(os.path.isdir(foreign), "a save removed another process's temporary directory")
    train(run, *sets, "--max-steps", "1")
    check(not os.path.exists(foreign), "the next run did not sweep the leftover")


def wait_for_steps(run, n, proc):
    """Until metrics.jsonl holds n step lines (or proc ends)."""
    deadline = time.time() + 120 * SLOW
    while proc.poll() is None and time.time() < deadline:
        try:
            if read(f"{run}/metrics.jsonl", "r").count('"loss"') >= n:
                return
        except FileNotFoundError:
            pass
        time.sleep(0.005)


def test_sigterm_resumes_exactly():
    """SIGTERM after a random number of steps: the run finishes its step,
    writes that step's checkpoint, says where to go on and exits 143; the
    resumed run ends byte-identical to one never stopped."""
    sets = ["--set", "train.steps=24", "--set", "train.eval_every=6", "--set", "train.checkpoint_every=8"]
    straight = f"{TMP}/straight24"
    train(straight, *sets)
    seed = int(os.environ.get("DISTIL_TEST_SEED", time.time()))
    rng = random.Random(seed)
    for attempt in range(3):
        after = rng.randint(2, 16) // (attempt + 1)
        run = f"{TMP}/sigterm{attempt}"
        proc = subprocess.Popen([DISTIL, "train", f"{TMP}/tiny.yaml", "--out", run, *sets], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, env=ENV)
        wait_for_steps(run, after, proc)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate()
        if proc.returncode != 0:
            break
    else:
        raise Failure("three runs ended before the signal reached them")
    print(f"  SIGTERM after {after} steps (seed {seed}): {err.strip().splitlines()[-1].replace(TMP, '$TMP')}", flush=True)
    check(proc.returncode == 128 + signal.SIGTERM, f"exit {proc.returncode}, expected 143: {err[-400:]}")
    last = err.strip().splitlines()[-1]
    m = re.match(r"distil: stopped by SIGTERM after step (\d+) of 24: checkpoint (\S+); go on with: distil train \S+ "
                 r"--out \S+ --resume \(and the same --set options\)$", last)
    check(m, f"not the stop line: {last}")
    step = int(m.group(1))
    check(after <= step <= 24, f"stopped after step {step}, the signal came after step {after}")
    check(m.group(2) == f"{run}/checkpoints/step_{step:07d}" and os.readlink(f"{run}/checkpoints/latest") == f"step_{step:07d}",
          f"the checkpoint: {m.group(2)}, latest -> {os.readlink(f'{run}/checkpoints/latest')}")
    check(read(f"{run}/metrics.jsonl", "r").count('"loss"') == step, "metrics.jsonl: not one line per step done")
    p = train(run, *sets, "--resume")
    check(f"at step {step}" in p.stdout, f"did not resume at step {step}: {p.stdout[:200]}")
    assert_same_run(straight, run)


def test_second_sigint_aborts():
    """Ctrl-C asks for a stop; a second one ends the process at once."""
    run = f"{TMP}/sigint"
    proc = subprocess.Popen([DISTIL, "train", f"{TMP}/tiny.yaml", "--out", run, "--set", "train.steps=100000",
                             "--set", "train.eval_every=0", "--set", "train.checkpoint_every=0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
    wait_for_steps(run, 1, proc)
    proc.send_signal(signal.SIGINT)
    said = ""
    while "stopping after this step" not in said and proc.poll() is None:   # the first is in
        said += proc.stderr.readline()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate()
    check(proc.returncode == -signal.SIGINT, f"exit {proc.returncode}, expected death by SIGINT: {said + err}")


def test_second_writer_refused():
    """A second `distil train` into a run directory in use: exit 2, one line
    naming the lock and the first run's pid and host; the first ends as if
    alone (byte-identical to the straight run)."""
    for attempt in range(3):
        run = f"{TMP}/locked{attempt}"
        first = subprocess.Popen([DISTIL, "train", f"{TMP}/tiny.yaml", "--out", run, "--max-steps", "8"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
        wait_for_steps(run, 1, first)
        second = train(run, "--max-steps", "8", expect=None)
        _, err = first.communicate()
        check(first.returncode == 0, f"the first run failed: {err[-300:]}")
        if second.returncode != 0:
            break
    else:
        raise Failure("the first run ended before the second started, three times")
    lines = second.stderr.strip().splitlines()
    check(second.returncode == 2 and len(lines) == 1, f"second: exit {second.returncode}: {second.stderr[-300:]}")
    for word in ("distil: error: ", f"{run}/train.lock", f"pid {first.pid} on host {os.uname().nodename}", "--out"):
        check(word in lines[0], f"{word!r} not in: {lines[0]}")
    print("    " + lines[0].replace(TMP, "$TMP"), flush=True)
    assert_same_run(STRAIGHT, run)


def test_state_layout():
    """state.bin decodes as documented, and agrees with the run."""
    s, _ = parse_state(f"{latest(STRAIGHT)}/state.bin")
    check(s["step"] == 8 and s["adam_step"] == 8, f"step {s['step']}, AdamW step {s['adam_step']}")
    check(s["micro_batch"] == 4 and s["world"] == 1 and s["threads"] == 2 and s["seed"] == 3, f"{s}")
    # 8 steps of 2 micro-batches: 16 batches of 4 from 128 samples (32 per epoch).
    check((s["loader_epoch"], s["loader_step"]) == (0, 16), f"loader at {s['loader_epoch']}, {s['loader_step']}")
    vocab = json.loads(read(f"{latest(STRAIGHT)}/vocab.json"))
    check(s["to_teacher"] == vocab["teacher_ids"], "the vocabulary map differs from vocab.json")
    for (size, crc), name in zip(s["files"], ("model.safetensors", "vocab.json")):
        data = read(f"{latest(STRAIGHT)}/{name}")
        check(size == len(data) and crc == zlib.crc32(data), f"{name}: recorded size or CRC")
    check(s["params"][0][1] == 0 and sum(p[2] for p in s["params"]) == s["grad_numel"], "parameter table")


def error_case(ckpt, expect, *sets):
    """--resume ckpt must fail with exit 2 and one line containing every string in expect."""
    p = train(f"{TMP}/errrun", "--resume", ckpt, "--max-steps", "12", *sets, expect=None)
    lines = p.stderr.splitlines()
    check(p.returncode == 2, f"{ckpt}: exit {p.returncode}, expected 2; stderr: {p.stderr[-300:]}")
    check(len(lines) == 1 and lines[0].startswith("distil: error: "), f"{ckpt}: stderr is not one error line: {lines}")
    for e in expect:
        check(e in lines[0], f"{ckpt}: '{e}' not in: {lines[0]}")
    print("    " + lines[0].replace(TMP, "$TMP"), flush=True)
    return lines[0]


def damaged(name, edit):
    """A copy of the straight run's last checkpoint, edited by edit(dir)."""
    d = f"{TMP}/bad/{name}"
    shutil.copytree(latest(STRAIGHT), d)
    edit(d)
    return d


def truncate(path, keep):
    data = read(path)
    with open(path, "wb") as f:
        f.write(data[:keep(len(data))])


def flip(path, at):
    data = bytearray(read(path))
    data[at(len(data))] ^= 0x10
    with open(path, "wb") as f:
        f.write(bytes(data))


def safetensors_with_meta(path, key, value):
    """The file with one metadata value replaced (header re-padded to 8 bytes)."""
    raw = read(path)
    (n,) = struct.unpack_from("<Q", raw)
    header = json.loads(raw[8:8 + n])
    header["__metadata__"][key] = value
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + raw[8 + n:]


def test_bad_checkpoints():
    ok = latest(STRAIGHT)
    error_case(damaged("trunc_state", lambda d: truncate(f"{d}/state.bin", lambda n: n - 100)),
               ["state.bin", "truncated"])
    error_case(damaged("trunc_state_header", lambda d: truncate(f"{d}/state.bin", lambda n: 20)),
               ["state.bin", "truncated"])
    error_case(damaged("flip_state", lambda d: flip(f"{d}/state.bin", lambda n: n // 2)), ["state.bin", "corrupt"])
    error_case(damaged("flip_state_header", lambda d: flip(f"{d}/state.bin", lambda n: 20)), ["state.bin", "corrupt"])
    error_case(damaged("flip_weights", lambda d: flip(f"{d}/model.safetensors", lambda n: n - 50)),
               ["model.safetensors", "checksum mismatch"])
    error_case(damaged("trunc_weights", lambda d: truncate(f"{d}/model.safetensors", lambda n: n - 4)),
               ["model.safetensors", "truncated"])
    error_case(damaged("no_state", lambda d: os.unlink(f"{d}/state.bin")), ["state.bin", "No such file"])
    error_case(damaged("no_vocab", lambda d: os.unlink(f"{d}/vocab.json")), ["vocab.json", "No such file"])

    # A checkpoint of format version 2 (a later distil): named as such.
    def version2(d):
        _, payload = parse_state(f"{d}/state.bin")
        weights = safetensors_with_meta(f"{d}/model.safetensors", "format_version", "2")
        with open(f"{d}/model.safetensors", "wb") as f:
            f.write(weights)
        write_state(f"{d}/state.bin", set_file_sum(payload, 0, weights), version=2)
    error_case(damaged("version2", version2), ["state.bin", "format version 2", "reads version 1"])

    # Weights whose own metadata says version 2, with consistent checksums.
    def weights_version2(d):
        _, payload = parse_state(f"{d}/state.bin")
        weights = safetensors_with_meta(f"{d}/model.safetensors", "format_version", "2")
        with open(f"{d}/model.safetensors", "wb") as f:
            f.write(weights)
        write_state(f"{d}/state.bin", set_file_sum(payload, 0, weights))
    error_case(damaged("weights_version2", weights_version2), ["model.safetensors", "format_version \"2\""])

    # A rewritten (valid) state.bin with another vocabulary map.
    def other_map(d):
        s, payload = parse_state(f"{d}/state.bin")
        at = 8 * 6 + 4 * 3 + 8 + 32 + 8 + 12 + 4 * 3
        payload = payload[:at] + struct.pack("<i", s["to_teacher"][3] + 1) + payload[at + 4:]
        write_state(f"{d}/state.bin", payload)
    error_case(damaged("other_map", other_map), ["incompatible", "maps student token 3"])

    error_case(ok, ["incompatible", "model.dim is 32 in the checkpoint and 48 here"], "--set", "model.dim=48")
    error_case(ok, ["incompatible", "model.vocab is from_logs in the checkpoint and teacher here"], "--set", "model.vocab=teacher")
    error_case(ok, ["incompatible", "train.micro_batch is 4"], "--set", "train.micro_batch=2")
    error_case(ok, ["incompatible", "trainable parameters"], "--set", "train.freeze=[\"ln_f.*\"]")
    error_case(ok, ["past the 6 steps"], "--max-steps", "6")
    error_case(f"{TMP}/bad/nowhere", ["nowhere", "not a directory"])
    fresh = f"{TMP}/fresh"
    os.makedirs(fresh)
    p = train(fresh, "--resume", expect=2)
    check(len(p.stderr.splitlines()) == 1 and "no checkpoint to resume from" in p.stderr, p.stderr)
    # The good checkpoint still loads after all that (the errors changed nothing).
    train(f"{TMP}/errrun", "--resume", ok, "--max-steps", "9")


def main():
    global skipped
    if not os.access(DISTIL, os.X_OK):
        print(f"skip all: no distil binary at {DISTIL}")
        skipped += 1
    else:
        try:
            import zstandard  # noqa: F401
        except ImportError:
            print("skip all: the Python zstandard module is missing (apt-get install python3-zstandard)")
            skipped += 1
            print(f"TESTS {passed} passed, {failed} failed, {skipped} skipped")
            return 0
        setup()
        run_test(test_resume_after_clean_stop_is_exact)
        run_test(test_resume_after_kill_is_exact)
        run_test(test_resume_with_other_thread_count)
        run_test(test_state_layout)
        run_test(test_keep_checkpoints)
        run_test(test_saves_leave_other_temporaries)
        run_test(test_sigterm_resumes_exactly)
        run_test(test_second_sigint_aborts)
        run_test(test_second_writer_refused)
        run_test(test_bad_checkpoints)
        run_test(test_kill9_at_random_instants)
    shutil.rmtree(TMP, ignore_errors=True)
    print(f"TESTS {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
