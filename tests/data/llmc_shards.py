#!/usr/bin/python3
"""meshlm's shards against llm.c's format, checked from outside: a shard written the way llm.c's
dev/data scripts write theirs (numpy: 256 int32 header of magic, version, count; then the
tokens as uint16, or uint32 with magic 20240801 / version 7) must be byte-identical to what
`meshlm prepare` writes for the same tokens, and meshlm must read such a file back (eval runs
on it). Usage: llmc_shards.py MESHLM REPO_ROOT
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np


def llmc_shard(path, toks, magic=20240520, version=1, dtype=np.uint16):
    header = np.zeros(256, dtype=np.int32)
    header[0], header[1], header[2] = magic, version, len(toks)
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(np.array(toks, dtype=dtype).tobytes())


def main():
    meshlm, root = sys.argv[1], sys.argv[2]
    work = tempfile.mkdtemp(prefix="meshlm_llmc_")
    run = lambda *a, **k: subprocess.run([meshlm, *a], check=True, capture_output=True, **k).stdout
    with open(os.path.join(root, "data", "tinyshakespeare.txt"), "rb") as f:
        text = f.read(30000)
    with open(os.path.join(work, "doc.txt"), "wb") as f:
        f.write(text)
    run("prepare", "--tokenizer", "gpt2", "--input", os.path.join(work, "doc.txt"), "--output",
        os.path.join(work, "out"), "--val-fraction", "0")
    ids = json.loads(run("tokenizer", "encode", "--tokenizer", "gpt2", input=text))
    llmc_shard(os.path.join(work, "llmc_train.bin"), [50256] + ids)
    failed = 0
    with open(os.path.join(work, "out", "train_000000.bin"), "rb") as a, open(os.path.join(work, "llmc_train.bin"), "rb") as b:
        if a.read() != b.read():
            print("FAIL: meshlm's shard differs from llm.c's layout for the same tokens")
            failed += 1
    # uint32 variant: meshlm must read it (ids fit either way; the reader follows the magic).
    os.makedirs(os.path.join(work, "wide"))
    llmc_shard(os.path.join(work, "wide", "x_train.bin"), [50256] + ids, 20240801, 7, np.uint32)
    llmc_shard(os.path.join(work, "wide", "x_val.bin"), [50256] + ids, 20240801, 7, np.uint32)
    r = subprocess.run([meshlm, "train", "--data", os.path.join(work, "wide"), "--out", os.path.join(work, "run"),
                        "--vocab-size", "50257", "--n-layer", "1", "--n-head", "1", "--n-embd", "16", "--seq-len", "16",
                        "--batch-size", "2", "--steps", "1", "--eval-batches", "1", "--peak-gflops", "100"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print("FAIL: meshlm could not train on llm.c's uint32 shards:", r.stderr.strip())
        failed += 1
    print(f"{2 - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
