#include "train/config.h"

#include <algorithm>
#include <thread>


#include <charconv>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "core/error.h"
#include "train/config_file.h"
#include "model/family.h"
#include "model/model.h"
#include "model/params.h"
#include "parallel/pipeline.h"
#include "precision/gemm_formats.h"
#include "precision/policy.h"

namespace meshlm {

ModelConfig TrainConfig::model() const {
  ModelConfig m;
  m.arch = arch;
  m.n_kv_head = n_kv_head;
  m.rope_theta = rope_theta;
  m.ffn_hidden = ffn_hidden;
  m.ffn_multiple_of = ffn_multiple_of;
  m.norm_eps = norm_eps;
  m.tie_embeddings = tie_embeddings;
  m.rope_scaling = rope_scaling;
  m.rope_factor = rope_factor;
  m.rope_low_freq_factor = rope_low_freq_factor;
  m.rope_high_freq_factor = rope_high_freq_factor;
  m.rope_original_max_position = rope_original_max_position;
  m.n_layer = n_layer;
  m.n_head = n_head;
  m.n_embd = n_embd;
  m.vocab_size = vocab_size;
  m.max_seq_len = max_seq_len > 0 ? max_seq_len : seq_len;
  return m;
}

void TrainConfig::set_model(const ModelConfig& m) {
  arch = m.arch;
  n_kv_head = m.n_kv_head;
  rope_theta = m.rope_theta;
  ffn_hidden = m.ffn_hidden;
  ffn_multiple_of = m.ffn_multiple_of;
  norm_eps = m.norm_eps;
  tie_embeddings = m.tie_embeddings;
  rope_scaling = m.rope_scaling;
  rope_factor = m.rope_factor;
  rope_low_freq_factor = m.rope_low_freq_factor;
  rope_high_freq_factor = m.rope_high_freq_factor;
  rope_original_max_position = m.rope_original_max_position;
  n_layer = m.n_layer;
  n_head = m.n_head;
  n_embd = m.n_embd;
  vocab_size = m.vocab_size;
  max_seq_len = m.max_seq_len;
}

void TrainConfig::reset_layout() {
  const TrainConfig d;
  dp = d.dp, tp = d.tp, pp = d.pp;
  pp_layers = d.pp_layers, pp_schedule = d.pp_schedule, pp_virtual = d.pp_virtual, micro_batch_size = d.micro_batch_size;
  sequence_parallel = d.sequence_parallel, zero = d.zero, bucket_mb = d.bucket_mb, overlap = d.overlap;
  fsdp_unit = d.fsdp_unit, zero_accumulate = d.zero_accumulate, layout = d.layout, machine = d.machine;
  grad_reduce = d.grad_reduce, recompute = d.recompute, threads = d.threads, backend = d.backend;
}

LrSchedule TrainConfig::schedule() const {
  return LrSchedule{lr_schedule, lr, min_lr, warmup_steps, lr_decay_steps > 0 ? lr_decay_steps : steps};
}

std::vector<int64_t> TrainConfig::pp_split() const {
  const int stages = int(pp * virtual_stages());
  if (pp_layers != "balanced") return pipeline_split(n_layer, stages, pp_layers);
  // Per token, forward: a block's GEMMs (24 C^2 + 4 T C for GPT-2) against the LM head's
  // (2 C Vp; at GPT-2 124M and T 256 the head costs 5.2 blocks: two stages balance at 9 + 3).
  double block = 0, head = 0;
  ModelConfig one = model();  // every block costs the same: one of them and the head
  one.n_layer = 1;
  for (const UnitCost& u : unit_costs(one, Plan{}, 0, DType::fp32, 1, seq_len)) {
    if (u.unit == "h.0") block = u.forward_flops() / double(seq_len);
    if (u.unit == "final") head = u.forward_flops() / double(seq_len);
  }
  return balanced_pipeline_split(n_layer, stages, block, head);
}

Plan TrainConfig::plan() const {
  Plan p;
  p.mesh = MeshShape{int(dp), int(tp), int(pp)};
  p.sharding = sharding_rules(model(), int(tp));
  p.sequence_parallel = sequence_parallel == 1;
  p.recompute = recompute_from_name(recompute);
  p.pp_split = pp_split();
  p.pp_schedule = pipeline_schedule_from_name(pp_schedule);
  p.pp_virtual = int(virtual_stages());
  static const GradSyncKind stages[] = {GradSyncKind::buckets, GradSyncKind::zero1, GradSyncKind::zero2,
                                        GradSyncKind::zero3};
  p.grad_sync = dp == 1 ? GradSyncKind::none : stages[std::clamp<int64_t>(zero, 0, 3)];
  p.fsdp_unit = fsdp_unit == "layer" ? 1 : std::atoll(fsdp_unit.c_str());
  p.hold_whole_grads = zero_accumulate == "whole" || (zero_accumulate == "auto" && pp > 1);
  p.bucket_mb = bucket_mb;
  p.overlap = overlap == 1;
  p.grad_reduce = dtype_from_name(grad_reduce);
  p.precision = PrecisionPlan::parse(precision_plan);
  p.validate();
  return p;
}

AdamWConfig TrainConfig::adamw() const {
  return AdamWConfig{float(beta1), float(beta2), float(eps), float(weight_decay)};
}

void TrainConfig::validate() const {
  model().validate();
  auto positive = [](int64_t v, const char* key) {
    MESHLM_CHECK(v > 0, std::string(key) + " must be positive (got " + std::to_string(v) + ")");
  };
  positive(seq_len, "seq_len");
  positive(batch_size, "batch_size");
  positive(steps, "steps");
  MESHLM_CHECK(micro_batch_size >= 0, "micro_batch_size must be >= 0");
  MESHLM_CHECK(dp >= 1 && tp >= 1 && pp >= 1, "dp, tp and pp must be >= 1");
  pipeline_schedule_from_name(pp_schedule);
  MESHLM_CHECK(pp_virtual >= 0 && (pp_virtual <= 1 || pp_schedule == "interleaved"),
               "pp_virtual " + std::to_string(pp_virtual) + " (model chunks per pipeline rank) needs --pp-schedule interleaved");
  MESHLM_CHECK(pp_schedule != "interleaved" || (pp > 1 && virtual_stages() >= 2),
               "the interleaved schedule needs a pipeline (pp > 1) and pp_virtual >= 2 chunks per rank");
  pp_split();  // throws unless the layers split into pp (x pp_virtual) stages
  recompute_from_name(recompute);
  MESHLM_CHECK(n_head % tp == 0, "n_head (" + std::to_string(n_head) + ") must be a multiple of tp (" +
                                     std::to_string(tp) + "): each tensor-parallel rank holds whole heads");
  sharding_rules(model(), int(tp));  // throws when the model does not split over tp (kv heads, ffn, vocabulary)
  MESHLM_CHECK(model().padded_vocab_size() % tp == 0, "tensor parallelism: the padded vocabulary (" +
                                                         std::to_string(model().padded_vocab_size()) +
                                                         ") must split into tp (" + std::to_string(tp) + ") equal parts");
  MESHLM_CHECK(batch_size % dp == 0, "batch_size (" + std::to_string(batch_size) +
                                         ") must be a multiple of dp (" + std::to_string(dp) + ")");
  MESHLM_CHECK(micro_batch() > 0 && batch_size % (dp * micro_batch()) == 0,
               "batch_size (" + std::to_string(batch_size) + ") is not dp (" + std::to_string(dp) +
                   ") x micro_batch_size (" + std::to_string(micro_batch()) + ") x an accumulation count");
  MESHLM_CHECK(pp_schedule != "interleaved" || accumulation_steps() % pp == 0,
               "the interleaved schedule needs the micro-batches per step (" + std::to_string(accumulation_steps()) +
                   " = batch_size / (dp x micro_batch_size)) to be a multiple of pp (" + std::to_string(pp) + ")");
  MESHLM_CHECK(zero >= 0 && zero <= 3, "zero must be 0, 1, 2 or 3");
  MESHLM_CHECK(layout.empty() || layout == "auto", "layout must be auto or empty (got '" + layout + "')");
  MESHLM_CHECK(fsdp_unit == "layer" || (!fsdp_unit.empty() && fsdp_unit.find_first_not_of("0123456789") == std::string::npos &&
                                        std::atoll(fsdp_unit.c_str()) >= 1),
               "fsdp_unit must be 'layer' or a positive number of layers (got '" + fsdp_unit + "')");
  MESHLM_CHECK(zero_accumulate == "auto" || zero_accumulate == "micro" || zero_accumulate == "whole",
               "zero_accumulate must be auto, micro or whole (got '" + zero_accumulate + "')");
  MESHLM_CHECK(zero < 3 || pp == 1 || dp == 1, "ZeRO-3 with pipeline parallelism (pp " + std::to_string(pp) +
                                                  ") is not supported: use --zero 2 (or 1) with a pipeline");
  MESHLM_CHECK(zero < 2 || pp == 1 || dp == 1 || zero_accumulate != "micro",
               "ZeRO-2 with a pipeline holds whole gradients until the last micro-batch: --zero-accumulate micro "
               "is not supported with pp > 1");
  MESHLM_CHECK(zero < 2 || numerics_report == 0,
               "numerics_report with --zero " + std::to_string(zero) +
                   " is not supported: each rank holds a shard of the weights and gradients (use --zero 1)");
  MESHLM_CHECK(sequence_parallel == 0 || sequence_parallel == 1, "sequence_parallel must be 0 or 1");
  MESHLM_CHECK(sequence_parallel == 0 || tp > 1, "sequence_parallel needs tensor parallelism (tp > 1)");
  MESHLM_CHECK(sequence_parallel == 0 || (micro_batch() * seq_len) % tp == 0,
               "sequence_parallel: micro_batch x seq_len (" + std::to_string(micro_batch() * seq_len) +
                   ") must be a multiple of tp (" + std::to_string(tp) + ")");
  MESHLM_CHECK(overlap == 0 || overlap == 1, "overlap must be 0 or 1");
  MESHLM_CHECK(bucket_mb > 0, "bucket_mb must be positive");
  MESHLM_CHECK(grad_reduce == "fp32" || grad_reduce == "bf16", "grad_reduce must be fp32 or bf16");
  MESHLM_CHECK(max_seq_len == 0 || seq_len <= max_seq_len,
               "seq_len (" + std::to_string(seq_len) + ") exceeds max_seq_len (" +
                   std::to_string(max_seq_len) + ")");
  MESHLM_CHECK(eval_every >= 0 && eval_batches >= 0 && save_every >= 0 && threads >= 0,
               "eval_every, eval_batches, save_every and threads must be >= 0");
  const int64_t cpus = std::max<int64_t>(1, int64_t(std::thread::hardware_concurrency()));
  MESHLM_CHECK(threads <= 8 * cpus, "threads " + std::to_string(threads) + " is more than 8 x the " +
                                        std::to_string(cpus) + " CPUs of this machine; 0 picks a count that fits");
  MESHLM_CHECK(peak_gflops >= 0, "peak_gflops must be >= 0 (0 measures it)");
  MESHLM_CHECK(save_every_minutes >= 0 && watchdog >= 0, "save_every_minutes and watchdog must be >= 0");
  MESHLM_CHECK(allow_data_change == 0 || allow_data_change == 1, "allow_data_change must be 0 or 1");
  MESHLM_CHECK(vocab_resize == 0 || vocab_resize == 1, "vocab_resize must be 0 or 1");
  MESHLM_CHECK(lr_decay_steps >= 0 && keep_last >= 0 && sample_every >= 0 && sample_tokens > 0,
               "lr_decay_steps, keep_last and sample_every must be >= 0, sample_tokens positive");
  MESHLM_CHECK(log_every >= 1, "log_every must be >= 1");
  MESHLM_CHECK(!out.empty(), "out: the run directory must not be empty");
  MESHLM_CHECK(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, "beta1 and beta2 must be in [0, 1)");
  MESHLM_CHECK(eps > 0, "eps must be positive");
  MESHLM_CHECK(shuffle == 0 || shuffle == 1, "shuffle must be 0 or 1");
  MESHLM_CHECK(weight_decay >= 0 && grad_clip >= 0, "weight_decay and grad_clip must be >= 0");
  Precision(precision, false, true, 0, 0);  // throws naming the modes
  stability().validate();
  const PrecisionPlan pplan = PrecisionPlan::parse(precision_plan);
  for (const PrecisionRule& r : pplan.rules) gemm_format(r.format);  // throws naming the formats
  MESHLM_CHECK(pplan.empty() || precision == "bf16" || !Precision(precision, false, true, 0, 0).gemm.empty(),
               "precision_plan needs --precision bf16 or a GEMM format (the plan's GEMMs run on bf16 operands), got '" +
                   precision + "'");
  MESHLM_CHECK(stochastic_rounding == 0 || stochastic_rounding == 1, "stochastic_rounding must be 0 or 1");
  MESHLM_CHECK(master_weights == 0 || master_weights == 1, "master_weights must be 0 or 1");
  MESHLM_CHECK(master_weights == 1 || precision == "bf16",
               "master_weights = 0 is a bf16 mode (weights kept in bf16, stochastic rounding)");
  MESHLM_CHECK(stochastic_rounding == 0 || (precision != "fp32" && precision != "fp16-pure"),
               "stochastic_rounding needs a 16-bit compute copy (bf16, fp16, fp8 or a GEMM format)");
  MESHLM_CHECK(loss_scale >= 0, "loss_scale must be >= 0");
  MESHLM_CHECK(profile == 0 || profile == 1, "profile must be 0 or 1");
  MESHLM_CHECK(checkpoints == 0 || checkpoints == 1, "checkpoints must be 0 or 1");
  MESHLM_CHECK(checkpoint_format == "whole" || checkpoint_format == "parts",
               "checkpoint_format must be whole or parts, got '" + checkpoint_format + "'");
  MESHLM_CHECK(numerics_report >= 0 && inject_inf_at_step >= 0,
               "numerics_report and inject_inf_at_step must be >= 0");
  loss_scaler().validate();
  if (precision == "fp8") fp8_scaling().validate();
  MESHLM_CHECK(comm == "mpi" || comm == "nccl", "comm must be mpi or nccl (got '" + comm + "')");
  MESHLM_CHECK(comm == "mpi" || backend == "cuda", "--comm nccl needs --backend cuda (got '" + backend + "')");
  schedule().validate();
}

LossScalerConfig TrainConfig::loss_scaler() const {
  LossScalerConfig c;
  c.hysteresis = loss_scale_hysteresis;
  c.growth_interval = loss_scale_growth_interval;
  return c;
}

StabilityConfig TrainConfig::stability() const {
  StabilityConfig s;
  s.action = instability_action_from_name(on_instability);
  s.z = instability_z, s.window = instability_window, s.warmup = instability_warmup;
  s.overflow_rate = instability_overflow, s.underflow_rate = instability_underflow;
  return s;
}

Fp8ScalingConfig TrainConfig::fp8_scaling() const {
  return Fp8ScalingConfig{fp8_history, fp8_algorithm, fp8_margin, fp8_gemm};
}

nlohmann::json TrainConfig::to_json() const {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& k : config_keys()) j[k.key] = k.get(*this);
  return j;
}

std::string flag_name(const std::string& key) {
  std::string f = "--" + key;
  for (char& c : f)
    if (c == '_') c = '-';
  return f;
}

namespace {

int64_t parse_int(const std::string& v, const std::string& what) {
  int64_t x = 0;
  auto r = std::from_chars(v.data(), v.data() + v.size(), x);
  MESHLM_CHECK(r.ec == std::errc() && r.ptr == v.data() + v.size(),
               what + ": '" + v + "' is not an integer");
  return x;
}

double parse_real(const std::string& v, const std::string& what) {
  std::istringstream ss(v);
  double x;
  ss >> x;
  MESHLM_CHECK(!ss.fail() && ss.eof(), what + ": '" + v + "' is not a number");
  return x;
}

#define INT_KEY(name, help)                                                                  \
  ConfigKey{#name, ConfigKind::integer, help,                                                \
            [](TrainConfig& c, const std::string& v) { c.name = parse_int(v, #name); },      \
            [](const TrainConfig& c) { return nlohmann::json(c.name); }}
#define REAL_KEY(name, help)                                                                 \
  ConfigKey{#name, ConfigKind::real, help,                                                   \
            [](TrainConfig& c, const std::string& v) { c.name = parse_real(v, #name); },     \
            [](const TrainConfig& c) { return nlohmann::json(c.name); }}
// Booleans are 0/1 in the struct and in checkpoints; flags and TOML take true/false too.
int64_t parse_bool(const std::string& v, const std::string& what) {
  if (v.empty() || v == "1" || v == "true" || v == "yes" || v == "on") return 1;  // "": the bare flag
  if (v == "0" || v == "false" || v == "no" || v == "off") return 0;
  throw Error(what + ": '" + v + "' is not a boolean (true/false, 1/0)");
}

#define BOOL_KEY(name, help)                                                                 \
  ConfigKey{#name, ConfigKind::boolean, help,                                                \
            [](TrainConfig& c, const std::string& v) { c.name = parse_bool(v, #name); },     \
            [](const TrainConfig& c) { return nlohmann::json(c.name); }}
#define TEXT_KEY(name, help)                                                                 \
  ConfigKey{#name, ConfigKind::text, help,                                                   \
            [](TrainConfig& c, const std::string& v) { c.name = v; },                        \
            [](const TrainConfig& c) { return nlohmann::json(c.name); }}

}  // namespace

const std::vector<ConfigKey>& config_keys() {
  static const std::vector<ConfigKey> keys = {
      TEXT_KEY(arch, "model family: gpt2 (GPT2LMHeadModel) or llama (LlamaForCausalLM: RMSNorm, rotary positions, SwiGLU, grouped-query attention)"),
      INT_KEY(n_layer, "transformer blocks (L)"),
      INT_KEY(n_head, "attention heads (NH); must divide n_embd"),
      INT_KEY(n_embd, "model width (C)"),
      INT_KEY(vocab_size, "vocabulary size (V); a fresh run without it takes the data's (manifest.json), else 256"),
      INT_KEY(max_seq_len, "longest sequence: rows of GPT-2's position embedding, of Llama's rotary table; 0 means seq_len"),
      INT_KEY(n_kv_head, "llama: key/value heads (grouped-query attention; n_head is multi-head, 1 multi-query); 0 means n_head"),
      REAL_KEY(rope_theta, "llama: base of the rotary frequencies (500000 as Llama 3; 10000 as Llama 2)"),
      INT_KEY(ffn_hidden, "llama: SwiGLU hidden width; 0 means 8/3 n_embd rounded up to a multiple of ffn_multiple_of"),
      INT_KEY(ffn_multiple_of, "llama: the multiple ffn_hidden's default is rounded up to"),
      REAL_KEY(norm_eps, "llama: RMSNorm epsilon"),
      INT_KEY(tie_embeddings, "1: the LM head is the token embedding; 0: its own (llama only); -1: the family's default (gpt2 1, llama 0)"),
      TEXT_KEY(rope_scaling, "llama: none, or llama3 (Llama 3.1's frequency scaling, the rope_* keys below)"),
      REAL_KEY(rope_factor, "llama3 rope scaling: how much the low frequencies are slowed"),
      REAL_KEY(rope_low_freq_factor, "llama3 rope scaling: low_freq_factor"),
      REAL_KEY(rope_high_freq_factor, "llama3 rope scaling: high_freq_factor"),
      INT_KEY(rope_original_max_position, "llama3 rope scaling: original_max_position_embeddings"),
      INT_KEY(seq_len, "training sequence length (T)"),
      INT_KEY(batch_size, "global batch: sequences per optimizer step"),
      INT_KEY(micro_batch_size, "sequences per forward/backward on each rank; 0 means batch_size / dp"),
      REAL_KEY(lr, "peak learning rate"),
      REAL_KEY(min_lr, "final learning rate of the cosine schedule"),
      INT_KEY(warmup_steps, "linear warmup steps"),
      INT_KEY(lr_decay_steps, "the step the cosine reaches min_lr (as nanoGPT's lr_decay_iters); 0 means steps, so growing steps on --resume stretches the schedule"),
      TEXT_KEY(lr_schedule, "cosine or constant (after warmup)"),
      REAL_KEY(weight_decay, "AdamW decoupled weight decay (2-D weights only)"),
      REAL_KEY(beta1, "AdamW beta1"),
      REAL_KEY(beta2, "AdamW beta2"),
      REAL_KEY(eps, "AdamW epsilon"),
      REAL_KEY(grad_clip, "clip the global gradient norm to this; 0 disables"),
      INT_KEY(steps, "optimizer steps in total (a resumed run continues to this step)"),
      INT_KEY(eval_every, "evaluate on the val split every N steps (and at the end); 0: only at the end"),
      INT_KEY(eval_batches, "val batches (of batch_size sequences) per evaluation; 0 disables evaluation"),
      INT_KEY(save_every, "write a checkpoint every N steps (and always at the end); 0: only at the end"),
      INT_KEY(keep_last, "keep only the newest N checkpoints of the run directory (older step_* removed after each save); 0: keep all"),
      INT_KEY(log_every, "print the console step line every N steps (and the first and last); metrics.jsonl has every step"),
      BOOL_KEY(tensorboard, "also write TensorBoard event files (<out>/tensorboard/events.out.tfevents.*): every metric as a scalar"),
      BOOL_KEY(plots, "write <out>/loss.svg and loss.png (loss, val loss, lr, grad norm, tokens/s) at each eval and at the end"),
      INT_KEY(sample_every, "print a sample of sample_tokens tokens from sample_prompt every N steps (0: never)"),
      INT_KEY(sample_tokens, "tokens per periodic sample"),
      TEXT_KEY(sample_prompt, "prompt of the periodic samples (empty: the end-of-text token, else a newline)"),
      INT_KEY(seed, "seed of the initial weights"),
      BOOL_KEY(shuffle, "1: visit the training windows in a new pseudo-random order each epoch; 0: in order"),
      INT_KEY(data_seed, "seed of the shuffling order"),
      INT_KEY(threads, "CPU threads; 0: OMP_NUM_THREADS, else the CPUs this process may use / the ranks on its node"),
      REAL_KEY(peak_gflops, "peak GFLOP/s of one rank for MFU; 0 measures a large GEMM at start-up (MFU is against the peak of all ranks)"),
      TEXT_KEY(peak_cache, "file the measured peaks are kept in, per CPU model, backend, dtype and threads, so every run's MFU has the same denominator: auto ($XDG_CACHE_HOME or ~/.cache/meshlm/peak_gflops.json), off (measure every run), or a path"),
      TEXT_KEY(data, "directory of token shards (*train*.bin, *val*.bin)"),
      TEXT_KEY(out, "run directory: metrics.jsonl and checkpoints"),
      TEXT_KEY(backend, "kernel backend: cpu, cuda (an NVIDIA GPU; docs/cuda.md), reference, or cpu/reference with -guarded (tensor memory inaccessible outside backend calls: a test mode)"),
      TEXT_KEY(comm, "collectives of the cuda backend under mpirun: mpi (device buffers staged through host copies) or nccl (device to device, one GPU per rank from the local rank)"),
      TEXT_KEY(tokenizer, "the data's tokenizer (bytes, gpt2 or a file), for sampling and per-byte loss; empty: from <data>/manifest.json"),
      TEXT_KEY(init_from, "start from these weights: a Hugging Face model directory (config.json + model.safetensors; its config sets the model keys) or a bare model.safetensors (shapes checked against the model keys); fresh optimizer, step 0"),
      BOOL_KEY(vocab_resize, "1: --init-from's vocabulary may differ from vocab_size: rows past it are cut, new rows keep their initialization"),
      TEXT_KEY(precision, "fp32 | bf16 | fp16 (mixed, fp32 master weights; fp16 with dynamic loss scaling) | fp16-pure (the naive recipe: everything fp16) | fp8 (simulated e4m3/e5m2 GEMM operands, delayed scaling) | a GEMM format of the precision ladder for every block Linear, simulated: fp8-current, fp8-rowwise, mxfp8, mxfp8-e5m2, mxfp6, mxfp4, nvfp4, with options +sr +rht +2d +ocp +recipe (docs/numerics.md)"),
      TEXT_KEY(precision_plan, "GEMM formats per Linear, e.g. \"layers.0,layers.-1: bf16; *: mxfp4\": rules 'selectors: format' (*, head, attn, mlp, layers.i, layers.i-j, layers.i.attn), the first match wins; unmatched Linears run in --precision"),
      BOOL_KEY(stochastic_rounding, "1: round the 16-bit compute weights stochastically (seeded by parameter, element, step)"),
      BOOL_KEY(master_weights, "0 (bf16 only): no fp32 master weights; weights live in bf16 and each update is rounded stochastically (as llm.c)"),
      REAL_KEY(loss_scale, "fp16 and fp16-pure: a static loss scale; 0: dynamic for fp16, none for fp16-pure"),
      TEXT_KEY(on_instability, "what a detected instability (non-finite gradient, loss or grad-norm spike, a GEMM site saturating or flushing too much) does: warn (log it), skip (no update), rescale (skip, halve the fp16 loss scale), promote (the site moves up the ladder: mxfp4 -> mxfp6 -> mxfp8 -> bf16), stop (save, end naming the layer)"),
      REAL_KEY(instability_z, "spike threshold: standard deviations above the mean of the recent applied steps"),
      INT_KEY(instability_window, "applied steps the spike statistics cover"),
      INT_KEY(instability_warmup, "applied steps before spikes are judged"),
      REAL_KEY(instability_overflow, "a GEMM site saturating more than this fraction of an operand's values is an instability"),
      REAL_KEY(instability_underflow, "a GEMM site flushing more than this fraction of its input's or weight's values to zero is an instability (gradients are not judged)"),
      INT_KEY(loss_scale_hysteresis, "fp16 dynamic scaling: overflows tolerated before the scale halves"),
      INT_KEY(loss_scale_growth_interval, "fp16 dynamic scaling: clean steps before the scale doubles"),
      INT_KEY(fp8_history, "fp8: amax history length of the delayed scaling"),
      TEXT_KEY(fp8_algorithm, "fp8: max (over the history) or most_recent"),
      INT_KEY(fp8_margin, "fp8: extra headroom of the scales, in powers of two"),
      TEXT_KEY(fp8_gemm, "fp8: real (GEMMs on one-byte e4m3/e5m2 codes: fp8 tensor cores on a GPU, widened to fp32 elsewhere), simulated (operands rounded through fp8 and read back in bf16, bf16 GEMMs), or auto: real where the backend has fp8 tensor cores (cuda on sm_89 and later), else simulated"),
      INT_KEY(numerics_report, "every N steps append per-layer amax / underflow / overflow statistics to <out>/numerics.jsonl; 0: off"),
      INT_KEY(dp, "data-parallel ranks (launch with mpirun -np dp*tp*pp); batch_size is the global batch"),
      INT_KEY(tp, "tensor-parallel ranks: each holds n_head/tp heads and 1/tp of the MLP (Megatron-style)"),
      INT_KEY(pp, "pipeline stages, contiguous blocks each (pp_virtual chunks each, interleaved); the accumulation steps are the pipeline's micro-batches"),
      TEXT_KEY(pp_layers, "layers per pipeline stage, e.g. 3,3,2; balanced: fewer on the last stage, by the LM head's FLOPs; empty: an even split (n_layer must divide by pp)"),
      TEXT_KEY(layout, "auto: the planner picks dp, tp, pp, micro_batch_size, zero, recompute, sequence_parallel and pp_schedule for the job's ranks from --machine's profile (meshlm plan); empty: as given"),
      TEXT_KEY(machine, "the machine profile --layout auto and meshlm plan read (written by mpirun -np N meshlm plan --calibrate)"),
      TEXT_KEY(pp_schedule, "pipeline schedule: 1f1b (at most pp micro-batches in flight), gpipe (all forwards, then all backwards) or interleaved (1F1B over pp_virtual model chunks per rank: a pp_virtual times smaller bubble, more messages and in-flight activations; the micro-batches per step a multiple of pp)"),
      INT_KEY(pp_virtual, "interleaved schedule: model chunks per pipeline rank (rank s holds virtual stages s, s + pp, ...; pp_layers then lists pp x pp_virtual counts); 0: 2"),
      TEXT_KEY(recompute, "activation recomputation: none, selective (recompute attention core and GELU) or full (keep only block inputs)"),
      BOOL_KEY(sequence_parallel, "1 (tp > 1): split the layernorm/residual activations along the sequence across the tp ranks"),
      INT_KEY(zero, "ZeRO stage over the dp ranks: 0 none; 1 Adam moments sharded (reduce-scatter, step a shard, all-gather); 2 also gradients and fp32 masters (reduce-scattered unit by unit during backward); 3 also the weights (gathered unit by unit before forward and backward, prefetched, released)"),
      TEXT_KEY(fsdp_unit, "zero 3: the gather unit: layer (each block alone) or N (N consecutive blocks at a time)"),
      TEXT_KEY(zero_accumulate, "zero 2/3 with several micro-batches: micro (reduce-scatter every micro-batch: more traffic, only the shard held), whole (hold whole gradients, reduce-scatter after the last), auto (micro; whole with a pipeline)"),
      REAL_KEY(bucket_mb, "gradient bucket size in MB (fp32); buckets are reduced as backward finishes them"),
      BOOL_KEY(overlap, "1: reduce each bucket during backward; 0: one reduction after backward (for comparison)"),
      TEXT_KEY(grad_reduce, "dtype of the gradient reduction: fp32 or bf16"),
      BOOL_KEY(profile, "1: time every kernel call and print a per-kernel breakdown of a step at the end"),
      BOOL_KEY(checkpoints, "0: write no checkpoints at all (benchmarks); 1: at the end, every save_every steps and on Ctrl-C"),
      INT_KEY(inject_inf_at_step, "testing aid: plant an inf in one gradient at this step (0: never)"),
      TEXT_KEY(checkpoint_format, "whole: rank 0 gathers and writes whole tensors (model.safetensors has Hugging Face's layout); parts: every rank writes its own slices in parallel, nothing gathered (loads at any layout; export consolidates)"),
      REAL_KEY(save_every_minutes, "also save a checkpoint when this many minutes passed since the last one (0: off)"),
      BOOL_KEY(allow_data_change, "1: --resume on data whose manifest.json differs from the checkpoint's (otherwise refused)"),
      REAL_KEY(watchdog, "seconds a rank may make no progress (a step, a collective) before the job ends naming it; scaled up to 20 step times; 0: off"),
  };
  return keys;
}

void set_config_value(TrainConfig& cfg, const std::string& key, const std::string& value,
                      const std::string& source) {
  for (const auto& k : config_keys())
    if (k.key == key) {
      try {
        k.set(cfg, value);
      } catch (const Error& e) {
        throw Error(source + ": " + e.what());
      }
      return;
    }
  throw Error(source + ": unknown config key '" + key + "'");
}

std::vector<std::string> apply_toml_file(TrainConfig& cfg, const std::string& path) {
  MESHLM_CHECK(std::filesystem::exists(path), path + ": no such config file");
  MESHLM_CHECK(std::filesystem::is_regular_file(path), path + ": not a file (--config takes a TOML file)");
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  MESHLM_CHECK(in, path + ": cannot read");
  const auto kind_of = [](const std::string& key) -> std::optional<ConfigKind> {
    for (const auto& c : config_keys())
      if (c.key == key) return c.kind;
    return std::nullopt;
  };
  std::vector<std::string> set;
  for (const auto& [key, value] : read_config_text(text.str(), path, kind_of)) {
    set_config_value(cfg, key, value, path);
    set.push_back(key);
  }
  return set;
}

bool is_model_key(const std::string& key) {
  static const std::set<std::string> keys = {"arch", "n_layer", "n_head", "n_embd", "vocab_size", "max_seq_len",
                                             "n_kv_head", "rope_theta", "ffn_hidden", "ffn_multiple_of", "norm_eps",
                                             "tie_embeddings", "rope_scaling", "rope_factor", "rope_low_freq_factor",
                                             "rope_high_freq_factor", "rope_original_max_position"};
  return keys.count(key) > 0;
}

bool is_layout_key(const std::string& key) {
  static const std::set<std::string> keys = {"dp", "tp", "pp", "pp_layers", "pp_schedule", "pp_virtual", "micro_batch_size",
                                             "sequence_parallel", "layout", "machine", "zero", "fsdp_unit", "zero_accumulate", "bucket_mb", "overlap", "grad_reduce",
                                             "recompute", "threads", "backend", "comm"};
  return keys.count(key) > 0;
}

std::string config_group(const std::string& key) {
  static const std::map<std::string, std::string> groups = {
      {"seq_len", "data"}, {"batch_size", "data"}, {"data", "data"}, {"tokenizer", "data"}, {"shuffle", "data"},
      {"data_seed", "data"}, {"allow_data_change", "data"}, {"lr", "optimizer"}, {"min_lr", "optimizer"},
      {"warmup_steps", "optimizer"}, {"lr_decay_steps", "optimizer"}, {"lr_schedule", "optimizer"},
      {"weight_decay", "optimizer"}, {"beta1", "optimizer"}, {"beta2", "optimizer"}, {"eps", "optimizer"},
      {"grad_clip", "optimizer"}, {"init_from", "model"}, {"vocab_resize", "model"}, {"seed", "model"},
      {"save_every", "checkpoints"}, {"checkpoint_format", "checkpoints"}, {"keep_last", "checkpoints"}, {"checkpoints", "checkpoints"},
      {"save_every_minutes", "checkpoints"}, {"out", "checkpoints"}, {"eval_every", "logging"},
      {"eval_batches", "logging"}, {"log_every", "logging"}, {"tensorboard", "logging"}, {"plots", "logging"},
      {"sample_every", "logging"}, {"sample_tokens", "logging"}, {"sample_prompt", "logging"},
      {"numerics_report", "logging"}, {"profile", "logging"}, {"peak_gflops", "logging"}, {"peak_cache", "logging"},
      {"precision", "precision"}, {"stochastic_rounding", "precision"}, {"master_weights", "precision"},
      {"loss_scale", "precision"}, {"loss_scale_hysteresis", "precision"},
      {"loss_scale_growth_interval", "precision"}, {"fp8_history", "precision"}, {"fp8_margin", "precision"}, {"fp8_gemm", "precision"},
      {"fp8_algorithm", "precision"}, {"precision_plan", "precision"}, {"on_instability", "precision"},
      {"instability_z", "precision"}, {"instability_window", "precision"}, {"instability_warmup", "precision"},
      {"instability_overflow", "precision"}, {"instability_underflow", "precision"}};
  if (is_model_key(key)) return "model";
  if (is_layout_key(key)) return "parallel layout";
  auto it = groups.find(key);
  return it != groups.end() ? it->second : "run";
}

void apply_json(TrainConfig& cfg, const nlohmann::json& j, const std::string& source) {
  for (auto it = j.begin(); it != j.end(); ++it) {
    std::string text;
    if (it->is_string()) {
      text = it->get<std::string>();
    } else if (it->is_boolean()) {
      text = it->get<bool>() ? "1" : "0";
    } else if (it->is_number_integer()) {
      text = std::to_string(it->get<int64_t>());
    } else {
      std::ostringstream ss;
      ss.precision(17);
      ss << it->get<double>();
      text = ss.str();
    }
    set_config_value(cfg, it.key(), text, source);
  }
}

}  // namespace meshlm
