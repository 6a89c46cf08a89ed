"""test_cli.py: what distil shows its user: the help texts, what a training
run prints (in a pipe and on a terminal) and logs (metrics.jsonl,
TensorBoard event files read back with the tensorboard package, which
scripts/deps.sh --test installs), the progress of eval and report, and
settings that would do nothing.
"""
import json
import os
import re
import shutil
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import crimson_shard, one_error_line, run, run_suite, tiny_recipe  # noqa: E402

DISTIL = os.path.abspath(os.environ.get("DISTIL", "build/cpu/distil"))


RUN = {}


def prepare(tmp):
    run(DISTIL, "logs", "synth", "--out", "shards", "--shards", "1", "--samples-per-shard", "64", "--preset", "demo",
        "--eval-shards", "1", "--eval-samples-per-shard", "16", "--seed", "4", cwd=tmp)
    tiny_recipe(os.path.join(tmp, "tiny.yaml"))
    # One run in a pipe: 20 steps, evaluations at 10 (and the final one at 20).
    RUN["piped"] = train(tmp, "--out", "run", "--set", "train.log_every=5").stdout
    # The same on a terminal (script(1) gives it a pty).
    cmd = f"{DISTIL} train tiny.yaml --out run_tty --set train.log_every=5"
    RUN["tty"] = run("script", "-qfec", cmd, "/dev/null", cwd=tmp, timeout=600).stdout


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



# ---- a training run's console ------------------------------------------------------

STEP_LINE = re.compile(r"step (\d+)/20  loss [0-9.]+ \(token_kl [0-9.]+, ce [0-9.]+, traj [0-9.]+\)  lr \S+  "
                       r"grad_norm \S+  \d+ samples/s  ETA \S+")


def test_piped_progress_lines_carry_everything(tmp):
    out = RUN["piped"]
    steps = [int(m.group(1)) for m in STEP_LINE.finditer(out)]
    assert steps == [5, 10, 15, 20], f"step lines at {steps}: {out}"
    assert re.search(r"eval at step 10: ade_teacher [0-9.]+ m", out), out


def test_start_names_the_recipe_and_the_model(tmp):
    lines = RUN["piped"].splitlines()
    assert "recipe tiny.yaml, resolved in run/recipe.resolved.yaml" in lines[0], lines[:3]
    # Between them, train.device's choice (auto: the CPU here, saying why;
    # on a GPU the self-test's lines): distil selftest's, not this test's;
    # on the CPU, its threads and which matrix products run.
    cpu = [l for l in lines[1:4] if l.startswith("cpu: ")]
    assert not cpu or re.match(r"cpu: \d+ OpenMP threads?; matrix products: .+, (the same bits for any thread count|"
                               r"whose sums depend on the thread count)$", cpu[0]), lines[:4]
    head = [l for l in lines[1:] if not l.startswith(("device: ", "cuda: ", "cpu: "))][:1]
    assert head and re.search(r"model: [0-9.]+ M parameters \(\d+; 0 frozen tensors\), \d+ tokens per sample .* "
                              r"vocabulary \d+", head[0]), lines[:4]


def test_terminal_shows_eval_lines_and_a_live_progress_line(tmp):
    out = RUN["tty"]
    assert "eval at step 10: ade_teacher" in out, out
    # The live line is redrawn in place: \r (read as a newline here) and an erase to the end of the line.
    assert "\x1b[K" in out and STEP_LINE.search(out), repr(out[-600:])
    assert "eval on 16 samples" in out, out


def test_one_step_numbering(tmp):
    """Step N is the N-th step everywhere: the console, metrics.jsonl, the
    evaluations and the checkpoints (step_N)."""
    lines = [json.loads(l) for l in open(f"{tmp}/run/metrics.jsonl")]
    steps = [l["step"] for l in lines if "loss" in l]
    evals = [l["step"] for l in lines if "eval" in l]
    assert steps == list(range(1, 21)), steps
    assert evals == [10, 20], evals
    assert sorted(os.listdir(f"{tmp}/run/checkpoints")) == ["latest", "step_0000010", "step_0000020"]


# ---- TensorBoard ------------------------------------------------------------------------

def test_tensorboard_reads_the_scalars(tmp):
    from tensorboard.backend.event_processing import event_accumulator as ea
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
    files = os.listdir(f"{tmp}/run/tensorboard")
    assert len(files) == 1 and files[0].startswith("events.out.tfevents."), files
    # Every record's two masked CRC-32Cs, checked here as well as by the reader.
    blob = open(f"{tmp}/run/tensorboard/{files[0]}", "rb").read()
    pos = records = 0
    while pos < len(blob):
        n, = struct.unpack("<Q", blob[pos:pos + 8])
        assert struct.unpack("<I", blob[pos + 8:pos + 12])[0] == masked_crc32c(blob[pos:pos + 8]), f"record {records}"
        data = blob[pos + 12:pos + 12 + n]
        assert struct.unpack("<I", blob[pos + 12 + n:pos + 16 + n])[0] == masked_crc32c(data), f"record {records}"
        pos, records = pos + 16 + n, records + 1
    acc = ea.EventAccumulator(f"{tmp}/run/tensorboard", size_guidance={ea.SCALARS: 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in ("train/loss", "train/token_kl", "train/ce", "train/traj", "train/lr", "train/grad_norm",
                "train/samples_per_s", "eval/student/ade_teacher", "eval/baselines/ego_only/ade_teacher",
                "eval/trace/token_acc", "eval/trace/kl"):
        assert tag in tags, f"{tag} missing: {sorted(tags)}"
    assert "train/feature" not in tags, "a loss of weight 0 is left out"
    metrics = [json.loads(l) for l in open(f"{tmp}/run/metrics.jsonl")]
    loss = {l["step"]: l["loss"] for l in metrics if "loss" in l}
    got = {e.step: e.value for e in acc.Scalars("train/loss")}
    assert sorted(got) == list(range(1, 21)), sorted(got)
    assert all(abs(got[s] - loss[s]) <= 1e-6 * abs(loss[s]) for s in loss), (got, loss)
    final = json.load(open(f"{tmp}/run/eval.json"))
    ade = {e.step: e.value for e in acc.Scalars("eval/student/ade_teacher")}
    assert sorted(ade) == [10, 20] and abs(ade[20] - final["student"]["ade_teacher"]) < 1e-5, ade


# ---- eval and report show progress ------------------------------------------------------

def test_eval_and_report_show_progress(tmp):
    r = run(DISTIL, "eval", "run/checkpoints/latest", "--logs", "shards/eval/*.h5", "--batch", "2", cwd=tmp)
    assert re.search(r"reading the shards: 8/8 batches \(100%\)", r.stdout), r.stdout
    assert re.search(r"evaluating: 2/8 batches \(25%\), ETA \S+\n.*evaluating: 8/8 batches \(100%\)", r.stdout, re.S), r.stdout
    r = run(DISTIL, "report", "run", "--samples", "2", cwd=tmp)
    assert "report: run/metrics.jsonl: 20 steps and 2 evaluations" in r.stdout, r.stdout
    assert re.search(r"report: the students' greedy traces: \d+/16 trace positions \(100%\)", r.stdout), r.stdout


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



def test_resume_with_a_longer_schedule_says_so(tmp):
    shutil.copytree(f"{tmp}/run", f"{tmp}/r_longer", symlinks=True)
    r = train(tmp, "--out", "r_longer", "--resume", "--max-steps", "22", "--set", "train.steps=40")
    notes = [l for l in r.stdout.splitlines() if l.startswith("note: the checkpoint's schedule")]
    assert len(notes) == 1 and "was 20 steps" in notes[0] and "this run's is 40" in notes[0] and "from step 21" in notes[0], \
        r.stdout
    r = train(tmp, "--out", "r_longer", "--resume", "--max-steps", "24", "--set", "train.steps=40")
    assert "schedule" not in r.stdout, r.stdout


# ---- train.init_from checks what the student was trained on -----------------------------

def test_init_from_refuses_other_inputs_naming_both_values(tmp):
    ckpt = "run/checkpoints/latest"
    cases = [
        ("model.image_mean=[0.42, 0.456, 0.406]", ["--set model.image_mean", "[0.42, 0.456, 0.406] here",
                                                  "[0.485, 0.456, 0.406] in the student"]),
        ("model.image_std=[0.2, 0.2, 0.2]", ["--set model.image_std", "[0.2, 0.2, 0.2] here"]),
        ("model.horizon=20", ["--set model.horizon", "20 here, 30 in the student"]),
        ("model.traj_repr=accel_curvature", ["--set model.traj_repr", "accel_curvature here, xyyaw in the student"]),
    ]
    for change, words in cases:
        r = train(tmp, "--out", "r_ft", "--max-steps", "1", "--set", f"train.init_from={ckpt}", "--set", change, check=False)
        one_error_line(r, *words)
    # The same inputs fine-tune.
    train(tmp, "--out", "r_ft", "--max-steps", "1", "--set", f"train.init_from={ckpt}")


def test_init_from_refuses_another_teacher_vocabulary(tmp):
    crimson_shard(f"{tmp}/shards/train/shard-00000.h5", f"{tmp}/crimson/a.h5")
    r = train(tmp, "--out", "r_voc", "--max-steps", "1", "--set", "train.init_from=run/checkpoints/latest",
              "--set", 'data.train=["crimson/*.h5"]', "--set", "data.eval=[]", check=False)
    one_error_line(r, "crimson/a.h5: /vocab: not the teacher vocabulary the student was trained on",
                   "run/checkpoints/latest/vocab.json")


if __name__ == "__main__":
    sys.exit(run_suite("distil_test_cli_", prepare, globals()))
