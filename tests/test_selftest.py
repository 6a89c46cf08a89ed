#!/usr/bin/env python3
"""test_selftest.py: `distil selftest` and train.device on a machine without
a GPU (this one).

  - `distil selftest` exits 0 with the CPU's line and "cuda: no device";
    --device cpu --quick prints the CPU's line alone; --device cuda exits 1
    (what was asked for is not there); bad arguments are one error line.
  - A copy of the binary far from the source tree passes the same way: the
    PyTorch fixtures travel inside it.
  - `distil train` with device: cuda is one error line naming the key and
    saying there is no CUDA device; auto trains on the CPU and says why,
    in bf16 too.
The CUDA side (a GPU passing, a wrong kernel refused) runs on the simulator:
tests/test_selftest_sim.py. Prints `TESTS p passed, f failed, s skipped`.
"""
import os
import shutil
import sys
import time

from harness import one_error_line, run, run_suite, tiny_recipe  # tests/harness.py

DISTIL = os.path.abspath(os.environ.get("DISTIL", "build/cpu/distil"))


def prepare(tmp):
    run(DISTIL, "logs", "synth", "--out", "shards", "--shards", "1", "--samples-per-shard", "16", "--preset", "demo",
        "--seed", "4", "--zstd-level", "0", cwd=tmp)
    tiny_recipe(f"{tmp}/recipe.yaml", name="selftest", train__steps=2, data__eval="[]", train__checkpoint_every=0,
                train__eval_every=0)
    os.environ["DISTIL_CACHE_DIR"] = f"{tmp}/cache"


def lines_of(r):
    return [l for l in r.stdout.splitlines() if l.strip()]


def test_selftest_passes_the_cpu_and_says_no_cuda_device(tmp):
    start = time.time()
    r = run(DISTIL, "selftest", cwd=tmp)
    took = time.time() - start
    lines = lines_of(r)
    assert len(lines) == 2, r.stdout
    assert lines[0].startswith("cpu: passed (full): ") and "op cases against PyTorch" in lines[0], lines[0]
    assert lines[1].startswith("cuda: no device ("), lines[1]
    print(f"  {lines[0]}\n  {lines[1]}\n  distil selftest took {took:.1f} s (load {os.getloadavg()[0]:.1f})")


def test_quick_cpu_only(tmp):
    r = run(DISTIL, "selftest", "--device", "cpu", "--quick", cwd=tmp)
    lines = lines_of(r)
    assert len(lines) == 1 and lines[0].startswith("cpu: passed (quick): "), r.stdout


def test_cuda_asked_for_but_absent_exits_1(tmp):
    r = run(DISTIL, "selftest", "--device=cuda", check=False, cwd=tmp)
    assert r.returncode == 1 and lines_of(r) == [l for l in lines_of(r) if l.startswith("cuda: no device (")], r.stdout
    assert len(lines_of(r)) == 1, r.stdout


def test_bad_arguments(tmp):
    one_error_line(run(DISTIL, "selftest", "--device", "gpu", check=False), "--device 'gpu'", "cpu, cuda or all")
    one_error_line(run(DISTIL, "selftest", "--fast", check=False), "unknown argument '--fast'")


def test_a_copied_binary_needs_no_source_tree(tmp):
    far = os.path.join(tmp, "elsewhere")
    os.makedirs(far)
    shutil.copy2(DISTIL, os.path.join(far, "distil"))
    r = run(os.path.join(far, "distil"), "selftest", "--device", "cpu", "--quick", cwd="/")
    assert lines_of(r)[0].startswith("cpu: passed (quick): "), r.stdout


def test_train_device_cuda_without_a_gpu_is_refused(tmp):
    r = run(DISTIL, "train", "recipe.yaml", "--out", "run_cuda", "--set", "train.device=cuda", check=False, cwd=tmp)
    one_error_line(r, "--set train.device", "train.device: cuda: no CUDA device", "use device: cpu or auto")
    assert not os.path.exists(f"{tmp}/run_cuda/metrics.jsonl"), "nothing is trained"


def test_train_device_auto_trains_on_the_cpu(tmp):
    r = run(DISTIL, "train", "recipe.yaml", "--out", "run_auto", "--set", "train.device=auto", cwd=tmp)
    assert "device: auto: no CUDA device (" in r.stdout and "training on the CPU" in r.stdout, r.stdout
    assert "trained 2 steps" in r.stdout, r.stdout


def test_train_device_cpu_says_nothing_about_gpus(tmp):
    r = run(DISTIL, "train", "recipe.yaml", "--out", "run_cpu", "--set", "train.device=cpu", cwd=tmp)
    assert "device:" not in r.stdout and "trained 2 steps" in r.stdout, r.stdout


def test_train_precision_bf16_trains_under_auto(tmp):
    r = run(DISTIL, "train", "recipe.yaml", "--out", "run_bf16", "--set", "train.precision=bf16", cwd=tmp)
    assert "device: auto: no CUDA device (" in r.stdout and "trained 2 steps" in r.stdout, r.stdout


if __name__ == "__main__":
    sys.exit(run_suite("distil_test_selftest_", prepare, globals()))
