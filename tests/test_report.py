#!/usr/bin/env python3
"""test_report.py: `distil report RUN_DIR` on a real run, looked at in a browser.

A tiny student is trained by `distil train` (evaluations and checkpoints
every 10 steps); then:
  - report.html is one self-contained file: no URL, no external script,
    style or font; the charts are inline SVG and the camera frames PNG data
    URIs;
  - each inline PNG (decoded here by a small decoder that checks every
    chunk's CRC) is exactly the newest frame of the sample its caption names;
  - headless Chromium renders it (scripts/deps.sh --test installs it): the
    screenshot has many colours, in the charts' part and in the samples' part;
  - without checkpoints, or with --samples 0, the page says why there are
    no samples; a torn last line of metrics.jsonl is counted, not fatal;
  - bad input (no run directory, no metrics.jsonl, eval shards that cannot
    be found from here, a bad --samples) is one error line and exit 2.
Prints `TESTS p passed, f failed, s skipped`.
"""
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib

import h5py
import numpy as np
from harness import Skip, one_error_line, run, run_suite, tiny_recipe  # tests/harness.py

DISTIL = os.path.abspath(os.environ.get("DISTIL", "build/cpu/distil"))



# ---- PNG ----------------------------------------------------------------------------------

def png_decode(data):
    """(width, height, channels, pixels as uint8 array (h, w, c)) of an 8-bit
    RGB or RGBA PNG, every chunk's CRC checked."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, ihdr, seen_end = 8, b"", None, False
    while pos < len(data):
        n, = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        crc, = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        assert crc == zlib.crc32(kind + body), f"bad CRC in chunk {kind}"
        pos += 12 + n
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            seen_end = True
    assert ihdr and seen_end, "missing IHDR or IEND"
    w, h, depth, ctype, _, _, interlace = ihdr
    assert depth == 8 and ctype in (2, 6) and interlace == 0, ihdr
    bpp = 3 if ctype == 2 else 4
    raw, stride = zlib.decompress(idat), w * bpp
    assert len(raw) == h * (stride + 1), "wrong amount of pixel data"
    rows = np.frombuffer(raw, np.uint8).reshape(h, stride + 1)
    filters = rows[:, 0].astype(np.int32)
    assert filters.max() <= 4, "unknown row filter"
    data = rows[:, 1:].reshape(h, w, bpp).astype(np.int32)
    # A pixel's filter refers to its left (a), upper (b) and upper-left (c)
    # neighbours, already decoded: the image is undone one anti-diagonal
    # x + y = k at a time, all of a diagonal's pixels at once. out has a
    # zero row and column in front, so every neighbour exists.
    out = np.zeros((h + 1, w + 1, bpp), np.int32)
    for k in range(w + h - 1):
        y = np.arange(max(0, k - w + 1), min(h - 1, k) + 1)
        x = k - y
        a, b, c = out[y + 1, x], out[y, x + 1], out[y, x]
        pa, pb, pc = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        f = filters[y][:, None]
        pred = np.select([f == 0, f == 1, f == 2, f == 3], [0, a, b, (a + b) // 2], paeth)
        out[y + 1, x + 1] = (data[y, x] + pred) & 255
    return w, h, bpp, out[1:, 1:].astype(np.uint8)


def colour_stats(pixels):
    """(distinct colours, share of the most common colour)."""
    flat = pixels[..., :3].reshape(-1, 3).astype(np.uint32)
    codes = flat[:, 0] << 16 | flat[:, 1] << 8 | flat[:, 2]
    _, counts = np.unique(codes, return_counts=True)
    return len(counts), counts.max() / len(codes)


# ---- the run --------------------------------------------------------------------------------

def prepare(tmp):
    run(DISTIL, "logs", "synth", "--out", "shards", "--shards", "1", "--samples-per-shard", "64", "--preset", "demo",
        "--eval-shards", "1", "--eval-samples-per-shard", "24", "--seed", "11", "--zstd-level", "0", cwd=tmp)
    tiny_recipe(f"{tmp}/recipe.yaml", name="reporttest", seed=5, train__steps=40, train__keep_checkpoints=2)
    run(DISTIL, "train", "recipe.yaml", "--out", "run", cwd=tmp)
    r = run(DISTIL, "report", "run", cwd=tmp)
    assert "wrote run/report.html" in r.stdout and "8 samples" in r.stdout, r.stdout


def page(tmp, name="run/report.html"):
    return open(f"{tmp}/{name}", encoding="utf-8").read()


def test_self_contained(tmp):
    html = page(tmp)
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)   # base64 may hold "//"
    found = re.search(r".{0,40}(https?:|ftp:|//[a-z0-9]).{0,40}", text, re.I)
    assert not found, found.group(0)
    for tag in ("<script", "<link", "<iframe", "<object", "<embed", "@import", "url("):
        assert tag not in html.lower(), tag
    for attr in re.findall(r'\b(?:src|href|xlink:href)\s*=\s*"([^"]*)"', html):
        assert attr.startswith("data:image/png;base64,") or attr.startswith("#"), attr[:60]
    charts = html.count('<svg class="chart"')
    assert charts >= 9, f"{charts} charts"   # 6 training curves (feature weight 0 is left out) + 4 eval charts
    assert html.count('<svg class="topdown"') == 8 and html.count("data:image/png;base64,") == 8
    assert "Final evaluation" in html and "baseline: ego history only" in html


def test_frames_are_the_shards(tmp):
    html = page(tmp)
    cards = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)">.*?shard (\d+), sample (\d+)', html, re.S)
    assert len(cards) == 8, len(cards)
    import base64
    with h5py.File(f"{tmp}/shards/eval/shard-00000.h5", "r") as f:
        frames = f["camera/front"]
        seen = set()
        for b64, shard, index in cards:
            w, h, bpp, px = png_decode(base64.b64decode(b64))
            assert (w, h, bpp) == (64, 32, 3) and shard == "0", (w, h, bpp, shard)
            assert np.array_equal(px, frames[int(index), -1]), f"sample {index}: the PNG is not the frame at t0"
            seen.add(int(index))
        assert len(seen) == 8, f"the samples repeat: {sorted(seen)}"


def chromium():
    """Headless Chromium, which scripts/deps.sh --test installs (make test runs it)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    raise AssertionError("chromium is not installed: run scripts/deps.sh --test (make test does)")


def screenshot(browser, html_path, png_path, height):
    r = subprocess.run([browser, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars", f"--screenshot={png_path}",
                        f"--window-size=1200,{height}", "file://" + html_path], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and os.path.exists(png_path), f"chromium exited {r.returncode}: {r.stderr[-500:]}"
    return png_decode(open(png_path, "rb").read())[3]


def test_browser_renders_it(tmp):
    browser = chromium()
    px = screenshot(browser, f"{tmp}/run/report.html", f"{tmp}/top.png", 1600)
    assert px.shape[:2] == (1600, 1200), px.shape
    colours, top = colour_stats(px)
    print(f"  screenshot 1200x1600: {colours} colours, the most common covers {top:.0%}")
    assert colours > 200 and top < 0.9, (colours, top)
    # The whole page: its lower part is the samples grid (camera frames, panels).
    tall = screenshot(browser, f"{tmp}/run/report.html", f"{tmp}/tall.png", 4400)
    lower = tall[2600:]
    colours, top = colour_stats(lower)
    print(f"  samples region: {colours} colours, the most common covers {top:.0%}")
    assert colours > 200 and top < 0.95, (colours, top)
    # Green grass, grey road: the camera frames made it onto the screen.
    green = (lower[..., 1].astype(int) > lower[..., 0].astype(int) + 30) & (lower[..., 1].astype(int) > lower[..., 2].astype(int) + 30)
    assert green.mean() > 0.01, f"{green.mean():.3%} green pixels"


PANEL_LINES = ("teacher mean plan", "driver", "student, with its own trace", "student, given the teacher's trace")


def panel_lines(svg):
    """{name: (stroke, width, opacity, dashed, order)} of a panel's named polylines."""
    out = {}
    for i, m in enumerate(re.finditer(r'<polyline fill="none" stroke="(#[0-9a-f]{6})" stroke-width="([0-9.]+)" '
                                      r'stroke-opacity="([0-9.]+)"([^>]*)>(?:<title>([^<]*)</title>)?', svg)):
        name = m.group(5).replace("&#39;", "'") if m.group(5) else None
        out[name] = (m.group(1), float(m.group(2)), float(m.group(3)), "dasharray" in m.group(4), i)
    return out


def test_trajectory_panels_tell_the_four_lines_apart(tmp):
    """The four lines of a panel can be told apart: distinct colour or dash
    each, drawn widest first (each one on top is narrower than those under
    it), each with a dot at its end; the panel is framed to its content
    (the lateral axis scaled on its own, said on the panel); and in the
    browser every one of the four colours shows on screen."""
    html = page(tmp)
    panels = re.findall(r'<svg class="topdown".*?</svg>', html, re.S)
    assert len(panels) == 8, len(panels)
    for svg in panels:
        lines = panel_lines(svg)
        for name in PANEL_LINES:
            assert name in lines, f"{name} not drawn: {sorted(k for k in lines if k)}"
        styles = {(lines[n][0], lines[n][3]) for n in PANEL_LINES}
        assert len(styles) == 4, f"two lines share colour and dash: {styles}"
        ordered = sorted(PANEL_LINES, key=lambda n: lines[n][4])
        widths = [lines[n][1] for n in ordered]
        assert widths == sorted(widths, reverse=True) and len(set(widths)) == 4, \
            f"a line is drawn over a narrower one: {list(zip(ordered, widths))}"
        ends = re.findall(r'<circle [^>]*fill="(#[0-9a-f]{6})"', svg)
        assert {lines[n][0] for n in PANEL_LINES} <= set(ends), f"end dots {ends}"
        assert re.search(r"grid [0-9.]+ m ahead, [0-9.]+ m across", svg), "the panel does not say its scales"
    # On screen: the samples part of the page holds each line's colour (as
    # blended over the panel's background by its opacity).
    px = screenshot(chromium(), f"{tmp}/run/report.html", f"{tmp}/panels.png", 4400)[2400:].astype(int)
    bg = np.array([0xf4, 0xf6, 0xf8])
    lines = panel_lines(panels[0])
    for name in PANEL_LINES:
        stroke, _, opacity, _, _ = lines[name]
        rgb = np.array([int(stroke[i:i + 2], 16) for i in (1, 3, 5)])
        want = opacity * rgb + (1 - opacity) * bg
        seen = (np.abs(px[..., :3] - want).max(axis=2) < 24).sum()
        print(f"  {name}: {seen} pixels of {stroke} at opacity {opacity}")
        assert seen > 30, f"{name} ({stroke}) hardly shows on screen: {seen} pixels"


def test_without_checkpoints_or_samples(tmp):
    run("cp", "-r", f"{tmp}/run", f"{tmp}/bare")
    shutil.rmtree(f"{tmp}/bare/checkpoints")
    with open(f"{tmp}/bare/metrics.jsonl", "a") as f:
        f.write('{"step": 41, "lo')     # a run killed mid-write
    r = run(DISTIL, "report", "bare", cwd=tmp)
    assert "0 samples" in r.stdout, r.stdout
    html = page(tmp, "bare/report.html")
    assert "No checkpoint to run" in html and "1 unreadable lines" in html
    run(DISTIL, "report", "run", "--samples", "0", "--out", "nosamples.html", cwd=tmp)
    assert "Samples turned off" in page(tmp, "nosamples.html")


def test_greedy_trace_without_end_marker_stops_at_the_teachers_length(tmp):
    """Shards that name no bos/eos: the student's greedy trace ends after as
    many tokens as the teacher's trace, not at L with the last token repeated."""
    os.makedirs(f"{tmp}/noeos", exist_ok=True)
    shutil.copy(f"{tmp}/shards/eval/shard-00000.h5", f"{tmp}/noeos/a.h5")
    with h5py.File(f"{tmp}/noeos/a.h5", "a") as f:
        del f["vocab"].attrs["bos"], f["vocab"].attrs["eos"]
        offsets = f["teacher/trace/offsets"][()]
    r = run(DISTIL, "report", "run", "--logs", "noeos/*.h5", "--out", "noeos.html", cwd=tmp)
    assert "8 samples" in r.stdout, r.stdout
    cards = re.findall(r"shard 0, sample (\d+) .*?<b>student</b>([^<]*)</div>", page(tmp, "noeos.html"), re.S)
    assert len(cards) == 8, len(cards)
    for index, student in cards:
        n = int(index)
        teacher_len = int(offsets[n + 1] - offsets[n])
        words = student.split()
        assert 0 < len(words) <= teacher_len, f"sample {n}: {len(words)} student tokens, the teacher's trace has {teacher_len}: {student}"


def test_bad_inputs(tmp):
    one_error_line(run(DISTIL, "report", "nowhere", check=False, cwd=tmp), "nowhere")
    os.makedirs(f"{tmp}/empty", exist_ok=True)
    one_error_line(run(DISTIL, "report", "empty", check=False, cwd=tmp), "metrics.jsonl")
    one_error_line(run(DISTIL, "report", "run", "--samples", "1000", check=False, cwd=tmp), "--samples")
    # From another directory the recipe's relative eval globs find nothing.
    one_error_line(run(DISTIL, "report", f"{tmp}/run", check=False, cwd="/"), "--logs")
    r = run(DISTIL, "report", f"{tmp}/run", "--logs", f"{tmp}/shards/eval/*.h5", "--samples", "2", cwd="/")
    assert "2 samples" in r.stdout, r.stdout


if __name__ == "__main__":
    sys.exit(run_suite("distil_test_report_", prepare, globals()))
