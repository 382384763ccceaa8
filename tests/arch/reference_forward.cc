#include "tests/arch/reference_forward.h"

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace kestrel::testing {
namespace {

absl::StatusOr<double> Number(const runtime::GgufFile& f, const std::string& key, double fallback,
                              bool required) {
  if (f.Find(key) == nullptr) {
    if (required) return absl::NotFoundError(absl::StrCat("reference: no key ", key));
    return fallback;
  }
  absl::StatusOr<float> fv = f.GetF32(key);
  if (fv.ok()) return static_cast<double>(*fv);
  absl::StatusOr<uint64_t> uv = f.GetU64(key);
  if (!uv.ok()) return uv.status();
  return static_cast<double>(*uv);
}

}  // namespace

absl::StatusOr<ReferenceForward> ReferenceForward::Create(const runtime::GgufFile& f,
                                                          uint32_t context_length) {
  ReferenceForward r;
  absl::StatusOr<std::string> arch = f.GetString("general.architecture");
  if (!arch.ok()) return arch.status();
  r.arch_ = *arch;
  const std::string p = r.arch_ + ".";
  auto num = [&](const char* key, double fallback, bool required, double* out) -> absl::Status {
    absl::StatusOr<double> v = Number(f, p + key, fallback, required);
    if (!v.ok()) return v.status();
    *out = *v;
    return absl::OkStatus();
  };
  double L, D, H, Hkv, F, ctx, orig, key_length, n_rot;
  for (auto [key, fallback, required, out] :
       {std::tuple{"block_count", 0.0, true, &L}, std::tuple{"embedding_length", 0.0, true, &D},
        std::tuple{"attention.head_count", 0.0, true, &H},
        std::tuple{"feed_forward_length", 0.0, true, &F},
        std::tuple{"context_length", 0.0, true, &ctx},
        std::tuple{"attention.layer_norm_rms_epsilon", 0.0, true, &r.eps_},
        std::tuple{"rope.freq_base", 10000.0, false, &r.base_},
        std::tuple{"rope.scaling.attn_factor", 1.0, false, &r.attn_factor_}}) {
    if (auto s = num(key, fallback, required, out); !s.ok()) return s;
  }
  if (auto s = num("attention.head_count_kv", H, false, &Hkv); !s.ok()) return s;
  if (auto s = num("attention.key_length", D / H, false, &key_length); !s.ok()) return s;
  if (auto s = num("rope.dimension_count", key_length, false, &n_rot); !s.ok()) return s;
  if (auto s = num("rope.scaling.original_context_length", ctx, false, &orig); !s.ok()) return s;
  r.L_ = static_cast<int64_t>(L);
  r.D_ = static_cast<int64_t>(D);
  r.H_ = static_cast<int64_t>(H);
  r.Hkv_ = static_cast<int64_t>(Hkv);
  r.F_ = static_cast<int64_t>(F);
  r.Dh_ = static_cast<int64_t>(key_length);
  r.n_rot_ = static_cast<int64_t>(n_rot);
  r.neox_ = r.arch_ == "qwen2" || r.arch_ == "qwen3" || r.arch_ == "phi3" || r.arch_ == "gemma3";
  r.window_.assign(r.L_, 0);
  r.layer_base_.assign(r.L_, r.base_);
  if (r.arch_ == "gemma3") {
    // HF modeling_gemma3: embeddings * sqrt(hidden), gelu_pytorch_tanh, sliding layers every
    // layer but each pattern-th (default 6) with rope_local_base_freq (default 10000).
    r.emb_scale_ = std::sqrt(D);
    r.gelu_ = true;
    double window, pattern, local_base;
    if (auto s = num("attention.sliding_window", 0.0, false, &window); !s.ok()) return s;
    if (auto s = num("attention.sliding_window_pattern", 6.0, false, &pattern); !s.ok()) return s;
    if (auto s = num("rope.freq_base_swa", 10000.0, false, &local_base); !s.ok()) return s;
    const int64_t n = static_cast<int64_t>(pattern);
    for (int64_t l = 0; l < r.L_ && window > 0; ++l) {
      if (n == 0 || l % n != n - 1) {
        r.window_[l] = static_cast<int64_t>(window);
        r.layer_base_[l] = local_base;
      }
    }
  }
  for (const runtime::GgufTensorInfo& t : f.tensors()) {
    if (t.type != runtime::GgmlType::F32) {
      return absl::InvalidArgumentError(absl::StrCat("reference: tensor ", t.name, " is not F32"));
    }
    std::vector<double>& v = r.tensors_[t.name];
    v.resize(t.n_elements);
    const uint8_t* data = f.TensorData(t);
    for (uint64_t i = 0; i < t.n_elements; ++i) {
      float x;
      std::memcpy(&x, data + 4 * i, 4);
      v[i] = x;
    }
  }
  r.V_ = static_cast<int64_t>(r.T("token_embd.weight").size()) / r.D_;
  // llama.cpp's choice: rope_freqs, else long factors beyond the original context, else short.
  const std::string factors = r.Has("rope_freqs.weight") ? "rope_freqs.weight"
                              : context_length > orig    ? "rope_factors_long.weight"
                                                         : "rope_factors_short.weight";
  if (r.Has(factors)) r.rope_factors_ = r.T(factors);
  r.k_cache_.assign(r.L_, {});
  r.v_cache_.assign(r.L_, {});
  return r;
}

std::vector<double> ReferenceForward::MatVec(const std::string& name, const std::vector<double>& x,
                                             int64_t rows, int64_t row0) const {
  const std::vector<double>& w = T(name);
  const int64_t cols = static_cast<int64_t>(x.size());
  std::vector<double> y(rows, 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    const double* row = w.data() + (row0 + r) * cols;
    double s = 0;
    for (int64_t c = 0; c < cols; ++c) s += row[c] * x[c];
    y[r] = s;
  }
  return y;
}

std::vector<double> ReferenceForward::RmsNorm(const std::vector<double>& x, const std::string& weight,
                                              int64_t offset, int64_t n) const {
  const std::vector<double>& g = T(weight);
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += x[offset + i] * x[offset + i];
  const double inv = 1.0 / std::sqrt(ss / n + eps_);
  std::vector<double> y(n);
  for (int64_t i = 0; i < n; ++i) y[i] = x[offset + i] * inv * g[i];
  return y;
}

void ReferenceForward::Rope(std::vector<double>& x, int64_t heads, int64_t pos,
                            double base) const {
  for (int64_t h = 0; h < heads; ++h) {
    double* v = x.data() + h * Dh_;
    for (int64_t i = 0; i < n_rot_ / 2; ++i) {
      double theta = pos * std::pow(base, -2.0 * i / n_rot_);
      if (!rope_factors_.empty()) theta /= rope_factors_[i];
      const int64_t a = neox_ ? i : 2 * i, b = neox_ ? i + n_rot_ / 2 : 2 * i + 1;
      const double x0 = v[a], x1 = v[b];
      v[a] = x0 * std::cos(theta) - x1 * std::sin(theta);
      v[b] = x0 * std::sin(theta) + x1 * std::cos(theta);
    }
  }
}

std::vector<double> ReferenceForward::Attention(const std::vector<double>& q, int64_t layer,
                                                int64_t pos) const {
  // RoPE's attn_factor scales Q and K, so the scores by its square.
  const double scale = attn_factor_ * attn_factor_ / std::sqrt(static_cast<double>(Dh_));
  const int64_t group = H_ / Hkv_, kvd = Hkv_ * Dh_;
  const std::vector<double>& K = k_cache_[layer];
  const std::vector<double>& Vc = v_cache_[layer];
  std::vector<double> out(H_ * Dh_, 0.0);
  // A sliding window shows the query the last window_ positions, itself included.
  const int64_t first = window_[layer] > 0 ? std::max<int64_t>(0, pos - window_[layer] + 1) : 0;
  for (int64_t h = 0; h < H_; ++h) {
    const int64_t kh = h / group;
    std::vector<double> s(pos + 1, -INFINITY);
    double mx = -1e300;
    for (int64_t t = first; t <= pos; ++t) {
      double dot = 0;
      for (int64_t d = 0; d < Dh_; ++d) dot += q[h * Dh_ + d] * K[t * kvd + kh * Dh_ + d];
      s[t] = dot * scale;
      mx = std::max(mx, s[t]);
    }
    double sum = 0;
    for (double& e : s) sum += (e = std::exp(e - mx));
    for (int64_t t = first; t <= pos; ++t) {
      for (int64_t d = 0; d < Dh_; ++d) out[h * Dh_ + d] += s[t] / sum * Vc[t * kvd + kh * Dh_ + d];
    }
  }
  return out;
}

std::vector<double> ReferenceForward::Step(int32_t token) {
  const int64_t QD = H_ * Dh_, KVD = Hkv_ * Dh_;
  const std::vector<double>& emb = T("token_embd.weight");
  std::vector<double> x(emb.begin() + token * D_, emb.begin() + (token + 1) * D_);
  for (double& e : x) e *= emb_scale_;
  for (int64_t l = 0; l < L_; ++l) {
    const std::string b = absl::StrCat("blk.", l, ".");
    const std::vector<double> xn = RmsNorm(x, b + "attn_norm.weight", 0, D_);
    std::vector<double> q, k, v;
    if (Has(b + "attn_qkv.weight")) {  // phi3: Q, K, V rows of one matrix
      q = MatVec(b + "attn_qkv.weight", xn, QD, 0);
      k = MatVec(b + "attn_qkv.weight", xn, KVD, QD);
      v = MatVec(b + "attn_qkv.weight", xn, KVD, QD + KVD);
    } else {
      q = MatVec(b + "attn_q.weight", xn, QD);
      k = MatVec(b + "attn_k.weight", xn, KVD);
      v = MatVec(b + "attn_v.weight", xn, KVD);
    }
    if (Has(b + "attn_q.bias")) {  // qwen2
      for (int64_t i = 0; i < QD; ++i) q[i] += T(b + "attn_q.bias")[i];
      for (int64_t i = 0; i < KVD; ++i) k[i] += T(b + "attn_k.bias")[i];
      for (int64_t i = 0; i < KVD; ++i) v[i] += T(b + "attn_v.bias")[i];
    }
    if (Has(b + "attn_q_norm.weight")) {  // qwen3: RMSNorm of each head
      for (int64_t h = 0; h < H_; ++h) {
        const std::vector<double> n = RmsNorm(q, b + "attn_q_norm.weight", h * Dh_, Dh_);
        std::copy(n.begin(), n.end(), q.begin() + h * Dh_);
      }
      for (int64_t h = 0; h < Hkv_; ++h) {
        const std::vector<double> n = RmsNorm(k, b + "attn_k_norm.weight", h * Dh_, Dh_);
        std::copy(n.begin(), n.end(), k.begin() + h * Dh_);
      }
    }
    Rope(q, H_, pos_, layer_base_[l]);
    Rope(k, Hkv_, pos_, layer_base_[l]);
    k_cache_[l].insert(k_cache_[l].end(), k.begin(), k.end());
    v_cache_[l].insert(v_cache_[l].end(), v.begin(), v.end());
    std::vector<double> o = MatVec(b + "attn_output.weight", Attention(q, l, pos_), D_);
    if (Has(b + "post_attention_norm.weight")) o = RmsNorm(o, b + "post_attention_norm.weight", 0, D_);
    for (int64_t i = 0; i < D_; ++i) x[i] += o[i];
    const std::vector<double> fn = RmsNorm(x, b + "ffn_norm.weight", 0, D_);
    std::vector<double> gate, up;
    if (Has(b + "ffn_gate.weight")) {
      gate = MatVec(b + "ffn_gate.weight", fn, F_);
      up = MatVec(b + "ffn_up.weight", fn, F_);
    } else {  // phi3: gate rows then up rows of ffn_up
      gate = MatVec(b + "ffn_up.weight", fn, F_, 0);
      up = MatVec(b + "ffn_up.weight", fn, F_, F_);
    }
    std::vector<double> h(F_);
    for (int64_t i = 0; i < F_; ++i) {
      const double g = gate[i];
      h[i] = gelu_ ? 0.5 * g * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (g + 0.044715 * g * g * g))) * up[i]
                   : g / (1.0 + std::exp(-g)) * up[i];
    }
    std::vector<double> down = MatVec(b + "ffn_down.weight", h, D_);
    if (Has(b + "post_ffw_norm.weight")) down = RmsNorm(down, b + "post_ffw_norm.weight", 0, D_);
    for (int64_t i = 0; i < D_; ++i) x[i] += down[i];
  }
  ++pos_;
  const std::vector<double> xn = RmsNorm(x, "output_norm.weight", 0, D_);
  return MatVec(Has("output.weight") ? "output.weight" : "token_embd.weight", xn, V_);
}

}  // namespace kestrel::testing
