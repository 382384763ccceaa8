// runtime/offload/expert_prefetcher.h: reads experts the next MoE layer will probably route to
// while the current layer computes. The executor applies the next layer's router to the current
// hidden state (the residual stream changes little between layers, so its top-k is a good
// guess) and asks for those experts here; one worker thread reads their gate, up and down slices
// from the file (direct I/O where allowed, file_reader.h) into buffers of its own. When the step
// reaches that layer and misses an expert that was prefetched, the cache prepares it from these
// bytes instead of reading the file (expert_cache.h). A wrong guess costs only the read.
//
// Owns: its worker thread, its readers and their staging buffers (held_bytes(): the expert cache
// counts them against its budget). Thread-safety: every public member may be called from any
// thread; the expert cache calls them holding its own mutex.
#ifndef KESTREL_RUNTIME_OFFLOAD_EXPERT_PREFETCHER_H_
#define KESTREL_RUNTIME_OFFLOAD_EXPERT_PREFETCHER_H_

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/offload/file_reader.h"

namespace kestrel {
namespace runtime {
namespace offload {

struct ExpertLayerSource;

class ExpertPrefetcher {
 public:
  // `depth` buffers (experts in flight at once); `layers` must outlive the prefetcher.
  static absl::StatusOr<std::unique_ptr<ExpertPrefetcher>> Create(
      const std::string& path, const std::vector<ExpertLayerSource>* layers, uint32_t n_experts,
      uint32_t depth, bool allow_direct_io);
  ~ExpertPrefetcher();
  ExpertPrefetcher(const ExpertPrefetcher&) = delete;
  ExpertPrefetcher& operator=(const ExpertPrefetcher&) = delete;

  // Replaces every request not yet taken with these experts of `layer` (the first `depth()`;
  // already-requested ones keep their read). Waits only for a read in progress of a buffer it
  // reuses.
  void Request(uint32_t layer, const std::vector<uint32_t>& experts);

  struct Bytes {
    const uint8_t* gate = nullptr;
    const uint8_t* up = nullptr;
    const uint8_t* down = nullptr;
  };
  // Whether (layer, expert) was requested; if so waits for its read and fills `out` (valid until
  // Release). A failed read returns its error (the caller may read the file itself).
  absl::StatusOr<bool> Take(uint32_t layer, uint32_t expert, Bytes* out);
  // Frees the buffer Take handed out for (layer, expert).
  void Release(uint32_t layer, uint32_t expert);

  uint32_t depth() const { return static_cast<uint32_t>(buffers_.size()); }
  uint64_t held_bytes() const { return held_bytes_; }  // all buffers' staging
  // Counters since creation (the cache's ResetStats resets `issued`, `used` and `wait`).
  struct Counters {
    uint64_t issued = 0;         // experts whose read was started
    uint64_t used = 0;           // of them, taken by a step (a miss served without waiting for
                                 // a read of its own)
    uint64_t bytes_read = 0;     // by the worker
    double read_seconds = 0;     // the worker's time in reads (overlapped with compute)
    double wait_seconds = 0;     // time Take waited for a read still in progress
    uint64_t issued_since_load = 0, used_since_load = 0;  // not reset: the accuracy gate's
  };
  Counters counters() const;
  void ResetCounters();
  // Whether reading ahead pays: true while fewer than kGateWarmup guesses were made or at least
  // kGateAccuracy of them were used; otherwise one request in kGateProbeEvery still goes out, so
  // that a change of workload can turn it back on. Counts the calls it answers.
  bool Worthwhile();
  static constexpr uint64_t kGateWarmup = 128;
  static constexpr double kGateAccuracy = 0.4;
  static constexpr uint64_t kGateProbeEvery = 16;

 private:
  enum class State { kFree, kQueued, kReading, kReady, kFailed, kTaken };
  struct Buffer {
    int64_t key = -1;
    State state = State::kFree;
    absl::Status error;
    std::unique_ptr<FileReader> gate, up, down;
  };
  ExpertPrefetcher() = default;
  void Work();
  absl::Status ReadExpert(Buffer& b, uint32_t layer, uint32_t expert);
  Buffer* Find(int64_t key);

  const std::vector<ExpertLayerSource>* layers_ = nullptr;
  uint32_t n_experts_ = 0;
  uint64_t held_bytes_ = 0;
  std::vector<Buffer> buffers_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  Counters counters_;
  uint64_t gate_calls_ = 0;
  std::thread worker_;
};

}  // namespace offload
}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_OFFLOAD_EXPERT_PREFETCHER_H_
