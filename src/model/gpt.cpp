// The GPT-2 forward and backward passes, as a sequence of kernel calls. Activation offsets are
// computed for a (B, T) capacity once; a smaller (B, T) reuses the same buffers (the kernels
// see contiguous (B, T, ...) arrays laid out for the actual B and T).
#include "model/gpt.h"

#include <cstring>

#include "core/error.h"

namespace meshlm {

Gpt::Gpt(const ModelConfig& cfg, Backend& backend, DType dtype)
    : cfg_(cfg), be_(backend), dtype_(dtype), esz_(dtype_size(dtype)), table_(cfg) {
  MESHLM_CHECK(dtype == DType::fp32 || dtype == DType::fp64,
               std::string("model dtype must be fp32 or fp64, got ") + dtype_name(dtype));
  MESHLM_CHECK(backend.supports(Op::matmul, dtype),
               std::string("backend ") + backend.name() + " does not run " + dtype_name(dtype));
  params_ = Tensor({table_.total()}, dtype);
  grads_ = Tensor({table_.total()}, dtype);
}

void* Gpt::param(const std::string& name) {
  return static_cast<char*>(params_.data()) + table_.at(name).offset * esz_;
}

void Gpt::init(uint64_t seed) { init_params(table_, seed, params_.view()); }

void Gpt::ensure_activations(int64_t B, int64_t T) {
  MESHLM_CHECK(B > 0 && T > 0, "batch and sequence length must be positive");
  MESHLM_CHECK(T <= cfg_.max_seq_len, "sequence length " + std::to_string(T) +
                                          " exceeds the model's max_seq_len " +
                                          std::to_string(cfg_.max_seq_len));
  B_ = B;
  T_ = T;
  if (B * T <= B_cap_ * T_cap_ && T <= T_cap_) return;
  B_cap_ = B;
  T_cap_ = T;
  const size_t N = size_t(B * T), C = size_t(cfg_.n_embd), Vp = size_t(cfg_.padded_vocab_size());
  const size_t NH = size_t(cfg_.n_head);
  size_t total = 0;
  auto take = [&](size_t n) {
    size_t o = total;
    total += (n + 15) / 16 * 16;  // keep every buffer 64-byte aligned in fp32
    return o;
  };
  Offsets o;
  o.encoded = take(N * C);
  for (int64_t l = 0; l < cfg_.n_layer; l++) {
    o.ln1.push_back(take(N * C));         // (B, T, C)
    o.ln1_mean.push_back(take(N));        // (B, T)
    o.ln1_rstd.push_back(take(N));        // (B, T)
    o.qkv.push_back(take(N * 3 * C));     // (B, T, 3C)
    o.atty.push_back(take(N * C));        // (B, T, C)
    o.lse.push_back(take(N * NH));        // (B, NH, T)
    o.attproj.push_back(take(N * C));     // (B, T, C)
    o.res2.push_back(take(N * C));        // (B, T, C)
    o.ln2.push_back(take(N * C));         // (B, T, C)
    o.ln2_mean.push_back(take(N));        // (B, T)
    o.ln2_rstd.push_back(take(N));        // (B, T)
    o.fch.push_back(take(N * 4 * C));     // (B, T, 4C)
    o.fch_gelu.push_back(take(N * 4 * C));// (B, T, 4C)
    o.fcproj.push_back(take(N * C));      // (B, T, C)
    o.res3.push_back(take(N * C));        // (B, T, C)
  }
  o.lnf = take(N * C);        // (B, T, C)
  o.lnf_mean = take(N);       // (B, T)
  o.lnf_rstd = take(N);       // (B, T)
  o.logits = take(N * Vp);    // (B, T, Vp), replaced by dlogits when training
  o.losses = take(N);         // (B, T)
  // backward scratch
  o.dres = take(N * C);       // (B, T, C) gradient of the residual stream
  o.dln = take(N * C);        // (B, T, C)
  o.dbig = take(N * 4 * C);   // (B, T, 4C)
  o.dbig2 = take(N * 4 * C);  // (B, T, 4C)
  o.dqkv = take(N * 3 * C);   // (B, T, 3C)
  o.datty = take(N * C);      // (B, T, C)
  off_ = std::move(o);
  acts_ = Tensor({int64_t(total)}, dtype_);
}

double Gpt::forward(const int32_t* tokens, const int32_t* targets, int64_t B, int64_t T,
                    float dloss_scale) {
  ensure_activations(B, T);
  const int64_t N = B * T, C = cfg_.n_embd, NH = cfg_.n_head, V = cfg_.vocab_size;
  const int64_t Vp = cfg_.padded_vocab_size();
  const DType dt = dtype_;
  tokens_.assign(tokens, tokens + N);
  for (int64_t i = 0; i < N; i++)
    MESHLM_CHECK(tokens[i] >= 0 && tokens[i] < V,
                 "token id " + std::to_string(tokens[i]) + " is outside the vocabulary [0, " +
                     std::to_string(V) + ")");
  auto P = [&](const std::string& n) { return param(n); };

  be_.embedding_forward(dt, act(off_.encoded), tokens, P("transformer.wte.weight"),
                        P("transformer.wpe.weight"), B, T, C);
  const void* residual = act(off_.encoded);  // (B, T, C)
  for (int64_t l = 0; l < cfg_.n_layer; l++) {
    const std::string p = "transformer.h." + std::to_string(l) + ".";
    be_.layernorm_forward(dt, act(off_.ln1[l]), act(off_.ln1_mean[l]), act(off_.ln1_rstd[l]),
                          residual, P(p + "ln_1.weight"), P(p + "ln_1.bias"), N, C);
    be_.matmul_forward(dt, act(off_.qkv[l]), act(off_.ln1[l]), P(p + "attn.c_attn.weight"),
                       P(p + "attn.c_attn.bias"), N, C, 3 * C, WeightLayout::in_out);
    be_.attention_forward(dt, act(off_.atty[l]), act(off_.lse[l]), act(off_.qkv[l]), B, T, C, NH);
    be_.matmul_forward(dt, act(off_.attproj[l]), act(off_.atty[l]), P(p + "attn.c_proj.weight"),
                       P(p + "attn.c_proj.bias"), N, C, C, WeightLayout::in_out);
    be_.residual_forward(dt, act(off_.res2[l]), residual, act(off_.attproj[l]), N * C);
    be_.layernorm_forward(dt, act(off_.ln2[l]), act(off_.ln2_mean[l]), act(off_.ln2_rstd[l]),
                          act(off_.res2[l]), P(p + "ln_2.weight"), P(p + "ln_2.bias"), N, C);
    be_.matmul_forward(dt, act(off_.fch[l]), act(off_.ln2[l]), P(p + "mlp.c_fc.weight"),
                       P(p + "mlp.c_fc.bias"), N, C, 4 * C, WeightLayout::in_out);
    be_.gelu_forward(dt, act(off_.fch_gelu[l]), act(off_.fch[l]), N * 4 * C);
    be_.matmul_forward(dt, act(off_.fcproj[l]), act(off_.fch_gelu[l]), P(p + "mlp.c_proj.weight"),
                       P(p + "mlp.c_proj.bias"), N, 4 * C, C, WeightLayout::in_out);
    be_.residual_forward(dt, act(off_.res3[l]), act(off_.res2[l]), act(off_.fcproj[l]), N * C);
    residual = act(off_.res3[l]);
  }
  be_.layernorm_forward(dt, act(off_.lnf), act(off_.lnf_mean), act(off_.lnf_rstd), residual,
                        P("transformer.ln_f.weight"), P("transformer.ln_f.bias"), N, C);
  // LM head tied to wte: logits (B, T, Vp) = lnf (B, T, C) @ wte (Vp, C)^T
  be_.matmul_forward(dt, act(off_.logits), act(off_.lnf), P("transformer.wte.weight"), nullptr, N,
                     C, Vp, WeightLayout::out_in);
  if (!targets) {
    targets_.clear();
    return 0.0;
  }
  targets_.assign(targets, targets + N);
  for (int64_t i = 0; i < N; i++)
    MESHLM_CHECK(targets[i] >= 0 && targets[i] < V,
                 "target id " + std::to_string(targets[i]) + " is outside the vocabulary [0, " +
                     std::to_string(V) + ")");
  const float dloss = dloss_scale / float(N);  // d(scale * mean) / d(loss_i)
  be_.crossentropy_forward_backward(dt, act(off_.losses), act(off_.logits), targets, dloss, N, V, Vp);
  double sum = 0;
  for (int64_t i = 0; i < N; i++)
    sum += dt == DType::fp32 ? double(static_cast<const float*>(act(off_.losses))[i])
                             : static_cast<const double*>(act(off_.losses))[i];
  return sum / double(N);
}

void Gpt::backward() {
  MESHLM_CHECK(!targets_.empty(), "backward() needs a forward() with targets and a dloss_scale");
  const int64_t B = B_, T = T_, N = B * T, C = cfg_.n_embd, NH = cfg_.n_head;
  const int64_t Vp = cfg_.padded_vocab_size();
  const DType dt = dtype_;
  auto P = [&](const std::string& n) { return param(n); };
  auto G = [&](const std::string& n) {
    return static_cast<void*>(static_cast<char*>(grads_.data()) + table_.at(n).offset * esz_);
  };
  auto zero = [&](size_t off, int64_t n) { std::memset(act(off), 0, size_t(n) * esz_); };

  // LM head: logits now hold dlogits (B, T, Vp).
  zero(off_.dln, N * C);
  be_.matmul_backward(dt, act(off_.dln), G("transformer.wte.weight"), nullptr, act(off_.logits),
                      act(off_.lnf), P("transformer.wte.weight"), N, C, Vp, WeightLayout::out_in);
  const int64_t L = cfg_.n_layer;
  const void* last_residual = L > 0 ? act(off_.res3[L - 1]) : act(off_.encoded);
  zero(off_.dres, N * C);
  be_.layernorm_backward(dt, act(off_.dres), G("transformer.ln_f.weight"),
                         G("transformer.ln_f.bias"), act(off_.dln), last_residual,
                         P("transformer.ln_f.weight"), act(off_.lnf_mean), act(off_.lnf_rstd), N, C);
  for (int64_t l = L - 1; l >= 0; l--) {
    const std::string p = "transformer.h." + std::to_string(l) + ".";
    const void* residual = l > 0 ? act(off_.res3[l - 1]) : act(off_.encoded);
    // dres is d(res3[l]); MLP branch: fcproj = gelu(fch) @ W + b
    zero(off_.dbig, N * 4 * C);
    be_.matmul_backward(dt, act(off_.dbig), G(p + "mlp.c_proj.weight"), G(p + "mlp.c_proj.bias"),
                        act(off_.dres), act(off_.fch_gelu[l]), P(p + "mlp.c_proj.weight"), N,
                        4 * C, C, WeightLayout::in_out);
    zero(off_.dbig2, N * 4 * C);
    be_.gelu_backward(dt, act(off_.dbig2), act(off_.fch[l]), act(off_.dbig), N * 4 * C);
    zero(off_.dln, N * C);
    be_.matmul_backward(dt, act(off_.dln), G(p + "mlp.c_fc.weight"), G(p + "mlp.c_fc.bias"),
                        act(off_.dbig2), act(off_.ln2[l]), P(p + "mlp.c_fc.weight"), N, C, 4 * C,
                        WeightLayout::in_out);
    be_.layernorm_backward(dt, act(off_.dres), G(p + "ln_2.weight"), G(p + "ln_2.bias"),
                           act(off_.dln), act(off_.res2[l]), P(p + "ln_2.weight"),
                           act(off_.ln2_mean[l]), act(off_.ln2_rstd[l]), N, C);
    // dres is now d(res2[l]); attention branch
    zero(off_.datty, N * C);
    be_.matmul_backward(dt, act(off_.datty), G(p + "attn.c_proj.weight"), G(p + "attn.c_proj.bias"),
                        act(off_.dres), act(off_.atty[l]), P(p + "attn.c_proj.weight"), N, C, C,
                        WeightLayout::in_out);
    zero(off_.dqkv, N * 3 * C);
    be_.attention_backward(dt, act(off_.dqkv), act(off_.datty), act(off_.qkv[l]), act(off_.atty[l]),
                           act(off_.lse[l]), B, T, C, NH);
    zero(off_.dln, N * C);
    be_.matmul_backward(dt, act(off_.dln), G(p + "attn.c_attn.weight"), G(p + "attn.c_attn.bias"),
                        act(off_.dqkv), act(off_.ln1[l]), P(p + "attn.c_attn.weight"), N, C, 3 * C,
                        WeightLayout::in_out);
    be_.layernorm_backward(dt, act(off_.dres), G(p + "ln_1.weight"), G(p + "ln_1.bias"),
                           act(off_.dln), residual, P(p + "ln_1.weight"), act(off_.ln1_mean[l]),
                           act(off_.ln1_rstd[l]), N, C);
    // dres is now d(residual input of layer l)
  }
  be_.embedding_backward(dt, G("transformer.wte.weight"), G("transformer.wpe.weight"),
                         act(off_.dres), tokens_.data(), B, T, C);
}

std::vector<float> Gpt::logits_at(int64_t b, int64_t t) const {
  const int64_t Vp = cfg_.padded_vocab_size();
  MESHLM_CHECK(b < B_ && t < T_, "logits_at: position outside the last forward");
  std::vector<float> out(Vp);
  convert_to_f32(dtype_, out.data(),
                 static_cast<const char*>(act(off_.logits)) + size_t((b * T_ + t) * Vp) * esz_, Vp);
  return out;
}

}  // namespace meshlm
