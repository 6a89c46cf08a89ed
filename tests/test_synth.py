#!/usr/bin/env python3
"""`distil logs synth`: determinism, split sizes, the presets, argument errors,
that its shards pass `distil logs validate`, and the key property: what the
teacher says and does depends on things only the cameras show (the light's
colour, a pedestrian, the lead vehicle's distance), read back here from the
pixels of the last front frame, and not on the ego history.

Run from the repository root; $DISTIL is the binary (tests/run.sh sets it).
Prints "TESTS p passed, f failed, s skipped".
"""
import filecmp
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_interop import Skip, as_text, distil, read_dataset, require_subcommand  # noqa: E402

# The renderer's lamp colours (data/synth/render.h): emissive, so exact.
LAMPS = {"red": (255, 30, 20), "yellow": (255, 210, 0), "green": (30, 230, 80)}


def synth(out, *extra, env=None):
    require_subcommand("synth")
    r = subprocess.run([os.environ.get("DISTIL", "build/cpu/distil"), "logs", "synth", "--out", out, *extra],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, f"synth failed ({r.returncode}): {r.stderr.strip()}"
    return r


def read_split(folder):
    """Every dataset of every shard in folder, concatenated over shards."""
    out = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.h5"))):
        with h5py.File(path, "r") as f:
            def visit(name, obj):
                if isinstance(obj, h5py.Dataset):
                    value = read_dataset(obj)
                    out.setdefault(name, []).append(value)
            f.visititems(visit)
    return out


class Fleet:
    """The train split of a demo fleet, with what the tests read off it."""

    def __init__(self, folder):
        d = read_split(folder)
        self.frame = np.concatenate(d["camera/front"])[:, -1].astype(np.int32)   # (N, H, W, 3) the t0 frame
        self.history = np.concatenate(d["ego/history"])                          # (N, Th, 4)
        traj = np.concatenate(d["teacher/trajectory"])                           # (N, K, T, 3)
        weight = np.concatenate(d["teacher/weight"])                             # (N, K)
        self.plan = (traj * weight[:, :, None, None]).sum(1)                     # (N, T, 3) weighted mean
        self.text = [as_text(t) for part in d["teacher/trace/text"] for t in part]
        self.v0 = self.history[:, -1, 3]
        hz = 10.0
        # How fast the teacher plans to go at the end of the horizon, relative to now.
        self.end_speed_ratio = np.linalg.norm(self.plan[:, -1, :2] - self.plan[:, -2, :2], axis=1) * hz / self.v0
        self.travel = np.linalg.norm(self.plan[:, -1, :2], axis=1)               # m in T steps

    def lamp_colour(self):
        """Per sample 'red', 'yellow', 'green' or '' from the lamp pixels."""
        counts = np.stack([np.all(self.frame == np.array(rgb), axis=3).sum((1, 2)) for rgb in LAMPS.values()], 1)
        names = np.array(list(LAMPS))
        return np.where(counts.max(1) > 0, names[counts.argmax(1)], "")

    def pedestrian_pixels(self):
        """Whether a pedestrian's shirt (magenta, cyan or orange) shows."""
        r, g, b = self.frame[..., 0], self.frame[..., 1], self.frame[..., 2]
        magenta = (r > 150) & (g < 70) & (b > 130)
        cyan = (r < 60) & (g > 150) & (b > 150)
        orange = (r > 190) & (g > 90) & (g < 160) & (b < 60)
        return (magenta | cyan | orange).any((1, 2))

    def nearest_car_distance(self):
        """Ground distance (m) of the nearest blue, purple or black car pixel in
        the columns straight ahead; inf when none (silver cars are not found)."""
        r, g, b = self.frame[..., 0], self.frame[..., 1], self.frame[..., 2]
        car = ((b > r + 60) & (b > g + 60)) | ((b > g + 60) & (r > g + 30) & (r < 140)) | \
              (np.maximum(np.maximum(r, g), b) < 55)
        H, W = car.shape[1:]
        ahead = car[:, :, W // 2 - 6:W // 2 + 6].any(2)                 # (N, H)
        lowest = H - 1 - np.argmax(ahead[:, ::-1], 1)
        near, far = 3.0, 67.0                                            # front camera rows cover 3..67 m
        dist = near + (H - lowest - 0.5) * (far - near) / H
        return np.where(ahead.any(1), dist, np.inf)


def ridge_holdout(X, y, lam=1e-2):
    """Fit on the first half, predict the second: (predictions, truth)."""
    X = np.concatenate([X, np.ones((len(X), 1))], 1)
    h = len(y) // 2
    beta = np.linalg.solve(X[:h].T @ X[:h] + lam * np.eye(X.shape[1]), X[:h].T @ y[:h])
    return X[h:] @ beta, y[h:]


def auc(low, high):
    """P(a sample of `low` < a sample of `high`)."""
    return (low[:, None] < high[None, :]).mean()


# ---- fixtures -------------------------------------------------------------------

_cache = {}


def demo_fleet(tmp):
    """3 x 400 train + 1 x 200 eval demo samples, seed 11 (made once)."""
    if "demo" not in _cache:
        out = os.path.join(tmp, "demo")
        t = time.time()
        synth(out, "--shards", "3", "--samples-per-shard", "400", "--seed", "11")
        print(f"  synth: 1400 demo samples in {time.time() - t:.2f} s")
        _cache["demo"] = (out, Fleet(os.path.join(out, "train")))
    return _cache["demo"]


# ---- determinism and layout ------------------------------------------------------

def same_datasets(a, b):
    da, db = read_split(a), read_split(b)
    assert da.keys() == db.keys(), f"dataset sets differ: {sorted(da.keys() ^ db.keys())}"
    for name in da:
        for x, y in zip(da[name], db[name]):
            if x.dtype.kind in "OS":
                if list(x) != list(y):
                    return name
            elif x.shape != y.shape or not np.array_equal(x, y, equal_nan=False):
                return name
    return None


def test_same_seed_same_bytes_whatever_the_threads(tmp):
    a, b = os.path.join(tmp, "det-a"), os.path.join(tmp, "det-b")
    args = ("--shards", "2", "--samples-per-shard", "64", "--seed", "5", "--eval-shards", "1")
    synth(a, *args)
    time.sleep(1.1)   # a second later, so that a stored timestamp would show
    synth(b, *args, env=dict(os.environ, OMP_NUM_THREADS="1"))
    differ = same_datasets(os.path.join(a, "train"), os.path.join(b, "train"))
    assert differ is None, f"same seed, different {differ}"
    for split in ("train", "eval"):
        for path in sorted(glob.glob(os.path.join(a, split, "*.h5"))):
            other = os.path.join(b, split, os.path.basename(path))
            assert filecmp.cmp(path, other, shallow=False), f"{path} and {other} differ in bytes"


def test_different_seed_different_data(tmp):
    a, c = os.path.join(tmp, "seed-a"), os.path.join(tmp, "seed-c")
    synth(a, "--shards", "1", "--samples-per-shard", "32", "--seed", "5", "--eval-shards", "0")
    synth(c, "--shards", "1", "--samples-per-shard", "32", "--seed", "6", "--eval-shards", "0")
    da, dc = read_split(os.path.join(a, "train")), read_split(os.path.join(c, "train"))
    for name in ("camera/front", "ego/history", "ego/future", "teacher/trajectory", "teacher/embedding"):
        assert not np.array_equal(da[name][0], dc[name][0]), f"seeds 5 and 6 give the same {name}"


def test_split_sizes(tmp):
    out = os.path.join(tmp, "sizes")
    synth(out, "--shards", "5", "--samples-per-shard", "10", "--seed", "1")
    train = sorted(os.listdir(os.path.join(out, "train")))
    evals = sorted(os.listdir(os.path.join(out, "eval")))
    assert train == [f"shard-{i:05d}.h5" for i in range(5)], train
    assert evals == ["shard-00000.h5"], f"default eval shards max(1, N/4): {evals}"
    with h5py.File(os.path.join(out, "eval", evals[0]), "r") as f:
        assert f["/clip_id"].shape == (5,), "default eval samples per shard max(1, M/2)"
        eval_ids = set(read_dataset(f["/clip_id"]).tolist())
    ids = set()
    for name in train:
        with h5py.File(os.path.join(out, "train", name), "r") as f:
            assert f["/clip_id"].shape == (10,)
            ids |= set(read_dataset(f["/clip_id"]).tolist())
    assert len(ids) == 50 and not ids & eval_ids, "clip ids must be unique and the splits disjoint"


def test_urban4_preset_shapes(tmp):
    """The urban4 preset is shaped like an Alpamayo-class teacher's logs and
    recipes/urban4.yaml: 4 cameras of 224x400, 2 frames, a 6.4 s plan at
    10 Hz, reports of 30-128 tokens, top-32 over a vocabulary of 32k pieces
    of which the traces use a few thousand, /teacher/embedding."""
    out = os.path.join(tmp, "urban4")
    synth(out, "--preset", "urban4", "--shards", "1", "--samples-per-shard", "40", "--eval-shards", "0")
    with h5py.File(os.path.join(out, "train", "shard-00000.h5"), "r") as f:
        assert as_text(f.attrs["cameras"]) == "front,left,right,rear"
        for cam in ("front", "left", "right", "rear"):
            assert f[f"/camera/{cam}"].shape == (40, 2, 224, 400, 3), f"{cam}: {f[f'/camera/{cam}'].shape}"
            frames = read_dataset(f[f"/camera/{cam}"])
            assert frames.std() > 5, f"{cam} is blank"
        assert f["/teacher/trajectory"].shape == (40, 4, 64, 3) and f["/ego/future"].shape == (40, 64, 3)
        assert f["/teacher/embedding"].shape[0] == 40
        V = f["/vocab"].shape[0]
        assert V >= 32000, V
        off = read_dataset(f["/teacher/trace/offsets"])
        lengths = np.diff(off)
        assert lengths.min() >= 30 and lengths.max() <= 128, (lengths.min(), lengths.max())
        tokens = read_dataset(f["/teacher/trace/tokens"])
        topk = read_dataset(f["/teacher/trace/topk_ids"])
        lp = read_dataset(f["/teacher/trace/topk_logprobs"])
        assert topk.shape == (len(tokens), 32) and (topk[:, 0] == tokens).all(), "the emitted token leads its top-k"
        assert (np.diff(lp, axis=1) <= 0).all() and (np.exp(lp).sum(axis=1) < 1).all()
        used = set(tokens.tolist()) | set(topk.ravel().tolist())
        assert 1000 < len(used) < 0.2 * V, f"{len(used)} of {V} ids used: vocab from_logs should keep a few thousand"
        vocab = [as_text(v) for v in f["/vocab"][:]]
        text = as_text(f["/teacher/trace/text"][0])
        assert "decision :" in text and "plan :" in text, text
        assert " ".join(vocab[t] for t in tokens[off[0] + 1:off[1] - 1]).replace(" ,", ",").replace(" .", ".") \
            .replace(" :", ":") == text.replace(" ,", ",").replace(" .", ".").replace(" :", ":"), text


def test_bad_arguments_give_one_line_and_exit_2(tmp):
    require_subcommand("synth")
    cases = [
        ("--shards", "0"), ("--preset", "nope"), ("--seed", "-1"), ("--samples-per-shard", "x"),
        ("--frobnicate", "1"),
    ]
    for extra in cases:
        r = distil("logs", "synth", "--out", os.path.join(tmp, "bad"), *extra)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2, f"{extra}: exit {r.returncode}"
        assert len(lines) == 1 and lines[0].startswith("distil: error: "), f"{extra}: {r.stderr!r}"
    r = distil("logs", "synth", "--shards", "1")
    assert r.returncode == 2 and "--out" in r.stderr, f"missing --out: {r.stderr!r}"
    blocker = os.path.join(tmp, "a-file")
    open(blocker, "w").close()
    r = distil("logs", "synth", "--out", os.path.join(blocker, "fleet"), "--shards", "1", "--samples-per-shard", "2")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "a-file" in lines[0], f"unwritable --out: {r.stderr!r}"


def test_existing_shards_are_refused_unless_force(tmp):
    """A fleet written over another would leave the old shards for the
    recipe's glob to pick up: refused, and --force deletes them first."""
    out = os.path.join(tmp, "over")
    synth(out, "--shards", "3", "--samples-per-shard", "2", "--seed", "1", "--eval-shards", "1")
    r = distil("logs", "synth", "--out", out, "--shards", "1", "--samples-per-shard", "2", "--seed", "2")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "already holds 3 shards" in lines[0] and "--force" in lines[0], \
        f"exit {r.returncode}: {r.stderr!r}"
    assert len(os.listdir(os.path.join(out, "train"))) == 3, "the refused run touched the old shards"
    synth(out, "--shards", "1", "--samples-per-shard", "2", "--seed", "2", "--force")
    assert sorted(os.listdir(os.path.join(out, "train"))) == ["shard-00000.h5"], os.listdir(os.path.join(out, "train"))
    with h5py.File(os.path.join(out, "train", "shard-00000.h5"), "r") as f:
        assert f["/clip_id"].shape == (2,)


def test_synth_shards_pass_validate(tmp):
    out, _ = demo_fleet(tmp)
    require_subcommand("validate")
    paths = sorted(glob.glob(os.path.join(out, "*", "*.h5")))
    r = distil("logs", "validate", *paths)
    assert r.returncode == 0, f"validate: exit {r.returncode}: {(r.stdout + r.stderr).strip()[:2000]}"


# ---- the key property ---------------------------------------------------------------

def test_trace_colour_matches_the_lamp_pixels(tmp):
    _, fl = demo_fleet(tmp)
    colour = fl.lamp_colour()
    named = [(i, t.split()[0]) for i, t in enumerate(fl.text) if t.split()[0] in LAMPS]
    assert len(named) > 200, f"only {len(named)} traces name a light"
    wrong = [(i, word, colour[i]) for i, word in named if colour[i] != word]
    assert not wrong, f"{len(wrong)} traces name a colour the pixels do not show, e.g. {wrong[:3]}"


def test_stop_or_go_follows_the_light_not_the_history(tmp):
    _, fl = demo_fleet(tmp)
    colour = fl.lamp_colour()
    red, green = colour == "red", colour == "green"
    assert red.sum() > 100 and green.sum() > 100, f"{red.sum()} red, {green.sum()} green lights"
    # The plans: slower at the end of the horizon behind a red light.
    separation = auc(fl.end_speed_ratio[red], fl.end_speed_ratio[green])
    assert separation > 0.85, f"end speed separates red from green with AUC {separation:.3f}"
    # The history cannot tell red from green: a linear probe on the whole
    # history (positions, yaw, speed profile) does no better than chance ...
    lit = red | green
    X = fl.history[lit].reshape(lit.sum(), -1)
    pred, truth = ridge_holdout(X, red[lit].astype(float))
    acc = ((pred > 0.5) == (truth > 0.5)).mean()
    majority = max(truth.mean(), 1 - truth.mean())
    assert acc < majority + 0.08, f"the history predicts red vs green: {acc:.3f} vs majority {majority:.3f}"
    # ... and the colour from the pixels explains the plans the history cannot.
    hist_only, y = ridge_holdout(X, fl.end_speed_ratio[lit])
    with_colour, _ = ridge_holdout(np.concatenate([X, red[lit, None] * 1.0], 1), fl.end_speed_ratio[lit])
    r2 = lambda p: 1 - ((p - y) ** 2).mean() / y.var()   # noqa: E731
    assert r2(with_colour) > r2(hist_only) + 0.3, f"R^2 history {r2(hist_only):.3f}, +colour {r2(with_colour):.3f}"


def test_pedestrians_are_seen_and_yielded_to(tmp):
    _, fl = demo_fleet(tmp)
    seen = fl.pedestrian_pixels()
    yields = np.array(["pedestrian" in t for t in fl.text])
    assert yields.sum() > 50, f"only {yields.sum()} pedestrian traces"
    shown = (yields & seen).sum() / yields.sum()
    assert shown > 0.97, f"only {shown:.3f} of the pedestrian traces have a pedestrian in the pixels"
    assert not (yields & ~seen).sum() > 0.03 * yields.sum()
    # The teacher slows for them, and the history does not know they are there.
    assert np.median(fl.end_speed_ratio[yields]) < 0.6 * np.median(fl.end_speed_ratio[~seen])
    pred, truth = ridge_holdout(fl.history.reshape(len(seen), -1), seen.astype(float))
    acc = ((pred > 0.5) == (truth > 0.5)).mean()
    majority = max(truth.mean(), 1 - truth.mean())
    assert acc < majority + 0.05, f"the history predicts pedestrians: {acc:.3f} vs majority {majority:.3f}"


def test_lead_vehicle_distance_shows_in_the_pixels(tmp):
    _, fl = demo_fleet(tmp)
    dist = fl.nearest_car_distance()
    close = np.array(["lead vehicle close" in t for t in fl.text])
    ahead = np.array(["lead vehicle ahead" in t for t in fl.text])
    seen_close, seen_ahead = close & np.isfinite(dist), ahead & np.isfinite(dist)
    assert seen_close.sum() > 100 and seen_ahead.sum() > 20, f"{seen_close.sum()} close, {seen_ahead.sum()} ahead"
    assert np.median(dist[seen_close]) + 5 < np.median(dist[seen_ahead]), \
        f"close at {np.median(dist[seen_close]):.1f} m, ahead at {np.median(dist[seen_ahead]):.1f} m"
    # Behind a close lead vehicle the plan covers more ground the farther it is.
    corr = np.corrcoef(dist[seen_close], fl.travel[seen_close] / fl.v0[seen_close])[0, 1]
    assert corr > 0.4, f"pixel distance vs planned travel: correlation {corr:.3f}"


# ---- harness ---------------------------------------------------------------------------

def main():
    tests = [(name, fn) for name, fn in globals().items() if name.startswith("test_") and callable(fn)]
    passed = failed = skipped = 0
    tmp = tempfile.mkdtemp(prefix="distil-synth-")
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
