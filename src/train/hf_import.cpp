#include "train/hf_import.h"

#include <filesystem>
#include <fstream>
#include <set>

#include "core/error.h"
#include "model/params.h"
#include "train/safetensors.h"

namespace meshlm {

namespace fs = std::filesystem;
using nlohmann::json;

HfSource locate_hf_source(const std::string& path) {
  MESHLM_CHECK(fs::exists(path), path + ": no such file or directory (--init-from takes a Hugging Face model "
                                        "directory or a model.safetensors)");
  HfSource s;
  if (fs::is_regular_file(path)) {
    s.weights = path;
    return s;
  }
  const fs::path d(path);
  MESHLM_CHECK(!fs::exists(d / "model.safetensors.index.json") || fs::exists(d / "model.safetensors"),
               path + ": the weights are split into several safetensors files (model.safetensors.index.json); "
                      "meshlm reads one model.safetensors");
  MESHLM_CHECK(fs::is_regular_file(d / "model.safetensors"),
               path + ": no model.safetensors (a PyTorch pytorch_model.bin is not read: save_pretrained(..., "
                      "safe_serialization=True) writes safetensors)");
  s.weights = (d / "model.safetensors").string();
  if (fs::is_regular_file(d / "config.json")) s.config = (d / "config.json").string();
  if (fs::is_regular_file(d / "tokenizer.json")) s.tokenizer = (d / "tokenizer.json").string();
  return s;
}

namespace {

int64_t int_field(const json& c, const char* key, const std::string& name) {
  MESHLM_CHECK(c.contains(key) && c[key].is_number_integer(), name + ": no integer " + key);
  return c[key].get<int64_t>();
}

ModelConfig gpt2_from_hf(const json& c, const std::string& name) {
  ModelConfig m;
  m.arch = "gpt2";
  m.n_embd = int_field(c, "n_embd", name);
  m.n_layer = int_field(c, "n_layer", name);
  m.n_head = int_field(c, "n_head", name);
  m.vocab_size = int_field(c, "vocab_size", name);
  m.max_seq_len = int_field(c, "n_positions", name);
  MESHLM_CHECK(c.value("n_inner", json()).is_null() || c["n_inner"].get<int64_t>() == 4 * m.n_embd,
               name + ": n_inner must be 4 x n_embd (GPT-2's MLP)");
  const std::string act = c.value("activation_function", std::string("gelu_new"));
  MESHLM_CHECK(act == "gelu_new" || act == "gelu_pytorch_tanh",
               name + ": activation_function " + act + " is not GPT-2's tanh GELU");
  MESHLM_CHECK(std::abs(c.value("layer_norm_epsilon", 1e-5) - 1e-5) < 1e-12, name + ": layer_norm_epsilon must be 1e-5");
  MESHLM_CHECK(!c.value("scale_attn_by_inverse_layer_idx", false) && c.value("scale_attn_weights", true),
               name + ": attention scaling other than 1/sqrt(head size) is not GPT-2's");
  MESHLM_CHECK(c.value("tie_word_embeddings", true), name + ": an untied GPT-2 head is not supported");
  return m;
}

ModelConfig llama_from_hf(const json& c, const std::string& name) {
  ModelConfig m;
  m.arch = "llama";
  m.n_embd = int_field(c, "hidden_size", name);
  m.n_layer = int_field(c, "num_hidden_layers", name);
  m.n_head = int_field(c, "num_attention_heads", name);
  m.n_kv_head = c.value("num_key_value_heads", json()).is_null() ? m.n_head : int_field(c, "num_key_value_heads", name);
  m.ffn_hidden = int_field(c, "intermediate_size", name);
  m.vocab_size = int_field(c, "vocab_size", name);
  m.max_seq_len = int_field(c, "max_position_embeddings", name);
  m.rope_theta = c.value("rope_theta", 10000.0);
  m.norm_eps = c.value("rms_norm_eps", 1e-6);
  m.tie_embeddings = c.value("tie_word_embeddings", false) ? 1 : 0;
  MESHLM_CHECK(c.value("head_dim", json()).is_null() || c["head_dim"].get<int64_t>() * m.n_head == m.n_embd,
               name + ": head_dim x num_attention_heads must be hidden_size");
  MESHLM_CHECK(c.value("hidden_act", std::string("silu")) == "silu", name + ": hidden_act must be silu (SwiGLU)");
  MESHLM_CHECK(!c.value("attention_bias", false) && !c.value("mlp_bias", false),
               name + ": biases in attention or the MLP are not Llama's");
  const json scaling = c.value("rope_scaling", json());
  if (!scaling.is_null()) {
    const std::string type = scaling.value("rope_type", scaling.value("type", std::string()));
    MESHLM_CHECK(type == "llama3", name + ": rope_scaling of type '" + type + "' (meshlm has llama3's)");
    m.rope_scaling = "llama3";
    m.rope_factor = scaling.value("factor", 8.0);
    m.rope_low_freq_factor = scaling.value("low_freq_factor", 1.0);
    m.rope_high_freq_factor = scaling.value("high_freq_factor", 4.0);
    m.rope_original_max_position = scaling.value("original_max_position_embeddings", int64_t(8192));
  }
  return m;
}

// The file's name for a model tensor: as named, or without the family's prefix.
std::string file_name_of(const SafeTensorsFile& f, const std::string& name) {
  if (f.has(name)) return name;
  for (const char* prefix : {"transformer.", "model."})
    if (name.rfind(prefix, 0) == 0 && f.has(name.substr(std::string(prefix).size())))
      return name.substr(std::string(prefix).size());
  throw Error(f.path() + ": no tensor " + name + " (nor without its prefix)");
}

bool is_buffer(const std::string& name) {
  for (const char* tail : {".attn.bias", ".attn.masked_bias", ".rotary_emb.inv_freq"})
    if (name.size() >= std::string(tail).size() && name.compare(name.size() - std::string(tail).size(), std::string::npos, tail) == 0)
      return true;
  return false;
}

// The rows [0, rows) of the vocabulary matrix to take, and the note saying so.
int64_t vocab_rows(const SafeTensorsFile& f, const std::string& fname, const ParamEntry& we, bool resize,
                   ImportReport& r) {
  const SafeTensorsFile::Entry& e = f.entry(fname);
  const int64_t V = we.hf_shape[0], C = we.hf_shape[1];
  MESHLM_CHECK(e.shape.size() == 2 && e.shape[1] == C,
               f.path() + ": " + fname + " is " + shape_str(e.shape) + ", expected " + shape_str(we.hf_shape));
  const int64_t rows = e.shape[0];
  if (rows == V) return V;
  if (resize) {
    r.note = "vocabulary resized from " + std::to_string(rows) + " to " + std::to_string(V) + " rows" +
             (rows < V ? " (the new rows keep their initialization)" : "");
    return std::min(rows, V);
  }
  std::vector<float> w(size_t(rows * C));
  MESHLM_CHECK(rows > V, f.path() + ": " + fname + " has " + std::to_string(rows) + " rows for vocab_size " +
                             std::to_string(V) + "; pass --vocab-resize to grow the vocabulary");
  f.read_as_f32(fname, e.shape, w.data());
  for (int64_t i = V * C; i < rows * C; i++)
    MESHLM_CHECK(w[size_t(i)] == 0.0f, f.path() + ": " + fname + " has " + std::to_string(rows) +
                                           " rows for vocab_size " + std::to_string(V) +
                                           " and rows past it are not zero padding; pass --vocab-resize to cut them");
  r.note = "rows " + std::to_string(V) + ".." + std::to_string(rows - 1) + " of " + fname + " are zero padding, dropped";
  return V;
}

}  // namespace

ModelConfig model_config_from_hf(const json& config, const std::string& name) {
  MESHLM_CHECK(config.is_object(), name + ": not a JSON object");
  const std::string type = config.value("model_type", std::string());
  ModelConfig m;
  if (type == "gpt2") m = gpt2_from_hf(config, name);
  else if (type == "llama") m = llama_from_hf(config, name);
  else throw Error(name + ": model_type '" + type + "' (meshlm builds gpt2 and llama)");
  try {
    m.validate();
  } catch (const Error& e) {
    throw Error(name + ": " + e.what());
  }
  return m;
}

ImportReport import_hf_weights(const std::string& path, Model& model, bool resize_vocab) {
  const SafeTensorsFile f(path);
  const ParamTable whole = param_table(model.config(), Plan{}, 0, 0);
  ImportReport r;
  std::set<std::string> used, dtypes;
  std::vector<float> w, local;
  for (const ParamEntry& e : model.table().entries()) {
    const ParamEntry& we = whole.at(e.name);
    const std::string fname = file_name_of(f, e.name);
    used.insert(fname);
    dtypes.insert(f.entry(fname).dtype);
    // A vocabulary matrix (wte, an untied lm_head: V rows of Vp stored) whose file rows differ:
    // padding dropped, or a resize; rows the file lacks keep the model's initialization.
    const bool vocab = we.hf_shape.size() == 2 && we.hf_shape[0] == model.config().vocab_size &&
                       we.shape[0] == model.config().padded_vocab_size();
    const Shape& file_shape = f.entry(fname).shape;
    w.assign(size_t(we.numel()), 0.0f);  // padded vocabulary rows stay zero
    local.resize(size_t(e.numel()));
    if (vocab && file_shape != we.hf_shape) {
      const int64_t rows = vocab_rows(f, fname, we, resize_vocab, r), C = we.hf_shape[1];
      model.get_master(e, local.data());
      e.for_each_run([&](int64_t l, int64_t g, int64_t n) { std::copy(local.begin() + l, local.begin() + l + n, w.begin() + g); });
      std::vector<float> all(size_t(shape_numel(file_shape)));
      f.read_as_f32(fname, file_shape, all.data());
      std::copy(all.begin(), all.begin() + rows * C, w.begin());
    } else {
      f.read_as_f32(fname, we.hf_shape, w.data());
    }
    e.for_each_run([&](int64_t l, int64_t g, int64_t n) { std::copy(w.begin() + g, w.begin() + g + n, local.begin() + l); });
    model.set_master(e, local.data());
    r.tensors++;
  }
  for (const auto& [name, entry] : f.entries()) {
    if (used.count(name)) continue;
    const bool tied_head = model.config().tied() && (name == "lm_head.weight");
    MESHLM_CHECK(is_buffer(name) || tied_head || model.plan().mesh.tp > 1 || !model.stage().first || !model.stage().last,
                 path + ": tensor " + name + " has no place in " + model.config().describe());
    if (is_buffer(name) || tied_head) r.skipped++;
  }
  r.dtype = dtypes.size() == 1 ? *dtypes.begin() : "mixed";
  model.update_compute_weights();
  return r;
}

}  // namespace meshlm
