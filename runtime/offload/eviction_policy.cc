#include "runtime/offload/eviction_policy.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace kestrel {
namespace runtime {
namespace offload {

absl::StatusOr<EvictionKind> ParseEvictionKind(const std::string& name) {
  if (name == "lru") return EvictionKind::kLru;
  if (name == "lfu") return EvictionKind::kLfu;
  return absl::InvalidArgumentError(
      absl::StrCat("expert cache policy '", name, "': expected lru or lfu"));
}

const char* EvictionKindName(EvictionKind kind) {
  return kind == EvictionKind::kLfu ? "lfu" : "lru";
}

EvictionPolicy::EvictionPolicy(EvictionKind kind, uint32_t n_keys, uint32_t n_slots)
    : kind_(kind), key_uses_(n_keys, 0), last_use_(n_slots, 0), slot_key_(n_slots, 0) {}

void EvictionPolicy::Use(uint32_t slot, uint32_t key) {
  last_use_[slot] = ++clock_;
  slot_key_[slot] = key;
  ++key_uses_[key];
}

bool EvictionPolicy::EvictsBefore(uint32_t s, uint32_t t) const {
  if ((last_use_[s] == 0) != (last_use_[t] == 0)) return last_use_[s] == 0;
  if (kind_ == EvictionKind::kLfu) {
    const uint64_t a = key_uses_[slot_key_[s]], b = key_uses_[slot_key_[t]];
    return a < b || (a == b && last_use_[s] < last_use_[t]);
  }
  return last_use_[s] < last_use_[t];
}

uint32_t EvictionPolicy::Victim(uint32_t pinned) const {
  uint32_t best = 0;
  bool found = false;
  for (uint32_t s = 0; s < last_use_.size(); ++s) {
    if (last_use_[s] == 0) return s;
    if (s == pinned && last_use_.size() > 1) continue;
    if (!found || EvictsBefore(s, best)) best = s;
    found = true;
  }
  return best;
}

std::vector<uint32_t> EvictionPolicy::EvictionOrder() const {
  std::vector<uint32_t> order(last_use_.size());
  for (uint32_t s = 0; s < order.size(); ++s) order[s] = s;
  std::stable_sort(order.begin(), order.end(),
                   [this](uint32_t a, uint32_t b) { return EvictsBefore(a, b); });
  return order;
}

void EvictionPolicy::Compact(const std::vector<uint32_t>& kept) {
  std::vector<uint64_t> last_use(kept.size());
  std::vector<uint32_t> slot_key(kept.size());
  for (size_t i = 0; i < kept.size(); ++i) {
    last_use[i] = last_use_[kept[i]];
    slot_key[i] = slot_key_[kept[i]];
  }
  last_use_ = std::move(last_use);
  slot_key_ = std::move(slot_key);
}

}  // namespace offload
}  // namespace runtime
}  // namespace kestrel
