// The llm tier: the patterns an LLM serving engine drives a device through. Single ops (paged
// attention shapes, MoE routing ties) are op cases; multi-step patterns (copy-on-write, swap, a
// speculative accept/rollback) run as programs over KV caches that stay on the device between
// steps, and the final state is compared with the reference plugin's; stream/event ordering uses
// the raw table.
#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "hal/src/host_api.h"
#include "kestrel/plugin_sdk/accuracy.h"
#include "kestrel/plugin_sdk/op_contract.h"
#include "plugin_sdk/conformance/kit.h"

namespace kestrel::conformance {
namespace {

constexpr const char* kTier = "llm";

// ---- programs: ops over persistent device tensors ------------------------------------------------
// A step's tensor is its own (uploaded for the step) or, with slot >= 0, one of the program's
// persistent tensors (the KV caches), which keep their contents from step to step.
struct Step {
  OpCase c;
  std::vector<int> in_slot, out_slot;  // per tensor: -1 own, else the persistent slot
};

struct Program {
  std::vector<Tensor> persistent;
  std::vector<Step> steps;
  int checked_step = -1;  // whose output 0 is compared as F32 too (-1: none)
};

struct ProgramResult {
  std::vector<std::vector<uint8_t>> persistent;
  std::vector<uint8_t> checked;
};

absl::Status Upload(hal::Device* dev, const Tensor& t, hal::Buffer* out) {
  const uint64_t size = plugin_sdk::TensorBytes(t.desc);
  auto b = dev->Allocate(std::max<uint64_t>(size, 1));
  if (!b.ok()) return b.status();
  std::vector<uint8_t> init = t.bytes.empty() ? std::vector<uint8_t>(size, 0xFF) : t.bytes;
  if (size > 0) {
    if (auto s = dev->Write(*b, 0, init.data(), size); !s.ok()) return s;
  }
  *out = std::move(*b);
  return absl::OkStatus();
}

absl::StatusOr<ProgramResult> RunProgram(hal::Device* dev, const Program& p) {
  std::vector<hal::Buffer> slots(p.persistent.size());
  for (size_t i = 0; i < p.persistent.size(); ++i) {
    if (auto s = Upload(dev, p.persistent[i], &slots[i]); !s.ok()) return s;
  }
  ProgramResult result;
  for (size_t si = 0; si < p.steps.size(); ++si) {
    const Step& step = p.steps[si];
    std::vector<hal::Buffer> own;
    own.reserve(step.c.in.size() + step.c.out.size());
    auto arg = [&](const Tensor& t, int slot, kestrel_tensor_arg_t* a) -> absl::Status {
      a->desc = t.desc;
      if (slot >= 0) {
        a->buffer = slots[slot].handle();
        return absl::OkStatus();
      }
      own.emplace_back();
      if (auto s = Upload(dev, t, &own.back()); !s.ok()) return s;
      a->buffer = own.back().handle();
      return absl::OkStatus();
    };
    std::vector<kestrel_tensor_arg_t> in(step.c.in.size()), out(step.c.out.size());
    for (size_t i = 0; i < in.size(); ++i) {
      if (auto s = arg(step.c.in[i], step.in_slot[i], &in[i]); !s.ok()) return s;
    }
    for (size_t i = 0; i < out.size(); ++i) {
      if (auto s = arg(step.c.out[i], step.out_slot[i], &out[i]); !s.ok()) return s;
    }
    const kestrel_op_desc_t op = MakeOp(step.c.kind, in, out, step.c.params);
    if (auto s = dev->Execute(op, nullptr); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("step ", si, " (", plugin_sdk::OpKindName(step.c.kind),
                                                 "): ", s.message()));
    }
    if (static_cast<int>(si) == p.checked_step) {
      result.checked.resize(plugin_sdk::TensorBytes(step.c.out[0].desc));
      const hal::Buffer* b = nullptr;
      for (const hal::Buffer& x : own) {
        if (x.handle() == out[0].buffer) b = &x;
      }
      if (b == nullptr) return absl::InternalError("the checked output is not the step's own");
      if (auto s = dev->Read(*b, 0, result.checked.data(), result.checked.size()); !s.ok()) return s;
    }
  }
  for (size_t i = 0; i < slots.size(); ++i) {
    result.persistent.emplace_back(plugin_sdk::TensorBytes(p.persistent[i].desc));
    if (auto s = dev->Read(slots[i], 0, result.persistent[i].data(), result.persistent[i].size());
        !s.ok()) {
      return s;
    }
  }
  return result;
}

void CheckProgram(Target& t, Report& r, const std::string& id, const Program& p) {
  for (const Step& step : p.steps) {
    std::vector<kestrel_tensor_arg_t> in, out;
    for (const Tensor& x : step.c.in) in.push_back(A(x.desc));
    for (const Tensor& x : step.c.out) out.push_back(A(x.desc));
    auto q = t.dev->Query(MakeOp(step.c.kind, in, out, step.c.params));
    if (!q.ok() || q->level == KESTREL_OP_UNSUPPORTED) {
      r.Skip(kTier, id, absl::StrCat(plugin_sdk::OpKindName(step.c.kind),
                                     " of this pattern is not claimed by the device"));
      return;
    }
  }
  auto want = RunProgram(t.ref, p);
  if (!want.ok()) {
    r.Fail(kTier, id, absl::StrCat("the reference plugin failed (a kit bug): ", want.status().message()));
    return;
  }
  auto got = RunProgram(t.dev, p);
  if (!got.ok()) {
    r.Fail(kTier, id, std::string(got.status().message()));
    return;
  }
  for (size_t i = 0; i < want->persistent.size(); ++i) {
    if (want->persistent[i] != got->persistent[i]) {
      r.Fail(kTier, id, absl::StrCat("KV cache ", i, " differs from the reference after the sequence"));
      return;
    }
  }
  CheckResult res{absl::StrCat(kTier, "/", id), kTier, Outcome::kPass, "KV caches bit for bit"};
  if (p.checked_step >= 0) {
    OpCase probe;
    probe.out = {p.steps[p.checked_step].c.out[0]};
    probe.tol = plugin_sdk::OpTolerance(t.tier, KESTREL_OP_PAGED_ATTENTION, KESTREL_DTYPE_F32);
    const Comparison cmp = Compare(probe, {want->checked}, {got->checked});
    res.error = cmp.max_error;
    res.tolerance = probe.tol;
    if (!cmp.ok) {
      res.outcome = Outcome::kFail;
      res.message = "attention after the sequence: " + cmp.message;
    }
  }
  r.Add(std::move(res));
}

// ---- the patterns --------------------------------------------------------------------------------
constexpr int64_t kNb = 6, kB = 4, kHkv = 2, kDh = 8, kH = 4;

Tensor Cache(Rng& rng) {
  return {Desc(KESTREL_DTYPE_F32, {kNb, kB, kHkv, kDh}), RandomCache(rng, KESTREL_DTYPE_F32, kNb * kB * kHkv * kDh),
          false};
}

Step BlockCopy(const std::vector<int32_t>& pairs) {
  Step s;
  s.c.kind = KESTREL_OP_KV_BLOCK_COPY;
  s.c.in = {I32({static_cast<int64_t>(pairs.size() / 2), 2}, pairs)};
  s.c.out = {Out(KESTREL_DTYPE_F32, {kNb, kB, kHkv, kDh}), Out(KESTREL_DTYPE_F32, {kNb, kB, kHkv, kDh})};
  s.in_slot = {-1};
  s.out_slot = {0, 1};
  return s;
}

Step KvWrite(Rng& rng, const std::vector<int32_t>& slots) {
  const int64_t n = static_cast<int64_t>(slots.size());
  Step s;
  s.c.kind = KESTREL_OP_KV_WRITE;
  s.c.in = {F32({n, kHkv, kDh}, rng.Floats(n * kHkv * kDh)), F32({n, kHkv, kDh}, rng.Floats(n * kHkv * kDh)),
            I32({n}, slots)};
  s.c.out = {Out(KESTREL_DTYPE_F32, {kNb, kB, kHkv, kDh}), Out(KESTREL_DTYPE_F32, {kNb, kB, kHkv, kDh})};
  s.in_slot = {-1, -1, -1};
  s.out_slot = {0, 1};
  return s;
}

// One sequence's attention over `table` (kNb-entry row padded with -1), q_len queries, kv_len.
Step Attend(Rng& rng, const std::vector<int32_t>& table, int64_t q_len, int64_t kv_len,
            const std::vector<int32_t>& parents = {}) {
  Step s;
  s.c.kind = KESTREL_OP_PAGED_ATTENTION;
  std::vector<int32_t> row(kNb, -1);
  std::copy(table.begin(), table.end(), row.begin());
  s.c.in = {F32({q_len, kH, kDh}, rng.Floats(q_len * kH * kDh, -2, 2)),
            Out(KESTREL_DTYPE_F32, {kNb, kB, kHkv, kDh}), Out(KESTREL_DTYPE_F32, {kNb, kB, kHkv, kDh}),
            I32({1, kNb}, row), I32({2}, {0, static_cast<int32_t>(q_len)}),
            I32({1}, {static_cast<int32_t>(kv_len)})};
  s.in_slot = {-1, 0, 1, -1, -1, -1};
  kestrel_op_attention_params_t p{};
  p.n_heads = kH;
  p.n_kv_heads = kHkv;
  p.head_dim = kDh;
  p.block_size = kB;
  p.causal = 1;
  p.scale = 1.0f / std::sqrt(static_cast<float>(kDh));
  if (!parents.empty()) {
    s.c.in.push_back(I32({q_len}, parents));
    s.in_slot.push_back(-1);
    p.tree_mask = 1;
  }
  s.c.params = Params(p);
  s.c.out = {Out(KESTREL_DTYPE_F32, {q_len, kH, kDh})};
  s.out_slot = {-1};
  return s;
}

void Patterns(Target& t, Report& r) {
  Rng rng(201);
  {  // copy-on-write: a fork shares block 2; before writing its own tokens it gets a copy (5)
    Program p;
    p.persistent = {Cache(rng), Cache(rng)};
    p.steps = {BlockCopy({2, 5}), KvWrite(rng, {5 * kB + 2, 5 * kB + 3}),
               Attend(rng, {0, 1, 5}, 2, 2 * kB + 4)};
    p.checked_step = 2;
    CheckProgram(t, r, "kv/copy_on_write", p);
  }
  {  // swap: blocks 1 and 3 exchanged through the spare block 5 (pairs applied in order)
    Program p;
    p.persistent = {Cache(rng), Cache(rng)};
    p.steps = {BlockCopy({1, 5, 3, 1, 5, 3})};
    CheckProgram(t, r, "kv/swap_in_order", p);
  }
  {  // speculative decoding: 6 committed tokens (blocks 0, 1); 3 draft tokens written and verified
     // with a chain tree mask; 1 accepted, so the next 2 tokens overwrite the rejected drafts'
     // slots; a decode step reads the result.
    Program p;
    p.persistent = {Cache(rng), Cache(rng)};
    p.steps = {KvWrite(rng, {6, 7, 8}), Attend(rng, {0, 1, 2}, 3, 9, {-1, 0, 1}),
               KvWrite(rng, {7, 8}), Attend(rng, {0, 1, 2}, 1, 9)};
    p.checked_step = 3;
    CheckProgram(t, r, "speculative/accept_rollback", p);
  }
}

void AttentionShapes(Target& t, Report& r) {
  Rng rng(202);
  const std::vector<Seq> mixed = {{5, 5}, {1, 70}, {3, 40}, {0, 9}, {1, 16}};
  CheckCase(t, r, kTier, "paged_attention/scattered_blocks_varlen",
            Attention(rng, 8, 4, 8, 16, KESTREL_DTYPE_F32, KESTREL_DTYPE_F32, true, mixed),
            KESTREL_DTYPE_F32);
  CheckCase(t, r, kTier, "paged_attention/gqa_h8_hkv2",
            Attention(rng, 8, 2, 16, 16, KESTREL_DTYPE_F32, KESTREL_DTYPE_F32, true, {{4, 20}, {1, 33}}),
            KESTREL_DTYPE_F32);
  CheckCase(t, r, kTier, "paged_attention/mqa_h4_hkv1",
            Attention(rng, 4, 1, 32, 16, KESTREL_DTYPE_F32, KESTREL_DTYPE_F32, true, {{2, 17}}),
            KESTREL_DTYPE_F32);
  CheckCase(t, r, kTier, "paged_attention/tree_mask",
            Attention(rng, 4, 2, 8, 16, KESTREL_DTYPE_F32, KESTREL_DTYPE_F32, true, {{4, 10}, {3, 3}}, true),
            KESTREL_DTYPE_F32);
  CheckCase(t, r, kTier, "paged_attention/block_size_1",
            Attention(rng, 4, 2, 8, 1, KESTREL_DTYPE_F32, KESTREL_DTYPE_F32, true, {{3, 12}}),
            KESTREL_DTYPE_F32);
  // Sliding windows (PAGED_ATTENTION op_version 2, plugin ABI 1.3), with the table entries of
  // blocks before every query's window freed (-1) as a serving engine leaves them.
  struct Window {
    const char* id;
    int64_t h, hkv, dh, b;
    std::vector<Seq> seqs;
    uint32_t window;
    bool tree;
  };
  const Window windows[] = {
      {"decode_past_window", 4, 1, 64, 16, {{1, 300}}, 128, false},
      {"window_below_block_varlen", 8, 4, 8, 16, {{1, 60}, {7, 40}, {1, 3}}, 5, false},
      {"prefill_longer_than_window", 8, 2, 16, 4, {{50, 50}}, 37, false},
      {"chunked_prefill_window_above_block", 4, 2, 16, 32, {{9, 150}, {20, 64}}, 33, false},
      {"tree_mask", 4, 2, 8, 8, {{4, 40}, {3, 30}}, 12, true},
  };
  for (const Window& w : windows) {
    for (uint32_t cache : {KESTREL_DTYPE_F32, KESTREL_DTYPE_F16}) {
      CheckCase(t, r, kTier,
                absl::StrCat("paged_attention/sliding_window/", w.id, "/", Name(cache)),
                WindowedAttention(Attention(rng, w.h, w.hkv, w.dh, w.b, cache, cache, true, w.seqs,
                                            w.tree),
                                  w.window),
                cache);
    }
  }
}

// ---- streams and events through the raw table ----------------------------------------------------
struct RawDevice {
  const kestrel_plugin_api_t* api = nullptr;
  kestrel_plugin_device_t* dev = nullptr;
  bool initialized = false;
  std::string error;
  ~RawDevice() {
    if (dev != nullptr) api->device_close(dev);
    if (initialized && api->shutdown != nullptr) api->shutdown();
  }
  bool Ok(kestrel_plugin_status_t* s, const std::string& what) {
    absl::Status st = hal::TakePluginStatus(s, what);
    if (!st.ok() && error.empty()) error = st.ToString();
    return st.ok();
  }
};

kestrel_op_desc_t Add(kestrel_plugin_buffer_t* a, kestrel_plugin_buffer_t* b,
                      kestrel_plugin_buffer_t* out, int64_t n, kestrel_tensor_arg_t args[3]) {
  return AddOp(a, b, out, n, args);
}

std::string StreamOrdering(const std::string& path, const std::string& device_name) {
  RawDevice d;
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) return "dlopen failed";
  auto get_api = reinterpret_cast<kestrel_plugin_get_api_fn>(dlsym(handle, KESTREL_PLUGIN_ENTRY_SYMBOL));
  if (get_api == nullptr ||
      !d.Ok(get_api(hal::ProcessHostApi(), KESTREL_PLUGIN_API_MAJOR, KESTREL_PLUGIN_API_MINOR, &d.api), "get_api") ||
      d.api == nullptr) {
    return "no table: " + d.error;
  }
  const kestrel_plugin_api_t* api = d.api;
  if (!d.Ok(api->init(nullptr, 0), "init")) return d.error;
  d.initialized = true;
  char reason[128] = {0};
  const uint32_t count = api->device_count(reason, sizeof reason);
  uint32_t index = 0;
  for (; index < count; ++index) {
    kestrel_device_caps_t caps{};
    caps.struct_size = sizeof caps;
    if (d.Ok(api->device_get_caps(index, &caps), "caps") && device_name == caps.name) break;
  }
  if (index == count || !d.Ok(api->device_open(index, &d.dev), "device_open")) return "device_open: " + d.error;
  const int64_t n = 1 << 16;
  Rng rng(203);
  const std::vector<float> a = rng.Floats(n);
  std::vector<float> out(n, std::nanf(""));
  kestrel_plugin_stream_t *s1 = nullptr, *s2 = nullptr;
  if (!d.Ok(api->stream_create(d.dev, &s1), "stream_create") ||
      !d.Ok(api->stream_create(d.dev, &s2), "stream_create")) {
    return d.error;
  }
  kestrel_plugin_buffer_t *ba = nullptr, *bb = nullptr, *bc = nullptr;
  for (auto** b : {&ba, &bb, &bc}) {
    if (!d.Ok(api->buffer_alloc(d.dev, n * 4, 0, b), "buffer_alloc")) return d.error;
  }
  kestrel_tensor_arg_t args1[3], args2[3];
  const kestrel_op_desc_t first = Add(ba, ba, bb, n, args1);   // b = 2a on stream 1
  const kestrel_op_desc_t second = Add(bb, bb, bc, n, args2);  // c = 2b on stream 2, after it
  kestrel_plugin_event_t* e = nullptr;
  std::string failure;
  if (!d.Ok(api->buffer_write(d.dev, s1, ba, 0, a.data(), n * 4), "write") ||
      !d.Ok(api->op_execute(d.dev, s1, &first, nullptr), "op_execute") ||
      !d.Ok(api->event_record(d.dev, s1, &e), "event_record") ||
      !d.Ok(api->stream_wait_event(d.dev, s2, e), "stream_wait_event") ||
      !d.Ok(api->op_execute(d.dev, s2, &second, nullptr), "op_execute") ||
      !d.Ok(api->buffer_read(d.dev, s2, bc, 0, out.data(), n * 4), "read") ||
      !d.Ok(api->stream_synchronize(d.dev, s2), "stream_synchronize")) {
    failure = d.error;
  } else {
    for (int64_t i = 0; i < n; ++i) {
      if (out[i] != 4.0f * a[i]) {
        failure = absl::StrCat("element ", i, " is ", out[i], ", want ", 4.0f * a[i],
                               ": work ran out of stream/event order");
        break;
      }
    }
  }
  api->stream_synchronize(d.dev, s1);
  if (e != nullptr) api->event_destroy(d.dev, e);
  for (auto* b : {ba, bb, bc}) api->buffer_free(d.dev, b);
  api->stream_destroy(d.dev, s1);
  api->stream_destroy(d.dev, s2);
  return failure;
}

}  // namespace

void RunLlmTier(Target& t, Report& r) {
  AttentionShapes(t, r);
  Patterns(t, r);
  Rng rng(204);
  CheckCase(t, r, kTier, "moe/routing_ties_lower_id_wins", MoeCase(rng, KESTREL_DTYPE_F32, 6, 32, 16, 6, 2, true),
            KESTREL_DTYPE_F32);
  if (!t.dev->caps().async) {
    r.Skip(kTier, "streams/event_ordering", "synchronous device (caps.async = 0): no streams");
    return;
  }
  std::vector<kestrel_tensor_arg_t> args(3, A(Desc(KESTREL_DTYPE_F32, {1, 8})));
  auto q = t.dev->Query(MakeOp(KESTREL_OP_ADD, {args[0], args[1]}, {args[2]}, {}));
  if (!q.ok() || q->level == KESTREL_OP_UNSUPPORTED) {
    r.Skip(kTier, "streams/event_ordering", "needs F32 ADD, which the device does not claim");
    return;
  }
  std::string path;
  for (const hal::PluginRecord& p : t.registry->plugins()) {
    if (p.name == t.plugin_name) path = p.path;
  }
  const std::string failure = StreamOrdering(path, t.dev->name());
  if (failure.empty()) {
    r.Pass(kTier, "streams/event_ordering", "write, op, event on one stream; wait, op, read on another");
  } else {
    r.Fail(kTier, "streams/event_ordering", failure);
  }
}

}  // namespace kestrel::conformance
