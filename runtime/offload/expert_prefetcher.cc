#include "runtime/offload/expert_prefetcher.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_format.h"
#include "runtime/offload/expert_cache.h"

namespace kestrel {
namespace runtime {
namespace offload {

absl::StatusOr<std::unique_ptr<ExpertPrefetcher>> ExpertPrefetcher::Create(
    const std::string& path, const std::vector<ExpertLayerSource>* layers, uint32_t n_experts,
    uint32_t depth, bool allow_direct_io) {
  if (depth == 0 || layers == nullptr || layers->empty() || n_experts == 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "expert prefetcher: depth %u over %u layers of %u experts: all must be positive", depth,
        layers == nullptr ? 0 : layers->size(), n_experts));
  }
  std::unique_ptr<ExpertPrefetcher> p(new ExpertPrefetcher());
  p->layers_ = layers;
  p->n_experts_ = n_experts;
  uint64_t max_gate = 0, max_up = 0, max_down = 0;
  for (const ExpertLayerSource& l : *layers) {
    max_gate = std::max(max_gate, l.gate.expert_bytes);
    max_up = std::max(max_up, l.up.expert_bytes);
    max_down = std::max(max_down, l.down.expert_bytes);
  }
  p->buffers_.resize(depth);
  for (Buffer& b : p->buffers_) {
    for (auto [reader, max] : {std::pair{&b.gate, max_gate}, std::pair{&b.up, max_up},
                               std::pair{&b.down, max_down}}) {
      absl::StatusOr<std::unique_ptr<FileReader>> r = FileReader::Open(path, max, allow_direct_io);
      if (!r.ok()) return r.status();
      p->held_bytes_ += (*r)->staging_bytes();
      *reader = std::move(*r);
    }
  }
  p->worker_ = std::thread([raw = p.get()] { raw->Work(); });
  return p;
}

ExpertPrefetcher::~ExpertPrefetcher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

ExpertPrefetcher::Buffer* ExpertPrefetcher::Find(int64_t key) {
  for (Buffer& b : buffers_) {
    if (b.key == key && b.state != State::kFree) return &b;
  }
  return nullptr;
}

void ExpertPrefetcher::Request(uint32_t layer, const std::vector<uint32_t>& experts) {
  std::unique_lock<std::mutex> lock(mu_);
  std::vector<int64_t> want;
  for (uint32_t e : experts) {
    if (layer >= layers_->size() || e >= n_experts_ || want.size() == buffers_.size()) break;
    want.push_back(int64_t{layer} * n_experts_ + e);
  }
  auto wanted = [&](int64_t key) { return std::find(want.begin(), want.end(), key) != want.end(); };
  // Keep the buffers that already hold (or read) a wanted expert; free the others.
  for (Buffer& b : buffers_) {
    if (b.state == State::kFree || b.state == State::kTaken) continue;
    if (wanted(b.key) && b.state != State::kFailed) continue;
    cv_.wait(lock, [&] { return b.state != State::kReading; });
    b.state = State::kFree;
    b.key = -1;
  }
  for (int64_t key : want) {
    if (Find(key) != nullptr) continue;
    for (Buffer& b : buffers_) {
      if (b.state != State::kFree) continue;
      b.key = key;
      b.state = State::kQueued;
      ++counters_.issued;
      ++counters_.issued_since_load;
      break;
    }
  }
  lock.unlock();
  cv_.notify_all();
}

absl::Status ExpertPrefetcher::ReadExpert(Buffer& b, uint32_t layer, uint32_t expert) {
  const ExpertLayerSource& src = (*layers_)[layer];
  for (auto [reader, s] : {std::pair{b.gate.get(), &src.gate}, std::pair{b.up.get(), &src.up},
                           std::pair{b.down.get(), &src.down}}) {
    absl::StatusOr<const uint8_t*> data =
        reader->Read(s->offset + uint64_t{expert} * s->expert_bytes, s->expert_bytes);
    if (!data.ok()) return data.status();
  }
  return absl::OkStatus();
}

void ExpertPrefetcher::Work() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    Buffer* next = nullptr;
    cv_.wait(lock, [&] {
      if (stop_) return true;
      for (Buffer& b : buffers_) {
        if (b.state == State::kQueued) {
          next = &b;
          return true;
        }
      }
      return false;
    });
    if (stop_) return;
    next->state = State::kReading;
    const int64_t key = next->key;
    lock.unlock();
    const auto t0 = std::chrono::steady_clock::now();
    absl::Status s = ReadExpert(*next, static_cast<uint32_t>(key / n_experts_),
                                static_cast<uint32_t>(key % n_experts_));
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    lock.lock();
    counters_.read_seconds += seconds;
    if (s.ok()) {
      const ExpertLayerSource& src = (*layers_)[static_cast<size_t>(key / n_experts_)];
      counters_.bytes_read += src.slot_bytes();
    }
    next->error = std::move(s);
    next->state = next->error.ok() ? State::kReady : State::kFailed;
    cv_.notify_all();
  }
}

absl::StatusOr<bool> ExpertPrefetcher::Take(uint32_t layer, uint32_t expert, Bytes* out) {
  std::unique_lock<std::mutex> lock(mu_);
  Buffer* b = Find(int64_t{layer} * n_experts_ + expert);
  if (b == nullptr || b->state == State::kTaken) return false;
  const auto t0 = std::chrono::steady_clock::now();
  cv_.wait(lock, [&] { return b->state == State::kReady || b->state == State::kFailed; });
  counters_.wait_seconds +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (b->state == State::kFailed) {
    absl::Status error = b->error;
    b->state = State::kFree;
    b->key = -1;
    return error;
  }
  b->state = State::kTaken;
  ++counters_.used;
  ++counters_.used_since_load;
  // The readers still hold the bytes of their last read: this expert's.
  out->gate = b->gate->last();
  out->up = b->up->last();
  out->down = b->down->last();
  return true;
}

void ExpertPrefetcher::Release(uint32_t layer, uint32_t expert) {
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t key = int64_t{layer} * n_experts_ + expert;
  for (Buffer& b : buffers_) {
    if (b.key == key && b.state == State::kTaken) {
      b.state = State::kFree;
      b.key = -1;
    }
  }
}

ExpertPrefetcher::Counters ExpertPrefetcher::counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counters_;
}

bool ExpertPrefetcher::Worthwhile() {
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t call = gate_calls_++;
  if (counters_.issued_since_load < kGateWarmup) return true;
  const double accuracy = static_cast<double>(counters_.used_since_load) /
                          static_cast<double>(counters_.issued_since_load);
  return accuracy >= kGateAccuracy || call % kGateProbeEvery == 0;
}

void ExpertPrefetcher::ResetCounters() {
  std::lock_guard<std::mutex> lock(mu_);
  counters_.issued = counters_.used = 0;
  counters_.wait_seconds = 0;
}

}  // namespace offload
}  // namespace runtime
}  // namespace kestrel
