#!/usr/bin/python3
"""An independent Llama forward pass in NumPy (float64), written from Hugging Face's
LlamaForCausalLM definition (RMSNorm, rotary embedding with rotate_half and Llama 3.1's
"llama3" frequency scaling, repeat_kv for grouped-query attention, SwiGLU), reading meshlm's
model.safetensors with the GPT-2 reference's parser, taking the model from the config.json that
`meshlm export` writes. It checks that the exported directory has Hugging Face's Llama names and
(out, in) nn.Linear layouts and a LlamaConfig that describes the model, and that `meshlm eval` computes
what LlamaForCausalLM computes on the documented sequential batches.

Usage: hf_llama_reference.py MESHLM REPO_ROOT   (trains a tiny Llama first, then compares)
"""
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_reference import cross_entropy, read_safetensors, read_shard, small_corpus, write_safetensors  # noqa: E402


def rms_norm(x, w, eps):  # LlamaRMSNorm: x * rsqrt(mean(x^2) + eps), then the weight
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def inv_freq(cfg, hs):  # LlamaRotaryEmbedding, rope_type "default" or "llama3"
    f = 1.0 / (cfg["rope_theta"] ** (np.arange(0, hs, 2, dtype=np.float64) / hs))
    if cfg["rope_scaling"] != "llama3":
        return f
    factor, lo, hi, old = cfg["rope_factor"], cfg["rope_low_freq_factor"], cfg["rope_high_freq_factor"], cfg[
        "rope_original_max_position"]
    wavelen = 2 * math.pi / f
    scaled = np.where(wavelen > old / lo, f / factor, f)
    smooth = (old / wavelen - lo) / (hi - lo)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < old / hi) & ~(wavelen > old / lo)
    return np.where(medium, smoothed, scaled)


def rotate_half(x):
    x1, x2 = np.split(x, 2, axis=-1)
    return np.concatenate([-x2, x1], axis=-1)


def llama_loss(W, cfg, ids, targets):
    B, T = ids.shape
    NH, NKV = cfg["n_head"], cfg["n_kv_head"]
    h = W["model.embed_tokens.weight"][ids]
    C = h.shape[-1]
    hs = C // NH
    freqs = np.outer(np.arange(T, dtype=np.float64), inv_freq(cfg, hs))
    emb = np.concatenate([freqs, freqs], axis=-1)  # (T, hs)
    cos, sin = np.cos(emb), np.sin(emb)
    mask = np.tril(np.ones((T, T), dtype=bool))
    eps = cfg["norm_eps"]
    for l in range(cfg["n_layer"]):
        p = f"model.layers.{l}."
        a = rms_norm(h, W[p + "input_layernorm.weight"], eps)
        heads = lambda t, n: t.reshape(B, T, n, hs).transpose(0, 2, 1, 3)
        q = heads(a @ W[p + "self_attn.q_proj.weight"].T, NH)  # nn.Linear: x @ W^T
        k = heads(a @ W[p + "self_attn.k_proj.weight"].T, NKV)
        v = heads(a @ W[p + "self_attn.v_proj.weight"].T, NKV)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = np.repeat(k, NH // NKV, axis=1), np.repeat(v, NH // NKV, axis=1)  # repeat_kv
        att = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hs)
        att = np.where(mask, att, -np.inf)
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        y = (att @ v).transpose(0, 2, 1, 3).reshape(B, T, C)
        h = h + y @ W[p + "self_attn.o_proj.weight"].T
        m = rms_norm(h, W[p + "post_attention_layernorm.weight"], eps)
        g, u = m @ W[p + "mlp.gate_proj.weight"].T, m @ W[p + "mlp.up_proj.weight"].T
        h = h + (g / (1 + np.exp(-g)) * u) @ W[p + "mlp.down_proj.weight"].T
    h = rms_norm(h, W["model.norm.weight"], eps)
    return cross_entropy(h @ W["lm_head.weight"].T, targets)


def main():
    meshlm, root = sys.argv[1], sys.argv[2]
    work, run = small_corpus(meshlm, root, "meshlm_hf_llama_")
    # Grouped-query attention (4 query heads, 2 kv heads), Llama 3.1 rope scaling with a short
    # original context so every frequency regime appears, vocab 200 padded to 256 inside.
    B, T, C, H = 2, 32, 64, 160
    run("train", "--arch", "llama", "--data", os.path.join(work, "data"), "--out", os.path.join(work, "run"),
        "--n-layer", "2", "--n-head", "4", "--n-kv-head", "2", "--n-embd", str(C), "--ffn-hidden", str(H),
        "--rope-theta", "10000", "--rope-scaling", "llama3", "--rope-factor", "4", "--rope-original-max-position",
        "64", "--seq-len", str(T), "--batch-size", str(B), "--steps", "8", "--lr", "1e-2", "--warmup-steps", "0",
        "--eval-batches", "0", "--peak-gflops", "100", "--vocab-size", "200")
    ckpt = os.path.join(work, "run", "step_000008")
    # `meshlm export` writes a Hugging Face directory; the reference takes the model from its
    # config.json alone (LlamaConfig's field names), not from the flags above.
    hf = os.path.join(work, "hf")
    run("export", "--checkpoint", ckpt, "--out", hf)
    hc = json.load(open(os.path.join(hf, "config.json")))
    assert hc["architectures"] == ["LlamaForCausalLM"] and hc["hidden_act"] == "silu", hc
    assert hc["intermediate_size"] == H and hc["hidden_size"] == C and not hc["tie_word_embeddings"], hc
    rs = hc["rope_scaling"]
    cfg = {"n_layer": hc["num_hidden_layers"], "n_head": hc["num_attention_heads"],
           "n_kv_head": hc["num_key_value_heads"], "rope_theta": hc["rope_theta"], "norm_eps": hc["rms_norm_eps"],
           "rope_scaling": rs["rope_type"] if rs else "none"}
    if rs:
        cfg.update({"rope_factor": rs["factor"], "rope_low_freq_factor": rs["low_freq_factor"],
                    "rope_high_freq_factor": rs["high_freq_factor"],
                    "rope_original_max_position": rs["original_max_position_embeddings"]})
    W, meta = read_safetensors(os.path.join(hf, "model.safetensors"))
    assert meta.get("format") == "pt", meta
    assert W["model.embed_tokens.weight"].shape == (200, C)
    assert W["lm_head.weight"].shape == (200, C)
    assert W["model.layers.0.self_attn.q_proj.weight"].shape == (C, C)  # nn.Linear (out, in)
    assert W["model.layers.0.self_attn.k_proj.weight"].shape == (C // 2, C)  # 2 kv heads of 16
    assert W["model.layers.1.mlp.down_proj.weight"].shape == (C, H)
    assert not any(n.endswith(".bias") for n in W), "Llama has no biases"
    assert abs(W["model.norm.weight"] - 1).max() > 0, "the norms were trained"
    batches = 3
    got = json.loads(run("eval", "--checkpoint", ckpt, "--data", os.path.join(work, "data"), "--batches",
                         str(batches), "--json"))["val_loss"]
    val = read_shard(os.path.join(work, "data", "val_000000.bin"))
    losses = []
    for b in range(batches):  # batch b: tokens [b B T, (b + 1) B T + 1)
        w = val[b * B * T : (b + 1) * B * T + 1]
        losses.append(llama_loss(W, cfg, w[:-1].reshape(B, T), w[1:].reshape(B, T)))
    want = float(np.mean(losses))
    # fp32 against float64: 10 (6L + 4) sqrt(K) u with K = max(ffn_hidden, Vp, T) as for GPT-2
    # (docs/numerics.md); the rotary table is computed in double and rounded once.
    tol = 10 * (6 * 2 + 4) * math.sqrt(256) * 2.0**-24
    rel = abs(got - want) / want
    print(f"meshlm eval {got:.9f}  numpy Llama {want:.9f}  relative difference {rel:.2e} (bound {tol:.2e})")
    failed = 0 if rel <= tol else 1
    if failed:
        print("failed: meshlm's loss differs from the NumPy Llama reference")
    failed += check_import(run, work, hf, W, cfg, B, T, tol)
    print(f"{2 - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


def check_import(run, work, hf, W, cfg, B, T, tol):
    """The other way: the trained weights as a LlamaModel-style fp16 file (names without "model.",
    rotary inv_freq buffers) beside the export's config.json, into `meshlm train --init-from DIR`
    (the model keys from config.json alone): its first loss is the reference's on the fp16 values."""
    d = os.path.join(work, "hf_fp16")
    os.makedirs(d)
    with open(os.path.join(hf, "config.json")) as f, open(os.path.join(d, "config.json"), "w") as g:
        g.write(f.read())
    W16 = {k: v.astype(np.float16) for k, v in W.items()}
    tensors = {k[len("model."):] if k.startswith("model.") else k: v for k, v in W16.items()}
    for l in range(cfg["n_layer"]):
        tensors[f"layers.{l}.self_attn.rotary_emb.inv_freq"] = np.ones(8, dtype=np.float32)
    write_safetensors(os.path.join(d, "model.safetensors"), tensors)
    out = os.path.join(work, "imported")
    log = run("train", "--init-from", d, "--data", os.path.join(work, "data"), "--out", out, "--seq-len", str(T),
              "--batch-size", str(B), "--steps", "1", "--eval-batches", "0", "--peak-gflops", "100")
    assert "model   from " in log and "tensors (F16)" in log and "2 buffers" in log, log  # the F32 buffers skipped
    got = json.loads(open(os.path.join(out, "metrics.jsonl")).readline())["loss"]
    train = read_shard(os.path.join(work, "data", "train_000000.bin"))
    w = train[: B * T + 1]
    want = llama_loss({k: v.astype(np.float64) for k, v in W16.items()}, cfg, w[:-1].reshape(B, T), w[1:].reshape(B, T))
    rel = abs(got - want) / want
    print(f"--init-from a LlamaModel-style fp16 directory: first loss {got:.9f}  numpy on the fp16 weights "
          f"{want:.9f}  relative difference {rel:.2e} (bound {tol:.2e})")
    return 0 if rel <= tol else 1


if __name__ == "__main__":
    main()
