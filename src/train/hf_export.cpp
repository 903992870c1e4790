#include "train/hf_export.h"

#include <filesystem>
#include <optional>

#include "core/error.h"
#include "core/files.h"
#include "data/hf_tokenizer.h"
#include "train/safetensors.h"
#include "train/checkpoint.h"
#include "train/checkpoint_parts.h"
#include "train/trainer.h"

namespace meshlm {

namespace fs = std::filesystem;

namespace {

// GPT-2's tokenizer ends documents with <|endoftext|> = 50256; other vocabularies say nothing.
nlohmann::json end_of_text(const ModelConfig& m) { return m.vocab_size == 50257 ? nlohmann::json(50256) : nullptr; }

nlohmann::ordered_json gpt2_config(const ModelConfig& m) {
  return {{"architectures", {"GPT2LMHeadModel"}}, {"model_type", "gpt2"}, {"vocab_size", m.vocab_size},
          {"n_positions", m.max_seq_len}, {"n_ctx", m.max_seq_len}, {"n_embd", m.n_embd}, {"n_layer", m.n_layer},
          {"n_head", m.n_head}, {"n_inner", nullptr}, {"activation_function", "gelu_new"},
          {"layer_norm_epsilon", 1e-5}, {"resid_pdrop", 0.0}, {"embd_pdrop", 0.0}, {"attn_pdrop", 0.0},
          {"initializer_range", 0.02}, {"scale_attn_weights", true}, {"tie_word_embeddings", true},
          {"bos_token_id", end_of_text(m)}, {"eos_token_id", end_of_text(m)}, {"use_cache", true},
          {"torch_dtype", "float32"}};
}

nlohmann::ordered_json llama_config(const ModelConfig& m) {
  nlohmann::json scaling = nullptr;
  if (m.rope_scaling == "llama3")
    scaling = {{"rope_type", "llama3"}, {"factor", m.rope_factor}, {"low_freq_factor", m.rope_low_freq_factor},
               {"high_freq_factor", m.rope_high_freq_factor},
               {"original_max_position_embeddings", m.rope_original_max_position}};
  return {{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}, {"vocab_size", m.vocab_size},
          {"hidden_size", m.n_embd}, {"intermediate_size", m.ffn_width()}, {"num_hidden_layers", m.n_layer},
          {"num_attention_heads", m.n_head}, {"num_key_value_heads", m.kv_heads()}, {"head_dim", m.head_size()},
          {"hidden_act", "silu"}, {"max_position_embeddings", m.max_seq_len}, {"rms_norm_eps", m.norm_eps},
          {"rope_theta", m.rope_theta}, {"rope_scaling", scaling}, {"attention_bias", false},
          {"attention_dropout", 0.0}, {"mlp_bias", false}, {"tie_word_embeddings", m.tied()},
          {"initializer_range", 0.02}, {"bos_token_id", nullptr}, {"eos_token_id", end_of_text(m)},
          {"use_cache", true}, {"torch_dtype", "float32"}};
}

}  // namespace

nlohmann::ordered_json hf_config(const ModelConfig& m, const std::string& dtype) {
  m.validate();
  nlohmann::ordered_json c = m.llama() ? llama_config(m) : gpt2_config(m);
  c["torch_dtype"] = dtype;
  return c;
}

namespace {

// A parts checkpoint's weights consolidated: a whole model loaded from the pieces, written in
// Hugging Face's layout (what a whole checkpoint's model.safetensors holds).
void consolidate(const std::string& checkpoint, const ModelConfig& m, const fs::path& dst, const std::string& dtype) {
  auto be = make_backend("cpu");
  Model model(m, *be);
  load_checkpoint(checkpoint, model, nullptr);
  std::vector<float> p(size_t(model.table().total()));
  be->download(p.data(), model.params().data(), p.size() * 4);
  std::vector<SafeTensorRef> refs;
  for (const ParamEntry& e : model.table().entries()) refs.push_back({e.name, e.hf_shape, p.data() + e.offset});
  const fs::path tmp = dst.string() + ".tmp";
  write_safetensors(tmp.string(), refs, {{"format", "pt"}}, dtype == "bf16" ? "BF16" : "F32");
  fsync_path(tmp.string());
  fs::rename(tmp, dst);
}

// model.safetensors in the asked dtype: the checkpoint's file itself for fp32, else re-encoded.
void write_weights(const std::string& checkpoint, const fs::path& dst, const std::string& dtype) {
  const fs::path tmp = dst.string() + ".tmp";
  const fs::path src = fs::path(checkpoint) / "model.safetensors";
  if (dtype == "fp32") {
    fs::copy_file(src, tmp, fs::copy_options::overwrite_existing);
  } else {
    const SafeTensorsFile f(src.string());
    std::vector<std::vector<float>> data;
    std::vector<SafeTensorRef> refs;
    data.reserve(f.entries().size());
    for (const auto& [name, e] : f.entries()) {
      data.emplace_back(size_t(shape_numel(e.shape)));
      f.read_f32(name, e.shape, data.back().data());
      refs.push_back({name, e.shape, data.back().data()});
    }
    write_safetensors(tmp.string(), refs, {{"format", "pt"}}, "BF16");
  }
  fsync_path(tmp.string());
  fs::rename(tmp, dst);
}

// tokenizer.json + tokenizer_config.json, or the reason there are none.
std::string write_tokenizer(const std::string& checkpoint, const TrainConfig& cfg, const fs::path& out,
                            std::vector<std::string>& files) {
  std::optional<BpeTokenizer> tok;
  try {
    tok.emplace(checkpoint_tokenizer(checkpoint, cfg.tokenizer));
  } catch (const Error& e) {
    return std::string("no tokenizer written: ") + e.what();
  }
  write_file_atomic((out / "tokenizer.json").string(), hf_tokenizer_json(*tok).dump() + "\n");
  nlohmann::ordered_json tc = {{"tokenizer_class", "PreTrainedTokenizerFast"},
                               {"model_max_length", cfg.model().max_seq_len}, {"clean_up_tokenization_spaces", false}};
  if (tok->eot_id() >= 0) {
    const std::string eot = tok->token_bytes(tok->eot_id());
    tc["bos_token"] = eot;
    tc["eos_token"] = eot;
  }
  write_file_atomic((out / "tokenizer_config.json").string(), tc.dump(2) + "\n");
  files.push_back("tokenizer.json");
  files.push_back("tokenizer_config.json");
  return "";
}

}  // namespace

ExportReport export_hugging_face(const std::string& checkpoint, const std::string& out_dir, bool overwrite,
                                 const std::string& dtype) {
  MESHLM_CHECK(dtype == "fp32" || dtype == "bf16", "--dtype must be fp32 or bf16, got " + dtype);
  const nlohmann::json trainer = verify_checkpoint(checkpoint);
  const TrainConfig cfg = checkpoint_config(trainer, checkpoint);
  const ModelConfig m = cfg.model();
  verify_checkpoint_tensors(checkpoint, m, false);
  const fs::path out(out_dir);
  MESHLM_CHECK(overwrite || !fs::exists(out / "config.json"),
               out_dir + " already holds a config.json (--overwrite replaces it)");
  fs::create_directories(out);
  const nlohmann::ordered_json config = hf_config(m, dtype == "bf16" ? "bfloat16" : "float32");
  write_file_atomic((out / "config.json").string(), config.dump(2) + "\n");
  const nlohmann::ordered_json generation = {{"_from_model_config", true}, {"bos_token_id", config["bos_token_id"]},
                                             {"eos_token_id", config["eos_token_id"]}};
  write_file_atomic((out / "generation_config.json").string(), generation.dump(2) + "\n");
  if (is_parts_checkpoint(trainer)) consolidate(checkpoint, m, out / "model.safetensors", dtype);
  else write_weights(checkpoint, out / "model.safetensors", dtype);
  ExportReport r;
  r.files = {"config.json", "generation_config.json", "model.safetensors"};
  r.note = write_tokenizer(checkpoint, cfg, out, r.files);
  return r;
}

}  // namespace meshlm
