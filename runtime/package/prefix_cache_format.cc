#include "runtime/package/prefix_cache_format.h"

#include <cstring>

#include "absl/strings/str_format.h"
#include "hal/include/kestrel/plugin_api.h"
#include "runtime/package/checksum.h"
#include "runtime/package/container.h"
#include "runtime/package/kprefix_generated.h"

namespace kestrel {
namespace runtime {
namespace {

constexpr char kWhat[] = "prefix cache file";

absl::Status Bad(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrFormat("%s: %s", kWhat, what));
}

}  // namespace

PrefixCacheEncoder::PrefixCacheEncoder(PrefixCacheMeta meta) : meta_(std::move(meta)) {
  const uint64_t manifest = Manifest(0).size();
  meta_.data_offset = AlignUp(kContainerHeaderSize + manifest, 64);
  total_ = meta_.data_offset +
           uint64_t{meta_.entries.size()} * meta_.n_layers * 2 * meta_.block_bytes();
}

std::string PrefixCacheEncoder::Manifest(uint64_t data_checksum) const {
  flatbuffers::FlatBufferBuilder fbb(4096);
  fbb.ForceDefaults(true);
  std::vector<flatbuffers::Offset<kprefix::Entry>> entries;
  for (const PrefixCacheMeta::Entry& e : meta_.entries) {
    entries.push_back(kprefix::CreateEntry(fbb, e.parent, fbb.CreateVector(e.tokens)));
  }
  auto root = kprefix::CreatePrefixCache(
      fbb, kPrefixFormatMajor, kPrefixFormatMinor, fbb.CreateString("kestrel"),
      meta_.model_fingerprint, fbb.CreateString(meta_.model_architecture), meta_.n_layers,
      meta_.n_kv_heads, meta_.head_dim, meta_.kv_dtype, meta_.block_size,
      fbb.CreateVector(entries), meta_.data_offset, total_ - meta_.data_offset, data_checksum);
  kprefix::FinishPrefixCacheBuffer(fbb, root);
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
}

void PrefixCacheEncoder::Seal(uint8_t* out) const {
  const uint64_t checksum = Xxh64Of(out + meta_.data_offset, total_ - meta_.data_offset);
  const std::string manifest = Manifest(checksum);
  std::memset(out + kContainerHeaderSize, 0, meta_.data_offset - kContainerHeaderSize);
  std::memcpy(out + kContainerHeaderSize, manifest.data(), manifest.size());
  ContainerHeader h;
  std::memcpy(h.magic, kPrefixMagic, 4);
  h.major = kPrefixFormatMajor;
  h.minor = kPrefixFormatMinor;
  h.manifest_size = manifest.size();
  h.manifest_checksum = Xxh64Of(manifest.data(), manifest.size());
  h.total_size = total_;
  const std::string header = EncodeContainerHeader(h);
  std::memcpy(out, header.data(), header.size());
}

absl::StatusOr<PrefixCacheMeta> DecodePrefixCache(const uint8_t* data, uint64_t size) {
  absl::StatusOr<ContainerHeader> h =
      ReadContainerHeader(data, size, kPrefixMagic, kPrefixFormatMajor, kWhat);
  if (!h.ok()) return h.status();
  const uint8_t* manifest = data + h->manifest_offset;
  flatbuffers::Verifier verifier(manifest, static_cast<size_t>(h->manifest_size), 64, 10'000'000);
  if (!kprefix::PrefixCacheBufferHasIdentifier(manifest) || !kprefix::VerifyPrefixCacheBuffer(verifier)) {
    return absl::DataLossError(absl::StrFormat(
        "%s: the manifest is not a valid kprefix FlatBuffer (the FlatBuffers Verifier rejects it)",
        kWhat));
  }
  const kprefix::PrefixCache* p = kprefix::GetPrefixCache(manifest);
  const uint64_t manifest_end = h->manifest_offset + h->manifest_size;
  if (p->data_offset() < manifest_end || p->data_offset() > size ||
      p->data_size() != size - p->data_offset()) {
    return Bad(absl::StrFormat("data section [%u, +%u) does not end the %u-byte file",
                               p->data_offset(), p->data_size(), size));
  }
  for (uint64_t i = manifest_end; i < p->data_offset(); ++i) {
    if (data[i] != 0) {
      return absl::DataLossError(absl::StrFormat("%s: padding byte %u is not zero (damaged)", kWhat, i));
    }
  }
  if (Xxh64Of(data + p->data_offset(), p->data_size()) != p->data_checksum()) {
    return absl::DataLossError(
        absl::StrFormat("%s: data checksum mismatch (the KV blocks are damaged)", kWhat));
  }
  PrefixCacheMeta m;
  m.model_fingerprint = p->model_fingerprint();
  if (p->model_architecture()) m.model_architecture = p->model_architecture()->str();
  m.n_layers = p->n_layers();
  m.n_kv_heads = p->n_kv_heads();
  m.head_dim = p->head_dim();
  m.kv_dtype = p->kv_dtype();
  m.block_size = p->block_size();
  if (m.kv_dtype != KESTREL_DTYPE_F32 && m.kv_dtype != KESTREL_DTYPE_F16) {
    return Bad(absl::StrFormat("KV element type %u is neither F32 nor F16", m.kv_dtype));
  }
  if (m.n_kv_heads > 65536 || m.head_dim > 65536) {
    return Bad(absl::StrFormat("KV geometry %u heads x %u head dim is implausible", m.n_kv_heads,
                               m.head_dim));
  }
  m.row_bytes = uint64_t{m.n_kv_heads} * m.head_dim * (m.kv_dtype == KESTREL_DTYPE_F16 ? 2 : 4);
  m.data_offset = p->data_offset();
  const uint32_t n = p->entries() ? p->entries()->size() : 0;
  // Checked products: a hostile geometry must not wrap around into a plausible size.
  uint64_t need = 0;
  const bool overflow = m.block_size == 0 || m.block_size > 4096 ||
                        __builtin_mul_overflow(m.row_bytes, uint64_t{m.block_size}, &need) ||
                        __builtin_mul_overflow(need, uint64_t{m.n_layers} * 2, &need) ||
                        __builtin_mul_overflow(need, uint64_t{n}, &need);
  if (overflow || p->data_size() != need) {
    return Bad(absl::StrFormat("%u entries of %u layers x %u-token blocks x %u-byte rows do not "
                               "make the %u data bytes the file has",
                               n, m.n_layers, m.block_size, m.row_bytes, p->data_size()));
  }
  for (uint32_t i = 0; i < n; ++i) {
    const kprefix::Entry* e = p->entries()->Get(i);
    if (e->parent() < -1 || e->parent() >= static_cast<int32_t>(i)) {
      return Bad(absl::StrFormat("entry %u has parent %d (must be -1 or an earlier entry)", i,
                                 e->parent()));
    }
    if (e->tokens() == nullptr || e->tokens()->size() != m.block_size) {
      return Bad(absl::StrFormat("entry %u holds %u tokens, not one %u-token block", i,
                                 e->tokens() ? e->tokens()->size() : 0, m.block_size));
    }
    m.entries.push_back({e->parent(), std::vector<int32_t>(e->tokens()->begin(), e->tokens()->end())});
  }
  return m;
}

}  // namespace runtime
}  // namespace kestrel
