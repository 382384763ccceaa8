// runtime/speculative/draft_vocab.h: a reduced output head for draft proposers (the "frequency-
// ranked reduced LM head" of FR-Spec and EAGLE-2-style drafters). A draft scores only the K most
// frequent tokens instead of the whole vocab; the target still verifies against its full vocab, so
// greedy output is unchanged and rejection sampling stays exact (the draft's q is 0 outside the
// subset, which the rule allows).
//
// Ranking: the tokenizer's merge order. Kestrel's BPE vocabs (GPT-2 style byte-level BPE, as
// SmolLM2's) number tokens in the order their merges were learnt, i.e. by frequency in the
// tokenizer's training text, so the first K ids are a frequency-ranked subset (special tokens and
// the 256 byte tokens included) and the sub-matrix is a prefix of the output matrix's rows.
//
// The scores are one MATMUL op on the target's device over a compact copy of those rows in the
// weight's own (quantized) format, prepared once at load: K x D bytes of Q4_1 / Q8_0 instead of
// the V x D f32 a host product reads. A device that does not run it falls back to a host f32
// product over the same rows.
#ifndef KESTREL_RUNTIME_SPECULATIVE_DRAFT_VOCAB_H_
#define KESTREL_RUNTIME_SPECULATIVE_DRAFT_VOCAB_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "hal/src/device.h"
#include "runtime/model/model.h"

namespace kestrel {
namespace runtime {

// Draft vocab size the proposers use by default (Kestrel's SmolLM2 measurements, docs/perf/
// speculative.md, session 6).
constexpr uint32_t kDefaultDraftVocab = 8192;

class DraftVocabHead {
 public:
  // The first min(k, vocab) rows of the first of `names` the model has. Errors name `who`.
  static absl::StatusOr<std::unique_ptr<DraftVocabHead>> Create(const Model& target, uint32_t k,
                                                                const std::vector<std::string>& names,
                                                                const std::string& who);
  ~DraftVocabHead();

  uint32_t size() const { return k_; }
  uint32_t n_embd() const { return d_; }
  // Subset index i is token id i (merge order); kept as a function so another ranking can map.
  int32_t token(uint32_t i) const { return static_cast<int32_t>(i); }
  // scores [n][size()] = x [n][n_embd] times the subset rows.
  absl::Status Logits(const float* x, uint32_t n, std::vector<float>* scores);
  // Whether the scores run on the device (false: the host fallback).
  bool on_device() const { return weight_.has_value(); }

 private:
  DraftVocabHead() = default;
  static constexpr uint32_t kMaxRows = 16;  // states per device op (the buffers' rows)
  kestrel_op_desc_t MatmulOp(uint32_t n, kestrel_tensor_arg_t* in, kestrel_tensor_arg_t* out) const;
  // Whether the device runs the product without workspace (asked at load); allocates the buffers.
  bool DeviceRunsIt();
  absl::Status DeviceLogits(const float* x, uint32_t n, float* scores);
  void HostLogits(const float* x, uint32_t n, std::vector<float>* scores) const;

  uint32_t k_ = 0, d_ = 0;
  hal::Device* device_ = nullptr;
  kestrel_tensor_desc_t desc_{};
  std::optional<hal::PreparedWeight> weight_;
  std::optional<hal::Buffer> in_, out_;
  std::vector<float> host_;      // fallback: [k][d] f32
};

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_SPECULATIVE_DRAFT_VOCAB_H_
