#!/usr/bin/env python3
"""bench_torch.py: the PyTorch peer of `distil train`, for make bench.

The same student (docs/model.md, train/model.c) and the same training step
(train/step.c) written the way a PyTorch user would: nn.Linear and
nn.LayerNorm, scaled_dot_product_attention with the recipe's mask (prefix or causal) and the key mask,
the tanh GELU, the tied LM head; the distillation loss (forward KL against
the teacher's re-tempered top-k with the tail bucket and T^2 scaling), the
cross-entropy on the trace, the weighted smooth-L1 trajectory loss; then
backward, clip_grad_norm_ and torch.optim.AdamW with weight decay on the
linear weights only. Inputs are random but valid batches of the shapes
distil trains on, kept in memory.

It times the step in eager mode and, when this torch has it and it works,
with the model and losses under torch.compile, and prints one JSON object:

    {"torch": "2.x", "threads": 2, "eager": SAMPLES_PER_S, "compile": SAMPLES_PER_S or null,
     "compile_note": "...", "mm_gflops": TORCH_SGEMM_1024}

samples/s is micro_batch / the median step time after warm-up steps.

    python3 scripts/bench_torch.py '{"dim": 128, "layers": 4, ...}'    (scripts/bench_student.py passes the shapes)
"""
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

INIT_STD = 0.02
TRAJ_SCALE = (20.0, 5.0, 0.5)   # train/model.h: metres, metres, radians per unit of output


def attention(q, k, v, allowed):
    """Masked attention: torch's fused kernel where this torch has one (2.0+)."""
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    att = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    return torch.softmax(att.masked_fill(~allowed, float("-inf")), dim=-1) @ v


class Block(nn.Module):
    def __init__(self, D, heads, ratio, layers):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(D, eps=1e-5), nn.LayerNorm(D, eps=1e-5)
        self.qkv, self.proj = nn.Linear(D, 3 * D), nn.Linear(D, D)
        self.fc, self.proj2 = nn.Linear(D, ratio * D), nn.Linear(ratio * D, D)
        resid_std = INIT_STD / math.sqrt(2 * layers)
        for lin, std in ((self.qkv, INIT_STD), (self.proj, resid_std), (self.fc, INIT_STD), (self.proj2, resid_std)):
            nn.init.normal_(lin.weight, std=std)
            nn.init.zeros_(lin.bias)

    def forward(self, x, allowed):
        B, S, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(D, dim=-1)
        q, k, v = (t.view(B, S, self.heads, D // self.heads).transpose(1, 2) for t in (q, k, v))
        h = attention(q, k, v, allowed)
        x = x + self.proj(h.transpose(1, 2).reshape(B, S, D))
        return x + self.proj2(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class Student(nn.Module):
    def __init__(self, c):
        super().__init__()
        D, p = c["dim"], c["patch"]
        self.c = c
        self.P = (c["img_h"] // p) * (c["img_w"] // p)
        self.NF = c["cams"] * c["frames"]

        def table(*shape, std=INIT_STD):
            return nn.Parameter(torch.randn(*shape) * std)

        def linear(i, o):
            lin = nn.Linear(i, o)
            nn.init.normal_(lin.weight, std=INIT_STD)
            nn.init.zeros_(lin.bias)
            return lin

        self.patch_embed = linear(p * p * 3, D)
        pos_std = INIT_STD * p   # docs/model.md: the image position tables
        self.cam_emb = table(c["cams"], D, std=pos_std)
        self.frame_emb, self.patch_pos = table(c["frames"], D, std=pos_std), table(self.P, D, std=pos_std)
        self.ego_embed = linear(c["hist"] * 4, D)
        self.command_emb, self.tok_emb = table(4, D), table(c["vocab"], D)
        self.trace_pos, self.action_query = table(c["max_trace"], D), table(1, D)
        self.blocks = nn.ModuleList(Block(D, c["heads"], c["mlp_ratio"], c["layers"]) for _ in range(c["layers"]))
        self.ln_f = nn.LayerNorm(D, eps=1e-5)
        self.traj_head = linear(D, 3 * c["horizon"])
        i = torch.arange(self.NF * self.P)
        self.register_buffer("img_pos_idx", torch.stack((i // (c["frames"] * self.P), (i // self.P) % c["frames"], i % self.P)))
        self.register_buffer("pix_mean", torch.tensor(c["image_mean"]))
        self.register_buffer("pix_std", torch.tensor(c["image_std"]))
        self.register_buffer("traj_scale", torch.tensor(TRAJ_SCALE))

    def forward(self, cameras, ego, command, trace, key_mask):
        c, p, D = self.c, self.c["patch"], self.c["dim"]
        B = ego.shape[0]
        H, W = c["img_h"], c["img_w"]
        x = (cameras.float() / 255.0 - self.pix_mean) / self.pix_std                       # (B*NF, H, W, 3)
        x = x.reshape(-1, H // p, p, W // p, p, 3).permute(0, 1, 3, 2, 4, 5).reshape(-1, self.P, p * p * 3)
        cam, frame, pos = self.img_pos_idx
        img = self.patch_embed(x).reshape(B, self.NF * self.P, D) + (self.cam_emb[cam] + self.frame_emb[frame] + self.patch_pos[pos])
        tokens = (img, self.ego_embed(ego)[:, None], self.command_emb[command][:, None],
                  self.tok_emb[trace] + self.trace_pos, self.action_query.expand(B, 1, D))
        x = torch.cat(tokens, dim=1)                                                        # (B, S, D)
        S = x.shape[1]
        # model.attention (docs/model.md): query i sees keys j < i + 1 (causal), or
        # j < max(i + 1, N) with N the perception prefix's tokens (prefix).
        i = torch.arange(S, device=x.device)
        end = i + 1
        if c.get("attention", "causal") == "prefix":
            end = torch.clamp(end, min=self.NF * self.P + 2)
        visible = i[None, :] < end[:, None]                                                # (S, S)
        allowed = (visible[None] & (key_mask[:, None, :] != 0))[:, None]                   # (B, 1, S, S)
        for blk in self.blocks:
            x = blk(x, allowed)
        x = self.ln_f(x)
        n_img, L = self.NF * self.P, c["max_trace"]
        logits = x[:, n_img + 1:n_img + 1 + L] @ self.tok_emb.t()                          # (B, L, V)
        traj = self.traj_head(x[:, -1]).reshape(B, c["horizon"], 3) * self.traj_scale       # (B, T, 3)
        return logits, traj


def distill_kl(logits, topk_ids, topk_lp, mask, t_logged, T):
    """ops.h's op_distill_kl: forward KL, tail bucket, T^2 scaling."""
    valid = topk_ids >= 0
    logp = F.log_softmax(logits / T, dim=-1)
    lp_s = logp.gather(-1, topk_ids.clamp(min=0))                                          # (B, L, k)
    p_tail = (1.0 - (lp_s.exp() * valid).sum(-1)).clamp(min=1e-30)
    raw = topk_lp.exp()
    r = (1.0 - raw.sum(-1)).clamp(min=0.0) + (raw * ~valid).sum(-1)
    w = torch.exp(topk_lp * (t_logged / T)) * valid
    w_tail = r.clamp(min=1e-30) ** (t_logged / T)
    z = w.sum(-1) + w_tail
    q, q_tail = w / z[..., None], w_tail / z
    row = torch.where(valid, q * (q.clamp(min=1e-30).log() - lp_s), torch.zeros_like(q)).sum(-1)
    row = row + q_tail * (q_tail.clamp(min=1e-30).log() - p_tail.log())
    return (row * T * T * mask).sum() / mask.sum().clamp(min=1.0)


def smooth_l1(d, beta):
    a = d.abs()
    return torch.where(a < beta, 0.5 * d * d / beta, a - 0.5 * beta)


def traj_loss(pred, targets, weights, beta, yaw_weight):
    """ops.h's op_traj_loss, TRAJ_WEIGHTED."""
    d = pred[:, None] - targets                                                             # (B, K, T, 3)
    yaw = d[..., 2] - 2 * math.pi * torch.floor((d[..., 2] + math.pi) / (2 * math.pi))
    l = (smooth_l1(d[..., 0], beta) + smooth_l1(d[..., 1], beta) + yaw_weight * smooth_l1(yaw, beta)).mean(-1)
    wsum = weights.sum(-1)
    lb = (weights * l).sum(-1) / wsum.clamp(min=1e-30)
    keep = wsum > 0
    return (lb * keep).sum() / keep.sum().clamp(min=1)


def objective(model, batch, c):
    logits, traj = model(batch["cameras"], batch["ego"], batch["command"], batch["trace"], batch["key_mask"])
    V = logits.shape[-1]
    kl = distill_kl(logits, batch["topk_ids"], batch["topk_lp"], batch["kl_mask"], c["t_logged"], c["temperature"])
    ce = F.cross_entropy(logits.reshape(-1, V), batch["ce_targets"].reshape(-1), ignore_index=-1)
    tr = traj_loss(traj, batch["traj_targets"], batch["traj_weights"], c["huber_beta"], c["yaw_weight"])
    return c["w_token_kl"] * kl + c["w_ce"] * ce + c["w_traj"] * tr


def random_batch(c, gen):
    B, L, k, T, V = c["micro_batch"], c["max_trace"], c["topk"], c["horizon"], c["vocab"]
    NF = c["cams"] * c["frames"]
    S = NF * (c["img_h"] // c["patch"]) * (c["img_w"] // c["patch"]) + 2 + L + 1
    lengths = torch.randint(L // 2, L + 1, (B,), generator=gen)
    real = torch.arange(L)[None] < lengths[:, None]                                        # (B, L)
    trace = torch.randint(0, V, (B, L), generator=gen) * real
    key_mask = torch.ones(B, S)
    key_mask[:, S - L - 1:S - 1] = real.float()
    topk_lp = torch.log_softmax(torch.randn(B, L, k, generator=gen) * 2, -1) - 0.05         # some mass left for the tail
    return {
        "cameras": torch.randint(0, 256, (B * NF, c["img_h"], c["img_w"], 3), generator=gen, dtype=torch.uint8),
        "ego": torch.randn(B, c["hist"] * 4, generator=gen),
        "command": torch.randint(0, 4, (B,), generator=gen),
        "trace": trace,
        "key_mask": key_mask,
        "ce_targets": torch.where(real, trace, torch.full_like(trace, -1)),
        "topk_ids": torch.randint(0, V, (B, L, k), generator=gen),
        "topk_lp": topk_lp,
        "kl_mask": real.float(),
        "traj_targets": torch.randn(B, 1, T, 3, generator=gen) * 5,
        "traj_weights": torch.ones(B, 1),
    }


def make_optimizer(model, c):
    """Decay on linear weights only (train/model.c: not biases, norms or tables)."""
    decay = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    ids = {id(p) for p in decay}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return torch.optim.AdamW([{"params": decay, "weight_decay": c["weight_decay"]}, {"params": rest, "weight_decay": 0.0}],
                             lr=c["lr"], betas=(c["beta1"], c["beta2"]), eps=c["eps"])


def time_steps(step, steps, warmup):
    times = []
    for i in range(warmup + steps):
        t = time.perf_counter()
        step()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench(c, compiled):
    torch.manual_seed(0)
    model = Student(c)
    opt = make_optimizer(model, c)
    batch = random_batch(c, torch.Generator().manual_seed(1))
    loss_fn = torch.compile(objective) if compiled else objective

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model, batch, c)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), c["grad_clip"])
        opt.step()

    # The first compiled steps compile (forward and backward): more warm-up.
    sec = time_steps(step, c["steps"], c["warmup"] + (2 if compiled else 0))
    return c["micro_batch"] / sec


def mm_gflops(n=1024, reps=5):
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(reps))
    return 2.0 * n ** 3 / best / 1e9


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main():
    c = json.loads(sys.argv[1])
    torch.set_num_threads(c["threads"])
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "mm_gflops": round(mm_gflops(), 1)}
    out["eager"] = round(bench(c, False), 1)
    out["compile"], out["compile_note"] = None, ""
    if c.get("eager_only"):
        out["compile_note"] = "not asked for"
    elif not hasattr(torch, "compile"):
        out["compile_note"] = f"torch {torch.__version__} has no torch.compile"
    else:
        try:
            out["compile"] = round(bench(c, True), 1)
        except Exception as e:   # inductor needs a C++ compiler and more; report, do not fail the peer
            out["compile_note"] = f"torch.compile failed: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
    print(json.dumps(out))


if __name__ == "__main__":
    main()
