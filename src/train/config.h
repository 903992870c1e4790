// Everything a training run is configured by, as one flat struct with a table of keys. Each
// key can come from the defaults, a TOML file (`key = value`, keys as below), or a command-line
// flag (`--key-with-dashes value`), later ones winning. The table drives all three plus --help
// and the checkpoint's copy of the config, so a key is declared exactly once.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/config.h"
#include "optim/adamw.h"
#include "optim/schedule.h"
#include "plan/plan.h"
#include "precision/fp8.h"
#include "precision/loss_scaler.h"
#include "train/config_file.h"
#include "train/stability.h"

namespace meshlm {

struct TrainConfig {
  // model (model/config.h; the Llama keys are ignored by gpt2)
  std::string arch = "gpt2";
  int64_t n_layer = 4, n_head = 4, n_embd = 256, vocab_size = 256;
  int64_t max_seq_len = 0;  // 0: equal to seq_len
  int64_t n_kv_head = 0, ffn_hidden = 0, ffn_multiple_of = 256, tie_embeddings = -1;
  double rope_theta = 500000.0, norm_eps = 1e-5;
  std::string rope_scaling = "none";
  double rope_factor = 8.0, rope_low_freq_factor = 1.0, rope_high_freq_factor = 4.0;
  int64_t rope_original_max_position = 8192;
  // batch
  int64_t seq_len = 128;          // T
  int64_t batch_size = 16;        // global batch, sequences per optimizer step
  int64_t micro_batch_size = 0;   // 0: each data-parallel rank's whole share in one micro-batch
  // optimizer and schedule
  double lr = 1e-3, min_lr = 1e-4;
  int64_t warmup_steps = 20;
  int64_t lr_decay_steps = 0;  // 0: steps
  std::string lr_schedule = "cosine";
  double weight_decay = 0.1, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, grad_clip = 1.0;
  // run
  int64_t steps = 200, eval_every = 50, eval_batches = 8, save_every = 0;
  int64_t keep_last = 0;   // 0: keep every checkpoint
  int64_t log_every = 1;   // console step lines
  int64_t tensorboard = 0, plots = 1;
  int64_t sample_every = 0, sample_tokens = 64;
  std::string sample_prompt;
  int64_t seed = 1337, threads = 0;  // threads 0: all cores (OMP_NUM_THREADS if set)
  int64_t shuffle = 0, data_seed = 0;  // shuffle the training windows each epoch
  double peak_gflops = 0;            // 0: measured by a short GEMM at start-up
  std::string peak_cache = "auto";   // where measured peaks are kept (train/metrics.h); "off": none
  std::string data, out = "runs/default", backend = "cpu";
  std::string tokenizer;  // "": the data's (its manifest.json), else bytes
  std::string init_from;  // a Hugging Face directory or model.safetensors: the initial weights (train/hf_import.h)
  int64_t vocab_resize = 0;  // 1: init_from's vocabulary may differ from vocab_size (rows cut or added)
  // precision (docs/numerics.md)
  std::string precision = "fp32";  // fp32 | bf16 | fp16 | fp16-pure | fp8
  int64_t stochastic_rounding = 0, master_weights = 1;
  double loss_scale = 0;  // 0: dynamic (fp16) / none (fp16-pure); > 0: static
  int64_t loss_scale_hysteresis = 2, loss_scale_growth_interval = 2000;
  int64_t fp8_history = 16, fp8_margin = 0;
  std::string fp8_algorithm = "max";
  std::string fp8_gemm = "auto";
  std::string comm = "mpi";  // a device backend's collectives: mpi (staged through the host) | nccl  // auto | simulated | real (precision/fp8.h)
  std::string precision_plan;      // GEMM formats per Linear (plan/plan.h PrecisionPlan)
  // the stability rules (train/stability.h)
  std::string on_instability = "warn";  // warn | skip | rescale | promote | stop
  double instability_z = 6, instability_overflow = 1e-3, instability_underflow = 0.25;
  int64_t instability_window = 100, instability_warmup = 20;
  int64_t numerics_report = 0;     // every N steps; 0: off
  int64_t inject_inf_at_step = 0;  // testing aid
  int64_t profile = 0;             // 1: per-kernel time breakdown
  int64_t checkpoints = 1;         // 0: write none (benchmarks)
  std::string checkpoint_format = "whole";  // whole | parts (every rank writes its own, train/checkpoint_parts.h)
  double save_every_minutes = 0;   // > 0: also save when this much time passed since the last save
  int64_t allow_data_change = 0;   // 1: resume on data whose manifest differs from the checkpoint's
  double watchdog = 300;           // seconds without progress before a rank ends the job; 0: off
  // parallel layout (docs/parallel.md)
  int64_t dp = 1, tp = 1, pp = 1;
  std::string pp_layers;             // "3,3,2": layers per (virtual) stage; "": even
  std::string pp_schedule = "1f1b";  // 1f1b | gpipe | interleaved
  int64_t pp_virtual = 0;            // interleaved: model chunks per pipeline rank (0: 2)
  std::string layout;       // "auto": dp, tp, pp, micro-batch, ZeRO, recompute chosen by the planner
  std::string machine = "meshlm_machine.json";  // the planner's machine profile (meshlm plan --calibrate)
  std::string recompute = "none";    // none | selective | full
  int64_t sequence_parallel = 0;  // 1: layernorm/residual regions split along the sequence (tp > 1)
  int64_t zero = 0;         // ZeRO stage: 1 optimizer state, 2 + gradients and masters, 3 + weights sharded over dp
  std::string fsdp_unit = "layer";     // zero 3: gather granularity ("layer" or a number of layers)
  std::string zero_accumulate = "auto";  // zero 2/3 with micro-batches: micro | whole | auto
  double bucket_mb = 25;    // gradient bucket size, MB of fp32
  int64_t overlap = 1;      // 1: reduce buckets during backward; 0: one reduction after it
  std::string grad_reduce = "fp32";  // fp32 | bf16: the dtype gradients travel in

  ModelConfig model() const;
  void set_model(const ModelConfig& m);  // the model keys from m (max_seq_len included)
  void reset_layout();  // the layout keys (is_layout_key) back to their defaults
  LrSchedule schedule() const;
  AdamWConfig adamw() const;
  LossScalerConfig loss_scaler() const;
  Fp8ScalingConfig fp8_scaling() const;
  StabilityConfig stability() const;
  // The global batch is dp x micro_batch x accumulation_steps.
  int64_t micro_batch() const { return micro_batch_size > 0 ? micro_batch_size : batch_size / dp; }
  int64_t accumulation_steps() const { return batch_size / (dp * micro_batch()); }
  // Model chunks per pipeline rank: pp_virtual (at least 2) with the interleaved schedule, else 1.
  int64_t virtual_stages() const { return pp_schedule == "interleaved" ? (pp_virtual > 0 ? pp_virtual : 2) : 1; }
  // Layers per pipeline stage (per virtual stage, pp x virtual_stages() of them, with
  // interleaving): pp_layers ("3,3,2", empty: even), or "balanced": the split that
  // makes the most expensive stage cheapest by the layers' forward FLOPs (model/model.h
  // unit_costs), the LM head's counted on the last stage.
  std::vector<int64_t> pp_split() const;
  // The run's layout as a validated Plan (the model family's sharding rules).
  Plan plan() const;
  void validate() const;  // one-line errors naming the key
  nlohmann::json to_json() const;
};


struct ConfigKey {
  std::string key;  // "n_layer"; the flag is "--n-layer"
  ConfigKind kind;  // boolean keys are 0/1 (a bare flag is 1)
  std::string help;
  std::function<void(TrainConfig&, const std::string&)> set;  // parses; throws on bad value
  std::function<nlohmann::json(const TrainConfig&)> get;
};

const std::vector<ConfigKey>& config_keys();
// The --help group of a key: model, data, optimizer, precision, parallel layout, checkpoints,
// logging, run; and whether it shapes the model (ModelConfig) or the layout (from the job,
// never from a resumed checkpoint).
std::string config_group(const std::string& key);
bool is_model_key(const std::string& key);
bool is_layout_key(const std::string& key);
std::string flag_name(const std::string& key);  // n_layer -> --n-layer

// Applies `key = value` (value as text), naming `source` (file or flag) in errors.
void set_config_value(TrainConfig& cfg, const std::string& key, const std::string& value,
                      const std::string& source);
// Reads a TOML file; unknown keys, wrong types and syntax errors throw naming file and key.
// Returns the keys it set.
std::vector<std::string> apply_toml_file(TrainConfig& cfg, const std::string& path);
// Applies a JSON object of key -> value (as stored in checkpoints).
void apply_json(TrainConfig& cfg, const nlohmann::json& j, const std::string& source);

}  // namespace meshlm
