// The subcommands. Each parses its flags, calls into the library, prints what it did.
// Errors propagate as meshlm::Error to main(), which prints them on one line.
#include "cli/commands.h"

#include <omp.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iomanip>

#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <map>
#include <memory>
#include <oneapi/dnnl/dnnl.hpp>

#include "core/error.h"
#include "data/bpe.h"
#include "data/bpe_train.h"
#include "data/loader.h"
#include "data/prepare.h"
#include "model/model.h"
#include "parallel/communicator.h"
#include "parallel/mesh.h"
#include "precision/numerics.h"
#include "train/bench.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/eval.h"
#include "train/sample.h"
#include "train/metrics.h"
#include "train/trainer.h"

#ifdef MESHLM_WITH_MPI
#include <mpi.h>
#endif

namespace meshlm::cli {

namespace {

// Builds an fp32 model from a checkpoint's config and loads its weights.
std::unique_ptr<Model> load_model(const std::string& dir, Backend& be, TrainConfig* cfg_out) {
  TrainConfig cfg = checkpoint_config(dir);
  auto model = std::make_unique<Model>(cfg.model(), be);
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

// Every config key as a flag of a subcommand (train, bench): its text is kept, and applied
// over a config after the other sources.
struct ConfigFlags {
  std::shared_ptr<std::map<std::string, std::string>> values = std::make_shared<std::map<std::string, std::string>>();
  std::shared_ptr<std::map<std::string, CLI::Option*>> options = std::make_shared<std::map<std::string, CLI::Option*>>();
  void add_to(CLI::App* cmd) {
    const TrainConfig defaults;
    for (const auto& k : config_keys())
      (*options)[k.key] = cmd->add_option(flag_name(k.key), (*values)[k.key],
                                          k.help + " [default: " + k.get(defaults).dump() + "]");
  }
  void apply(TrainConfig& cfg) const {
    for (const auto& [key, opt] : *options)
      if (opt->count() > 0) set_config_value(cfg, key, values->at(key), flag_name(key));
  }
};

// Runs fn on every rank of the job (one rank without mpirun) over the mesh cfg asks for. A bad
// config or layout is the same error on every rank: rank 0 prints it, every rank exits 1. An
// error later, on one rank only, aborts the whole job rather than leave the others waiting.
// Returns true on rank 0 (the rank that reports).
bool run_on_mesh(const TrainConfig& cfg, const std::function<void(Mesh&)>& fn) {
  auto world = make_world_communicator();
  std::unique_ptr<Mesh> mesh;
  try {
    cfg.validate();
    mesh = std::make_unique<Mesh>(*world, MeshShape{int(cfg.dp), int(cfg.tp), int(cfg.pp)});
  } catch (const Error& e) {
    if (world->rank() == 0) std::fprintf(stderr, "meshlm: error: %s\n", e.what());
    world.reset();
    finalize_world();
    std::exit(1);
  }
  try {
    fn(*mesh);
  } catch (const std::exception& e) {
    if (world->size() == 1) throw;
    std::fprintf(stderr, "meshlm: error on rank %d of %d: %s\n", world->rank(), world->size(), e.what());
    std::fflush(stderr);
    world->abort(1);
  }
  const bool lead = world->rank() == 0;
  mesh.reset();
  world.reset();
  finalize_world();
  return lead;
}

}  // namespace

void add_train(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "Train a GPT-2 model on token shards");
  cmd->footer(
      "Every config key is also a flag (n_layer = --n-layer). Precedence: defaults < the\n"
      "resumed checkpoint's config < --config FILE (TOML, keys as above) < flags.\n"
      "Writes <out>/metrics.jsonl (one JSON object per step; eval lines carry val_loss) and a\n"
      "checkpoint directory <out>/step_NNNNNN at the end and every --save-every steps.\n"
      "Ctrl-C finishes the current step and saves a checkpoint (under mpirun: kill -USR1 <mpirun>).\n"
      "Precision (--precision): fp32; bf16 and fp16 keep fp32 master weights and Adam state\n"
      "(fp16 with a dynamic loss scale: overflowing steps are skipped and logged); fp16-pure is\n"
      "the naive all-fp16 recipe, for comparison; fp8 simulates e4m3/e5m2 GEMM operands (real\n"
      "rounding, bf16 arithmetic: its speed is not fp8 speed). Checkpoints hold fp32 masters, so\n"
      "--resume with another --precision continues a run in another mode. --numerics-report N\n"
      "writes <out>/numerics.jsonl for `meshlm report`. docs/numerics.md has the details.\n"
      "Layout (under mpirun -np dp*tp*pp): --dp splits the batch, --tp each layer, --pp the stack\n"
      "of layers into stages; a pipeline's micro-batches are the accumulation steps, so set\n"
      "--micro-batch-size below batch_size/dp (the bubble is (pp-1)/(m+pp-1) of a step).\n"
      "Checkpoints hold whole tensors: --resume works at any layout. docs/parallel.md.");
  auto config_file = std::make_shared<std::string>();
  auto resume = std::make_shared<std::string>();
  auto overwrite = std::make_shared<bool>(false);
  ConfigFlags flags;
  cmd->add_option("--config", *config_file, "TOML config file (keys as the flags, with _)");
  cmd->add_option("--resume", *resume, "checkpoint directory to continue from (bit-identical)");
  cmd->add_flag("--overwrite", *overwrite, "start afresh in an --out that holds a run (removes its metrics and checkpoints)");
  flags.add_to(cmd);
  cmd->callback([=]() {
    TrainConfig cfg;
    if (!resume->empty()) cfg = checkpoint_config(*resume);
    const ModelConfig resumed_model = cfg.model();
    if (!config_file->empty()) apply_toml_file(cfg, *config_file);
    flags.apply(cfg);
    if (!resume->empty()) {
      const ModelConfig m = cfg.model();
      MESHLM_CHECK(m.n_layer == resumed_model.n_layer && m.n_head == resumed_model.n_head &&
                       m.n_embd == resumed_model.n_embd && m.vocab_size == resumed_model.vocab_size &&
                       m.max_seq_len == resumed_model.max_seq_len,
                   "the model shape asked for (" + m.describe() + ") differs from the checkpoint's (" +
                       resumed_model.describe() + ") in " + *resume);
    }
    TrainResult r;
    if (!run_on_mesh(cfg, [&](Mesh& mesh) { r = train(cfg, *resume, std::cout, *overwrite, &mesh); })) return;
    std::cout << "done    " << r.steps << " steps, last loss " << r.last_loss;
    if (r.val_loss >= 0) std::cout << ", val_loss " << r.val_loss;
    std::cout << ", " << int64_t(r.tokens_per_s) << " tok/s" << (r.fp8_simulated ? " (fp8 simulated)" : "") << ", peak RSS " << int64_t(r.peak_rss_mib)
              << " MiB";
    if (r.skipped_steps > 0) std::cout << ", " << r.skipped_steps << " steps skipped (fp16 overflow)";
    std::cout << "\n";
    if (r.interrupted) throw Error("interrupted; resume with --resume " + r.checkpoint);
  });
}

void add_eval(CLI::App& app) {
  auto* cmd = app.add_subcommand("eval", "Mean loss of a checkpoint over the first N val batches");
  struct Opts {
    std::string checkpoint, data;
    int64_t batches = 8, batch_size = 0, seq_len = 0, threads = 0;
    bool json = false;
    std::string split = "val", tokenizer;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--checkpoint", o->checkpoint, "checkpoint directory")->required();
  cmd->add_option("--data", o->data, "directory of token shards")->required();
  cmd->footer("Prints the mean loss in nats per token and per byte of text (special tokens count as 0 bytes).");
  cmd->add_option("--batches", o->batches, "sequential batches to average [default: 8]");
  cmd->add_option("--batch-size", o->batch_size, "sequences per batch [default: the checkpoint's]");
  cmd->add_option("--seq-len", o->seq_len, "sequence length [default: the checkpoint's]");
  cmd->add_option("--split", o->split, "val or train [default: val]");
  cmd->add_option("--threads", o->threads, "CPU threads [default: all]");
  cmd->add_option("--tokenizer", o->tokenizer, "for the per-byte loss [default: the checkpoint's]");
  cmd->add_flag("--json", o->json, "print {\"val_loss\": ..., \"val_loss_per_byte\": ...} only");
  cmd->callback([o]() {
    set_threads(o->threads);
    MESHLM_CHECK(o->batches > 0, "--batches must be positive");
    auto be = make_cpu_backend();
    TrainConfig cfg;
    auto model = load_model(o->checkpoint, *be, &cfg);
    const int64_t B = o->batch_size > 0 ? o->batch_size : cfg.micro_batch();
    const int64_t T = o->seq_len > 0 ? o->seq_len : cfg.seq_len;
    DataLoader loader(o->data, o->split, T, cfg.vocab_size);
    std::optional<BpeTokenizer> tok;
    if (!o->tokenizer.empty() || !cfg.tokenizer.empty() ||
        std::filesystem::exists(std::filesystem::path(o->checkpoint) / "tokenizer.json"))
      tok.emplace(o->tokenizer.empty() ? checkpoint_tokenizer(o->checkpoint, cfg.tokenizer) : load_tokenizer(o->tokenizer));
    const EvalResult r = evaluate(*model, loader, o->batches, B, T, tok ? &*tok : nullptr);
    nlohmann::ordered_json j = {{"val_loss", r.loss}};
    if (r.loss_per_byte >= 0) j["val_loss_per_byte"] = r.loss_per_byte;
    if (o->json)
      std::cout << j.dump() << "\n";
    else
      std::cout << o->split << "_loss " << r.loss << " nats/token"
                << (r.loss_per_byte >= 0 ? ", " + std::to_string(r.loss_per_byte) + " nats/byte" : std::string())
                << " over " << o->batches << " batches of " << B << " x " << T << " tokens\n";
  });
}

void add_sample(CLI::App& app) {
  auto* cmd = app.add_subcommand("sample", "Generate text from a checkpoint");
  struct Opts {
    std::string checkpoint, prompt = "\n", tokenizer;
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
  cmd->add_option("--tokenizer", o->tokenizer, "bytes, gpt2 or a file [default: the checkpoint's]");
  cmd->add_option("--threads", o->threads, "CPU threads [default: all]");
  cmd->callback([o]() {
    set_threads(o->threads);
    MESHLM_CHECK(o->s.tokens >= 0, "--tokens must be >= 0");
    MESHLM_CHECK(!o->prompt.empty(), "--prompt must not be empty");
    auto be = make_cpu_backend();
    TrainConfig cfg;
    auto model = load_model(o->checkpoint, *be, &cfg);
    BpeTokenizer tok = o->tokenizer.empty() ? checkpoint_tokenizer(o->checkpoint, cfg.tokenizer)
                                            : load_tokenizer(o->tokenizer);
    o->s.vocab_limit = tok.vocab_size();  // never sample the model's padding ids
    std::cout << o->prompt << std::flush;
    sample(*model, tok.encode(o->prompt), o->s, [&tok](int32_t t) {
      std::cout << tok.token_bytes(t) << std::flush;
    });
    std::cout << "\n";
  });
}

void add_prepare(CLI::App& app) {
  auto* cmd = app.add_subcommand("prepare", "Tokenize text files into train/val token shards");
  cmd->footer(
      "Each input file is a document (directories: their files in name order), preceded by\n"
      "<|endoftext|> when the tokenizer has it. Writes <output>/train_NNNNNN.bin and val_NNNNNN.bin\n"
      "in llm.c's shard format (header of 256 int32: magic 20240520, version 1, token count;\n"
      "then uint16 tokens, or uint32 with magic 20240801 version 7 past 65536 ids) and\n"
      "manifest.json (tokenizer, counts, checksums; a tokenizer file is copied in as tokenizer.json).\n"
      "The last --val-fraction of the input bytes\n"
      "(moved to the next line start) becomes the val split. Input is streamed and encoded on\n"
      "all cores.");
  auto o = std::make_shared<PrepareOptions>();
  cmd->add_option("--tokenizer", o->tokenizer,
                  "bytes (256 ids), gpt2 (50257 ids), a directory with encoder.json + vocab.bpe, or a "
                  "file from `meshlm tokenizer train` [default: bytes]");
  cmd->add_option("--input", o->inputs, "text files and directories")->required();
  cmd->add_option("--output", o->output, "output directory (its old *.bin shards are removed)")->required();
  cmd->add_option("--val-fraction", o->val_fraction, "fraction held out for val [default: 0.1]");
  cmd->add_option("--shard-tokens", o->shard_tokens, "tokens per shard file [default: 100000000]");
  cmd->callback([o]() {
    const auto t0 = std::chrono::steady_clock::now();
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

void add_bench(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench", "Time training steps of a model config, precision and layout");
  cmd->footer(
      "Runs --warmup untimed then --timed-steps timed training steps through the real trainer, on random\n"
      "tokens unless --data is given, writing nothing (a temporary run directory is removed).\n"
      "Prints medians over the timed steps: ms/step, tokens/s, achieved model GFLOP/s\n"
      "(6 x parameters + 12 x L x C x T FLOPs per token), MFU against a peak measured with a\n"
      "2048^3 GEMM in the compute dtype (or --peak-gflops), and the peak RSS; --breakdown adds\n"
      "the time per kernel of a step (GEMMs, attention, layernorm, loss, optimizer, ...).\n"
      "Takes every flag of `meshlm train` (--n-layer ... --precision, --dp ...); works under\n"
      "mpirun. fp8 speed is simulated (bf16 arithmetic plus quantization) and says so.\n"
      "Example (GPT-2 124M shape): meshlm bench --n-layer 12 --n-head 12 --n-embd 768\n"
      "  --vocab-size 50257 --seq-len 256 --max-seq-len 1024 --batch-size 4 --precision bf16");
  auto config_file = std::make_shared<std::string>();
  auto opt = std::make_shared<BenchOptions>();
  auto json_out = std::make_shared<bool>(false);
  ConfigFlags flags;
  cmd->add_option("--config", *config_file, "TOML config file (keys as the flags, with _)");
  cmd->add_option("--warmup", opt->warmup, "untimed steps first [default: 2]");
  cmd->add_option("--timed-steps", opt->steps, "timed steps [default: 10]");
  cmd->add_flag("--breakdown", opt->breakdown, "also time every kernel: where a step's time goes");
  cmd->add_flag("--json", *json_out, "print one JSON object (tokens_per_s, ms_per_step, mfu, peak_rss_mib, ...)");
  flags.add_to(cmd);
  cmd->callback([=]() {
    TrainConfig cfg;
    if (!config_file->empty()) apply_toml_file(cfg, *config_file);
    flags.apply(cfg);
    BenchResult r;
    std::ostringstream quiet;  // the trainer's own log: shown only without --json
    if (!run_on_mesh(cfg, [&](Mesh& mesh) { r = bench(cfg, *opt, *json_out ? quiet : std::cout, &mesh); })) return;
    if (*json_out) {
      std::cout << r.to_json(cfg).dump() << "\n";
      return;
    }
    const bool sim = cfg.precision == "fp8";
    std::printf("bench   %s, %lld timed steps after %lld warm-up: median %.1f ms/step, %.0f tokens/s%s\n"
                "        %.1f model GFLOP/s, MFU %.1f%% of %.0f GFLOP/s, peak RSS %.0f MiB\n",
                cfg.precision.c_str(), (long long)r.steps, (long long)opt->warmup, r.ms_per_step, r.tokens_per_s,
                sim ? " (fp8 simulated)" : "", r.gflops, 100 * r.mfu, r.peak_gflops, r.peak_rss_mib);
  });
}

void add_report(CLI::App& app) {
  auto* cmd = app.add_subcommand("report", "Render a run's numerics report (table + SVG plot)");
  cmd->footer(
      "Reads <run>/numerics.jsonl, written by `meshlm train --numerics-report N`: per layer\n"
      "(embedding, h.0 .. h.L-1, final) and tensor kind (weights, activations, grads), the\n"
      "largest magnitude and the fractions of values that are zero, would underflow to zero,\n"
      "would be subnormal, or overflow in the run's compute format, with the loss scale.\n"
      "Prints the last report as a table and the worst fractions over the run, and writes a\n"
      "plot of amax and underflow per layer over the steps (SVG, opens in any browser).");
  auto run = std::make_shared<std::string>();
  auto svg = std::make_shared<std::string>();
  cmd->add_option("run", *run, "run directory (or its numerics.jsonl)")->required();
  cmd->add_option("--svg", *svg, "plot file [default: <run>/numerics.svg]");
  cmd->callback([run, svg]() {
    namespace fs = std::filesystem;
    const fs::path jsonl = fs::is_directory(*run) ? fs::path(*run) / "numerics.jsonl" : fs::path(*run);
    const std::string plot = svg->empty() ? (jsonl.parent_path() / "numerics.svg").string() : *svg;
    render_numerics_report(jsonl.string(), plot, std::cout);
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
              << "precision  fp32, bf16, fp16 (mixed, dynamic loss scaling), fp16-pure, fp8 (simulated)\n";
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
