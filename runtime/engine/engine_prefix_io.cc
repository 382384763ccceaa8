// Engine::SavePrefixCache / LoadPrefixCache: the prefix cache to and from a .kprefix file, so a
// restarted engine starts with a warm prompt cache.
#include <cerrno>
#include <cstdio>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/arch/common/metadata.h"
#include "runtime/engine/engine.h"
#include "runtime/gguf/file_image.h"
#include "runtime/package/container.h"
#include "runtime/package/prefix_cache_format.h"

namespace kestrel {
namespace runtime {
namespace {

std::vector<int32_t> BlockSlots(int32_t block, uint32_t block_size) {
  std::vector<int32_t> slots(block_size);
  for (uint32_t i = 0; i < block_size; ++i) slots[i] = block * static_cast<int32_t>(block_size) + static_cast<int32_t>(i);
  return slots;
}

// The file holds group 0's blocks (every layer's rows at them); a sliding-window layer's rows live
// in its group's pool, which the format does not carry.
absl::Status WindowPoolsUnsupported() {
  return absl::FailedPreconditionError(
      "engine: this model's sliding-window layers keep their KV in window pools, which the "
      "persistent prefix cache does not hold: it cannot be saved or loaded for this engine (the "
      "in-memory prefix cache works)");
}

}  // namespace

absl::Status Engine::SavePrefixCache(const std::string& path) {
  std::lock_guard<std::mutex> step_lock(step_mu_);
  if (!cache_) {
    return absl::FailedPreconditionError("engine: the prefix cache is off, there is nothing to save");
  }
  if (!window_pools_.empty()) return WindowPoolsUnsupported();
  const ExecutionPlan& plan = executor_->plan();
  const std::vector<PrefixCache::Exported> entries = cache_->Export();
  PrefixCacheMeta meta;
  meta.model_fingerprint = model_->fingerprint();
  if (model_->architecture()) meta.model_architecture = std::string(model_->architecture()->name());
  meta.n_layers = plan.n_layers;
  meta.n_kv_heads = plan.n_kv_heads;
  meta.head_dim = plan.head_dim;
  meta.kv_dtype = plan.kv_dtype;
  meta.block_size = config_.block_size;
  meta.row_bytes = executor_->kv_row_bytes();
  std::map<uint64_t, int32_t> index;  // entry id -> position in the file
  for (const PrefixCache::Exported& e : entries) {
    auto parent = index.find(e.parent);
    meta.entries.push_back({parent == index.end() ? -1 : parent->second, e.tokens});
    index[e.id] = static_cast<int32_t>(meta.entries.size() - 1);
  }
  PrefixCacheEncoder encoder(std::move(meta));
  std::vector<uint8_t> bytes(encoder.total_size());
  for (size_t i = 0; i < entries.size(); ++i) {
    const std::vector<int32_t> slots = BlockSlots(entries[i].block, config_.block_size);
    for (uint32_t l = 0; l < plan.n_layers; ++l) {
      for (bool v : {false, true}) {
        KESTREL_RETURN_IF_ERROR(
            executor_->ReadKvRows(l, v, slots, bytes.data() + encoder.meta().Offset(i, l, v)));
      }
    }
  }
  encoder.Seal(bytes.data());
  return WriteFileAtomically(path, bytes);
}

absl::StatusOr<uint32_t> Engine::LoadPrefixCache(const std::string& path) {
  if (!window_pools_.empty()) return WindowPoolsUnsupported();  // fixed at Create: no lock
  const std::string prefix = absl::StrCat("prefix cache '", path, "': ");
  absl::StatusOr<std::shared_ptr<const FileImage>> image = FileImage::Open(path, true, prefix);
  if (!image.ok()) return image.status();
  absl::StatusOr<PrefixCacheMeta> m = DecodePrefixCache((*image)->data(), (*image)->size());
  if (!m.ok()) return absl::Status(m.status().code(), absl::StrCat(prefix, m.status().message()));
  std::lock_guard<std::mutex> step_lock(step_mu_);
  if (!cache_) return absl::FailedPreconditionError("engine: the prefix cache is off");
  const ExecutionPlan& plan = executor_->plan();
  if (m->model_fingerprint != model_->fingerprint()) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%ssaved with model fingerprint %016x (%s), this engine's model is %016x", prefix,
        m->model_fingerprint, m->model_architecture, model_->fingerprint()));
  }
  if (m->n_layers != plan.n_layers || m->n_kv_heads != plan.n_kv_heads ||
      m->head_dim != plan.head_dim || m->kv_dtype != plan.kv_dtype ||
      m->block_size != config_.block_size) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%sKV blocks of %u layers x %u heads x %u dims, %u tokens, dtype %u; this engine's are "
        "%u x %u x %u, %u tokens, dtype %u (create it with the same kv_type and block size)",
        prefix, m->n_layers, m->n_kv_heads, m->head_dim, m->block_size, m->kv_dtype, plan.n_layers,
        plan.n_kv_heads, plan.head_dim, config_.block_size, plan.kv_dtype));
  }
  const int32_t vocab = static_cast<int32_t>(model_->config().n_vocab);
  std::vector<uint64_t> ids(m->entries.size(), 0);  // 0: not loaded
  uint32_t loaded = 0;
  for (size_t i = 0; i < m->entries.size(); ++i) {
    const PrefixCacheMeta::Entry& e = m->entries[i];
    const uint64_t parent = e.parent < 0 ? PrefixCache::kRoot : ids[e.parent];
    if (e.parent >= 0 && parent == 0) continue;  // its prefix was not loaded
    bool valid = true;
    for (int32_t t : e.tokens) valid &= t >= 0 && t < vocab;
    if (!valid || pool_->n_free() == 0) continue;
    absl::StatusOr<int32_t> block = pool_->Allocate();
    if (!block.ok()) break;
    const std::vector<int32_t> slots = BlockSlots(*block, config_.block_size);
    absl::Status s;
    for (uint32_t l = 0; l < plan.n_layers && s.ok(); ++l) {
      for (bool v : {false, true}) {
        if (s.ok()) s = executor_->WriteKvRows(l, v, slots, (*image)->data() + m->Offset(i, l, v));
      }
    }
    if (!s.ok()) {
      pool_->Release(*block);
      return absl::Status(s.code(), absl::StrCat(prefix, "writing KV block ", i, ": ", s.message()));
    }
    int32_t shared = -1;
    ids[i] = cache_->Insert(parent, e.tokens, *block, &shared);
    if (shared >= 0) pool_->Release(shared);  // already cached: keep the engine's own copy
    pool_->Release(*block);                   // the cache holds it now (or nobody does)
    if (shared < 0) ++loaded;
  }
  return loaded;
}

}  // namespace runtime
}  // namespace kestrel
