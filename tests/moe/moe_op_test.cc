// Conformance of the reference KESTREL_OP_MOE against a float64 computation written here from
// the contract in plugin_api.h (not from reference_kernels.cc): fresh random inputs every run (seed
// printed, KESTREL_TEST_SEED reproduces), outputs poisoned with NaN before each run, stats exact.
// Also the descriptor validation (INVALID_ARGUMENT naming the field) and the plugin module's
// op_query / op_execute on prepared rank-3 expert weights.
#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <tuple>
#include <limits>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kestrel/plugin_api.h"
#include "kestrel/plugin_sdk/reference_kernels.h"
#include "kestrel/plugin_sdk/op_contract.h"
#include "kestrel/plugin_sdk/reference_ops.h"
#include "plugin_sdk/src/test_util.h"

namespace kestrel::plugin_sdk {
namespace {

using testing_util::Desc;
using testing_util::OpDesc;
using testing_util::OracleElement;
using testing_util::OracleRowBytes;
using testing_util::Poisoned;
using testing_util::RandomWeights;
using testing_util::RelErr;
using testing_util::Rng;


// One MoE problem: x [T, D], router [E, D], experts gate/up [E, F, D], down [E, D, F] (all E
// experts; a view selects a range of them).
struct MoeCase {
  int64_t T = 0, D = 0, F = 0, E = 0, K = 0;
  uint32_t routing = KESTREL_MOE_ROUTING_SOFTMAX_TOPK_RENORM;
  uint32_t router_dtype = KESTREL_DTYPE_F32, gate_dtype = KESTREL_DTYPE_F32,
           up_dtype = KESTREL_DTYPE_F32, down_dtype = KESTREL_DTYPE_F32;
  std::vector<float> x;
  std::vector<uint8_t> router, gate, up, down;
};

MoeCase MakeCase(Rng& rng, int64_t T, int64_t D, int64_t F, int64_t E, int64_t K,
                 uint32_t expert_dtype = KESTREL_DTYPE_F32,
                 uint32_t router_dtype = KESTREL_DTYPE_F32) {
  MoeCase c;
  c.T = T, c.D = D, c.F = F, c.E = E, c.K = K;
  c.router_dtype = router_dtype;
  c.gate_dtype = c.up_dtype = c.down_dtype = expert_dtype;
  c.x = rng.Floats(T * D);
  c.router = RandomWeights(rng, router_dtype, E, D);
  c.gate = RandomWeights(rng, expert_dtype, E * F, D);
  c.up = RandomWeights(rng, expert_dtype, E * F, D);
  c.down = RandomWeights(rng, expert_dtype, E * D, F);
  return c;
}

struct OracleResult {
  std::vector<double> out;     // [T, D], only experts in [first, first + n_local)
  std::vector<int32_t> stats;  // [E]
};

// The contract, in float64: logits, softmax/sigmoid, top-k with ties to the lower id, weights,
// SwiGLU experts.
OracleResult Oracle(const MoeCase& c, int64_t first, int64_t n_local) {
  OracleResult r;
  r.out.assign(c.T * c.D, 0.0);
  r.stats.assign(c.E, 0);
  auto elem = [](uint32_t dtype, const std::vector<uint8_t>& w, int64_t row, int64_t cols,
                 int64_t i) {
    return OracleElement(dtype, w.data() + row * OracleRowBytes(dtype, cols), i);
  };
  for (int64_t t = 0; t < c.T; ++t) {
    const float* x = c.x.data() + t * c.D;
    std::vector<double> score(c.E);
    for (int64_t e = 0; e < c.E; ++e) {
      double l = 0;
      for (int64_t d = 0; d < c.D; ++d) l += x[d] * elem(c.router_dtype, c.router, e, c.D, d);
      score[e] = l;
    }
    if (c.routing == KESTREL_MOE_ROUTING_SIGMOID_TOPK) {
      for (double& s : score) s = 1.0 / (1.0 + std::exp(-s));
    } else {
      const double m = *std::max_element(score.begin(), score.end());
      double sum = 0;
      for (double& s : score) sum += (s = std::exp(s - m));
      for (double& s : score) s /= sum;
    }
    // Selection by repeated arg-max: the first (lowest id) maximum wins.
    std::vector<bool> taken(c.E, false);
    std::vector<int64_t> sel;
    for (int64_t k = 0; k < c.K; ++k) {
      int64_t best = -1;
      for (int64_t e = 0; e < c.E; ++e) {
        if (!taken[e] && (best < 0 || score[e] > score[best])) best = e;
      }
      taken[best] = true;
      sel.push_back(best);
    }
    double norm = 0;
    for (int64_t e : sel) norm += score[e];
    for (int64_t e : sel) {
      ++r.stats[e];
      if (e < first || e >= first + n_local) continue;
      const double w =
          c.routing == KESTREL_MOE_ROUTING_SOFTMAX_TOPK_RENORM ? score[e] / norm : score[e];
      std::vector<double> h(c.F);
      for (int64_t f = 0; f < c.F; ++f) {
        double g = 0, u = 0;
        for (int64_t d = 0; d < c.D; ++d) {
          g += x[d] * elem(c.gate_dtype, c.gate, e * c.F + f, c.D, d);
          u += x[d] * elem(c.up_dtype, c.up, e * c.F + f, c.D, d);
        }
        h[f] = g / (1.0 + std::exp(-g)) * u;
      }
      for (int64_t d = 0; d < c.D; ++d) {
        double y = 0;
        for (int64_t f = 0; f < c.F; ++f) y += h[f] * elem(c.down_dtype, c.down, e * c.D + d, c.F, f);
        r.out[t * c.D + d] += w * y;
      }
    }
  }
  return r;
}

kestrel_op_moe_params_t Params(const MoeCase& c, int64_t first, int64_t n_local) {
  kestrel_op_moe_params_t p{};
  p.struct_size = sizeof p;
  p.n_experts = static_cast<uint32_t>(c.E);
  p.top_k = static_cast<uint32_t>(c.K);
  p.routing = c.routing;
  p.activation = KESTREL_MOE_ACTIVATION_SWIGLU;
  p.first_expert = static_cast<uint32_t>(first);
  p.n_local_experts = static_cast<uint32_t>(n_local);
  return p;
}

// The descriptor of `c` restricted to experts [first, first + n_local).
struct MoeOp {
  kestrel_op_moe_params_t params{};
  std::vector<kestrel_tensor_arg_t> in, out;
  kestrel_op_desc_t desc{};
  bool null_params = false;
  MoeOp(const MoeCase& c, int64_t first, int64_t n_local, bool with_stats = true) {
    params = Params(c, first, n_local);
    in.resize(5);
    in[0].desc = Desc(KESTREL_DTYPE_F32, {c.T, c.D});
    in[1].desc = Desc(c.router_dtype, {c.E, c.D});
    in[2].desc = Desc(c.gate_dtype, {n_local, c.F, c.D});
    in[3].desc = Desc(c.up_dtype, {n_local, c.F, c.D});
    in[4].desc = Desc(c.down_dtype, {n_local, c.D, c.F});
    out.resize(with_stats ? 2 : 1);
    out[0].desc = Desc(KESTREL_DTYPE_F32, {c.T, c.D});
    if (with_stats) out[1].desc = Desc(KESTREL_DTYPE_I32, {c.E});
    Sync();
  }
  void Sync() {
    desc = OpDesc(KESTREL_OP_MOE, in, out, null_params ? nullptr : &params, sizeof params);
  }
};

struct RunResult {
  std::vector<float> out;
  std::vector<int32_t> stats;
};

// CheckOp (must be valid and supported) + ExecuteOp on poisoned outputs.
RunResult RunMoe(const MoeCase& c, int64_t first, int64_t n_local, bool with_stats = true) {
  MoeOp op(c, first, n_local, with_stats);
  OpCheck check;
  Status s = CheckOp(op.desc, &check);
  EXPECT_TRUE(s.ok()) << s.message();
  EXPECT_TRUE(check.supported) << check.reason;
  const size_t gate_slice = c.F * OracleRowBytes(c.gate_dtype, c.D);
  const size_t up_slice = c.F * OracleRowBytes(c.up_dtype, c.D);
  const size_t down_slice = c.D * OracleRowBytes(c.down_dtype, c.F);
  // Copies of the local slices, so the kernel cannot read outside its view.
  std::vector<uint8_t> gate(c.gate.begin() + first * gate_slice,
                            c.gate.begin() + (first + n_local) * gate_slice);
  std::vector<uint8_t> up(c.up.begin() + first * up_slice, c.up.begin() + (first + n_local) * up_slice);
  std::vector<uint8_t> down(c.down.begin() + first * down_slice,
                            c.down.begin() + (first + n_local) * down_slice);
  RunResult r;
  r.out = Poisoned(c.T * c.D);
  r.stats.assign(c.E, -7);
  const void* inputs[5] = {c.x.data(), c.router.data(), gate.data(), up.data(), down.data()};
  void* outputs[2] = {r.out.data(), r.stats.data()};
  s = ExecuteOp(op.desc, inputs, outputs);
  EXPECT_TRUE(s.ok()) << s.message();
  return r;
}

constexpr double kTol = 2e-5;  // weights decode exactly; only f32 rounding of intermediates

void ExpectMatchesOracle(const MoeCase& c, int64_t first = 0, int64_t n_local = -1) {
  if (n_local < 0) n_local = c.E;
  const RunResult got = RunMoe(c, first, n_local);
  const OracleResult want = Oracle(c, first, n_local);
  EXPECT_LT(RelErr(got.out, want.out), kTol)
      << "T=" << c.T << " E=" << c.E << " K=" << c.K << " experts [" << first << ", "
      << first + n_local << ")";
  EXPECT_EQ(got.stats, want.stats);
}

class MoeOpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::printf("MoE op test seed %u (rerun with KESTREL_TEST_SEED=<seed>)\n",
                testing_util::TestSeed());
  }
};

TEST_F(MoeOpTest, RandomF32MatchesFloat64Oracle) {
  SEED_TRACE();
  Rng rng(1);
  for (auto [T, E, K] : {std::tuple{1, 4, 2}, std::tuple{7, 8, 2}, std::tuple{13, 6, 3},
                         std::tuple{32, 4, 2}}) {
    ExpectMatchesOracle(MakeCase(rng, T, 64, 96, E, K));
  }
}

TEST_F(MoeOpTest, ExpertWeightDtypes) {
  SEED_TRACE();
  Rng rng(2);
  for (uint32_t dtype : {KESTREL_DTYPE_F16, KESTREL_DTYPE_BF16, KESTREL_DTYPE_Q8_0,
                         KESTREL_DTYPE_Q4_0}) {
    SCOPED_TRACE(DtypeName(dtype));
    ExpectMatchesOracle(MakeCase(rng, 9, 64, 96, 6, 2, dtype));
  }
  // Router in F16, experts mixed.
  MoeCase c = MakeCase(rng, 5, 64, 64, 4, 2, KESTREL_DTYPE_Q8_0, KESTREL_DTYPE_F16);
  c.up_dtype = KESTREL_DTYPE_Q4_0;
  c.up = RandomWeights(rng, c.up_dtype, c.E * c.F, c.D);
  c.down_dtype = KESTREL_DTYPE_F32;
  c.down = RandomWeights(rng, c.down_dtype, c.E * c.D, c.F);
  ExpectMatchesOracle(c);
}

TEST_F(MoeOpTest, RouterTiesGoToTheLowestExpertId) {
  SEED_TRACE();
  Rng rng(3);
  // All router rows equal: every token picks experts 0..K-1 with weight 1/K each.
  MoeCase c = MakeCase(rng, 6, 64, 64, 5, 2);
  const size_t row = OracleRowBytes(c.router_dtype, c.D);
  for (int64_t e = 1; e < c.E; ++e) {
    std::copy(c.router.begin(), c.router.begin() + row, c.router.begin() + e * row);
  }
  RunResult r = RunMoe(c, 0, c.E);
  EXPECT_EQ(r.stats, (std::vector<int32_t>{6, 6, 0, 0, 0}));
  ExpectMatchesOracle(c);
  // Two equal dominant rows (3 and 1) and zero rows elsewhere; x > 0: top-1 is expert 1.
  MoeCase d = MakeCase(rng, 4, 64, 64, 5, 1);
  for (float& v : d.x) v = std::fabs(v) + 0.01f;
  std::vector<float> router(d.E * d.D, 0.0f);
  for (int64_t i = 0; i < d.D; ++i) router[1 * d.D + i] = router[3 * d.D + i] = 0.5f;
  std::memcpy(d.router.data(), router.data(), d.router.size());
  r = RunMoe(d, 0, d.E);
  EXPECT_EQ(r.stats, (std::vector<int32_t>{0, 4, 0, 0, 0}));
  ExpectMatchesOracle(d);
  // K = 2 over the same router: experts 1 and 3 (the tie is inside the top-k).
  d.K = 2;
  r = RunMoe(d, 0, d.E);
  EXPECT_EQ(r.stats, (std::vector<int32_t>{0, 4, 0, 4, 0}));
  ExpectMatchesOracle(d);
}

TEST_F(MoeOpTest, TopOneAndTopAll) {
  SEED_TRACE();
  Rng rng(4);
  ExpectMatchesOracle(MakeCase(rng, 11, 64, 64, 6, 1));
  MoeCase all = MakeCase(rng, 11, 64, 64, 6, 6);
  RunResult r = RunMoe(all, 0, all.E);
  EXPECT_EQ(r.stats, std::vector<int32_t>(6, 11));
  ExpectMatchesOracle(all);
  // E = 1, K = 1: a single expert with weight 1, i.e. a dense SwiGLU FFN.
  ExpectMatchesOracle(MakeCase(rng, 3, 32, 32, 1, 1));
}

TEST_F(MoeOpTest, ExpertsWithNoTokens) {
  SEED_TRACE();
  Rng rng(5);
  MoeCase c = MakeCase(rng, 2, 64, 64, 8, 2);  // 4 routings over 8 experts
  RunResult r = RunMoe(c, 0, c.E);
  EXPECT_GE(std::count(r.stats.begin(), r.stats.end(), 0), 4);
  EXPECT_EQ(std::accumulate(r.stats.begin(), r.stats.end(), 0), 4);
  ExpectMatchesOracle(c);
}

TEST_F(MoeOpTest, RoutingRules) {
  SEED_TRACE();
  Rng rng(6);
  for (uint32_t routing : {KESTREL_MOE_ROUTING_SOFTMAX_TOPK, KESTREL_MOE_ROUTING_SIGMOID_TOPK}) {
    MoeCase c = MakeCase(rng, 8, 64, 64, 6, 2);
    c.routing = routing;
    SCOPED_TRACE(routing);
    ExpectMatchesOracle(c);
  }
}

TEST_F(MoeOpTest, ExpertRangeViewsSumToTheFullResult) {
  SEED_TRACE();
  Rng rng(7);
  for (uint32_t dtype : {KESTREL_DTYPE_F32, KESTREL_DTYPE_Q4_0}) {
    MoeCase c = MakeCase(rng, 10, 64, 64, 6, 2, dtype);
    const RunResult full = RunMoe(c, 0, 6);
    const RunResult lo = RunMoe(c, 0, 2);
    const RunResult hi = RunMoe(c, 2, 4);
    ExpectMatchesOracle(c, 0, 2);
    ExpectMatchesOracle(c, 2, 4);
    // Every device reports the routing of all experts.
    EXPECT_EQ(lo.stats, full.stats);
    EXPECT_EQ(hi.stats, full.stats);
    std::vector<double> sum(full.out.size());
    for (size_t i = 0; i < sum.size(); ++i) sum[i] = double{lo.out[i]} + hi.out[i];
    EXPECT_LT(RelErr(full.out, sum), 1e-6);
    // A token none of whose experts is local gets exact zeros: with a single local expert
    // (K = 1) at least the tokens routed elsewhere must be 0.
    MoeCase one = MakeCase(rng, 12, 64, 64, 4, 1, dtype);
    const RunResult only3 = RunMoe(one, 3, 1);
    const OracleResult want = Oracle(one, 3, 1);
    EXPECT_LT(RelErr(only3.out, want.out), kTol);
    for (size_t i = 0; i < want.out.size(); ++i) {
      if (want.out[i] == 0.0) {
        EXPECT_EQ(only3.out[i], 0.0f) << i;
      }
    }
  }
}

TEST_F(MoeOpTest, StatsOutputIsOptional) {
  SEED_TRACE();
  Rng rng(8);
  MoeCase c = MakeCase(rng, 5, 64, 64, 4, 2);
  const RunResult with = RunMoe(c, 0, c.E, true);
  const RunResult without = RunMoe(c, 0, c.E, false);
  EXPECT_EQ(with.out, without.out);
}

// ---- bad descriptors -----------------------------------------------------------------------

std::string CheckError(MoeOp& op) {
  OpCheck check;
  Status s = CheckOp(op.desc, &check);
  EXPECT_EQ(s.code(), KESTREL_PLUGIN_INVALID_ARGUMENT) << s.message();
  return s.message();
}

TEST_F(MoeOpTest, BadDescriptorsAreInvalidArgumentsNamingTheField) {
  Rng rng(9);
  const MoeCase c = MakeCase(rng, 3, 64, 64, 4, 2);
  auto expect = [&](const std::function<void(MoeOp&)>& edit, const std::string& needle) {
    MoeOp op(c, 0, 4);
    edit(op);
    op.Sync();
    const std::string msg = CheckError(op);
    EXPECT_NE(msg.find(needle), std::string::npos) << "message '" << msg << "' lacks '" << needle << "'";
    EXPECT_EQ(msg.rfind("MOE: ", 0), 0u) << msg;
  };
  expect([](MoeOp& o) { o.params.top_k = 0; }, "params.top_k=0 is outside [1, params.n_experts=4]");
  expect([](MoeOp& o) { o.params.top_k = 5; }, "params.top_k=5 is outside [1, params.n_experts=4]");
  expect([](MoeOp& o) { o.params.n_experts = 0; }, "params.n_experts=0");
  expect([](MoeOp& o) { o.params.routing = 9; }, "params.routing=9");
  expect([](MoeOp& o) { o.params.activation = 3; }, "params.activation=3");
  expect([](MoeOp& o) { o.params.n_local_experts = 0; }, "params.n_local_experts=0");
  expect([](MoeOp& o) { o.params.first_expert = 1; }, "params.first_expert=1 + params.n_local_experts=4");
  expect([](MoeOp& o) { o.params.flags = 1; }, "params.flags=1");
  expect([](MoeOp& o) { o.params.n_shared_experts = 2; }, "params.n_shared_experts=2");
  expect([](MoeOp& o) { o.params.struct_size = 8; }, "params.struct_size=8");
  expect([](MoeOp& o) { o.null_params = true; }, "params is NULL");
  expect([](MoeOp& o) { o.in.pop_back(); }, "n_inputs=4, expected 5");
  expect([](MoeOp& o) { o.out.push_back(o.out[1]); }, "n_outputs=3, expected 1 to 2");
  expect([](MoeOp& o) { o.in[1].desc.dims[0] = 5; }, "input 1 (router) dims[0]=5 != params.n_experts=4");
  expect([](MoeOp& o) { o.in[1].desc.dims[1] = 32; }, "input 1 (router) dims[1]=32 != input 0 (x) dims[1]=64");
  expect([](MoeOp& o) { o.in[2].desc.dims[0] = 3; }, "input 2 (gate_exps) dims[0]=3 != params.n_local_experts=4");
  expect([](MoeOp& o) { o.in[3].desc.dims[1] = 32; }, "input 3 (up_exps) dims[1]=32 != input 2 (gate_exps) dims[1]=64");
  expect([](MoeOp& o) { o.in[4].desc.dims[2] = 32; }, "input 4 (down_exps) dims[2]=32 != input 2 (gate_exps) dims[1]=64");
  expect([](MoeOp& o) { o.in[2].desc = Desc(KESTREL_DTYPE_F32, {4 * 64, 64}); }, "input 2 (gate_exps) rank=2, expected 3");
  expect([](MoeOp& o) { o.in[2].desc.dtype = KESTREL_DTYPE_I32; }, "input 2 (gate_exps) dtype I32");
  expect([](MoeOp& o) { o.out[1].desc.dims[0] = 2; }, "output 1 (stats) dims[0]=2 != params.n_experts=4");
  expect([](MoeOp& o) { o.out[1].desc.dtype = KESTREL_DTYPE_F32; }, "output 1 (stats) dtype F32");
  expect([](MoeOp& o) { o.out[0].desc.dims[0] = 2; }, "output 0 (out) dims[0]=2 != input 0 (x) dims[0]=3");
}

// ---- through the built plugin module --------------------------------------------------------

struct HostStatus {
  kestrel_plugin_status_code_t code;
  std::string message;
};

std::string TakeMessage(kestrel_plugin_status_t* s, kestrel_plugin_status_code_t* code) {
  *code = KESTREL_PLUGIN_OK;
  if (s == nullptr) return "";
  std::unique_ptr<HostStatus> h(reinterpret_cast<HostStatus*>(s));
  *code = h->code;
  return h->message;
}

TEST_F(MoeOpTest, RefModuleRunsMoeOnPreparedRank3Weights) {
  SEED_TRACE();
  const char* dir = std::getenv("KESTREL_PLUGIN_DIR");
  if (dir == nullptr) GTEST_SKIP() << "KESTREL_PLUGIN_DIR is not set";
  const std::string path = std::string(dir) + "/libkestrel_plugin_ref.so";
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(lib, nullptr) << dlerror();
  auto get_api = reinterpret_cast<kestrel_plugin_get_api_fn>(dlsym(lib, KESTREL_PLUGIN_ENTRY_SYMBOL));
  ASSERT_NE(get_api, nullptr);
  kestrel_host_api_t host{};
  host.struct_size = sizeof host;
  host.major = KESTREL_PLUGIN_API_MAJOR;
  host.minor = KESTREL_PLUGIN_API_MINOR;
  host.log = [](void*, kestrel_plugin_log_level_t, const char*, size_t) {};
  host.alloc = [](void*, size_t size, size_t alignment) -> void* {
    void* p = nullptr;
    return posix_memalign(&p, std::max(alignment, sizeof(void*)), size) == 0 ? p : nullptr;
  };
  host.free = [](void*, void* p) { std::free(p); };
  host.status_create = [](void*, kestrel_plugin_status_code_t code, const char* msg,
                          size_t len) -> kestrel_plugin_status_t* {
    return reinterpret_cast<kestrel_plugin_status_t*>(new HostStatus{code, std::string(msg, len)});
  };
  const kestrel_plugin_api_t* api = nullptr;
  kestrel_plugin_status_code_t code;
  ASSERT_EQ(TakeMessage(get_api(&host, KESTREL_PLUGIN_API_MAJOR, KESTREL_PLUGIN_API_MINOR, &api), &code), "");
  ASSERT_NE(api, nullptr);
  ASSERT_EQ(TakeMessage(api->init(nullptr, 0), &code), "");
  kestrel_plugin_device_t* dev = nullptr;
  ASSERT_EQ(TakeMessage(api->device_open(0, &dev), &code), "");

  Rng rng(10);
  const MoeCase c = MakeCase(rng, 6, 64, 64, 4, 2, KESTREL_DTYPE_Q8_0);
  MoeOp op(c, 0, 4);
  // x and the outputs in buffers, router and experts as prepared weights.
  std::vector<kestrel_plugin_weight_t*> weights;
  const std::vector<uint8_t>* data[5] = {nullptr, &c.router, &c.gate, &c.up, &c.down};
  for (int i = 1; i < 5; ++i) {
    kestrel_plugin_weight_t* w = nullptr;
    ASSERT_EQ(TakeMessage(api->weight_prepare(dev, &op.in[i].desc, data[i]->data(), data[i]->size(), &w), &code), "");
    op.in[i].weight = w;
    weights.push_back(w);
  }
  std::vector<kestrel_plugin_buffer_t*> buffers;
  auto upload = [&](kestrel_tensor_arg_t* a, const void* src, uint64_t bytes) {
    kestrel_plugin_buffer_t* b = nullptr;
    ASSERT_EQ(TakeMessage(api->buffer_alloc(dev, bytes, 0, &b), &code), "");
    ASSERT_EQ(TakeMessage(api->buffer_write(dev, nullptr, b, 0, src, bytes), &code), "");
    a->buffer = b;
    buffers.push_back(b);
  };
  const std::vector<float> poison = Poisoned(c.T * c.D);
  const std::vector<int32_t> bad_stats(c.E, -1);
  upload(&op.in[0], c.x.data(), c.x.size() * 4);
  upload(&op.out[0], poison.data(), poison.size() * 4);
  upload(&op.out[1], bad_stats.data(), bad_stats.size() * 4);
  op.Sync();
  kestrel_op_support_t support{sizeof support, 77, 0};
  ASSERT_EQ(TakeMessage(api->op_query(dev, &op.desc, &support), &code), "");
  EXPECT_EQ(support.level, KESTREL_OP_SUPPORTED);
  ASSERT_EQ(TakeMessage(api->op_execute(dev, nullptr, &op.desc, nullptr), &code), "");
  std::vector<float> out(c.T * c.D);
  std::vector<int32_t> stats(c.E);
  ASSERT_EQ(TakeMessage(api->buffer_read(dev, nullptr, op.out[0].buffer, 0, out.data(), out.size() * 4), &code), "");
  ASSERT_EQ(TakeMessage(api->buffer_read(dev, nullptr, op.out[1].buffer, 0, stats.data(), stats.size() * 4), &code), "");
  const OracleResult want = Oracle(c, 0, 4);
  EXPECT_LT(RelErr(out, want.out), kTol);
  EXPECT_EQ(stats, want.stats);
  // A malformed MOE is INVALID_ARGUMENT through the table too.
  op.params.top_k = 0;
  op.Sync();
  const std::string msg = TakeMessage(api->op_query(dev, &op.desc, &support), &code);
  EXPECT_EQ(code, KESTREL_PLUGIN_INVALID_ARGUMENT);
  EXPECT_NE(msg.find("params.top_k=0"), std::string::npos) << msg;

  for (auto* b : buffers) api->buffer_free(dev, b);
  for (auto* w : weights) api->weight_release(dev, w);
  api->device_close(dev);
  if (api->shutdown) api->shutdown();
  dlclose(lib);
}

}  // namespace
}  // namespace kestrel::plugin_sdk
