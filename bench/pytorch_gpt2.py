#!/usr/bin/python3
"""The PyTorch reference for `meshlm bench`, written for this project (nanoGPT-style).

GPT-2 as meshlm builds it: token + position embedding, pre-LayerNorm blocks (causal attention
with a fused QKV projection, GELU-tanh MLP), final LayerNorm, LM head tied to the token
embedding, vocabulary padded to a multiple of 128, no dropout. Init: normal(0, 0.02), residual
projections 0.02 / sqrt(2 L), biases 0, LayerNorm 1/0. AdamW(betas 0.9/0.95, eps 1e-8, weight
decay 0.1 on matrices only), global gradient-norm clipping at 1.0. A step is forward + backward
+ clip + optimizer step, timed like meshlm (wall clock per step, median after warm-up), on
random tokens (bench/pytorch_common.py). --precision bf16 runs forward and loss under
torch.autocast(cpu, bfloat16); --compile runs the model through torch.compile; attention is
F.scaled_dot_product_attention where the PyTorch has it. Prints one JSON object: tokens_per_s,
ms_per_step, peak_rss_mib, ...

Runs with Debian's /usr/bin/python3 and python3-torch (1.13) and with bench/compare.sh's venv
of the current PyTorch from PyPI.
"""
import argparse
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from pytorch_common import add_run_args, causal_attention, time_training, use_sdpa


class Block(nn.Module):
    def __init__(self, C, NH, T, sdpa):
        super().__init__()
        self.NH, self.sdpa = NH, sdpa
        self.ln_1 = nn.LayerNorm(C)
        self.c_attn = nn.Linear(C, 3 * C)
        self.c_proj = nn.Linear(C, C)
        self.ln_2 = nn.LayerNorm(C)
        self.c_fc = nn.Linear(C, 4 * C)
        self.mlp_proj = nn.Linear(4 * C, C)
        self.register_buffer("mask", torch.tril(torch.ones(T, T, dtype=torch.bool)).view(1, 1, T, T))

    def attention(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.NH, C // self.NH).transpose(1, 2)
        k = k.view(B, T, self.NH, C // self.NH).transpose(1, 2)
        v = v.view(B, T, self.NH, C // self.NH).transpose(1, 2)
        y = causal_attention(q, k, v, self.mask[:, :, :T, :T], self.sdpa).transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)

    def forward(self, x):
        x = x + self.attention(self.ln_1(x))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, L, NH, C, V, T, sdpa):
        super().__init__()
        Vp = (V + 127) // 128 * 128
        self.wte = nn.Embedding(Vp, C)
        self.wpe = nn.Embedding(T, C)
        self.h = nn.ModuleList(Block(C, NH, T, sdpa) for _ in range(L))
        self.ln_f = nn.LayerNorm(C)
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif "ln_" in name:
                nn.init.ones_(p)
            elif name.endswith("c_proj.weight") or name.endswith("mlp_proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * L))
            else:
                nn.init.normal_(p, 0.0, 0.02)
        self.V = V

    def forward(self, idx, targets):
        T = idx.size(1)
        x = self.wte(idx) + self.wpe(torch.arange(T))
        for block in self.h:
            x = block(x)
        logits = self.ln_f(x) @ self.wte.weight.t()  # tied LM head, (B, T, Vp)
        logits = logits[..., : self.V].float()
        return F.cross_entropy(logits.reshape(-1, self.V), targets.reshape(-1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--n-embd", type=int, default=256)
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=8)
    add_run_args(ap)
    a = ap.parse_args()
    torch.manual_seed(1337)
    torch.set_num_threads(a.threads)
    sdpa = use_sdpa(a.attention)
    model = GPT(a.n_layer, a.n_head, a.n_embd, a.vocab_size, a.seq_len, sdpa)
    n_params = sum(p.numel() for p in model.parameters())
    time_training(model, a, a.vocab_size, 6 * n_params + 12 * a.n_layer * a.n_embd * a.seq_len, sdpa)


if __name__ == "__main__":
    main()
