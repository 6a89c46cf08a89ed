#!/usr/bin/python3
"""bench_student.py: distil's training throughput against PyTorch's on the
same student and step, for make bench (docs/performance.md).

For each configuration it runs the real `distil train` on synthetic demo
shards (the recipe recipes/demo.yaml, with the model overridden where the
configuration says so; no evaluation, one checkpoint at the end) and reads
the per-step samples/s from its metrics.jsonl; then it runs the PyTorch
peer, scripts/bench_torch.py, with the same shapes, losses, clipping and
AdamW (read back from the run's resolved recipe and the shards), eager and
(in the first pair) under torch.compile when that works. distil and the
eager peer run in turn --pairs times (3): a shared machine's speed drifts
by up to 30% between runs, so the ratio quoted is the median of the pairs'
ratios, each pair's two runs taken back to back. It prints the median
samples/s of each and that ratio, next to this machine's sgemm rate
measured in the same run (distil's fp32 products, kernels/cpu/gemm_f32.h, and torch's own).

    bench_student.py --distil build/cpu/distil --sgemm 'build/cpu/tests/bench_block --sgemm' \
                     [--torch-python PYTHON] [--work build/bench-student] [--attention MASK] [--only demo|d512] [--pairs N] [--quick]

--torch-python names an interpreter with torch (scripts/torch_python.sh
finds or installs one); without it the peer is skipped and said so.
"""
import argparse
import glob
import json
import os
import re
import shutil
import statistics
import subprocess
import sys

import h5py

# name, recipe overrides, steps timed (after WARMUP), what it is
CONFIGS = [
    ("demo", [], 40, "recipes/demo.yaml: d128, 4 layers, 4 heads, 83 tokens, micro-batch 32"),
    ("d512", ["model.dim=512", "model.layers=8", "model.heads=8", "train.micro_batch=16", "train.batch_size=16"], 12,
     "d512, 8 layers, 8 heads, 83 tokens, micro-batch 16"),
]
WARMUP = 3   # steps left out of the median: first touches of the arenas, the loader filling up


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, **kw)


def ensure_logs(distil, work):
    logs = os.path.join(work, "logs")
    if not glob.glob(os.path.join(logs, "train", "*.h5")):
        print(f"bench_student: synthesising demo shards into {logs}", flush=True)
        run([distil, "logs", "synth", "--out", logs, "--preset", "demo", "--shards", "2", "--samples-per-shard", "512",
             "--seed", "1"], stdout=subprocess.DEVNULL)
    return logs


def shard_facts(logs):
    """What the shards fix: camera size and frames, history, horizon, K, k, the logged temperature."""
    path = sorted(glob.glob(os.path.join(logs, "train", "*.h5")))[0]
    with h5py.File(path, "r") as f:
        cam = f["camera/" + f.attrs["cameras"].split(",")[0]]
        return {
            "img_h": cam.shape[2], "img_w": cam.shape[3],
            "hist": f["ego/history"].shape[1],
            "topk": f["teacher/trace/topk_ids"].shape[1],
            "t_logged": float(f["teacher/trace/topk_logprobs"].attrs["temperature"]),
        }


def read_resolved(path):
    """recipe.resolved.yaml's scalar and list keys as {"section.key": value} (its YAML is flat and regular)."""
    out, section = {}, ""
    for line in open(path):
        if not line.strip() or line.startswith("#"):
            continue
        m = re.match(r"^(\s*)([\w.]+):\s*(.*?)\s*$", line)
        if not m:
            continue
        indent, key, value = m.groups()
        if not indent:
            section = key if value == "" else ""
            if value == "":
                continue
        full = f"{section}.{key}" if indent else key
        try:
            out[full] = json.loads(value)
        except ValueError:
            out[full] = value
    return out


def distil_run(distil, logs, work, name, overrides, steps):
    out = os.path.join(work, name)
    shutil.rmtree(out, ignore_errors=True)
    sets = [f"data.train=[\"{logs}/train/*.h5\"]", "data.eval=[]", f"train.steps={steps + WARMUP}",
            "train.warmup_steps=1", "train.eval_every=0", "train.checkpoint_every=0", "train.log_every=1"] + overrides
    cmd = [distil, "train", "recipes/demo.yaml", "--out", out]
    for s in sets:
        cmd += ["--set", s]
    run(cmd, stdout=subprocess.DEVNULL)
    rates = []
    for line in open(os.path.join(out, "metrics.jsonl")):
        rec = json.loads(line)
        if "samples_per_s" in rec and rec["step"] >= WARMUP:
            rates.append(rec["samples_per_s"])
    return statistics.median(rates), out


def peer_config(run_dir, facts, steps, threads):
    r = read_resolved(os.path.join(run_dir, "recipe.resolved.yaml"))
    vocab = json.load(open(os.path.join(run_dir, "vocab.json")))["size"]
    c = {k.split(".", 1)[1]: r[k] for k in r if k.split(".")[0] in ("model", "distill", "train")}
    c.update(facts)
    c.update({"vocab": vocab, "max_trace": r["data.max_trace_tokens"], "frames": r["data.history_frames"],
              "cams": len(r["data.cameras"]), "steps": steps, "warmup": WARMUP, "threads": threads})
    return c


def sgemm_gflops(cmd):
    """The rate and the path of distil's fp32 products, as the command prints them: 'N GFLOP/s (path)'."""
    out = run(cmd.split(), capture_output=True).stdout
    m = re.search(r"([\d.]+) GFLOP/s(?: \((.*)\))?", out)
    return (float(m.group(1)), m.group(2) or "OpenBLAS sgemm") if m else (float("nan"), "?")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--distil", required=True)
    ap.add_argument("--sgemm", required=True, help="a command printing this machine's sgemm rate as 'N GFLOP/s'")
    ap.add_argument("--torch-python", default="")
    ap.add_argument("--work", default="build/bench-student")
    ap.add_argument("--quick", action="store_true", help="a few steps each: checks the bench runs, measures nothing")
    ap.add_argument("--attention", choices=("prefix", "causal"), help="model.attention for every config (default: the recipe's)")
    ap.add_argument("--only", choices=[c[0] for c in CONFIGS], help="this configuration alone")
    ap.add_argument("--pairs", type=int, default=3,
                    help="distil and the eager peer run in turn this many times; the ratio is the median of the pairs' "
                         "ratios, so a drift of the machine's speed between runs does not enter it")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    threads = int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1))
    logs = ensure_logs(a.distil, a.work)
    facts = shard_facts(logs)
    gemm, gemm_path = sgemm_gflops(a.sgemm)
    print(f"bench_student: distil train against PyTorch, same student and step, fp32, CPU, {threads} threads")
    print(f"  sgemm 1024^3 through distil's products ({gemm_path})  {gemm:8.1f} GFLOP/s")
    if not a.torch_python:
        print("  PyTorch peer: skipped (no torch could be found or installed; see scripts/torch_python.sh)")
    torch_mm = None
    for name, overrides, steps, what in CONFIGS:
        if a.only and name != a.only:
            continue
        steps = 3 if a.quick else steps
        if a.attention:
            overrides = overrides + [f"model.attention={a.attention}"]
        pairs = 1 if a.quick else max(1, a.pairs)
        rates, eager, ratios, t = [], [], [], None
        for i in range(pairs):
            sps, run_dir = distil_run(a.distil, logs, a.work, name, overrides, steps)
            rates.append(sps)
            if not a.torch_python:
                continue
            c = peer_config(run_dir, facts, steps, threads)
            c["eager_only"] = i > 0   # torch.compile once, in the first pair
            res = subprocess.run([a.torch_python, "scripts/bench_torch.py", json.dumps(c)], capture_output=True, text=True)
            if res.returncode != 0:
                t = {"error": (res.stderr.strip().splitlines() or ['?'])[-1]}
                break
            r = json.loads(res.stdout.strip().splitlines()[-1])
            t = r if i == 0 else t
            eager.append(r["eager"])
            ratios.append(sps / r["eager"])
        mask = read_resolved(os.path.join(run_dir, "recipe.resolved.yaml"))["model.attention"]
        sps = statistics.median(rates)
        line = f"  {name:5s} {what}, {mask} mask\n        distil {sps:7.1f} samples/s"
        if t and "error" in t:
            line += f"; PyTorch peer failed: {t['error']}"
        elif t:
            torch_mm = t["mm_gflops"]
            line += (f"   torch {t['torch']} eager {statistics.median(eager):7.1f} samples/s   "
                     f"distil/eager {statistics.median(ratios):.2f} (median of {len(ratios)} pairs: "
                     + ", ".join(f"{x:.2f}" for x in ratios) + ")")
            if t["compile"]:
                line += f"\n        torch.compile {t['compile']:7.1f} samples/s (first pair)   distil/compile {rates[0] / t['compile']:.2f}"
            else:
                line += f"   ({t['compile_note']})"
        print(line, flush=True)
    if torch_mm is not None:
        print(f"  sgemm 1024^3 through torch (the peer's products)     {torch_mm:8.1f} GFLOP/s")


if __name__ == "__main__":
    main()
