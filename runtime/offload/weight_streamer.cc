#include "runtime/offload/weight_streamer.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kestrel {
namespace runtime {
namespace offload {
namespace {

constexpr uint64_t kAlign = 256;  // matrices start aligned in a slot (any plugin's row loads)

uint64_t AlignUp(uint64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

uint64_t StreamStagingBytes(uint64_t largest_matrix, bool async, uint64_t n_slots,
                            uint64_t slot_bytes) {
  return FileReader::StagingBytes(largest_matrix) + (async ? n_slots * slot_bytes : 0);
}

absl::StatusOr<std::unique_ptr<WeightStreamer>> WeightStreamer::Create(
    std::vector<StreamedLayer> layers, const WeightStreamerOptions& options, hal::Device* device) {
  if (layers.empty()) return absl::InvalidArgumentError("weight streaming: no layer to stream");
  std::unique_ptr<WeightStreamer> s(new WeightStreamer());
  s->device_ = device;
  s->skip_copies_ = options.skip_copies;
  s->layers_ = std::move(layers);
  for (uint32_t l = 0; l < s->layers_.size(); ++l) {
    uint64_t at = 0;
    std::vector<uint64_t> offsets;
    for (uint32_t m = 0; m < s->layers_[l].size(); ++m) {
      const StreamedMatrix& x = s->layers_[l][m];
      if (x.host == nullptr || x.bytes == 0 || !s->where_.emplace(x.weight_id, std::make_pair(l, m)).second) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "weight streaming: weight %d of streamed layer %u has no host data or is streamed twice",
            x.weight_id, l));
      }
      offsets.push_back(at);
      at = AlignUp(at + x.bytes);
    }
    s->offsets_.push_back(std::move(offsets));
    s->layer_bytes_.push_back(at);
    s->slot_bytes_ = std::max(s->slot_bytes_, at);
  }
  const uint32_t n = static_cast<uint32_t>(s->layers_.size());
  s->distance_ = device->has_streams() ? std::min(options.prefetch_distance, n - 1) : 0;
  const uint64_t n_slots = uint64_t{s->distance_} + 1;
  uint64_t largest = 0;
  for (const StreamedLayer& l : s->layers_) {
    for (const StreamedMatrix& m : l) largest = std::max(largest, m.bytes);
  }
  const bool from_file = !options.file_path.empty();
  const uint64_t staging =
      from_file ? StreamStagingBytes(largest, device->has_streams(), n_slots, s->slot_bytes_) : 0;
  if (n_slots * s->slot_bytes_ + staging > options.budget_bytes) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "weight streaming: a ring of %u slots of %u bytes (the largest streamed layer, matrices "
        "%u-byte aligned) and a staging buffer of %u bytes need %u bytes, more than the budget "
        "of %u",
        n_slots, s->slot_bytes_, kAlign, staging, n_slots * s->slot_bytes_ + staging,
        options.budget_bytes));
  }
  if (from_file) {
    absl::StatusOr<std::unique_ptr<FileReader>> r =
        FileReader::Open(options.file_path, largest, options.allow_direct_io, "weight streaming");
    if (!r.ok()) return r.status();
    s->reader_ = std::move(*r);
    s->io_mode_ = s->reader_->mode();
    // Loading read the resident weights through the mapping, and the kernel's readahead around
    // those faults cached streamed pages too, in folios that may straddle a matrix's ends (a
    // range drop skips those): drop the whole file's clean, unmapped pages. The resident weights
    // are prepared copies by now; pages still mapped (weights imported in place) stay.
    s->reader_->Drop(0, 0);
  }
  if (device->has_streams()) {
    absl::StatusOr<hal::Stream> stream = device->CreateStream();
    if (!stream.ok()) return stream.status();
    s->copy_stream_ = std::move(*stream);
  }
  s->slots_.resize(n_slots);
  for (Slot& slot : s->slots_) {
    // A queued copy reads its source when it runs: each slot has host bytes of its own that the
    // file's matrices are read into and stay in until the copy is done.
    if (from_file && s->copy_stream_) slot.staged.reset(new uint8_t[s->slot_bytes_]);
    absl::StatusOr<hal::Buffer> b = device->Allocate(s->slot_bytes_);
    if (!b.ok()) {
      return absl::Status(b.status().code(), absl::StrCat("weight streaming: allocating a ring slot: ",
                                                          b.status().message()));
    }
    slot.buffer = std::move(*b);
  }
  return s;
}

WeightStreamer::~WeightStreamer() {
  // Slots may still be read by queued ops and written by queued copies.
  if (copy_stream_) device_->Synchronize(copy_stream_).IgnoreError();
  device_->Synchronize().IgnoreError();
}

absl::Status WeightStreamer::Issue(uint32_t layer) {
  Slot& slot = SlotOf(layer);
  slot.layer = static_cast<int32_t>(layer);
  if (skip_copies_ && slot.filled) return absl::OkStatus();
  slot.filled = true;
  const StreamedLayer& matrices = layers_[layer];
  if (copy_stream_) {
    // The copy may not overwrite the slot before the ops reading its previous layer are done.
    if (slot.free) {
      if (absl::Status s = device_->Wait(&copy_stream_, slot.free); !s.ok()) return s;
    }
    if (reader_) {
      if (absl::Status s = StageFromFile(layer, slot); !s.ok()) return s;
    }
    for (size_t m = 0; m < matrices.size(); ++m) {
      const void* from =
          reader_ ? static_cast<const void*>(slot.staged.get() + offsets_[layer][m]) : matrices[m].host;
      if (absl::Status s = device_->WriteAsync(copy_stream_, slot.buffer, offsets_[layer][m],
                                               from, matrices[m].bytes);
          !s.ok()) {
        return s;
      }
    }
    slot.staged_pending = reader_ != nullptr;
    absl::StatusOr<hal::Event> e = device_->Record(&copy_stream_);
    if (!e.ok()) return e.status();
    slot.copied = std::move(*e);
  } else if (absl::Status s = CopySync(layer, slot); !s.ok()) {
    return s;
  }
  for (const StreamedMatrix& m : matrices) stats_.bytes_copied += m.bytes;
  ++stats_.layers_copied;
  return absl::OkStatus();
}

absl::Status WeightStreamer::CopySync(uint32_t layer, Slot& slot) {
  const double t0 = Now();
  const StreamedLayer& matrices = layers_[layer];
  for (size_t m = 0; m < matrices.size(); ++m) {
    const void* from = matrices[m].host;
    if (reader_) {
      const double r0 = Now();
      absl::StatusOr<const uint8_t*> read = reader_->Read(matrices[m].file_offset, matrices[m].bytes);
      if (!read.ok()) return read.status();
      stats_.file_read_seconds += Now() - r0;
      stats_.file_bytes_read += matrices[m].bytes;
      from = *read;
    }
    if (absl::Status s = device_->Write(slot.buffer, offsets_[layer][m], from, matrices[m].bytes);
        !s.ok()) {
      return s;
    }
  }
  stats_.copy_wait_seconds += Now() - t0;
  return absl::OkStatus();
}

absl::Status WeightStreamer::StageFromFile(uint32_t layer, Slot& slot) {
  const double t0 = Now();
  if (slot.staged_pending) {
    // The copy queued from these bytes (n_slots layers ago) may not have run yet. There is no
    // host wait on one event, so wait for the copy stream: it holds only earlier copies.
    if (absl::Status s = device_->Synchronize(copy_stream_); !s.ok()) return s;
    for (Slot& x : slots_) x.staged_pending = false;
  }
  const StreamedLayer& matrices = layers_[layer];
  for (size_t m = 0; m < matrices.size(); ++m) {
    const double r0 = Now();
    absl::StatusOr<const uint8_t*> read = reader_->Read(matrices[m].file_offset, matrices[m].bytes);
    if (!read.ok()) return read.status();
    stats_.file_read_seconds += Now() - r0;
    stats_.file_bytes_read += matrices[m].bytes;
    std::memcpy(slot.staged.get() + offsets_[layer][m], *read, matrices[m].bytes);
  }
  stats_.copy_wait_seconds += Now() - t0;
  return absl::OkStatus();
}

absl::Status WeightStreamer::Release() {
  if (current_ < 0) return absl::OkStatus();
  Slot& slot = SlotOf(static_cast<uint32_t>(current_));
  current_ = -1;
  if (!copy_stream_) return absl::OkStatus();  // synchronous: the ops are done already
  absl::StatusOr<hal::Event> e = device_->Record(nullptr);
  if (!e.ok()) return e.status();
  slot.free = std::move(*e);
  return absl::OkStatus();
}

absl::Status WeightStreamer::Acquire(uint32_t layer) {
  if (absl::Status s = Release(); !s.ok()) return s;
  Slot& slot = SlotOf(layer);
  if (slot.layer != static_cast<int32_t>(layer)) {
    if (absl::Status s = Issue(layer); !s.ok()) return s;
  }
  if (copy_stream_ && slot.copied) {
    if (absl::Status s = device_->Wait(nullptr, slot.copied); !s.ok()) return s;
  }
  current_ = static_cast<int32_t>(layer);
  // Layers up to the prefetch distance ahead go to the other slots, all released by now.
  for (uint32_t j = layer + 1; j <= layer + distance_ && j < layers_.size(); ++j) {
    if (SlotOf(j).layer == static_cast<int32_t>(j)) continue;
    if (absl::Status s = Issue(j); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status WeightStreamer::BeginStep() {
  current_ = -1;
  if (!copy_stream_) return absl::OkStatus();  // synchronous: each layer just before its use
  // No slot is in use between steps: fill them all with the first layers.
  for (uint32_t j = 0; j < slots_.size() && j < layers_.size(); ++j) {
    if (SlotOf(j).layer == static_cast<int32_t>(j)) continue;
    if (absl::Status s = Issue(j); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<WeightStreamer::Binding> WeightStreamer::Bind(int weight_id) {
  auto it = where_.find(weight_id);
  if (it == where_.end()) {
    return absl::InternalError(absl::StrCat("weight streaming: weight ", weight_id, " is not streamed"));
  }
  const auto [layer, matrix] = it->second;
  if (current_ != static_cast<int32_t>(layer)) {
    if (absl::Status s = Acquire(layer); !s.ok()) return s;
  }
  Binding b;
  b.buffer = &SlotOf(layer).buffer;
  b.offset = offsets_[layer][matrix];
  return b;
}

absl::Status WeightStreamer::EndStep(bool step_failed) {
  absl::Status s = Release();
  if (step_failed && copy_stream_) {
    // Whatever was queued is abandoned; forget what the slots were meant to hold.
    device_->Synchronize(copy_stream_).IgnoreError();
    for (Slot& slot : slots_) slot.layer = -1;
    return s;
  }
  if (!s.ok()) return s;
  return BeginStep();  // the next step's first copies overlap the host's work between steps
}

absl::StatusOr<double> WeightStreamer::MeasureCopySeconds() {
  if (absl::Status s = device_->Synchronize(); !s.ok()) return s;
  const WeightStreamStats saved = stats_;
  const bool skip = skip_copies_;
  skip_copies_ = false;
  for (Slot& slot : slots_) slot.layer = -1;
  const double t0 = Now();
  absl::Status s;
  for (uint32_t l = 0; l < layers_.size() && s.ok(); ++l) s = Issue(l);
  if (s.ok() && copy_stream_) s = device_->Synchronize(copy_stream_);
  const double seconds = Now() - t0;
  skip_copies_ = skip;
  stats_ = saved;
  for (Slot& slot : slots_) slot.layer = -1;
  if (!s.ok()) return s;
  return seconds;
}

}  // namespace offload
}  // namespace runtime
}  // namespace kestrel
