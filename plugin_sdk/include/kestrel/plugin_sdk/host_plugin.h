// HostPlugin: the whole kestrel_plugin_api_t for a host-memory, synchronous device.
//
// Buffers are 64-byte aligned host memory (buffer_map supported), streams and events are left
// NULL (every call completes before it returns), a prepared weight is a packed copy of the host
// bytes plus its descriptor, and op_query / op_execute go through the op contract
// (op_contract.h), then the reference ops (reference_ops.h) or the configuration's own execute
// function. ABI 1.4 instances are served (each with its own host: a device's statuses and logs go
// to the instance that opened it; options are logged and ignored), and the 1.1 slots act on a
// default instance with get_api's host.
// The reference plugin ("ref") is one configuration of it; tests, the sample vendor plugin and
// other host-memory plugins build more tables from other configurations, side by side in one
// process.
//
// Owns: the plugin objects (devices, buffers, weights) and the conversion of internal Status to
// kestrel_plugin_status_t (through host->status_create), done once per slot, at the ABI boundary,
// where every C++ exception is caught (std::bad_alloc -> RESOURCE_EXHAUSTED, others -> INTERNAL).
#ifndef KESTREL_PLUGIN_SDK_HOST_PLUGIN_H_
#define KESTREL_PLUGIN_SDK_HOST_PLUGIN_H_

#include <cstdint>

#include "kestrel/plugin_api.h"
#include "kestrel/plugin_sdk/status.h"

namespace kestrel::plugin_sdk {

// How one host-memory plugin presents itself. All strings are NUL-terminated and static.
struct HostPluginConfig {
  const char* plugin_name;  // kestrel_plugin_api_t::name, e.g. "ref"
  const char* device_name;  // kestrel_device_caps_t::name, e.g. "ref"
  const char* description;  // kestrel_device_caps_t::description
  // Which op kinds op_query may report as supported; others are UNSUPPORTED (and op_execute
  // answers UNIMPLEMENTED). NULL: every kind the reference kernels implement.
  bool (*supports_kind)(uint32_t kind);
  const char* plugin_version = "0.1.0";  // kestrel_plugin_api_t::version
  // Runs an op that CheckOp accepted and supports_kind allows, on host pointers (the contract of
  // ExecuteOp in reference_ops.h). NULL: ExecuteOp itself, the reference implementation.
  Status (*execute)(const kestrel_op_desc_t& op, const void* const* inputs,
                    void* const* outputs) = nullptr;
  // What op_query reports for the ops it runs: KESTREL_OP_SUPPORTED (the reference plugin: correct,
  // never the preferred place) or KESTREL_OP_PREFERRED.
  uint32_t support_level = KESTREL_OP_SUPPORTED;
};

// At most this many distinct configurations can have a table in one process (each needs its own
// set of slot functions, since slots such as device_count carry no context).
inline constexpr int kMaxHostPlugins = 8;

// The body of a kestrel_plugin_get_api for `config`, which must stay valid as long as the table is
// used (make it static). Checks host_major against KESTREL_PLUGIN_API_MAJOR (a mismatch returns
// FAILED_PRECONDITION naming both versions) and the host table (struct_size of at least the 1.0
// table, status_create set), remembers `host` for statuses and logging, and writes the table to
// *out (NULL on any failure). Calling it again for the same config returns the same table and
// replaces the remembered host. If `host` is unusable no status can be created: the call returns
// NULL with *out = NULL. RESOURCE_EXHAUSTED when kMaxHostPlugins configurations are in use.
// The table's shutdown slot frees the configuration's state and invalidates the table for every
// host that got it; a later call makes a new one. Thread-safe.
kestrel_plugin_status_t* HostPluginGetApi(const HostPluginConfig* config,
                                          const kestrel_host_api_t* host, uint16_t host_major,
                                          uint16_t host_minor, const kestrel_plugin_api_t** out);

// Bytes of physical memory of this machine (0 if unknown): a host-memory device's memory_bytes.
uint64_t HostMemoryBytes();

// An allocation of `size` bytes that a host-memory device refuses up front: more than the
// machine's memory (or 2^62). RESOURCE_EXHAUSTED "<slot>: cannot allocate N bytes: more than the
// device's M bytes of memory", else OK. Failing early keeps the answer a status on every
// allocator (a sanitizer's aborts instead of throwing) and the machine out of swap.
Status CheckHostAllocation(uint64_t size, const char* slot);

// The dtypes a host plugin device holds/computes with (caps.dtype_mask) and accepts as
// matmul/embedding weights (caps.weight_dtype_mask).
uint64_t HostPluginDtypeMask();
uint64_t HostPluginWeightDtypeMask();

}  // namespace kestrel::plugin_sdk

#endif  // KESTREL_PLUGIN_SDK_HOST_PLUGIN_H_
