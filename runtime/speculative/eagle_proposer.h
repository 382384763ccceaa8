// runtime/speculative/eagle_proposer.h: an EAGLE-style draft head (after Li et al., "EAGLE:
// Speculative Sampling Requires Rethinking Feature Uncertainty"): one small decoder layer that
// runs autoregressively at the feature level. Its input at position p fuses the embedding of the
// token at p with the target's final hidden state f[p-1] (after the output norm: what the output
// head multiplies) at the position before:
//     u_p  = W_fc [e(x_p); f[p-1]] + b_fc
//     h_p  = u_p + W_o MultiHeadAttention(W_q u_p; W_k u_j, W_v u_j for the last `window`
//            positions j <= p)                                  (causal, no norms, no RoPE)
//     f^_p = h_p + W_down SiLU(W_up h_p)
//     logits for the token at p + 1 = W_out f^_p     (the target's own output matrix, restricted
//                                                     to the draft vocab: draft_vocab.h)
// Drafting feeds f^_p back as f[p] with the drafted token: a chain of max_depth tokens (the
// argmax at each step) plus the runner-up of the first step as a sibling. The driver passes the
// true f of the last committed position after every step; for the accepted positions before it
// the head's own f^ (computed while drafting them) stands in, as EAGLE does while drafting.
//
// Sidecar GGUF (written by tools/train_eagle.py; docs/SPECULATIVE.md), all tensors F32, ggml dims
// (dims[0] = row length, stored row-major [out][in]):
//   general.architecture = "eagle"; eagle.n_embd = D, eagle.n_vocab = V (the target's),
//   eagle.n_head = H (divides D), eagle.n_ff = F, eagle.window = W (attention span, positions)
//   eagle.fc.weight [2D, D] (input: the embedding, then the hidden state)   eagle.fc.bias [D]
//   eagle.attn_q.weight, eagle.attn_k.weight, eagle.attn_v.weight, eagle.attn_output.weight [D, D]
//   eagle.ffn_up.weight [D, F]   eagle.ffn_down.weight [F, D]
// The token embeddings and the output matrix are the target's (token_embd.weight, output.weight
// or the tied embeddings), F32/F16/BF16 for now.
#ifndef KESTREL_RUNTIME_SPECULATIVE_EAGLE_PROPOSER_H_
#define KESTREL_RUNTIME_SPECULATIVE_EAGLE_PROPOSER_H_

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/model/model.h"
#include "runtime/speculative/draft_vocab.h"
#include "runtime/speculative/proposer.h"

namespace kestrel {
namespace runtime {

struct EagleHead {
  uint32_t n_embd = 0, n_vocab = 0, n_head = 0, n_ff = 0, window = 0;
  std::vector<float> fc, fc_b, wq, wk, wv, wo, up, down;
  std::vector<float> embd;                 // the target's token embeddings, [V * D] f32
  std::unique_ptr<DraftVocabHead> vocab;   // the target's output rows of the draft vocab
};

// Reads and checks the sidecar against `target`; errors name the file and the key or tensor.
absl::StatusOr<std::unique_ptr<EagleHead>> LoadEagleHead(const std::string& path, const Model& target,
                                                          uint32_t draft_vocab = kDefaultDraftVocab);

class EagleProposer : public Proposer {
 public:
  explicit EagleProposer(std::unique_ptr<EagleHead> head) : head_(std::move(head)) {}
  SpecMethod method() const override { return SpecMethod::kEagle; }
  bool needs_hidden() const override { return true; }
  absl::Status Propose(const ProposeRequest& request, DraftTree* out) override;
  void Reset() override;

 private:
  struct Entry {
    int64_t pos = 0;
    int32_t token = 0;
    std::vector<float> k, v;
  };
  // Runs the layer for (token at `pos`, feature before it); appends its K/V to the window.
  void Step(int64_t pos, int32_t token, const float* feature, std::vector<float>* f_hat);
  absl::Status Logits(const float* f_hat);

  std::unique_ptr<EagleHead> head_;
  std::deque<Entry> window_;        // committed positions, then the draft's while proposing
  int64_t next_pos_ = -1;           // first position without a committed entry (-1: none yet)
  std::vector<float> last_f_hat_;   // f^ of the last committed entry
  std::vector<float> f_, u_, q_, att_, h_, ff_, logits_, in_, scores_;
};

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_SPECULATIVE_EAGLE_PROPOSER_H_
