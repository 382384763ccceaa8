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

// 64-byte aligned host memory. Move-only.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(uint64_t size);  // throws std::bad_alloc
  AlignedBuffer(AlignedBuffer&& o) noexcept : data_(o.data_), size_(o.size_) {
    o.data_ = nullptr;
    o.size_ = 0;
  }
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer();
  void* data() const { return data_; }
  uint64_t size() const { return size_; }

 private:
  void* data_ = nullptr;
  uint64_t size_ = 0;
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
