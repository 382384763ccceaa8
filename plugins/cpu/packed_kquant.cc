#include "packed_kquant.h"

#include <algorithm>
#include <cstring>

#include "kestrel/plugin_sdk/half.h"
#include "kestrel/plugin_sdk/reference_kernels.h"
#include "kestrel/plugin_sdk/quants.h"

namespace kestrel::plugins::cpu {
namespace {

using plugin_sdk::UnpackedBlock;

// Writes the planes of one super-block from its 256 quants in element order.
void PackPlanes(const KqFormat& f, const uint8_t* qe, uint8_t* planes) {
  uint8_t q[kSuperElems];  // in the kernels' order p
  for (int e = 0; e < kSuperElems; ++e) q[KqPos(e)] = qe[e];
  uint8_t* hi;
  if (f.bits >= 4) {
    for (int i = 0; i < 64; ++i) {
      planes[i] = static_cast<uint8_t>((q[i] & 15) | ((q[64 + i] & 15) << 4));
      planes[64 + i] = static_cast<uint8_t>((q[128 + i] & 15) | ((q[192 + i] & 15) << 4));
    }
    hi = planes + 128;
  } else {
    for (int i = 0; i < 64; ++i) {
      planes[i] = static_cast<uint8_t>((q[i] & 3) | ((q[64 + i] & 3) << 2) | ((q[128 + i] & 3) << 4) |
                                       ((q[192 + i] & 3) << 6));
    }
    hi = planes + 64;
  }
  if (f.bits == 3 || f.bits == 5) {
    const int shift = f.bits - 1;
    for (int b = 0; b < 32; ++b) {
      int v = 0;
      for (int k = 0; k < 8; ++k) v |= ((q[8 * b + k] >> shift) & 1) << k;
      hi[b] = static_cast<uint8_t>(v);
    }
  } else if (f.bits == 6) {
    for (int i = 0; i < 64; ++i) {
      hi[i] = static_cast<uint8_t>(((q[i] >> 4) & 3) | (((q[64 + i] >> 4) & 3) << 2) |
                                   (((q[128 + i] >> 4) & 3) << 4) | (((q[192 + i] >> 4) & 3) << 6));
    }
  }
}

uint16_t Half(float f) { return plugin_sdk::FloatToHalf(f); }

// The scale record of a K-quant super-block (kernels_kquants.h).
void PutKRecord(uint32_t dt, const uint8_t* gguf, const UnpackedBlock& u, uint8_t* rec) {
  uint16_t d = Half(u.d), dmin = Half(u.dmin);  // exact: both came from f16 fields
  switch (dt) {
    case KESTREL_DTYPE_Q4_K:
    case KESTREL_DTYPE_Q5_K:
      for (int s = 0; s < 8; ++s) {
        rec[4 + s] = static_cast<uint8_t>(u.sc[s]);
        rec[12 + s] = static_cast<uint8_t>(u.m[s]);
      }
      break;
    case KESTREL_DTYPE_Q2_K:
      std::memcpy(rec + 4, gguf, 16);
      break;
    default:  // Q3_K, Q6_K: signed scales; dmin is implied
      dmin = 0;
      for (int s = 0; s < 16; ++s) rec[4 + s] = static_cast<uint8_t>(static_cast<int8_t>(u.sc[s]));
      break;
  }
  std::memcpy(rec, &d, 2);
  std::memcpy(rec + 2, &dmin, 2);
}

void GetKRecord(uint32_t dt, const uint8_t* rec, UnpackedBlock* u) {
  uint16_t d, dmin;
  std::memcpy(&d, rec, 2);
  std::memcpy(&dmin, rec + 2, 2);
  u->d = plugin_sdk::HalfToFloat(d);
  u->dmin = plugin_sdk::HalfToFloat(dmin);
  switch (dt) {
    case KESTREL_DTYPE_Q4_K:
    case KESTREL_DTYPE_Q5_K:
      u->sub = 32;
      for (int s = 0; s < 8; ++s) {
        u->sc[s] = rec[4 + s];
        u->m[s] = rec[12 + s];
      }
      break;
    case KESTREL_DTYPE_Q2_K:
      u->sub = 16;
      for (int s = 0; s < 16; ++s) {
        u->sc[s] = rec[4 + s] & 15;
        u->m[s] = rec[4 + s] >> 4;
      }
      break;
    default:
      u->sub = 16;
      for (int s = 0; s < 16; ++s) u->sc[s] = static_cast<int8_t>(rec[4 + s]);
      break;
  }
}

// Offsets of a 32-block's f16 d and m (-1: none) in the GGUF block.
int MinOffset32(uint32_t dt) { return dt == KESTREL_DTYPE_Q5_0 ? -1 : 2; }

// One row: GGUF blocks -> quant planes `qs` and scale records `sc` (zeroed by the caller).
void RepackRow(const KWeightView& v, const uint8_t* row, uint8_t* qs, uint8_t* sc) {
  const KqFormat& f = v.fmt;
  const uint32_t dt = f.dtype;
  const int64_t block = plugin_sdk::DtypeBlockElements(dt);
  const size_t block_bytes = plugin_sdk::DtypeBlockBytes(dt);
  const int64_t n_blocks = v.k / block, b_per_sb = kSuperElems / block;
  UnpackedBlock u;
  uint8_t qe[kSuperElems];  // one super-block's quants in element order
  for (int64_t sb = 0; sb < v.n_sb; ++sb) {
    std::memset(qe, 0, sizeof qe);  // padding blocks: zero quants, zero scale record
    uint8_t* rec = sc + sb * f.s_bytes;
    for (int64_t i = 0; i < b_per_sb && sb * b_per_sb + i < n_blocks; ++i) {
      const uint8_t* gb = row + (sb * b_per_sb + i) * block_bytes;
      plugin_sdk::UnpackBlock(dt, gb, &u);
      std::memcpy(qe + i * block, u.q, static_cast<size_t>(block));
      if (block == kSuperElems) {
        PutKRecord(dt, gb, u, rec);
      } else {  // f16 d (and m) of block i of the super-block, copied bit for bit
        std::memcpy(rec + 2 * i, gb, 2);
        if (MinOffset32(dt) >= 0) std::memcpy(rec + 16 + 2 * i, gb + MinOffset32(dt), 2);
      }
    }
    if (v.tail != 0 && sb + 1 == v.n_sb) {  // compact partial super-block (kernels_kquants.h)
      uint8_t full[kSuperElems];
      PackPlanes(f, qe, full);
      uint8_t* t = qs + sb * f.q_bytes;
      std::memcpy(t, full, static_cast<size_t>(8 * v.tail));
      std::memcpy(t + 8 * v.tail, full + 64, static_cast<size_t>(8 * v.tail));
      if (f.bits == 5) std::memcpy(t + 16 * v.tail, full + 128, 32);
    } else {
      PackPlanes(f, qe, qs + sb * f.q_bytes);
    }
  }
}

}  // namespace

KqFormat KqFormatOf(uint32_t dtype) {
  KqFormat f;
  f.dtype = dtype;
  switch (dtype) {
    case KESTREL_DTYPE_Q4_1: f.bits = 4; f.s_bytes = 32; break;
    case KESTREL_DTYPE_Q5_0: f.bits = 5; f.s_bytes = 16; break;
    case KESTREL_DTYPE_Q5_1: f.bits = 5; f.s_bytes = 32; break;
    case KESTREL_DTYPE_Q2_K: f.bits = 2; f.s_bytes = 20; break;
    case KESTREL_DTYPE_Q3_K: f.bits = 3; f.s_bytes = 20; break;
    case KESTREL_DTYPE_Q4_K: f.bits = 4; f.s_bytes = 20; break;
    case KESTREL_DTYPE_Q5_K: f.bits = 5; f.s_bytes = 20; break;
    case KESTREL_DTYPE_Q6_K: f.bits = 6; f.s_bytes = 20; break;
    default: return KqFormat{};
  }
  f.q_bytes = (f.bits >= 4 ? 128 : 64) + (f.bits == 3 || f.bits == 5 ? 32 : 0) +
              (f.bits == 6 ? 64 : 0);
  return f;
}

KWeightView KqViewFor(uint32_t dtype, int64_t n, int64_t k) {
  KWeightView v;
  v.fmt = KqFormatOf(dtype);
  v.n = n;
  v.k = k;
  v.n_sb = (k + kSuperElems - 1) / kSuperElems;
  v.tail = static_cast<int>((k % kSuperElems) / 32);  // K-quant rows are whole super-blocks
  v.q_row = v.tail == 0 ? v.n_sb * v.fmt.q_bytes
                        : (v.n_sb - 1) * v.fmt.q_bytes + KqTailQBytes(v.fmt, v.tail);
  return v;
}

bool ShouldRepackK(const kestrel_tensor_desc_t& desc) {
  return desc.rank == 2 && desc.dims[0] > 0 && desc.dims[1] > 0 &&
         KqFormatOf(desc.dtype).bits != 0;
}

std::unique_ptr<PackedK> RepackK(const kestrel_tensor_desc_t& desc, const void* gguf,
                                 ThreadPool* pool) {
  auto p = std::make_unique<PackedK>();
  KWeightView& v = p->view;
  v = KqViewFor(desc.dtype, desc.dims[0], desc.dims[1]);
  const KqFormat& f = v.fmt;
  const int64_t row_q = v.q_row, row_s = v.n_sb * f.s_bytes;
  p->qs = AlignedBuffer(static_cast<uint64_t>(v.n * row_q));
  p->sc = AlignedBuffer(static_cast<uint64_t>(v.n * row_s));
  uint8_t* qs = static_cast<uint8_t*>(p->qs.data());
  uint8_t* sc = static_cast<uint8_t*>(p->sc.data());
  // Every quant byte is written below; scale records of padding blocks stay zero.
  std::memset(sc, 0, static_cast<size_t>(v.n * row_s));
  const uint64_t gguf_row = plugin_sdk::RowBytes(desc.dtype, v.k);
  // Rows are independent: 64-row tasks on the pool.
  constexpr int64_t kRowsPerTask = 64;
  auto repack_rows = [&](int64_t task, int) {
    for (int64_t j = task * kRowsPerTask; j < std::min(v.n, (task + 1) * kRowsPerTask); ++j) {
      RepackRow(v, static_cast<const uint8_t*>(gguf) + static_cast<uint64_t>(j) * gguf_row,
                qs + j * row_q, sc + j * row_s);
    }
  };
  const int64_t n_tasks = (v.n + kRowsPerTask - 1) / kRowsPerTask;
  if (pool != nullptr) {
    pool->Run(n_tasks, repack_rows);
  } else {
    for (int64_t t = 0; t < n_tasks; ++t) repack_rows(t, 0);
  }
  v.qs = qs;
  v.sc = sc;
  return p;
}

void DequantKRows(const KWeightView& w, int64_t n0, int64_t n1, float* out, int64_t ldo) {
  const KqFormat& f = w.fmt;
  const uint32_t dt = f.dtype;
  const bool k_quant = plugin_sdk::IsKQuant(dt);
  UnpackedBlock u;
  u.bits = f.bits;
  uint8_t tail_buf[kSuperElems];
  for (int64_t j = n0; j < n1; ++j) {
    float* o = out + (j - n0) * ldo;
    for (int64_t sb = 0; sb < w.n_sb; ++sb) {
      const uint8_t* planes = KqPlanes(w, j, sb, tail_buf);
      const uint8_t* rec = w.sc + (j * w.n_sb + sb) * f.s_bytes;
      const int64_t e0 = sb * kSuperElems;
      if (k_quant) {
        for (int e = 0; e < kSuperElems; ++e) u.q[e] = static_cast<uint8_t>(KqQuantAt(f, planes, KqPos(e)));
        GetKRecord(dt, rec, &u);
        plugin_sdk::DequantizeUnpacked(dt, u, o + e0);
        continue;
      }
      u.sub = 32;
      for (int64_t i = 0; i < 8 && e0 + 32 * i < w.k; ++i) {
        for (int e = 0; e < 32; ++e) {
          u.q[e] = static_cast<uint8_t>(KqQuantAt(f, planes, KqPos(static_cast<int>(32 * i + e))));
        }
        uint16_t h;
        std::memcpy(&h, rec + 2 * i, 2);
        u.a32 = plugin_sdk::HalfToFloat(h);
        if (MinOffset32(dt) >= 0) {
          std::memcpy(&h, rec + 16 + 2 * i, 2);
          u.b32 = plugin_sdk::HalfToFloat(h);
        }
        plugin_sdk::DequantizeUnpacked(dt, u, o + e0 + 32 * i);
      }
    }
  }
}

}  // namespace kestrel::plugins::cpu
