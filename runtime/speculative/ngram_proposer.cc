#include "runtime/speculative/ngram_proposer.h"

#include <algorithm>
#include <cstring>

namespace kestrel {
namespace runtime {

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
      if (out->size() > before) ++branches;
      if (branches >= max_branches_ || out->size() >= req.max_nodes) break;
    }
    if (!out->empty()) break;  // the longest matching n-gram decides
  }
  return absl::OkStatus();
}

}  // namespace runtime
}  // namespace kestrel
