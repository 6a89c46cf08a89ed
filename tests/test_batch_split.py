"""test_batch_split.py: a step does not depend on how its global batch is
split across micro-batches and ranks.

recipes/demo.yaml (global batch 32) trains 20 steps four ways: one rank
with micro-batches of 32, 16 x 2 and 8 x 4, and two ranks (mpirun) of 16.
Every loss is normalised over the whole global batch (docs/recipes.md), so
only the order of the sums differs: the step-0 losses agree within 1e-6
relative and the 20-step curves within 1e-4. Averaging each micro-batch's
tokens on their own, as distil did before, moved the step-0 loss by ~1e-4
relative at 8 x 4 and the curve by 1e-3 within 12 steps.
"""
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Skip, run, run_suite  # noqa: E402

DISTIL = os.path.abspath(os.environ.get("DISTIL", "build/cpu/distil"))
DEMO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "recipes", "demo.yaml"))
STEPS = 20
SPLITS = {"r1_micro32": (1, 32), "r1_micro16x2": (1, 16), "r1_micro8x4": (1, 8), "r2_micro16": (2, 16)}
losses = {}


def train(tmp, name, ranks, micro):
    out = os.path.join(tmp, name)
    args = [DISTIL, "train", DEMO, "--out", out, "--max-steps", STEPS, "--set", 'data.train=["fleet/train/*.h5"]',
            "--set", "data.eval=[]", "--set", f"train.micro_batch={micro}", "--set", "train.checkpoint_every=0"]
    if ranks > 1:
        args = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", ranks] + args
    run(*args, cwd=tmp, timeout=900)
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [json.loads(line)["loss"] for line in f if '"loss"' in line]


def prepare(tmp):
    # 640 samples: 20 steps of 32 without repeating one.
    run(DISTIL, "logs", "synth", "--preset", "demo", "--shards", 2, "--samples-per-shard", 320, "--seed", 11,
        "--eval-shards", 0, "--out", os.path.join(tmp, "fleet"))
    # One thread per process: the ranks share the machine's cores.
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
    for name, (ranks, micro) in SPLITS.items():
        if ranks > 1 and not shutil.which("mpirun"):
            continue
        losses[name] = train(tmp, name, ranks, micro)


def rel(a, b):
    return abs(a - b) / max(abs(a), 1e-12)


def check_against_whole_batch(name):
    if name not in losses:
        raise Skip("mpirun not found (apt-get install openmpi-bin)")
    ref, got = losses["r1_micro32"], losses[name]
    assert len(ref) == STEPS and len(got) == STEPS, f"{len(ref)} and {len(got)} step lines"
    step0 = rel(ref[0], got[0])
    curve = max(rel(a, b) for a, b in zip(ref, got))
    print(f"  {name}: step 0 {got[0]!r} vs {ref[0]!r} (rel {step0:.1e}); 20 steps max rel {curve:.1e}")
    assert step0 < 1e-6, f"step-0 loss {got[0]!r} vs {ref[0]!r} with one micro-batch of 32: rel {step0:.2e}"
    assert curve < 1e-4, f"losses over {STEPS} steps differ by {curve:.2e} relative"


def test_micro16x2_is_micro32(tmp):
    check_against_whole_batch("r1_micro16x2")


def test_micro8x4_is_micro32(tmp):
    check_against_whole_batch("r1_micro8x4")


def test_two_ranks_of_16_is_one_rank_of_32(tmp):
    check_against_whole_batch("r2_micro16")


if __name__ == "__main__":
    sys.exit(run_suite("distil_test_batch_split_", prepare, globals()))
