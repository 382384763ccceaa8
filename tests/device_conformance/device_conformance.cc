// The shared device-conformance harness: see device_conformance.h.
#include "tests/device_conformance/device_conformance.h"

#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <numeric>
#include <random>
#include <utility>

#include "gtest/gtest.h"
#include "hal/src/host_api.h"
#include "kestrel/plugin_sdk/half.h"
#include "kestrel/plugin_sdk/reference_kernels.h"
#include "kestrel/plugin_sdk/op_contract.h"

namespace kestrel::conformance {

using plugin_sdk::testing_util::RandomWeights;
using plugin_sdk::testing_util::TestSeed;
namespace ref = plugin_sdk;

std::string PluginDir() {
  const char* d = std::getenv("KESTREL_PLUGIN_DIR");
  return d != nullptr ? d : "";
}
std::string PluginPath(const std::string& name) {
  return PluginDir() + "/libkestrel_plugin_" + name + ".so";
}

const Devices& LoadDevices(const std::string& plugin) {
  static std::mutex mu;
  static auto* loaded = new std::map<std::string, Devices*>;  // kept for the process
  std::lock_guard<std::mutex> lock(mu);
  Devices*& env = (*loaded)[plugin];
  if (env != nullptr) return *env;
  env = new Devices;
  env->plugin = plugin;
  env->registry =
      hal::PluginRegistry::Create(PluginPath("ref") + ":" + PluginPath(plugin), nullptr);
  env->ref = env->registry->ReferenceDevice();
  auto dev = env->registry->FindDevice(plugin);
  if (dev.ok()) {
    env->dev = *dev;
  } else {
    env->why_not = std::string(dev.status().message());
    for (const auto& p : env->registry->plugins()) {
      if (p.name == plugin || p.path.find(plugin) != std::string::npos) {
        env->why_not = p.skip_reason;
      }
    }
  }
  return *env;
}

void Check(const Devices& env, const OpCase& c, const std::string& what) {
  SCOPED_TRACE(::testing::Message() << what << "; random seed " << TestSeed()
                                    << " (rerun with KESTREL_TEST_SEED=" << TestSeed() << ")");
  std::vector<std::vector<uint8_t>> want, got;
  absl::Status s = RunReference(env.ref, c, &want);
  ASSERT_TRUE(s.ok()) << "ref: " << s;
  s = RunOn(env.dev, c, &got);
  ASSERT_TRUE(s.ok()) << env.plugin << ": " << s;
  for (size_t i = 0; i < c.out.size(); ++i) {
    ASSERT_EQ(got[i].size(), want[i].size());
    if (c.exact || c.out[i].desc.dtype != KESTREL_DTYPE_F32) {
      EXPECT_TRUE(got[i] == want[i]) << "output " << i << " differs from the reference";
      continue;
    }
    const size_t n = want[i].size() / 4;
    std::vector<float> g(n), w(n);
    std::memcpy(g.data(), got[i].data(), n * 4);
    std::memcpy(w.data(), want[i].data(), n * 4);
    std::vector<double> wd(w.begin(), w.end());
    for (size_t k = 0; k < n; ++k) ASSERT_FALSE(std::isnan(w[k])) << "reference NaN at " << k;
    const double err = plugin_sdk::testing_util::RelErr(g, wd);
    EXPECT_LE(err, c.tol) << "output " << i << ": relative norm error " << err << " (n=" << n
                          << ")";
  }
}

// ---- raw plugin table ------------------------------------------------------------------------------
RawPlugin::RawPlugin(const std::string& plugin, const hal::PluginOptions& options) {
  sink_ = hal::AddLogSink([this](kestrel_plugin_log_level_t level, const std::string& m) {
    std::lock_guard<std::mutex> lock(logs_mu_);
    logs_ += std::to_string(level) + ": " + m + "\n";
  });
  void* handle = dlopen(PluginPath(plugin).c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    error_ = std::string("dlopen failed: ") + dlerror();
    return;
  }
  auto get_api = reinterpret_cast<kestrel_plugin_get_api_fn>(dlsym(handle, KESTREL_PLUGIN_ENTRY_SYMBOL));
  if (get_api == nullptr ||
      !Check(get_api(hal::ProcessHostApi(), KESTREL_PLUGIN_API_MAJOR, KESTREL_PLUGIN_API_MINOR, &api_),
             "get_api") ||
      api_ == nullptr) {
    error_ += "no plugin table";
    api_ = nullptr;
    return;
  }
  std::vector<kestrel_plugin_option_t> opts;
  for (const auto& [k, v] : options) opts.push_back({k.c_str(), v.c_str()});
  if (!Check(api_->init(opts.data(), opts.size()), "init")) return;
  initialized_ = true;
  Check(api_->device_open(0, &dev_), "device_open");
}

RawPlugin::~RawPlugin() {
  if (dev_ != nullptr) api_->device_close(dev_);
  if (initialized_) api_->shutdown();
  hal::RemoveLogSink(sink_);
}

std::string RawPlugin::logs() const {
  std::lock_guard<std::mutex> lock(logs_mu_);
  return logs_;
}

bool RawPlugin::Check(kestrel_plugin_status_t* s, const std::string& what) {
  absl::Status st = hal::TakePluginStatus(s, what);
  if (!st.ok()) error_ += st.ToString() + "\n";
  return st.ok();
}

// ---- the cases every device plugin shares -----------------------------------------------------------
namespace cases {

void AddAndSwiglu(const Devices& env) {
  Rng rng(1);
  for (int64_t n : {1, 7, 172, 1031}) {
    for (uint32_t kind : {KESTREL_OP_ADD, KESTREL_OP_SWIGLU}) {
      OpCase c;
      c.kind = kind;
      c.in = {F32({3, n}, rng.Floats(3 * n, -4, 4)), F32({3, n}, rng.Floats(3 * n, -4, 4))};
      c.out = {Out(KESTREL_DTYPE_F32, {3, n})};
      Check(env, c, "kind " + std::to_string(kind) + " n=" + std::to_string(n));
    }
  }
}

void AddInPlace(const Devices& env) {
  Rng rng(2);
  OpCase c;
  c.kind = KESTREL_OP_ADD;
  c.in = {F32({5, 33}, rng.Floats(165)), F32({5, 33}, rng.Floats(165))};
  c.out = {Out(KESTREL_DTYPE_F32, {5, 33})};
  c.out_alias = 1;
  Check(env, c, "ADD out = b");
}

void RmsNorm(const Devices& env) {
  Rng rng(3);
  for (int64_t d : {8, 64, 72, 260}) {
    for (int64_t t : {1, 6}) {
      OpCase c;
      c.kind = KESTREL_OP_RMSNORM;
      c.in = {F32({t, d}, rng.Floats(t * d, -3, 3)), F32({d}, rng.Floats(d, 0.5f, 1.5f))};
      c.out = {Out(KESTREL_DTYPE_F32, {t, d})};
      c.params = Params(kestrel_op_rmsnorm_params_t{0, 1e-5f});
      Check(env, c, "D=" + std::to_string(d) + " T=" + std::to_string(t));
    }
  }
}

void Rope(const Devices& env) {
  Rng rng(4);
  struct Shape { int64_t t, h, dh; uint32_t n_rot; };
  for (const Shape& s : {Shape{1, 8, 8, 8}, Shape{5, 3, 24, 16}, Shape{4, 2, 64, 64}}) {
    for (uint32_t style : {KESTREL_ROPE_STYLE_NORM, KESTREL_ROPE_STYLE_NEOX}) {
      for (bool in_place : {false, true}) {
        std::vector<int32_t> pos(s.t);
        for (auto& p : pos) p = rng.Int(0, 700);
        OpCase c;
        c.kind = KESTREL_OP_ROPE;
        c.in = {F32({s.t, s.h, s.dh}, rng.Floats(s.t * s.h * s.dh)), I32({s.t}, pos)};
        c.out = {Out(KESTREL_DTYPE_F32, {s.t, s.h, s.dh})};
        c.params = Params(kestrel_op_rope_params_t{0, style, s.n_rot, 10000.0f, 1.0f});
        c.out_alias = in_place ? 0 : -1;
        Check(env, c, "style " + std::to_string(style) + " Dh=" + std::to_string(s.dh) +
                     (in_place ? " in place" : ""));
      }
    }
  }
}

void RopeFreqFactors(const Devices& env) {
  Rng rng(14);
  struct Shape { int64_t t, h, dh; uint32_t n_rot; };
  for (const Shape& s : {Shape{1, 8, 8, 8}, Shape{5, 3, 24, 16}, Shape{4, 2, 64, 64}}) {
    for (uint32_t style : {KESTREL_ROPE_STYLE_NORM, KESTREL_ROPE_STYLE_NEOX}) {
      for (bool prepared : {true, false}) {
        std::vector<int32_t> pos(s.t);
        for (auto& p : pos) p = rng.Int(0, 700);
        OpCase c;
        c.kind = KESTREL_OP_ROPE;
        c.in = {F32({s.t, s.h, s.dh}, rng.Floats(s.t * s.h * s.dh)), I32({s.t}, pos),
                Tensor{Desc(KESTREL_DTYPE_F32, {s.n_rot / 2}), Bytes(rng.Floats(s.n_rot / 2, 0.5f, 40.0f)),
                       prepared}};
        c.out = {Out(KESTREL_DTYPE_F32, {s.t, s.h, s.dh})};
        c.params = Params(kestrel_op_rope_params_t{0, style, s.n_rot, 500000.0f, 1.0f});
        Check(env, c, "style " + std::to_string(style) + " Dh=" + std::to_string(s.dh) +
                     (prepared ? " factors prepared" : " factors buffer"));
      }
    }
  }
}

void MatmulBias(const Devices& env) {
  Rng rng(15);
  for (uint32_t dtype : kWeightDtypes) {
    for (const MatmulShape& s : {MatmulShape{1, 64, 64}, MatmulShape{5, 96, 33}, MatmulShape{9, 256, 7}}) {
      for (bool prepared : {true, false}) {
        OpCase c;
        c.kind = KESTREL_OP_MATMUL;
        c.in = {F32({s.t, s.k}, rng.Floats(s.t * s.k)), Weight(rng, dtype, s.n, s.k, true),
                Tensor{Desc(KESTREL_DTYPE_F32, {s.n}), Bytes(rng.Floats(s.n, -2.0f, 2.0f)), prepared}};
        c.out = {Out(KESTREL_DTYPE_F32, {s.t, s.n})};
        c.tol = 2e-6 * std::sqrt(static_cast<double>(s.k)) + 1e-6;
        Check(env, c, Name(dtype) + " T=" + std::to_string(s.t) + " N=" + std::to_string(s.n) +
                     (prepared ? " bias prepared" : " bias buffer"));
      }
    }
  }
}

void EmbeddingGatherEveryWeightDtype(const Devices& env) {
  Rng rng(5);
  for (uint32_t dtype : kWeightDtypes) {
    for (bool prepared : {true, false}) {
      const int64_t vocab = 37, dim = 64, t = 6;
      std::vector<int32_t> ids(t);
      for (auto& id : ids) id = rng.Int(0, vocab - 1);
      ids[1] = ids[0];
      ids[2] = vocab - 1;
      OpCase c;
      c.kind = KESTREL_OP_EMBEDDING_GATHER;
      c.in = {Weight(rng, dtype, vocab, dim, prepared), I32({t}, ids)};
      c.out = {Out(KESTREL_DTYPE_F32, {t, dim})};
      c.exact = true;  // a gather dequantises: no rounding at all
      Check(env, c, Name(dtype) + (prepared ? " prepared" : " buffer"));
    }
  }
}

void KvWriteF32AndF16Caches(const Devices& env) {
  Rng rng(8);
  for (uint32_t kd : {KESTREL_DTYPE_F32, KESTREL_DTYPE_F16}) {
    for (uint32_t vd : {KESTREL_DTYPE_F32, KESTREL_DTYPE_F16}) {
      for (int64_t b : {16, 32}) {
        const int64_t nb = 5, hkv = 2, dh = 8, t = 11;
        std::vector<int32_t> slots(nb * b);
        std::iota(slots.begin(), slots.end(), 0);
        std::shuffle(slots.begin(), slots.end(), rng.gen());
        slots.resize(t);
        OpCase c;
        c.kind = KESTREL_OP_KV_WRITE;
        c.in = {F32({t, hkv, dh}, rng.Floats(t * hkv * dh, -70000, 70000)),
                F32({t, hkv, dh}, rng.Floats(t * hkv * dh)), I32({t}, slots)};
        c.out = {{Desc(kd, {nb, b, hkv, dh}), RandomCache(rng, kd, nb * b * hkv * dh)},
                 {Desc(vd, {nb, b, hkv, dh}), RandomCache(rng, vd, nb * b * hkv * dh)}};
        c.exact = true;
        Check(env, c, "K " + Name(kd) + " V " + Name(vd) + " B=" + std::to_string(b));
      }
    }
  }
}

void KvBlockCopyAppliesPairsInOrder(const Devices& env) {
  Rng rng(9);
  for (uint32_t dtype : {KESTREL_DTYPE_F32, KESTREL_DTYPE_F16}) {
    const int64_t nb = 6, b = 16, hkv = 2, dh = 8;
    OpCase c;
    c.kind = KESTREL_OP_KV_BLOCK_COPY;
    c.in = {I32({4, 2}, {0, 3, 3, 5, 1, 1, 4, 0})};  // chained: 0 -> 3 -> 5, self copy, 4 -> 0
    c.out = {{Desc(dtype, {nb, b, hkv, dh}), RandomCache(rng, dtype, nb * b * hkv * dh)},
             {Desc(dtype, {nb, b, hkv, dh}), RandomCache(rng, dtype, nb * b * hkv * dh)}};
    c.exact = true;
    Check(env, c, Name(dtype));
  }
}

void PagedAttentionVarlenPrefillAndDecode(const Devices& env) {
  Rng rng(10);
  // A fresh prefill, a decode step with a long cached prefix, a prefill over a cached prefix,
  // an empty sequence, and a decode with exactly one block.
  const std::vector<Seq> mixed = {{5, 5}, {1, 70}, {3, 40}, {0, 9}, {1, 16}};
  struct Config { int64_t h, hkv, dh, b; };
  for (const Config& k : {Config{8, 4, 8, 16}, Config{4, 4, 8, 32}, Config{6, 2, 24, 16},
                          Config{2, 1, 64, 32}, Config{2, 2, 128, 16}, Config{2, 1, 96, 16}}) {
    for (bool causal : {true, false}) {
      const std::string what = "H=" + std::to_string(k.h) + " Hkv=" + std::to_string(k.hkv) +
                               " Dh=" + std::to_string(k.dh) + " B=" + std::to_string(k.b) +
                               (causal ? " causal" : " full");
      Check(env, Attention(rng, k.h, k.hkv, k.dh, k.b, KESTREL_DTYPE_F32, KESTREL_DTYPE_F32, causal,
                      mixed),
            what);
    }
  }
}

void PagedAttentionF16Caches(const Devices& env) {
  Rng rng(11);
  for (uint32_t kd : {KESTREL_DTYPE_F32, KESTREL_DTYPE_F16}) {
    for (uint32_t vd : {KESTREL_DTYPE_F32, KESTREL_DTYPE_F16}) {
      Check(env, Attention(rng, 8, 4, 8, 16, kd, vd, true, {{4, 20}, {1, 130}}),
            "K " + Name(kd) + " V " + Name(vd));
    }
  }
}

void PagedAttentionSingleDecodeLongContext(const Devices& env) {
  Rng rng(12);
  Check(env, Attention(rng, 8, 4, 8, 32, KESTREL_DTYPE_F32, KESTREL_DTYPE_F32, true, {{1, 600}}),
        "decode kv_len 600");
}

void GegluAndScaledEmbedding(const Devices& env) {
  Rng rng(31);
  for (int64_t n : {1, 7, 172, 1031}) {
    OpCase c;
    c.kind = KESTREL_OP_GEGLU;
    c.in = {F32({3, n}, rng.Floats(3 * n, -6, 6)), F32({3, n}, rng.Floats(3 * n, -4, 4))};
    c.out = {Out(KESTREL_DTYPE_F32, {3, n})};
    c.tol = 1e-6;  // the device's float tanh against ref's double one
    Check(env, c, "GEGLU n=" + std::to_string(n));
  }
  for (uint32_t dtype : kWeightDtypes) {
    OpCase c;
    c.kind = KESTREL_OP_EMBEDDING_GATHER;
    c.in = {Weight(rng, dtype, 37, 64, true), I32({4}, {3, 36, 0, 3})};
    c.out = {Out(KESTREL_DTYPE_F32, {4, 64})};
    kestrel_op_embedding_params_t p{};
    p.scale = 25.29822f;  // sqrt(640): Gemma 3 270M
    c.params = Params(p);
    c.op_version = 2;
    c.exact = true;  // one float multiply after the exact gather
    Check(env, c, Name(dtype) + " scaled");
  }
}

void PagedAttentionSlidingWindow(const Devices& env) {
  Rng rng(32);
  struct Case {
    int64_t h, hkv, dh, b;
    std::vector<Seq> seqs;
    uint32_t window;
    bool causal;
  };
  const Case cases[] = {
      {4, 1, 256, 16, {{1, 700}}, 512, true},                    // Gemma 3 decode past the window
      {8, 4, 8, 16, {{1, 60}, {7, 40}, {1, 3}}, 5, true},         // window < block, varlen
      {8, 2, 16, 4, {{100, 100}}, 37, true},                      // prefill longer than the window
      {4, 2, 16, 32, {{9, 150}, {20, 64}}, 33, true},             // window > block, chunked prefill
      {4, 2, 16, 16, {{5, 140}, {3, 3}}, 9, false},               // non-causal
  };
  for (const Case& k : cases) {
    for (uint32_t kd : {KESTREL_DTYPE_F32, KESTREL_DTYPE_F16}) {
      OpCase c = WindowedAttention(Attention(rng, k.h, k.hkv, k.dh, k.b, kd, kd, k.causal, k.seqs),
                                   k.window);
      Check(env, c, "window " + std::to_string(k.window) + " B" + std::to_string(k.b) + " " + Name(kd));
    }
  }
}

void OutOfRangeIndicesAreErrorsNotAccesses(const Devices& env) {
  Rng rng(13);
  hal::Device* dev = env.dev;
  std::vector<std::vector<uint8_t>> outs;
  OpCase emb;
  emb.kind = KESTREL_OP_EMBEDDING_GATHER;
  emb.in = {Weight(rng, KESTREL_DTYPE_Q8_0, 10, 32, true), I32({2}, {3, 10})};
  emb.out = {Out(KESTREL_DTYPE_F32, {2, 32})};
  EXPECT_EQ(RunOn(dev, emb, &outs).code(), absl::StatusCode::kOutOfRange);
  OpCase kv;
  kv.kind = KESTREL_OP_KV_WRITE;
  kv.in = {F32({1, 1, 8}, rng.Floats(8)), F32({1, 1, 8}, rng.Floats(8)), I32({1}, {-1})};
  kv.out = {Out(KESTREL_DTYPE_F32, {2, 16, 1, 8}), Out(KESTREL_DTYPE_F32, {2, 16, 1, 8})};
  EXPECT_EQ(RunOn(dev, kv, &outs).code(), absl::StatusCode::kOutOfRange);
  OpCase att = Attention(rng, 2, 1, 8, 16, KESTREL_DTYPE_F32, KESTREL_DTYPE_F32, true, {{2, 20}});
  std::vector<int32_t> tables(att.in[3].bytes.size() / 4);
  std::memcpy(tables.data(), att.in[3].bytes.data(), att.in[3].bytes.size());
  tables[1] = 1000;
  att.in[3].bytes = Bytes(tables);
  EXPECT_EQ(RunOn(dev, att, &outs).code(), absl::StatusCode::kOutOfRange);
  OpCase logits;
  logits.kind = KESTREL_OP_LOGITS;
  logits.in = {F32({2, 32}, rng.Floats(64)), Weight(rng, KESTREL_DTYPE_F32, 5, 32, false),
               I32({1}, {2})};
  logits.out = {Out(KESTREL_DTYPE_F32, {1, 5})};
  EXPECT_EQ(RunOn(dev, logits, &outs).code(), absl::StatusCode::kOutOfRange);
}

void DeviceNamesAndCaps(const Devices& env) {
  hal::Device* dev = env.dev;
  EXPECT_EQ(dev->name(), env.plugin + ":0");
  auto by_index = env.registry->FindDevice(env.plugin + ":0");
  ASSERT_TRUE(by_index.ok());
  EXPECT_EQ(*by_index, dev);
  EXPECT_EQ(dev->caps().async, 1);
  EXPECT_EQ(dev->caps().host_visible, 0);
  EXPECT_NE(dev->caps().weight_dtype_mask & KESTREL_DTYPE_BIT(KESTREL_DTYPE_Q4_0), 0u);
  EXPECT_GT(dev->caps().memory_bytes, 0u);
}

void AsyncWriteOpReadOrderOnOneStream(const Devices& env) {
  RawPlugin p(env.plugin);
  ASSERT_TRUE(p.ok()) << p.error();
  const kestrel_plugin_api_t* api = p.api();
  Rng rng(14);
  const int64_t n = 1 << 20;
  const std::vector<float> a = rng.Floats(n), b = rng.Floats(n);
  std::vector<float> out(n, std::nanf(""));
  kestrel_plugin_stream_t* s = nullptr;
  ASSERT_TRUE(p.Check(api->stream_create(p.dev(), &s), "stream_create")) << p.error();
  kestrel_plugin_buffer_t *ba = nullptr, *bb = nullptr, *bo = nullptr;
  ASSERT_TRUE(p.Check(api->buffer_alloc(p.dev(), n * 4, 0, &ba), "alloc")) << p.error();
  ASSERT_TRUE(p.Check(api->buffer_alloc(p.dev(), n * 4, 0, &bb), "alloc")) << p.error();
  ASSERT_TRUE(p.Check(api->buffer_alloc(p.dev(), n * 4, 0, &bo), "alloc")) << p.error();
  kestrel_tensor_arg_t args[3];
  const kestrel_op_desc_t op = AddOp(ba, bb, bo, n, args);
  // Everything enqueued without waiting; only the final synchronize blocks.
  ASSERT_TRUE(p.Check(api->buffer_write(p.dev(), s, ba, 0, a.data(), n * 4), "write a"));
  ASSERT_TRUE(p.Check(api->buffer_write(p.dev(), s, bb, 0, b.data(), n * 4), "write b"));
  ASSERT_TRUE(p.Check(api->op_execute(p.dev(), s, &op, nullptr), "add")) << p.error();
  ASSERT_TRUE(p.Check(api->buffer_read(p.dev(), s, bo, 0, out.data(), n * 4), "read"));
  ASSERT_TRUE(p.Check(api->stream_synchronize(p.dev(), s), "sync")) << p.error();
  for (int64_t i = 0; i < n; i += 997) ASSERT_EQ(out[i], a[i] + b[i]) << i;
  EXPECT_EQ(out[n - 1], a[n - 1] + b[n - 1]);
  for (auto* buf : {ba, bb, bo}) api->buffer_free(p.dev(), buf);
  api->stream_destroy(p.dev(), s);
}

void EventWaitAcrossTwoStreams(const Devices& env) {
  RawPlugin p(env.plugin);
  ASSERT_TRUE(p.ok()) << p.error();
  const kestrel_plugin_api_t* api = p.api();
  Rng rng(15);
  const int64_t n = 1 << 20;
  const std::vector<float> a = rng.Floats(n), b = rng.Floats(n);
  std::vector<float> out(n, std::nanf(""));
  kestrel_plugin_stream_t *s1 = nullptr, *s2 = nullptr;
  ASSERT_TRUE(p.Check(api->stream_create(p.dev(), &s1), "stream_create"));
  ASSERT_TRUE(p.Check(api->stream_create(p.dev(), &s2), "stream_create"));
  kestrel_plugin_buffer_t *ba = nullptr, *bb = nullptr, *bo = nullptr, *bc = nullptr;
  for (auto** buf : {&ba, &bb, &bo, &bc}) {
    ASSERT_TRUE(p.Check(api->buffer_alloc(p.dev(), n * 4, 0, buf), "alloc"));
  }
  kestrel_tensor_arg_t args[3];
  const kestrel_op_desc_t op = AddOp(ba, bb, bo, n, args);
  // Stream 1 produces bo; stream 2 waits for its event, copies bo and reads the copy.
  ASSERT_TRUE(p.Check(api->buffer_write(p.dev(), s1, ba, 0, a.data(), n * 4), "write a"));
  ASSERT_TRUE(p.Check(api->buffer_write(p.dev(), s1, bb, 0, b.data(), n * 4), "write b"));
  ASSERT_TRUE(p.Check(api->op_execute(p.dev(), s1, &op, nullptr), "add")) << p.error();
  kestrel_plugin_event_t* ev = nullptr;
  ASSERT_TRUE(p.Check(api->event_record(p.dev(), s1, &ev), "event_record")) << p.error();
  ASSERT_TRUE(p.Check(api->stream_wait_event(p.dev(), s2, ev), "wait")) << p.error();
  ASSERT_TRUE(p.Check(api->buffer_copy(p.dev(), s2, bo, 0, bc, 0, n * 4), "copy")) << p.error();
  ASSERT_TRUE(p.Check(api->buffer_read(p.dev(), s2, bc, 0, out.data(), n * 4), "read"));
  ASSERT_TRUE(p.Check(api->stream_synchronize(p.dev(), s2), "sync s2")) << p.error();
  ASSERT_TRUE(p.Check(api->event_synchronize(p.dev(), ev), "event_synchronize")) << p.error();
  for (int64_t i = 0; i < n; i += 997) ASSERT_EQ(out[i], a[i] + b[i]) << i;
  EXPECT_EQ(out[n - 1], a[n - 1] + b[n - 1]);
  api->event_destroy(p.dev(), ev);
  ASSERT_TRUE(p.Check(api->stream_synchronize(p.dev(), s1), "sync s1"));
  for (auto* buf : {ba, bb, bo, bc}) api->buffer_free(p.dev(), buf);
  api->stream_destroy(p.dev(), s1);
  api->stream_destroy(p.dev(), s2);
}

void OpQueryLevels(const Devices& env, uint32_t tree_mask_level) {
  hal::Device* dev = env.dev;
  const std::vector<kestrel_tensor_arg_t> mm_in = {A(Desc(KESTREL_DTYPE_F32, {2, 64})),
                                                   A(Desc(KESTREL_DTYPE_Q4_0, {8, 64}))};
  const std::vector<kestrel_tensor_arg_t> mm_out = {A(Desc(KESTREL_DTYPE_F32, {2, 8}))};
  auto level = [&](const kestrel_op_desc_t& op) {
    auto s = dev->Query(op);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? s->level : 99u;
  };
  EXPECT_EQ(level(MakeOp(KESTREL_OP_MATMUL, mm_in, mm_out, {})), KESTREL_OP_PREFERRED);
  // MOE, unknown and vendor kinds: UNSUPPORTED, never an error.
  EXPECT_EQ(level(MakeOp(KESTREL_OP_MOE, mm_in, mm_out, {})), KESTREL_OP_UNSUPPORTED);
  EXPECT_EQ(level(MakeOp(999, mm_in, mm_out, {})), KESTREL_OP_UNSUPPORTED);
  EXPECT_EQ(level(MakeOp(KESTREL_OP_VENDOR_BASE + 1, mm_in, mm_out, {})), KESTREL_OP_UNSUPPORTED);
  // Another op version: unsupported.
  kestrel_op_desc_t v2 = MakeOp(KESTREL_OP_MATMUL, mm_in, mm_out, {});
  v2.op_version = 2;
  EXPECT_EQ(level(v2), KESTREL_OP_UNSUPPORTED);
  // Non-F32 activations: valid but unsupported.
  const std::vector<kestrel_tensor_arg_t> f16_x = {A(Desc(KESTREL_DTYPE_F16, {2, 64})),
                                                   A(Desc(KESTREL_DTYPE_F32, {8, 64}))};
  EXPECT_EQ(level(MakeOp(KESTREL_OP_MATMUL, f16_x, mm_out, {})), KESTREL_OP_UNSUPPORTED);
  // Tree-mask attention: the plugin's level (UNSUPPORTED: the runtime falls back to ref).
  kestrel_op_attention_params_t p{};
  p.n_heads = 2;
  p.n_kv_heads = 1;
  p.head_dim = 8;
  p.block_size = 16;
  p.causal = 1;
  p.scale = 0.3f;
  p.tree_mask = 1;
  const std::vector<kestrel_tensor_arg_t> att_in = {
      A(Desc(KESTREL_DTYPE_F32, {3, 2, 8})),     A(Desc(KESTREL_DTYPE_F32, {4, 16, 1, 8})),
      A(Desc(KESTREL_DTYPE_F32, {4, 16, 1, 8})), A(Desc(KESTREL_DTYPE_I32, {1, 4})),
      A(Desc(KESTREL_DTYPE_I32, {2})),           A(Desc(KESTREL_DTYPE_I32, {1})),
      A(Desc(KESTREL_DTYPE_I32, {3}))};
  const std::vector<kestrel_tensor_arg_t> att_out = {A(Desc(KESTREL_DTYPE_F32, {3, 2, 8}))};
  EXPECT_EQ(level(MakeOp(KESTREL_OP_PAGED_ATTENTION, att_in, att_out, Params(p))),
            tree_mask_level);
  p.tree_mask = 0;
  const std::vector<kestrel_tensor_arg_t> att_in6(att_in.begin(), att_in.begin() + 6);
  EXPECT_EQ(level(MakeOp(KESTREL_OP_PAGED_ATTENTION, att_in6, att_out, Params(p))),
            KESTREL_OP_PREFERRED);
  // A malformed descriptor of a known kind: INVALID_ARGUMENT.
  const std::vector<kestrel_tensor_arg_t> bad_out = {A(Desc(KESTREL_DTYPE_F32, {2, 9}))};
  auto bad = dev->Query(MakeOp(KESTREL_OP_MATMUL, mm_in, bad_out, {}));
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << bad.status();
}

void MatmulEveryWeightDtype(const Devices& env, const std::vector<MatmulShape>& shapes,
                            const std::vector<MatmulShape>& plain_only) {
  Rng rng(6);
  for (uint32_t dtype : kWeightDtypes) {
    const bool quant = dtype == KESTREL_DTYPE_Q8_0 || dtype == KESTREL_DTYPE_Q4_0;
    std::vector<MatmulShape> all = shapes;
    if (!quant) all.insert(all.end(), plain_only.begin(), plain_only.end());
    for (const MatmulShape& s : all) {
      for (bool prepared : {true, false}) {
        OpCase c;
        c.kind = KESTREL_OP_MATMUL;
        c.in = {F32({s.t, s.k}, rng.Floats(s.t * s.k)), Weight(rng, dtype, s.n, s.k, prepared)};
        c.out = {Out(KESTREL_DTYPE_F32, {s.t, s.n})};
        c.tol = 2e-6 * std::sqrt(static_cast<double>(s.k)) + 1e-6;
        Check(env, c, Name(dtype) + " T=" + std::to_string(s.t) + " K=" + std::to_string(s.k) +
                     " N=" + std::to_string(s.n) + (prepared ? " prepared" : " buffer"));
      }
    }
  }
}

void LogitsPicksRows(const Devices& env, bool ten_rows) {
  Rng rng(7);
  for (uint32_t dtype : kWeightDtypes) {
    const int64_t t = 7, d = 64, v = 517;
    OpCase c;
    c.kind = KESTREL_OP_LOGITS;
    c.in = {F32({t, d}, rng.Floats(t * d)), Weight(rng, dtype, v, d, true),
            I32({3}, {6, 0, 6})};
    c.out = {Out(KESTREL_DTYPE_F32, {3, v})};
    Check(env, c, Name(dtype));
    if (!ten_rows) continue;
    // More rows than a decode GEMV takes (CUDA: the cuBLAS path), from a buffer weight.
    OpCase many;
    many.kind = KESTREL_OP_LOGITS;
    many.in = {F32({t, d}, rng.Floats(t * d)), Weight(rng, dtype, v, d, false),
               I32({10}, {6, 0, 6, 1, 2, 3, 4, 5, 0, 1})};
    many.out = {Out(KESTREL_DTYPE_F32, {10, v})};
    Check(env, many, Name(dtype) + " 10 rows");
  }
}

}  // namespace cases
}  // namespace kestrel::conformance
