// `meshlm eval`: the mean loss of a checkpoint over the first N batches of a split.
#include "cli/commands.h"

#include <filesystem>
#include <iostream>
#include <optional>

#include "cli/common.h"
#include "core/error.h"
#include "core/files.h"
#include "core/threads.h"
#include "data/manifest.h"
#include "data/bpe.h"
#include "data/loader.h"
#include "train/checkpoint.h"
#include "train/eval.h"

namespace meshlm::cli {

namespace {

// The logits of the first batch (sequences 0..B-1 of the split) as an .npy file (version 1.0).
void write_first_logits(Model& model, const DataLoader& loader, int64_t B, int64_t T, int64_t V, const std::string& path) {
  std::vector<int32_t> x, y;
  loader.read(0, B, x, y);
  model.forward(x.data(), y.data(), B, T);
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + std::to_string(B) + ", " +
                       std::to_string(T) + ", " + std::to_string(V) + "), }";
  while ((10 + header.size() + 1) % 64) header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY\x01";
  out += '\0';
  out += char(header.size() & 0xFF);
  out += char(header.size() >> 8);
  out += header;
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < T; t++) {
      const std::vector<float> l = model.logits_at(b, t);
      out.append(reinterpret_cast<const char*>(l.data()), size_t(V) * 4);
    }
  write_file_atomic(path, out);
}

}  // namespace

void add_eval(CLI::App& app) {
  auto* cmd = app.add_subcommand("eval", "Mean loss of a checkpoint over the first N val batches");
  struct Opts {
    std::string checkpoint, data;
    int64_t batches = 8, batch_size = 0, seq_len = 0, threads = 0;
    bool json = false;
    std::string split = "val", tokenizer, backend = "cpu", logits;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--checkpoint", o->checkpoint, "checkpoint directory")->required();
  cmd->add_option("--data", o->data, "directory of token shards")->required();
  cmd->footer("Prints the mean loss in nats per token and per byte of text (special tokens count as 0 bytes).");
  cmd->add_option("--batches", o->batches, "sequential batches to average [default: 8]");
  cmd->add_option("--batch-size", o->batch_size, "sequences per batch [default: the checkpoint's]");
  cmd->add_option("--seq-len", o->seq_len, "sequence length [default: the checkpoint's]");
  cmd->add_option("--split", o->split, "val or train [default: val]");
  cmd->add_option("--threads", o->threads, "CPU threads [default: OMP_NUM_THREADS, else the CPUs other programs leave free]");
  add_backend_option(cmd, o->backend);
  cmd->add_option("--tokenizer", o->tokenizer, "for the per-byte loss [default: the checkpoint's]");
  cmd->add_option("--logits", o->logits,
                  "also write the first batch's logits, (B, T, V) float32, as a NumPy .npy file (interop checks)");
  cmd->add_flag("--json", o->json, "print one JSON object only: {\"split\": \"val\", \"loss\": ..., \"val_loss\": ..., \"loss_per_byte\": ..., \"batches\", \"tokens\"}");
  cmd->callback([o]() {
    MESHLM_CHECK(o->threads >= 0, "--threads must be >= 0");
    ThreadGovernor threads = make_thread_governor(o->threads);  // adapted between batches
    MESHLM_CHECK(o->batches > 0, "--batches must be positive");
    auto be = make_backend(o->backend);
    TrainConfig cfg;
    auto model = load_model(o->checkpoint, *be, &cfg);
    const int64_t B = o->batch_size > 0 ? o->batch_size : cfg.micro_batch();
    const int64_t T = o->seq_len > 0 ? o->seq_len : cfg.seq_len;
    verify_data_dir(o->data);  // every shard against manifest.json
    DataLoader loader(o->data, o->split, T, cfg.vocab_size);
    std::optional<BpeTokenizer> tok;
    if (!o->tokenizer.empty() || !cfg.tokenizer.empty() ||
        !tokenizer_file_in(o->checkpoint).empty())
      tok.emplace(o->tokenizer.empty() ? checkpoint_tokenizer(o->checkpoint, cfg.tokenizer) : load_tokenizer(o->tokenizer));
    const EvalResult r = evaluate([&](const int32_t* x, const int32_t* y, int64_t b, int64_t t) { return model->forward(x, y, b, t); },
                                  loader, o->batches, B, T, tok ? &*tok : nullptr, [&] {
                                    threads.update();
                                    return false;
                                  });
    // The split by name, and the loss under both a plain key and the split's (val_loss, train_loss).
    if (!o->logits.empty()) write_first_logits(*model, loader, B, T, cfg.vocab_size, o->logits);
    nlohmann::ordered_json j = {{"split", o->split}, {"loss", r.loss}, {o->split + "_loss", r.loss}};
    if (r.loss_per_byte >= 0) {
      j["loss_per_byte"] = r.loss_per_byte;
      j[o->split + "_loss_per_byte"] = r.loss_per_byte;
    }
    j["batches"] = o->batches;
    j["tokens"] = o->batches * B * T;
    if (o->json)
      std::cout << j.dump() << "\n";
    else
      std::cout << o->split << "_loss " << r.loss << " nats/token"
                << (r.loss_per_byte >= 0 ? ", " + std::to_string(r.loss_per_byte) + " nats/byte" : std::string())
                << " over " << o->batches << " batches of " << B << " x " << T << " tokens\n";
  });
}

}  // namespace meshlm::cli
