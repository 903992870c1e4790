#!/usr/bin/python3
"""An independent GPT-2 forward pass in NumPy (float64), written from Hugging Face's
GPT2LMHeadModel definition, reading meshlm's model.safetensors with its own parser. It checks
three things meshlm claims: the checkpoint, exported by `meshlm export`, is a Hugging Face
directory whose config.json alone describes the model and whose safetensors file has GPT-2's
names and (in, out) Conv1D layouts, the model computes exactly what GPT2LMHeadModel computes,
and `meshlm eval` averages the loss over the documented sequential batches. Then the other
way: random weights written as a Hugging Face GPT2Model file would be (fp16, names without the
"transformer." prefix, the attn.bias mask buffers) start `meshlm train --init-from`, whose
first loss must be the reference's on the same fp16 values.

Usage: hf_reference.py MESHLM REPO_ROOT   (trains a tiny model first, then compares)
"""
import json
import math
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    tensors = {}
    for name, e in header.items():
        assert e["dtype"] == "F32", (name, e["dtype"])
        b, end = e["data_offsets"]
        tensors[name] = np.frombuffer(data[base + b : base + end], dtype="<f4").reshape(e["shape"]).astype(np.float64)
    return tensors, meta


def read_shard(path):
    with open(path, "rb") as f:
        header = np.frombuffer(f.read(1024), dtype="<i4")
        assert header[0] == 20240520 and header[1] == 1, header[:3]
        return np.frombuffer(f.read(), dtype="<u2")[: header[2]].astype(np.int64)


def layer_norm(x, w, b, eps=1e-5):  # torch.nn.LayerNorm, layer_norm_epsilon = 1e-5
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)  # biased variance
    return (x - mu) / np.sqrt(var + eps) * w + b


def gelu_new(x):  # transformers.activations.NewGELUActivation
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def gpt2_loss(W, n_layer, n_head, ids, targets):
    B, T = ids.shape
    h = W["transformer.wte.weight"][ids] + W["transformer.wpe.weight"][np.arange(T)]
    C = h.shape[-1]
    hs = C // n_head
    mask = np.tril(np.ones((T, T), dtype=bool))
    for l in range(n_layer):
        p = f"transformer.h.{l}."
        a = layer_norm(h, W[p + "ln_1.weight"], W[p + "ln_1.bias"])
        qkv = a @ W[p + "attn.c_attn.weight"] + W[p + "attn.c_attn.bias"]  # Conv1D: x @ W + b
        q, k, v = np.split(qkv, 3, axis=-1)
        heads = lambda t: t.reshape(B, T, n_head, hs).transpose(0, 2, 1, 3)
        q, k, v = heads(q), heads(k), heads(v)
        att = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hs)
        att = np.where(mask, att, -np.inf)
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        y = (att @ v).transpose(0, 2, 1, 3).reshape(B, T, C)
        h = h + y @ W[p + "attn.c_proj.weight"] + W[p + "attn.c_proj.bias"]
        m = layer_norm(h, W[p + "ln_2.weight"], W[p + "ln_2.bias"])
        m = gelu_new(m @ W[p + "mlp.c_fc.weight"] + W[p + "mlp.c_fc.bias"])
        h = h + m @ W[p + "mlp.c_proj.weight"] + W[p + "mlp.c_proj.bias"]
    h = layer_norm(h, W["transformer.ln_f.weight"], W["transformer.ln_f.bias"])
    return cross_entropy(h @ W["transformer.wte.weight"].T, targets)  # lm_head tied to wte


def cross_entropy(logits, targets):  # the mean of -log softmax(logits)[target]
    logits = logits - logits.max(-1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return -np.take_along_axis(logp, targets[..., None], -1).mean()


def small_corpus(meshlm, root, prefix):
    """A work directory with byte shards of the corpus's first 40 KB, and a runner of meshlm."""
    work = tempfile.mkdtemp(prefix=prefix)
    run = lambda *a: subprocess.run([meshlm, *a], check=True, capture_output=True, text=True).stdout
    with open(os.path.join(root, "data", "tinyshakespeare.txt"), "rb") as f:
        text = f.read(40000)
    with open(os.path.join(work, "small.txt"), "wb") as f:
        f.write(text)
    run("prepare", "--input", os.path.join(work, "small.txt"), "--output", os.path.join(work, "data"))
    return work, run


def main():
    meshlm, root = sys.argv[1], sys.argv[2]
    work, run = small_corpus(meshlm, root, "meshlm_hf_")
    L, NH, B, T = 2, 4, 2, 32
    # vocab 200 pads to 256 inside meshlm: the file must hold the unpadded (200, C) tensor.
    # A few steps at a high learning rate make biases and layernorms non-trivial.
    run("train", "--data", os.path.join(work, "data"), "--out", os.path.join(work, "run"), "--n-layer", str(L),
        "--n-head", str(NH), "--n-embd", "64", "--seq-len", str(T), "--batch-size", str(B), "--steps", "8",
        "--lr", "1e-2", "--warmup-steps", "0", "--eval-batches", "0", "--peak-gflops", "100", "--vocab-size", "200")
    ckpt = os.path.join(work, "run", "step_000008")
    # `meshlm export` writes a Hugging Face directory; the reference reads it by its config.json alone.
    hf = os.path.join(work, "hf")
    run("export", "--checkpoint", ckpt, "--out", hf)
    config = json.load(open(os.path.join(hf, "config.json")))
    assert config["architectures"] == ["GPT2LMHeadModel"] and config["activation_function"] == "gelu_new", config
    assert config["tie_word_embeddings"] and config["n_positions"] == T, config
    L, NH = config["n_layer"], config["n_head"]
    W, meta = read_safetensors(os.path.join(hf, "model.safetensors"))
    assert meta.get("format") == "pt", meta
    assert W["transformer.wte.weight"].shape == (200, 64)
    assert W["transformer.h.0.attn.c_attn.weight"].shape == (64, 192)  # Conv1D (in, out)
    assert W["transformer.h.1.mlp.c_proj.weight"].shape == (256, 64)
    assert abs(W["transformer.h.0.attn.c_attn.bias"]).max() > 0, "biases were trained"
    batches = 3
    got = json.loads(run("eval", "--checkpoint", ckpt, "--data", os.path.join(work, "data"), "--batches",
                         str(batches), "--json"))["val_loss"]
    val = read_shard(os.path.join(work, "data", "val_000000.bin"))
    losses = []
    for b in range(batches):  # batch b: tokens [b B T, (b + 1) B T + 1)
        w = val[b * B * T : (b + 1) * B * T + 1]
        losses.append(gpt2_loss(W, L, NH, w[:-1].reshape(B, T), w[1:].reshape(B, T)))
    want = float(np.mean(losses))
    # fp32 against float64: 10 (6L + 4) sqrt(K) u with K = max(4C, Vp, T) (docs/numerics.md).
    tol = 10 * (6 * L + 4) * math.sqrt(256) * 2.0**-24
    rel = abs(got - want) / want
    print(f"meshlm eval {got:.9f}  numpy GPT-2 {want:.9f}  relative difference {rel:.2e} (bound {tol:.2e})")
    if not rel <= tol:
        print("1 failed: meshlm's loss differs from the NumPy GPT-2 reference")
        sys.exit(1)
    failed = check_import(run, work, L, NH, B, T)
    print(f"{2 - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


def write_safetensors(path, tensors):
    """A safetensors file of numpy arrays (float16, float32 or bool), in the given order."""
    dtypes = {np.dtype(np.float16): "F16", np.dtype(np.float32): "F32", np.dtype(np.bool_): "BOOL"}
    header, offset, blobs = {}, 0, []
    for name, a in tensors.items():
        blob = np.ascontiguousarray(a).tobytes()
        header[name] = {"dtype": dtypes[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    h = json.dumps(header).encode()
    h += b" " * (-(8 + len(h)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def check_import(run, work, L, NH, B, T):
    """--init-from a GPT2Model-style fp16 file: the first training loss is the reference's."""
    C, V, P = 64, 200, 64
    rng = np.random.default_rng(5)
    shapes = {"wte.weight": (V, C), "wpe.weight": (P, C), "ln_f.weight": (C,), "ln_f.bias": (C,)}
    for l in range(L):
        p = f"h.{l}."
        shapes.update({p + "ln_1.weight": (C,), p + "ln_1.bias": (C,), p + "attn.c_attn.weight": (C, 3 * C),
                       p + "attn.c_attn.bias": (3 * C,), p + "attn.c_proj.weight": (C, C), p + "attn.c_proj.bias": (C,),
                       p + "ln_2.weight": (C,), p + "ln_2.bias": (C,), p + "mlp.c_fc.weight": (C, 4 * C),
                       p + "mlp.c_fc.bias": (4 * C,), p + "mlp.c_proj.weight": (4 * C, C), p + "mlp.c_proj.bias": (C,)})
    W16 = {}
    for name, shape in shapes.items():
        centre = 1.0 if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name == "ln_f.weight" else 0.0
        W16[name] = (centre + 0.1 * rng.standard_normal(shape)).astype(np.float16)
    tensors = dict(W16)
    for l in range(L):  # the causal-mask buffer old GPT-2 files carry: skipped by the importer
        tensors[f"h.{l}.attn.bias"] = np.tril(np.ones((1, 1, P, P), dtype=np.bool_))
    path = os.path.join(work, "gpt2_fp16.safetensors")
    write_safetensors(path, tensors)
    out = os.path.join(work, "imported")
    log = run("train", "--init-from", path, "--data", os.path.join(work, "data"), "--out", out, "--n-layer", str(L),
              "--n-head", str(NH), "--n-embd", str(C), "--vocab-size", str(V), "--max-seq-len", str(P), "--seq-len",
              str(T), "--batch-size", str(B), "--steps", "1", "--eval-batches", "0", "--peak-gflops", "100")
    assert "init    " + str(4 + 12 * L) + " tensors (F16)" in log, log
    got = json.loads(open(os.path.join(out, "metrics.jsonl")).readline())["loss"]
    train = read_shard(os.path.join(work, "data", "train_000000.bin"))
    w = train[: B * T + 1]
    W = {"transformer." + k: v.astype(np.float64) for k, v in W16.items()}
    want = gpt2_loss(W, L, NH, w[:-1].reshape(B, T), w[1:].reshape(B, T))
    # The up-cast is exact, so the bound is fp32's against float64 (as above); the weights'
    # own fp16 rounding (2^-11 relative) moves the loss far more, and is the reference's too.
    tol = 10 * (6 * L + 4) * math.sqrt(256) * 2.0**-24
    rel = abs(got - want) / want
    print(f"--init-from fp16 file: first loss {got:.9f}  numpy on the fp16 weights {want:.9f}  "
          f"relative difference {rel:.2e} (bound {tol:.2e})")
    if not rel <= tol:
        print("failed: the imported model's first loss differs from the reference's")
        return 1
    return 0


if __name__ == "__main__":
    main()
