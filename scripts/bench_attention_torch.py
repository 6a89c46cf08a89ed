#!/usr/bin/python3
"""bench_attention_torch.py: PyTorch's scaled_dot_product_attention on the
CPU, forward + backward, the peer of tests/bench_attention.c (which runs
this script and prints the ratio). fp32, q, k and v of shape (B, H, T, hs),
the mask built from ops.h's rule (causal: is_causal; prefix: a boolean
(T, T) mask), the thread count given.

Prints `torch_ms <median milliseconds>` and `torch_version <version>
<function>`; `torch: <reason>` on stderr-free stdout and exit 0 when torch
cannot be imported, so the bench reports the reason and goes on.
"""
import argparse
import statistics
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    for name in ("B", "H", "hs", "T", "n-prefix", "threads", "reps"):
        ap.add_argument("--" + name, type=int, required=True)
    ap.add_argument("--mode", choices=("causal", "prefix"), required=True)
    a = ap.parse_args()
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        print(f"torch: not installed ({e}); scripts/bench.sh installs python3-torch when run as root")
        return
    torch.set_num_threads(a.threads)
    if hasattr(F, "scaled_dot_product_attention"):
        fn_name = "scaled_dot_product_attention"
        sdpa = F.scaled_dot_product_attention
    else:   # torch 1.13: the same function, private, returning (out, weights)
        fn_name = "_scaled_dot_product_attention"
        sdpa = lambda q, k, v, **kw: F._scaled_dot_product_attention(q, k, v, **kw)[0]   # noqa: E731
    print(f"torch_version {torch.__version__} F.{fn_name}")
    g = torch.Generator().manual_seed(7)
    q, k, v = (torch.randn(a.B, a.H, a.T, a.hs, generator=g).requires_grad_(True) for _ in range(3))
    dout = torch.randn(a.B, a.H, a.T, a.hs, generator=g)
    if a.mode == "causal":
        kw = {"is_causal": True}
    else:
        i = torch.arange(a.T)[:, None]
        j = torch.arange(a.T)[None, :]
        kw = {"attn_mask": j < torch.clamp(i + 1, min=a.n_prefix)}
    times = []
    for r in range(a.reps + 1):
        q.grad = k.grad = v.grad = None
        t0 = time.perf_counter()
        out = sdpa(q, k, v, **kw)
        out.backward(dout)
        if r > 0:   # the first is a warm-up
            times.append(time.perf_counter() - t0)
    print(f"torch_ms {1e3 * statistics.median(times):.3f}")


if __name__ == "__main__":
    sys.exit(main())
