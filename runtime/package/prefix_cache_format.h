// runtime/package/prefix_cache_format.h: the bytes of a saved engine prefix cache (kprefix.fbs in
// the container of container.h, magic "KPFX"). Like the session state: the encoder lays out the
// file so the engine reads its KV blocks straight into place, then seals it; the decoder checks
// the header, the manifest (Verifier), the padding, the data checksum and every entry (parent
// before child, block_size tokens) before returning it.
#ifndef KESTREL_RUNTIME_PACKAGE_PREFIX_CACHE_FORMAT_H_
#define KESTREL_RUNTIME_PACKAGE_PREFIX_CACHE_FORMAT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace kestrel {
namespace runtime {

constexpr char kPrefixMagic[] = "KPFX";
constexpr uint16_t kPrefixFormatMajor = 1;
constexpr uint16_t kPrefixFormatMinor = 0;

struct PrefixCacheMeta {
  uint64_t model_fingerprint = 0;
  std::string model_architecture;
  uint32_t n_layers = 0, n_kv_heads = 0, head_dim = 0, kv_dtype = 0, block_size = 0;
  uint64_t row_bytes = 0;  // bytes of one position's K (or V) row
  struct Entry {
    int32_t parent = -1;  // index of an earlier entry, -1: the empty prefix
    std::vector<int32_t> tokens;
  };
  std::vector<Entry> entries;
  uint64_t data_offset = 0;  // filled by the encoder / decoder

  uint64_t block_bytes() const { return row_bytes * block_size; }
  // Offset of entry i's K (v false) or V rows of `layer`, from the start of the file.
  uint64_t Offset(size_t i, uint32_t layer, bool v) const {
    return data_offset + ((uint64_t{i} * n_layers + layer) * 2 + (v ? 1 : 0)) * block_bytes();
  }
};

class PrefixCacheEncoder {
 public:
  explicit PrefixCacheEncoder(PrefixCacheMeta meta);
  uint64_t total_size() const { return total_; }
  const PrefixCacheMeta& meta() const { return meta_; }
  // `out` holds total_size() bytes with every entry's K and V rows in place (meta().Offset).
  void Seal(uint8_t* out) const;

 private:
  std::string Manifest(uint64_t data_checksum) const;
  PrefixCacheMeta meta_;
  uint64_t total_ = 0;
};

// The file's meta; row_bytes from its own KV geometry (kv_dtype F32 or F16).
absl::StatusOr<PrefixCacheMeta> DecodePrefixCache(const uint8_t* data, uint64_t size);

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_PACKAGE_PREFIX_CACHE_FORMAT_H_
