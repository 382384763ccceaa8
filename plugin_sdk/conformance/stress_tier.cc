// The stress tier: memory exhaustion and recovery, concurrent streams, and 10 000 small ops.
#include <dlfcn.h>

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "hal/src/host_api.h"
#include "plugin_sdk/conformance/kit.h"

namespace kestrel::conformance {
namespace {

constexpr const char* kTier = "stress";
// A device with more memory than this is not filled (it is often host RAM, shared with the kit):
// allocation stops at this budget, and then a request for more than the whole device must be
// refused with RESOURCE_EXHAUSTED.
constexpr uint64_t kHostBudget = uint64_t{512} << 20;

bool ClaimsAdd(hal::Device* dev, int64_t n) {
  const kestrel_tensor_arg_t a = A(Desc(KESTREL_DTYPE_F32, {1, n}));
  auto q = dev->Query(MakeOp(KESTREL_OP_ADD, {a, a}, {a}, {}));
  return q.ok() && q->level != KESTREL_OP_UNSUPPORTED;
}

// out = a + b through the HAL on [1, n] buffers.
absl::Status AddOn(hal::Device* dev, const hal::Buffer& a, const hal::Buffer& b,
                   const hal::Buffer& out, int64_t n) {
  kestrel_tensor_arg_t args[3];
  const kestrel_op_desc_t op = AddOp(a.handle(), b.handle(), out.handle(), n, args);
  return dev->Execute(op, nullptr);
}

void AllocateUntilExhausted(Target& t, Report& r) {
  const std::string id = "allocate_until_exhausted";
  const uint64_t memory = t.dev->caps().memory_bytes;
  const uint64_t chunk = std::clamp<uint64_t>(memory / 16, uint64_t{1} << 20, uint64_t{64} << 20);
  std::vector<hal::Buffer> held;
  uint64_t total = 0;
  absl::Status refused;
  while (total < kHostBudget) {
    auto b = t.dev->Allocate(chunk);
    if (!b.ok()) {
      refused = b.status();
      break;
    }
    total += chunk;
    held.push_back(std::move(*b));
  }
  std::string how;
  if (refused.ok()) {
    // Not filled (host memory): one request for more than the device has must be refused.
    auto huge = t.dev->Allocate(std::max<uint64_t>(memory, kHostBudget) * 4);
    if (huge.ok()) {
      r.Fail(kTier, id, absl::StrCat("a buffer of 4x the device's ", memory, " bytes was granted"));
      return;
    }
    refused = huge.status();
    how = absl::StrCat("stopped at the kit's ", kHostBudget >> 20, " MiB budget; a request for 4x "
                       "the device's memory was refused");
  } else {
    how = absl::StrCat("refused after ", total >> 20, " MiB in ", chunk >> 20, " MiB buffers");
  }
  if (refused.code() != absl::StatusCode::kResourceExhausted) {
    r.Fail(kTier, id, absl::StrCat("expected RESOURCE_EXHAUSTED, got ", refused.ToString()));
    return;
  }
  held.clear();
  // Recovery: memory is usable again and the device still computes.
  auto a = t.dev->Allocate(chunk);
  if (!a.ok()) {
    r.Fail(kTier, id, absl::StrCat("after freeing everything, allocating ", chunk, " bytes failed: ",
                                   a.status().message()));
    return;
  }
  std::vector<float> x(64, 1.5f), y(64, 0.0f);
  if (auto s = t.dev->Write(*a, 0, x.data(), 256); !s.ok()) {
    r.Fail(kTier, id, absl::StrCat("write after recovery: ", s.message()));
    return;
  }
  if (auto s = t.dev->Read(*a, 0, y.data(), 256); !s.ok() || y != x) {
    r.Fail(kTier, id, "the device's memory is wrong after recovery");
    return;
  }
  r.Pass(kTier, id, absl::StrCat(how, "; recovered: ", refused.message()));
}

void TenThousandSmallOps(Target& t, Report& r) {
  const std::string id = "10k_small_ops";
  const int64_t n = 16;
  if (!ClaimsAdd(t.dev, n)) {
    r.Skip(kTier, id, "needs F32 ADD, which the device does not claim");
    return;
  }
  auto x = t.dev->Allocate(n * 4), one = t.dev->Allocate(n * 4);
  if (!x.ok() || !one.ok()) {
    r.Fail(kTier, id, "allocation failed");
    return;
  }
  std::vector<float> init(n), ones(n, 1.0f), out(n, 0.0f);
  for (int64_t i = 0; i < n; ++i) init[i] = static_cast<float>(i);
  if (!t.dev->Write(*x, 0, init.data(), n * 4).ok() || !t.dev->Write(*one, 0, ones.data(), n * 4).ok()) {
    r.Fail(kTier, id, "write failed");
    return;
  }
  for (int i = 0; i < 10000; ++i) {
    if (auto s = AddOn(t.dev, *x, *one, *x, n); !s.ok()) {
      r.Fail(kTier, id, absl::StrCat("op ", i, ": ", s.message()));
      return;
    }
  }
  if (auto s = t.dev->Read(*x, 0, out.data(), n * 4); !s.ok()) {
    r.Fail(kTier, id, absl::StrCat("read: ", s.message()));
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    if (out[i] != init[i] + 10000.0f) {
      r.Fail(kTier, id, absl::StrCat("element ", i, " is ", out[i], " after 10000 in-place ADDs of 1, want ",
                                     init[i] + 10000.0f));
      return;
    }
  }
  r.Pass(kTier, id, "10000 in-place ADDs of [1, 16], every one applied in order");
}

// Four streams with work in flight at once: per round, every stream gets a write, an ADD and a
// read before any stream is synchronised.
std::string ConcurrentStreams(const std::string& path, const std::string& device_name) {
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) return "dlopen failed";
  auto get_api = reinterpret_cast<kestrel_plugin_get_api_fn>(dlsym(handle, KESTREL_PLUGIN_ENTRY_SYMBOL));
  const kestrel_plugin_api_t* api = nullptr;
  std::string error;
  auto ok = [&](kestrel_plugin_status_t* s, const char* what) {
    absl::Status st = hal::TakePluginStatus(s, what);
    if (!st.ok() && error.empty()) error = st.ToString();
    return st.ok();
  };
  if (get_api == nullptr ||
      !ok(get_api(hal::ProcessHostApi(), KESTREL_PLUGIN_API_MAJOR, KESTREL_PLUGIN_API_MINOR, &api), "get_api") ||
      api == nullptr || !ok(api->init(nullptr, 0), "init")) {
    return "cannot load the plugin: " + error;
  }
  char reason[128] = {0};
  const uint32_t count = api->device_count(reason, sizeof reason);
  kestrel_plugin_device_t* dev = nullptr;
  for (uint32_t i = 0; i < count && dev == nullptr; ++i) {
    kestrel_device_caps_t caps{};
    caps.struct_size = sizeof caps;
    if (ok(api->device_get_caps(i, &caps), "caps") && device_name == caps.name) {
      ok(api->device_open(i, &dev), "device_open");
    }
  }
  if (dev == nullptr) {
    api->shutdown();
    return "device_open: " + error;
  }
  constexpr int kStreams = 4, kRounds = 25;
  const int64_t n = 4096;
  kestrel_plugin_stream_t* s[kStreams] = {};
  kestrel_plugin_buffer_t* buf[kStreams][3] = {};
  std::vector<std::vector<float>> in(kStreams), out(kStreams * kRounds, std::vector<float>(n));
  Rng rng(301);
  for (int k = 0; k < kStreams && error.empty(); ++k) {
    in[k] = rng.Floats(n);
    ok(api->stream_create(dev, &s[k]), "stream_create");
    for (int j = 0; j < 3; ++j) ok(api->buffer_alloc(dev, n * 4, 0, &buf[k][j]), "buffer_alloc");
  }
  for (int round = 0; round < kRounds && error.empty(); ++round) {
    for (int k = 0; k < kStreams && error.empty(); ++k) {
      kestrel_tensor_arg_t args[3];
      const kestrel_op_desc_t op = AddOp(buf[k][0], buf[k][1], buf[k][2], n, args);
      ok(api->buffer_write(dev, s[k], buf[k][0], 0, in[k].data(), n * 4), "write") &&
          ok(api->buffer_write(dev, s[k], buf[k][1], 0, in[(k + 1) % kStreams].data(), n * 4), "write") &&
          ok(api->op_execute(dev, s[k], &op, nullptr), "op_execute") &&
          ok(api->buffer_read(dev, s[k], buf[k][2], 0, out[round * kStreams + k].data(), n * 4), "read");
    }
  }
  for (int k = 0; k < kStreams; ++k) {
    if (s[k] != nullptr) ok(api->stream_synchronize(dev, s[k]), "stream_synchronize");
  }
  for (int round = 0; round < kRounds && error.empty(); ++round) {
    for (int k = 0; k < kStreams && error.empty(); ++k) {
      const std::vector<float>& o = out[round * kStreams + k];
      for (int64_t i = 0; i < n; ++i) {
        if (o[i] != in[k][i] + in[(k + 1) % kStreams][i]) {
          error = absl::StrCat("stream ", k, " round ", round, " element ", i, " is wrong");
          break;
        }
      }
    }
  }
  for (int k = 0; k < kStreams; ++k) {
    for (int j = 0; j < 3; ++j) api->buffer_free(dev, buf[k][j]);
    if (s[k] != nullptr) api->stream_destroy(dev, s[k]);
  }
  api->device_close(dev);
  api->shutdown();
  return error;
}

}  // namespace

void RunStressTier(Target& t, Report& r) {
  AllocateUntilExhausted(t, r);
  if (!t.dev->caps().async) {
    r.Skip(kTier, "concurrent_streams", "synchronous device (caps.async = 0): no streams");
  } else if (!ClaimsAdd(t.dev, 4096)) {
    r.Skip(kTier, "concurrent_streams", "needs F32 ADD, which the device does not claim");
  } else {
    std::string path;
    for (const hal::PluginRecord& p : t.registry->plugins()) {
      if (p.name == t.plugin_name) path = p.path;
    }
    const std::string failure = ConcurrentStreams(path, t.dev->name());
    if (failure.empty()) {
      r.Pass(kTier, "concurrent_streams", "4 streams x 25 rounds of write, ADD, read in flight at once");
    } else {
      r.Fail(kTier, "concurrent_streams", failure);
    }
  }
  TenThousandSmallOps(t, r);
}

}  // namespace kestrel::conformance
