#include "runtime/offload/kv_swap.h"

#include <new>
#include <stdexcept>

namespace kestrel {
namespace runtime {
namespace offload {
namespace {

// Weight of a new sample in the moving averages: recent enough to follow a device whose load
// changes, smooth enough that one slow copy does not flip the decision.
constexpr double kAlpha = 0.25;

void Blend(double* rate, double sample) {
  *rate = *rate == 0 ? sample : (1 - kAlpha) * *rate + kAlpha * sample;
}

}  // namespace

uint8_t* KvSwapSpace::Allocate(uint64_t key, uint64_t bytes) {
  if (bytes == 0 || entries_.count(key) != 0) return nullptr;
  if (bytes > budget_ || held_ > budget_ - bytes) return nullptr;
  std::vector<uint8_t> buffer;
  try {
    buffer.resize(bytes);
  } catch (const std::bad_alloc&) {
    return nullptr;  // the host is short of memory: the caller recomputes
  } catch (const std::length_error&) {
    return nullptr;
  }
  held_ += bytes;
  if (held_ > peak_) peak_ = held_;
  std::vector<uint8_t>& stored = entries_[key];
  stored = std::move(buffer);
  return stored.data();
}

uint8_t* KvSwapSpace::Find(uint64_t key, uint64_t* bytes) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return nullptr;
  if (bytes != nullptr) *bytes = it->second.size();
  return it->second.data();
}

void KvSwapSpace::Release(uint64_t key) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return;
  held_ -= it->second.size();
  entries_.erase(it);
}

void SwapCostModel::RecordCopy(uint64_t bytes, double ms) {
  if (bytes == 0 || ms <= 0) return;
  Blend(&copy_bytes_per_ms_, static_cast<double>(bytes) / ms);
}

void SwapCostModel::RecordCompute(uint64_t tokens, double ms) {
  if (tokens == 0 || ms <= 0) return;
  Blend(&compute_tokens_per_ms_, static_cast<double>(tokens) / ms);
}

double SwapCostModel::SwapMs(uint64_t bytes) const {
  return copy_bytes_per_ms_ > 0 ? 2.0 * static_cast<double>(bytes) / copy_bytes_per_ms_ : -1;
}

double SwapCostModel::RecomputeMs(uint64_t tokens) const {
  return compute_tokens_per_ms_ > 0 ? static_cast<double>(tokens) / compute_tokens_per_ms_ : -1;
}

bool SwapCostModel::PreferSwap(uint64_t tokens, uint64_t bytes) const {
  const double swap = SwapMs(bytes), recompute = RecomputeMs(tokens);
  if (swap < 0 || recompute < 0) return true;
  return swap < recompute;
}

}  // namespace offload
}  // namespace runtime
}  // namespace kestrel
