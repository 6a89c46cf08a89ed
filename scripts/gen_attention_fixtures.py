#!/usr/bin/python3
"""gen_attention_fixtures.py: PyTorch scaled_dot_product_attention reference
values for op_attention (autograd/ops.h) at the model's sequence lengths,
T = 83 (the demo), 512 and 2,931 (recipes/urban4.yaml), with the causal and
the prefix mask.

Writes tests/fixtures/attention_long.bin, which tests/test_attention.c
replays. The file stays small: the inputs are not stored but drawn from a
seed by a generator both sides implement (splitmix64, below), and only a
sample of the query rows is stored (the boundaries and 24 drawn at random).

Regenerate (needs torch; CI does not, it only reads the committed file):

    /usr/bin/python3 scripts/gen_attention_fixtures.py          # from the repo root
    /usr/bin/python3 scripts/gen_attention_fixtures.py OUT.bin  # somewhere else

The format is gen_op_fixtures.py's ("DSTLOPS1", read by train/selftest/fixture.h).
Per case:
    iattr   H, mode (0 causal, 1 prefix), n_prefix, B, T, C, seed
    'i' key_mask  u8 (B, T)     1 keep, 0 a padded trace position
    'i' rows      i32 (R)       the query rows stored, ascending
    'o' out       f32 (B, R, C) the output at those rows
    'g' qkv       f32 (B, R, 3C) d(loss)/d(qkv) at those rows (q, k and v
                  channels of the row), loss = sum(out * dout)

Inputs: element n (row-major) of qkv (B, T, 3C) is uniform(seed, n) and of
dout (B, T, C) uniform(seed + 1, n), where uniform(s, n) is
    z = s + (n + 1) * 0x9E3779B97F4A7C15           (mod 2^64)
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB
    z = z ^ (z >> 31)
    value = 2 * ((z >> 40) / 2^24 * 2 - 1)         exactly a float32, in [-2, 2)

The reference runs in float64 through torch's scaled_dot_product_attention
(torch >= 2.0) or torch 1.13's _scaled_dot_product_attention, with the mask
as a boolean (B, 1, T, T) tensor built from ops.h's rule, and is checked
against a plain softmax(QK^T) V written here before it is stored.
"""
import math
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, "scripts")
from gen_op_fixtures import DT_F32, DT_I32, DT_U8, MAGIC, pack_str, tensor_bytes  # noqa: E402

F64 = torch.float64
ATTN_CAUSAL, ATTN_PREFIX = 0, 1
M64 = (1 << 64) - 1


def uniform(seed, n):
    """The seeded inputs (see the module doc), as float64 holding float32 values."""
    z = (np.uint64(seed) + (np.arange(n, dtype=np.uint64) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15))
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(40)).astype(np.float64) / float(1 << 24)
    return torch.from_numpy(2.0 * (u * 2.0 - 1.0))


def allowed_mask(key_mask, mode, n_prefix):
    """ops.h: query i sees key j iff j < visible_end(i) and key_mask[b, j]."""
    B, T = key_mask.shape
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    end = i + 1 if mode == ATTN_CAUSAL else torch.clamp(i + 1, min=n_prefix)
    return (j < end)[None, None] & (key_mask != 0)[:, None, None, :]      # (B, 1, T, T)


def sdpa(q, k, v, allowed):
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    return F._scaled_dot_product_attention(q, k, v, attn_mask=allowed)[0]


def split_heads(qkv, H):
    B, T, C3 = qkv.shape
    C = C3 // 3
    return [t.reshape(B, T, H, C // H).transpose(1, 2) for t in qkv.split(C, dim=-1)]   # (B, H, T, hs)


def plain_attention(qkv, allowed, H):
    q, k, v = split_heads(qkv, H)
    s = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    p = torch.softmax(s.masked_fill(~allowed, float("-inf")), dim=-1)
    return p @ v


def case(T, mode, n_prefix, B, H, C, seed, pad, rows):
    """pad: per sample, the [start, end) of its padded key positions."""
    key_mask = torch.ones(B, T, dtype=torch.uint8)
    for b, (lo, hi) in enumerate(pad):
        key_mask[b, lo:hi] = 0
    allowed = allowed_mask(key_mask, mode, n_prefix)
    assert allowed.any(dim=-1).all(), "every query must see a key (SDPA gives NaN otherwise)"
    qkv = uniform(seed, B * T * 3 * C).reshape(B, T, 3 * C).requires_grad_(True)
    dout = uniform(seed + 1, B * T * C).reshape(B, T, C)
    q, k, v = split_heads(qkv, H)
    y = sdpa(q, k, v, allowed)                                              # (B, H, T, hs)
    plain = plain_attention(qkv.detach(), allowed, H)
    assert torch.allclose(y.detach(), plain, rtol=1e-10, atol=1e-12), "SDPA disagrees with softmax(QK^T)V"
    out = y.transpose(1, 2).reshape(B, T, C)
    (grad,) = torch.autograd.grad(out, qkv, grad_outputs=dout)
    rows = torch.tensor(sorted(set(rows)), dtype=torch.int64)
    name = f"attention_T{T}_{'prefix' if mode == ATTN_PREFIX else 'causal'}"
    tensors = [("key_mask", "i", DT_U8, key_mask), ("rows", "i", DT_I32, rows),
               ("out", "o", DT_F32, out.detach()[:, rows]), ("qkv", "g", DT_F32, grad[:, rows])]
    blob = pack_str(name) + pack_str("attention")
    iattr = [H, mode, n_prefix if mode == ATTN_PREFIX else 0, B, T, C, seed]
    blob += struct.pack("<B", len(iattr)) + b"".join(struct.pack("<i", x) for x in iattr)
    blob += struct.pack("<B", 0) + struct.pack("<B", len(tensors))
    for tname, role, dtype, t in tensors:
        blob += pack_str(tname) + struct.pack("<BBB", ord(role), dtype, t.dim())
        blob += b"".join(struct.pack("<I", d) for d in t.shape) + tensor_bytes(dtype, t)
    return blob


def sample_rows(T, n_prefix, n_trace, count, gen):
    """The boundaries (first and last rows, the prefix's edges, the trace,
    the action query) and `count` more drawn at random."""
    fixed = [0, 1, n_prefix - 2, n_prefix - 1, n_prefix, n_prefix + 1, n_prefix + n_trace // 2, T - 2, T - 1]
    drawn = torch.randint(0, T, (count,), generator=gen).tolist()
    return [r for r in fixed + drawn if 0 <= r < T]


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/attention_long.bin"
    gen = torch.Generator().manual_seed(20240611)
    # (T, image + ego + command tokens, trace tokens, batch, per-sample valid
    # trace lengths): the model's layout, S = prefix + trace + 1 action query.
    shapes = [(83, 66, 16, 2, [9, 16]), (512, 386, 125, 2, [40, 125]), (2931, 2802, 128, 1, [57])]
    H, C = 2, 16
    cases = []
    for T, n_prefix, n_trace, B, valid in shapes:
        assert n_prefix + n_trace + 1 == T
        pad = [(n_prefix + n, n_prefix + n_trace) for n in valid]
        rows = sample_rows(T, n_prefix, n_trace, 24, gen)
        for mode in (ATTN_CAUSAL, ATTN_PREFIX):
            cases.append(case(T, mode, n_prefix, B, H, C, 1000 + T + mode, pad, rows))
    blob = MAGIC + struct.pack("<I", len(cases)) + b"".join(cases)
    with open(path, "wb") as f:
        f.write(blob)
    print(f"{path}: {len(cases)} cases, {len(blob)} bytes (torch {torch.__version__})")


if __name__ == "__main__":
    main()
