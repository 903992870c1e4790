// `meshlm tokenizer train | encode | decode`.
#include "cli/commands.h"

#include <unistd.h>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>

#include "cli/common.h"
#include "core/error.h"
#include "data/bpe.h"
#include "data/bpe_train.h"
#include "train/metrics.h"

namespace meshlm::cli {

void add_tokenizer(CLI::App& app) {
  auto* cmd = app.add_subcommand("tokenizer", "Train a BPE vocabulary; encode or decode with a tokenizer");
  cmd->require_subcommand(1);
  auto* tr = cmd->add_subcommand("train", "Train a byte-level BPE vocabulary on text files");
  tr->footer(
      "Pre-tokenizes with GPT-2's pattern, then merges the most frequent adjacent pair, ties to the\n"
      "smaller token ids, until --vocab-size tokens exist (the last one is <|endoftext|>). The file\n"
      "is JSON: {\"format\": \"meshlm-bpe\", \"version\": 1, \"pattern\": \"gpt2\", \"merges\": [[a, b], ...],\n"
      "\"special_tokens\": {\"<|endoftext|>\": id}}; merge i makes token 256 + i.");
  struct TrainOpts {
    int64_t vocab_size = 4096;
    std::vector<std::string> inputs;
    std::string output;
  };
  auto t = std::make_shared<TrainOpts>();
  tr->add_option("--vocab-size", t->vocab_size, "tokens in all, including <|endoftext|> [default: 4096]");
  tr->add_option("--input", t->inputs, "text files")->required();
  tr->add_option("--output", t->output, "tokenizer file to write (JSON)")->required();
  tr->callback([t]() {
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::string> texts;
    for (const auto& path : t->inputs) {
      std::ifstream in(path, std::ios::binary);
      MESHLM_CHECK(in && std::filesystem::is_regular_file(path), path + ": cannot read input file");
      texts.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    BpeTrainOptions opt;
    opt.vocab_size = t->vocab_size;
    if (::isatty(2) == 1)
      opt.progress = [](int64_t done, int64_t want) {
        std::fprintf(stderr, "\r\033[K%s", progress_bar(done, want, 0).c_str());
        std::fflush(stderr);
      };
    BpeTokenizer tok = train_bpe(texts, opt);
    if (::isatty(2) == 1) std::fputs("\r\033[K", stderr);
    tok.save_json(t->output);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::cout << "trained " << t->output << ": " << tok.vocab_size() << " tokens in "
              << std::fixed << std::setprecision(2) << secs << " s\n";
  });

  auto spec = std::make_shared<std::string>("gpt2");
  auto* enc = cmd->add_subcommand("encode", "UTF-8 text on stdin -> JSON array of token ids on stdout");
  enc->add_option("--tokenizer", *spec, "bytes, gpt2, a GPT-2-style directory or a meshlm file [default: gpt2]");
  enc->callback([spec]() {
    BpeTokenizer tok = load_tokenizer(*spec);
    std::string text((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    std::cout << nlohmann::json(tok.encode(text)).dump() << "\n";
  });
  auto* dec = cmd->add_subcommand("decode", "JSON array of token ids on stdin -> text on stdout");
  dec->add_option("--tokenizer", *spec, "bytes, gpt2, a GPT-2-style directory or a meshlm file [default: gpt2]");
  dec->callback([spec]() {
    BpeTokenizer tok = load_tokenizer(*spec);
    nlohmann::json ids;
    try {
      ids = nlohmann::json::parse(std::cin);
    } catch (const nlohmann::json::parse_error& e) {
      throw Error("stdin: not a JSON array of token ids (error at byte " + std::to_string(e.byte) + ")");
    }
    MESHLM_CHECK(ids.is_array(), "stdin: expected a JSON array of token ids");
    std::vector<int32_t> v;
    for (const auto& x : ids) {
      MESHLM_CHECK(x.is_number_integer(), "stdin: token ids must be integers");
      v.push_back(x.get<int32_t>());
    }
    std::cout << tok.decode(v);
  });
}

}  // namespace meshlm::cli
