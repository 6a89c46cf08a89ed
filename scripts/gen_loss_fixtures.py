#!/usr/bin/python3
"""gen_loss_fixtures.py: PyTorch reference values for the distillation losses
(distill_kl, traj_loss, cosine_loss in autograd/ops.h).

Writes tests/fixtures/losses.bin, which tests/test_grad_distill.c replays:
for each case it builds the op on a fresh CPU tape, runs forward and
compares the loss, then seeds backward with the stored d(loss) and compares
the gradients of the differentiable inputs. Each loss is written here again
in torch, straight from the definitions in ops.h (not from the C kernels),
and its gradients come from torch autograd, so the hand-derived backward
passes of the kernels are checked against an independent route.

Regenerate (needs torch; CI does not, it only reads the committed file):

    /usr/bin/python3 scripts/gen_loss_fixtures.py            # from the repo root
    /usr/bin/python3 scripts/gen_loss_fixtures.py OUT.bin    # somewhere else

The inputs are drawn in float32 from a fixed seed (the C test gets exactly
those floats), the reference is computed on them in float64 and rounded to
float32 once when stored. Checked with torch 1.13 CPU.

File format: the one of scripts/gen_op_fixtures.py (all little-endian):

    magic     8 bytes "DSTLOPS1"
    u32       number of cases
    case, repeated:
      str       case name                     (str: u16 length, then bytes, no NUL)
      str       op name, as op_name() in autograd/ops.c
      u8 n, i32[n]  iattr, as the constructor stores them:
                distill_kl {mode, tail, t2}; traj_loss {mode}; cosine_loss {}
      u8 n, f32[n]  fattr, likewise:
                distill_kl {t_logged, t, beta}; traj_loss {beta, yaw_weight}
      u8        number of tensors, then each:
        str       name
        u8        role: 'i' input without gradient, 'p' input with gradient
                  ('i' and 'p' together are the constructor's tensor
                  arguments, in order; an absent optional mask is simply not
                  there), 'o' expected output, 'u' upstream gradient d(out),
                  'g' expected gradient of the 'p' input of the same name
        u8        dtype, the DType enum of autograd/tensor.h: 0 f32, 2 i32
        u8        ndim (1..4), then u32 shape[ndim], outermost first
        bytes     numel * sizeof(dtype), row-major
"""
import math
import struct
import sys

import numpy as np
import torch

MAGIC = b"DSTLOPS1"
DT_F32, DT_I32 = 0, 2
F64 = torch.float64
P_MIN = 1e-30          # ops.h: the clamp inside every log of distill_kl
COS_EPS = 1e-8         # ops.h: cosine_loss's floor on |a| |b|

gen = torch.Generator().manual_seed(20240607)


def randn(*shape, scale=1.0, offset=0.0):
    """float32 values (what the C test feeds in), returned as float64."""
    x = torch.randn(*shape, generator=gen, dtype=torch.float32) * scale + offset
    return x.to(F64)


def rand(*shape):
    return torch.rand(*shape, generator=gen, dtype=torch.float32).to(F64)


def f32(v):
    """A Python float rounded to float32, as the op's fattr will hold it."""
    return float(np.float32(v))


class Case:
    def __init__(self, name, op, iattr=(), fattr=()):
        self.name, self.op = name, op
        self.iattr = [int(v) for v in iattr]
        self.fattr = [f32(v) for v in fattr]
        self.inputs = []  # (name, role, dtype, tensor)

    def param(self, name, t):
        """A float input that takes a gradient, rounded to float32 first so
        the reference sees exactly the values stored for the C test."""
        t = t.to(torch.float32).to(F64).requires_grad_(True)
        self.inputs.append((name, "p", DT_F32, t))
        return t

    def data(self, name, t, dtype=DT_F32):
        if dtype == DT_F32:
            t = t.to(torch.float32).to(F64)
        self.inputs.append((name, "i", dtype, t))
        return t

    def finish(self, out):
        """Record the loss; draw d(loss) and take the input grads by autograd."""
        self.tensors = [(n, r, d, t.detach()) for n, r, d, t in self.inputs]
        self.tensors.append(("out", "o", DT_F32, out.detach()))
        params = [(n, t) for n, r, d, t in self.inputs if r == "p"]
        dout = randn(*out.shape)
        self.tensors.append(("dout", "u", DT_F32, dout))
        gs = torch.autograd.grad(out, [t for _, t in params], grad_outputs=dout, allow_unused=True)
        for (n, t), g in zip(params, gs):
            self.tensors.append((n, "g", DT_F32, (g if g is not None else torch.zeros_like(t)).detach()))
        return self


# ---- serialisation (the format of gen_op_fixtures.py) -------------------

def pack_str(s):
    b = s.encode()
    return struct.pack("<H", len(b)) + b


def tensor_bytes(dtype, t):
    if dtype == DT_F32:
        return t.to(torch.float32).contiguous().numpy().astype("<f4").tobytes()
    if dtype == DT_I32:
        return t.contiguous().numpy().astype("<i4").tobytes()
    raise ValueError(dtype)


def pack_case(c):
    out = pack_str(c.name) + pack_str(c.op)
    out += struct.pack("<B", len(c.iattr)) + b"".join(struct.pack("<i", v) for v in c.iattr)
    out += struct.pack("<B", len(c.fattr)) + b"".join(struct.pack("<f", v) for v in c.fattr)
    out += struct.pack("<B", len(c.tensors))
    for name, role, dtype, t in c.tensors:
        shape = list(t.shape) or [1]
        assert 1 <= len(shape) <= 4, (c.name, name, shape)
        out += pack_str(name) + struct.pack("<BBB", ord(role), dtype, len(shape))
        out += b"".join(struct.pack("<I", d) for d in shape)
        out += tensor_bytes(dtype, t)
    return out


# ---- distill_kl ------------------------------------------------------------

def clog(x):
    return x.clamp(min=P_MIN).log()


def distill_row(pi_row, ids, lp, V, a, mode, beta, tail):
    """One row's loss (before T^2) from ops.h's definition. pi_row is the
    student's softmax(logits / T) over the vocab (differentiable)."""
    valid = [j for j in range(len(ids)) if 0 <= int(ids[j]) < V]
    s = [a * lp[j] for j in valid]                     # teacher log-weights at T
    p = [pi_row[int(ids[j])] for j in valid]           # each entry its own outcome
    if tail:
        mass_all = lp.exp().sum()
        mass_invalid = sum((lp[j].exp() for j in range(len(ids)) if j not in valid), torch.zeros((), dtype=F64))
        r = (1 - mass_all).clamp(min=0) + mass_invalid
        s.append(a * r.log() if r > 0 else torch.tensor(-math.inf, dtype=F64))
        in_topk = torch.zeros(V, dtype=torch.bool)
        in_topk[[int(ids[j]) for j in valid]] = True
        p.append(pi_row[~in_topk].sum())
        p = torch.stack(p)
    else:
        if not valid:
            return torch.zeros((), dtype=F64)
        p = torch.stack(p)
        p = p / p.sum()
    q = torch.softmax(torch.stack(s), dim=0)
    if mode == 0:
        return (q * (clog(q) - clog(p))).sum()
    if mode == 1:
        return (p * (clog(p) - clog(q))).sum()
    m = beta * q + (1 - beta) * p
    return (beta * q * (clog(q) - clog(m))).sum() + ((1 - beta) * p * (clog(p) - clog(m))).sum()


def distill_ref(logits, ids, lp, mask, t_logged, t, mode, beta, tail, t2):
    V = logits.shape[-1]
    x = logits.reshape(-1, V)
    ids, lp = ids.reshape(x.shape[0], -1), lp.reshape(x.shape[0], -1)
    pi = torch.softmax(x / t, dim=-1)
    a = t_logged / t
    rows = [r for r in range(x.shape[0]) if mask is None or mask.reshape(-1)[r] != 0]
    if not rows:
        return (x * 0).sum().reshape(1)
    total = sum(distill_row(pi[r], ids[r], lp[r], V, a, mode, beta, tail) for r in rows)
    return (total / len(rows) * (t * t if t2 else 1.0)).reshape(1)


def teacher_topk(rows, k, V, n_invalid, t_logged, dup=False):
    """Top-k ids (distinct student ids, n_invalid of them -1 per row) and
    their log-probs at t_logged, from a random teacher over 3k outcomes, so
    sum exp(lp) < 1 and a tail remains."""
    ids = torch.zeros(rows, k, dtype=torch.int64)
    lp = torch.zeros(rows, k, dtype=F64)
    for r in range(rows):
        z = randn(3 * k, scale=2.0)
        logp = torch.log_softmax(z / t_logged, dim=0).sort(descending=True).values[:k]
        lp[r] = logp.to(torch.float32).to(F64)
        ids[r] = torch.randperm(V, generator=gen)[:k]
        for j in torch.randperm(k, generator=gen)[:n_invalid]:
            ids[r, j] = -1
    if dup:
        ids[0, 1] = ids[0, 0] = max(int(ids[0, 0]), 0)
    return ids, lp


def cases_distill_kl():
    t_logged, t, beta = f32(0.8), f32(2.0), f32(0.3)
    for mode, mname in ((0, "fkl"), (1, "rkl"), (2, "jsd")):
        for tail in (0, 1):
            for t2 in (0, 1):
                c = Case(f"distill_{mname}_tail{tail}_t2{t2}", "distill_kl", iattr=[mode, tail, t2],
                         fattr=[t_logged, t, beta])
                logits = c.param("logits", randn(2, 3, 23, scale=2.0))
                ids, lp = teacher_topk(6, 5, 23, 1, t_logged)
                ids = c.data("topk_ids", ids.reshape(2, 3, 5), DT_I32)
                lp = c.data("topk_logprobs", lp.reshape(2, 3, 5))
                mask = c.data("mask", torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=F64))
                yield c.finish(distill_ref(logits, ids, lp, mask, t_logged, t, mode, beta, tail, t2))
    # A wider vocab, no mask, a low temperature (sharper teacher than logged).
    for mode in (0, 1, 2):
        c = Case(f"distill_wide_mode{mode}", "distill_kl", iattr=[mode, 1, 1], fattr=[f32(1.0), f32(0.5), f32(0.5)])
        logits = c.param("logits", randn(3, 300, scale=1.5))
        ids, lp = teacher_topk(3, 8, 300, 2, 1.0)
        ids, lp = c.data("topk_ids", ids, DT_I32), c.data("topk_logprobs", lp)
        yield c.finish(distill_ref(logits, ids, lp, None, f32(1.0), f32(0.5), mode, f32(0.5), 1, 1))
    # A duplicated id (should not happen): each entry its own outcome.
    for tail in (0, 1):
        c = Case(f"distill_duplicate_id_tail{tail}", "distill_kl", iattr=[0, tail, 0], fattr=[t_logged, t, beta])
        logits = c.param("logits", randn(2, 11, scale=2.0))
        ids, lp = teacher_topk(2, 4, 11, 0, t_logged, dup=True)
        ids, lp = c.data("topk_ids", ids, DT_I32), c.data("topk_logprobs", lp)
        yield c.finish(distill_ref(logits, ids, lp, None, t_logged, t, 0, beta, tail, 0))


# ---- traj_loss -----------------------------------------------------------

def wrap(a):
    return a - 2 * math.pi * torch.floor((a + math.pi) / (2 * math.pi))


def smooth_l1(d, beta):
    if beta == 0:
        return d.abs()
    return torch.where(d.abs() < beta, 0.5 * d * d / beta, d.abs() - 0.5 * beta)


def traj_ref(pred, targets, weights, mode, beta, yaw_weight):
    B, K, T, _ = targets.shape
    d = pred[:, None] - targets                                    # (B, K, T, 3)
    l = (smooth_l1(d[..., 0], beta) + smooth_l1(d[..., 1], beta)
         + yaw_weight * smooth_l1(wrap(d[..., 2]), beta)).mean(dim=-1)   # (B, K)
    per_sample = []
    for b in range(B):
        w = weights[b]
        if w.sum() <= 0:
            continue
        if mode == 0:
            per_sample.append((w * l[b]).sum() / w.sum())
        else:
            ks = [k for k in range(K) if w[k] > 0]
            kbest = min(ks, key=lambda k: (float(l[b, k]), k))
            per_sample.append(l[b, kbest])
    if not per_sample:
        return (pred * 0).sum().reshape(1)
    return (sum(per_sample) / len(per_sample)).reshape(1)


def traj_targets(pred, K, beta, scales):
    """Targets whose differences stay >= 0.05 from the smooth-L1 kink at
    beta and whose yaw differences wrap by whole turns: target yaw =
    pred yaw - d + 2 pi m, d in (-pi + 0.2, pi - 0.2). Candidate k's
    differences are scaled by scales[b][k], which keeps best-of-K far from
    ties."""
    B, T, _ = pred.shape
    d = randn(B, K, T, 3)
    d = torch.where((d.abs() - beta).abs() < 0.05, d + 0.1 * torch.sign(d), d)
    d = d * torch.tensor(scales, dtype=F64)[:, :, None, None]
    d = torch.where((d.abs() - beta).abs() < 0.05, d + 0.1 * torch.sign(d), d)
    d[..., 2] = d[..., 2].clamp(-math.pi + 0.2, math.pi - 0.2)
    turns = torch.randint(-1, 2, (B, K, T), generator=gen).to(F64)
    tg = pred.detach()[:, None] - d
    tg[..., 2] += 2 * math.pi * turns
    return tg


def cases_traj_loss():
    beta, yaw_weight = f32(0.5), f32(2.0)
    scales = [[1.0, 1.8, 0.5], [0.4, 1.0, 2.0], [1.0, 1.0, 1.0], [2.0, 0.6, 1.2]]
    weights = torch.tensor([[0.2, 0.5, 0.3], [0.0, 1.0, 2.0], [0.0, 0.0, 0.0], [1.0, 1.0, 0.5]], dtype=F64)
    for mode, mname in ((0, "weighted"), (1, "best")):
        c = Case(f"traj_{mname}", "traj_loss", iattr=[mode], fattr=[beta, yaw_weight])
        pred = c.param("pred", randn(4, 6, 3, scale=2.0))
        targets = c.data("targets", traj_targets(pred, 3, beta, scales))
        w = c.data("weights", weights)
        yield c.finish(traj_ref(pred, targets, w, mode, beta, yaw_weight))
    # Ground truth: K = 1, weight = the presence flag; beta = 0 is the L1 loss.
    c = Case("traj_gt_l1", "traj_loss", iattr=[0], fattr=[f32(0.0), f32(0.5)])
    pred = c.param("pred", randn(3, 5, 3))
    targets = c.data("targets", traj_targets(pred, 1, 0.0, [[1.0]] * 3))
    w = c.data("weights", torch.tensor([[1.0], [0.0], [1.0]], dtype=F64))
    yield c.finish(traj_ref(pred, targets, w, 0, 0.0, f32(0.5)))


# ---- cosine_loss -----------------------------------------------------------

def cosine_ref(a, b, mask):
    cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp(min=COS_EPS)
    keep = torch.ones(a.shape[0], dtype=torch.bool) if mask is None else mask != 0
    if not keep.any():
        return (a.sum() * 0).reshape(1)
    return (1 - cos[keep]).mean().reshape(1)


def cases_cosine_loss():
    c = Case("cosine_mask", "cosine_loss")
    a = c.param("a", randn(5, 16))
    b = c.param("b", randn(5, 16) * 0.5 + 0.5 * randn(5, 16))
    mask = c.data("mask", torch.tensor([1, 0, 1, 1, 1], dtype=F64))
    yield c.finish(cosine_ref(a, b, mask))
    c = Case("cosine_nomask", "cosine_loss")
    a = c.param("a", randn(3, 40, scale=3.0))
    b = c.param("b", a.detach() + randn(3, 40))          # well aligned: cos near 1
    yield c.finish(cosine_ref(a, b, None))


GROUPS = (cases_distill_kl, cases_traj_loss, cases_cosine_loss)


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/losses.bin"
    cases = [c for group in GROUPS for c in group()]
    blob = MAGIC + struct.pack("<I", len(cases)) + b"".join(pack_case(c) for c in cases)
    with open(path, "wb") as f:
        f.write(blob)
    print(f"{path}: {len(cases)} cases, {len(blob)} bytes")


if __name__ == "__main__":
    main()
