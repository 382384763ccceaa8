// runtime/offload/weight_streamer.h: weight streaming for one model on its compute device. The
// matrices of the layers the memory plan streams stay in host memory (the mapped file); before a
// streamed layer's first op they are copied into one slot of a ring of device buffers, and ops
// take them as MATMUL buffer arguments (the plugin ABI allows a buffer wherever a weight goes).
// On a device with streams and events the copies are queued on a stream of their own,
// `prefetch_distance` streamed layers ahead: the op stream waits for a layer's copy event, and a
// copy into a slot waits for the event recorded after the last op that read its previous layer,
// so the next layers' copies overlap the current layer's compute. A synchronous device copies
// each layer just before its use. The ring (slots x slot bytes) is the only device memory it
// allocates, and Create refuses a budget that cannot hold it (with the staging buffer below).
//
// Read from the file: on a synchronous device (cpu, ref: the ring is host memory) with
// `file_path` set, a streamed matrix is read from the model file into the FileReader's staging
// buffer with direct I/O (O_DIRECT; where the filesystem refuses it, pread followed by
// POSIX_FADV_DONTNEED, reported in io_mode()) and written from there into its slot: the mapped
// file's pages of streamed layers are never touched, so the page cache holds no second copy of
// what a host budget leaves in the file. Devices with streams copy from the mapping (a queued
// copy needs its source until it runs).
//
// Thread-safety: callers hold mutex() from BeginStep to EndStep (sessions of one model share the
// ring, so their steps take turns).
#ifndef KESTREL_RUNTIME_OFFLOAD_WEIGHT_STREAMER_H_
#define KESTREL_RUNTIME_OFFLOAD_WEIGHT_STREAMER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/status/statusor.h"
#include "hal/src/device.h"
#include "runtime/offload/file_reader.h"

namespace kestrel {
namespace runtime {
namespace offload {

struct StreamedMatrix {
  int weight_id = -1;
  const void* host = nullptr;  // stays valid and unchanged while the streamer lives
  uint64_t bytes = 0;
  uint64_t file_offset = 0;  // where the bytes lie in WeightStreamerOptions::file_path
};
// The matrices of one streamed layer, in the order its ops use them.
using StreamedLayer = std::vector<StreamedMatrix>;

struct WeightStreamerOptions {
  uint32_t prefetch_distance = 1;  // streamed layers copied ahead (async devices; else 0)
  uint64_t budget_bytes = 0;       // the ring must fit
  // Benchmarks only: fill each slot once, then issue no copies (the slots keep the layer they got
  // first), so that a step's time without copies is measured with the same buffer arguments and
  // finite weights. Outputs are then meaningless.
  bool skip_copies = false;
  // The model file the matrices' file_offset refer to: streamed matrices are read from it (empty:
  // copied from `host`), on a synchronous device through the reader's staging buffer, on a device
  // with streams into host bytes of each ring slot that its queued copy reads.
  // allow_direct_io false: pread + FADV_DONTNEED (tests).
  std::string file_path;
  bool allow_direct_io = true;
};

struct WeightStreamStats {
  uint64_t bytes_copied = 0;      // host -> device bytes of streamed layers
  uint64_t layers_copied = 0;
  double copy_wait_seconds = 0;   // host time blocked in synchronous copies (0 when queued)
  uint64_t file_bytes_read = 0;   // of bytes_copied, read from the file (FileReader)
  double file_read_seconds = 0;   // in those reads (also in copy_wait_seconds)
};

// Host bytes reading streamed matrices from the file takes: the reader's staging buffer of the
// largest matrix, plus, on a device with streams (copies queued), one slot's bytes per ring slot.
uint64_t StreamStagingBytes(uint64_t largest_matrix, bool async, uint64_t n_slots,
                            uint64_t slot_bytes);

class WeightStreamer {
 public:
  // `layers` in execution order. The ring has prefetch_distance + 1 slots (capped at the number
  // of layers; 1 on a synchronous device) of the largest layer's bytes (matrices 256-aligned).
  static absl::StatusOr<std::unique_ptr<WeightStreamer>> Create(
      std::vector<StreamedLayer> layers, const WeightStreamerOptions& options,
      hal::Device* device);
  ~WeightStreamer();

  bool Streams(int weight_id) const { return where_.count(weight_id) != 0; }

  // A step's ops are about to be queued: the first layers' copies are queued (or already are).
  absl::Status BeginStep();
  // The device buffer and offset holding streamed weight `weight_id` for the op about to be
  // queued. Moving on to another layer releases the current one's slot (an event after the ops
  // queued so far), makes the op stream wait for the new layer's copy and queues the copies of
  // the layers after it, up to the prefetch distance.
  struct Binding {
    const hal::Buffer* buffer = nullptr;
    uint64_t offset = 0;
  };
  absl::StatusOr<Binding> Bind(int weight_id);
  // The step's ops are all queued: releases the current slot and queues the next step's first
  // copies. After a failed step, call it too (it then waits for the copy stream).
  absl::Status EndStep(bool step_failed);

  std::mutex& mutex() { return mu_; }
  hal::Device* device() const { return device_; }
  bool async() const { return copy_stream_ ? true : false; }
  uint32_t n_layers() const { return static_cast<uint32_t>(layers_.size()); }
  uint32_t n_slots() const { return static_cast<uint32_t>(slots_.size()); }
  uint32_t prefetch_distance() const { return distance_; }
  uint64_t slot_bytes() const { return slot_bytes_; }
  uint64_t ring_bytes() const { return slot_bytes_ * slots_.size(); }
  uint64_t layer_bytes(uint32_t i) const { return layer_bytes_[i]; }
  // The host bytes of reads from the file (0 when copying from memory): StreamStagingBytes.
  uint64_t staging_bytes() const {
    return reader_ ? reader_->staging_bytes() + (copy_stream_ ? slots_.size() * slot_bytes_ : 0)
                   : 0;
  }
  // FileReader::mode() when reading from the file, else "memory (mapped file)".
  const std::string& io_mode() const { return io_mode_; }
  const WeightStreamStats& stats() const { return stats_; }
  void ResetStats() { stats_ = WeightStreamStats{}; }

  // Benchmarks: copies every streamed layer once through the copy path (queued and waited for),
  // returning the seconds it took (the step's copy time without any compute).
  absl::StatusOr<double> MeasureCopySeconds();

 private:
  struct Slot {
    hal::Buffer buffer;
    int32_t layer = -1;  // the streamed layer it holds or is being filled with
    bool filled = false;  // ever copied into (skip_copies)
    hal::Event copied;   // after its copy (async)
    hal::Event free;     // after the last op that read its layer (async)
    // Reading from the file on a device with streams: the layer's bytes the queued copy reads,
    // and whether a copy from them may still be queued.
    std::unique_ptr<uint8_t[]> staged;
    bool staged_pending = false;
  };
  WeightStreamer() = default;
  Slot& SlotOf(uint32_t layer) { return slots_[layer % slots_.size()]; }
  absl::Status Issue(uint32_t layer);
  absl::Status Acquire(uint32_t layer);
  absl::Status Release();
  absl::Status CopySync(uint32_t layer, Slot& slot);
  // Reads `layer`'s matrices from the file into the slot's host bytes (async devices).
  absl::Status StageFromFile(uint32_t layer, Slot& slot);

  std::mutex mu_;
  hal::Device* device_ = nullptr;
  hal::Stream copy_stream_;
  std::unique_ptr<FileReader> reader_;
  std::string io_mode_ = "memory (mapped file)";
  std::vector<StreamedLayer> layers_;
  std::vector<std::vector<uint64_t>> offsets_;  // per layer, per matrix
  std::vector<uint64_t> layer_bytes_;
  std::map<int, std::pair<uint32_t, uint32_t>> where_;  // weight id -> (layer, matrix)
  std::vector<Slot> slots_;
  uint64_t slot_bytes_ = 0;
  uint32_t distance_ = 0;
  int32_t current_ = -1;  // the layer the ops queued last read, -1: none this step
  bool skip_copies_ = false;
  WeightStreamStats stats_;
};

}  // namespace offload
}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_OFFLOAD_WEIGHT_STREAMER_H_
