"""test_cli.py: what distil shows its user: the help texts, and what a
training run prints and logs as it goes.
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import run, run_suite  # noqa: E402

DISTIL = os.path.abspath(os.environ.get("DISTIL", "build/cpu/distil"))


def prepare(tmp):
    pass


# ---- help -------------------------------------------------------------------------

def test_top_level_help_lists_every_logs_command(tmp):
    out = run(DISTIL, "--help").stdout
    line = next(l for l in out.splitlines() if l.strip().startswith("logs "))
    for sub in ("synth", "inspect", "validate", "stats", "load"):
        assert sub in line, f"'{sub}' missing from: {line}"


def test_logs_help_shows_synth_options_as_optional(tmp):
    out = run(DISTIL, "logs", "--help").stdout
    synth = out[out.index("synth"):out.index("inspect")]
    assert "--out DIR" in synth, synth
    for flag in ("--shards N", "--samples-per-shard M", "--seed S", "--preset", "--force"):
        assert f"[{flag}" in synth, f"{flag} is not shown as optional: {synth}"


def test_subcommand_help_is_help(tmp):
    for args in (("recipe", "check", "--help"), ("recipe", "doc", "--help"), ("logs", "synth", "--help"),
                 ("logs", "validate", "--help"), ("train", "--help"), ("eval", "--help"), ("export", "--help"),
                 ("report", "--help")):
        r = run(DISTIL, *args, check=False)
        assert r.returncode == 0 and not r.stderr and re.search(r"usage: distil", r.stdout), \
            f"distil {' '.join(args)}: exit {r.returncode}, stderr {r.stderr!r}"


if __name__ == "__main__":
    sys.exit(run_suite("distil_test_cli_", prepare, globals()))
