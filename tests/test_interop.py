#!/usr/bin/env python3
"""Drive-log interop, both ways, with Debian's h5py and zstandard (no hdf5plugin).

(a) Shards written by h5py alone are accepted by `distil logs validate`: zstd
    chunks (filter 32015, written with write_direct_chunk + zstandard, exactly
    the bytes hdf5plugin.Zstd writes), deflate + shuffle, and contiguous
    storage; float16 log-probs and embedding; variable- and fixed-length
    strings. A bad value hidden inside a zstd chunk is found, which shows that
    distil decodes the chunk rather than only looking at the structure.
(b) Shards written by `distil logs synth` are read by h5py: every dataset's
    shape and dtype as the contract says, every zstd chunk decompresses with
    the zstandard module to the bytes an uncompressed copy holds, and the
    traces decode through /vocab to /teacher/trace/text.

Run from the repository root; $DISTIL is the binary (tests/run.sh sets it).
Prints "TESTS p passed, f failed, s skipped".
"""
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback

import h5py
import numpy as np
import zstandard
from h5py import h5d, h5p, h5s, h5t, h5z

DISTIL = os.environ.get("DISTIL", "build/cpu/distil")
ZSTD_ID = 32015


class Skip(Exception):
    pass


# ---- reading and writing zstd chunks by hand ----------------------------------

def filter_ids(ds):
    if ds.chunks is None:
        return []
    plist = ds.id.get_create_plist()
    return [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]


def read_dataset(ds):
    """Every element of ds; zstd chunks (filter 32015) are decoded here with
    zstandard, since h5py has no zstd filter without hdf5plugin."""
    if ZSTD_ID not in filter_ids(ds):
        return ds[()]
    if filter_ids(ds) != [ZSTD_ID]:
        raise AssertionError(f"{ds.name}: zstd combined with other filters {filter_ids(ds)}")
    out = np.empty(ds.shape, ds.dtype)
    dctx = zstandard.ZstdDecompressor()
    for i in range(ds.id.get_num_chunks()):
        info = ds.id.get_chunk_info(i)
        mask, raw = ds.id.read_direct_chunk(info.chunk_offset)
        chunk = np.frombuffer(dctx.decompress(raw) if mask == 0 else raw, ds.dtype).reshape(ds.chunks)
        dst = tuple(slice(o, min(o + c, n)) for o, c, n in zip(info.chunk_offset, ds.chunks, ds.shape))
        out[dst] = chunk[tuple(slice(0, s.stop - s.start) for s in dst)]
    return out


def create_zstd_dataset(group, name, data, chunks, level=3):
    """A dataset with filter 32015 (cd_values: the level) whose chunks are
    compressed here and written raw, the bytes hdf5plugin.Zstd would write."""
    data = np.ascontiguousarray(data)
    dcpl = h5p.create(h5p.DATASET_CREATE)
    dcpl.set_chunk(tuple(chunks))
    dcpl.set_filter(ZSTD_ID, h5z.FLAG_OPTIONAL, (level,))
    dsid = h5d.create(group.id, name.encode(), h5t.py_create(data.dtype, logical=True),
                      h5s.create_simple(data.shape), dcpl=dcpl)
    ds = h5py.Dataset(dsid)
    cctx = zstandard.ZstdCompressor(level=level)
    grid = [math.ceil(n / c) for n, c in zip(data.shape, chunks)]
    for index in np.ndindex(*grid):
        offset = tuple(i * c for i, c in zip(index, chunks))
        block = np.zeros(chunks, data.dtype)   # edge chunks are padded to full size
        src = tuple(slice(o, min(o + c, n)) for o, c, n in zip(offset, chunks, data.shape))
        block[tuple(slice(0, s.stop - s.start) for s in src)] = data[src]
        ds.id.write_direct_chunk(offset, cctx.compress(block.tobytes()))
    return ds


# ---- an h5py-written shard ---------------------------------------------------

VOCAB = ["<pad>", "<bos>", "<eos>", "<unk>", ",", "stop", "go", "red", "green", "light", "ahead", "the"]


def shard_content(n=6, seed=0):
    """Valid contents for a small shard: 2 cameras, F 2, 8x12 pixels, Th 5,
    T 6, K 3, k 4, D 8, traces of 3..7 tokens."""
    rng = np.random.default_rng(seed)
    V, k, Th, T, K = len(VOCAB), 4, 5, 6, 3
    lengths = rng.integers(3, 8, n)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    m = int(offsets[-1])
    tokens = rng.integers(3, V, m).astype(np.int32)
    for i in range(n):
        tokens[offsets[i]] = 1
        tokens[offsets[i + 1] - 1] = 2
    logits = rng.normal(0, 2, (m, V))
    logits[np.arange(m), tokens] += 6.0
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    topk_ids = np.argsort(-logp, 1)[:, :k].astype(np.int32)
    topk_logprobs = np.take_along_axis(logp, topk_ids, 1)
    hist = rng.normal(0, 1, (n, Th, 4)).astype(np.float32)
    hist[:, -1, :3] = 0.0
    hist[:, :, 3] = np.abs(hist[:, :, 3]) + 5.0
    text = [" ".join(VOCAB[t] for t in tokens[offsets[i] + 1:offsets[i + 1] - 1]) for i in range(n)]
    return {
        "/clip_id": np.arange(n, dtype=np.int64) + 1000,
        "/t0_us": np.arange(n, dtype=np.int64) * 100000,
        "/camera/front": rng.integers(0, 256, (n, 2, 8, 12, 3), dtype=np.uint8),
        "/camera/side": rng.integers(0, 256, (n, 2, 8, 12, 3), dtype=np.uint8),
        "/ego/history": hist,
        "/ego/future": rng.normal(0, 3, (n, T, 3)).astype(np.float32),
        "/ego/command": rng.integers(0, 4, n).astype(np.int8),
        "/teacher/trajectory": rng.normal(0, 3, (n, K, T, 3)).astype(np.float32),
        "/teacher/weight": rng.uniform(0, 1, (n, K)).astype(np.float32),
        "/teacher/trace/offsets": offsets,
        "/teacher/trace/tokens": tokens,
        "/teacher/trace/topk_ids": topk_ids,
        "/teacher/trace/topk_logprobs": topk_logprobs.astype(np.float16),
        "/teacher/embedding": rng.normal(0, 1, (n, 8)).astype(np.float16),
        "text": text,
    }


def write_h5py_shard(path, layout, strings="vlen", content=None, trace_rows=5):
    """layout: 'zstd' (one sample per chunk, trace chunks of trace_rows rows),
    'deflate' (gzip + shuffle, two samples per chunk) or 'contiguous'."""
    c = content if content is not None else shard_content()
    n = len(c["/clip_id"])
    with h5py.File(path, "w") as f:
        def text_value(s):
            return s if strings == "vlen" else np.bytes_(s.encode())

        f.attrs["drivelog_version"] = 1
        f.attrs["fleet"] = text_value("h5py interop fleet")
        f.attrs["teacher"] = text_value("test teacher v0")
        f.attrs["hz"] = 10.0
        f.attrs["cameras"] = text_value("front,side")
        for path_, data in c.items():
            if not path_.startswith("/"):
                continue
            group = f.require_group(os.path.dirname(path_))
            name = os.path.basename(path_)
            per_trace = path_.startswith("/teacher/trace/") and path_ != "/teacher/trace/offsets"
            if layout == "zstd":
                chunks = ((trace_rows,) if per_trace else (1,)) + data.shape[1:]
                chunks = (min(chunks[0], data.shape[0]),) + chunks[1:]
                create_zstd_dataset(group, name, data, chunks)
            elif layout == "deflate":
                chunks = (min(5 if per_trace else 2, data.shape[0]),) + data.shape[1:]
                group.create_dataset(name, data=data, chunks=chunks, compression="gzip", shuffle=True)
            else:
                group.create_dataset(name, data=data)
        f["/teacher/trace/topk_logprobs"].attrs["temperature"] = 1.0
        if strings == "vlen":
            str_type = h5py.string_dtype("utf-8")
            f.create_dataset("/teacher/trace/text", data=c["text"], dtype=str_type)
            f.create_dataset("/vocab", data=VOCAB, dtype=str_type)
        else:
            f.create_dataset("/teacher/trace/text", data=np.array([s.encode() for s in c["text"]], dtype="S64"))
            f.create_dataset("/vocab", data=np.array([s.encode() for s in VOCAB], dtype="S8"))
        f["/vocab"].attrs["bos"] = 1
        f["/vocab"].attrs["eos"] = 2
    return n


# ---- running distil -----------------------------------------------------------

def distil(*args, timeout=120):
    return subprocess.run([DISTIL, *args], capture_output=True, text=True, timeout=timeout)


def require_subcommand(sub):
    """Skip when `distil logs SUB` is not built yet (its placeholder says so)."""
    r = distil("logs", sub, "--help")
    blob = r.stdout + r.stderr
    if "being built" in blob:
        raise Skip(f"'distil logs {sub}' is not built yet")


def validate(*paths):
    require_subcommand("validate")
    return distil("logs", "validate", *paths)


def synth(out, *extra):
    require_subcommand("synth")
    r = distil("logs", "synth", "--out", out, *extra)
    assert r.returncode == 0, f"synth failed ({r.returncode}): {r.stderr.strip()}"
    return r


# ---- (a) h5py writes, distil reads ----------------------------------------------

def check_validates(tmp, layout, strings="vlen"):
    path = os.path.join(tmp, f"h5py-{layout}-{strings}.h5")
    write_h5py_shard(path, layout, strings)
    r = validate(path)
    assert r.returncode == 0, f"validate rejected a valid {layout} shard: {(r.stdout + r.stderr).strip()}"
    return path


def test_h5py_zstd_shard_validates(tmp):
    check_validates(tmp, "zstd")


def test_h5py_deflate_shuffle_shard_validates(tmp):
    check_validates(tmp, "deflate")


def test_h5py_contiguous_shard_validates(tmp):
    check_validates(tmp, "contiguous")


def test_h5py_fixed_length_strings_validate(tmp):
    check_validates(tmp, "deflate", strings="fixed")


def test_h5py_shards_of_mixed_storage_form_one_set(tmp):
    paths = [check_validates(tmp, layout) for layout in ("zstd", "deflate", "contiguous")]
    r = validate(*paths)
    assert r.returncode == 0, f"validate rejected three agreeing shards: {(r.stdout + r.stderr).strip()}"


def expect_bad_sample(tmp, name, mutate, dataset, sample):
    """A zstd shard with one bad value inside a compressed chunk: validate must
    exit 2 and name the file, the dataset and the sample."""
    content = shard_content()
    mutate(content)
    path = os.path.join(tmp, name)
    write_h5py_shard(path, "zstd", content=content)
    r = validate(path)
    out = r.stdout + r.stderr
    assert r.returncode == 2, f"validate exited {r.returncode} on {name}: {out.strip()}"
    lines = [l for l in out.splitlines() if name in l and dataset in l and re.search(rf"\b{sample}\b", l)]
    assert lines, f"no line names {name}, {dataset} and sample {sample}: {out.strip()}"


def test_nan_inside_a_zstd_chunk_is_found(tmp):
    def mutate(c):
        c["/teacher/trajectory"][4, 1, 2, 0] = np.nan
    expect_bad_sample(tmp, "nan-in-zstd.h5", mutate, "trajectory", 4)


def test_token_id_out_of_range_inside_a_zstd_chunk_is_found(tmp):
    def mutate(c):
        at = int(c["/teacher/trace/offsets"][3]) + 1
        c["/teacher/trace/tokens"][at] = len(VOCAB) + 5
    expect_bad_sample(tmp, "token-in-zstd.h5", mutate, "tokens", 3)


def test_each_shard_of_a_set_is_read_from_its_own_file(tmp):
    """Two shards alike but for a bad token in the second, each trace dataset
    one chunk (as distil synth writes them): reading the second must not reuse
    the chunk decoded from the first."""
    content = shard_content()
    rows = int(content["/teacher/trace/offsets"][-1])
    good = os.path.join(tmp, "pair-good.h5")
    write_h5py_shard(good, "zstd", trace_rows=rows)
    n = len(content["/clip_id"])
    content["/teacher/trace/tokens"][rows - 2] = len(VOCAB) + 1
    bad = os.path.join(tmp, "pair-bad.h5")
    write_h5py_shard(bad, "zstd", content=content, trace_rows=rows)
    r = validate(good, bad)
    out = r.stdout + r.stderr
    assert r.returncode == 2, f"validate exited {r.returncode}; the bad token in {bad} went unseen: {out.strip()}"
    assert any("pair-bad.h5" in l and "tokens" in l and re.search(rf"\b{n - 1}\b", l) for l in out.splitlines()), \
        f"no line names pair-bad.h5, tokens and sample {n - 1}: {out.strip()}"


def test_the_documented_h5py_example_writes_a_valid_shard(tmp):
    """docs/drive-log-format.md's first python block, run as it is."""
    doc = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "drive-log-format.md")).read()
    blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
    assert blocks, "no python block in docs/drive-log-format.md"
    script, shard = os.path.join(tmp, "write_shard.py"), os.path.join(tmp, "doc-example.h5")
    with open(script, "w") as f:
        f.write(blocks[0])
    r = subprocess.run([sys.executable, script, shard], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"the example failed: {r.stderr.strip()}"
    with h5py.File(shard, "r") as f:
        assert filter_ids(f["/ego/history"]) == [ZSTD_ID]
        assert read_dataset(f["/teacher/trace/tokens"]).tolist()[:7] == [1, 4, 5, 6, 7, 8, 2]
    r = validate(shard)
    assert r.returncode == 0, f"validate rejected the documented example: {(r.stdout + r.stderr).strip()}"


# ---- (b) distil writes, h5py reads ----------------------------------------------

# path: (dtype kinds allowed, shape as a function of the sizes)
def contract_shapes(n, m, F, H, W, Th, T, K, k, D, V):
    return {
        "/clip_id": ("i8", (n,)), "/t0_us": ("i8", (n,)),
        "/camera/front": ("u1", (n, F, H, W, 3)),
        "/ego/history": ("f4", (n, Th, 4)), "/ego/future": ("f4", (n, T, 3)), "/ego/command": ("i1", (n,)),
        "/teacher/trajectory": ("f4", (n, K, T, 3)), "/teacher/weight": ("f4", (n, K)),
        "/teacher/trace/offsets": ("i8", (n + 1,)), "/teacher/trace/tokens": ("i4", (m,)),
        "/teacher/trace/topk_ids": ("i4", (m, k)), "/teacher/trace/topk_logprobs": ("f2 f4", (m, k)),
        "/teacher/embedding": ("f2 f4", (n, D)),
    }


def synth_pair(tmp):
    """The same small demo fleet twice: zstd (the default) and uncompressed."""
    zstd_dir, plain_dir = os.path.join(tmp, "synth-zstd"), os.path.join(tmp, "synth-plain")
    if not os.path.isdir(zstd_dir):
        synth(zstd_dir, "--shards", "1", "--samples-per-shard", "40", "--seed", "3", "--eval-shards", "1")
        synth(plain_dir, "--shards", "1", "--samples-per-shard", "40", "--seed", "3", "--eval-shards", "1",
              "--zstd-level", "0")
    return os.path.join(zstd_dir, "train", "shard-00000.h5"), os.path.join(plain_dir, "train", "shard-00000.h5")


def as_text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def test_synth_shard_has_the_contract_layout(tmp):
    path, _ = synth_pair(tmp)
    with h5py.File(path, "r") as f:
        assert int(f.attrs["drivelog_version"]) == 1
        assert float(f.attrs["hz"]) == 10.0
        assert as_text(f.attrs["cameras"]) == "front"
        for name in ("fleet", "teacher"):
            assert as_text(f.attrs[name]), f"empty root attribute {name}"
        n = f["/clip_id"].shape[0]
        m = f["/teacher/trace/tokens"].shape[0]
        F, H, W = f["/camera/front"].shape[1:4]
        assert (F, H, W) == (2, 32, 64), f"demo camera is {(F, H, W)}"
        Th, T, K, k, D = (f["/ego/history"].shape[1], f["/ego/future"].shape[1], f["/teacher/trajectory"].shape[1],
                          f["/teacher/trace/topk_ids"].shape[1], f["/teacher/embedding"].shape[1])
        assert (Th, T, K, k, D) == (10, 30, 4, 8, 32), f"demo sizes {(Th, T, K, k, D)}"
        V = f["/vocab"].shape[0]
        assert V < 64
        for p, (kinds, shape) in contract_shapes(n, m, F, H, W, Th, T, K, k, D, V).items():
            ds = f[p]
            assert ds.shape == shape, f"{p}: shape {ds.shape}, want {shape}"
            assert ds.dtype.str[1:] in kinds.split(), f"{p}: dtype {ds.dtype}, want {kinds}"
        for p in ("/teacher/trace/text", "/vocab"):
            assert h5py.check_string_dtype(f[p].dtype) is not None, f"{p} is not a string dataset"
        assert f["/teacher/trace/text"].shape == (n,)
        assert float(f["/teacher/trace/topk_logprobs"].attrs["temperature"]) == 1.0
        bos, eos = int(f["/vocab"].attrs["bos"]), int(f["/vocab"].attrs["eos"])
        vocab = [as_text(v) for v in f["/vocab"][()]]
        assert vocab[bos] == "<bos>" and vocab[eos] == "<eos>"
        assert {"<pad>", "<unk>"} <= set(vocab)


def test_synth_zstd_chunks_decode_to_the_uncompressed_bytes(tmp):
    zpath, ppath = synth_pair(tmp)
    checked = 0
    with h5py.File(zpath, "r") as fz, h5py.File(ppath, "r") as fp:
        def visit(name, obj):
            nonlocal checked
            if not isinstance(obj, h5py.Dataset) or h5py.check_string_dtype(obj.dtype) is not None:
                return
            plist = obj.id.get_create_plist()
            filters = [plist.get_filter(i) for i in range(plist.get_nfilters())]
            assert [flt[0] for flt in filters] == [ZSTD_ID], f"{name}: filters {filters}"
            assert tuple(filters[0][2]) == (3,), f"{name}: zstd cd_values {filters[0][2]}, want the level (3,)"
            if obj.ndim > 1 and name != "teacher/trace/topk_ids" and name != "teacher/trace/topk_logprobs":
                assert obj.chunks[0] == 1 and obj.chunks[1:] == obj.shape[1:], f"{name}: chunks {obj.chunks}"
            plain = fp[name]
            assert filter_ids(plain) == [], f"uncompressed copy of {name} has filters"
            decoded, direct = read_dataset(obj), plain[()]
            assert decoded.dtype == direct.dtype and np.array_equal(decoded, direct), f"{name}: zstd != plain"
            checked += 1
        fz.visititems(visit)
    assert checked >= 13, f"only {checked} numeric datasets"


def test_synth_traces_decode_through_the_vocab(tmp):
    path, _ = synth_pair(tmp)
    with h5py.File(path, "r") as f:
        vocab = [as_text(v) for v in f["/vocab"][()]]
        offsets = read_dataset(f["/teacher/trace/offsets"])
        tokens = read_dataset(f["/teacher/trace/tokens"])
        ids = read_dataset(f["/teacher/trace/topk_ids"])
        logprobs = read_dataset(f["/teacher/trace/topk_logprobs"]).astype(np.float64)
        text = [as_text(t) for t in f["/teacher/trace/text"][()]]
    assert offsets[0] == 0 and np.all(np.diff(offsets) >= 2) and offsets[-1] == len(tokens)
    assert tokens.min() >= 0 and tokens.max() < len(vocab)
    assert np.all(logprobs <= 1e-3) and np.all(np.exp(logprobs).sum(1) <= 1 + 1e-3)
    assert np.all(ids[:, 0] == tokens), "the emitted token is not the teacher's most likely one"
    assert np.all(np.diff(logprobs, axis=1) <= 1e-6), "top-k not sorted, most likely first"
    for i, line in enumerate(text):
        words = [vocab[t] for t in tokens[offsets[i]:offsets[i + 1]]]
        assert words[0] == "<bos>" and words[-1] == "<eos>", f"sample {i}: {words}"
        joined = " ".join(words[1:-1]).replace(" ,", ",").replace(" .", ".")
        assert joined == line, f"sample {i}: tokens say {joined!r}, text says {line!r}"


def test_synth_ego_conventions(tmp):
    path, _ = synth_pair(tmp)
    with h5py.File(path, "r") as f:
        hist, fut = read_dataset(f["/ego/history"]), read_dataset(f["/ego/future"])
        traj, weight = read_dataset(f["/teacher/trajectory"]), read_dataset(f["/teacher/weight"])
    assert np.all(hist[:, -1, :3] == 0.0), "the last history row is not (0, 0, 0, v0)"
    v0 = hist[:, -1, 3]
    assert np.all(v0 > 0)
    # Time runs forward: the history lies behind (x < 0), the first future step
    # ahead by about v0 / hz.
    assert np.all(hist[:, 0, 0] < 0)
    step = np.linalg.norm(fut[:, 0, :2], axis=1)
    assert np.all(np.abs(step - v0 / 10.0) < 0.15), "first future step does not match v0 / hz"
    assert np.all(weight >= 0) and np.allclose(weight.sum(1), 1.0, atol=1e-5)
    assert np.all(np.isfinite(traj))


def test_synth_shards_validate(tmp):
    zpath, ppath = synth_pair(tmp)
    r = validate(zpath, ppath)
    assert r.returncode == 0, f"validate rejected synth shards: {(r.stdout + r.stderr).strip()}"


# ---- (c) numpy's default dtypes ----------------------------------------------------

# What a fleet engineer's numpy writes without asking: int64 integers,
# float64 floats (and an int32 /clip_id from a narrower source).
NUMPY_DEFAULTS = {
    "/clip_id": np.int32, "/t0_us": np.int64, "/ego/command": np.int64, "/ego/history": np.float64,
    "/ego/future": np.float64, "/teacher/trajectory": np.float64, "/teacher/weight": np.float64,
    "/teacher/trace/tokens": np.int64, "/teacher/trace/topk_ids": np.int64,
    "/teacher/trace/topk_logprobs": np.float64, "/teacher/embedding": np.float64,
}


def numpy_default_copy(src, dst, poke=None):
    """src (uncompressed) rewritten with NUMPY_DEFAULTS; poke(arrays) may change values."""
    shutil.copy(src, dst)
    with h5py.File(dst, "a") as f:
        arrays = {k: f[k][()].astype(t) for k, t in NUMPY_DEFAULTS.items()}
        if poke:
            poke(arrays)
        for k, v in arrays.items():
            del f[k]
            f.create_dataset(k, data=v)
    return dst


def train_losses(tmp, name, shard_glob):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from harness import tiny_recipe
    recipe = tiny_recipe(os.path.join(tmp, name + ".yaml"), data__train=f'["{shard_glob}"]', data__eval="[]",
                         train__steps=3)
    r = distil("train", recipe, "--out", os.path.join(tmp, name), timeout=300)
    assert r.returncode == 0, f"train on {shard_glob}: {r.stderr.strip()}"
    with open(os.path.join(tmp, name, "metrics.jsonl")) as f:
        return [line.split('"loss": ')[1].split(",")[0] for line in f if '"loss"' in line]


def test_numpy_default_dtypes_train_like_the_contract_types(tmp):
    _, plain = synth_pair(tmp)
    os.makedirs(os.path.join(tmp, "numpy"), exist_ok=True)
    wide = numpy_default_copy(plain, os.path.join(tmp, "numpy", "shard-00000.h5"))
    r = validate(wide)
    assert r.returncode == 0, f"validate refused numpy's dtypes: {(r.stdout + r.stderr).strip()}"
    want = train_losses(tmp, "run_contract", os.path.dirname(plain) + "/*.h5")
    got = train_losses(tmp, "run_numpy", os.path.join(tmp, "numpy") + "/*.h5")
    assert got == want and len(got) == 3, f"losses {got} on numpy's dtypes, {want} on the contract's"


def test_a_value_that_does_not_fit_its_field_is_a_bad_sample(tmp):
    _, plain = synth_pair(tmp)

    def poke(a):
        a["/ego/command"][5] = 300            # int64 on disk, int8 in the contract
        a["/ego/history"][7, 0, 0] = 1e300    # finite as float64, not as float32
    bad = numpy_default_copy(plain, os.path.join(tmp, "numpy_bad.h5"), poke)
    r = validate(bad)
    lines = [l for l in r.stderr.splitlines() if l.startswith("distil: error:")]
    assert r.returncode == 2 and len(lines) == 2, r.stderr
    assert "/ego/command: value 300 (element 0) does not fit int8 at sample 5" in lines[0], lines[0]
    assert "/ego/history: value 1e+300 (element 0) does not fit float32 at sample 7" in lines[1], lines[1]


def test_a_field_of_another_kind_is_refused(tmp):
    _, plain = synth_pair(tmp)
    path = os.path.join(tmp, "int_history.h5")
    shutil.copy(plain, path)
    with h5py.File(path, "a") as f:
        h = f["/ego/history"][()]
        del f["/ego/history"]
        f.create_dataset("/ego/history", data=h.astype(np.int64))
    r = validate(path)
    assert r.returncode == 2 and "/ego/history: dtype int64, expected float32 (or float64)" in r.stderr, r.stderr


# ---- harness ---------------------------------------------------------------------

def main():
    tests = [(name, fn) for name, fn in globals().items() if name.startswith("test_") and callable(fn)]
    passed = failed = skipped = 0
    tmp = tempfile.mkdtemp(prefix="distil-interop-")
    try:
        for name, fn in tests:
            try:
                fn(tmp)
                passed += 1
                print(f"ok   {name}")
            except Skip as why:
                skipped += 1
                print(f"skip {name}: {why}")
            except Exception as e:  # noqa: BLE001 (a failed test is any exception)
                failed += 1
                print(f"FAIL {name}: {e}")
                traceback.print_exc(limit=3, file=sys.stdout)
            sys.stdout.flush()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"TESTS {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
