#!/usr/bin/python3
"""gen_op_fixtures.py: PyTorch reference values for every op in autograd/ops.h.

Writes tests/fixtures/ops.bin, which tests/test_forward_torch.c replays: for
each case it builds the op on a fresh graph, runs forward and compares the
output, then seeds backward with a fixed upstream gradient and compares the
gradients of the inputs.

Regenerate (needs torch; CI does not, it only reads the committed file):

    /usr/bin/python3 scripts/gen_op_fixtures.py            # from the repo root
    /usr/bin/python3 scripts/gen_op_fixtures.py OUT.bin    # somewhere else

The inputs are drawn in float32 from a fixed seed (the C test gets exactly
those floats), the reference is computed on them in float64 and rounded to
float32 once when stored. Same torch version, same bytes (checked with torch
1.13 CPU).

File format (all little-endian):

    magic     8 bytes "DSTLOPS1"
    u32       number of cases
    case, repeated:
      str       case name                     (str: u16 length, then bytes, no NUL)
      str       op name, as op_name() in autograd/ops.c
      u8 n, i32[n]  iattr, as the constructor stores them (see ops.h)
      u8 n, f32[n]  fattr, likewise
      u8        number of tensors, then each:
        str       name
        u8        role: 'i' input without gradient, 'p' input with gradient
                  ('i' and 'p' together are the constructor's tensor arguments,
                  in order; an absent optional one such as bias or mask is
                  simply not there), 'o' expected output, 'u' upstream
                  gradient d(out), 'g' expected gradient of the 'p' input of
                  the same name
        u8        dtype, the DType enum of autograd/tensor.h: 0 f32,
                  1 bf16 (raw 16-bit patterns), 2 i32, 3 u8
        u8        ndim (1..4), then u32 shape[ndim], outermost first
        bytes     numel * sizeof(dtype), row-major
"""
import math
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

MAGIC = b"DSTLOPS1"
DT_F32, DT_BF16, DT_I32, DT_U8 = 0, 1, 2, 3
OP_ALL = 0x7FFF  # ops.h: reduce over every element
F64 = torch.float64

gen = torch.Generator().manual_seed(20240601)


def randn(*shape, scale=1.0, offset=0.0):
    """float32 values (what the C test feeds in), returned as float64."""
    x = torch.randn(*shape, generator=gen, dtype=torch.float32) * scale + offset
    return x.to(F64)


def randint(lo, hi, *shape):
    return torch.randint(lo, hi, shape, generator=gen, dtype=torch.int64)


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
        """A float input that takes a gradient. Rounded to float32 first, so
        the reference sees exactly the values stored for the C test."""
        t = t.to(torch.float32).to(F64).requires_grad_(True)
        self.inputs.append((name, "p", DT_F32, t))
        return t

    def data(self, name, t, dtype=DT_F32):
        if dtype == DT_F32:
            t = t.to(torch.float32).to(F64)
        self.inputs.append((name, "i", dtype, t))
        return t

    def finish(self, out, out_dtype=DT_F32, grads=None):
        """Record the expected output; with float params, draw d(out) and
        take the input grads by autograd (or from `grads`, name -> tensor,
        where ops.h's gradient differs from torch's)."""
        self.tensors = [(n, r, d, t.detach()) for n, r, d, t in self.inputs]
        self.tensors.append(("out", "o", out_dtype, out.detach()))
        params = [(n, t) for n, r, d, t in self.inputs if r == "p"]
        if not params:
            return self
        dout = randn(*out.shape)
        self.tensors.append(("dout", "u", DT_F32, dout))
        if grads is None:
            gs = torch.autograd.grad(out, [t for _, t in params], grad_outputs=dout, allow_unused=True)
            grads = {n: (g if g is not None else torch.zeros_like(t)) for (n, t), g in zip(params, gs)}
        else:
            grads = {n: grads(dout)[n] for n, _ in params}
        for n, _ in params:
            self.tensors.append((n, "g", DT_F32, grads[n].detach()))
        return self


# ---- serialisation ------------------------------------------------------

def pack_str(s):
    b = s.encode()
    return struct.pack("<H", len(b)) + b


def tensor_bytes(dtype, t):
    if dtype == DT_F32:
        return t.to(torch.float32).contiguous().numpy().astype("<f4").tobytes()
    if dtype == DT_BF16:
        assert t.dtype == torch.bfloat16
        return t.contiguous().view(torch.int16).numpy().astype("<i2").tobytes()
    if dtype == DT_I32:
        return t.contiguous().numpy().astype("<i4").tobytes()
    if dtype == DT_U8:
        return t.contiguous().numpy().astype("u1").tobytes()
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


# ---- the cases, one group per op ----------------------------------------

def cases_matmul():
    c = Case("matmul_2d", "matmul")
    a, b = c.param("a", randn(6, 7)), c.param("b", randn(7, 5))
    yield c.finish(a @ b)
    c = Case("matmul_shared_b", "matmul")
    a, b = c.param("a", randn(2, 4, 7)), c.param("b", randn(7, 5))
    yield c.finish(a @ b)
    c = Case("matmul_batched_b", "matmul")
    a, b = c.param("a", randn(3, 4, 6)), c.param("b", randn(3, 6, 5))
    yield c.finish(torch.bmm(a, b))
    # Odd sizes past a small tile, so blocked and remainder paths both run.
    c = Case("matmul_odd_sizes", "matmul")
    a, b = c.param("a", randn(2, 33, 40)), c.param("b", randn(40, 37))
    yield c.finish(a @ b)


def cases_linear():
    c = Case("linear_bias", "linear")
    x, w, b = c.param("x", randn(2, 3, 8)), c.param("w", randn(5, 8)), c.param("bias", randn(5))
    yield c.finish(F.linear(x, w, b))
    c = Case("linear_nobias", "linear")
    x, w = c.param("x", randn(6, 8)), c.param("w", randn(4, 8))
    yield c.finish(F.linear(x, w))


def cases_add_mul():
    for op, fn in (("add", torch.add), ("mul", torch.mul)):
        c = Case(op + "_same", op)
        a, b = c.param("a", randn(2, 3, 5)), c.param("b", randn(2, 3, 5))
        yield c.finish(fn(a, b))
        c = Case(op + "_bcast_last", op)
        a, b = c.param("a", randn(2, 3, 5)), c.param("b", randn(5))
        yield c.finish(fn(a, b))
        c = Case(op + "_bcast_2d", op)
        a, b = c.param("a", randn(2, 3, 4, 5)), c.param("b", randn(4, 5))
        yield c.finish(fn(a, b))


def cases_scale():
    s = f32(-1.7)
    c = Case("scale", "scale", fattr=[s])
    x = c.param("x", randn(3, 4, 5))
    yield c.finish(x * s)


def cases_layernorm():
    eps = f32(1e-5)
    c = Case("layernorm", "layernorm", fattr=[eps])
    # Rows with a mean offset, so a kernel that drops the mean shows.
    x = c.param("x", randn(2, 3, 16, scale=2.0, offset=0.5))
    gm, bt = c.param("gamma", randn(16, offset=1.0)), c.param("beta", randn(16))
    yield c.finish(F.layer_norm(x, (16,), gm, bt, eps))
    c = Case("layernorm_2d", "layernorm", fattr=[eps])
    x = c.param("x", randn(5, 24, scale=0.3, offset=-2.0))
    gm, bt = c.param("gamma", randn(24, offset=1.0)), c.param("beta", randn(24))
    yield c.finish(F.layer_norm(x, (24,), gm, bt, eps))
    c = Case("layernorm_wide", "layernorm", fattr=[eps])
    x = c.param("x", randn(4, 100, offset=3.0))
    gm, bt = c.param("gamma", randn(100, offset=1.0)), c.param("beta", randn(100))
    yield c.finish(F.layer_norm(x, (100,), gm, bt, eps))


def cases_gelu():
    c = Case("gelu", "gelu")
    x = randn(4, 40, scale=2.0)
    x[0, :6] = torch.tensor([-9.0, -5.0, -1e-3, 0.0, 5.0, 9.0], dtype=F64)  # tails and zero
    x = c.param("x", x)
    yield c.finish(F.gelu(x, approximate="tanh"))


def cases_bias_fused():
    """The bias add of a linear layer fused into its neighbour: gelu(x + bias)
    and x + (fx + bias). 70 columns: past the CPU's 64-wide blocks."""
    c = Case("bias_gelu", "bias_gelu")
    x = randn(2, 4, 70, scale=2.0)
    x[0, 0, :6] = torch.tensor([-9.0, -5.0, -1e-3, 0.0, 5.0, 9.0], dtype=F64)  # tails and zero (bias added below)
    x, b = c.param("x", x), c.param("bias", randn(70, scale=0.5))
    yield c.finish(F.gelu(x + b, approximate="tanh"))
    c = Case("bias_residual", "bias_residual")
    x, fx, b = c.param("x", randn(2, 4, 70)), c.param("fx", randn(2, 4, 70)), c.param("bias", randn(70))
    yield c.finish(x + (fx + b))


def cases_softmax():
    c = Case("softmax", "softmax")
    x = randn(3, 4, 9, scale=3.0)
    x[0, 0, :] += 60.0  # large logits: only a max-subtracted softmax survives
    x = c.param("x", x)
    yield c.finish(torch.softmax(x, dim=-1))


def attention_ref(qkv, mask, H, n_prefix=0):
    """ops.h's attention in torch: query i sees keys j < max(i + 1, n_prefix)
    (n_prefix 0: causal) not masked, 1/sqrt(C/H), and zeros for a query
    with no allowed key."""
    B, T, C3 = qkv.shape
    C = C3 // 3
    hs = C // H
    q, k, v = qkv.split(C, dim=-1)
    q, k, v = (t.reshape(B, T, H, hs).transpose(1, 2) for t in (q, k, v))   # (B, H, T, hs)
    att = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(hs))                  # (B, H, T, T)
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    allowed = (j < torch.clamp(i + 1, min=n_prefix)).expand(B, H, T, T)
    if mask is not None:
        allowed = allowed & (mask != 0)[:, None, None, :]
    any_key = allowed.any(dim=-1, keepdim=True)                              # (B, H, T, 1)
    att = att.masked_fill(~allowed, float("-inf"))
    att = torch.where(any_key, att, torch.zeros_like(att))  # keep empty rows finite
    p = torch.softmax(att, dim=-1) * any_key
    y = p @ v                                                                # (B, H, T, hs)
    return y.transpose(1, 2).reshape(B, T, C)


def cases_attention():
    c = Case("attention_mask", "attention", iattr=[2])
    qkv = c.param("qkv", randn(2, 5, 3 * 8))
    # Batch 1: key 0 is masked, so query 0 has no allowed key (zeros).
    mask = c.data("key_mask", torch.tensor([[1, 1, 1, 1, 1], [0, 1, 1, 0, 1]], dtype=F64))
    yield c.finish(attention_ref(qkv, mask, 2))
    c = Case("attention_nomask", "attention", iattr=[3])
    qkv = c.param("qkv", randn(1, 6, 3 * 12))
    yield c.finish(attention_ref(qkv, None, 3))
    # Longer, with padded tails as a batch of short sequences has them.
    c = Case("attention_padded", "attention", iattr=[4])
    qkv = c.param("qkv", randn(2, 17, 3 * 16))
    mask = torch.ones(2, 17, dtype=F64)
    mask[0, 12:] = 0
    mask[1, 5:] = 0
    mask = c.data("key_mask", mask)
    yield c.finish(attention_ref(qkv, mask, 4))


def cases_attention_prefix():
    """The prefix mask (iattr H, mode 1, n_prefix); after every other group,
    so the cases before it keep their random draws."""
    c = Case("attention_prefix_mask", "attention", iattr=[2, 1, 3])
    qkv = c.param("qkv", randn(2, 7, 3 * 8))
    # Batch 1: key 0 masked, but query 0 sees keys 1 and 2 of the prefix.
    mask = c.data("key_mask", torch.tensor([[1, 1, 1, 1, 1, 1, 1], [0, 1, 1, 1, 0, 1, 1]], dtype=F64))
    yield c.finish(attention_ref(qkv, mask, 2, n_prefix=3))
    # The model's layout: prefix, a trace padded at its end, the action query.
    c = Case("attention_prefix_model", "attention", iattr=[4, 1, 11])
    qkv = c.param("qkv", randn(2, 17, 3 * 16))
    mask = torch.ones(2, 17, dtype=F64)
    mask[0, 14:16] = 0
    mask[1, 12:16] = 0
    mask = c.data("key_mask", mask)
    yield c.finish(attention_ref(qkv, mask, 4, n_prefix=11))


def cases_embedding():
    V, D = 7, 6
    c = Case("embedding", "embedding")
    ids = randint(0, V, 2, 5)
    ids[0, 1] = ids[0, 3]           # a repeated id: the backward must add
    ids[1, 2], ids[1, 4] = -1, V    # out of range: zero rows, no gradient
    c.data("ids", ids, DT_I32)
    table = c.param("table", randn(V, D))
    valid = (ids >= 0) & (ids < V)
    out = table[ids.clamp(0, V - 1)] * valid[..., None]
    yield c.finish(out)


def cases_concat():
    c = Case("concat_mid", "concat", iattr=[1])
    xs = [c.param("x0", randn(2, 3, 4)), c.param("x1", randn(2, 1, 4)), c.param("x2", randn(2, 5, 4))]
    yield c.finish(torch.cat(xs, dim=1))
    c = Case("concat_last", "concat", iattr=[-1])
    xs = [c.param("x0", randn(3, 2, 2)), c.param("x1", randn(3, 2, 5))]
    yield c.finish(torch.cat(xs, dim=-1))


def cases_slice():
    c = Case("slice_mid", "slice", iattr=[1, 1, 3])
    x = c.param("x", randn(2, 5, 3))
    yield c.finish(x[:, 1:4, :])
    c = Case("slice_last", "slice", iattr=[-1, 4, 2])
    x = c.param("x", randn(3, 2, 6))
    yield c.finish(x[..., 4:6])


def cases_transpose():
    c = Case("transpose_02", "transpose", iattr=[0, 2])
    x = c.param("x", randn(2, 3, 4))
    yield c.finish(x.transpose(0, 2))
    c = Case("transpose_heads", "transpose", iattr=[1, 2])  # (B, T, H, hs) -> (B, H, T, hs)
    x = c.param("x", randn(2, 3, 4, 5))
    yield c.finish(x.transpose(1, 2))


def cases_reduce():
    for op, fn in (("sum", torch.sum), ("mean", torch.mean)):
        for axis in (0, 1, -1):
            c = Case(f"{op}_axis{axis}", op, iattr=[axis])
            x = c.param("x", randn(3, 4, 5))
            yield c.finish(fn(x, dim=axis))
        c = Case(f"{op}_all", op, iattr=[OP_ALL])
        x = c.param("x", randn(4, 6, 5))
        yield c.finish(fn(x).reshape(1))


def cases_patchify():
    B, H, W, p = 2, 8, 12, 4
    mean, std = [f32(v) for v in (0.485, 0.456, 0.406)], [f32(v) for v in (0.229, 0.224, 0.225)]
    c = Case("patchify", "patchify", iattr=[p], fattr=mean + std)
    img = randint(0, 256, B, H, W, 3)
    img[0, 0, 0] = torch.tensor([0, 255, 128])
    c.data("img", img.to(torch.uint8), DT_U8)
    x = (img.to(F64) / 255.0 - torch.tensor(mean, dtype=F64)) / torch.tensor(std, dtype=F64)
    # (B, H/p, p, W/p, p, 3) -> (B, H/p, W/p, p, p, 3): patches row-major, inside (dy, dx, c).
    x = x.reshape(B, H // p, p, W // p, p, 3).permute(0, 1, 3, 2, 4, 5)
    yield c.finish(x.reshape(B, (H // p) * (W // p), p * p * 3))


def cases_trig():
    for op, fn in (("sin", torch.sin), ("cos", torch.cos)):
        c = Case(op, op)
        # Arguments up to ~30, as in time/position encodings.
        x = c.param("x", randn(4, 50, scale=8.0))
        yield c.finish(fn(x))


def cases_cumsum():
    c = Case("cumsum_mid", "cumsum", iattr=[1])
    x = c.param("x", randn(2, 8, 3))
    yield c.finish(torch.cumsum(x, dim=1))
    c = Case("cumsum_last", "cumsum", iattr=[-1])
    x = c.param("x", randn(3, 20))
    yield c.finish(torch.cumsum(x, dim=-1))


def cases_cross_entropy():
    for name, shape, ign, n_ignored in (("ce_3d", (2, 5, 7), -100, 3), ("ce_2d", (6, 11), -1, 1),
                                        ("ce_ignore_in_range", (8, 5), 2, 0)):
        V = shape[-1]
        c = Case(name, "cross_entropy", iattr=[ign])
        logits = c.param("logits", randn(*shape, scale=2.0))
        tg = randint(0, V, *shape[:-1])
        flat = tg.view(-1)
        flat[:n_ignored] = ign
        c.data("targets", tg, DT_I32)
        loss = F.cross_entropy(logits.reshape(-1, V), tg.reshape(-1), ignore_index=ign, reduction="mean")
        yield c.finish(loss.reshape(1))
    # Every target ignored: ops.h defines the loss as 0 (torch gives 0/0 = nan),
    # and so no gradient.
    c = Case("ce_all_ignored", "cross_entropy", iattr=[-100])
    logits = c.param("logits", randn(3, 4))
    c.data("targets", torch.full((3,), -100, dtype=torch.int64), DT_I32)
    yield c.finish(torch.zeros(1, dtype=F64), grads=lambda dout: {"logits": torch.zeros(3, 4, dtype=F64)})


def away_from_kink(pred, target, beta):
    """Nudge pairs whose |pred - target| is within 1e-3 of beta, where
    smooth_l1 switches branch and fp32 and fp64 might disagree on which."""
    d = (pred - target).abs()
    near = (d - beta).abs() < 1e-3
    target[near] -= 0.01 * torch.sign(pred - target)[near]
    return target


def masked_mean(l, mask):
    """sum(w * l) / sum(w), w the mask broadcast over l's trailing dims; 0
    when sum(w) == 0 (ops.h)."""
    if mask is None:
        return l.mean().reshape(1)
    w = mask.reshape(*mask.shape, *([1] * (l.dim() - mask.dim()))).expand_as(l)
    if w.sum() == 0:
        return (l * 0).sum().reshape(1)  # 0, and zero gradients
    return ((w * l).sum() / w.sum()).reshape(1)


def cases_regression():
    beta = f32(0.5)
    masks = (
        ("nomask", None),
        ("prefix_mask", lambda: (torch.rand(2, 4, generator=gen) < 0.6).to(F64)),                  # [B, T]
        ("weighted_mask", lambda: torch.rand(2, 4, 3, generator=gen, dtype=torch.float32).to(F64)),  # full shape
        ("zero_mask", lambda: torch.zeros(2, 4, dtype=F64)),
    )
    for op in ("smooth_l1", "mse"):
        for mname, mk in masks:
            c = Case(f"{op}_{mname}", op, fattr=[beta] if op == "smooth_l1" else [])
            pred = randn(2, 4, 3)
            target = randn(2, 4, 3)
            if op == "smooth_l1":
                target = away_from_kink(pred, target, beta)
            target = target.to(torch.float32).to(F64)
            pred, target = c.param("pred", pred), c.param("target", target)
            mask = c.data("mask", mk()) if mk else None
            if op == "smooth_l1":
                l = F.smooth_l1_loss(pred, target, reduction="none", beta=beta)
            else:
                l = (pred - target) ** 2
            yield c.finish(masked_mean(l, mask))


def cases_cast():
    x = randn(4, 64)
    x[1] *= 1e4
    x[2] *= 1e-38    # float32 normals near the bottom and subnormals
    special = [
        1.0 + 2.0 ** -8,          # tie between 1 and 1 + 2^-7: to even (1)
        1.0 + 3 * 2.0 ** -8,      # tie: to even (1 + 2^-6)
        -(1.0 + 2.0 ** -8), 1.0 + 2.0 ** -8 + 2.0 ** -20,  # just above a tie: up
        0.0, -0.0, float("inf"), float("-inf"),
        3.4028234e38,             # float32's largest: past bf16's largest finite, so inf
        1e-45, -1e-45,            # the smallest subnormal
        65504.0, 0.1, -0.3,
    ]
    x[3, :len(special)] = torch.tensor(special, dtype=torch.float32).to(F64)
    c = Case("cast_f32_to_bf16", "cast", iattr=[DT_BF16])
    xp = c.param("x", x)
    # torch rounds the gradient through bf16 on the way back; ops.h passes
    # it through unchanged in fp32, so the expected gradient is d(out) itself.
    yield c.finish(xp.detach().to(torch.float32).to(torch.bfloat16), DT_BF16, grads=lambda dout: {"x": dout})
    c = Case("cast_bf16_to_f32", "cast", iattr=[DT_F32])
    xb = randn(3, 20, scale=100.0).to(torch.float32).to(torch.bfloat16)
    c.data("x", xb, DT_BF16)
    yield c.finish(xb.to(F64))


GROUPS = (cases_matmul, cases_linear, cases_add_mul, cases_scale, cases_layernorm, cases_gelu,
          cases_softmax, cases_attention, cases_embedding, cases_concat, cases_slice,
          cases_transpose, cases_reduce, cases_patchify, cases_trig, cases_cumsum,
          cases_cross_entropy, cases_regression, cases_cast, cases_attention_prefix, cases_bias_fused)


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/ops.bin"
    cases = [c for group in GROUPS for c in group()]
    blob = MAGIC + struct.pack("<I", len(cases)) + b"".join(pack_case(c) for c in cases)
    with open(path, "wb") as f:
        f.write(blob)
    ops = sorted({c.op for c in cases})
    print(f"{path}: {len(cases)} cases of {len(ops)} ops, {len(blob)} bytes")


if __name__ == "__main__":
    main()
