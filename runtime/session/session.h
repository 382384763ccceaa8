// runtime/session/: one sequence's generation state — its KV block table, token history, last
// logits and sampler — and the generate loop (prefill, decode, sampling, stop strings, streaming
// with hold-back, cancellation). It owns no device memory directly (the executor does) and never
// talks to plugins except through the executor.
//
// Thread-safety: single-user, except Cancel(), which any thread may call at any time.
#ifndef KESTREL_RUNTIME_SESSION_SESSION_H_
#define KESTREL_RUNTIME_SESSION_SESSION_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "hal/include/kestrel/plugin_api.h"
#include "runtime/kv_cache/block_pool.h"
#include "runtime/kv_cache/block_table.h"
#include "runtime/kv_cache/window_tables.h"
#include "runtime/model/model.h"
#include "runtime/plan/executor.h"
#include "runtime/sampler/sampler.h"

namespace kestrel {
namespace runtime {

struct SessionConfig {
  uint32_t context_length = 0;  // 0: the model's trained context
  uint32_t block_size = 16;
  SamplerConfig sampler;
  uint32_t n_threads = 0;
  uint32_t kv_dtype = KESTREL_DTYPE_F32;  // KV cache element type: F32 or F16
};

enum class StopReason { kNone = 0, kEos = 1, kMaxTokens = 2, kStopString = 3, kCallback = 4,
                        kContextFull = 5, kCancelled = 6 };

// Token id of the final streaming call that only flushes held-back text (KESTREL_TOKEN_NONE).
constexpr int32_t kNoToken = -1;

struct GenerateRequest {
  std::vector<int32_t> prompt;  // token ids, used as given
  uint32_t max_new_tokens = 128;
  std::vector<std::string> stop_strings;
  // Streaming: (token, text made final by it) -> keep going?
  std::function<bool(int32_t, absl::string_view)> on_token;
  bool keep_context = false;
};

struct GenerateResult {
  uint32_t n_prompt = 0;
  uint32_t n_generated = 0;
  uint32_t n_decode_steps = 0;
  double prefill_ms = 0, decode_ms = 0;
  StopReason stop_reason = StopReason::kNone;
  std::vector<int32_t> tokens;  // generated ids (the end-of-generation token excluded)
  std::string text;             // the text delivered to on_token, stop string excluded
};

class Session {
 public:
  // `fallback` runs ops the model's device does not support (may be null).
  static absl::StatusOr<std::unique_ptr<Session>> Create(const Model* model,
                                                         hal::Device* fallback,
                                                         const SessionConfig& config);
  ~Session();

  // One forward step over `tokens` appended to the context; logits of the last position.
  absl::Status Decode(absl::Span<const int32_t> tokens);
  bool has_logits() const { return has_logits_; }
  const std::vector<float>& logits() const { return logits_; }
  uint32_t n_tokens() const { return table_->n_tokens(); }
  uint32_t context_length() const { return context_length_; }
  absl::Status Truncate(uint32_t n_tokens);
  absl::StatusOr<int32_t> Sample();

  // Runs a whole generation. A cancelled run returns OK with stop_reason kCancelled.
  absl::StatusOr<GenerateResult> Generate(const GenerateRequest& request);
  void Cancel() { cancel_.store(true, std::memory_order_relaxed); }

  const Executor& executor() const { return *executor_; }
  // KV blocks this session holds in each KV group of its plan (group 0: the full-context layers;
  // then one per sliding window whose KV is capped at the window).
  std::vector<uint32_t> kv_blocks_held() const;
  // Mixture of experts: restarts the per-expert routing counts (Executor::expert_counts).
  void ResetExpertStats() { executor_->ResetExpertCounts(); }

 private:
  Session() = default;
  absl::Status CheckTokens(absl::Span<const int32_t> tokens) const;
  // One forward step over `tokens` (at most max_step_ of them when window groups are capped).
  absl::Status DecodeStep(absl::Span<const int32_t> tokens);
  // After a failed step: back to n_past tokens if the window groups still allow it, else empty.
  void RollBack(uint32_t n_past);

  const Model* model_ = nullptr;
  uint32_t context_length_ = 0;
  std::unique_ptr<BlockPool> pool_;
  std::unique_ptr<BlockTable> table_;
  // Sliding-window KV groups with their own pools (empty when every layer uses table_), and the
  // step size that keeps their pools sufficient (Decode splits longer inputs).
  std::unique_ptr<WindowTables> window_tables_;
  uint32_t max_step_ = 0;
  std::unique_ptr<Executor> executor_;
  std::unique_ptr<Sampler> sampler_;
  std::vector<float> logits_;
  bool has_logits_ = false;
  std::atomic<bool> cancel_{false};
  StepInputs step_;
};

const char* StopReasonName(StopReason reason);

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_SESSION_SESSION_H_
