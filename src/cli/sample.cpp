// `meshlm sample`: text generated from a checkpoint.
#include "cli/commands.h"

#include <chrono>
#include <cstdio>
#include <iostream>

#include "cli/common.h"
#include "core/error.h"
#include "core/threads.h"
#include "data/bpe.h"
#include "train/checkpoint.h"
#include "train/sample.h"

namespace meshlm::cli {

void add_sample(CLI::App& app) {
  auto* cmd = app.add_subcommand("sample", "Generate text from a checkpoint");
  struct Opts {
    std::string checkpoint, prompt = "\n", tokenizer, backend = "cpu";
    SampleOptions s;
    int64_t threads = 0;
    bool timing = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--checkpoint", o->checkpoint, "checkpoint directory")->required();
  cmd->add_option("--prompt", o->prompt, "text to continue [default: a newline]");
  cmd->add_option("--tokens", o->s.tokens, "tokens to generate [default: 256]");
  cmd->add_option("--temperature", o->s.temperature, "softmax temperature; 0 is greedy [default: 0.8]");
  cmd->add_option("--top-k", o->s.top_k, "sample among the k most likely tokens; 0: all [default: 0]");
  cmd->add_option("--top-p", o->s.top_p, "sample among the most likely tokens whose probabilities sum to p [default: 1]");
  auto keep_going = std::make_shared<bool>(false);
  cmd->add_flag("--no-stop", *keep_going, "go on past <|endoftext|> (by default generation ends there)");
  auto no_cache = std::make_shared<bool>(false);
  cmd->add_flag("--no-kv-cache", *no_cache,
                "recompute the whole context for every token (quadratic; the reference the KV cache is tested against)");
  cmd->add_flag("--timing", o->timing, "print the generation time on stderr (tokens/s)");
  cmd->add_option("--seed", o->s.seed, "sampling seed [default: 1]");
  cmd->add_option("--tokenizer", o->tokenizer, "bytes, gpt2 or a file [default: the checkpoint's]");
  cmd->add_option("--threads", o->threads, "CPU threads [default: OMP_NUM_THREADS, else the CPUs other programs leave free]");
  add_backend_option(cmd, o->backend);
  cmd->callback([o, keep_going, no_cache]() {
    MESHLM_CHECK(o->threads >= 0, "--threads must be >= 0");
    make_thread_governor(o->threads);  // sets the thread count (sampling is one short pass)
    MESHLM_CHECK(o->s.tokens >= 0, "--tokens must be >= 0");
    MESHLM_CHECK(!o->prompt.empty(), "--prompt must not be empty");
    auto be = make_backend(o->backend);
    TrainConfig cfg;
    auto model = load_model(o->checkpoint, *be, &cfg);
    BpeTokenizer tok = o->tokenizer.empty() ? checkpoint_tokenizer(o->checkpoint, cfg.tokenizer)
                                            : load_tokenizer(o->tokenizer);
    o->s.vocab_limit = tok.vocab_size();  // never sample the model's padding ids
    o->s.stop_token = *keep_going ? -1 : tok.eot_id();
    o->s.kv_cache = !*no_cache;
    std::cout << o->prompt << std::flush;
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<int32_t> out = sample(*model, tok.encode(o->prompt), o->s, [&tok](int32_t t) {
      std::cout << tok.token_bytes(t) << std::flush;
    });
    std::cout << "\n";
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (o->timing)
      std::fprintf(stderr, "sample  %zu tokens in %.3f s (%.1f tokens/s, %s)\n", out.size(), s, double(out.size()) / s,
                   o->s.kv_cache ? "KV cache" : "no cache");
  });
}

}  // namespace meshlm::cli
