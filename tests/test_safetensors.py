#!/usr/bin/env python3
"""test_safetensors.py: distil's safetensors files against the reference.

The C side is the test program itself: `test_safetensors --write DIR` writes
distil_{f32,f16,bf16}.safetensors, `test_safetensors --dump FILE` prints a
file as distil reads it (JSON). Checked here:
  - files written by distil load with the `safetensors` package (numpy API)
    with equal values, and are byte-identical to what the package writes for
    the same tensors (same layout, same fp16 rounding as numpy);
  - files written by the package, and by hand with numpy (odd header length,
    unsorted entries), read back through distil with equal values;
  - a numpy-only parse of distil's files (the package comes from
    scripts/deps.sh --test).
Prints `TESTS p passed, f failed, s skipped`.
"""
import json
import os
import subprocess
import sys
import tempfile
import traceback

import numpy as np

BUILD = os.environ.get("DISTIL_BUILD", "build/cpu")
HELPER = os.path.join(BUILD, "tests", "test_safetensors")


class Skip(Exception):
    pass


# ---- expected values (the same arithmetic as formula_values in the C test) ----

def formula(n, k):
    # Exact in IEEE double, rounded once to float32: C and numpy agree bit for bit.
    i = np.arange(n, dtype=np.int64)
    q = (i * 7919 + k * 104729) % 1000 - 500
    return (q.astype(np.float64) / 37.0 * np.ldexp(1.0, (i % 9) - 4)).astype(np.float32)


SPECIAL = np.array([0.0, -0.0, 1.5, -2.75, 0.1, 65504.0, 65520.0, 1048576.0, 2.0**-26, 2.0**-24, 3 * 2.0**-25,
                    float.fromhex("0x1.ff8p-15"), 3.0e-5], dtype=np.float64).astype(np.float32)


def expected_f32():
    return {
        "model.w": formula(35, 0).reshape(7, 5),
        "model.b": formula(5, 1),
        "a.scalar": formula(1, 2).reshape(()),
        "z.empty": np.zeros((0, 4), np.float32),
        "special": SPECIAL,
    }


def to_bf16_bits(x):
    # Round to nearest even on the float32 bits (no NaNs in the fixtures).
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    sixteen = np.uint64(16)
    return ((u + np.uint64(0x7FFF) + ((u >> sixteen) & np.uint64(1))) >> sixteen).astype(np.uint16)


def to_f16(x):
    with np.errstate(over="ignore"):
        return np.asarray(x, np.float32).astype(np.float16)


# ---- helpers ----------------------------------------------------------------------

def distil_write(tmp):
    r = subprocess.run([HELPER, "--write", tmp], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"--write exited {r.returncode}: {r.stderr}"
    return {k: os.path.join(tmp, f"distil_{k}.safetensors") for k in ("f32", "f16", "bf16")}


def distil_dump(path):
    r = subprocess.run([HELPER, "--dump", path], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"--dump {path} exited {r.returncode}: {r.stderr}"
    return json.loads(r.stdout)


def parse_by_hand(path):
    """A numpy-only reader: (header dict, data bytes, header length)."""
    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    return header, raw[8 + n:], n


def same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


_package = None


def safetensors_package():
    """The `safetensors` package, which scripts/deps.sh --test installs into
    build/pydeps (on PYTHONPATH under tests/run.sh)."""
    try:
        import safetensors
        import safetensors.numpy  # noqa: F401
    except ImportError as e:
        raise AssertionError(f"{e}: run scripts/deps.sh --test (make test does)")
    return safetensors


# ---- tests ------------------------------------------------------------------------

def test_distil_files_by_numpy_parse():
    """Layout checks that need no package: padding, order, offsets, values."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = distil_write(tmp)
        exp = expected_f32()
        for kind, path in paths.items():
            header, data, n = parse_by_hand(path)
            assert n % 8 == 0, f"{kind}: header length {n}"
            assert list(header)[0] == "__metadata__" and header["__metadata__"] == {"format": "pt"}, list(header)
            names = [k for k in header if k != "__metadata__"]
            assert names == sorted(names), f"{kind}: not sorted: {names}"
            end = 0
            for name in names:
                info = header[name]
                b, e = info["data_offsets"]
                assert b == end, f"{kind}: {name} starts at {b}, expected {end}"
                end = e
                raw = data[b:e]
                want = exp[name]
                assert info["shape"] == list(want.shape), f"{kind}: {name} shape {info['shape']}"
                if kind == "f32":
                    got, ref = np.frombuffer(raw, "<f4").reshape(want.shape), want
                elif kind == "f16":
                    got, ref = np.frombuffer(raw, "<f2").reshape(want.shape), to_f16(want)
                else:
                    got, ref = np.frombuffer(raw, "<u2").reshape(want.shape), to_bf16_bits(want)
                assert same_bits(got, ref), f"{kind}: {name}: {got} != {ref}"
            assert end == len(data), f"{kind}: data section {len(data)} bytes, tensors cover {end}"


def test_distil_files_load_with_package():
    st = safetensors_package()
    from safetensors.numpy import load_file
    with tempfile.TemporaryDirectory() as tmp:
        paths = distil_write(tmp)
        exp = expected_f32()
        for kind in ("f32", "f16"):
            loaded = load_file(paths[kind])
            assert set(loaded) == set(exp), f"{kind}: names {sorted(loaded)}"
            for name, want in exp.items():
                ref = want if kind == "f32" else to_f16(want)
                assert same_bits(loaded[name], ref), f"{kind}: {name}: {loaded[name]} != {ref}"
            with st.safe_open(paths[kind], framework="np") as f:
                assert f.metadata() == {"format": "pt"}, f.metadata()
        # numpy has no bfloat16: the package's raw view of each tensor instead.
        raw = dict(st.deserialize(open(paths["bf16"], "rb").read()))
        assert set(raw) == set(exp), sorted(raw)
        for name, want in exp.items():
            assert raw[name]["dtype"] == "BF16" and list(raw[name]["shape"]) == list(want.shape), raw[name]
            got = np.frombuffer(bytes(raw[name]["data"]), "<u2").reshape(want.shape)
            assert same_bits(got, to_bf16_bits(want)), f"bf16: {name}"


def test_byte_identical_to_package():
    safetensors_package()
    from safetensors.numpy import save
    with tempfile.TemporaryDirectory() as tmp:
        paths = distil_write(tmp)
        exp = expected_f32()
        for kind, tensors in (("f32", exp), ("f16", {k: to_f16(v) for k, v in exp.items()})):
            ref = save(tensors, metadata={"format": "pt"})
            ours = open(paths[kind], "rb").read()
            assert ours == ref, f"{kind}: distil's file differs from the package's:\n{ours[:300]}\n{ref[:300]}"


def check_dump(path, tensors, metadata):
    d = distil_dump(path)
    assert d["metadata"] == metadata, d["metadata"]
    assert set(d["tensors"]) == set(tensors), sorted(d["tensors"])
    for name, x in tensors.items():
        t = d["tensors"][name]
        assert t["shape"] == list(x.shape), f"{name}: shape {t['shape']}"
        if x.dtype.kind == "f":
            got = np.array(t["values"], np.float64).astype(x.dtype).reshape(x.shape)
            assert same_bits(got, x), f"{name}: {got} != {x}"
            as_f32 = np.array(t["as_f32"], np.float32).reshape(x.shape)
            assert same_bits(as_f32, x.astype(np.float32)), f"{name}: as_f32 {as_f32}"
        else:
            got = np.array(t["values"], np.int64 if x.dtype != np.uint64 else np.uint64).astype(x.dtype).reshape(x.shape)
            assert same_bits(got, x), f"{name}: {got} != {x}"


def varied_tensors():
    r = np.random.default_rng(7)
    return {
        "w": (r.standard_normal((3, 4)) * 10).astype(np.float32),
        "h": (r.standard_normal(5) * 1000).astype(np.float16),
        "d": r.standard_normal((2, 2)),
        "ids": np.array([-2147483648, -1, 0, 7, 2147483647], np.int32),
        "big": np.array([-(2**63), 2**62 + 1], np.int64),
        "u8": np.arange(250, 256, dtype=np.uint8),
        "mask": np.array([True, False, True]),
        "s": np.array(2.5, np.float32),
        "nothing": np.zeros((2, 0), np.float32),
    }


def test_package_file_read_by_distil():
    safetensors_package()
    from safetensors.numpy import save_file
    tensors = varied_tensors()
    meta = {"format": "np", "note": 'caf\u00e9 "q" \\ \n'}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "package.safetensors")
        save_file(tensors, path, metadata=meta)
        check_dump(path, tensors, meta)


def test_handmade_file_read_by_distil():
    """By hand with numpy: an odd header length, entries not sorted, data in
    reverse order of the header: all allowed by the format."""
    tensors = varied_tensors()
    names = sorted(tensors, reverse=True)
    blobs, header, at = [], {}, 0
    for name in reversed(names):
        b = tensors[name].astype(tensors[name].dtype.newbyteorder("<")).tobytes()
        dt = {"f4": "F32", "f2": "F16", "f8": "F64", "i4": "I32", "i8": "I64", "u1": "U8", "b1": "BOOL"}[
            tensors[name].dtype.str[1:]]
        header[name] = {"dtype": dt, "shape": list(tensors[name].shape), "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    header = {k: header[k] for k in names}
    header["__metadata__"] = {"by": "hand"}
    text = json.dumps(header, separators=(", ", ": ")).encode()
    if len(text) % 2 == 0:
        text += b" "
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "hand.safetensors")
        with open(path, "wb") as f:
            f.write(len(text).to_bytes(8, "little") + text + b"".join(blobs))
        check_dump(path, tensors, {"by": "hand"})


def test_corrupt_file_is_one_error_line():
    with tempfile.TemporaryDirectory() as tmp:
        paths = distil_write(tmp)
        raw = open(paths["f32"], "rb").read()
        bad = os.path.join(tmp, "cut.safetensors")
        for cut in (0, 5, 8, 40, len(raw) - 1):
            with open(bad, "wb") as f:
                f.write(raw[:cut])
            r = subprocess.run([HELPER, "--dump", bad], capture_output=True, text=True, timeout=60)
            lines = r.stderr.splitlines()
            assert r.returncode == 2 and r.stdout == "", f"cut at {cut}: exit {r.returncode}"
            assert len(lines) == 1 and lines[0].startswith(f"distil: error: {bad}: "), f"cut at {cut}: {r.stderr!r}"


def main():
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    tests = [v for k, v in globals().items() if k.startswith("test_") and callable(v)]
    if not os.access(HELPER, os.X_OK):
        print(f"FAIL {HELPER} is not built (run make)")
        print("TESTS 0 passed, 1 failed, 0 skipped")
        return 1
    for fn in tests:
        try:
            fn()
            counts["passed"] += 1
            print(f"ok   {fn.__name__}")
        except Skip as e:
            counts["skipped"] += 1
            print(f"skip {fn.__name__}: {e}")
        except Exception:
            counts["failed"] += 1
            print(f"FAIL {fn.__name__}")
            traceback.print_exc(limit=3)
        sys.stdout.flush()
    print(f"TESTS {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
