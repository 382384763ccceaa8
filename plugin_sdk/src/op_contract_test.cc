// The reference plugin through its ABI function table: a tiny test host (statuses are heap structs
// with a code and a message), version checks, device caps, buffers, weights, op_query / op_execute
// validation messages, index errors, and every op run through descriptors and buffers against the
// float64 oracles of test_util.h. The built libkestrel_plugin_ref.so is dlopen()ed too.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "kestrel/plugin_api.h"
#include "kestrel/plugin_sdk/half.h"
#include "kestrel/plugin_sdk/host_plugin.h"
#include "kestrel/plugin_sdk/reference_kernels.h"
#include "plugin_sdk/src/test_util.h"

namespace kestrel::plugin_sdk {
namespace {

using testing_util::AttnCase;
using testing_util::Desc;
using testing_util::MakeAttnCase;
using testing_util::OpDesc;
using testing_util::OracleElement;
using testing_util::OracleRoundHalf;
using testing_util::OracleRowBytes;
using testing_util::Poisoned;
using testing_util::RandomWeights;
using testing_util::RelErr;
using testing_util::Rng;

constexpr double kF32Tol = 1e-5;

// ---- the test host ------------------------------------------------------------------------------

struct TestStatus {
  kestrel_plugin_status_code_t code;
  std::string message;
};

// A status taken from a slot (NULL = OK), freed here.
struct Result {
  kestrel_plugin_status_code_t code = KESTREL_PLUGIN_OK;
  std::string message;
  bool ok() const { return code == KESTREL_PLUGIN_OK; }
};

Result Take(kestrel_plugin_status_t* status) {
  Result r;
  if (status == nullptr) return r;
  std::unique_ptr<TestStatus> s(reinterpret_cast<TestStatus*>(status));
  r.code = s->code;
  r.message = s->message;
  return r;
}

class TestHost {
 public:
  TestHost() {
    api_.struct_size = sizeof(kestrel_host_api_t);
    api_.major = KESTREL_PLUGIN_API_MAJOR;
    api_.minor = KESTREL_PLUGIN_API_MINOR;
    api_.host_ctx = this;
    api_.log = [](void* ctx, kestrel_plugin_log_level_t level, const char* msg, size_t len) {
      static_cast<TestHost*>(ctx)->logs.push_back(std::to_string(level) + ":" + std::string(msg, len));
    };
    api_.alloc = [](void*, size_t size, size_t alignment) -> void* {
      void* p = nullptr;
      return posix_memalign(&p, std::max(alignment, sizeof(void*)), size) == 0 ? p : nullptr;
    };
    api_.free = [](void*, void* p) { std::free(p); };
    api_.status_create = [](void*, kestrel_plugin_status_code_t code, const char* msg,
                            size_t len) -> kestrel_plugin_status_t* {
      return reinterpret_cast<kestrel_plugin_status_t*>(new TestStatus{code, std::string(msg, len)});
    };
  }
  const kestrel_host_api_t* api() const { return &api_; }
  std::vector<std::string> logs;

 private:
  kestrel_host_api_t api_{};
};

// A second configuration of the host plugin, as the ref plugin's own (ref_plugin.cc is the module;
// its table is checked through dlopen below).
bool AllRefKinds(uint32_t kind) {
  return (kind >= KESTREL_OP_EMBEDDING_GATHER && kind <= KESTREL_OP_LOGITS) || kind == KESTREL_OP_GEGLU;
}
const HostPluginConfig kTestRefConfig = {"ref-test", "ref-test", "reference kernels under test",
                                         &AllRefKinds};

bool OnlyAdd(uint32_t kind) { return kind == KESTREL_OP_ADD; }
const HostPluginConfig kAddOnlyConfig = {"add-only", "add-only-dev", "a second plugin", &OnlyAdd,
                                         "9.9"};


uint64_t Bytes(const kestrel_tensor_desc_t& d) {
  uint64_t n = OracleRowBytes(d.dtype, d.dims[d.rank - 1]);
  if (d.dtype == KESTREL_DTYPE_I32) n = 4 * d.dims[d.rank - 1];
  for (uint32_t i = 0; i + 1 < d.rank; ++i) n *= d.dims[i];
  return n;
}

// Fixture: the plugin table for kTestRefConfig, one open device, and helpers that move data.
class RefPluginTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(Take(HostPluginGetApi(&kTestRefConfig, host_.api(), KESTREL_PLUGIN_API_MAJOR,
                                      KESTREL_PLUGIN_API_MINOR, &api_)).ok());
    ASSERT_NE(api_, nullptr);
    ASSERT_TRUE(Take(api_->init(nullptr, 0)).ok());
    ASSERT_TRUE(Take(api_->device_open(0, &dev_)).ok());
  }
  void TearDown() override {
    for (auto* b : buffers_) api_->buffer_free(dev_, b);
    for (auto* w : weights_) api_->weight_release(dev_, w);
    api_->device_close(dev_);
  }

  kestrel_tensor_arg_t Upload(const kestrel_tensor_desc_t& d, const void* data) {
    kestrel_tensor_arg_t a{};
    a.desc = d;
    EXPECT_TRUE(Take(api_->buffer_alloc(dev_, Bytes(d), 0, &a.buffer)).ok());
    buffers_.push_back(a.buffer);
    EXPECT_TRUE(Take(api_->buffer_write(dev_, nullptr, a.buffer, 0, data, Bytes(d))).ok());
    return a;
  }
  template <typename T>
  kestrel_tensor_arg_t Upload(const kestrel_tensor_desc_t& d, const std::vector<T>& v) {
    EXPECT_EQ(v.size() * sizeof(T), Bytes(d));
    return Upload(d, v.data());
  }
  kestrel_tensor_arg_t Prepare(const kestrel_tensor_desc_t& d, const std::vector<uint8_t>& bytes) {
    kestrel_tensor_arg_t a{};
    a.desc = d;
    EXPECT_TRUE(Take(api_->weight_prepare(dev_, &d, bytes.data(), bytes.size(), &a.weight)).ok());
    weights_.push_back(a.weight);
    return a;
  }
  // An F32 output buffer poisoned with NaN.
  kestrel_tensor_arg_t Output(const kestrel_tensor_desc_t& d) {
    return Upload(d, Poisoned(Bytes(d) / 4).data());
  }
  template <typename T = float>
  std::vector<T> Download(const kestrel_tensor_arg_t& a) {
    std::vector<T> v(Bytes(a.desc) / sizeof(T));
    EXPECT_TRUE(Take(api_->buffer_read(dev_, nullptr, a.buffer, a.offset, v.data(), Bytes(a.desc))).ok());
    return v;
  }

  kestrel_op_desc_t Op(uint32_t kind, const std::vector<kestrel_tensor_arg_t>& in,
                       const std::vector<kestrel_tensor_arg_t>& out, const void* params = nullptr,
                       size_t params_size = 0) {
    in_ = in;
    out_ = out;
    return OpDesc(kind, in_, out_, params, params_size);
  }

  Result Query(const kestrel_op_desc_t& op, uint32_t* level) {
    kestrel_op_support_t support{};
    support.struct_size = sizeof support;
    support.level = 77;
    Result r = Take(api_->op_query(dev_, &op, &support));
    *level = support.level;
    return r;
  }
  // op_query must say SUPPORTED, then op_execute must succeed.
  void Run(const kestrel_op_desc_t& op) {
    uint32_t level = 0;
    const Result q = Query(op, &level);
    ASSERT_TRUE(q.ok()) << q.message;
    ASSERT_EQ(level, KESTREL_OP_SUPPORTED);
    const Result e = Take(api_->op_execute(dev_, nullptr, &op, nullptr));
    ASSERT_TRUE(e.ok()) << e.message;
  }
  Result Execute(const kestrel_op_desc_t& op) {
    return Take(api_->op_execute(dev_, nullptr, &op, nullptr));
  }

  TestHost host_;
  const kestrel_plugin_api_t* api_ = nullptr;
  kestrel_plugin_device_t* dev_ = nullptr;
  std::vector<kestrel_plugin_buffer_t*> buffers_;
  std::vector<kestrel_plugin_weight_t*> weights_;
  std::vector<kestrel_tensor_arg_t> in_, out_;
};

// ---- versions, table, caps ----------------------------------------------------------------------

TEST(GetApiTest, MajorMismatchIsRejectedNamingBothVersions) {
  TestHost host;
  const kestrel_plugin_api_t* api = reinterpret_cast<const kestrel_plugin_api_t*>(&host);
  const Result r = Take(HostPluginGetApi(&kTestRefConfig, host.api(), KESTREL_PLUGIN_API_MAJOR + 1,
                                         3, &api));
  EXPECT_EQ(r.code, KESTREL_PLUGIN_FAILED_PRECONDITION);
  EXPECT_EQ(api, nullptr);
  const std::string plugin_version = std::to_string(KESTREL_PLUGIN_API_MAJOR) + "." +
                                     std::to_string(KESTREL_PLUGIN_API_MINOR);
  const std::string host_version = std::to_string(KESTREL_PLUGIN_API_MAJOR + 1) + ".3";
  EXPECT_NE(r.message.find(plugin_version), std::string::npos) << r.message;
  EXPECT_NE(r.message.find(host_version), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("ref-test"), std::string::npos) << r.message;
}

TEST(GetApiTest, AnyMinorWorksAndTableIsWellFormed) {
  TestHost host;
  const kestrel_plugin_api_t* api = nullptr;
  ASSERT_TRUE(Take(HostPluginGetApi(&kTestRefConfig, host.api(), KESTREL_PLUGIN_API_MAJOR, 999, &api)).ok());
  ASSERT_NE(api, nullptr);
  EXPECT_EQ(api->struct_size, sizeof(kestrel_plugin_api_t));
  EXPECT_EQ(api->major, KESTREL_PLUGIN_API_MAJOR);
  EXPECT_EQ(api->minor, KESTREL_PLUGIN_API_MINOR);
  EXPECT_STREQ(api->name, "ref-test");
  EXPECT_NE(api->version, nullptr);
  for (auto slot : {(void*)api->init, (void*)api->device_count, (void*)api->device_get_caps,
                    (void*)api->device_open, (void*)api->device_close, (void*)api->buffer_alloc,
                    (void*)api->buffer_free, (void*)api->buffer_write, (void*)api->buffer_read,
                    (void*)api->buffer_copy, (void*)api->weight_prepare,
                    (void*)api->weight_release, (void*)api->op_query, (void*)api->op_execute,
                    (void*)api->buffer_map}) {
    EXPECT_NE(slot, nullptr);
  }
  EXPECT_EQ(api->stream_create, nullptr);  // synchronous
  EXPECT_EQ(api->event_record, nullptr);
  // The same config gives the same table.
  const kestrel_plugin_api_t* again = nullptr;
  ASSERT_TRUE(Take(HostPluginGetApi(&kTestRefConfig, host.api(), KESTREL_PLUGIN_API_MAJOR, 0, &again)).ok());
  EXPECT_EQ(again, api);
}

TEST(GetApiTest, UnusableHostGivesNoTable) {
  const kestrel_plugin_api_t* api = reinterpret_cast<const kestrel_plugin_api_t*>(1);
  EXPECT_EQ(HostPluginGetApi(&kTestRefConfig, nullptr, KESTREL_PLUGIN_API_MAJOR, 0, &api), nullptr);
  EXPECT_EQ(api, nullptr);
  kestrel_host_api_t small{};
  small.struct_size = 8;
  api = reinterpret_cast<const kestrel_plugin_api_t*>(1);
  EXPECT_EQ(HostPluginGetApi(&kTestRefConfig, &small, KESTREL_PLUGIN_API_MAJOR, 0, &api), nullptr);
  EXPECT_EQ(api, nullptr);
}

TEST_F(RefPluginTest, DeviceCaps) {
  char reason[16] = "untouched";
  EXPECT_EQ(api_->device_count(reason, sizeof reason), 1u);
  kestrel_device_caps_t caps{};
  caps.struct_size = sizeof caps;
  ASSERT_TRUE(Take(api_->device_get_caps(0, &caps)).ok());
  EXPECT_EQ(caps.kind, KESTREL_DEVICE_KIND_CPU);
  EXPECT_STREQ(caps.name, "ref-test");
  EXPECT_STREQ(caps.description, "reference kernels under test");
  EXPECT_GT(caps.memory_bytes, 0u);
  EXPECT_EQ(caps.host_visible, 1);
  EXPECT_EQ(caps.async, 0);
  for (uint32_t dt : {KESTREL_DTYPE_F32, KESTREL_DTYPE_F16, KESTREL_DTYPE_BF16, KESTREL_DTYPE_Q8_0,
                      KESTREL_DTYPE_Q4_0}) {
    EXPECT_TRUE(caps.dtype_mask & KESTREL_DTYPE_BIT(dt));
    EXPECT_TRUE(caps.weight_dtype_mask & KESTREL_DTYPE_BIT(dt));
  }
  EXPECT_TRUE(caps.dtype_mask & KESTREL_DTYPE_BIT(KESTREL_DTYPE_I32));
  EXPECT_FALSE(caps.weight_dtype_mask & KESTREL_DTYPE_BIT(KESTREL_DTYPE_I32));

  // An older, smaller caps struct: only the fields that fit are written.
  kestrel_device_caps_t small;
  std::memset(&small, 0xAB, sizeof small);
  small.struct_size = offsetof(kestrel_device_caps_t, memory_bytes);
  ASSERT_TRUE(Take(api_->device_get_caps(0, &small)).ok());
  EXPECT_STREQ(small.name, "ref-test");
  EXPECT_EQ(small.memory_bytes, 0xABABABABABABABABull);

  EXPECT_EQ(Take(api_->device_get_caps(1, &caps)).code, KESTREL_PLUGIN_OUT_OF_RANGE);
  kestrel_plugin_device_t* dev = nullptr;
  EXPECT_EQ(Take(api_->device_open(1, &dev)).code, KESTREL_PLUGIN_OUT_OF_RANGE);
}

TEST_F(RefPluginTest, Buffers) {
  kestrel_plugin_buffer_t *a = nullptr, *b = nullptr;
  ASSERT_TRUE(Take(api_->buffer_alloc(dev_, 64, KESTREL_BUFFER_FLAG_NONE, &a)).ok());
  ASSERT_TRUE(Take(api_->buffer_alloc(dev_, 64, KESTREL_BUFFER_FLAG_HOST_STAGING, &b)).ok());
  buffers_.push_back(a);
  buffers_.push_back(b);
  std::vector<uint8_t> data(64);
  std::iota(data.begin(), data.end(), 0);
  ASSERT_TRUE(Take(api_->buffer_write(dev_, nullptr, a, 0, data.data(), 64)).ok());
  ASSERT_TRUE(Take(api_->buffer_copy(dev_, nullptr, a, 8, b, 0, 32)).ok());
  std::vector<uint8_t> back(32);
  ASSERT_TRUE(Take(api_->buffer_read(dev_, nullptr, b, 0, back.data(), 32)).ok());
  EXPECT_TRUE(std::equal(back.begin(), back.end(), data.begin() + 8));
  void* mapped = nullptr;
  ASSERT_TRUE(Take(api_->buffer_map(dev_, a, &mapped)).ok());
  EXPECT_EQ(static_cast<uint8_t*>(mapped)[63], 63);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(mapped) % 64, 0u);

  EXPECT_EQ(Take(api_->buffer_write(dev_, nullptr, a, 60, data.data(), 8)).code, KESTREL_PLUGIN_OUT_OF_RANGE);
  EXPECT_EQ(Take(api_->buffer_read(dev_, nullptr, a, UINT64_MAX, back.data(), 2)).code, KESTREL_PLUGIN_OUT_OF_RANGE);
  EXPECT_EQ(Take(api_->buffer_copy(dev_, nullptr, a, 0, b, 40, 32)).code, KESTREL_PLUGIN_OUT_OF_RANGE);
  const Result r = Take(api_->buffer_write(dev_, reinterpret_cast<kestrel_plugin_stream_t*>(8), a,
                                           0, data.data(), 8));
  EXPECT_EQ(r.code, KESTREL_PLUGIN_INVALID_ARGUMENT);
  EXPECT_NE(r.message.find("stream"), std::string::npos);
  EXPECT_EQ(Take(api_->buffer_alloc(dev_, UINT64_MAX, 0, &b)).code, KESTREL_PLUGIN_RESOURCE_EXHAUSTED);
#if !defined(__SANITIZE_ADDRESS__)
  // A size the allocator refuses: std::bad_alloc becomes RESOURCE_EXHAUSTED.
  EXPECT_EQ(Take(api_->buffer_alloc(dev_, uint64_t{1} << 61, 0, &b)).code, KESTREL_PLUGIN_RESOURCE_EXHAUSTED);
#endif
  api_->buffer_free(dev_, nullptr);
  api_->weight_release(dev_, nullptr);
  api_->device_close(nullptr);
}

TEST_F(RefPluginTest, WeightPrepareChecksItsInput) {
  const auto d = Desc(KESTREL_DTYPE_Q4_0, {4, 64});
  std::vector<uint8_t> bytes(4 * 2 * 18);
  kestrel_plugin_weight_t* w = nullptr;
  Result r = Take(api_->weight_prepare(dev_, &d, bytes.data(), bytes.size() - 1, &w));
  EXPECT_EQ(r.code, KESTREL_PLUGIN_INVALID_ARGUMENT);
  EXPECT_NE(r.message.find("143 < 144"), std::string::npos) << r.message;
  const auto bad = Desc(KESTREL_DTYPE_Q4_0, {4, 48});
  r = Take(api_->weight_prepare(dev_, &bad, bytes.data(), bytes.size(), &w));
  EXPECT_EQ(r.code, KESTREL_PLUGIN_INVALID_ARGUMENT);
  EXPECT_NE(r.message.find("block size 32"), std::string::npos) << r.message;
  const auto i32 = Desc(KESTREL_DTYPE_I32, {4});
  r = Take(api_->weight_prepare(dev_, &i32, bytes.data(), 16, &w));
  EXPECT_EQ(r.code, KESTREL_PLUGIN_INVALID_ARGUMENT);
}

// ---- op_query ---------------------------------------------------------------------------------

TEST_F(RefPluginTest, UnknownKindsAreUnsupportedNotErrors) {
  for (uint32_t kind : {0u, 13u, 999u, 0x10000u, 0xFFFFFFFFu}) {
    kestrel_op_desc_t op{};
    op.struct_size = sizeof op;
    op.kind = kind;
    op.op_version = 1;
    uint32_t level = 77;
    const Result r = Query(op, &level);
    EXPECT_TRUE(r.ok()) << kind << ": " << r.message;
    EXPECT_EQ(level, KESTREL_OP_UNSUPPORTED) << kind;
    EXPECT_EQ(Execute(op).code, KESTREL_PLUGIN_UNIMPLEMENTED) << kind;
  }
}

// One valid MATMUL descriptor for the validation tests below.
class MatmulDescTest : public RefPluginTest {
 protected:
  kestrel_op_desc_t Matmul(kestrel_tensor_desc_t x, kestrel_tensor_desc_t w,
                           kestrel_tensor_desc_t out) {
    kestrel_tensor_arg_t a{}, b{}, c{};
    a.desc = x;
    b.desc = w;
    c.desc = out;
    return Op(KESTREL_OP_MATMUL, {a, b}, {c});
  }
  Result QueryError(const kestrel_op_desc_t& op) {
    uint32_t level = 0;
    Result r = Query(op, &level);
    EXPECT_EQ(r.code, KESTREL_PLUGIN_INVALID_ARGUMENT) << r.message;
    // op_execute reports the same error before touching any data.
    EXPECT_EQ(Execute(op).message, r.message);
    return r;
  }
};

TEST_F(MatmulDescTest, BadDescriptorsNameTheOpAndField) {
  auto x = Desc(KESTREL_DTYPE_F32, {3, 64}), w = Desc(KESTREL_DTYPE_Q8_0, {10, 64}),
       out = Desc(KESTREL_DTYPE_F32, {3, 10});
  uint32_t level = 0;
  ASSERT_TRUE(Query(Matmul(x, w, out), &level).ok());
  EXPECT_EQ(level, KESTREL_OP_SUPPORTED);

  auto w63 = Desc(KESTREL_DTYPE_F32, {10, 63});
  EXPECT_EQ(QueryError(Matmul(x, w63, out)).message,
            "MATMUL: input 1 (w) dims[1]=63 != input 0 (x) dims[1]=64");
  EXPECT_EQ(QueryError(Matmul(x, w, Desc(KESTREL_DTYPE_F32, {3, 11}))).message,
            "MATMUL: output 0 (out) dims[1]=11 != input 1 (w) dims[0]=10");
  EXPECT_EQ(QueryError(Matmul(Desc(KESTREL_DTYPE_F32, {3, 1, 64}), w, out)).message,
            "MATMUL: input 0 (x) rank=3, expected 2");
  EXPECT_NE(QueryError(Matmul(x, Desc(KESTREL_DTYPE_Q8_0, {10, 48}), out)).message.find(
                "MATMUL: input 1 (w) dims[1]=48 is not a multiple of the Q8_0 block size 32"),
            std::string::npos);
  EXPECT_NE(QueryError(Matmul(x, Desc(KESTREL_DTYPE_I32, {10, 64}), out)).message.find(
                "MATMUL: input 1 (w) dtype I32"),
            std::string::npos);
  EXPECT_NE(QueryError(Matmul(x, Desc(99, {10, 64}), out)).message.find("dtype=99"),
            std::string::npos);
  EXPECT_NE(QueryError(Matmul(Desc(KESTREL_DTYPE_F32, {-3, 64}), w, out)).message.find("dims[0]=-3"),
            std::string::npos);
  auto small = x;
  small.struct_size = 8;
  EXPECT_NE(QueryError(Matmul(small, w, out)).message.find("struct_size=8"), std::string::npos);

  kestrel_op_desc_t op = Matmul(x, w, out);
  op.n_inputs = 4;
  EXPECT_EQ(QueryError(op).message, "MATMUL: n_inputs=4, expected 2 to 3");
  op.n_inputs = 1;
  EXPECT_EQ(QueryError(op).message, "MATMUL: n_inputs=1, expected 2 to 3");
  op = Matmul(x, w, out);
  op.struct_size = 12;
  EXPECT_NE(QueryError(op).message.find("struct_size=12"), std::string::npos);
}

// The optional inputs of plugin ABI 1.2: MATMUL's bias [N] and ROPE's freq_factors [n_rot / 2].
TEST_F(MatmulDescTest, OptionalBiasAndFreqFactorsAreChecked) {
  auto x = Desc(KESTREL_DTYPE_F32, {3, 64}), w = Desc(KESTREL_DTYPE_Q8_0, {10, 64}),
       out = Desc(KESTREL_DTYPE_F32, {3, 10});
  kestrel_tensor_arg_t a{}, b{}, c{}, bias{};
  a.desc = x;
  b.desc = w;
  c.desc = out;
  bias.desc = Desc(KESTREL_DTYPE_F32, {10});
  uint32_t level = 0;
  ASSERT_TRUE(Query(Op(KESTREL_OP_MATMUL, {a, b, bias}, {c}), &level).ok());
  EXPECT_EQ(level, KESTREL_OP_SUPPORTED);
  bias.desc = Desc(KESTREL_DTYPE_F32, {11});
  EXPECT_EQ(QueryError(Op(KESTREL_OP_MATMUL, {a, b, bias}, {c})).message,
            "MATMUL: input 2 (bias) dims[0]=11 != input 1 (w) dims[0]=10");

  kestrel_op_rope_params_t p{sizeof(kestrel_op_rope_params_t), KESTREL_ROPE_STYLE_NEOX, 8, 1e4f, 1.0f};
  kestrel_tensor_arg_t rx{}, pos{}, ff{}, rout{};
  rx.desc = Desc(KESTREL_DTYPE_F32, {2, 3, 16});
  pos.desc = Desc(KESTREL_DTYPE_I32, {2});
  rout.desc = rx.desc;
  ff.desc = Desc(KESTREL_DTYPE_F32, {4});
  ASSERT_TRUE(Query(Op(KESTREL_OP_ROPE, {rx, pos, ff}, {rout}, &p, sizeof p), &level).ok());
  EXPECT_EQ(level, KESTREL_OP_SUPPORTED);
  ff.desc = Desc(KESTREL_DTYPE_F32, {8});
  EXPECT_EQ(QueryError(Op(KESTREL_OP_ROPE, {rx, pos, ff}, {rout}, &p, sizeof p)).message,
            "ROPE: input 2 (freq_factors) dims[0]=8 != params.n_rot / 2=4");
}

TEST_F(MatmulDescTest, LayoutsAndDtypesRefCannotRunAreUnsupported) {
  auto x = Desc(KESTREL_DTYPE_F32, {3, 64}), w = Desc(KESTREL_DTYPE_F32, {10, 64}),
       out = Desc(KESTREL_DTYPE_F32, {3, 10});
  uint32_t level = 77;
  // Explicit packed strides are fine.
  auto packed = x;
  packed.strides[0] = 64 * 4;
  packed.strides[1] = 4;
  ASSERT_TRUE(Query(Matmul(packed, w, out), &level).ok());
  EXPECT_EQ(level, KESTREL_OP_SUPPORTED);
  // A padded row stride is not.
  auto strided = x;
  strided.strides[0] = 80 * 4;
  ASSERT_TRUE(Query(Matmul(strided, w, out), &level).ok());
  EXPECT_EQ(level, KESTREL_OP_UNSUPPORTED);
  EXPECT_EQ(Execute(Matmul(strided, w, out)).code, KESTREL_PLUGIN_UNIMPLEMENTED);
  ASSERT_FALSE(host_.logs.empty());
  EXPECT_NE(host_.logs.back().find("non-packed stride"), std::string::npos) << host_.logs.back();
  // F16 activations are within the ABI but not what the reference kernels run.
  ASSERT_TRUE(Query(Matmul(Desc(KESTREL_DTYPE_F16, {3, 64}), w, out), &level).ok());
  EXPECT_EQ(level, KESTREL_OP_UNSUPPORTED);
}

// Descriptors of a valid 2-sequence PAGED_ATTENTION (8 heads over 4 KV heads of 16, F16 caches of
// 10 blocks of 16): q, k_cache, v_cache, block_tables, query_start, kv_lens, out.
std::array<kestrel_tensor_arg_t, 7> AttentionArgs() {
  std::array<kestrel_tensor_arg_t, 7> a{};
  a[0].desc = Desc(KESTREL_DTYPE_F32, {3, 8, 16});
  a[1].desc = a[2].desc = Desc(KESTREL_DTYPE_F16, {10, 16, 4, 16});
  a[3].desc = Desc(KESTREL_DTYPE_I32, {2, 4});
  a[4].desc = Desc(KESTREL_DTYPE_I32, {3});
  a[5].desc = Desc(KESTREL_DTYPE_I32, {2});
  a[6].desc = a[0].desc;
  return a;
}

TEST_F(RefPluginTest, BadParamsAreInvalid) {
  kestrel_tensor_arg_t x{}, pos{}, out{};
  x.desc = Desc(KESTREL_DTYPE_F32, {2, 4, 16});
  pos.desc = Desc(KESTREL_DTYPE_I32, {2});
  out.desc = x.desc;
  kestrel_op_rope_params_t rp{sizeof rp, KESTREL_ROPE_STYLE_NEOX, 7, 10000.0f, 1.0f};
  uint32_t level;
  Result r = Query(Op(KESTREL_OP_ROPE, {x, pos}, {out}, &rp, sizeof rp), &level);
  EXPECT_EQ(r.code, KESTREL_PLUGIN_INVALID_ARGUMENT);
  EXPECT_EQ(r.message, "ROPE: params.n_rot=7 must be even and <= input 0 (x) dims[2]=16");
  rp.n_rot = 8;
  rp.style = 1;
  r = Query(Op(KESTREL_OP_ROPE, {x, pos}, {out}, &rp, sizeof rp), &level);
  EXPECT_NE(r.message.find("params.style=1"), std::string::npos) << r.message;
  rp.style = KESTREL_ROPE_STYLE_NORM;
  r = Query(Op(KESTREL_OP_ROPE, {x, pos}, {out}, &rp, sizeof rp - 4), &level);
  EXPECT_NE(r.message.find("ROPE: params_size=16 < 20"), std::string::npos) << r.message;
  r = Query(Op(KESTREL_OP_ROPE, {x, pos}, {out}, nullptr, 0), &level);
  EXPECT_EQ(r.message, "ROPE: params is NULL");
  ASSERT_TRUE(Query(Op(KESTREL_OP_ROPE, {x, pos}, {out}, &rp, sizeof rp), &level).ok());
  EXPECT_EQ(level, KESTREL_OP_SUPPORTED);
  pos.desc.dtype = KESTREL_DTYPE_F32;
  r = Query(Op(KESTREL_OP_ROPE, {x, pos}, {out}, &rp, sizeof rp), &level);
  EXPECT_NE(r.message.find("ROPE: input 1 (positions) dtype F32"), std::string::npos) << r.message;

  // Attention: heads inconsistent with the params.
  auto [q, kc, vc, bt, qs, kl, o] = AttentionArgs();
  kestrel_op_attention_params_t ap{sizeof ap, 8, 4, 16, 16, 1, 0.25f, 0, 0};
  ASSERT_TRUE(Query(Op(KESTREL_OP_PAGED_ATTENTION, {q, kc, vc, bt, qs, kl}, {o}, &ap, sizeof ap), &level).ok());
  EXPECT_EQ(level, KESTREL_OP_SUPPORTED);
  ap.n_kv_heads = 2;
  r = Query(Op(KESTREL_OP_PAGED_ATTENTION, {q, kc, vc, bt, qs, kl}, {o}, &ap, sizeof ap), &level);
  EXPECT_EQ(r.message, "PAGED_ATTENTION: input 1 (k_cache) dims[2]=4 != params.n_kv_heads=2");
  ap.n_kv_heads = 3;
  r = Query(Op(KESTREL_OP_PAGED_ATTENTION, {q, kc, vc, bt, qs, kl}, {o}, &ap, sizeof ap), &level);
  EXPECT_NE(r.message.find("multiple of params.n_kv_heads=3"), std::string::npos) << r.message;
  ap.n_kv_heads = 4;
  ap.tree_mask = 1;  // needs the 7th input
  r = Query(Op(KESTREL_OP_PAGED_ATTENTION, {q, kc, vc, bt, qs, kl}, {o}, &ap, sizeof ap), &level);
  EXPECT_EQ(r.message, "PAGED_ATTENTION: n_inputs=6, expected 7");
  ap.tree_mask = 0;
  qs.desc.dims[0] = 2;
  r = Query(Op(KESTREL_OP_PAGED_ATTENTION, {q, kc, vc, bt, qs, kl}, {o}, &ap, sizeof ap), &level);
  EXPECT_EQ(r.message,
            "PAGED_ATTENTION: input 4 (query_start) dims[0]=2 != input 3 (block_tables) dims[0] + 1=3");
}

// Plugin ABI 1.3: the version-2 forms (embedding scale, attention window) and an older host's
// shorter attention params.
TEST_F(RefPluginTest, VersionTwoFormsAndOlderParams) {
  const std::array<kestrel_tensor_arg_t, 7> att = AttentionArgs();
  kestrel_op_attention_params_t ap{sizeof ap, 8, 4, 16, 16, 1, 0.25f, 0, 512};
  uint32_t level = 0;
  auto attention = [&](uint32_t version, size_t size) {
    kestrel_op_desc_t op = Op(KESTREL_OP_PAGED_ATTENTION, {att[0], att[1], att[2], att[3], att[4], att[5]},
                              {att[6]}, &ap, size);
    op.op_version = version;
    return Query(op, &level);
  };
  ASSERT_TRUE(attention(2, sizeof ap).ok());
  EXPECT_EQ(level, KESTREL_OP_SUPPORTED);
  // A host from before 1.3 sends the 32-byte struct with op_version 1: still supported.
  ap.struct_size = offsetof(kestrel_op_attention_params_t, window);
  ASSERT_TRUE(attention(1, ap.struct_size).ok());
  EXPECT_EQ(level, KESTREL_OP_SUPPORTED);
  // op_version 2 without the window field is malformed.
  Result r = attention(2, ap.struct_size);
  EXPECT_EQ(r.code, KESTREL_PLUGIN_INVALID_ARGUMENT);
  EXPECT_NE(r.message.find("op_version 2 needs params with the window field"), std::string::npos)
      << r.message;
  ap.struct_size = sizeof ap;
  // A version this plugin does not know: unsupported, not an error.
  ASSERT_TRUE(attention(3, sizeof ap).ok());
  EXPECT_EQ(level, KESTREL_OP_UNSUPPORTED);

  kestrel_tensor_arg_t table{}, ids{}, out{};
  table.desc = Desc(KESTREL_DTYPE_F32, {5, 4});
  ids.desc = Desc(KESTREL_DTYPE_I32, {2});
  out.desc = Desc(KESTREL_DTYPE_F32, {2, 4});
  kestrel_op_embedding_params_t ep{sizeof ep, 2.0f};
  kestrel_op_desc_t emb = Op(KESTREL_OP_EMBEDDING_GATHER, {table, ids}, {out}, &ep, sizeof ep);
  emb.op_version = 2;
  ASSERT_TRUE(Query(emb, &level).ok());
  EXPECT_EQ(level, KESTREL_OP_SUPPORTED);
  ep.scale = std::numeric_limits<float>::infinity();
  r = Query(emb, &level);
  EXPECT_EQ(r.message, "EMBEDDING_GATHER: params.scale=inf is not finite");
  emb.params = nullptr;
  r = Query(emb, &level);
  EXPECT_EQ(r.message, "EMBEDDING_GATHER: params is NULL");

  // Through op_execute: the scale multiplies the gathered rows; GEGLU runs.
  const std::vector<float> rows = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20};
  ep.scale = 0.5f;
  const auto out_buf = Output(Desc(KESTREL_DTYPE_F32, {2, 4}));
  kestrel_op_desc_t run = Op(KESTREL_OP_EMBEDDING_GATHER,
                             {Upload(Desc(KESTREL_DTYPE_F32, {5, 4}), rows),
                              Upload(Desc(KESTREL_DTYPE_I32, {2}), std::vector<int32_t>{4, 1})},
                             {out_buf}, &ep, sizeof ep);
  run.op_version = 2;
  Run(run);
  EXPECT_EQ(Download(out_buf), (std::vector<float>{8.5f, 9, 9.5f, 10, 2.5f, 3, 3.5f, 4}));
  const std::vector<float> gate = {-1.0f, 0.0f, 0.5f, 3.0f}, up = {2.0f, 5.0f, -1.0f, 1.0f};
  const auto g_out = Output(Desc(KESTREL_DTYPE_F32, {1, 4}));
  Run(Op(KESTREL_OP_GEGLU,
         {Upload(Desc(KESTREL_DTYPE_F32, {1, 4}), gate), Upload(Desc(KESTREL_DTYPE_F32, {1, 4}), up)},
         {g_out}));
  const std::vector<float> got = Download(g_out);
  // gelu_tanh(-1) = -0.158808, gelu_tanh(0.5) = 0.345714, gelu_tanh(3) = 2.996363.
  EXPECT_NEAR(got[0], -0.158808f * 2.0f, 1e-5);
  EXPECT_EQ(got[1], 0.0f);
  EXPECT_NEAR(got[2], -0.345714f, 1e-5);
  EXPECT_NEAR(got[3], 2.996363f, 1e-5);
}

// ---- op_execute: data errors --------------------------------------------------------------------

TEST_F(RefPluginTest, OutOfRangeTokenIdIsAnErrorNotACrash) {
  SEED_TRACE();
  Rng rng(20);
  const int64_t V = 16, D = 32;
  const auto table = Upload(Desc(KESTREL_DTYPE_F32, {V, D}), rng.Floats(V * D));
  const auto out = Output(Desc(KESTREL_DTYPE_F32, {3, D}));
  for (int32_t bad : {16, -1, 1 << 30}) {
    const auto ids = Upload(Desc(KESTREL_DTYPE_I32, {3}), std::vector<int32_t>{1, bad, 2});
    const Result r = Execute(Op(KESTREL_OP_EMBEDDING_GATHER, {table, ids}, {out}));
    EXPECT_EQ(r.code, KESTREL_PLUGIN_OUT_OF_RANGE);
    EXPECT_EQ(r.message, "EMBEDDING_GATHER: ids[1]=" + std::to_string(bad) + " is outside [0, 16)");
    for (float v : Download(out)) ASSERT_TRUE(std::isnan(v));  // nothing written
  }
}

TEST_F(RefPluginTest, ArgumentsMustFitTheirBuffersAndWeights) {
  SEED_TRACE();
  Rng rng(21);
  const auto a = Upload(Desc(KESTREL_DTYPE_F32, {2, 8}), rng.Floats(16));
  auto b = a;
  auto out = Output(Desc(KESTREL_DTYPE_F32, {2, 8}));
  b.offset = 4;  // 64 bytes from offset 4 exceed the 64-byte buffer
  Result r = Execute(Op(KESTREL_OP_ADD, {a, b}, {out}));
  EXPECT_EQ(r.code, KESTREL_PLUGIN_OUT_OF_RANGE);
  EXPECT_NE(r.message.find("ADD: input 1"), std::string::npos) << r.message;
  b.offset = 0;
  b.buffer = nullptr;
  r = Execute(Op(KESTREL_OP_ADD, {a, b}, {out}));
  EXPECT_NE(r.message.find("exactly one of buffer and weight"), std::string::npos) << r.message;

  // A weight whose desc differs from the arg's.
  const auto wd = Desc(KESTREL_DTYPE_Q8_0, {4, 32});
  auto w = Prepare(wd, RandomWeights(rng, KESTREL_DTYPE_Q8_0, 4, 32));
  const auto x = Upload(Desc(KESTREL_DTYPE_F32, {1, 32}), rng.Floats(32));
  auto y = Output(Desc(KESTREL_DTYPE_F32, {1, 4}));
  w.desc.dtype = KESTREL_DTYPE_Q4_0;
  r = Execute(Op(KESTREL_OP_MATMUL, {x, w}, {y}));
  EXPECT_EQ(r.code, KESTREL_PLUGIN_INVALID_ARGUMENT);
  EXPECT_NE(r.message.find("prepared weight"), std::string::npos) << r.message;
  w.desc.dtype = KESTREL_DTYPE_Q8_0;
  ASSERT_TRUE(Execute(Op(KESTREL_OP_MATMUL, {x, w}, {y})).ok());
  // A weight is never an output.
  r = Execute(Op(KESTREL_OP_ADD, {a, a}, {w}));
  EXPECT_EQ(r.code, KESTREL_PLUGIN_INVALID_ARGUMENT);
}

// ---- every op through the table vs float64 ------------------------------------------------------

TEST_F(RefPluginTest, EmbeddingRmsNormRopeMatmulSwigluAddLogits) {
  SEED_TRACE();
  Rng rng(22);
  const int64_t T = 5, V = 40, D = 64, H = 8, Dh = 8, F = 96;
  for (uint32_t wdt : {KESTREL_DTYPE_F32, KESTREL_DTYPE_F16, KESTREL_DTYPE_BF16, KESTREL_DTYPE_Q8_0,
                       KESTREL_DTYPE_Q4_0}) {
    SCOPED_TRACE(DtypeName(wdt));
    // Embedding from a prepared weight.
    const auto table_bytes = RandomWeights(rng, wdt, V, D);
    const auto table = Prepare(Desc(wdt, {V, D}), table_bytes);
    std::vector<int32_t> id_values(T);
    for (auto& id : id_values) id = rng.Int(0, V - 1);
    const auto ids = Upload(Desc(KESTREL_DTYPE_I32, {T}), id_values);
    const auto emb = Output(Desc(KESTREL_DTYPE_F32, {T, D}));
    Run(Op(KESTREL_OP_EMBEDDING_GATHER, {table, ids}, {emb}));
    std::vector<double> expected(T * D);
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t d = 0; d < D; ++d) {
        expected[t * D + d] = OracleElement(wdt, table_bytes.data() + id_values[t] * OracleRowBytes(wdt, D), d);
      }
    }
    EXPECT_LE(RelErr(Download(emb), expected), kF32Tol) << "EMBEDDING_GATHER";

    // RMSNorm.
    const std::vector<float> xv = rng.Floats(T * D, -2, 2), nw = rng.Floats(D);
    const auto x = Upload(Desc(KESTREL_DTYPE_F32, {T, D}), xv);
    const auto norm_w = Upload(Desc(KESTREL_DTYPE_F32, {D}), nw);
    const auto normed = Output(Desc(KESTREL_DTYPE_F32, {T, D}));
    const kestrel_op_rmsnorm_params_t np{sizeof np, 1e-6f};
    Run(Op(KESTREL_OP_RMSNORM, {x, norm_w}, {normed}, &np, sizeof np));
    EXPECT_LE(RelErr(Download(normed), testing_util::OracleRmsNorm(xv, nw, T, D, 1e-6)), kF32Tol);

    // RoPE in place (output aliases input), NEOX, partial rotation.
    const std::vector<float> qv = rng.Floats(T * H * Dh);
    auto q = Upload(Desc(KESTREL_DTYPE_F32, {T, H, Dh}), qv);
    const std::vector<int32_t> posv = {0, 1, 7, 100, 3};
    const auto pos = Upload(Desc(KESTREL_DTYPE_I32, {T}), posv);
    const kestrel_op_rope_params_t rp{sizeof rp, KESTREL_ROPE_STYLE_NEOX, 6, 10000.0f, 1.0f};
    Run(Op(KESTREL_OP_ROPE, {q, pos}, {q}, &rp, sizeof rp));
    EXPECT_LE(RelErr(Download(q), testing_util::OracleRope(qv, posv, T, H, Dh, KESTREL_ROPE_STYLE_NEOX,
                                                           6, 10000.0, 1.0)),
              3e-5);

    // Matmul with the weight in a buffer and as a prepared weight.
    const auto wb = RandomWeights(rng, wdt, F, D);
    const auto expected_mm = testing_util::OracleMatmul(xv, T, D, wdt, wb.data(), F);
    for (bool prepared : {false, true}) {
      const auto w = prepared ? Prepare(Desc(wdt, {F, D}), wb) : Upload(Desc(wdt, {F, D}), wb.data());
      const auto y = Output(Desc(KESTREL_DTYPE_F32, {T, F}));
      Run(Op(KESTREL_OP_MATMUL, {x, w}, {y}));
      EXPECT_LE(RelErr(Download(y), expected_mm), kF32Tol) << "MATMUL prepared=" << prepared;
    }

    // SwiGLU and in-place Add.
    const std::vector<float> gv = rng.Floats(T * F, -6, 6), uv = rng.Floats(T * F, -6, 6);
    const auto g = Upload(Desc(KESTREL_DTYPE_F32, {T, F}), gv);
    auto u = Upload(Desc(KESTREL_DTYPE_F32, {T, F}), uv);
    const auto act = Output(Desc(KESTREL_DTYPE_F32, {T, F}));
    Run(Op(KESTREL_OP_SWIGLU, {g, u}, {act}));
    std::vector<double> e(T * F);
    for (int64_t i = 0; i < T * F; ++i) e[i] = gv[i] / (1.0 + std::exp(-static_cast<double>(gv[i]))) * uv[i];
    EXPECT_LE(RelErr(Download(act), e), kF32Tol) << "SWIGLU";
    Run(Op(KESTREL_OP_ADD, {g, u}, {u}));
    for (int64_t i = 0; i < T * F; ++i) e[i] = static_cast<double>(gv[i]) + uv[i];
    EXPECT_LE(RelErr(Download(u), e), kF32Tol) << "ADD";

    // Logits over a row subset.
    const std::vector<int32_t> rowv = {4, 0};
    const auto rows = Upload(Desc(KESTREL_DTYPE_I32, {2}), rowv);
    const auto lw = Prepare(Desc(wdt, {V, D}), table_bytes);
    const auto logits = Output(Desc(KESTREL_DTYPE_F32, {2, V}));
    Run(Op(KESTREL_OP_LOGITS, {x, lw, rows}, {logits}));
    std::vector<float> gathered(xv.begin() + 4 * D, xv.begin() + 5 * D);
    gathered.insert(gathered.end(), xv.begin(), xv.begin() + D);
    EXPECT_LE(RelErr(Download(logits), testing_util::OracleMatmul(gathered, 2, D, wdt, table_bytes.data(), V)),
              kF32Tol) << "LOGITS";
  }
}

// One engine step: KV_WRITE of this step's tokens into paged F16/F32 caches (block tables out of
// order, a cached prefix), then PAGED_ATTENTION over decode + prefill sequences, then a
// copy-on-write KV_BLOCK_COPY, all through buffers.
TEST_F(RefPluginTest, KvWriteAttentionBlockCopy) {
  SEED_TRACE();
  Rng rng(23);
  for (uint32_t cdt : {KESTREL_DTYPE_F16, KESTREL_DTYPE_F32}) {
    for (int64_t B : {16, 32}) {
      for (bool tree : {false, true}) {
        SCOPED_TRACE(::testing::Message() << DtypeName(cdt) << " B=" << B << " tree=" << tree);
        const int64_t H = 8, Hkv = 4, Dh = 8;
        AttnCase c = MakeAttnCase(rng, H, Hkv, Dh, B, cdt, {1, 4, 1}, {40, 4 + 21, 1});
        if (tree) c.parents = {-1, -1, 0, 0, 1, -1};
        const int64_t T = c.T(), row = Hkv * Dh;
        const auto cache_desc = Desc(cdt, {c.NB, B, Hkv, Dh});
        const auto kc = Upload(cache_desc, c.k_cache.data());
        const auto vc = Upload(cache_desc, c.v_cache.data());

        // This step's K/V go to the last q_len positions of each sequence.
        const std::vector<float> kv = rng.Floats(T * row), vv = rng.Floats(T * row);
        std::vector<int32_t> slots;
        for (size_t s = 0; s < c.q_lens.size(); ++s) {
          for (int32_t j = 0; j < c.q_lens[s]; ++j) {
            const int32_t p = c.kv_lens[s] - c.q_lens[s] + j;
            slots.push_back(static_cast<int32_t>(c.block_tables[s * c.MB + p / B] * B + p % B));
          }
        }
        Run(Op(KESTREL_OP_KV_WRITE,
               {Upload(Desc(KESTREL_DTYPE_F32, {T, Hkv, Dh}), kv),
                Upload(Desc(KESTREL_DTYPE_F32, {T, Hkv, Dh}), vv),
                Upload(Desc(KESTREL_DTYPE_I32, {T}), slots)},
               {kc, vc}));
        // Apply the same writes to the oracle's copy of the caches.
        for (int64_t t = 0; t < T; ++t) {
          for (int64_t e = 0; e < row; ++e) {
            const int64_t i = slots[t] * row + e;
            for (auto [cache, src] : {std::pair{&c.k_cache, &kv}, std::pair{&c.v_cache, &vv}}) {
              const float val = (*src)[t * row + e];
              if (cdt == KESTREL_DTYPE_F16) {
                const uint16_t h = FloatToHalf(val);
                ASSERT_EQ(HalfToFloat(h), OracleRoundHalf(val));
                std::memcpy(cache->data() + 2 * i, &h, 2);
              } else {
                std::memcpy(cache->data() + 4 * i, &val, 4);
              }
            }
          }
        }
        EXPECT_EQ(Download<uint8_t>(kc), c.k_cache);
        EXPECT_EQ(Download<uint8_t>(vc), c.v_cache);

        std::vector<kestrel_tensor_arg_t> ins = {
            Upload(Desc(KESTREL_DTYPE_F32, {T, H, Dh}), c.q), kc, vc,
            Upload(Desc(KESTREL_DTYPE_I32, {3, c.MB}), c.block_tables),
            Upload(Desc(KESTREL_DTYPE_I32, {4}), c.query_start),
            Upload(Desc(KESTREL_DTYPE_I32, {3}), c.kv_lens)};
        if (tree) ins.push_back(Upload(Desc(KESTREL_DTYPE_I32, {T}), c.parents));
        const auto out = Output(Desc(KESTREL_DTYPE_F32, {T, H, Dh}));
        const kestrel_op_attention_params_t ap{sizeof ap, 8, 4, 8, static_cast<uint32_t>(B), 1,
                                               c.scale, tree ? 1u : 0u, 0};
        Run(Op(KESTREL_OP_PAGED_ATTENTION, ins, {out}, &ap, sizeof ap));
        EXPECT_LE(RelErr(Download(out), testing_util::OracleAttention(c)), kF32Tol);

        // A block id beyond the pool is an error, not a read out of bounds.
        std::vector<int32_t> bad_tables = c.block_tables;
        bad_tables[0] = static_cast<int32_t>(c.NB + 1000);
        ins[3] = Upload(Desc(KESTREL_DTYPE_I32, {3, c.MB}), bad_tables);
        EXPECT_EQ(Execute(Op(KESTREL_OP_PAGED_ATTENTION, ins, {out}, &ap, sizeof ap)).code,
                  KESTREL_PLUGIN_OUT_OF_RANGE);

        // Copy-on-write: block of sequence 0 -> a spare block.
        const int32_t src = c.block_tables[0], dst = c.block_tables[c.MB * 0 + 0] == 0 ? 1 : 0;
        const std::vector<int32_t> pairs = {src, dst};
        Run(Op(KESTREL_OP_KV_BLOCK_COPY, {Upload(Desc(KESTREL_DTYPE_I32, {1, 2}), pairs)}, {kc, vc}));
        const size_t block_bytes = B * row * (cdt == KESTREL_DTYPE_F16 ? 2 : 4);
        const auto k_after = Download<uint8_t>(kc);
        EXPECT_EQ(0, std::memcmp(k_after.data() + dst * block_bytes, c.k_cache.data() + src * block_bytes,
                                 block_bytes));
      }
    }
  }
}

// ---- a second plugin built from the same host plugin --------------------------------------------

TEST(SecondPluginTest, CoexistsWithItsOwnNameAndKinds) {
  TestHost host;
  const kestrel_plugin_api_t *ref = nullptr, *add_only = nullptr;
  ASSERT_TRUE(Take(HostPluginGetApi(&kTestRefConfig, host.api(), KESTREL_PLUGIN_API_MAJOR, 0, &ref)).ok());
  ASSERT_TRUE(Take(HostPluginGetApi(&kAddOnlyConfig, host.api(), KESTREL_PLUGIN_API_MAJOR, 0, &add_only)).ok());
  ASSERT_NE(ref, add_only);
  EXPECT_STREQ(add_only->name, "add-only");
  EXPECT_STREQ(add_only->version, "9.9");
  kestrel_device_caps_t caps{};
  caps.struct_size = sizeof caps;
  ASSERT_TRUE(Take(add_only->device_get_caps(0, &caps)).ok());
  EXPECT_STREQ(caps.name, "add-only-dev");

  kestrel_plugin_device_t *d1 = nullptr, *d2 = nullptr;
  ASSERT_TRUE(Take(ref->device_open(0, &d1)).ok());
  ASSERT_TRUE(Take(add_only->device_open(0, &d2)).ok());
  kestrel_tensor_arg_t x{}, w{}, y{};
  x.desc = Desc(KESTREL_DTYPE_F32, {1, 32});
  w.desc = Desc(KESTREL_DTYPE_F32, {2, 32});
  y.desc = Desc(KESTREL_DTYPE_F32, {1, 2});
  kestrel_tensor_arg_t ins[] = {x, w};
  kestrel_op_desc_t op{sizeof op, KESTREL_OP_MATMUL, 1, 2, 1, 0, ins, &y, nullptr, 0};
  kestrel_op_support_t s{sizeof s, 77, 5};
  ASSERT_TRUE(Take(ref->op_query(d1, &op, &s)).ok());
  EXPECT_EQ(s.level, KESTREL_OP_SUPPORTED);
  EXPECT_EQ(s.workspace_bytes, 0u);
  ASSERT_TRUE(Take(add_only->op_query(d2, &op, &s)).ok());
  EXPECT_EQ(s.level, KESTREL_OP_UNSUPPORTED);
  // A device of one plugin is rejected by the other.
  const Result r = Take(add_only->op_query(d1, &op, &s));
  EXPECT_EQ(r.code, KESTREL_PLUGIN_INVALID_ARGUMENT);
  EXPECT_NE(r.message.find("add-only"), std::string::npos) << r.message;
  ref->device_close(d1);
  add_only->device_close(d2);
}

// ---- the built module ---------------------------------------------------------------------------

TEST(RefModuleTest, DlopenExportsTheEntryPoint) {
  const char* dir = std::getenv("KESTREL_PLUGIN_DIR");
  if (dir == nullptr) GTEST_SKIP() << "KESTREL_PLUGIN_DIR is not set";
  const std::string path = std::string(dir) + "/libkestrel_plugin_ref.so";
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(lib, nullptr) << dlerror();
  auto get_api = reinterpret_cast<kestrel_plugin_get_api_fn>(dlsym(lib, KESTREL_PLUGIN_ENTRY_SYMBOL));
  ASSERT_NE(get_api, nullptr);
  // Internal symbols stay hidden.
  EXPECT_EQ(dlsym(lib, "_ZN7kestrel7plugins3ref6MatmulEPKflljPKvlPf"), nullptr);

  TestHost host;
  const kestrel_plugin_api_t* api = nullptr;
  Result r = Take(get_api(host.api(), KESTREL_PLUGIN_API_MAJOR + 1, 0, &api));
  EXPECT_EQ(r.code, KESTREL_PLUGIN_FAILED_PRECONDITION);
  EXPECT_NE(r.message.find("plugin 'ref'"), std::string::npos) << r.message;
  EXPECT_EQ(api, nullptr);
  ASSERT_TRUE(Take(get_api(host.api(), KESTREL_PLUGIN_API_MAJOR, KESTREL_PLUGIN_API_MINOR, &api)).ok());
  ASSERT_NE(api, nullptr);
  EXPECT_STREQ(api->name, "ref");
  ASSERT_TRUE(Take(api->init(nullptr, 0)).ok());
  kestrel_device_caps_t caps{};
  caps.struct_size = sizeof caps;
  ASSERT_TRUE(Take(api->device_get_caps(0, &caps)).ok());
  EXPECT_STREQ(caps.name, "ref");
  kestrel_plugin_device_t* dev = nullptr;
  ASSERT_TRUE(Take(api->device_open(0, &dev)).ok());
  kestrel_op_desc_t moe{};
  moe.struct_size = sizeof moe;
  moe.kind = KESTREL_OP_MOE;
  moe.op_version = 1;
  // The module claims MOE: an empty MOE descriptor is malformed (not merely unsupported).
  kestrel_op_support_t s{sizeof s, 77, 0};
  Result r_moe = Take(api->op_query(dev, &moe, &s));
  EXPECT_EQ(r_moe.code, KESTREL_PLUGIN_INVALID_ARGUMENT);
  EXPECT_EQ(r_moe.message, "MOE: params is NULL");
  api->device_close(dev);
  if (api->shutdown) api->shutdown();
  dlclose(lib);
}

}  // namespace
}  // namespace kestrel::plugin_sdk
