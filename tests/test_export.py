#!/usr/bin/env python3
"""test_export.py: `distil export` bundles against outside readers.

Two students, each trained a few steps by `test_export --make-checkpoint`:
  demo: the demo fleet's one camera, xyyaw head, with a feature head (which
        the export leaves out);
  rig:  two cameras given in reverse order (cam1, cam0), 2 frames of 8x12
        pixels, patch 4, the accel_curvature head.
Checked for each:
  - model.onnx passes onnx.checker (full check) and declares opset 17 and a
    symbolic batch;
  - onnxruntime, fed from the shards by the contract of docs/export.md
    (built here with h5py, not taken from distil), gives the trajectory and
    the trace logits of distil's own forward (`distil eval --dump
    --dump-logits`) within 1e-4 relative, for the fp32, fp16 and bf16
    exports, and the same at batch 1 as in a batch;
  - model.safetensors loads with the `safetensors` package: every weight
    of the checkpoint but the feature head, equal (fp32) or rounded to the
    dtype, with the documented metadata;
  - config.json parses and has the documented keys.
onnxruntime, onnx and safetensors come from scripts/deps.sh --test (pip,
--no-deps into build/pydeps, so Debian's numpy and h5py stay the ones
imported). Prints `TESTS p passed, f failed, s skipped`.
"""
import json
import os
import subprocess
import sys

import h5py
import numpy as np
from harness import Skip, run, run_suite  # tests/harness.py

DISTIL = os.environ.get("DISTIL", "build/cpu/distil")
BUILD = os.environ.get("DISTIL_BUILD", "build/cpu")
HELPER = os.path.join(BUILD, "tests", "test_export")
# 1e-4 relative (the bound); measured ~1e-7 (docs/export.md).
TOLERANCE = 1e-4


def deps():
    """(onnx, onnxruntime, safetensors), which scripts/deps.sh --test installs
    into build/pydeps (on PYTHONPATH under tests/run.sh)."""
    try:
        import onnx
        import onnxruntime
        import safetensors.numpy  # noqa: F401
    except ImportError as e:
        raise AssertionError(f"{e}: run scripts/deps.sh --test (make test does)")
    import safetensors
    return onnx, onnxruntime, safetensors


# ---- the two students -------------------------------------------------------------------

# The demo student has the prefix mask, the rig the causal one (the
# default): the ONNX parity below covers both.
VARIANTS = {
    "demo": ("shards", ["distill.w_feature=0.5", "model.attention=prefix"]),
    "rig": ("rig", ["model.patch=4", "model.horizon=6", "data.cameras=[cam1,cam0]", "model.traj_repr=accel_curvature",
                    "data.max_trace_tokens=12", "model.attention=causal"]),
}


def prepare(tmp):
    # Uncompressed shards: h5py reads them without a zstd plugin.
    run(DISTIL, "logs", "synth", "--out", f"{tmp}/shards", "--shards", "1", "--samples-per-shard", "48", "--preset", "demo",
        "--eval-shards", "1", "--eval-samples-per-shard", "24", "--seed", "4", "--zstd-level", "0")
    run(HELPER, "--make-shards", f"{tmp}/rig")
    for name, (shards, sets) in VARIANTS.items():
        run(HELPER, "--make-checkpoint", f"{tmp}/{name}-ckpt", f"{tmp}/{shards}/train/*.h5", "--steps", "6", *sets)
        for dtype in ("fp32", "fp16", "bf16"):
            run(DISTIL, "export", f"{tmp}/{name}-ckpt", "--out", f"{tmp}/{name}-{dtype}", "--dtype", dtype, "--onnx")
            run(DISTIL, "eval", f"{tmp}/{name}-{dtype}", "--logs", f"{tmp}/{shards}/eval/*.h5", "--dump",
                f"{tmp}/{name}-{dtype}.h5", "--dump-logits", "--batch", "5")


def onnx_inputs(bundle, dump_path):
    """The ONNX inputs of every dumped sample, built from the shards by the
    rules of docs/export.md."""
    cfg = json.load(open(f"{bundle}/config.json"))
    vocab = json.load(open(f"{bundle}/vocab.json"))
    to_student = {t: s for s, t in enumerate(vocab["teacher_ids"]) if t >= 0}
    unk = vocab["unk"] if vocab["unk"] >= 0 else 0
    F, L = cfg["frames"], cfg["trace"]["max_tokens"]
    with h5py.File(dump_path, "r") as d:
        paths = [p.decode() if isinstance(p, bytes) else p for p in d["shard_paths"][:]]
        pairs = list(zip(d["shard"][:], d["index"][:]))
    cams, ego, cmd, tokens, mask = [], [], [], [], []
    files = {}
    for s, n in pairs:
        f = files.setdefault(s, h5py.File(paths[s], "r"))
        cams.append(np.stack([f["camera/" + c][n, -F:] for c in cfg["cameras"]]))
        ego.append(f["ego/history"][n])
        cmd.append(int(f["ego/command"][n]) if "ego/command" in f else 0)
        off = f["teacher/trace/offsets"]
        trace = f["teacher/trace/tokens"][off[n]:off[n + 1]][:L]
        row, m = np.zeros(L, np.int64), np.zeros(L, np.float32)
        row[:len(trace)] = [to_student.get(int(t), unk) for t in trace]
        m[:len(trace)] = 1
        tokens.append(row)
        mask.append(m)
    for f in files.values():
        f.close()
    return {"cameras": np.stack(cams).astype(np.uint8), "ego_history": np.stack(ego).astype(np.float32),
            "command": np.array(cmd, np.int64), "trace_tokens": np.stack(tokens), "trace_mask": np.stack(mask)}


def rel_err(got, want, mask=None):
    """Largest |got - want| over the largest |want|, and the largest
    elementwise |got - want| / max(|want|, 1e-3 * max|want|)."""
    if mask is not None:
        got, want = got[mask], want[mask]
    scale = np.abs(want).max()
    diff = np.abs(got.astype(np.float64) - want)
    return diff.max() / scale, (diff / np.maximum(np.abs(want), 1e-3 * scale)).max()


# ---- tests ----------------------------------------------------------------------------------

def check_onnx_matches(tmp, name):
    onnx, ort, _ = deps()
    for dtype in ("fp32", "fp16", "bf16"):
        bundle, dump = f"{tmp}/{name}-{dtype}", f"{tmp}/{name}-{dtype}.h5"
        model = onnx.load(f"{bundle}/model.onnx")
        onnx.checker.check_model(model, full_check=True)
        assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)], model.opset_import
        assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
        sess = ort.InferenceSession(f"{bundle}/model.onnx", providers=["CPUExecutionProvider"])
        feeds = onnx_inputs(bundle, dump)
        with h5py.File(dump, "r") as d:
            want_traj, want_logits = d["trajectory"][:], d["trace_logits"][:]
            assert (d["trace_tokens"][:] == feeds["trace_tokens"]).all(), "distil fed other trace tokens than docs/export.md says"
            assert (d["trace_mask"][:] == feeds["trace_mask"]).all(), "distil fed another trace mask than docs/export.md says"
        traj, logits = sess.run(["trajectory", "trace_logits"], feeds)
        t_norm, t_elem = rel_err(traj, want_traj)
        l_norm, l_elem = rel_err(logits, want_logits, feeds["trace_mask"] > 0)
        print(f"  {name} {dtype}: trajectory max rel err {t_norm:.2e} (elementwise {t_elem:.2e}), "
              f"logits {l_norm:.2e} (elementwise {l_elem:.2e}) over {len(traj)} samples")
        assert t_norm < TOLERANCE and l_norm < TOLERANCE, (t_norm, l_norm)
        # Batch 1 gives the batch's first row: the batch dimension is symbolic.
        one = sess.run(["trajectory"], {k: v[:1] for k, v in feeds.items()})[0]
        assert rel_err(one, traj[:1])[0] < 1e-6


def test_onnx_matches_distil_demo(tmp):
    check_onnx_matches(tmp, "demo")


def test_onnx_matches_distil_two_cameras_accel_curvature(tmp):
    check_onnx_matches(tmp, "rig")


def to_bf16_bits(x):
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + np.uint64(0x7FFF) + ((u >> np.uint64(16)) & np.uint64(1))) >> np.uint64(16)).astype(np.uint16)


def test_safetensors_package_loads_exports(tmp):
    _, _, st = deps()
    from safetensors.numpy import load_file
    for name in VARIANTS:
        ckpt = load_file(f"{tmp}/{name}-ckpt/model.safetensors")
        want = {k: v for k, v in ckpt.items() if not k.startswith("feat_proj.")}
        if name == "demo":
            assert len(want) < len(ckpt), "the demo checkpoint should have a feature head"
        fp32 = load_file(f"{tmp}/{name}-fp32/model.safetensors")
        assert set(fp32) == set(want), sorted(set(fp32) ^ set(want))
        for k, v in want.items():
            assert fp32[k].dtype == np.float32 and np.array_equal(fp32[k], v), k
        fp16 = load_file(f"{tmp}/{name}-fp16/model.safetensors")
        for k, v in want.items():
            assert fp16[k].dtype == np.float16 and np.array_equal(fp16[k], v.astype(np.float16)), k
        raw = dict(st.deserialize(open(f"{tmp}/{name}-bf16/model.safetensors", "rb").read()))
        for k, v in want.items():
            assert raw[k]["dtype"] == "BF16" and list(raw[k]["shape"]) == list(v.shape), k
            assert np.array_equal(np.frombuffer(bytes(raw[k]["data"]), "<u2").reshape(v.shape), to_bf16_bits(v)), k
        with st.safe_open(f"{tmp}/{name}-fp16/model.safetensors", framework="np") as f:
            meta = f.metadata()
        assert meta["format"] == "distil-export" and meta["format_version"] == "1", meta
        model = json.loads(meta["model_config"])
        assert model["feat_dim"] == 0 and model["dim"] == 32, model


def test_config_json_keys(tmp):
    for name, cams, repr_ in (("demo", ["front"], "xyyaw"), ("rig", ["cam1", "cam0"], "accel_curvature")):
        cfg = json.load(open(f"{tmp}/{name}-fp16/config.json"))
        for key in ("format", "format_version", "model", "cameras", "image", "frames", "ego_history", "commands", "trajectory",
                    "trace", "vocab_size", "dtype", "onnx", "source"):
            assert key in cfg, key
        assert cfg["format"] == "distil-export" and cfg["format_version"] == 1 and cfg["dtype"] == "fp16"
        assert cfg["cameras"] == cams, cfg["cameras"]
        m = cfg["model"]
        for key in ("dim", "layers", "heads", "mlp_ratio", "patch", "n_cams", "frames", "img_h", "img_w", "hist", "horizon", "hz",
                    "traj_repr", "vocab", "max_trace", "img_mean", "img_std", "ego_scale", "traj_scale", "layernorm_eps"):
            assert key in m, key
        assert m["n_cams"] == len(cams) and m["traj_repr"] == repr_ and m["feat_dim"] == 0
        assert cfg["image"]["height"] == m["img_h"] and cfg["image"]["width"] == m["img_w"]
        assert cfg["image"]["mean"] == m["img_mean"] and len(cfg["image"]["std"]) == 3
        assert cfg["ego_history"]["steps"] == m["hist"] and len(cfg["ego_history"]["scale"]) == 4
        t = cfg["trajectory"]
        assert t["horizon"] == m["horizon"] and t["hz"] == 10 and t["representation"] == repr_ and t["output_scale"] == [20, 5, 0.5]
        assert cfg["trace"]["max_tokens"] == m["max_trace"] and cfg["vocab_size"] == m["vocab"]
        assert cfg["onnx"] == {"file": "model.onnx", "opset": 17, "dtype": "fp32"}
        vocab = json.load(open(f"{tmp}/{name}-fp16/vocab.json"))
        assert vocab["size"] == cfg["vocab_size"] == len(vocab["pieces"])


def test_export_without_onnx_removes_a_stale_graph(tmp):
    out = f"{tmp}/stale"
    run(DISTIL, "export", f"{tmp}/demo-ckpt", "--out", out, "--onnx")
    assert os.path.exists(f"{out}/model.onnx")
    run(DISTIL, "export", f"{tmp}/demo-ckpt", "--out", out)
    assert not os.path.exists(f"{out}/model.onnx")
    assert json.load(open(f"{out}/config.json"))["onnx"] is None


def test_bad_flags(tmp):
    for args, what in ((["--dtype", "fp8"], "--dtype"), (["--opset", "13"], "--opset"), (["--bogus"], "--bogus"),
                       (["--cameras", "a,b,c"], "--cameras")):
        r = run(DISTIL, "export", f"{tmp}/demo-ckpt", "--out", f"{tmp}/x", *args, check=False)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("distil: error: ") and what in lines[0], (args, r.stderr)
    # Exporting onto the checkpoint itself would overwrite its weights.
    before = open(f"{tmp}/demo-ckpt/model.safetensors", "rb").read()
    r = run(DISTIL, "export", f"{tmp}/demo-ckpt", "--out", f"{tmp}/demo-ckpt/", check=False)
    assert r.returncode == 2 and "another directory" in r.stderr, r.stderr
    assert open(f"{tmp}/demo-ckpt/model.safetensors", "rb").read() == before


if __name__ == "__main__":
    sys.exit(run_suite("distil_test_export_", prepare, globals()))
