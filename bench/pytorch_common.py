"""What bench/pytorch_gpt2.py and bench/pytorch_llama.py share: the run options, causal
attention (F.scaled_dot_product_attention where the PyTorch has it, else the explicit
softmax(q k^T / sqrt(d)) v), AdamW as the reference configures it, and the timed training loop
with its one JSON line. Runs on PyTorch 1.13 (Debian's) and 2.x (bench/compare.sh's venv).
"""
import json
import resource
import statistics
import time

import torch
import torch.nn.functional as F


def add_run_args(ap):
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                    help="bf16: forward and loss under torch.autocast(cpu, bfloat16)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first (they include torch.compile's compile)")
    ap.add_argument("--timed-steps", type=int, default=10)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (the GPU check runs it on the lent GPU)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile the model (PyTorch 2: Inductor's C++/OpenMP code on the CPU)")
    ap.add_argument("--attention", choices=["auto", "sdpa", "manual"], default="auto",
                    help="auto: F.scaled_dot_product_attention where this PyTorch has it (2.x), else manual")


def use_sdpa(choice):
    has = hasattr(F, "scaled_dot_product_attention")
    if choice == "sdpa" and not has:
        raise SystemExit(f"PyTorch {torch.__version__} has no F.scaled_dot_product_attention (2.0 and later)")
    return has if choice == "auto" else choice == "sdpa"


def causal_attention(q, k, v, mask, sdpa):
    """q, k, v: (B, NH, T, HS); mask: (1, 1, T, T) bool, True where a query may attend."""
    if sdpa:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    att = (q @ k.transpose(-2, -1)) * (q.size(-1) ** -0.5)
    return F.softmax(att.masked_fill(~mask, float("-inf")), dim=-1) @ v


def adamw(model):
    """AdamW(betas 0.9/0.95, eps 1e-8, weight decay 0.1 on matrices only); PyTorch's fused CPU
    kernel where it has one (2.4 and later), else its default (foreach)."""
    groups = [{"params": [p for p in model.parameters() if p.dim() >= 2], "weight_decay": 0.1},
              {"params": [p for p in model.parameters() if p.dim() < 2], "weight_decay": 0.0}]
    try:
        return torch.optim.AdamW(groups, lr=6e-4, betas=(0.9, 0.95), eps=1e-8, fused=True), "fused"
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(groups, lr=6e-4, betas=(0.9, 0.95), eps=1e-8), "default"


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def time_training(model, a, vocab_size, flops_per_token, sdpa):
    """Forward + backward + clip + AdamW step on random tokens, wall clock per step after the
    warm-up, as `meshlm bench` times it; prints the JSON line."""
    model.to(a.device)
    opt, opt_kind = adamw(model)
    step_model = torch.compile(model) if a.compile else model
    g = torch.Generator().manual_seed(7)
    times = []
    for step in range(a.warmup + a.timed_steps):
        x = torch.randint(0, vocab_size, (a.batch_size, a.seq_len), generator=g).to(a.device)
        y = torch.randint(0, vocab_size, (a.batch_size, a.seq_len), generator=g).to(a.device)
        sync(a.device)
        t0 = time.perf_counter()
        with torch.autocast(device_type=a.device, dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            loss = step_model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sync(a.device)
        if step >= a.warmup:
            times.append(time.perf_counter() - t0)
    ms = statistics.median(times) * 1e3
    tokens = a.batch_size * a.seq_len
    print(json.dumps({
        "tokens_per_s": tokens / (ms / 1e3), "ms_per_step": ms,
        "ms_min": min(times) * 1e3, "ms_max": max(times) * 1e3,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "model_gflops": flops_per_token * tokens / (ms / 1e3) / 1e9, "steps": len(times),
        "precision": a.precision, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "compile": bool(a.compile), "attention": "sdpa" if sdpa else "manual", "optimizer": opt_kind,
        "final_loss": float(loss.detach())}))
