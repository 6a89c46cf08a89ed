"""harness.py: what the Python test scripts share (run by tests/run.sh,
which reads their final 'TESTS p passed, f failed, s skipped' line).

    from harness import Skip, run, one_error_line, run_suite, tiny_recipe
    ...
    if __name__ == "__main__":
        sys.exit(run_suite("distil_test_x_", prepare, globals()))

`python3 tests/harness.py tiny-recipe OUT SHARDS [section.key=value ...]`
writes the same recipe for shell tests.
"""
import os
import subprocess
import sys
import tempfile
import traceback

TINY_RECIPE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny.yaml")


def tiny_recipe(out, shards="shards", **sets):
    """Write tests/tiny.yaml to `out` with its shard globs under `shards`
    (data.eval: none when shards is given as (train_folder_glob, None)) and
    the keys of `sets` ("train__steps=8" or {"train.steps": 8}) changed or
    added. tests/tiny.yaml is the one tiny recipe of the tests."""
    changes = {k.replace("__", "."): v for k, v in sets.items()}
    changes.setdefault("data.train", f'["{shards}/train/*.h5"]')
    changes.setdefault("data.eval", f'["{shards}/eval/*.h5"]')
    lines, section, seen = [], None, set()
    with open(TINY_RECIPE) as f:
        text = f.read().splitlines()

    def flush(sec):   # keys of sec that the file does not have: appended at its end
        for key, value in changes.items():
            if key.startswith(sec + ".") and key not in seen:
                lines.append(f"  {key.split('.', 1)[1]}: {value}")
                seen.add(key)

    for line in text:
        if line and not line.startswith((" ", "#")):
            if section:
                flush(section)
            name = line.split(":", 1)[0]
            section = name if line.rstrip().endswith(":") else None
            if section is None and name in changes:
                line, _ = f"{name}: {changes[name]}", seen.add(name)
        elif section and line.startswith("  ") and ":" in line:
            key = section + "." + line.strip().split(":", 1)[0]
            if key in changes:
                line, _ = f"  {key.split('.', 1)[1]}: {changes[key]}", seen.add(key)
        lines.append(line)
    if section:
        flush(section)
    for key in [k for k in changes if k not in seen]:   # a section the file lacks
        sec, name = key.split(".", 1) if "." in key else (None, key)
        if sec and f"{sec}:" not in lines:
            lines.append(f"{sec}:")
        lines.append(f"  {name}: {changes[key]}" if sec else f"{name}: {changes[key]}")
        seen.add(key)
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    return out


class Skip(Exception):
    """Raised by a test that cannot run here; its message says why."""


def crimson_shard(src, dst):
    """Copies shard src to dst with piece 5 of its teacher vocabulary renamed
    'crimson': the same size, another teacher's vocabulary."""
    import h5py
    import shutil
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copy(src, dst)
    with h5py.File(dst, "a") as f:
        pieces, attrs = [p.decode() if isinstance(p, bytes) else p for p in f["vocab"][()]], dict(f["vocab"].attrs)
        pieces[5] = "crimson"
        del f["vocab"]
        f.create_dataset("vocab", data=pieces, dtype=h5py.string_dtype("utf-8"))
        f["vocab"].attrs.update(attrs)


def run(*args, check=True, cwd=None, timeout=300):
    """Run a command; with check, a non-zero exit raises with its stderr."""
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, cwd=cwd)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {r.returncode}: {r.stderr.strip()}")
    return r


def one_error_line(r, *words):
    """Bad input: exit status 2 and one 'distil: error:' line holding each of words."""
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, f"exit {r.returncode}: {r.stderr}"
    assert len(lines) == 1 and lines[0].startswith("distil: error: "), r.stderr
    for w in words:
        assert w in lines[0], f"{w!r} not in: {lines[0]}"


def run_suite(prefix, prepare, namespace):
    """prepare(tmp) once in a fresh temporary directory, then every test_*
    function of namespace (in definition order) with tmp. Prints ok/FAIL/skip
    per test and the TESTS line; returns the exit status."""
    passed = failed = skipped = 0
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        try:
            prepare(tmp)
        except Exception:
            traceback.print_exc()
            print("TESTS 0 passed, 1 failed, 0 skipped")
            return 1
        for name, fn in [(k, v) for k, v in namespace.items() if k.startswith("test_") and callable(v)]:
            try:
                fn(tmp)
                print(f"ok   {name}")
                passed += 1
            except Skip as e:
                print(f"skip {name}: {e}")
                skipped += 1
            except Exception:
                traceback.print_exc()
                print(f"FAIL {name}")
                failed += 1
            sys.stdout.flush()
    print(f"TESTS {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__" and len(sys.argv) >= 4 and sys.argv[1] == "tiny-recipe":
    tiny_recipe(sys.argv[2], sys.argv[3], **dict(a.split("=", 1) for a in sys.argv[4:]))
