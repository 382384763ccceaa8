#include "packed_weight.h"

#include <algorithm>
#include <cstring>
#include <new>

namespace kestrel::plugins::cpu {
namespace {
constexpr size_t kAlign = 64;
constexpr size_t kQ8Bytes = 34;
constexpr size_t kQ4Bytes = 18;
}  // namespace

AlignedBuffer::AlignedBuffer(uint64_t size) : size_(size) {
  data_ = ::operator new(static_cast<size_t>(std::max<uint64_t>(size, 1)), std::align_val_t(kAlign));
}

AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& o) noexcept {
  if (this != &o) {
    if (data_ != nullptr) ::operator delete(data_, std::align_val_t(kAlign));
    data_ = o.data_;
    size_ = o.size_;
    o.data_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

AlignedBuffer::~AlignedBuffer() {
  if (data_ != nullptr) ::operator delete(data_, std::align_val_t(kAlign));
}

bool ShouldRepack(const kestrel_tensor_desc_t& desc) {
  return desc.rank == 2 && desc.dims[0] > 0 && desc.dims[1] > 0 &&
         (desc.dtype == KESTREL_DTYPE_Q4_0 || desc.dtype == KESTREL_DTYPE_Q8_0);
}

std::unique_ptr<PackedQ> RepackQ(const kestrel_tensor_desc_t& desc, const void* gguf) {
  auto p = std::make_unique<PackedQ>();
  QWeightView& v = p->view;
  v.dtype = desc.dtype;
  v.n = desc.dims[0];
  v.k = desc.dims[1];
  v.n_groups = GroupsFor(v.k);
  const bool q8 = desc.dtype == KESTREL_DTYPE_Q8_0;
  v.group_bytes = q8 ? 128 : 64;
  v.offset = q8 ? 128 : 8;
  const int64_t row_qs = v.n_groups * v.group_bytes;
  const int64_t row_d = v.n_groups * kGroupBlocks;
  p->qs = AlignedBuffer(static_cast<uint64_t>(v.n * row_qs));
  p->d = AlignedBuffer(static_cast<uint64_t>(v.n * row_d) * sizeof(uint16_t));
  uint8_t* qs = static_cast<uint8_t*>(p->qs.data());
  uint16_t* d = static_cast<uint16_t*>(p->d.data());
  const int64_t nb = v.k / kBlock;
  const size_t block_bytes = q8 ? kQ8Bytes : kQ4Bytes;
  const uint8_t* src = static_cast<const uint8_t*>(gguf);
  for (int64_t j = 0; j < v.n; ++j) {
    uint8_t* rq = qs + j * row_qs;
    uint16_t* rd = d + j * row_d;
    // Padding blocks: zero scale and the "zero" quant (offset), so they contribute exactly 0.
    std::memset(rq, q8 ? 0x80 : 0x88, static_cast<size_t>(row_qs));
    std::memset(rd, 0, static_cast<size_t>(row_d) * sizeof(uint16_t));
    const uint8_t* row = src + static_cast<uint64_t>(j) * nb * block_bytes;
    for (int64_t blk = 0; blk < nb; ++blk) {
      const uint8_t* b = row + blk * block_bytes;
      const int64_t g = blk / kGroupBlocks, i = blk % kGroupBlocks;
      std::memcpy(rd + blk, b, sizeof(uint16_t));
      if (q8) {
        uint8_t* gq = rq + g * 128;
        for (int e = 0; e < 32; ++e) {
          gq[(e < 16 ? 0 : 64) + i * 16 + (e & 15)] = static_cast<uint8_t>(b[2 + e] ^ 0x80u);
        }
      } else {
        std::memcpy(rq + g * 64 + i * 16, b + 2, 16);
      }
    }
  }
  v.qs = qs;
  v.d = d;
  return p;
}

void UnpackQToGguf(const QWeightView& w, int64_t n0, int64_t n1, uint8_t* out) {
  const bool q8 = w.dtype == KESTREL_DTYPE_Q8_0;
  const size_t block_bytes = q8 ? kQ8Bytes : kQ4Bytes;
  const int64_t nb = w.k / kBlock;
  for (int64_t j = n0; j < n1; ++j) {
    const uint8_t* rq = w.qs + j * w.n_groups * w.group_bytes;
    const uint16_t* rd = w.d + j * w.n_groups * kGroupBlocks;
    uint8_t* row = out + static_cast<uint64_t>(j - n0) * nb * block_bytes;
    for (int64_t blk = 0; blk < nb; ++blk) {
      uint8_t* b = row + blk * block_bytes;
      const int64_t g = blk / kGroupBlocks, i = blk % kGroupBlocks;
      std::memcpy(b, rd + blk, sizeof(uint16_t));
      if (q8) {
        const uint8_t* gq = rq + g * 128;
        for (int e = 0; e < 32; ++e) {
          b[2 + e] = static_cast<uint8_t>(gq[(e < 16 ? 0 : 64) + i * 16 + (e & 15)] ^ 0x80u);
        }
      } else {
        std::memcpy(b + 2, rq + g * 64 + i * 16, 16);
      }
    }
  }
}

}  // namespace kestrel::plugins::cpu
