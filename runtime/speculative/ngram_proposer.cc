#include "runtime/speculative/ngram_proposer.h"

#include <algorithm>
#include <cstring>

namespace kestrel {
namespace runtime {

namespace {
constexpr size_t kMaxConfidence = 64;

// How many tokens before `end_a` equal those before `end_b` (end_a < end_b), up to kMaxConfidence.
uint32_t MatchLength(absl::Span<const int32_t> h, size_t end_a, size_t end_b) {
  uint32_t n = 0;
  while (n < kMaxConfidence && n < end_a && h[end_a - 1 - n] == h[end_b - 1 - n]) ++n;
  return n;
}
}  // namespace

absl::Status NgramProposer::Propose(const ProposeRequest& req, DraftTree* out) {
  const absl::Span<const int32_t> h = req.history;
  const size_t L = h.size();
  if (L < 2 || req.max_nodes == 0 || req.max_depth == 0) return absl::OkStatus();
  const size_t top = std::min<size_t>(max_ngram_, L - 1);
  for (size_t n = top; n >= min_ngram_ && n > 0; --n) {
    const int32_t* suffix = h.data() + L - n;
    uint32_t branches = 0;
    // Most recent occurrence first: recent text predicts best.
    for (size_t start = L - n; start-- > 0;) {
      if (std::memcmp(h.data() + start, suffix, n * sizeof(int32_t)) != 0) continue;
      const size_t from = start + n;
      const size_t len = std::min<size_t>(req.max_depth, L - from);
      if (len == 0) continue;
      const size_t before = out->size();
      out->AddChain(-1, h.data() + from, len, req.max_nodes);
      if (before == 0 && out->size() > 0) out->confidence = MatchLength(h, start + n, L);
      if (out->size() > before) ++branches;
      if (branches >= max_branches_ || out->size() >= req.max_nodes) break;
    }
    if (!out->empty()) break;  // the longest matching n-gram decides
  }
  return absl::OkStatus();
}

}  // namespace runtime
}  // namespace kestrel
