// C boundary of kestrel/offload.h: the memory plan and the expert-cache statistics of a model.
#include "api/src/c_api_internal.h"
#include "kestrel/offload.h"

#include "absl/strings/str_cat.h"

using kestrel::api::Guard;
using kestrel::api::NullArgument;

namespace {

// The model's expert cache, or FAILED_PRECONDITION naming `fn` when nothing was offloaded.
absl::StatusOr<kestrel::runtime::offload::ExpertCache*> CacheOf(const kestrel_model_t* model,
                                                                const char* fn) {
  if (model == nullptr) return NullArgument(fn, "model");
  kestrel::runtime::offload::ExpertCache* c = model->model->expert_cache();
  if (c == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(fn, ": the model has no expert cache (no experts were offloaded)"));
  }
  return c;
}

}  // namespace

extern "C" {

KESTREL_API kestrel_status_t* kestrel_model_get_memory_plan(const kestrel_model_t* model,
                                                            kestrel_memory_plan_info_t* out_plan) {
  return Guard("kestrel_model_get_memory_plan", [&]() -> absl::Status {
    constexpr const char* fn = "kestrel_model_get_memory_plan";
    if (model == nullptr) return NullArgument(fn, "model");
    const kestrel::runtime::offload::MemoryPlan* p = model->model->memory_plan();
    if (p == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat(fn, ": the model was loaded without a memory_budget, so it has no plan"));
    }
    std::lock_guard<std::mutex> lock(model->model->plan_mutex());  // ReserveKv may re-plan
    kestrel_memory_plan_info_t info{};
    info.struct_size = sizeof(info);
    info.device = p->device.c_str();
    info.device_budget_bytes = p->device_budget;
    info.host_budget_bytes = p->host_budget;
    info.resident_bytes = p->resident_bytes;
    info.resident_tensors = static_cast<uint32_t>(p->resident.size());
    info.offloaded_tensors = static_cast<uint32_t>(p->offloaded.size());
    info.experts_offloaded = p->experts_offloaded;
    info.expert_bytes = p->expert_bytes;
    info.expert_slot_bytes = p->expert_slot_bytes;
    info.experts_total = p->experts_total;
    info.expert_slots = p->expert_slots;
    info.expert_cache_bytes = p->expert_cache_bytes();
    info.kv_bytes = p->kv_bytes;
    info.kv_tokens = p->kv_tokens;
    info.n_streamed_layers = static_cast<uint32_t>(p->streamed_layers.size());
    info.host_swap_bytes = p->host_swap_bytes;
    info.device_total_bytes = p->device_total_bytes();
    info.streamed_bytes = p->streamed_bytes;
    info.stream_ring_bytes = p->stream_ring_bytes();
    info.stream_slots = p->stream_slots;
    info.stream_prefetch_distance = p->prefetch_distance;
    info.host_resident_bytes = p->host_resident_bytes;
    info.host_resident_tensors = static_cast<uint32_t>(p->host_resident.size());
    info.stream_staging_bytes = p->stream_staging_bytes;
    return kestrel::api::WriteInfo(fn, "out_plan", info, out_plan,
                                   KESTREL_MEMORY_PLAN_INFO_MIN_SIZE);
  });
}

KESTREL_API kestrel_status_t* kestrel_model_get_offload_stats(const kestrel_model_t* model,
                                                              kestrel_offload_stats_t* out_stats) {
  return Guard("kestrel_model_get_offload_stats", [&]() -> absl::Status {
    constexpr const char* fn = "kestrel_model_get_offload_stats";
    absl::StatusOr<kestrel::runtime::offload::ExpertCache*> cache = CacheOf(model, fn);
    if (!cache.ok()) return cache.status();
    kestrel::runtime::offload::ExpertCache* c = *cache;
    std::lock_guard<std::mutex> lock(c->mutex());
    kestrel_offload_stats_t s{};
    s.struct_size = sizeof(s);
    for (const auto& l : c->layer_stats()) {
      s.expert_hits += l.hits;
      s.expert_misses += l.misses;
    }
    s.disk_bytes_read = c->bytes_read();
    s.disk_read_seconds = c->read_seconds();
    s.expert_cache_bytes = c->held_bytes();
    s.expert_cache_peak_bytes = c->peak_bytes();
    s.expert_cache_budget_bytes = c->budget_bytes();
    s.n_layers = c->n_layers();
    s.policy = static_cast<uint32_t>(c->policy());
    s.io_mode = c->io_mode().c_str();
    s.expert_slots = c->n_slots();
    s.expert_prefetch_buffers = c->prefetch_depth();
    const kestrel::runtime::offload::ExpertPrefetcher::Counters pf = c->prefetch_counters();
    s.expert_prefetches = pf.issued;
    s.expert_prefetch_hits = pf.used;
    s.expert_prefetch_wait_seconds = pf.wait_seconds;
    s.expert_host_runs = c->host_runs();
    s.expert_host_seconds = c->host_seconds();
    return kestrel::api::WriteInfo(fn, "out_stats", s, out_stats, KESTREL_OFFLOAD_STATS_MIN_SIZE);
  });
}

KESTREL_API kestrel_status_t* kestrel_model_get_expert_layer_stats(const kestrel_model_t* model,
                                                                   uint32_t layer,
                                                                   uint64_t* out_hits,
                                                                   uint64_t* out_misses) {
  return Guard("kestrel_model_get_expert_layer_stats", [&]() -> absl::Status {
    constexpr const char* fn = "kestrel_model_get_expert_layer_stats";
    if (out_hits == nullptr) return NullArgument(fn, "out_hits");
    if (out_misses == nullptr) return NullArgument(fn, "out_misses");
    absl::StatusOr<kestrel::runtime::offload::ExpertCache*> cache = CacheOf(model, fn);
    if (!cache.ok()) return cache.status();
    kestrel::runtime::offload::ExpertCache* c = *cache;
    std::lock_guard<std::mutex> lock(c->mutex());
    if (layer >= c->n_layers()) {
      return absl::OutOfRangeError(
          absl::StrCat(fn, ": layer ", layer, " is not below the ", c->n_layers(), " MoE layers"));
    }
    *out_hits = c->layer_stats()[layer].hits;
    *out_misses = c->layer_stats()[layer].misses;
    return absl::OkStatus();
  });
}

KESTREL_API kestrel_status_t* kestrel_model_reset_offload_stats(kestrel_model_t* model) {
  return Guard("kestrel_model_reset_offload_stats", [&]() -> absl::Status {
    constexpr const char* fn = "kestrel_model_reset_offload_stats";
    absl::StatusOr<kestrel::runtime::offload::ExpertCache*> cache = CacheOf(model, fn);
    if (!cache.ok()) return cache.status();
    kestrel::runtime::offload::ExpertCache* c = *cache;
    std::lock_guard<std::mutex> lock(c->mutex());
    c->ResetStats();
    return absl::OkStatus();
  });
}

KESTREL_API kestrel_status_t* kestrel_model_get_memory_stats(const kestrel_model_t* model,
                                                             kestrel_memory_stats_t* out_stats) {
  return Guard("kestrel_model_get_memory_stats", [&]() -> absl::Status {
    constexpr const char* fn = "kestrel_model_get_memory_stats";
    if (model == nullptr) return NullArgument(fn, "model");
    const kestrel::hal::Device* device = model->model->device();
    if (device == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat(fn, ": the model has no device (it was loaded metadata-only)"));
    }
    const kestrel::hal::DeviceMemoryStats d = device->memory_stats();
    kestrel_memory_stats_t s{};
    s.struct_size = sizeof(s);
    s.device = device->name().c_str();
    s.device_bytes = d.live_bytes;
    s.device_peak_bytes = d.peak_bytes;
    s.host_to_device_bytes = d.host_to_device_bytes;
    s.device_to_host_bytes = d.device_to_host_bytes;
    if (kestrel::runtime::offload::ExpertCache* c = model->model->expert_cache(); c != nullptr) {
      std::lock_guard<std::mutex> lock(c->mutex());
      s.expert_bytes_read = c->bytes_read();
      s.expert_read_seconds = c->read_seconds();
    }
    if (kestrel::runtime::offload::WeightStreamer* w = model->model->weight_streamer(); w != nullptr) {
      std::lock_guard<std::mutex> lock(w->mutex());
      s.streamed_bytes_copied = w->stats().bytes_copied;
      s.stream_copy_wait_seconds = w->stats().copy_wait_seconds;
      s.stream_file_bytes_read = w->stats().file_bytes_read;
      s.stream_file_read_seconds = w->stats().file_read_seconds;
      s.stream_io_mode = w->io_mode().c_str();
    }
    return kestrel::api::WriteInfo(fn, "out_stats", s, out_stats, KESTREL_MEMORY_STATS_MIN_SIZE);
  });
}

}  // extern "C"
