#!/usr/bin/env python3
"""The broken-shard corpus: a valid shard written here with h5py (zstd chunks by
direct chunk writes, as hdf5plugin.Zstd lays them out), then one fault at a
time. Every broken shard must make `distil logs validate` exit 2 with a
one-line message naming the file (and the dataset and sample where there is
one); per-sample faults must also be skipped and counted under
`--on-bad-sample skip`, by validate and by the loader (`distil logs load`).
Nothing may crash (run it with DISTIL=build/san/distil for the sanitizers).
A few valid variants (gzip+shuffle, float16, fixed-length strings, contiguous,
no optional datasets) must validate clean, so no fault passes by accident.

Env: DISTIL (the binary, default build/cpu/distil). Prints `TESTS p passed, f failed, s skipped`.
"""
import os
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import zstandard

DISTIL = os.environ.get("DISTIL", "build/cpu/distil")
N, CAMS, F, H, W = 8, ("front", "left"), 2, 6, 10
TH, T, K, KTOP, D, V = 4, 5, 3, 4, 6, 40
ZSTD = 32015
passed = failed = 0


def trace_lengths():
    return [(n * 5) % 7 + 1 for n in range(N)]   # 1..7 tokens, every sample has a trace


def base_arrays():
    """Every dataset of a valid shard, by path."""
    rng = np.random.default_rng(7)
    lens = trace_lengths()
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    M = int(offsets[-1])
    logits = rng.normal(size=(M, KTOP))
    lp = logits - np.log(np.exp(logits).sum(1, keepdims=True) * 1.25)   # mass 0.8
    lp = -np.sort(-lp, axis=1)
    a = {
        "/clip_id": np.arange(N, dtype=np.int64) + 1000,
        "/t0_us": np.arange(N, dtype=np.int64) * 100000,
        "/ego/history": rng.normal(size=(N, TH, 4)).astype(np.float32),
        "/ego/future": rng.normal(size=(N, T, 3)).astype(np.float32),
        "/ego/command": (np.arange(N) % 4).astype(np.int8),
        "/teacher/trajectory": rng.normal(size=(N, K, T, 3)).astype(np.float32),
        "/teacher/weight": rng.uniform(0.1, 1, size=(N, K)).astype(np.float32),
        "/teacher/embedding": rng.normal(size=(N, D)).astype(np.float32),
        "/teacher/trace/offsets": offsets,
        "/teacher/trace/tokens": rng.integers(0, V, size=M).astype(np.int32),
        "/teacher/trace/topk_ids": rng.integers(0, V, size=(M, KTOP)).astype(np.int32),
        "/teacher/trace/topk_logprobs": lp.astype(np.float32),
    }
    for c in CAMS:
        a["/camera/" + c] = rng.integers(0, 256, size=(N, F, H, W, 3)).astype(np.uint8)
    return a


def base_attrs():
    return {"drivelog_version": 1, "fleet": "corpus fleet", "teacher": "corpus teacher v0",
            "hz": 10.0, "cameras": ",".join(CAMS)}


def write_zstd(f, path, arr, rows):
    """A dataset of zstd chunks of `rows` rows, written as compressed bytes."""
    chunk = (min(rows, max(arr.shape[0], 1)),) + arr.shape[1:]
    ds = f.create_dataset(path, shape=arr.shape, dtype=arr.dtype, chunks=chunk,
                          compression=ZSTD, compression_opts=(3,), allow_unknown_filter=True)
    cctx = zstandard.ZstdCompressor(level=3)
    for start in range(0, arr.shape[0], chunk[0]):
        block = np.zeros(chunk, dtype=arr.dtype)   # edge chunks are stored full size
        part = arr[start:start + chunk[0]]
        block[:part.shape[0]] = part
        ds.id.write_direct_chunk((start,) + (0,) * (arr.ndim - 1), cctx.compress(block.tobytes()), filter_mask=0)
    return ds


def write_shard(path, arrays=None, attrs=None, layout="zstd", vocab=None, fixed_strings=False, temperature=1.0):
    arrays = base_arrays() if arrays is None else arrays
    attrs = base_attrs() if attrs is None else attrs
    vocab = ["w%d" % i for i in range(V)] if vocab is None else vocab
    with h5py.File(path, "w") as f:
        for k, v in attrs.items():
            f.attrs[k] = np.bytes_(v) if fixed_strings and isinstance(v, str) else v
        for p, arr in arrays.items():
            per_sample = not p.startswith("/teacher/trace/") or p == "/teacher/trace/offsets"
            if layout == "zstd" and arr.size and arr.ndim >= 1:
                write_zstd(f, p, arr, 1 if per_sample else 5)
            elif layout == "gzip" and arr.size:
                f.create_dataset(p, data=arr, chunks=(min(3, arr.shape[0]),) + arr.shape[1:], compression="gzip", shuffle=True)
            else:
                f.create_dataset(p, data=arr)
        if "/teacher/trace/topk_logprobs" in f and temperature is not None:
            f["/teacher/trace/topk_logprobs"].attrs["temperature"] = temperature
        if vocab is not False:
            if fixed_strings:
                f.create_dataset("/vocab", data=np.array([v.encode() for v in vocab]))
            else:
                f.create_dataset("/vocab", data=vocab, dtype=h5py.string_dtype("utf-8"))
            f["/vocab"].attrs["bos"] = 0
            f["/vocab"].attrs["eos"] = 1
        f.create_dataset("/teacher/trace/text", data=["sample %d" % n for n in range(N)], dtype=h5py.string_dtype("utf-8"))


def run(*args):
    r = subprocess.run([DISTIL, "logs"] + list(args), capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout, r.stderr


def crashed(rc, err):
    return rc < 0 or rc not in (0, 1, 2) or "Sanitizer" in err or "runtime error" in err or "Segmentation" in err


def report(name, problems):
    global passed, failed
    if problems:
        failed += 1
        print("FAIL %s" % name)
        for p in problems:
            print("    " + p)
    else:
        passed += 1
        print("ok   %s" % name)
    sys.stdout.flush()


def error_lines(err):
    return [l for l in err.splitlines() if l.startswith("distil: error:")]


def check_structural(name, paths, words):
    """validate and load both exit 2 with one error line naming every path and the words."""
    problems = []
    for cmd in (["validate"] + paths, ["load"] + paths + ["--batch-size", "2"]):
        rc, out, err = run(*cmd)
        lines = error_lines(err)
        if crashed(rc, err):
            problems.append("%s crashed (rc %d): %s" % (cmd[0], rc, err[-500:]))
        elif rc != 2:
            problems.append("%s: exit %d, expected 2; stderr: %s" % (cmd[0], rc, err.strip()))
        elif len(lines) != 1:
            problems.append("%s: %d error lines, expected 1: %s" % (cmd[0], len(lines), lines))
        else:
            for w in [os.path.basename(p) for p in paths] + words:
                if w not in lines[0]:
                    problems.append("%s: '%s' not in: %s" % (cmd[0], w, lines[0]))
    report(name, problems)


def check_all_structural(name, path, expected):
    """validate lists every structural problem of one shard, one line each
    (expected: a fragment of each, in order); load stops at the first."""
    problems = []
    rc, out, err = run("validate", path)
    lines = error_lines(err)
    if crashed(rc, err) or rc != 2:
        problems.append("validate: exit %d; stderr: %s" % (rc, err.strip()))
    elif len(lines) != len(expected) or any(w not in l for w, l in zip(expected, lines)):
        problems.append("validate: %d lines, expected %d with %s: %s" % (len(lines), len(expected), expected, lines))
    rc, out, err = run("load", path, "--batch-size", "2")
    if rc != 2 or len(error_lines(err)) != 1 or expected[0] not in err:
        problems.append("load: exit %d, expected 2 and one line with %r: %s" % (rc, expected[0], err.strip()))
    report(name, problems)


def check_per_sample(name, path, dataset, sample, words=()):
    """One bad sample: an error naming file, dataset and sample, or a skip counted once."""
    problems = []
    need = [os.path.basename(path), dataset, "at sample %d" % sample] + list(words)
    rc, out, err = run("validate", path)
    lines = error_lines(err)
    if crashed(rc, err):
        problems.append("validate crashed (rc %d): %s" % (rc, err[-500:]))
    elif rc != 2 or len(lines) != 1 or not all(w in lines[0] for w in need):
        problems.append("validate: exit %d, lines %s; expected exit 2 and one line with %s" % (rc, lines, need))
    rc, out, err = run("validate", path, "--on-bad-sample", "skip")
    if crashed(rc, err) or rc != 0 or "1 bad sample skipped" not in out or error_lines(err):
        problems.append("validate --on-bad-sample skip: exit %d, stdout %r, stderr %r" % (rc, out.strip(), err.strip()))
    rc, out, err = run("load", path, "--batch-size", "4", "--on-bad-sample", "skip")
    if crashed(rc, err) or rc != 0 or "1 bad sample skipped" not in out:
        problems.append("load --on-bad-sample skip: exit %d, stdout %r, stderr %r" % (rc, out.strip(), err.strip()))
    rc, out, err = run("load", path, "--batch-size", "4")
    lines = error_lines(err)
    if crashed(rc, err) or rc != 2 or len(lines) != 1 or not all(w in lines[0] for w in need):
        problems.append("load (error): exit %d, lines %s; expected exit 2 and one line with %s" % (rc, lines, need))
    report(name, problems)


def check_corrupt_chunk_of_three(name, path, dataset, first):
    """A damaged chunk of three samples: three bad samples, the first named."""
    problems = []
    rc, out, err = run("validate", path)
    lines = error_lines(err)
    need = [os.path.basename(path), dataset, "at sample %d" % first, "does not decode"]
    if crashed(rc, err) or rc != 2 or len(lines) != 3 or not all(w in lines[0] for w in need):
        problems.append("validate: exit %d, lines %s; expected exit 2 and three lines, the first with %s" % (rc, lines, need))
    rc, out, err = run("load", path, "--batch-size", "4", "--on-bad-sample", "skip")
    if crashed(rc, err) or rc != 0 or "3 bad samples skipped" not in out:
        problems.append("load --on-bad-sample skip: exit %d, stdout %r, stderr %r" % (rc, out.strip(), err.strip()))
    report(name, problems)


def check_valid(name, paths):
    problems = []
    rc, out, err = run("validate", *paths)
    if rc != 0 or "ok" not in out:
        problems.append("validate: exit %d: %s %s" % (rc, out.strip(), err.strip()))
    rc, out, err = run("load", *paths, "--batch-size", "4", "--epochs", "2")
    if rc != 0 or "0 bad samples skipped" not in out:
        problems.append("load: exit %d: %s %s" % (rc, out.strip(), err.strip()))
    report(name, problems)


def mutated(d, name, change):
    """A shard written with change(arrays, attrs) applied to the valid content."""
    a, at = base_arrays(), base_attrs()
    kw = change(a, at) or {}
    path = os.path.join(d, name + ".h5")
    write_shard(path, a, at, **kw)
    return path


def main():
    if not os.path.exists(DISTIL):
        print("skip all: %s not built" % DISTIL)
        print("TESTS 0 passed, 0 failed, 1 skipped")
        return 0
    d = tempfile.mkdtemp(prefix="distil_broken_")
    try:
        corpus(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    print("TESTS %d passed, %d failed, 0 skipped" % (passed, failed))
    return 1 if failed else 0


def corpus(d):
    p = lambda name: os.path.join(d, name)
    lens = trace_lengths()
    off = np.concatenate([[0], np.cumsum(lens)])

    # ---- valid controls ---------------------------------------------------------
    write_shard(p("valid.h5"))
    check_valid("valid zstd shard (direct chunk writes)", [p("valid.h5")])
    a = base_arrays()
    a["/teacher/trace/topk_logprobs"] = a["/teacher/trace/topk_logprobs"].astype(np.float16)
    a["/teacher/embedding"] = a["/teacher/embedding"].astype(np.float16)
    write_shard(p("valid_gzip_f16.h5"), a, layout="gzip", fixed_strings=True, temperature=0.8)
    check_valid("valid gzip+shuffle, float16, fixed-length strings", [p("valid_gzip_f16.h5")])
    a = base_arrays()
    for k in ("/ego/future", "/ego/command", "/teacher/weight", "/teacher/embedding"):
        del a[k]
    write_shard(p("valid_minimal.h5"), a, layout="contiguous", temperature=None)
    check_valid("valid contiguous, no optional datasets", [p("valid_minimal.h5")])

    path = p("valid_unwritten_chunk.h5")
    write_shard(path)
    with h5py.File(path, "a") as f:   # a chunk never written reads as the fill value (zeros): still valid
        del f["/camera/left"]
        ds = f.create_dataset("/camera/left", shape=(N, F, H, W, 3), dtype=np.uint8, chunks=(1, F, H, W, 3),
                              compression=ZSTD, compression_opts=(3,), allow_unknown_filter=True)
        cctx = zstandard.ZstdCompressor(level=3)
        for n in range(N):
            if n != 3:
                ds.id.write_direct_chunk((n, 0, 0, 0, 0), cctx.compress(np.full((1, F, H, W, 3), n, np.uint8).tobytes()))
    check_valid("valid with a chunk never written", [path])

    # ---- structural faults: the whole shard ---------------------------------------
    with open(p("valid.h5"), "rb") as f:
        blob = f.read()
    with open(p("truncated.h5"), "wb") as f:
        f.write(blob[: len(blob) // 2])
    check_structural("truncated file", [p("truncated.h5")], ["truncated"])
    with open(p("not_hdf5.h5"), "wb") as f:
        f.write(b"this is not an HDF5 file\n" * 40)
    check_structural("not an HDF5 file", [p("not_hdf5.h5")], ["not a readable HDF5 file"])

    def drop(k):
        def change(a, at):
            del a[k]
        return change
    check_structural("missing dataset", [mutated(d, "missing", drop("/teacher/trajectory"))], ["/teacher/trajectory", "missing"])
    check_structural("missing camera", [mutated(d, "missing_cam", drop("/camera/left"))], ["/camera/left", "missing"])

    def retype(k, dt):
        def change(a, at):
            a[k] = a[k].astype(dt)
        return change
    # Wider types where the values survive (numpy's float64, int64) are
    # valid (tests/test_interop.py); another kind of number is not.
    check_structural("wrong dtype: int64 history", [mutated(d, "dtype", retype("/ego/history", np.int64))],
                     ["/ego/history", "dtype int64"])
    check_structural("wrong dtype: float32 top-k ids", [mutated(d, "dtype_ids", retype("/teacher/trace/topk_ids", np.float32))],
                     ["/teacher/trace/topk_ids", "dtype float32"])
    check_structural("wrong dtype: float16 trajectory", [mutated(d, "dtype_f16", retype("/teacher/trajectory", np.float16))],
                     ["/teacher/trajectory", "dtype float16"])

    def several(a, at):
        del at["fleet"]
        del a["/teacher/trajectory"]
        a["/ego/history"] = a["/ego/history"].astype(np.int64)
        a["/t0_us"] = a["/t0_us"][:-1]
        a["/camera/front"] = np.zeros((N, F, H, W, 4), np.uint8)
    check_all_structural("every structural problem listed", mutated(d, "several", several),
                         ["root attribute fleet: missing", "/ego/history: dtype int64", "/teacher/trajectory: missing",
                          "/t0_us: 7 samples", "/camera/front: shape"])

    def flatten(a, at):
        a["/teacher/trajectory"] = a["/teacher/trajectory"].reshape(N, K, T * 3)
    check_structural("wrong rank", [mutated(d, "rank", flatten)], ["/teacher/trajectory", "rank 3, expected 4"])

    def rgba(a, at):
        a["/camera/front"] = np.zeros((N, F, H, W, 4), np.uint8)
    check_structural("camera with 4 channels", [mutated(d, "rgba", rgba)], ["/camera/front", "expected [N, F, H, W, 3]"])

    def short(a, at):
        a["/t0_us"] = a["/t0_us"][:-1]
    check_structural("mismatched N", [mutated(d, "short", short)], ["/t0_us", "7 samples", "has 8"])

    def end_off(a, at):
        a["/teacher/trace/offsets"][-1] -= 1
    check_structural("offsets[N] != M", [mutated(d, "offsets_end", end_off)], ["/teacher/trace/offsets", "offsets[N]"])

    def start_off(a, at):
        a["/teacher/trace/offsets"][0] = 1
    check_structural("offsets[0] != 0", [mutated(d, "offsets_start", start_off)], ["/teacher/trace/offsets", "offsets[0] = 1"])

    def no_teacher(a, at):
        del at["teacher"]
    check_structural("missing root attribute", [mutated(d, "no_attr", no_teacher)], ["teacher", "missing"])

    def version(a, at):
        at["drivelog_version"] = 2
    check_structural("wrong drivelog_version", [mutated(d, "version", version)], ["drivelog_version: 2"])

    def hz_string(a, at):
        at["hz"] = "ten"
    check_structural("hz is a string", [mutated(d, "hz_string", hz_string)], ["hz", "expected a float"])

    check_structural("missing vocab", [mutated(d, "no_vocab", lambda a, at: {"vocab": False})], ["/vocab", "missing"])

    path = p("lz4.h5")
    write_shard(path)
    with h5py.File(path, "a") as f:
        del f["/ego/history"]
        ds = f.create_dataset("/ego/history", shape=(N, TH, 4), dtype=np.float32, chunks=(1, TH, 4),
                              compression=32004, allow_unknown_filter=True)
        for n in range(N):
            ds.id.write_direct_chunk((n, 0, 0), b"\0" * 20, filter_mask=0)
    check_structural("a filter distil lacks (lz4)", [path], ["/ego/history", "lz4"])

    # ---- cross-shard faults: both files named -------------------------------------------
    write_shard(p("vocab_b.h5"), vocab=["w%d" % i for i in range(V - 1)] + ["other"])
    check_structural("vocabs differ across shards", [p("valid.h5"), p("vocab_b.h5")], ["/vocab piece %d" % (V - 1)])
    write_shard(p("vocab_size_b.h5"), vocab=["w%d" % i for i in range(V + 2)])
    check_structural("vocab sizes differ across shards", [p("valid.h5"), p("vocab_size_b.h5")], ["/vocab size V"])
    at = base_attrs()
    at["hz"] = 20.0
    write_shard(p("hz_b.h5"), attrs=at)
    check_structural("hz differs across shards", [p("valid.h5"), p("hz_b.h5")], ["hz 20 differs"])
    at = base_attrs()
    at["cameras"] = "left,front"
    write_shard(p("cams_b.h5"), attrs=at)
    check_structural("cameras differ across shards", [p("valid.h5"), p("cams_b.h5")], ["cameras 'left,front' differ"])
    a = base_arrays()
    a["/ego/history"] = np.zeros((N, TH + 2, 4), np.float32)
    write_shard(p("th_b.h5"), a)
    check_structural("history length differs across shards", [p("valid.h5"), p("th_b.h5")], ["Th 6 differs"])

    # ---- per-sample faults: the sample is bad ----------------------------------------------
    def poke(name, key, index, value, dtype=None):
        def change(a, at):
            if dtype is not None:
                a[key] = a[key].astype(dtype)
            a[key][index] = value
        return mutated(d, name, change)
    check_per_sample("NaN in the history", poke("nan", "/ego/history", (3, 1, 2), np.nan), "/ego/history", 3, ["NaN"])
    check_per_sample("Inf in a trajectory", poke("inf", "/teacher/trajectory", (2, 1, 4, 0), np.inf), "/teacher/trajectory", 2, ["Inf"])
    check_per_sample("NaN in a float16 log-prob", poke("nan_f16", "/teacher/trace/topk_logprobs", (int(off[6]), 1), np.nan, np.float16),
                     "/teacher/trace/topk_logprobs", 6, ["NaN"])
    check_per_sample("token id >= V", poke("token", "/teacher/trace/tokens", int(off[4]) + lens[4] - 1, V), "/teacher/trace/tokens", 4,
                     ["token id %d" % V])
    check_per_sample("negative top-k id", poke("topk_id", "/teacher/trace/topk_ids", (int(off[1]), 2), -1), "/teacher/trace/topk_ids", 1,
                     ["id -1"])
    check_per_sample("log-prob > 0", poke("logprob", "/teacher/trace/topk_logprobs", (int(off[5]), 0), 0.5),
                     "/teacher/trace/topk_logprobs", 5, ["log-prob 0.5 > 0"])

    def mass(a, at):
        a["/teacher/trace/topk_logprobs"][int(off[2])] = np.log([0.6, 0.3, 0.1, 0.1])
    check_per_sample("probability mass > 1", mutated(d, "mass", mass), "/teacher/trace/topk_logprobs", 2, ["sum to 1.1"])

    def back(a, at):
        a["/teacher/trace/offsets"][6] = a["/teacher/trace/offsets"][4]   # sample 5 runs backwards
    check_per_sample("decreasing offsets", mutated(d, "offsets_back", back), "/teacher/trace/offsets", 5, ["not non-decreasing"])
    check_per_sample("negative teacher weight", poke("weight", "/teacher/weight", (7, 1), -0.25), "/teacher/weight", 7,
                     ["negative weight"])
    check_per_sample("command out of range", poke("command", "/ego/command", 0, 5), "/ego/command", 0, ["command 5"])
    check_per_sample("NaN in the embedding", poke("emb", "/teacher/embedding", (4, 0), np.nan), "/teacher/embedding", 4, ["NaN"])

    path = p("corrupt_chunk.h5")
    write_shard(path)
    with h5py.File(path, "r") as f:
        info = f["/camera/left"].id.get_chunk_info_by_coord((6, 0, 0, 0, 0))
    with open(path, "r+b") as f:
        f.seek(info.byte_offset)
        f.write(b"\xde\xad\xbe\xef" * 2)   # the zstd frame's magic number and header
    check_per_sample("corrupted zstd chunk", path, "/camera/left", 6, ["does not decode", "zstd"])

    path = p("short_zstd_frame.h5")
    write_shard(path)
    with h5py.File(path, "a") as f:
        frame = zstandard.ZstdCompressor(level=3).compress(base_arrays()["/teacher/trajectory"][3].tobytes())
        f["/teacher/trajectory"].id.write_direct_chunk((3, 0, 0, 0), frame[: len(frame) // 2], filter_mask=0)
    check_per_sample("zstd frame cut short", path, "/teacher/trajectory", 3, ["does not decode"])

    path = p("corrupt_gzip.h5")
    write_shard(path, layout="gzip")
    with h5py.File(path, "r") as f:
        info = f["/ego/history"].id.get_chunk_info_by_coord((3, 0, 0))   # chunks of 3 samples: 3, 4 and 5
    with open(path, "r+b") as f:
        f.seek(info.byte_offset)
        f.write(b"\xff" * 6)   # the zlib header
    check_corrupt_chunk_of_three("corrupted deflate chunk", path, "/ego/history", 3)

    path = p("absurd_shape.h5")
    write_shard(path)
    with h5py.File(path, "a") as f:   # declared, never written: a damaged header must not become a huge allocation
        del f["/teacher/embedding"]
        f.create_dataset("/teacher/embedding", shape=(N, 1 << 30), dtype=np.float32, chunks=(1, 1 << 16))
    check_structural("absurd declared shape", [path], ["/teacher/embedding", "beyond what distil reads"])


if __name__ == "__main__":
    sys.exit(main())
