#!/usr/bin/env python3
"""test_damaged_shards.py: the damaged-shard corpus, tests/fuzz/drivelog_file/:
shards one byte away from tests/fuzz/seed_shard.h5 that make fuzz found
crashing libhdf5 (SIGSEGV, heap overflows), looping in it, or making it
allocate gigabytes (docs/robustness.md lists them). Through the wall
(docs/drive-log-format.md, "Damaged files"):

- `distil logs validate` refuses each with exit status 2 and one line naming
  it, within 30 s of CPU time (its own and its checking child's: wall-clock
  time on a shared machine says nothing), with no crash and no sanitizer
  report;
- `distil logs inspect` refuses each the same way;
- a training run with data.on_bad_sample: skip over two good shards and all
  of the damaged ones completes, with one warning per damaged shard and
  their count; under on_bad_sample: error it stops at the first with exit 2;
- `distil eval` of that run's checkpoint on a damaged shard exits 2 naming it.

The seed is `distil logs synth --shards 1 --samples-per-shard 2 --seed 1`'s
train shard. tests/test_fuzz_replay replays the same files under the
sanitizers (make test SAN=1). Prints "TESTS p passed, f failed, s skipped".
"""
import glob
import os
import resource
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import run, run_suite, tiny_recipe  # noqa: E402

DISTIL = os.path.abspath(os.environ.get("DISTIL", "build/cpu/distil"))
HERE = os.path.dirname(os.path.abspath(__file__))
DAMAGED = sorted(glob.glob(os.path.join(HERE, "fuzz", "drivelog_file", "*.h5")))
SEED = os.path.join(HERE, "fuzz", "seed_shard.h5")
# The training and inspect runs open each shard more than once: a shard that
# makes libhdf5 loop costs the wall's CPU limit each time, so it is 2 s
# there. validate runs with the default (10 s).
FAST = dict(os.environ, DISTIL_SHARD_CHECK_CPU_S="2", OMP_NUM_THREADS="2")
SANITIZER_WORDS = ("Sanitizer", "runtime error:", "Segmentation fault", "core dumped")


def prepare(tmp):
    assert len(DAMAGED) >= 20, f"{len(DAMAGED)} damaged shards in tests/fuzz/drivelog_file, expected at least 20"
    seed = open(SEED, "rb").read()
    for path in DAMAGED:
        data = open(path, "rb").read()
        diff = [i for i in range(len(seed)) if len(data) == len(seed) and data[i] != seed[i]]
        assert len(data) == len(seed) and len(diff) == 1, f"{path}: not one byte away from the seed shard"
    run(DISTIL, "logs", "synth", "--out", f"{tmp}/good", "--shards", "2", "--samples-per-shard", "40", "--seed", "1",
        "--eval-shards", "1", "--eval-samples-per-shard", "8")
    os.makedirs(f"{tmp}/mixed")
    for path in glob.glob(f"{tmp}/good/train/*.h5") + DAMAGED:
        shutil.copy(path, f"{tmp}/mixed/")


def one_line_naming(r, path, what):
    """Exit 2, one stderr line naming the file, nothing a crash or a sanitizer prints."""
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, f"{what} {os.path.basename(path)}: exit {r.returncode}: {r.stderr[-300:]}"
    assert len(lines) == 1 and lines[0].startswith("distil: error: ") and path in lines[0], \
        f"{what} {os.path.basename(path)}: {r.stderr[-400:]}"
    assert not any(w in r.stdout + r.stderr for w in SANITIZER_WORDS), f"{what}: {r.stderr[-400:]}"


def cpu_of_children():
    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return u.ru_utime + u.ru_stime


def test_validate_refuses_each(tmp):
    for path in DAMAGED:
        cpu = cpu_of_children()
        r = subprocess.run([DISTIL, "logs", "validate", path], capture_output=True, text=True, timeout=600)
        cpu = cpu_of_children() - cpu
        one_line_naming(r, path, "validate")
        assert cpu < 30, f"validate {os.path.basename(path)}: {cpu:.1f} s of CPU"
        print(f"    ({cpu:.1f} s CPU) {r.stderr.strip().replace(HERE + '/', 'tests/')}", flush=True)


def test_inspect_refuses_each(tmp):
    for path in DAMAGED:
        r = subprocess.run([DISTIL, "logs", "inspect", path], capture_output=True, text=True, timeout=60, env=FAST)
        one_line_naming(r, path, "inspect")


def test_training_skips_them(tmp):
    recipe = tiny_recipe(f"{tmp}/skip.yaml", f"{tmp}/good", **{
        "data.train": f'["{tmp}/mixed/*.h5"]', "data.on_bad_sample": "skip", "train.steps": 4,
        "train.micro_batch": 4, "train.batch_size": 4, "train.eval_every": 0, "train.checkpoint_every": 0})
    r = subprocess.run([DISTIL, "train", recipe, "--out", f"{tmp}/run"], capture_output=True, text=True, timeout=600,
                       env=FAST)
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr[-600:]}"
    warned = [l for l in r.stderr.splitlines() if l.startswith("distil: warning: ") and l.endswith("; shard skipped")]
    named = {os.path.basename(p) for p in DAMAGED if any(f"/mixed/{os.path.basename(p)}:" in l for l in warned)}
    assert len(warned) == len(DAMAGED) and len(named) == len(DAMAGED), f"{len(warned)} warnings: {r.stderr[-800:]}"
    count = f"{len(DAMAGED)} of the {len(DAMAGED) + 2} shards of data.train skipped as unusable"
    assert count in r.stderr, f"no count line: {r.stderr[-400:]}"
    assert not any(w in r.stdout + r.stderr for w in SANITIZER_WORDS), r.stderr[-400:]
    assert os.path.islink(f"{tmp}/run/checkpoints/latest"), "no checkpoint"
    print(f"    {[l for l in r.stderr.splitlines() if 'skipped as unusable' in l][0].replace(tmp, '$TMP')}", flush=True)


def test_training_stops_under_error(tmp):
    recipe = tiny_recipe(f"{tmp}/error.yaml", f"{tmp}/good", **{
        "data.train": f'["{tmp}/mixed/*.h5"]', "train.steps": 4, "train.micro_batch": 4, "train.batch_size": 4})
    r = subprocess.run([DISTIL, "train", recipe, "--out", f"{tmp}/errrun"], capture_output=True, text=True, timeout=300,
                       env=FAST)
    first = sorted(DAMAGED)[0].replace(os.path.join(HERE, "fuzz", "drivelog_file"), f"{tmp}/mixed")
    one_line_naming(r, first, "train")


def test_eval_refuses_one(tmp):
    path = [p for p in DAMAGED if "segv" in os.path.basename(p)][0]
    r = subprocess.run([DISTIL, "eval", f"{tmp}/run/checkpoints/latest", "--logs", path], capture_output=True, text=True,
                       timeout=120, env=FAST)
    one_line_naming(r, path, "eval")


if __name__ == "__main__":
    sys.exit(run_suite("distil_test_damaged_", prepare, globals()))
