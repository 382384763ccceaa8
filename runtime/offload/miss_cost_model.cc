#include "runtime/offload/miss_cost_model.h"

namespace kestrel {
namespace runtime {
namespace offload {

namespace {
// Weight of the newest sample: recent enough to follow a machine's load, smooth enough that one
// slow step does not flip every decision.
constexpr double kAlpha = 0.25;
}  // namespace

void MissCostModel::Average(double sample, bool first, double* into) {
  *into = first ? sample : (1 - kAlpha) * *into + kAlpha * sample;
}

bool MissCostModel::RunOnHost(uint64_t bytes, uint32_t tokens) const {
  switch (policy_) {
    case MissPolicy::kFetch:
      return false;
    case MissPolicy::kHost:
      return true;
    case MissPolicy::kAuto:
      break;
  }
  if (!seen_fetch_) return false;
  if (!seen_host_) return true;
  const double b = static_cast<double>(bytes);
  return b * host_prep_spb_ + tokens * host_spt_ < b * fetch_spb_;
}

void MissCostModel::ObserveFetch(uint64_t bytes, double seconds) {
  if (bytes == 0) return;
  Average(seconds / static_cast<double>(bytes), !seen_fetch_, &fetch_spb_);
  seen_fetch_ = true;
}

void MissCostModel::ObserveHost(uint64_t bytes, double prepare_seconds, uint32_t tokens,
                                double run_seconds) {
  if (bytes == 0 || tokens == 0) return;
  const bool first = !seen_host_;
  Average(prepare_seconds / static_cast<double>(bytes), first, &host_prep_spb_);
  Average(run_seconds / tokens, first, &host_spt_);
  seen_host_ = true;
}

}  // namespace offload
}  // namespace runtime
}  // namespace kestrel
