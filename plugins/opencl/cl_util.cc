#include "cl_util.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

namespace kestrel::plugins::opencl {
namespace {

std::string PlatformString(cl_platform_id p, cl_platform_info what) {
  size_t n = 0;
  if (clGetPlatformInfo(p, what, 0, nullptr, &n) != CL_SUCCESS || n == 0) return "";
  std::string s(n, '\0');
  if (clGetPlatformInfo(p, what, n, s.data(), nullptr) != CL_SUCCESS) return "";
  s.resize(std::strlen(s.c_str()));
  return s;
}

std::string DeviceString(cl_device_id d, cl_device_info what) {
  size_t n = 0;
  if (clGetDeviceInfo(d, what, 0, nullptr, &n) != CL_SUCCESS || n == 0) return "";
  std::string s(n, '\0');
  if (clGetDeviceInfo(d, what, n, s.data(), nullptr) != CL_SUCCESS) return "";
  s.resize(std::strlen(s.c_str()));
  return s;
}

template <typename T>
T DeviceValue(cl_device_id d, cl_device_info what) {
  T v{};
  if (clGetDeviceInfo(d, what, sizeof v, &v, nullptr) != CL_SUCCESS) return T{};
  return v;
}

// 64-bit FNV-1a.
uint64_t Fnv1a(const std::string& s, uint64_t h = 0xcbf29ce484222325ull) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

// mkdir -p; true if the folder exists afterwards.
bool MakeDirs(const std::string& path) {
  if (path.empty()) return false;
  std::string partial;
  std::stringstream ss(path);
  std::string part;
  if (path[0] == '/') partial = "/";
  while (std::getline(ss, part, '/')) {
    if (part.empty()) continue;
    partial += part;
    if (::mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST) return false;
    partial += "/";
  }
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string BuildLog(cl_program program, cl_device_id device) {
  size_t n = 0;
  if (clGetProgramBuildInfo(program, device, CL_PROGRAM_BUILD_LOG, 0, nullptr, &n) != CL_SUCCESS) {
    return "";
  }
  std::string log(n, '\0');
  clGetProgramBuildInfo(program, device, CL_PROGRAM_BUILD_LOG, n, log.data(), nullptr);
  log.resize(std::strlen(log.c_str()));
  if (log.size() > 4000) log = log.substr(0, 4000) + "...";
  return log;
}

}  // namespace

const char* ClErrorName(cl_int err) {
  switch (err) {
#define KESTREL_CL_CASE(x) \
  case x:                  \
    return #x;
    KESTREL_CL_CASE(CL_SUCCESS)
    KESTREL_CL_CASE(CL_DEVICE_NOT_FOUND)
    KESTREL_CL_CASE(CL_DEVICE_NOT_AVAILABLE)
    KESTREL_CL_CASE(CL_COMPILER_NOT_AVAILABLE)
    KESTREL_CL_CASE(CL_MEM_OBJECT_ALLOCATION_FAILURE)
    KESTREL_CL_CASE(CL_OUT_OF_RESOURCES)
    KESTREL_CL_CASE(CL_OUT_OF_HOST_MEMORY)
    KESTREL_CL_CASE(CL_PROFILING_INFO_NOT_AVAILABLE)
    KESTREL_CL_CASE(CL_MEM_COPY_OVERLAP)
    KESTREL_CL_CASE(CL_IMAGE_FORMAT_MISMATCH)
    KESTREL_CL_CASE(CL_IMAGE_FORMAT_NOT_SUPPORTED)
    KESTREL_CL_CASE(CL_BUILD_PROGRAM_FAILURE)
    KESTREL_CL_CASE(CL_MAP_FAILURE)
    KESTREL_CL_CASE(CL_MISALIGNED_SUB_BUFFER_OFFSET)
    KESTREL_CL_CASE(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
    KESTREL_CL_CASE(CL_COMPILE_PROGRAM_FAILURE)
    KESTREL_CL_CASE(CL_LINKER_NOT_AVAILABLE)
    KESTREL_CL_CASE(CL_LINK_PROGRAM_FAILURE)
    KESTREL_CL_CASE(CL_DEVICE_PARTITION_FAILED)
    KESTREL_CL_CASE(CL_KERNEL_ARG_INFO_NOT_AVAILABLE)
    KESTREL_CL_CASE(CL_INVALID_VALUE)
    KESTREL_CL_CASE(CL_INVALID_DEVICE_TYPE)
    KESTREL_CL_CASE(CL_INVALID_PLATFORM)
    KESTREL_CL_CASE(CL_INVALID_DEVICE)
    KESTREL_CL_CASE(CL_INVALID_CONTEXT)
    KESTREL_CL_CASE(CL_INVALID_QUEUE_PROPERTIES)
    KESTREL_CL_CASE(CL_INVALID_COMMAND_QUEUE)
    KESTREL_CL_CASE(CL_INVALID_HOST_PTR)
    KESTREL_CL_CASE(CL_INVALID_MEM_OBJECT)
    KESTREL_CL_CASE(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR)
    KESTREL_CL_CASE(CL_INVALID_IMAGE_SIZE)
    KESTREL_CL_CASE(CL_INVALID_SAMPLER)
    KESTREL_CL_CASE(CL_INVALID_BINARY)
    KESTREL_CL_CASE(CL_INVALID_BUILD_OPTIONS)
    KESTREL_CL_CASE(CL_INVALID_PROGRAM)
    KESTREL_CL_CASE(CL_INVALID_PROGRAM_EXECUTABLE)
    KESTREL_CL_CASE(CL_INVALID_KERNEL_NAME)
    KESTREL_CL_CASE(CL_INVALID_KERNEL_DEFINITION)
    KESTREL_CL_CASE(CL_INVALID_KERNEL)
    KESTREL_CL_CASE(CL_INVALID_ARG_INDEX)
    KESTREL_CL_CASE(CL_INVALID_ARG_VALUE)
    KESTREL_CL_CASE(CL_INVALID_ARG_SIZE)
    KESTREL_CL_CASE(CL_INVALID_KERNEL_ARGS)
    KESTREL_CL_CASE(CL_INVALID_WORK_DIMENSION)
    KESTREL_CL_CASE(CL_INVALID_WORK_GROUP_SIZE)
    KESTREL_CL_CASE(CL_INVALID_WORK_ITEM_SIZE)
    KESTREL_CL_CASE(CL_INVALID_GLOBAL_OFFSET)
    KESTREL_CL_CASE(CL_INVALID_EVENT_WAIT_LIST)
    KESTREL_CL_CASE(CL_INVALID_EVENT)
    KESTREL_CL_CASE(CL_INVALID_OPERATION)
    KESTREL_CL_CASE(CL_INVALID_GL_OBJECT)
    KESTREL_CL_CASE(CL_INVALID_BUFFER_SIZE)
    KESTREL_CL_CASE(CL_INVALID_MIP_LEVEL)
    KESTREL_CL_CASE(CL_INVALID_GLOBAL_WORK_SIZE)
    KESTREL_CL_CASE(CL_INVALID_PROPERTY)
#undef KESTREL_CL_CASE
    case -1001:
      return "CL_PLATFORM_NOT_FOUND_KHR";
    default:
      return "unknown OpenCL error";
  }
}

Status ClStatus(cl_int err, const std::string& what) {
  if (err == CL_SUCCESS) return Status();
  const kestrel_plugin_status_code_t code =
      (err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_HOST_MEMORY ||
       err == CL_OUT_OF_RESOURCES)
          ? KESTREL_PLUGIN_RESOURCE_EXHAUSTED
          : KESTREL_PLUGIN_INTERNAL;
  return Status(code, plugin_sdk::StrCat(what, " returned ", err, " (", ClErrorName(err), ")"));
}

std::vector<ClDeviceInfo> DiscoverDevices(std::string* reason) {
  std::vector<ClDeviceInfo> out;
  cl_uint n_platforms = 0;
  cl_int err = clGetPlatformIDs(0, nullptr, &n_platforms);
  if (err != CL_SUCCESS || n_platforms == 0) {
    *reason = plugin_sdk::StrCat("clGetPlatformIDs returned ", err, " (", ClErrorName(err),
                          "): no OpenCL platform installed (the ICD loader found no vendor "
                          "driver; see /etc/OpenCL/vendors or OCL_ICD_VENDORS)");
    return out;
  }
  std::vector<cl_platform_id> platforms(n_platforms);
  err = clGetPlatformIDs(n_platforms, platforms.data(), nullptr);
  if (err != CL_SUCCESS) {
    *reason = plugin_sdk::StrCat("clGetPlatformIDs returned ", err, " (", ClErrorName(err), ")");
    return out;
  }
  std::string per_platform;
  for (cl_platform_id p : platforms) {
    const std::string pname = PlatformString(p, CL_PLATFORM_NAME);
    cl_uint n_devices = 0;
    err = clGetDeviceIDs(p, CL_DEVICE_TYPE_ALL, 0, nullptr, &n_devices);
    if (err != CL_SUCCESS || n_devices == 0) {
      per_platform += plugin_sdk::StrCat(per_platform.empty() ? "" : "; ", "platform '", pname,
                                  "': clGetDeviceIDs returned ", err, " (", ClErrorName(err), ")");
      continue;
    }
    std::vector<cl_device_id> ids(n_devices);
    if (clGetDeviceIDs(p, CL_DEVICE_TYPE_ALL, n_devices, ids.data(), nullptr) != CL_SUCCESS) {
      continue;
    }
    for (cl_device_id d : ids) {
      if (!DeviceValue<cl_bool>(d, CL_DEVICE_AVAILABLE) ||
          !DeviceValue<cl_bool>(d, CL_DEVICE_COMPILER_AVAILABLE)) {
        per_platform += plugin_sdk::StrCat(per_platform.empty() ? "" : "; ", "platform '", pname,
                                    "': device '", DeviceString(d, CL_DEVICE_NAME),
                                    "' is unavailable or has no compiler");
        continue;
      }
      ClDeviceInfo info;
      info.platform = p;
      info.device = d;
      info.type = DeviceValue<cl_device_type>(d, CL_DEVICE_TYPE);
      info.name = DeviceString(d, CL_DEVICE_NAME);
      info.vendor = DeviceString(d, CL_DEVICE_VENDOR);
      info.version = DeviceString(d, CL_DEVICE_VERSION);
      info.driver_version = DeviceString(d, CL_DRIVER_VERSION);
      info.platform_name = pname;
      info.extensions = DeviceString(d, CL_DEVICE_EXTENSIONS);
      info.global_mem = DeviceValue<cl_ulong>(d, CL_DEVICE_GLOBAL_MEM_SIZE);
      info.max_alloc = DeviceValue<cl_ulong>(d, CL_DEVICE_MAX_MEM_ALLOC_SIZE);
      info.max_work_group = DeviceValue<size_t>(d, CL_DEVICE_MAX_WORK_GROUP_SIZE);
      size_t item_sizes[16] = {};  // the first dimension bounds a 1-D work-group too
      if (clGetDeviceInfo(d, CL_DEVICE_MAX_WORK_ITEM_SIZES, sizeof item_sizes, item_sizes,
                          nullptr) == CL_SUCCESS &&
          item_sizes[0] != 0) {
        info.max_work_group = std::min(info.max_work_group, item_sizes[0]);
      }
      info.correctly_rounded_sqrt = (DeviceValue<cl_device_fp_config>(d, CL_DEVICE_SINGLE_FP_CONFIG) &
                                     CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT) != 0;
      out.push_back(std::move(info));
    }
  }
  if (out.empty()) {
    *reason = plugin_sdk::StrCat(n_platforms, " OpenCL platform(s) but no usable device: ", per_platform);
  }
  return out;
}

std::string DefaultCacheDir() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg != nullptr && xdg[0] == '/') return std::string(xdg) + "/kestrel/opencl";
  const char* home = std::getenv("HOME");
  if (home != nullptr && home[0] != '\0') return std::string(home) + "/.cache/kestrel/opencl";
  return "";
}

Status BuildProgram(cl_context context, const ClDeviceInfo& info, const std::string& source,
                    const std::string& options, const std::string& cache_dir, const LogFn& log,
                    cl_program* out, bool* from_cache) {
  *out = nullptr;
  *from_cache = false;
  uint64_t key = Fnv1a(info.name);
  key = Fnv1a("\n" + info.driver_version + "\n" + info.platform_name + "\n" + options + "\n", key);
  key = Fnv1a(source, key);
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(key));
  const std::string path = cache_dir.empty() ? "" : cache_dir + "/kernels-" + hex + ".bin";
  cl_device_id device = info.device;

  // 1. The cached binary, if any.
  if (!path.empty()) {
    std::ifstream f(path, std::ios::binary);
    if (f) {
      std::vector<unsigned char> bin((std::istreambuf_iterator<char>(f)),
                                     std::istreambuf_iterator<char>());
      const unsigned char* ptr = bin.data();
      const size_t size = bin.size();
      cl_int bin_status = CL_SUCCESS, err = CL_SUCCESS;
      cl_program p = bin.empty() ? nullptr
                                 : clCreateProgramWithBinary(context, 1, &device, &size, &ptr,
                                                             &bin_status, &err);
      if (p != nullptr && err == CL_SUCCESS && bin_status == CL_SUCCESS &&
          clBuildProgram(p, 1, &device, options.c_str(), nullptr, nullptr) == CL_SUCCESS) {
        *out = p;
        *from_cache = true;
        return Status();
      }
      if (p != nullptr) clReleaseProgram(p);
      log(true, plugin_sdk::StrCat("opencl: cached kernel binary ", path,
                            " is unusable; rebuilding from source"));
    }
  }

  // 2. From source.
  const char* text = source.c_str();
  const size_t length = source.size();
  cl_int err = CL_SUCCESS;
  cl_program p = clCreateProgramWithSource(context, 1, &text, &length, &err);
  KESTREL_CL_RETURN_IF_ERROR(err, "clCreateProgramWithSource");
  err = clBuildProgram(p, 1, &device, options.c_str(), nullptr, nullptr);
  if (err != CL_SUCCESS) {
    const std::string build_log = BuildLog(p, device);
    clReleaseProgram(p);
    return Status(KESTREL_PLUGIN_INTERNAL,
                  plugin_sdk::StrCat("clBuildProgram of the Kestrel kernels for '", info.name,
                              "' returned ", err, " (", ClErrorName(err), "): ", build_log));
  }
  *out = p;

  // 3. Store the binary (write to a temporary file, then rename: readers never see half a file).
  if (path.empty()) {
    log(true, "opencl: no kernel cache folder (set the plugin option cache_dir, XDG_CACHE_HOME "
              "or HOME); kernels are compiled at every load");
    return Status();
  }
  size_t bin_size = 0;
  if (clGetProgramInfo(p, CL_PROGRAM_BINARY_SIZES, sizeof bin_size, &bin_size, nullptr) !=
          CL_SUCCESS ||
      bin_size == 0) {
    log(true, "opencl: the driver returned no program binary; kernel cache disabled");
    return Status();
  }
  std::vector<unsigned char> bin(bin_size);
  unsigned char* bin_ptr = bin.data();
  if (clGetProgramInfo(p, CL_PROGRAM_BINARIES, sizeof bin_ptr, &bin_ptr, nullptr) != CL_SUCCESS) {
    log(true, "opencl: clGetProgramInfo(CL_PROGRAM_BINARIES) failed; kernel cache disabled");
    return Status();
  }
  if (!MakeDirs(cache_dir)) {
    log(true, plugin_sdk::StrCat("opencl: cannot create the kernel cache folder ", cache_dir, " (",
                          std::strerror(errno), "); kernels are compiled at every load"));
    return Status();
  }
  const std::string tmp = plugin_sdk::StrCat(path, ".tmp.", ::getpid());
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(bin.data()), static_cast<std::streamsize>(bin.size()));
    if (!f) {
      log(true, plugin_sdk::StrCat("opencl: cannot write the kernel cache file ", tmp,
                            "; kernels are compiled at every load"));
      std::remove(tmp.c_str());
      return Status();
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    log(true, plugin_sdk::StrCat("opencl: cannot rename ", tmp, " to ", path));
    std::remove(tmp.c_str());
    return Status();
  }
  log(false, plugin_sdk::StrCat("opencl: cached the kernel binary in ", path));
  return Status();
}

}  // namespace kestrel::plugins::opencl
