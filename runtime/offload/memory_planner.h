// runtime/offload/memory_planner.h: the one memory-budget planner. Given the compute device's
// capacity (from its caps), the user's budgets (size_spec.h), the model's weights split into
// always-resident tensors, per-layer matrices that may be streamed and stacked expert tensors,
// and the KV cache that the requested context and sequences need, it decides what is resident on
// the device, which layers are streamed through a ring of device buffers (and the prefetch
// distance), how many expert-cache slots the rest of the budget holds, and the KV pool size; a
// budget that cannot work is RESOURCE_EXHAUSTED with the numbers. It only computes: it allocates nothing and knows no plugin or file.
#ifndef KESTREL_RUNTIME_OFFLOAD_MEMORY_PLANNER_H_
#define KESTREL_RUNTIME_OFFLOAD_MEMORY_PLANNER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/offload/size_spec.h"

namespace kestrel {
namespace runtime {
namespace offload {

// One weight as the planner sees it.
struct PlannedTensor {
  int weight_id = -1;  // the model's weight table id
  uint64_t bytes = 0;
  int32_t layer = -1;       // decoder layer, -1 for embeddings, output and the like
  bool expert_stack = false;  // a stacked [E, ...] expert tensor (ffn_{gate,up,down}_exps)
  // A decoder layer's matrix that the device can take as a MATMUL buffer: may be streamed.
  bool streamable = false;
  // The device takes the tensor's dtype as a weight. When it does not, the ops reading the tensor
  // run on the fallback device from host memory: it is planned there (host_resident), never
  // streamed to the device nor read into its expert cache.
  bool device_can_hold = true;
  uint32_t dtype = 0;  // kestrel_dtype_t, for messages
};

struct PlanRequest {
  std::string device;            // the compute device's name
  uint64_t device_capacity = 0;  // caps.memory_bytes; 0: unknown (no limit from the caps)
  bool device_is_host = false;   // the device's memory is host RAM (cpu, ref): "host" limits it too
  // The device queues work (streams and events): streamed layers are copied ahead of their use,
  // `prefetch_distance` layers ahead (0: the planner picks 2 when the budget allows, else 1).
  // A synchronous device copies each streamed layer just before its use (distance 0).
  bool device_async = false;
  uint32_t prefetch_distance = 0;
  // Streamed matrices are read from the model file (direct I/O, file_reader.h) through a staging
  // buffer of the largest streamed matrix, plus, on an async device, host bytes per ring slot
  // that queued copies read (StreamStagingBytes), planned with the ring.
  bool stream_from_file = false;
  std::vector<MemBudget> budgets;
  uint64_t weight_bytes = 0;  // every tensor of the file (what "N%" refers to)
  std::vector<PlannedTensor> tensors;
  // Names a dtype in messages (kestrel_dtype_t -> "Q4_K"); empty: numbers.
  std::string (*dtype_name)(uint32_t) = nullptr;
  uint32_t n_layers = 0, n_experts = 0, top_k = 0;
  uint64_t kv_bytes_per_token = 0;  // K and V of every layer
  // Per layer (when given): a sliding-window layer's KV tokens per sequence (its window and one
  // step of up to a window, in whole blocks: what sessions and the engine keep), 0 for a layer
  // that keeps the whole context; with kv_layer_bytes_per_token (K and V of one layer). A window
  // layer then needs min(context, its tokens) per sequence, and kv_bytes_per_token is unused.
  std::vector<uint32_t> kv_window_tokens;
  uint64_t kv_layer_bytes_per_token = 0;
  uint32_t context = 0, sequences = 1;
  // A KV pool at least this large (re-planning for an engine's pool: ReplanForKv).
  uint64_t kv_bytes_min = 0;
};

struct MemoryPlan {
  std::string device;
  uint64_t device_budget = 0;  // effective limit on the device (min of capacity and budgets)
  bool device_budget_given = false;  // a user budget (not just the capacity) limits the device
  uint64_t host_budget = 0;  // 0: none given
  bool device_is_host = false;  // the device computes in host memory (PlanRequest)
  uint32_t top_k = 0;           // experts a token routes to: the expert cache's minimum slots
  std::vector<int> resident;  // weight ids resident on the device
  uint64_t resident_bytes = 0;
  // Tensors of dtypes the device does not take (PlannedTensor::device_can_hold): prepared on the
  // fallback device in host memory, counted against the host budget.
  std::vector<int> host_resident;
  uint64_t host_resident_bytes = 0;
  // Mixture of experts. When experts_offloaded, the expert stacks stay in the file and experts are
  // read into `expert_slots` cache slots of `expert_slot_bytes` (one expert's gate, up and down
  // of one layer) plus one staging slot the reads land in.
  bool experts_offloaded = false;
  uint64_t expert_bytes = 0;  // all expert stacks
  uint64_t expert_slot_bytes = 0;
  uint32_t experts_total = 0;  // layers x experts
  uint32_t expert_slots = 0;
  std::vector<int> offloaded;  // weight ids of the expert stacks left in the file
  uint64_t kv_bytes = 0;
  uint32_t kv_tokens = 0;  // context x sequences
  // Weight streaming: when the resident weights and the KV do not fit, the streamable matrices
  // of `streamed_layers` (spread evenly over the depth, so that resident layers' compute covers
  // the copies) stay in host memory and are copied into a ring of `stream_slots` device buffers
  // of `stream_slot_bytes` (one layer's matrices each) before use, `prefetch_distance` streamed
  // layers ahead (stream_slots = prefetch_distance + 1; 0 and 1 slot on a synchronous device).
  std::vector<uint32_t> streamed_layers;
  std::vector<int> streamed;  // weight ids of the streamed matrices
  uint64_t streamed_bytes = 0;
  uint64_t stream_slot_bytes = 0;
  uint32_t stream_slots = 0;
  uint32_t prefetch_distance = 0;
  // PlanRequest::stream_from_file: the reader's staging buffer (FileReader::StagingBytes of the
  // largest streamed matrix; on an async device also one slot's bytes per ring slot): host
  // memory the device reads from, in the device's share on a synchronous device, else
  // (stream_staging_on_host: an async device) in the host budget's, not in device_total_bytes;
  // 0 when an async device's host budget has no room for it (copies then read the mapping).
  uint64_t stream_staging_bytes = 0;
  bool stream_staging_on_host = false;
  // Host memory for the KV of preempted engine sequences (runtime/offload/kv_swap.h): the host
  // budget less what is planned in host memory (the device's total when it computes in host
  // memory, nothing else otherwise); 0 without a host budget.
  uint64_t host_swap_bytes = 0;

  uint64_t expert_cache_bytes() const {
    return experts_offloaded ? (uint64_t{expert_slots} + 1) * expert_slot_bytes : 0;
  }
  uint64_t stream_ring_bytes() const { return uint64_t{stream_slots} * stream_slot_bytes; }
  // What weight streaming holds: the ring and the staging buffer of reads from the file.
  uint64_t stream_buffers_bytes() const { return stream_ring_bytes() + stream_staging_bytes; }
  // What of stream_buffers_bytes() the device's share holds.
  uint64_t stream_device_bytes() const {
    return stream_ring_bytes() + (stream_staging_on_host ? 0 : stream_staging_bytes);
  }
  uint64_t device_total_bytes() const {
    return resident_bytes + expert_cache_bytes() + kv_bytes + stream_device_bytes();
  }
};

// RESOURCE_EXHAUSTED naming the device, the budget and what does not fit in it (the always-
// resident weights + KV with every streamable layer streamed, or the minimum of top_k expert
// slots); INVALID_ARGUMENT for a budget
// naming a device other than the compute device or "host".
absl::StatusOr<MemoryPlan> PlanMemory(const PlanRequest& request);

// Re-planning at run time: `plan` with a KV pool of `kv_bytes` (when more than it reserves; an
// engine's pool, say). What the device budget then lacks comes out of the expert cache first
// (whole slots, never below top_k), and the host swap space shrinks with the host share. When
// the cache cannot give enough (or there is none) and `request` (the plan's own) is given, the
// plan is made again for that pool: more resident layers become streamed (the fewest that fit),
// and its expert cache keeps at most the slots `plan` has now (a cache only shrinks).
// RESOURCE_EXHAUSTED with the numbers when neither is enough.
absl::StatusOr<MemoryPlan> ReplanForKv(const MemoryPlan& plan, uint64_t kv_bytes,
                                       const PlanRequest* request = nullptr);

}  // namespace offload
}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_OFFLOAD_MEMORY_PLANNER_H_
