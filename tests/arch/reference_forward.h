// tests/arch/reference_forward.h: an independent float64 forward pass of the decoder
// architectures Kestrel runs (llama incl. Llama 3 rope_freqs, qwen2, qwen3, phi3, gemma3), written as
// plain loops over the tensors of an F32 GGUF. It shares no code with the runtime or the plugins
// (only the GGUF reader), reads the metadata itself, and keeps its own KV cache, so the
// architecture tests compare Kestrel against something that cannot share its mistakes.
#ifndef KESTREL_TESTS_ARCH_REFERENCE_FORWARD_H_
#define KESTREL_TESTS_ARCH_REFERENCE_FORWARD_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/gguf/gguf_file.h"

namespace kestrel::testing {

class ReferenceForward {
 public:
  // `context_length` is the context the run is for (Phi-3 picks its short or long RoPE factors
  // from it, as llama.cpp does). Every tensor must be F32.
  static absl::StatusOr<ReferenceForward> Create(const runtime::GgufFile& file,
                                                 uint32_t context_length);

  // Appends one token at the next position; returns its logits [vocab].
  std::vector<double> Step(int32_t token);
  int64_t n_vocab() const { return V_; }

 private:
  const std::vector<double>& T(const std::string& name) const { return tensors_.at(name); }
  bool Has(const std::string& name) const { return tensors_.count(name) != 0; }
  // y [rows] = W [rows, cols] x [cols], W a row range [row0, row0 + rows) of `name`.
  std::vector<double> MatVec(const std::string& name, const std::vector<double>& x, int64_t rows,
                             int64_t row0 = 0) const;
  std::vector<double> RmsNorm(const std::vector<double>& x, const std::string& weight,
                              int64_t offset, int64_t n) const;
  void Rope(std::vector<double>& x, int64_t heads, int64_t pos, double base) const;
  std::vector<double> Attention(const std::vector<double>& q, int64_t layer, int64_t pos) const;

  std::string arch_;
  int64_t L_ = 0, D_ = 0, H_ = 0, Hkv_ = 0, Dh_ = 0, F_ = 0, V_ = 0, n_rot_ = 0;
  double eps_ = 1e-5, base_ = 10000.0, attn_factor_ = 1.0;
  bool neox_ = false;
  std::vector<double> rope_factors_;  // empty: none
  // Gemma 3: embeddings times sqrt(D), GeGLU, and per layer a window (0: none) and a RoPE base.
  double emb_scale_ = 1.0;
  bool gelu_ = false;
  std::vector<int64_t> window_;
  std::vector<double> layer_base_;
  std::map<std::string, std::vector<double>> tensors_;
  std::vector<std::vector<double>> k_cache_, v_cache_;  // per layer, [pos][Hkv * Dh]
  int64_t pos_ = 0;
};

}  // namespace kestrel::testing

#endif  // KESTREL_TESTS_ARCH_REFERENCE_FORWARD_H_
