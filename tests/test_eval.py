#!/usr/bin/env python3
"""test_eval.py: `distil eval` on a real run's checkpoint and on its export.

A tiny student is trained by `distil train` (checkpoints every 10 steps and
at the end), then:
  - eval of the final checkpoint gives eval.json's keys, and the same numbers
    as the run's own final eval for every row but the ego-only baseline
    (fitted on the training shards there, on the evaluated ones here);
  - an export (fp32) evaluates to exactly the checkpoint's table;
  - --dump writes one row per eval sample, in shard order, with the
    documented datasets; its predictions give the table's student ADE;
  - every bad input is one `distil: error:` line and exit status 2: no
    --logs, a glob that matches nothing, a bad --batch, a run directory
    given as the model, a checkpoint with a flipped byte, shards of another
    camera rig.
Prints `TESTS p passed, f failed, s skipped`.
"""
import json
import os
import sys

import h5py
import numpy as np
from harness import crimson_shard, one_error_line, run, run_suite, tiny_recipe  # tests/harness.py

DISTIL = os.path.abspath(os.environ.get("DISTIL", "build/cpu/distil"))
BUILD = os.path.abspath(os.environ.get("DISTIL_BUILD", "build/cpu"))
HELPER = os.path.join(BUILD, "tests", "test_export")



def prepare(tmp):
    run(DISTIL, "logs", "synth", "--out", "shards", "--shards", "1", "--samples-per-shard", "64", "--preset", "demo",
        "--eval-shards", "2", "--eval-samples-per-shard", "13", "--seed", "9", "--zstd-level", "0", cwd=tmp)
    tiny_recipe(f"{tmp}/recipe.yaml", name="evaltest", seed=7)
    run(DISTIL, "train", "recipe.yaml", "--out", "run", cwd=tmp)
    run(DISTIL, "export", "run/checkpoints/latest", "--out", "exported", cwd=tmp)


def close(a, b, what):
    if a is None or b is None:
        assert a is None and b is None, (what, a, b)
        return
    assert abs(a - b) <= 1e-4 * max(1.0, abs(b)), (what, a, b)


def test_checkpoint_matches_the_runs_final_eval(tmp):
    r = run(DISTIL, "eval", "run/checkpoints/latest", "--logs", "shards/eval/*.h5", "--json", "ckpt.json", "--batch", "8", cwd=tmp)
    assert "ego-only baseline is fitted on these samples" in r.stdout and "student" in r.stdout, r.stdout
    got, want = json.load(open(f"{tmp}/ckpt.json")), json.load(open(f"{tmp}/run/eval.json"))

    def keys(d, prefix=""):
        return {prefix + k for k in d} | {x for k, v in d.items() if isinstance(v, dict) for x in keys(v, prefix + k + ".")}
    assert keys(got) == keys(want), keys(got) ^ keys(want)
    assert got["samples"] == want["samples"] == 26
    # Counts are integers, metrics reals (or null), as docs/metrics.md says.
    assert isinstance(want["samples"], int) and isinstance(want["trace"]["positions"], int), want["trace"]
    assert all(v is None or isinstance(v, float) for v in want["student"].values()), want["student"]
    for row in ("student", "teacher_consistency"):
        for k in want[row]:
            close(got[row][k], want[row][k], f"{row}.{k}")
    for k in want["baselines"]["constant_velocity"]:
        close(got["baselines"]["constant_velocity"][k], want["baselines"]["constant_velocity"][k], k)
    for k in ("token_acc", "kl", "majority_acc", "positions"):
        close(got["trace"][k], want["trace"][k], f"trace.{k}")


def test_export_evaluates_like_its_checkpoint(tmp):
    run(DISTIL, "eval", "run/checkpoints/latest", "--logs", "shards/eval/*.h5", "--json", "a.json", cwd=tmp)
    r = run(DISTIL, "eval", "exported", "--logs", "shards/eval/*.h5", "--json", "b.json", cwd=tmp)
    assert "(export, step 20)" in r.stdout, r.stdout
    assert open(f"{tmp}/a.json").read() == open(f"{tmp}/b.json").read()


def test_dump(tmp):
    run(DISTIL, "eval", "exported", "--logs", "shards/eval/*.h5", "--json", "d.json", "--dump", "dump.h5", "--batch", "5", cwd=tmp)
    table = json.load(open(f"{tmp}/d.json"))
    with h5py.File(f"{tmp}/dump.h5", "r") as d:
        assert d.attrs["format"] in ("distil-eval-dump", b"distil-eval-dump")
        hz = d.attrs["hz"]   # a number, not a string
        assert isinstance(hz, np.floating) and hz == 10.0, repr(hz)
        n = len(d["index"])
        assert n == 26
        for name, shape in (("trajectory", (n, 30, 3)), ("teacher_mean", (n, 30, 3)), ("ground_truth", (n, 30, 3)),
                            ("has_ground_truth", (n,)), ("shard", (n,)), ("clip_id", (n,)), ("t0_us", (n,)),
                            ("trace_tokens", (n, 16)), ("trace_mask", (n, 16))):
            assert d[name].shape == shape, (name, d[name].shape)
        assert "trace_logits" not in d
        # Shard order: shard 0's samples 0..12, then shard 1's.
        assert list(d["shard"][:]) == [0] * 13 + [1] * 13 and list(d["index"][:]) == list(range(13)) * 2
        paths = [p.decode() if isinstance(p, bytes) else p for p in d["shard_paths"][:]]
        assert [os.path.basename(p) for p in paths] == ["shard-00000.h5", "shard-00001.h5"], paths
        pred, tmean = d["trajectory"][:], d["teacher_mean"][:]
        # With one teacher-mean target per sample, ade_teacher of the
        # teacher's mean plan is the spread; the student's ADE to that mean
        # is not a table entry, but its ADE to the driver is.
        gt, has = d["ground_truth"][:], d["has_ground_truth"][:].astype(bool)
        ade_gt = np.linalg.norm(pred[has, :, :2] - gt[has, :, :2], axis=-1).mean()
        close(float(ade_gt), table["student"]["ade_gt"], "ade_gt from the dump")
        with h5py.File(f"{tmp}/{paths[1]}" if not os.path.isabs(paths[1]) else paths[1], "r") as f:
            assert np.array_equal(d["clip_id"][13:], f["clip_id"][:])
            want_mean = np.einsum("nk,nktc->ntc", f["teacher/weight"][:] / f["teacher/weight"][:].sum(1, keepdims=True),
                                  f["teacher/trajectory"][:, :, :30]) if "teacher/weight" in f else f["teacher/trajectory"][:, :, :30].mean(1)
            assert np.allclose(tmean[13:], want_mean, atol=1e-4)


def test_bad_inputs(tmp):
    one_error_line(run(DISTIL, "eval", "exported", check=False, cwd=tmp), "--logs")
    one_error_line(run(DISTIL, "eval", "exported", "--logs", "nothing/*.h5", check=False, cwd=tmp), "nothing/*.h5")
    one_error_line(run(DISTIL, "eval", "exported", "--logs", "shards/eval/*.h5", "--batch", "0", check=False, cwd=tmp), "--batch")
    one_error_line(run(DISTIL, "eval", "exported", "--logs", "shards/eval/*.h5", "--dump-logits", check=False, cwd=tmp), "--dump")
    one_error_line(run(DISTIL, "eval", "run", "--logs", "shards/eval/*.h5", check=False, cwd=tmp), "neither a checkpoint nor an export")
    # Shards of another rig: two cameras of 8x12 pixels.
    run(HELPER, "--make-shards", f"{tmp}/rig")
    one_error_line(run(DISTIL, "eval", "exported", "--logs", f"{tmp}/rig/eval/*.h5", check=False, cwd=tmp), "camera")
    # A flipped byte in a checkpoint's weights: its checksum in state.bin says so.
    ckpt = os.path.realpath(f"{tmp}/run/checkpoints/latest")
    run("cp", "-r", ckpt, f"{tmp}/damaged")
    with open(f"{tmp}/damaged/model.safetensors", "r+b") as f:
        f.seek(-5, 2)
        b = f.read(1)
        f.seek(-5, 2)
        f.write(bytes([b[0] ^ 0x40]))
    one_error_line(run(DISTIL, "eval", "damaged", "--logs", "shards/eval/*.h5", check=False, cwd=tmp), "checksum")
    # One piece of the teacher's vocabulary changed: the same size, another teacher.
    crimson_shard(f"{tmp}/shards/eval/shard-00000.h5", f"{tmp}/crimson/a.h5")
    for bundle in ("run/checkpoints/latest", "exported"):
        one_error_line(run(DISTIL, "eval", bundle, "--logs", "crimson/*.h5", check=False, cwd=tmp),
                       "crimson/a.h5: /vocab: not the teacher vocabulary the student was trained on")
    one_error_line(run(DISTIL, "export", "damaged", "--out", "x", check=False, cwd=tmp), "checksum")
    # A checkpoint without state.bin: its checksums cannot be checked.
    run("cp", "-r", ckpt, f"{tmp}/nostate")
    os.unlink(f"{tmp}/nostate/state.bin")
    one_error_line(run(DISTIL, "eval", "nostate", "--logs", "shards/eval/*.h5", check=False, cwd=tmp), "nostate/state.bin", "missing")
    one_error_line(run(DISTIL, "export", "nostate", "--out", "x", check=False, cwd=tmp), "nostate/state.bin", "missing")
    # config.json out of range, of another version, or describing other shapes than its weights.
    base = json.load(open(f"{tmp}/exported/config.json"))
    for name, edit, words in [
            ("std0", lambda c: c["model"].update(img_std=[0, 0, 0]), ['"img_std"[0] = 0 is out of range']),
            ("version2", lambda c: c.update(format_version=2), ["format_version 2", "reads version 1"]),
            ("dim65536", lambda c: c["model"].update(dim=65536), ['"dim"', "model.safetensors holds"]),
            ("restated", lambda c: c["image"].update(height=1), ['"image.height" is 1'])]:
        run("cp", "-r", f"{tmp}/exported", f"{tmp}/{name}")
        config = json.loads(json.dumps(base))
        edit(config)
        json.dump(config, open(f"{tmp}/{name}/config.json", "w"))
        one_error_line(run(DISTIL, "eval", name, "--logs", "shards/eval/*.h5", check=False, cwd=tmp),
                       f"{name}/config.json", *words)


if __name__ == "__main__":
    sys.exit(run_suite("distil_test_eval_", prepare, globals()))
