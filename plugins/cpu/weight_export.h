// The cpu plugin's exported prepared-weight bytes (plugin ABI 1.4 weight_export / weight_import):
// a 64-byte header (magic, version, dtype, dims, kind) followed by the weight exactly as the
// kernels read it, each part 64-byte aligned: the GGUF bytes for a weight kept as is, the
// repacked groups (qs, then the f16 scales) for a Q4_0/Q8_0 matrix, one such pair per slice for
// a stack of them (MoE experts), the KQ planes then the scale records for a Q4_1/Q5_x/Q2_K..Q6_K
// matrix (packed_kquant.h). Imported with BORROW, the views point into the caller's bytes
// (a mapped package): no copy and no repacking.
//
// Thread-safety: stateless functions.
#ifndef KESTREL_PLUGINS_CPU_WEIGHT_EXPORT_H_
#define KESTREL_PLUGINS_CPU_WEIGHT_EXPORT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kestrel/plugin_api.h"
#include "packed_kquant.h"
#include "packed_weight.h"

namespace kestrel::plugins::cpu {

// The layout id the cpu device reports (device_weight_layout): it names everything the exported
// bytes depend on (group size, per-dtype group bytes, byte order), and no ISA: every kernel
// level reads the same layout.
const char* ExportedLayoutId();

// The parts of one prepared weight: exactly one of raw (GGUF bytes), packed, kpacked, slices is
// used.
struct WeightParts {
  kestrel_tensor_desc_t desc{};
  const void* raw = nullptr;
  uint64_t raw_bytes = 0;
  const PackedQ* packed = nullptr;
  const PackedK* kpacked = nullptr;
  std::vector<const PackedQ*> slices;
};

uint64_t ExportedSize(const WeightParts& w);
// Writes ExportedSize(w) bytes to dst.
void ExportWeightBytes(const WeightParts& w, uint8_t* dst);

// What an import produced: for a raw weight `raw` (borrowed or copied into raw_copy), else the
// packed matrix or slices (views into `data` when borrowed, or owning copies).
struct ImportedWeight {
  const void* raw = nullptr;
  AlignedBuffer raw_copy;
  std::unique_ptr<PackedQ> packed;
  std::unique_ptr<PackedK> kpacked;
  std::vector<std::unique_ptr<PackedQ>> slices;
};

// "" on success, else why the bytes cannot be used for `desc` (header, kind, dims or sizes).
// `expect_packed` / `expect_kpacked` / `expect_slices` say how this plugin prepares `desc` (the
// bytes must agree).
std::string ImportWeightBytes(const kestrel_tensor_desc_t& desc, const uint8_t* data,
                              uint64_t size, bool borrow, bool expect_packed, bool expect_kpacked,
                              bool expect_slices,
                              uint64_t raw_bytes, ImportedWeight* out);

}  // namespace kestrel::plugins::cpu

#endif  // KESTREL_PLUGINS_CPU_WEIGHT_EXPORT_H_
