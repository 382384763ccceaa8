#include "runtime/offload/eviction_policy.h"

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

uint32_t EvictionPolicy::Victim(uint32_t pinned) const {
  uint32_t best = 0;
  bool found = false;
  for (uint32_t s = 0; s < last_use_.size(); ++s) {
    if (last_use_[s] == 0) return s;
    if (s == pinned && last_use_.size() > 1) continue;
    if (!found) {
      best = s;
      found = true;
      continue;
    }
    bool better;
    if (kind_ == EvictionKind::kLfu) {
      const uint64_t a = key_uses_[slot_key_[s]], b = key_uses_[slot_key_[best]];
      better = a < b || (a == b && last_use_[s] < last_use_[best]);
    } else {
      better = last_use_[s] < last_use_[best];
    }
    if (better) best = s;
  }
  return best;
}

}  // namespace offload
}  // namespace runtime
}  // namespace kestrel
