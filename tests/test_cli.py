"""test_cli.py: what distil shows its user: the help texts, and what a
training run prints and logs as it goes.
"""
import os
import re
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import one_error_line, run, run_suite, tiny_recipe  # noqa: E402

DISTIL = os.path.abspath(os.environ.get("DISTIL", "build/cpu/distil"))


def prepare(tmp):
    run(DISTIL, "logs", "synth", "--out", "shards", "--shards", "1", "--samples-per-shard", "64", "--preset", "demo",
        "--eval-shards", "1", "--eval-samples-per-shard", "16", "--seed", "4", cwd=tmp)
    tiny_recipe(os.path.join(tmp, "tiny.yaml"))


def train(tmp, *args, check=True):
    return run(DISTIL, "train", "tiny.yaml", *args, cwd=tmp, check=check)


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



# ---- a setting that would do nothing is an error ----------------------------------

def test_feature_loss_without_embedding_is_an_error(tmp):
    import h5py
    os.makedirs(f"{tmp}/noemb", exist_ok=True)
    shutil.copy(f"{tmp}/shards/train/shard-00000.h5", f"{tmp}/noemb/a.h5")
    with h5py.File(f"{tmp}/noemb/a.h5", "a") as f:
        del f["teacher/embedding"]
    r = train(tmp, "--out", "r_noemb", "--set", 'data.train=["noemb/*.h5"]', "--set", "distill.w_feature=0.5",
              check=False)
    one_error_line(r, "--set distill.w_feature", "noemb/a.h5 has no /teacher/embedding")


def test_freeze_pattern_matching_nothing_is_an_error(tmp):
    r = train(tmp, "--out", "r_freeze", "--set", 'train.freeze=["blocks.7.*"]', check=False)
    one_error_line(r, "--set train.freeze", "'blocks.7.*' matches no parameter", "blocks.N.attn.qkv.*", "tok_emb")



def test_a_training_set_under_64_samples_trains(tmp):
    """Any set with a micro-batch per rank trains: the ego-only baseline's
    fit once asked for whole batches of 64."""
    run(DISTIL, "logs", "synth", "--out", "small", "--shards", "1", "--samples-per-shard", "40", "--preset", "demo",
        "--eval-shards", "1", "--eval-samples-per-shard", "8", "--seed", "9", cwd=tmp)
    r = train(tmp, "--out", "r_small", "--max-steps", "2", "--set", 'data.train=["small/train/*.h5"]',
              "--set", 'data.eval=["small/eval/*.h5"]')
    assert "eval on 8 samples" in r.stdout, r.stdout


if __name__ == "__main__":
    sys.exit(run_suite("distil_test_cli_", prepare, globals()))
