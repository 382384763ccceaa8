/* Memory offload: the plan a model was loaded with (kestrel_model_options_t.memory_budget) and
 * the statistics of its expert cache. Thread-safe like every model function. \since 0.3 */
#ifndef KESTREL_OFFLOAD_H_
#define KESTREL_OFFLOAD_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kestrel/export.h"
#include "kestrel/model.h"
#include "kestrel/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Which cached expert a miss replaces. */
typedef enum kestrel_expert_cache_policy {
  KESTREL_EXPERT_CACHE_LRU = 0, /* the one used longest ago */
  KESTREL_EXPERT_CACHE_LFU = 1  /* the one used least often since load (ties: longest ago) */
} kestrel_expert_cache_policy_t;

/* kestrel_model_options_t.offload_flags */
#define KESTREL_OFFLOAD_FLAG_NO_DIRECT_IO 1u /* read experts (and, since 0.3, streamed layers)
                                              * with pread + POSIX_FADV_DONTNEED, not O_DIRECT */
/* Since 0.3 (appended): do not read experts ahead. By default, while a MoE layer computes, the
 * next layer's router is applied to its input and the experts it picks are read from the file on
 * a thread of their own; their buffers come out of the cache's slots (expert_prefetch_buffers). */
#define KESTREL_OFFLOAD_FLAG_NO_PREFETCH 2u
/* Since 0.3 (appended): what a miss does when the model's device is not the host (opencl, cuda)
 * and a host device ("cpu") is present. By default a cost model chooses per step between fetching
 * the expert into the device's cache and running it once on the host device (no eviction, x and
 * the expert's output cross the bus instead of its weights): host compute tends to win for the
 * few tokens of a decode step, fetching for a prefill. These flags force one way (both set:
 * INVALID_ARGUMENT). On a device that computes in host memory the cost model is off (misses are
 * fetched) unless MISS_ON_HOST asks for the cpu device (a model on ref, say). A device that does
 * not run MOE (opencl and cuda today) gets no expert cache: its plan keeps the expert stacks on
 * the fallback device (kestrel_memory_plan_info_t.host_resident_*). */
#define KESTREL_OFFLOAD_FLAG_MISS_FETCH 4u
#define KESTREL_OFFLOAD_FLAG_MISS_ON_HOST 8u

typedef struct kestrel_memory_plan_info {
  uint32_t struct_size; /* set by the caller to sizeof(kestrel_memory_plan_info_t) */
  const char* device;   /* the compute device planned for; valid while the model lives */
  uint64_t device_budget_bytes; /* effective limit on the device; UINT64_MAX: none */
  uint64_t host_budget_bytes;   /* the "host" budget; 0: none given */
  uint64_t resident_bytes;      /* weights resident on the device */
  uint32_t resident_tensors;
  uint32_t offloaded_tensors;   /* expert stacks left in the file */
  bool experts_offloaded;
  uint64_t expert_bytes;        /* all expert stacks of the file */
  uint64_t expert_slot_bytes;   /* one expert of one layer: gate + up + down */
  uint32_t experts_total;       /* MoE layers x experts */
  uint32_t expert_slots;        /* cache slots (plus one staging slot for reads) */
  uint64_t expert_cache_bytes;  /* (expert_slots + 1) x expert_slot_bytes; 0 when resident */
  uint64_t kv_bytes;            /* the KV pool the plan reserves */
  uint32_t kv_tokens;           /* context x sequences */
  uint32_t n_streamed_layers;   /* layers whose matrices are streamed from host memory through a
                                 * ring of device buffers (weight streaming); 0: none */
  uint64_t host_swap_bytes;     /* host memory for the KV of preempted engine sequences (used
                                 * by kestrel_engine_options_t.kv_swap_bytes = 0): the host
                                 * budget less what is planned in host memory; 0 without one,
                                 * UINT64_MAX with an "unlimited" host budget */
  uint64_t device_total_bytes;  /* resident + expert cache + KV + streaming ring (+ staging
                                 * buffer, stream_staging_bytes): at most
                                 * device_budget_bytes */
  /* Appended in 0.3 with weight streaming. */
  uint64_t streamed_bytes;      /* bytes of the streamed matrices (copied again every step) */
  uint64_t stream_ring_bytes;   /* stream_slots x one slot (the largest streamed layer) */
  uint32_t stream_slots;        /* ring slots: stream_prefetch_distance + 1 */
  uint32_t stream_prefetch_distance; /* streamed layers copied ahead of the one computing (a
                                      * device with streams); 0: each copied just before use */
  /* Appended in 0.3: tensors of dtypes the device does not take as weights (a K-quant on
   * opencl, say), and every expert stack of a model with one such stack. Their ops run on the
   * fallback device from host memory: never on the device, in its streaming ring or its expert
   * cache; counted against the host budget (RESOURCE_EXHAUSTED when they exceed it). */
  uint64_t host_resident_bytes;
  uint32_t host_resident_tensors;
  /* Appended in 0.3: streamed matrices are read from the model file with direct I/O into a
   * staging buffer of the largest one, then copied into their ring slot (on a device with
   * streams, opencl or cuda, through host bytes of one slot per ring slot that the queued copies
   * read, also counted here); these are its bytes (0: none), counted in device_total_bytes on a
   * device without streams (cpu, ref), else host memory counted against the host budget
   * (host_swap_bytes is what is left of it; without room there the queued copies read the
   * mapped file and this is 0). */
  uint64_t stream_staging_bytes;
} kestrel_memory_plan_info_t;
#define KESTREL_MEMORY_PLAN_INFO_MIN_SIZE \
  (offsetof(kestrel_memory_plan_info_t, device) + sizeof(const char*))

/* The plan of a model loaded with a memory_budget. FAILED_PRECONDITION when it was loaded
 * without one; INVALID_ARGUMENT for NULL arguments or a too-small struct_size. \since 0.3 */
KESTREL_API kestrel_status_t* kestrel_model_get_memory_plan(const kestrel_model_t* model,
                                                            kestrel_memory_plan_info_t* out_plan);

typedef struct kestrel_offload_stats {
  uint32_t struct_size;         /* set by the caller to sizeof(kestrel_offload_stats_t) */
  uint64_t expert_hits;         /* routed experts found in the cache, all layers */
  uint64_t expert_misses;       /* routed experts read from the file */
  uint64_t disk_bytes_read;     /* since load */
  double disk_read_seconds;     /* time spent in those reads */
  uint64_t expert_cache_bytes;      /* held now (slots + staging buffer), by the cache's accounting */
  uint64_t expert_cache_peak_bytes; /* the most ever held */
  uint64_t expert_cache_budget_bytes;
  uint32_t n_layers;            /* MoE layers (kestrel_model_get_expert_layer_stats) */
  uint32_t policy;              /* kestrel_expert_cache_policy_t */
  const char* io_mode;          /* "direct I/O (O_DIRECT)" or "pread (O_DIRECT refused: ...)" */
  /* Appended in 0.3 with expert prefetch (0 with KESTREL_OFFLOAD_FLAG_NO_PREFETCH). The counts
   * reset with kestrel_model_reset_offload_stats. */
  uint32_t expert_slots;            /* slots the cache holds (the plan's less the prefetch's) */
  uint32_t expert_prefetch_buffers; /* experts read ahead at once */
  uint64_t expert_prefetches;       /* experts read ahead (the next layer's router's guesses) */
  uint64_t expert_prefetch_hits;    /* of them, misses the step then took from the read-ahead */
  double expert_prefetch_wait_seconds; /* time steps waited for a read-ahead still reading (also
                                        * in disk_read_seconds; disk_bytes_read includes the
                                        * read-ahead bytes) */
  uint64_t expert_host_runs;        /* misses run on the host device instead of fetched (counted
                                     * in expert_misses too) */
  double expert_host_seconds;       /* time in those runs, with their copies of x and output */
} kestrel_offload_stats_t;
#define KESTREL_OFFLOAD_STATS_MIN_SIZE \
  (offsetof(kestrel_offload_stats_t, expert_hits) + sizeof(uint64_t))

/* Expert-cache statistics; hit and miss counts since load or the last reset. FAILED_PRECONDITION
 * when the model has no expert cache (nothing offloaded). \since 0.3 */
KESTREL_API kestrel_status_t* kestrel_model_get_offload_stats(const kestrel_model_t* model,
                                                              kestrel_offload_stats_t* out_stats);
/* Hits and misses of MoE layer `layer` (0-based over the MoE layers). OUT_OF_RANGE past
 * n_layers. \since 0.3 */
KESTREL_API kestrel_status_t* kestrel_model_get_expert_layer_stats(const kestrel_model_t* model,
                                                                   uint32_t layer,
                                                                   uint64_t* out_hits,
                                                                   uint64_t* out_misses);
/* Zeroes the hit and miss counts (bytes read and the peak stay). \since 0.3 */
KESTREL_API kestrel_status_t* kestrel_model_reset_offload_stats(kestrel_model_t* model);

/* What moved through the model's device and what it holds. The device's counters cover
 * everything this runtime runs on that device (every model, session and engine using it), from
 * when the runtime opened it; prepared weights count the host bytes they were made from. KV moved
 * by engine preemption is in kestrel_engine_stats_t (kv_swap_*). \since 0.3 */
typedef struct kestrel_memory_stats {
  uint32_t struct_size;          /* set by the caller to sizeof(kestrel_memory_stats_t) */
  const char* device;            /* the model's device; valid while the model lives */
  uint64_t device_bytes;         /* live buffers and prepared weights on it now */
  uint64_t device_peak_bytes;    /* the most ever live at once */
  uint64_t host_to_device_bytes; /* buffer writes, weight preparation and import */
  uint64_t device_to_host_bytes; /* buffer reads */
  uint64_t expert_bytes_read;    /* expert bytes read from the file into the expert cache; 0
                                  * without one (its prepared copies count in host_to_device) */
  double expert_read_seconds;    /* time spent in those reads: waiting on expert copies */
  /* Appended in 0.3 with weight streaming (0 without it). */
  uint64_t streamed_bytes_copied; /* streamed-layer bytes copied to the device since load (also
                                   * counted in host_to_device_bytes) */
  double stream_copy_wait_seconds; /* host time blocked in streamed-layer copies and reads
                                    * (queued copies overlap compute: only their reads count) */
  /* Appended in 0.3: streamed-layer bytes read from the model file (also in
   * streamed_bytes_copied), the time in those reads (also in stream_copy_wait_seconds), and how:
   * "direct I/O (O_DIRECT)", "pread (O_DIRECT refused: <reason>)" (each read's pages are then
   * dropped from the page cache with POSIX_FADV_DONTNEED) or "memory (mapped file)" (weights not
   * in the model file, e.g. a package's); NULL without weight streaming. Valid while the model
   * lives. */
  uint64_t stream_file_bytes_read;
  double stream_file_read_seconds;
  const char* stream_io_mode;
} kestrel_memory_stats_t;
#define KESTREL_MEMORY_STATS_MIN_SIZE \
  (offsetof(kestrel_memory_stats_t, device) + sizeof(const char*))

/* Fills the fields of out_stats that fit in its struct_size. Any model (with or without a
 * memory_budget). Errors: INVALID_ARGUMENT (NULL arguments, too-small struct_size),
 * FAILED_PRECONDITION (a model loaded metadata-only has no device). \since 0.3 */
KESTREL_API kestrel_status_t* kestrel_model_get_memory_stats(const kestrel_model_t* model,
                                                             kestrel_memory_stats_t* out_stats);

#ifdef __cplusplus
}
#endif

#endif /* KESTREL_OFFLOAD_H_ */
