// Prepared weights of the CPU plugin: Q4_0/Q8_0 matrices repacked into the kernels' group layout
// (kernels.h), everything else kept as a 64-byte aligned copy of the GGUF bytes.
//
// Thread-safety: immutable after construction.
#ifndef KESTREL_PLUGINS_CPU_PACKED_WEIGHT_H_
#define KESTREL_PLUGINS_CPU_PACKED_WEIGHT_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "kestrel/plugin_api.h"
#include "kernels.h"

namespace kestrel::plugins::cpu {

// 64-byte aligned host memory. Move-only. Buffers of at least kHugePageBytes start on a 2 MiB
// boundary and ask the kernel for transparent huge pages over their whole 2 MiB pages
// (madvise(MADV_HUGEPAGE), best effort; the tail stays on 4 KiB pages so no memory is wasted):
// decode streams every weight once per token, and on 4 KiB pages the TLB misses and the
// hardware prefetchers stopping at each page boundary cost 10-45 % of the read bandwidth
// (docs/perf/cpu.md, AMD EPYC Zen 5).
class AlignedBuffer {
 public:
  static constexpr uint64_t kHugePageBytes = uint64_t{2} << 20;
  AlignedBuffer() = default;
  explicit AlignedBuffer(uint64_t size);  // throws std::bad_alloc
  AlignedBuffer(AlignedBuffer&& o) noexcept
      : data_(o.data_), size_(o.size_), huge_(o.huge_), is_malloced_(o.is_malloced_) {
    o.data_ = nullptr;
    o.size_ = 0;
    o.huge_ = false;
    o.is_malloced_ = false;
  }
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer();
  void* data() const { return data_; }
  uint64_t size() const { return size_; }
  // True when the buffer is 2 MiB aligned and the huge-page advice was accepted.
  bool huge_pages() const { return huge_; }

 private:
  void Free();
  void* data_ = nullptr;
  uint64_t size_ = 0;
  bool huge_ = false;
  bool is_malloced_ = false;  // std::aligned_alloc (released with free), else operator new
};

// True when a weight of this desc is repacked (rank 2, Q4_0 or Q8_0, at least one row and column).
bool ShouldRepack(const kestrel_tensor_desc_t& desc);

struct PackedQ {
  AlignedBuffer qs;
  AlignedBuffer d;
  QWeightView view;  // points into qs / d
};

// Repacks a packed GGUF Q4_0/Q8_0 matrix [n, k] (ShouldRepack(desc)).
std::unique_ptr<PackedQ> RepackQ(const kestrel_tensor_desc_t& desc, const void* gguf);

// Writes rows [n0, n1) back in GGUF block layout (for ops that need the original bytes).
void UnpackQToGguf(const QWeightView& w, int64_t n0, int64_t n1, uint8_t* out);

}  // namespace kestrel::plugins::cpu

#endif  // KESTREL_PLUGINS_CPU_PACKED_WEIGHT_H_
