// runtime/offload/kv_swap.h: host memory for the KV of preempted engine sequences (KV swap), and
// the cost model that decides per preemption whether swapping is cheaper than recomputing.
// KvSwapSpace is a byte budget (the memory plan's host_swap_bytes, or the engine's own option)
// with its own accounting: held bytes never exceed it, and a request that would is refused so
// the engine recomputes instead. SwapCostModel only compares rates the engine measures on its
// device; neither knows the engine, a plugin or a block table.
//
// Not thread-safe: the engine's stepper owns both.
#ifndef KESTREL_RUNTIME_OFFLOAD_KV_SWAP_H_
#define KESTREL_RUNTIME_OFFLOAD_KV_SWAP_H_

#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <vector>

namespace kestrel {
namespace runtime {
namespace offload {

class KvSwapSpace {
 public:
  explicit KvSwapSpace(uint64_t budget_bytes) : budget_(budget_bytes) {}

  // A host buffer of `bytes` for `key` (which must hold none), counted against the budget until
  // Release(key); null when it would exceed the budget or the host cannot allocate it.
  uint8_t* Allocate(uint64_t key, uint64_t bytes);
  // The buffer of `key` (null if none) and its size.
  uint8_t* Find(uint64_t key, uint64_t* bytes = nullptr);
  // Frees the buffer of `key` (no-op if none).
  void Release(uint64_t key);

  uint64_t budget_bytes() const { return budget_; }
  uint64_t held_bytes() const { return held_; }
  uint64_t peak_bytes() const { return peak_; }
  size_t n_entries() const { return entries_.size(); }

 private:
  uint64_t budget_ = 0, held_ = 0, peak_ = 0;
  std::unordered_map<uint64_t, std::vector<uint8_t>> entries_;
};

// Swap (copy out now, copy back at resume: 2 x bytes / copy bandwidth) against recompute (the
// sequence's tokens again at the prefill rate). Rates are exponential moving averages of what the
// engine measured; until a rate is measured the model prefers swapping, which measures it.
class SwapCostModel {
 public:
  void RecordCopy(uint64_t bytes, double ms);
  void RecordCompute(uint64_t tokens, double ms);
  // Estimated milliseconds of each way; < 0 while its rate is unmeasured.
  double SwapMs(uint64_t bytes) const;
  double RecomputeMs(uint64_t tokens) const;
  bool PreferSwap(uint64_t tokens, uint64_t bytes) const;

  double copy_bytes_per_ms() const { return copy_bytes_per_ms_; }
  double compute_tokens_per_ms() const { return compute_tokens_per_ms_; }

 private:
  double copy_bytes_per_ms_ = 0, compute_tokens_per_ms_ = 0;  // 0: not measured yet
};

}  // namespace offload
}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_OFFLOAD_KV_SWAP_H_
