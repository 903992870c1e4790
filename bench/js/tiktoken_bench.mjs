// js-tiktoken's GPT-2 encoding of tiny-shakespeare: the reference figure for meshlm's encoder.
// Installed and run by bench/compare_tokenizers.sh (js-tiktoken is not a meshlm dependency).
import { readFileSync } from "node:fs";
import { getEncoding } from "js-tiktoken";

const text = readFileSync(process.argv[2], "utf8");
const bytes = Buffer.byteLength(text, "utf8");
const enc = getEncoding("gpt2");
let n = enc.encode(text, [], []).length;  // warm-up
const times = [];
for (let i = 0; i < 5; i++) {
  const t0 = process.hrtime.bigint();
  n = enc.encode(text, [], []).length;
  times.push(Number(process.hrtime.bigint() - t0) / 1e9);
}
times.sort((a, b) => a - b);
const med = times[2];
console.log(`js-tiktoken gpt2: ${n} tokens, median ${(med * 1e3).toFixed(1)} ms, ${(bytes / 1e6 / med).toFixed(2)} MB/s`);
