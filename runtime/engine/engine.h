// runtime/engine/: the serving engine — many requests over one model and one shared paged KV
// pool. It owns the scheduler (continuous batching, chunked prefill with decodes first, priorities,
// preemption by KV swap to host memory or by recompute, whichever the measured cost model says is
// cheaper; runtime/offload/kv_swap.h holds the swap space and the model), the KV accounting of
// every sequence (each a runtime::Sequence whose BlockTable shares blocks copy-on-write through
// the pool; a sliding-window model's window layers in pools of their own, through each
// sequence's WindowTables), the prefix cache, and the engine thread. It drives the sequence core
// (runtime/sequence/: stop policy, step builder) that a Session drives alone, runs the model and
// moves KV only through one Executor (one Run per step over all scheduled sequences; KV rows
// through its HAL buffers) and never talks to plugins itself. It may not change the session or the
// plan.
//
// Thread-safety: every public member may be called from any thread. One step runs at a time
// (step_mu_); the request table, queue and statistics are guarded by mu_, which is never held
// while a streaming callback runs, so callbacks may submit, cancel and read results.
#ifndef KESTREL_RUNTIME_ENGINE_ENGINE_H_
#define KESTREL_RUNTIME_ENGINE_ENGINE_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "hal/include/kestrel/plugin_api.h"
#include "runtime/engine/prefix_cache.h"
#include "runtime/kv_cache/block_pool.h"
#include "runtime/kv_cache/window_tables.h"
#include "runtime/model/model.h"
#include "runtime/offload/kv_swap.h"
#include "runtime/plan/executor.h"
#include "runtime/sampler/sampler.h"
#include "runtime/sequence/sequence.h"
#include "runtime/sequence/step_builder.h"
#include "runtime/session/session.h"
#include "runtime/speculative/speculator.h"
#include "runtime/speculative/throughput_gate.h"

namespace kestrel {
namespace runtime {

// What a preemption does with the victim's KV (when the engine has swap space).
enum class KvSwapPolicy {
  kAuto = 0,    // swap when the cost model (measured copy and prefill rates) says it is cheaper
  kAlways = 1,  // swap whenever the swap space holds the victim
  kNever = 2,   // always recompute
};

struct EngineConfig {
  uint64_t kv_cache_bytes = 0;  // 0: max_sequences full contexts
  // Tokens per KV block. 2: the waste (unfilled slots of each sequence's last block) stays near
  // 1 slot per sequence at no measured throughput cost (docs/perf/engine.md, docs/ENGINE.md).
  uint32_t block_size = 2;
  uint32_t max_batch_tokens = 512;
  uint32_t max_sequences = 16;
  bool prefix_cache = true;
  uint32_t context_length = 0;  // 0: the model's trained context
  uint32_t n_threads = 0;
  uint32_t kv_dtype = KESTREL_DTYPE_F32;  // KV cache element type: F32 or F16
  // Host memory for the KV of preempted sequences. 0: the model's memory plan's host_swap_bytes
  // (none when it was loaded without a memory budget: preemption recomputes).
  uint64_t kv_swap_bytes = 0;
  KvSwapPolicy kv_swap_policy = KvSwapPolicy::kAuto;
  // Sliding-window layers keep only their window's KV, in pools of their own (docs/ENGINE.md,
  // "Sliding-window KV"), when that is smaller than the full context. The prefix cache then
  // keeps their blocks too while their pools have room, and reuses a prefix only as far as the
  // window layers' rows before its end are still held (so a hit is exact). The persistent
  // prefix cache (Save/LoadPrefixCache) needs window_kv = false. false: every layer in the one
  // pool, the window applied in attention only (as without windows).
  bool window_kv = true;
};

struct EngineRequest {
  std::vector<int32_t> prompt;  // token ids, used as given
  uint32_t max_new_tokens = 128;
  SamplerConfig sampler;        // sample i uses seed + i
  std::vector<std::string> stop_strings;
  int32_t priority = 0;
  uint32_t n = 1;
  // (request id, sample, token, text made final by it) -> keep going?
  std::function<bool(uint64_t, uint32_t, int32_t, absl::string_view)> on_token;
  // Speculative decoding of every sample (off by default): its decode steps carry a draft tree,
  // verified inside the same varlen step as the other sequences.
  SpecConfig spec;
  // Kept alive as long as the request (the C boundary holds the draft model's handle here).
  std::shared_ptr<void> keep_alive;
  // (request id, sample, log-probabilities of its token): once per generated token, before
  // on_token (see GenerateRequest::on_logprobs).
  std::function<void(uint64_t, uint32_t, const TokenLogprobs&)> on_logprobs;
  uint32_t n_probs = 0;
  // Constrained output of every sample (null: none), as GenerateRequest::grammar. Speculative
  // decoding (`spec`) is off for a constrained request.
  std::shared_ptr<const grammar::Grammar> grammar;
};

enum class RequestState { kWaiting = 0, kRunning = 1, kFinished = 2, kFailed = 3, kCancelled = 4 };

struct SampleOutput {
  std::vector<int32_t> tokens;  // generated ids, EOS excluded
  std::string text;             // text delivered to on_token
  StopReason stop_reason = StopReason::kNone;
  bool done = false;
};

struct RequestOutput {
  RequestState state = RequestState::kWaiting;
  absl::Status status;  // failure or cancellation
  uint32_t n_prompt = 0;
  uint32_t n_cached_prompt_tokens = 0;
  uint32_t n_preemptions = 0;
  double queue_ms = 0, ttft_ms = 0, total_ms = 0;
  std::vector<SampleOutput> samples;
  SpecStats spec;  // speculative decoding, summed over the samples
};

struct EngineStats {
  uint32_t n_running = 0, n_waiting = 0;
  uint64_t n_finished = 0;
  uint32_t kv_blocks_total = 0, kv_blocks_used = 0, kv_blocks_free = 0, kv_blocks_cached = 0;
  uint32_t kv_block_size = 0;
  uint64_t prefix_cache_lookups = 0, prefix_cache_hits = 0;
  uint64_t prefill_tokens_computed = 0, prefill_tokens_reused = 0, decode_tokens = 0;
  uint64_t generated_tokens = 0, steps = 0, preemptions = 0;
  double busy_ms = 0;
  double kv_waste_fraction = 0;
  // KV swap: preemptions that copied the victim's KV to host memory, resumptions that copied it
  // back, preemptions that recomputed because the swap space was full, bytes each way, the time
  // spent copying, and the swap space's own accounting (held now, most ever held, budget).
  uint64_t kv_swap_outs = 0, kv_swap_ins = 0, kv_swap_fallbacks = 0;
  uint64_t kv_swap_out_bytes = 0, kv_swap_in_bytes = 0;
  double kv_swap_ms = 0;
  uint64_t kv_swap_held_bytes = 0, kv_swap_peak_bytes = 0, kv_swap_budget_bytes = 0;
  // Sliding-window KV groups (all zero without them): their pools' blocks together, those in
  // use now (by sequences or the prefix cache), the most ever in use, and the tokens one block
  // holds (kv_block_size); of the used ones, those only the prefix cache holds (released first
  // when a sequence needs the room); the pools' bytes, every window layer's K and V.
  uint32_t kv_window_groups = 0;
  uint32_t kv_window_blocks_total = 0, kv_window_blocks_used = 0, kv_window_blocks_peak = 0;
  uint32_t kv_window_blocks_cached = 0;
  uint64_t kv_window_bytes = 0;
  uint32_t kv_window_step_tokens = 0;  // max_step(): most tokens a step brings per sequence
};

class Engine {
 public:
  // `fallback` runs ops the model's device does not support (may be null).
  static absl::StatusOr<std::unique_ptr<Engine>> Create(const Model* model,
                                                        hal::Device* fallback,
                                                        const EngineConfig& config);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Validates and queues a request. Returns its id (> 0).
  absl::StatusOr<uint64_t> Submit(EngineRequest request);
  // One scheduling step on the calling thread. *n_active: requests waiting or running after it.
  absl::Status Step(uint32_t* n_active);
  absl::Status Start();
  void Stop();
  // id 0: until idle. timeout_ms < 0: forever.
  absl::Status Wait(uint64_t id, int64_t timeout_ms);
  absl::Status Cancel(uint64_t id);
  absl::Status Release(uint64_t id);
  // A copy of the request's output so far.
  absl::StatusOr<RequestOutput> Result(uint64_t id) const;
  EngineStats Stats() const;

  // Persistent prompt cache (engine_prefix_io.cc; format runtime/package/prefix_cache_format.h):
  // writes every cached full block (tokens and KV rows) to `path` (<path>.tmp, renamed), and
  // loads such a file into free blocks of this engine's cache (same model fingerprint, KV
  // geometry, element type and block size; entries whose parent was not loaded, or that no free
  // block is left for, are skipped). Returns the blocks loaded. FAILED_PRECONDITION without a
  // prefix cache; a damaged or foreign file is refused with a message naming it, the cache as it
  // was. Both wait for the current step.
  absl::Status SavePrefixCache(const std::string& path);
  absl::StatusOr<uint32_t> LoadPrefixCache(const std::string& path);

  uint32_t n_blocks() const { return n_blocks_; }
  uint32_t block_size() const { return config_.block_size; }
  uint32_t context_length() const { return context_length_; }
  // Sliding-window KV groups with pools of their own (0: every layer in the one pool), and the
  // most tokens one step may bring per sequence (0: no cap).
  uint32_t n_window_groups() const { return static_cast<uint32_t>(window_pools_.size()); }
  uint32_t max_step() const { return max_step_; }

 private:
  struct Request;
  struct SeqState;

  Engine() = default;
  bool OnStepThread() const;
  // The step proper; step_mu_ held.
  absl::Status StepLocked(uint32_t* n_active);
  void TakeSubmissions();
  void ApplyCancels();
  uint32_t AvailableBlocks() const;
  // Frees pool blocks (evicting cached prefixes) until `n` are free; false if it cannot.
  bool EnsureFree(uint32_t n);
  void ReleaseBlocks(SeqState& seq);
  void Preempt(SeqState* seq);
  // KV swap (engine_kv_swap.cc). A preempted sequence's KV in host swap space: the space's key
  // and the tokens it holds (positions [0, tokens) of every layer, K and V); 0 tokens: none.
  struct SwappedKv {
    uint64_t key = 0;
    uint32_t tokens = 0;
  };
  // Copies the table's computed KV to host swap space; false (nothing held) when swapping is
  // off, judged dearer than recompute, out of room, or the copy failed.
  bool SwapOut(const BlockTable& table, const WindowTables* windows, SwappedKv* out);
  // At readmission: writes the swapped rows past the `reused` prefix-cache tokens into the
  // table's reserved blocks and counts them computed (a failed copy leaves them to recompute);
  // frees the space either way.
  void SwapIn(BlockTable& table, WindowTables* windows, uint32_t reused, SwappedKv* swapped);
  void DropSwap(SwappedKv* swapped);
  // Rows [from, to) of every layer, K then V, between a sequence's slots (each layer's KV
  // group's table: `table` for group 0, `windows` (may be null) for the others; a sliding-window
  // layer's rows before its table's first held position are skipped) and `host` laid out as
  // [layer][K, V][n_rows rows].
  absl::Status MoveKv(const BlockTable& table, const WindowTables* windows, uint32_t from,
                      uint32_t to, uint32_t n_rows, uint8_t* host, bool to_host);
  uint64_t KvBytes(uint32_t tokens) const;
  bool Admit(SeqState* seq);
  // This step's tokens for a sequence still prefilling: its pending ones, at most `budget` and
  // the window groups' step cap.
  uint32_t StepChunk(const Sequence& seq, uint32_t budget) const;
  // New, empty window tables over the engine's window pools (null without window groups).
  std::unique_ptr<WindowTables> MakeWindowTables() const;
  void CacheFullBlocks(SeqState& seq);
  // Releases the prefix cache's window blocks (least recently used first) until window pool g
  // has need[g] free blocks or the cache holds none of it: then the pool's sizing alone
  // guarantees the sequences' room, as without a cache.
  void ReserveWindowBlocks(const std::vector<uint32_t>& need);
  // Where the sequence's tokens and text go: the request's output and its callback.
  TokenSink SinkFor(SeqState& seq);
  // Where its log-probabilities go: the request's on_logprobs with its id and the sample.
  LogprobsRequest LogprobsFor(const SeqState& seq);
  // Samples the next token of `seq` from `logits`; false when the sample ended.
  bool SampleNext(SeqState& seq, const float* logits);
  void FinishSequence(SeqState& seq, StopReason reason);
  void FailSequence(SeqState& seq, const absl::Status& status);
  void RetireSequence(SeqState* seq);
  void Deliver(SeqState& seq, int32_t token, absl::string_view text);
  // Speculative decode: the draft tree of a running sequence for this step (room: most draft
  // tokens it may add), and after the step the verification, KV compaction and emission.
  void ProposeTree(SeqState& seq, uint32_t room);
  // A speculator for one sample (null when off; a failure to build one turns speculation off for
  // it: Submit already validated the configuration).
  std::unique_ptr<Speculator> MakeSpeculator(const EngineRequest& req);
  // Applies `req`'s grammar (if any) to a sequence that just began (stepping thread).
  void Constrain(Sequence& seq, const EngineRequest& req);
  // `hidden`: the final hidden state of the sequence's first token in the step (null: unread).
  void FinishSpeculativeStep(SeqState& seq, const float* rows, const float* hidden, double step_ms);
  void PublishStats();
  void ThreadMain();
  bool IdleLocked() const;  // mu_ held

  const Model* model_ = nullptr;
  hal::Device* fallback_ = nullptr;
  EngineConfig config_;
  uint32_t context_length_ = 0;
  uint32_t n_blocks_ = 0;
  uint32_t max_step_ = 0;  // tokens per sequence and step at most (0: no cap)
  uint64_t window_bytes_ = 0;  // the window pools' KV bytes

  // Stepping state: only the thread holding step_mu_ touches these.
  std::mutex step_mu_;
  std::atomic<std::thread::id> step_thread_{};
  std::unique_ptr<BlockPool> pool_;
  // One pool per sliding-window KV group (ExecutionPlan::kv_groups 1..), shared by the
  // sequences' WindowTables: each sequence holds at most about window + one step of blocks.
  std::vector<std::unique_ptr<BlockPool>> window_pools_;
  std::vector<uint32_t> window_of_group_;
  std::shared_ptr<const grammar::TokenVocab> grammar_vocab_;  // built at the first constrained request
  std::unique_ptr<PrefixCache> cache_;
  std::unique_ptr<Executor> executor_;
  std::vector<std::unique_ptr<SeqState>> running_;  // hold KV blocks
  std::vector<std::unique_ptr<SeqState>> waiting_;  // admitted in rank order
  StepBuilder step_;
  std::vector<float> logits_;
  std::vector<float> hidden_;
  ThroughputGate gate_;  // speculation on/off for the batch
  EngineStats work_stats_;  // counters updated by the stepper
  std::unique_ptr<offload::KvSwapSpace> swap_;  // null: preemption always recomputes
  offload::SwapCostModel swap_cost_;
  uint64_t next_swap_key_ = 1;

  // Shared state.
  mutable std::mutex mu_;
  std::condition_variable done_cv_;   // a request finished / a step ended
  std::condition_variable work_cv_;   // work arrived (engine thread)
  std::map<uint64_t, std::shared_ptr<Request>> requests_;
  std::vector<std::shared_ptr<Request>> submitted_;  // not yet seen by the stepper
  std::vector<uint64_t> cancels_;
  uint64_t next_id_ = 1;
  uint64_t next_arrival_ = 0;
  uint32_t n_unfinished_ = 0;  // requests waiting or running
  EngineStats published_;
  std::thread thread_;
  bool thread_running_ = false;
  bool stop_thread_ = false;
};

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_ENGINE_ENGINE_H_
