// The stub NPU's settings (see npu_stub.h for the keys): parsed from an instance's options over
// the environment's defaults, and the deterministic cost model they define.
#ifndef KESTREL_PLUGINS_NPU_STUB_NPU_CONFIG_H_
#define KESTREL_PLUGINS_NPU_STUB_NPU_CONFIG_H_

#include <cstddef>
#include <cstdint>

#include "kestrel/plugin_api.h"
#include "kestrel/plugin_sdk/status.h"

namespace kestrel::plugins::npu {

struct NpuConfig {
  uint64_t memory_bytes = uint64_t{256} << 20;
  double bandwidth_gbps = 16.0;
  double int8_tops = 4.0;
  double vector_gflops = 64.0;
  double host_link_gbps = 4.0;
  double launch_us = 5.0;
};

// Defaults, then the KESTREL_NPU_* environment variables, then `options` (unknown keys are
// ignored). INVALID_ARGUMENT "<slot>: option <key>=<value>: ..." for a bad value of a known key
// (the environment: "environment KESTREL_NPU_...=<value>: ...").
plugin_sdk::Status ParseNpuConfig(const kestrel_plugin_option_t* options, size_t n_options,
                                  const char* slot, NpuConfig* out);

// Simulated nanoseconds of one launch (every op, every copy): launch_us + max(bytes moved /
// bandwidth, work / throughput). Pure and deterministic.
uint64_t MatmulCostNs(const NpuConfig& c, int64_t t, int64_t n, int64_t k, uint64_t bytes);
uint64_t VectorCostNs(const NpuConfig& c, uint64_t flops, uint64_t bytes);
uint64_t HostCopyCostNs(const NpuConfig& c, uint64_t bytes);  // host <-> device
uint64_t DeviceCopyCostNs(const NpuConfig& c, uint64_t bytes);  // device <-> device

}  // namespace kestrel::plugins::npu

#endif  // KESTREL_PLUGINS_NPU_STUB_NPU_CONFIG_H_
