#!/usr/bin/env python3
"""test_selftest_sim.py: the self-test and train.device: cuda on the CPU
simulator of the CUDA runtime (kernels/cuda/sim; its default, asynchronous
streams with random delays), with ./distil itself built
against it (kernels/cuda/sim/run.sh build), and once more with a wrong
kernel planted: gelu's forward fed 1.01 x instead of x
(run.sh plant), an error of a few percent that compiles and runs.

  - With the planted kernel, `distil train` with device: cuda runs the quick
    self-test at the GPU's first use; it fails, and training refuses with one
    error line naming the key, the failing op (gelu) and its largest error.
    Nothing is trained. The result is cached: the next run refuses from the
    cache without testing again. With device: auto it trains on the CPU
    instead and says why.
  - With the right kernels, device: cuda runs the quick self-test, which
    passes (naming the simulated device; the student's steps after the
    first replayed from a CUDA Graph), trains on the simulated GPU and
    checkpoints there (the AdamW moments come from the device); the next run
    finds the pass in the cache, and a resume from a checkpoint puts the
    moments back on the device: its update gives the uninterrupted run's
    weights.
The simulator runs a GPU thread per host thread, so each self-test costs
tens of seconds here: this test runs two. It says nothing about a real GPU;
scripts/gpu_check.sh runs the self-test there. Prints `TESTS p passed, f
failed, s skipped`.
"""
import json
import os
import sys

from harness import one_error_line, run, run_suite, tiny_recipe  # tests/harness.py

DISTIL = os.path.abspath(os.environ.get("DISTIL", "build/cpu/distil"))
SIM = os.path.abspath("build/cuda-sim-address-undefined")
PLANT = ("gelu.cu", "s/return gelu_value\\(x\\);/return gelu_value(1.01f * x);/")
# The sanitizers' leak check would report the simulator's worker threads
# and MPI's own allocations at exit, which are not distil's.
ENV = {"ASAN_OPTIONS": "detect_leaks=0"}


def sim(*args, cache, check=True, cwd=None):
    os.environ.update(ENV, DISTIL_CACHE_DIR=cache)
    r = run(*args, check=check, cwd=cwd, timeout=1200)
    # The simulator's own line on stderr (asynchronous streams, and the seed
    # of their delays) is not distil's: the one-line checks leave it out.
    r.stderr = "".join(l for l in r.stderr.splitlines(True) if not l.startswith("cuda_sim: asynchronous streams"))
    return r


def prepare(tmp):
    run("bash", "kernels/cuda/sim/run.sh", "build", timeout=3000)
    run("bash", "kernels/cuda/sim/run.sh", "plant", *PLANT, timeout=3000)
    run(DISTIL, "logs", "synth", "--out", "shards", "--shards", "1", "--samples-per-shard", "16", "--preset", "demo",
        "--seed", "5", "--zstd-level", "0", cwd=tmp)
    # test_gpu_train's small student (19 tokens per sample), so that the
    # simulator (one host thread per GPU thread) gets through it quickly.
    tiny_recipe(f"{tmp}/recipe.yaml", name="simtest", data__eval="[]", data__history_frames=1,
                data__max_trace_tokens=8, model__patch=16, train__micro_batch=2, train__batch_size=2,
                train__steps=3, train__checkpoint_every=1, train__eval_every=0, train__log_every=1,
                train__device="cuda")


def losses(path):
    return {j["step"]: (j["loss"], j["grad_norm"]) for j in map(json.loads, open(path)) if "loss" in j}


def test_train_refuses_cuda_naming_the_failing_op(tmp):
    cache = f"{tmp}/cache_planted"
    r = sim(f"{SIM}/distil-planted", "train", "recipe.yaml", "--out", "run_planted", cache=cache, check=False, cwd=tmp)
    one_error_line(r, "recipe.yaml:", "train.device: cuda: the self-test failed on CUDA simulator (CPU)", "op gelu",
                   "against", "tolerance", "distil selftest --device cuda")
    line = next(l for l in r.stdout.splitlines() if l.startswith("cuda: "))
    assert "running the quick self-test" in r.stdout and line.startswith("cuda: FAILED (quick): "), r.stdout
    assert "(gelu" in line and "the largest error: op gelu, case" in line, line
    print(f"  {line}")
    assert not os.path.exists(f"{tmp}/run_planted/metrics.jsonl"), "nothing may be trained"
    print(f"  {r.stderr.strip()}")
    # Cached: the next run refuses at once, with the same op.
    r = sim(f"{SIM}/distil-planted", "train", "recipe.yaml", "--out", "run_planted", cache=cache, check=False, cwd=tmp)
    one_error_line(r, "train.device: cuda: the self-test failed", "op gelu")
    assert "the self-test failed with this distil and driver on" in r.stdout and "cached in" in r.stdout, r.stdout
    assert "running the quick self-test" not in r.stdout, r.stdout


def test_auto_falls_back_to_the_cpu(tmp):
    r = sim(f"{SIM}/distil-planted", "train", "recipe.yaml", "--out", "run_auto", "--max-steps", "1",
            "--set", "train.device=auto", cache=f"{tmp}/cache_planted", cwd=tmp)
    assert "device: auto: the CUDA self-test failed on CUDA simulator (CPU)" in r.stdout, r.stdout
    assert "training on the CPU" in r.stdout and "trained 1 steps" in r.stdout, r.stdout


def test_train_on_the_simulated_gpu_checkpoints_and_resumes(tmp):
    cache = f"{tmp}/cache_good"
    r = sim(f"{SIM}/distil", "train", "recipe.yaml", "--out", "run_cuda", cache=cache, cwd=tmp)
    assert "running the quick self-test" in r.stdout and "trained 3 steps" in r.stdout, r.stdout
    line = next(l for l in r.stdout.splitlines() if l.startswith("cuda: "))
    assert line.startswith("cuda: passed (quick): ") and "against PyTorch and the CPU" in line, line
    # The student's later steps replayed as the trainer's are, from a CUDA Graph.
    assert "3 training steps (2 replayed from a CUDA Graph) as the CPU's" in line, line
    assert "CUDA simulator (CPU)" in line and "compute capability 9.0" in line, line
    print(f"  {line}")
    assert sorted(losses(f"{tmp}/run_cuda/metrics.jsonl")) == [1, 2, 3]   # steps count from 1
    straight = open(f"{tmp}/run_cuda/checkpoints/step_0000003/model.safetensors", "rb").read()
    # The pass is cached; a resume from step 2 loads the device's moments,
    # which drive step 2's update into step 3's weights.
    r = sim(f"{SIM}/distil", "train", "recipe.yaml", "--out", "run_cuda", "--resume", "run_cuda/checkpoints/step_0000002",
            cache=cache, cwd=tmp)
    assert "the self-test passed with this distil and driver on" in r.stdout, r.stdout
    assert "running the quick self-test" not in r.stdout and "resuming from" in r.stdout, r.stdout
    resumed = open(f"{tmp}/run_cuda/checkpoints/step_0000003/model.safetensors", "rb").read()
    assert resumed == straight, "the resumed run's step 3 weights differ from the uninterrupted run's"


if __name__ == "__main__":
    sys.exit(run_suite("distil_test_selftest_sim_", prepare, globals()))
