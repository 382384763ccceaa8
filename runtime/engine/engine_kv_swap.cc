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

absl::Status Engine::MoveKv(const BlockTable& table0, const WindowTables* windows, uint32_t from,
                            uint32_t to, uint32_t n_rows, uint8_t* host, bool to_host) {
  const ExecutionPlan& plan = executor_->plan();
  const size_t n_groups = 1 + (windows ? windows->size() : 0);
  // Per KV group: its table's first position in [from, to) that it holds, and those slots.
  std::vector<uint32_t> first(n_groups);
  std::vector<std::vector<int32_t>> slots(n_groups);
  for (size_t g = 0; g < n_groups; ++g) {
    const BlockTable& table = g == 0 ? table0 : windows->table(g - 1);
    first[g] = std::min(to, std::max(from, table.first_held_position()));
    for (uint32_t p = first[g]; p < to; ++p) slots[g].push_back(table.Slot(p));
  }
  const uint64_t row = executor_->kv_row_bytes();
  for (uint32_t l = 0; l < plan.n_layers; ++l) {
    const uint32_t g = plan.layer_kv_group.empty() ? 0 : plan.layer_kv_group[l];
    if (g >= n_groups) return absl::InternalError("engine KV swap: a layer's KV group has no table");
    for (uint32_t v = 0; v < 2; ++v) {
      uint8_t* rows = host + ((uint64_t{l} * 2 + v) * n_rows + first[g]) * row;
      absl::Status s = to_host ? executor_->ReadKvRows(l, v != 0, slots[g], rows)
                               : executor_->WriteKvRows(l, v != 0, slots[g], rows);
      if (!s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

bool Engine::SwapOut(const BlockTable& table, const WindowTables* windows, SwappedKv* out) {
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
  if (!MoveKv(table, windows, 0, n, n, host, /*to_host=*/true).ok()) {
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

void Engine::SwapIn(BlockTable& table, WindowTables* windows, uint32_t reused, SwappedKv* swapped) {
  const uint32_t n = swapped->tokens;
  uint8_t* host = swap_ != nullptr ? swap_->Find(swapped->key) : nullptr;
  if (host != nullptr && reused < n && table.n_tokens() == reused && table.capacity() >= n) {
    const auto t0 = Clock::now();
    // Window groups hold what decoding up to n would have left them (a window + one step; the
    // swap-out held at least that), and take those rows back. They start with the prefix
    // cache's window blocks up to `reused` (none without a hit).
    bool ok = windows == nullptr || windows->GrowTo(n, max_step_).ok();
    ok = ok && MoveKv(table, windows, reused, n, n, host, /*to_host=*/false).ok();
    if (!ok && windows != nullptr) windows->Truncate(0);  // recompute from the start instead
    if (ok) {
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
