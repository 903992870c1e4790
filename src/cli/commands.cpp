// The subcommands. Each parses its flags, calls into the library, prints what it did.
// Errors propagate as meshlm::Error to main(), which prints them on one line.
#include "cli/commands.h"

#include <omp.h>

#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <oneapi/dnnl/dnnl.hpp>

#include "core/error.h"
#include "data/byte_tokenizer.h"
#include "data/loader.h"
#include "data/prepare.h"
#include "model/gpt.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/eval.h"
#include "train/sample.h"
#include "train/trainer.h"

#ifdef MESHLM_WITH_MPI
#include <mpi.h>
#endif

namespace meshlm::cli {

namespace {

// Builds an fp32 model from a checkpoint's config and loads its weights.
std::unique_ptr<Gpt> load_model(const std::string& dir, Backend& be, TrainConfig* cfg_out) {
  TrainConfig cfg = checkpoint_config(dir);
  auto model = std::make_unique<Gpt>(cfg.model(), be);
  load_checkpoint(dir, *model, nullptr);
  if (cfg_out) *cfg_out = cfg;
  return model;
}

// "AMD EPYC (avx512f avx512_bf16; no amx_bf16, no avx512_fp16)": what the kernels can use.
std::string cpu_summary() {
  std::ifstream in("/proc/cpuinfo");
  std::string line, model = "unknown CPU", flags;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0 && model == "unknown CPU") model = line.substr(line.find(':') + 2);
    if (line.rfind("flags", 0) == 0 && flags.empty()) flags = line + " ";
  }
  std::string have, lack;
  for (const char* f : {"avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16"}) {
    std::string& into = flags.find(std::string(" ") + f + " ") != std::string::npos ? have : lack;
    into += (into.empty() ? "" : " ") + std::string(f);
  }
  return model + " (" + (have.empty() ? "none of the AVX-512 features" : have) +
         (lack.empty() ? "" : "; lacks " + lack) + ")";
}

void set_threads(int64_t threads) {
  MESHLM_CHECK(threads >= 0, "--threads must be >= 0");
  if (threads > 0) omp_set_num_threads(int(threads));
}

}  // namespace

void add_train(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "Train a GPT-2 model on token shards");
  cmd->footer(
      "Every config key is also a flag (n_layer = --n-layer). Precedence: defaults < the\n"
      "resumed checkpoint's config < --config FILE (TOML, keys as above) < flags.\n"
      "Writes <out>/metrics.jsonl (one JSON object per step; eval lines carry val_loss) and a\n"
      "checkpoint directory <out>/step_NNNNNN at the end and every --save-every steps.\n"
      "Ctrl-C finishes the current step and saves a checkpoint.");
  auto config_file = std::make_shared<std::string>();
  auto resume = std::make_shared<std::string>();
  auto overwrite = std::make_shared<bool>(false);
  auto values = std::make_shared<std::map<std::string, std::string>>();
  auto options = std::make_shared<std::map<std::string, CLI::Option*>>();
  cmd->add_option("--config", *config_file, "TOML config file (keys as the flags, with _)");
  cmd->add_option("--resume", *resume, "checkpoint directory to continue from (bit-identical)");
  cmd->add_flag("--overwrite", *overwrite, "start afresh in an --out that holds a run (removes its metrics and checkpoints)");
  const TrainConfig defaults;
  for (const auto& k : config_keys()) {
    std::string def = k.get(defaults).dump();
    (*options)[k.key] =
        cmd->add_option(flag_name(k.key), (*values)[k.key], k.help + " [default: " + def + "]");
  }
  cmd->callback([=]() {
    TrainConfig cfg;
    if (!resume->empty()) cfg = checkpoint_config(*resume);
    const ModelConfig resumed_model = cfg.model();
    if (!config_file->empty()) apply_toml_file(cfg, *config_file);
    for (const auto& [key, opt] : *options)
      if (opt->count() > 0) set_config_value(cfg, key, (*values)[key], flag_name(key));
    if (!resume->empty()) {
      const ModelConfig m = cfg.model();
      MESHLM_CHECK(m.n_layer == resumed_model.n_layer && m.n_head == resumed_model.n_head &&
                       m.n_embd == resumed_model.n_embd && m.vocab_size == resumed_model.vocab_size &&
                       m.max_seq_len == resumed_model.max_seq_len,
                   "the model shape asked for (" + m.describe() + ") differs from the checkpoint's (" +
                       resumed_model.describe() + ") in " + *resume);
    }
    TrainResult r = train(cfg, *resume, std::cout, *overwrite);
    std::cout << "done    " << r.steps << " steps, last loss " << r.last_loss;
    if (r.val_loss >= 0) std::cout << ", val_loss " << r.val_loss;
    std::cout << ", " << int64_t(r.tokens_per_s) << " tok/s, peak RSS " << int64_t(r.peak_rss_mib)
              << " MiB\n";
    if (r.interrupted) throw Error("interrupted; resume with --resume " + r.checkpoint);
  });
}

void add_eval(CLI::App& app) {
  auto* cmd = app.add_subcommand("eval", "Mean loss of a checkpoint over the first N val batches");
  struct Opts {
    std::string checkpoint, data;
    int64_t batches = 8, batch_size = 0, seq_len = 0, threads = 0;
    bool json = false;
    std::string split = "val";
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--checkpoint", o->checkpoint, "checkpoint directory")->required();
  cmd->add_option("--data", o->data, "directory of token shards")->required();
  cmd->add_option("--batches", o->batches, "sequential batches to average [default: 8]");
  cmd->add_option("--batch-size", o->batch_size, "sequences per batch [default: the checkpoint's]");
  cmd->add_option("--seq-len", o->seq_len, "sequence length [default: the checkpoint's]");
  cmd->add_option("--split", o->split, "val or train [default: val]");
  cmd->add_option("--threads", o->threads, "CPU threads [default: all]");
  cmd->add_flag("--json", o->json, "print {\"val_loss\": ...} only");
  cmd->callback([o]() {
    set_threads(o->threads);
    MESHLM_CHECK(o->batches > 0, "--batches must be positive");
    auto be = make_cpu_backend();
    TrainConfig cfg;
    auto model = load_model(o->checkpoint, *be, &cfg);
    const int64_t B = o->batch_size > 0 ? o->batch_size : cfg.micro_batch();
    const int64_t T = o->seq_len > 0 ? o->seq_len : cfg.seq_len;
    DataLoader loader(o->data, o->split, B, T, cfg.vocab_size);
    const double loss = evaluate(*model, loader, o->batches, B, T);
    if (o->json)
      std::cout << nlohmann::json{{"val_loss", loss}}.dump() << "\n";
    else
      std::cout << o->split << "_loss " << loss << " over " << o->batches << " batches of " << B
                << " x " << T << " tokens\n";
  });
}

void add_sample(CLI::App& app) {
  auto* cmd = app.add_subcommand("sample", "Generate text from a checkpoint");
  struct Opts {
    std::string checkpoint, prompt = "\n";
    SampleOptions s;
    int64_t threads = 0;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--checkpoint", o->checkpoint, "checkpoint directory")->required();
  cmd->add_option("--prompt", o->prompt, "text to continue [default: a newline]");
  cmd->add_option("--tokens", o->s.tokens, "tokens to generate [default: 256]");
  cmd->add_option("--temperature", o->s.temperature, "softmax temperature; 0 is greedy [default: 0.8]");
  cmd->add_option("--top-k", o->s.top_k, "sample among the k most likely tokens; 0: all [default: 0]");
  cmd->add_option("--seed", o->s.seed, "sampling seed [default: 1]");
  cmd->add_option("--threads", o->threads, "CPU threads [default: all]");
  cmd->callback([o]() {
    set_threads(o->threads);
    MESHLM_CHECK(o->s.tokens >= 0, "--tokens must be >= 0");
    MESHLM_CHECK(!o->prompt.empty(), "--prompt must not be empty");
    auto be = make_cpu_backend();
    TrainConfig cfg;
    auto model = load_model(o->checkpoint, *be, &cfg);
    MESHLM_CHECK(cfg.vocab_size == ByteTokenizer::kVocabSize,
                 "sample: only byte-level models (vocab_size 256) can be decoded yet");
    std::cout << o->prompt << std::flush;
    sample(*model, ByteTokenizer::encode(o->prompt), o->s, [](int32_t t) {
      std::cout << char(t) << std::flush;
    });
    std::cout << "\n";
  });
}

void add_prepare(CLI::App& app) {
  auto* cmd = app.add_subcommand("prepare", "Tokenize text files into train/val token shards");
  cmd->footer(
      "Writes <output>/train_000000.bin and val_000000.bin in llm.c's shard format (header of\n"
      "256 int32: magic 20240520, version 1, token count; then uint16 tokens) and manifest.json.\n"
      "The last --val-fraction of the tokens becomes the val split.");
  auto o = std::make_shared<PrepareOptions>();
  cmd->add_option("--tokenizer", o->tokenizer, "bytes (vocabulary 256) [default: bytes]");
  cmd->add_option("--input", o->inputs, "text files, concatenated in order")->required();
  cmd->add_option("--output", o->output, "output directory")->required();
  cmd->add_option("--val-fraction", o->val_fraction, "fraction held out for val [default: 0.1]");
  cmd->callback([o]() {
    PrepareResult r = prepare_shards(*o);
    std::cout << "prepared " << o->output << ": " << r.train_tokens << " train + " << r.val_tokens
              << " val tokens, vocabulary " << r.vocab_size << " (" << o->tokenizer << ")\n";
  });
}

void add_info(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Show the build, the machine, or a checkpoint");
  auto checkpoint = std::make_shared<std::string>();
  cmd->add_option("--checkpoint", *checkpoint, "describe this checkpoint instead");
  cmd->callback([checkpoint]() {
    if (!checkpoint->empty()) {
      nlohmann::json trainer = verify_checkpoint(*checkpoint);
      TrainConfig cfg = checkpoint_config(*checkpoint);
      std::cout << "checkpoint " << *checkpoint << " (verified)\n"
                << "model      " << cfg.model().describe() << "\n"
                << "step       " << trainer["step"] << "\n"
                << "config     " << trainer["config"].dump() << "\n";
      return;
    }
    const dnnl_version_t* v = dnnl_version();
    std::cout << "meshlm     0.1.0 (C++20)\n"
              << "backends   cpu (oneDNN " << v->major << "." << v->minor << "." << v->patch
              << " + OpenMP), reference\n"
              << "cpu        " << cpu_summary() << "\n"
              << "threads    " << omp_get_max_threads() << " (OpenMP)\n"
              << "precision  fp32 (bf16/fp16/fp8: not yet)\n";
#ifdef MESHLM_WITH_MPI
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) MPI_Init(nullptr, nullptr);
    int rank = 0, size = 1, len = 0;
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Get_library_version(version, &len);
    std::string ver(version, len);
    ver = ver.substr(0, ver.find(','));
    if (rank == 0) std::cout << "mpi        " << ver << ", world size " << size << "\n";
    MPI_Finalize();
#else
    std::cout << "mpi        not built (MESHLM_MPI=OFF)\n";
#endif
  });
}

}  // namespace meshlm::cli
