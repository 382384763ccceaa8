// The stub NPU plugin ("npu_stub", device "npu"): what a user or a test needs to know about it
// beyond plugin_api.h. It behaves like an edge NPU, not like the CPU:
//  - its own memory of a fixed size (option memory_mb, default 256), not host-visible: buffers
//    and compiled weights are reachable only by buffer_write / buffer_read / buffer_copy; an
//    allocation past the size is RESOURCE_EXHAUSTED;
//  - asynchronous: every stream is a command queue served by its own thread, with events
//    (stream NULL: the call completes before it returns);
//  - ops: MATMUL as W8A8 int8 (weights compiled at weight_prepare into int8 tiles with one scale
//    per output channel; activations quantized per token with a dynamic scale; int32
//    accumulation), RMSNORM, ADD and SWIGLU in f32; everything else UNSUPPORTED (the runtime runs
//    it on the reference plugin). Caps: accuracy_tier KESTREL_ACCURACY_INT8;
//  - a deterministic cost model instead of real time: each launch costs
//      launch_us + max(bytes / bandwidth, work / throughput)
//    (MATMUL: 2*T*N*K int8 ops at int8_tops; other ops: elements at vector_gflops; copies: bytes
//    at host_link_gbps), summed into a per-device simulated clock that KESTREL_NPU_OP_READ_CLOCK
//    reads, so schedulers and planners can be tested without timing noise.
//
// Options (instance_create / init; each also read from the environment variable in brackets,
// which the option overrides):
//   memory_mb       [KESTREL_NPU_MEMORY_MB]       device memory in MiB (default 256)
//   bandwidth_gbps  [KESTREL_NPU_BANDWIDTH_GBPS]  device memory bandwidth, GB/s (default 16)
//   int8_tops       [KESTREL_NPU_INT8_TOPS]       int8 throughput, tera-ops/s (default 4)
//   vector_gflops   [KESTREL_NPU_VECTOR_GFLOPS]   f32 vector throughput, GFLOP/s (default 64)
//   host_link_gbps  [KESTREL_NPU_HOST_LINK_GBPS]  host <-> device copies, GB/s (default 4)
//   launch_us       [KESTREL_NPU_LAUNCH_US]       fixed cost of every launch, us (default 5)
// A value that is not a positive number is INVALID_ARGUMENT naming the key and the value.
#ifndef KESTREL_PLUGINS_NPU_STUB_NPU_STUB_H_
#define KESTREL_PLUGINS_NPU_STUB_NPU_STUB_H_

#include "kestrel/plugin_api.h"

/* Vendor op: reads the device's simulated clock. No inputs, no params; one output I32 [4]:
 * {elapsed_ns low 32 bits, elapsed_ns high 32 bits, launches low, launches high} (as uint32
 * words): the totals of every launch and copy the device finished before this op ran (all of its
 * own stream's earlier work included). The read itself costs nothing and is not counted. */
#define KESTREL_NPU_OP_READ_CLOCK (KESTREL_OP_VENDOR_BASE + 0x4E50)

#endif  // KESTREL_PLUGINS_NPU_STUB_NPU_STUB_H_
