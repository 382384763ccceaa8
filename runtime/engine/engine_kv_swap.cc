// Engine KV swap: a preempted sequence's KV copied to host swap space through the executor's HAL
// buffers (so it works on every plugin) and written back when it is readmitted, instead of being
// recomputed, when the cost model prefers it (runtime/offload/kv_swap.h).
#include <chrono>

#include "runtime/engine/engine.h"

namespace kestrel {
namespace runtime {
namespace {

using Clock = std::chrono::steady_clock;

double MsSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

}  // namespace

uint64_t Engine::KvBytes(uint32_t tokens) const {
  return uint64_t{tokens} * executor_->kv_row_bytes() * 2 * executor_->plan().n_layers;
}

absl::Status Engine::MoveKv(const BlockTable& table, uint32_t from, uint32_t to, uint32_t n_rows,
                            uint8_t* host, bool to_host) {
  std::vector<int32_t> slots;
  slots.reserve(to - from);
  for (uint32_t p = from; p < to; ++p) slots.push_back(table.Slot(p));
  const uint64_t row = executor_->kv_row_bytes();
  for (uint32_t l = 0; l < executor_->plan().n_layers; ++l) {
    for (uint32_t v = 0; v < 2; ++v) {
      uint8_t* rows = host + ((uint64_t{l} * 2 + v) * n_rows + from) * row;
      absl::Status s = to_host ? executor_->ReadKvRows(l, v != 0, slots, rows)
                               : executor_->WriteKvRows(l, v != 0, slots, rows);
      if (!s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

bool Engine::SwapOut(const BlockTable& table, SwappedKv* out) {
  const uint32_t n = table.n_tokens();
  if (swap_ == nullptr || n == 0) return false;
  const uint64_t bytes = KvBytes(n);
  if (config_.kv_swap_policy == KvSwapPolicy::kAuto && !swap_cost_.PreferSwap(n, bytes)) {
    return false;
  }
  const uint64_t key = next_swap_key_++;
  uint8_t* host = swap_->Allocate(key, bytes);
  if (host == nullptr) {
    ++work_stats_.kv_swap_fallbacks;
    return false;
  }
  const auto t0 = Clock::now();
  if (!MoveKv(table, 0, n, n, host, /*to_host=*/true).ok()) {
    swap_->Release(key);  // the device could not give the rows: recompute them instead
    return false;
  }
  const double ms = MsSince(t0);
  swap_cost_.RecordCopy(bytes, ms);
  work_stats_.kv_swap_ms += ms;
  work_stats_.kv_swap_out_bytes += bytes;
  ++work_stats_.kv_swap_outs;
  *out = {key, n};
  return true;
}

void Engine::SwapIn(BlockTable& table, uint32_t reused, SwappedKv* swapped) {
  const uint32_t n = swapped->tokens;
  uint8_t* host = swap_ != nullptr ? swap_->Find(swapped->key) : nullptr;
  if (host != nullptr && reused < n && table.n_tokens() == reused && table.capacity() >= n) {
    const auto t0 = Clock::now();
    if (MoveKv(table, reused, n, n, host, /*to_host=*/false).ok()) {
      const double ms = MsSince(t0);
      const uint64_t bytes = KvBytes(n - reused);
      swap_cost_.RecordCopy(bytes, ms);
      work_stats_.kv_swap_ms += ms;
      work_stats_.kv_swap_in_bytes += bytes;
      ++work_stats_.kv_swap_ins;
      (void)table.Append(n - reused);  // the blocks are reserved: counting cannot fail
    }
  }
  DropSwap(swapped);
}

void Engine::DropSwap(SwappedKv* swapped) {
  if (swapped->tokens == 0) return;
  if (swap_ != nullptr) swap_->Release(swapped->key);
  *swapped = {};
}

}  // namespace runtime
}  // namespace kestrel
