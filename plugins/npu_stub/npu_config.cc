#include "npu_config.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

namespace kestrel::plugins::npu {
namespace {

using plugin_sdk::InvalidArgument;
using plugin_sdk::Status;

struct Key {
  const char* name;
  const char* env;
};
constexpr Key kKeys[] = {
    {"memory_mb", "KESTREL_NPU_MEMORY_MB"},       {"bandwidth_gbps", "KESTREL_NPU_BANDWIDTH_GBPS"},
    {"int8_tops", "KESTREL_NPU_INT8_TOPS"},       {"vector_gflops", "KESTREL_NPU_VECTOR_GFLOPS"},
    {"host_link_gbps", "KESTREL_NPU_HOST_LINK_GBPS"}, {"launch_us", "KESTREL_NPU_LAUNCH_US"},
};

// A positive finite number (memory_mb: a positive integer of at most 2^20 MiB).
bool ParseValue(const char* key, const char* text, NpuConfig* c) {
  if (text == nullptr || *text == '\0') return false;
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(text, &end);
  if (errno != 0 || end == text || *end != '\0' || !std::isfinite(v) || v <= 0.0) return false;
  const std::string k = key;
  if (k == "memory_mb") {
    if (v != std::floor(v) || v > 1048576.0) return false;
    c->memory_bytes = static_cast<uint64_t>(v) << 20;
  } else if (k == "bandwidth_gbps") {
    c->bandwidth_gbps = v;
  } else if (k == "int8_tops") {
    c->int8_tops = v;
  } else if (k == "vector_gflops") {
    c->vector_gflops = v;
  } else if (k == "host_link_gbps") {
    c->host_link_gbps = v;
  } else {
    c->launch_us = v;
  }
  return true;
}

uint64_t Ns(double ns) { return static_cast<uint64_t>(std::llround(std::max(ns, 0.0))); }

}  // namespace

Status ParseNpuConfig(const kestrel_plugin_option_t* options, size_t n_options, const char* slot,
                      NpuConfig* out) {
  NpuConfig c;
  for (const Key& key : kKeys) {
    const char* env = std::getenv(key.env);
    if (env != nullptr && !ParseValue(key.name, env, &c)) {
      return InvalidArgument(slot, ": environment ", key.env, "=", env,
                             ": not a positive number", std::strcmp(key.name, "memory_mb") == 0
                                                            ? " (whole MiB)" : "");
    }
  }
  if (n_options > 0 && options == nullptr) return InvalidArgument(slot, ": options is NULL");
  for (size_t i = 0; i < n_options; ++i) {
    const char* k = options[i].key;
    if (k == nullptr) continue;
    for (const Key& key : kKeys) {
      if (std::strcmp(k, key.name) != 0) continue;
      if (!ParseValue(key.name, options[i].value, &c)) {
        return InvalidArgument(slot, ": option ", k, "=",
                               options[i].value ? options[i].value : "(null)",
                               ": not a positive number",
                               std::strcmp(k, "memory_mb") == 0 ? " (whole MiB)" : "");
      }
    }
  }
  *out = c;
  return Status();
}

uint64_t MatmulCostNs(const NpuConfig& c, int64_t t, int64_t n, int64_t k, uint64_t bytes) {
  const double ops = 2.0 * static_cast<double>(t) * static_cast<double>(n) * static_cast<double>(k);
  const double compute_ns = ops / (c.int8_tops * 1e3);  // tera-ops/s = 1e3 ops/ns
  const double memory_ns = static_cast<double>(bytes) / c.bandwidth_gbps;  // GB/s = bytes/ns
  return Ns(c.launch_us * 1e3 + std::max(compute_ns, memory_ns));
}

uint64_t VectorCostNs(const NpuConfig& c, uint64_t flops, uint64_t bytes) {
  const double compute_ns = static_cast<double>(flops) / c.vector_gflops;  // GFLOP/s = flop/ns
  const double memory_ns = static_cast<double>(bytes) / c.bandwidth_gbps;
  return Ns(c.launch_us * 1e3 + std::max(compute_ns, memory_ns));
}

uint64_t HostCopyCostNs(const NpuConfig& c, uint64_t bytes) {
  return Ns(c.launch_us * 1e3 + static_cast<double>(bytes) / c.host_link_gbps);
}

uint64_t DeviceCopyCostNs(const NpuConfig& c, uint64_t bytes) {
  // A copy reads and writes every byte.
  return Ns(c.launch_us * 1e3 + 2.0 * static_cast<double>(bytes) / c.bandwidth_gbps);
}

}  // namespace kestrel::plugins::npu
