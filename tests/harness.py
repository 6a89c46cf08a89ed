"""harness.py: what the Python test scripts share (run by tests/run.sh,
which reads their final 'TESTS p passed, f failed, s skipped' line).

    from harness import Skip, run, one_error_line, run_suite
    ...
    if __name__ == "__main__":
        sys.exit(run_suite("distil_test_x_", prepare, globals()))
"""
import subprocess
import sys
import tempfile
import traceback


class Skip(Exception):
    """Raised by a test that cannot run here; its message says why."""


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
