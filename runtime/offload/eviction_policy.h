// runtime/offload/eviction_policy.h: which expert-cache slot to give up on a miss. LRU evicts the
// slot used longest ago; LFU evicts the expert used least often since the cache was created
// (counts kept for every expert, resident or not, so a once-hot expert that was evicted comes back
// with its history), ties broken by recency. Pure bookkeeping over slot indices.
#ifndef KESTREL_RUNTIME_OFFLOAD_EVICTION_POLICY_H_
#define KESTREL_RUNTIME_OFFLOAD_EVICTION_POLICY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace kestrel {
namespace runtime {
namespace offload {

enum class EvictionKind { kLru = 0, kLfu = 1 };

// "lru" / "lfu"; INVALID_ARGUMENT naming the text otherwise.
absl::StatusOr<EvictionKind> ParseEvictionKind(const std::string& name);
const char* EvictionKindName(EvictionKind kind);

class EvictionPolicy {
 public:
  // `n_keys`: experts in the model (layers x experts); `n_slots`: cache slots.
  EvictionPolicy(EvictionKind kind, uint32_t n_keys, uint32_t n_slots);

  // Slot `slot` now holds `key` and was just used (hit or fill).
  void Use(uint32_t slot, uint32_t key);
  // The slot to refill: an empty one if any, else the policy's victim. Never `pinned` (the slot
  // the current step already relies on), unless it is the only slot.
  uint32_t Victim(uint32_t pinned) const;
  // Every slot, the one to give up first leading: empty slots, then the policy's order.
  std::vector<uint32_t> EvictionOrder() const;
  // The cache keeps only slots `kept` (old indices, in their new order: new slot i was kept[i]).
  void Compact(const std::vector<uint32_t>& kept);

 private:
  // Whether slot s goes before slot t (empty slots first).
  bool EvictsBefore(uint32_t s, uint32_t t) const;

  EvictionKind kind_;
  uint64_t clock_ = 0;
  std::vector<uint64_t> key_uses_;   // per key
  std::vector<uint64_t> last_use_;   // per slot, 0: empty
  std::vector<uint32_t> slot_key_;   // per slot
};

}  // namespace offload
}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_OFFLOAD_EVICTION_POLICY_H_
