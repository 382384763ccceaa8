// OpenCL helpers of the OpenCL plugin: error names, platform/device discovery and the program
// build with its on-disk binary cache. Knows nothing about the plugin ABI's objects.
#ifndef KESTREL_PLUGINS_OPENCL_CL_UTIL_H_
#define KESTREL_PLUGINS_OPENCL_CL_UTIL_H_

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kestrel/plugin_sdk/status.h"

namespace kestrel::plugins::opencl {

using plugin_sdk::Status;

// "CL_OUT_OF_RESOURCES", ... ("unknown OpenCL error" for codes it does not know).
const char* ClErrorName(cl_int err);

// OK for CL_SUCCESS, else INTERNAL (RESOURCE_EXHAUSTED for allocation failures) naming `what`,
// the code and its name.
Status ClStatus(cl_int err, const std::string& what);

// Returns from the enclosing function (returning Status) if `expr` is not CL_SUCCESS.
#define KESTREL_CL_RETURN_IF_ERROR(expr, what)                         \
  do {                                                                 \
    const cl_int kestrel_cl_err_ = (expr);                             \
    if (kestrel_cl_err_ != CL_SUCCESS) {                               \
      return ::kestrel::plugins::opencl::ClStatus(kestrel_cl_err_, what); \
    }                                                                  \
  } while (0)

// One OpenCL device as discovered: its ids and the strings the plugin reports and keys the
// program cache with.
struct ClDeviceInfo {
  cl_platform_id platform = nullptr;
  cl_device_id device = nullptr;
  cl_device_type type = 0;
  std::string name;            // CL_DEVICE_NAME
  std::string vendor;          // CL_DEVICE_VENDOR
  std::string version;         // CL_DEVICE_VERSION
  std::string driver_version;  // CL_DRIVER_VERSION
  std::string platform_name;   // CL_PLATFORM_NAME
  std::string extensions;      // CL_DEVICE_EXTENSIONS
  uint64_t global_mem = 0;
  uint64_t max_alloc = 0;
  size_t max_work_group = 0;
  bool correctly_rounded_sqrt = false;
};

// Every device of every platform, in platform order. When none is found, returns an empty list
// and writes why to `reason` (e.g. "clGetPlatformIDs returned -1001 (CL_PLATFORM_NOT_FOUND_KHR):
// no OpenCL platform installed").
std::vector<ClDeviceInfo> DiscoverDevices(std::string* reason);

using LogFn = std::function<void(bool warning, const std::string& message)>;

// Builds `source` for `info.device` in `context` with `options`. Binaries are cached in
// `cache_dir` (created if needed) under a key of device name + driver version + options + source
// hash; a cache that cannot be read or written is logged as a warning and the program is built
// from source. `*from_cache` tells which way it went.
Status BuildProgram(cl_context context, const ClDeviceInfo& info, const std::string& source,
                    const std::string& options, const std::string& cache_dir, const LogFn& log,
                    cl_program* out, bool* from_cache);

// The default cache folder: $XDG_CACHE_HOME/kestrel/opencl, else $HOME/.cache/kestrel/opencl,
// else "" (no cache).
std::string DefaultCacheDir();

}  // namespace kestrel::plugins::opencl

#endif  // KESTREL_PLUGINS_OPENCL_CL_UTIL_H_
