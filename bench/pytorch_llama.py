#!/usr/bin/python3
"""The PyTorch reference Llama for `meshlm bench --arch llama`, written for this project.

Llama as meshlm builds it (Hugging Face's LlamaForCausalLM): token embedding, pre-RMSNorm
blocks (grouped-query causal attention with rotary positions in the rotate_half layout, kv heads
repeated over their query group; a SwiGLU MLP), final RMSNorm, an untied LM head, no biases,
vocabulary padded to a multiple of 128, no dropout. Init: normal(0, 0.02) for every matrix,
RMSNorm weights 1 (as meshlm and HF's _init_weights). AdamW(betas 0.9/0.95, eps 1e-8, weight
decay 0.1 on matrices only), global gradient-norm clipping at 1.0. A step is forward + backward
+ clip + optimizer step, timed like meshlm (wall clock per step, median after warm-up), on
random tokens (bench/pytorch_common.py). --precision bf16 runs forward and loss under
torch.autocast(cpu, bfloat16); --compile runs the model through torch.compile; attention is
F.scaled_dot_product_attention where the PyTorch has it. Runs on PyTorch 1.13 (Debian) and 2.x.
Prints one JSON object: tokens_per_s, ms_per_step, ...
"""
import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F

from pytorch_common import add_run_args, causal_attention, time_training, use_sdpa


class RMSNorm(nn.Module):
    def __init__(self, C, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(C))
        self.eps = eps

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Block(nn.Module):
    def __init__(self, C, NH, NKV, H, eps, sdpa):
        super().__init__()
        self.NH, self.NKV, self.HS, self.sdpa = NH, NKV, C // NH, sdpa
        self.input_layernorm = RMSNorm(C, eps)
        self.q_proj = nn.Linear(C, C, bias=False)
        self.k_proj = nn.Linear(C, NKV * self.HS, bias=False)
        self.v_proj = nn.Linear(C, NKV * self.HS, bias=False)
        self.o_proj = nn.Linear(C, C, bias=False)
        self.post_attention_layernorm = RMSNorm(C, eps)
        self.gate_proj = nn.Linear(C, H, bias=False)
        self.up_proj = nn.Linear(C, H, bias=False)
        self.down_proj = nn.Linear(H, C, bias=False)

    def attention(self, x, cos, sin, mask):
        B, T, C = x.shape
        q = self.q_proj(x).view(B, T, self.NH, self.HS).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.NKV, self.HS).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.NKV, self.HS).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(self.NH // self.NKV, dim=1)  # repeat_kv
        v = v.repeat_interleave(self.NH // self.NKV, dim=1)
        return self.o_proj(causal_attention(q, k, v, mask, self.sdpa).transpose(1, 2).contiguous().view(B, T, C))

    def forward(self, x, cos, sin, mask):
        x = x + self.attention(self.input_layernorm(x), cos, sin, mask)
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Llama(nn.Module):
    def __init__(self, L, NH, NKV, C, H, V, T, theta, eps, sdpa):
        super().__init__()
        Vp = (V + 127) // 128 * 128
        self.embed_tokens = nn.Embedding(Vp, C)
        self.layers = nn.ModuleList(Block(C, NH, NKV, H, eps, sdpa) for _ in range(L))
        self.norm = RMSNorm(C, eps)
        self.lm_head = nn.Linear(C, Vp, bias=False)
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, 0.0, 0.02)
        HS = C // NH
        inv_freq = 1.0 / (theta ** (torch.arange(0, HS, 2).float() / HS))
        freqs = torch.outer(torch.arange(T).float(), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos", emb.cos()[None, None])
        self.register_buffer("sin", emb.sin()[None, None])
        self.register_buffer("mask", torch.tril(torch.ones(T, T, dtype=torch.bool)).view(1, 1, T, T))
        self.V = V

    def forward(self, idx, targets):
        T = idx.size(1)
        x = self.embed_tokens(idx)
        for block in self.layers:
            x = block(x, self.cos[..., :T, :], self.sin[..., :T, :], self.mask[..., :T, :T])
        logits = self.lm_head(self.norm(x))[..., : self.V].float()
        return F.cross_entropy(logits.reshape(-1, self.V), targets.reshape(-1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--n-kv-head", type=int, default=0)
    ap.add_argument("--n-embd", type=int, default=256)
    ap.add_argument("--ffn-hidden", type=int, default=0)
    ap.add_argument("--ffn-multiple-of", type=int, default=256)
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--rope-theta", type=float, default=500000.0)
    add_run_args(ap)
    a = ap.parse_args()
    NKV = a.n_kv_head or a.n_head
    H = a.ffn_hidden or (8 * a.n_embd // 3 + a.ffn_multiple_of - 1) // a.ffn_multiple_of * a.ffn_multiple_of
    torch.manual_seed(1337)
    torch.set_num_threads(a.threads)
    sdpa = use_sdpa(a.attention)
    model = Llama(a.n_layer, a.n_head, NKV, a.n_embd, H, a.vocab_size, a.seq_len, a.rope_theta, 1e-5, sdpa)
    matrices = sum(p.numel() for n, p in model.named_parameters() if p.dim() >= 2 and "embed_tokens" not in n)
    # as meshlm's cost records
    time_training(model, a, a.vocab_size, 6 * matrices + 12 * a.n_layer * a.n_embd * a.seq_len, sdpa)


if __name__ == "__main__":
    main()
