// runtime/speculative/medusa_proposer.h: Medusa-1 heads (Cai et al., "Medusa: Simple LLM Inference
// Acceleration Framework with Multiple Decoding Heads"). Head k (k = 1..K) reads the target's final
// hidden state h of the last committed position (after the output norm: what the output head
// multiplies) and predicts the token k positions after the pending one:
//     h_k = h + SiLU(W_k h + b_k),   logits_k = W_out h_k
// with the target's own output matrix W_out (no extra vocab-sized weights), restricted to the draft
// vocab (draft_vocab.h: the most frequent tokens, one quantized product on the device for all heads). The proposal is a tree:
// the top `widths[0]` tokens of head 1 under the pending token, each with the top `widths[1]` of
// head 2, ... within the node budget.
//
// Sidecar GGUF (written by tools/train_medusa.py; docs/SPECULATIVE.md):
//   general.architecture = "medusa"; medusa.n_heads (u32) = K; medusa.n_embd (u32) = D;
//   medusa.n_vocab (u32) = the target's vocab size
//   medusa.<k>.weight  F32, ggml dims [D, D] (row-major [out][in]),  k = 0 .. K-1 (head k + 1)
//   medusa.<k>.bias    F32, ggml dims [D]
#ifndef KESTREL_RUNTIME_SPECULATIVE_MEDUSA_PROPOSER_H_
#define KESTREL_RUNTIME_SPECULATIVE_MEDUSA_PROPOSER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/model/model.h"
#include "runtime/speculative/draft_vocab.h"
#include "runtime/speculative/proposer.h"

namespace kestrel {
namespace runtime {

struct MedusaHeads {
  uint32_t n_heads = 0, n_embd = 0, n_vocab = 0;
  std::vector<std::vector<float>> weight, bias;  // [K][D * D], [K][D]
  std::unique_ptr<DraftVocabHead> vocab;          // the target's output rows of the draft vocab
};

// Reads and checks the sidecar against `target` (embedding width, vocab); the target's output
// matrix's rows of the first `draft_vocab` tokens (draft_vocab.h) serve as the heads' output.
// Errors name the file and the key or tensor at fault.
absl::StatusOr<std::unique_ptr<MedusaHeads>> LoadMedusaHeads(const std::string& path,
                                                             const Model& target,
                                                             uint32_t draft_vocab = kDefaultDraftVocab);

class MedusaProposer : public Proposer {
 public:
  explicit MedusaProposer(std::unique_ptr<MedusaHeads> heads) : heads_(std::move(heads)) {}
  SpecMethod method() const override { return SpecMethod::kMedusa; }
  bool needs_hidden() const override { return true; }
  absl::Status Propose(const ProposeRequest& request, DraftTree* out) override;

  // Head k's state h_k for hidden state h (before the output product).
  void HeadState(uint32_t k, const float* h, float* hk) const;

 private:
  std::unique_ptr<MedusaHeads> heads_;
  std::vector<float> hk_, logits_;
  std::vector<int32_t> order_;
};

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_SPECULATIVE_MEDUSA_PROPOSER_H_
