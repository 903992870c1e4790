// `meshlm prepare`: text files into llm.c token shards.
#include "cli/commands.h"

#include <unistd.h>
#include <chrono>
#include <cstdio>
#include <iostream>

#include "cli/common.h"
#include "core/error.h"
#include "data/prepare.h"
#include "train/metrics.h"

namespace meshlm::cli {

void add_prepare(CLI::App& app) {
  auto* cmd = app.add_subcommand("prepare", "Tokenize text files into train/val token shards");
  cmd->footer(
      "Each input file is a document (directories: their files in name order; a .jsonl file: one\n"
      "document per line, its --jsonl-key field), preceded by <|endoftext|> when the tokenizer has it.\n"
      "nanoGPT's headerless train.bin/val.bin convert with --headerless FILE... --tokenizer gpt2. Writes <output>/train_NNNNNN.bin and val_NNNNNN.bin\n"
      "in llm.c's shard format (header of 256 int32: magic 20240520, version 1, token count;\n"
      "then uint16 tokens, or uint32 with magic 20240801 version 7 past 65536 ids) and\n"
      "manifest.json (tokenizer, counts, checksums; a tokenizer file is copied in as meshlm_tokenizer.json, or tokenizer.json when it is HF's).\n"
      "The last --val-fraction of the input bytes\n"
      "(moved to the next line start) becomes the val split. Input is streamed and encoded on\n"
      "all cores.");
  auto o = std::make_shared<PrepareOptions>();
  cmd->add_option("--tokenizer", o->tokenizer,
                  "bytes (256 ids), gpt2 (50257 ids), a directory with encoder.json + vocab.bpe, or a "
                  "file from `meshlm tokenizer train` [default: bytes]");
  auto headerless = std::make_shared<std::vector<std::string>>();
  cmd->add_option("--input", o->inputs, "text files and directories; *.jsonl files hold one document per line");
  cmd->add_option("--jsonl-key", o->jsonl_key, "the field of a JSONL record holding its text [default: text]");
  cmd->add_option("--headerless", *headerless,
                  "nanoGPT's train.bin / val.bin (uint16 token ids, no header): converted to llm.c shards "
                  "(--tokenizer names their tokenizer, e.g. gpt2)");
  cmd->add_option("--output", o->output, "output directory (its old *.bin shards are removed)")->required();
  cmd->add_option("--val-fraction", o->val_fraction, "fraction held out for val [default: 0.1]");
  cmd->add_option("--shard-tokens", o->shard_tokens, "tokens per shard file [default: 100000000]");
  cmd->callback([o, headerless]() {
    const auto t0 = std::chrono::steady_clock::now();
    MESHLM_CHECK(o->inputs.empty() != headerless->empty(), "prepare takes --input (text) or --headerless (token files)");
    if (!headerless->empty()) {
      const PrepareResult r = convert_headerless_tokens(*headerless, o->tokenizer, o->output);
      std::cout << "prepared " << o->output << ": " << r.train_tokens << " train + " << r.val_tokens
                << " val tokens from headerless uint16 files, vocabulary " << r.vocab_size << " (" << o->tokenizer << ")\n";
      return;
    }
    const bool tty = ::isatty(2) == 1;
    if (tty)
      o->progress = [t0](int64_t done, int64_t total) {
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const double eta = done > 0 ? s / double(done) * double(total - done) : 0;
        std::fprintf(stderr, "\r\033[K%s  %.1f MB/s", progress_bar(done, total, eta).c_str(),
                     double(done) / 1e6 / std::max(s, 1e-9));
        std::fflush(stderr);
      };
    PrepareResult r = prepare_shards(*o);
    if (tty) std::fputs("\r\033[K", stderr);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::cout << "prepared " << o->output << ": " << r.documents << " document" << (r.documents > 1 ? "s" : "")
              << ", " << r.bytes << " bytes -> " << r.train_tokens << " train + " << r.val_tokens
              << " val tokens in " << r.shards.size() << " shard" << (r.shards.size() > 1 ? "s" : "")
              << ", vocabulary " << r.vocab_size << " (" << o->tokenizer << "), "
              << int64_t(double(r.bytes) / 1e6 / std::max(secs, 1e-9)) << " MB/s\n";
  });
}

}  // namespace meshlm::cli
