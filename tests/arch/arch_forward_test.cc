// Each architecture's synthetic model (kestrel-synth --shape <arch>-tiny, F32) against the
// independent float64 forward of reference_forward.h, through the public C API: the prefill
// logits close (relative L2 error within the device's tier) and greedy ids equal for a dozen
// steps, on ref, cpu and opencl. Plus bad input per architecture: a missing required tensor or
// key is refused naming it.
#include <cmath>
#include <cstdio>
#include <ostream>
#include <string>
#include <unistd.h>
#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/gguf/gguf_file.h"
#include "runtime/gguf/gguf_writer.h"
#include "tests/arch/arch_test_util.h"
#include "tests/arch/reference_forward.h"
#include "tests/test_util.h"

namespace kestrel::testing {
namespace {

struct Case {
  std::string shape;
  std::string device;
  uint32_t context;  // session context (phi3: 64 = short RoPE factors, 128 = long)
  double tol;        // relative L2 error of the logits vs float64
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.shape << " on " << c.device << ", context " << c.context;
}

std::string CaseName(const ::testing::TestParamInfo<Case>& info) {
  std::string n = info.param.shape + "_" + info.param.device + "_ctx" +
                  std::to_string(info.param.context);
  for (char& c : n) {
    if (c == '-') c = '_';
  }
  return n;
}

class ArchForwardTest : public ::testing::TestWithParam<Case> {};

TEST_P(ArchForwardTest, LogitsCloseAndGreedyIdsEqualToFloat64) {
  const Case& c = GetParam();
  const std::string path = SynthModel(c.shape);
  auto file = runtime::GgufFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  auto reference = ReferenceForward::Create(**file, c.context);
  ASSERT_TRUE(reference.ok()) << reference.status();

  RuntimePtr rt = MakeRuntime();
  ModelPtr model;
  StatusPtr s = LoadModel(rt.get(), path, c.device, &model);
  if (s != nullptr && kestrel_status_code(s.get()) == KESTREL_STATUS_NOT_FOUND &&
      c.device != "ref") {
    GTEST_SKIP() << "no " << c.device << " device: " << kestrel_status_message(s.get());
  }
  ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
  SessionPtr session = MakeGreedySession(model.get(), c.context);
  ASSERT_NE(session, nullptr);

  const std::vector<int32_t> prompt = {1, 17, 250, 3, 401, 99};
  std::vector<double> want;
  for (int32_t t : prompt) want = reference->Step(t);
  KESTREL_ASSERT_OK(kestrel_session_decode(session.get(), prompt.data(), prompt.size()));
  std::vector<float> got(reference->n_vocab());
  size_t n = 0;
  for (int step = 0; step < 12; ++step) {
    KESTREL_ASSERT_OK(kestrel_session_get_logits(session.get(), got.data(), got.size(), &n));
    ASSERT_EQ(n, got.size());
    const double err = RelL2(got, want);
    EXPECT_LE(err, c.tol) << "step " << step;
    const int32_t next = ArgMax(want);
    ASSERT_EQ(ArgMax(got), next) << "step " << step << " (logit error " << err << ")";
    want = reference->Step(next);
    KESTREL_ASSERT_OK(kestrel_session_decode(session.get(), &next, 1));
  }
}

std::vector<Case> Cases() {
  std::vector<Case> cases;
  // ref accumulates in double: float64 agreement ~1e-6. cpu's F32 path: f32 dot products.
  // opencl: f32 kernels with their own summation order.
  for (const char* shape : {"llama3-tiny", "qwen2-tiny", "qwen3-tiny", "phi3-tiny", "gemma3-tiny"}) {
    for (auto [device, tol] : {std::pair{"ref", 1e-4}, std::pair{"cpu", 1e-4},
                               std::pair{"opencl", 1e-4}}) {
      cases.push_back({shape, device, 128, tol});
    }
  }
  for (auto [device, tol] : {std::pair{"ref", 1e-4}, std::pair{"cpu", 1e-4}, std::pair{"opencl", 1e-4}}) {
    cases.push_back({"phi3-tiny", device, 64, tol});  // within the original context: short factors
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Shapes, ArchForwardTest, ::testing::ValuesIn(Cases()), CaseName);

// The engine builds the same plan through the same architecture: several concurrent requests on
// each new architecture (batched varlen steps, 2-token KV blocks) give the reference's greedy ids.
TEST(ArchEngineTest, BatchedRequestsGiveTheReferenceGreedyIds) {
  for (const char* shape : {"qwen2-tiny", "qwen3-tiny", "phi3-tiny", "gemma3-tiny"}) {
    SCOPED_TRACE(shape);
    const std::string path = SynthModel(shape);
    auto file = runtime::GgufFile::Open(path);
    ASSERT_TRUE(file.ok()) << file.status();
    RuntimePtr rt = MakeRuntime();
    ModelPtr model;
    StatusPtr s = LoadModel(rt.get(), path, "ref", &model);
    ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
    kestrel_engine_options_t o;
    kestrel_engine_options_init(&o);
    o.context_length = 128;
    o.max_sequences = 4;
    kestrel_engine_t* raw = nullptr;
    StatusPtr st(kestrel_engine_create(model.get(), &o, &raw));
    ASSERT_EQ(st, nullptr) << kestrel_status_message(st.get());
    std::unique_ptr<kestrel_engine_t, void (*)(kestrel_engine_t*)> engine(raw, kestrel_engine_destroy);
    const std::vector<std::vector<int32_t>> prompts = {{1, 17, 250}, {1, 300, 5, 42, 9}, {1, 64}};
    std::vector<kestrel_request_id_t> ids;
    for (const auto& p : prompts) {
      kestrel_sampler_options_t so;
      kestrel_sampler_options_init(&so);
      so.temperature = 0.0f;
      kestrel_engine_request_options_t ro;
      kestrel_engine_request_options_init(&ro);
      ro.max_new_tokens = 8;
      ro.sampler = &so;
      kestrel_request_id_t id = 0;
      KESTREL_ASSERT_OK(kestrel_engine_submit_tokens(engine.get(), p.data(), p.size(), &ro, &id));
      ids.push_back(id);
    }
    KESTREL_ASSERT_OK(kestrel_engine_wait(engine.get(), KESTREL_ENGINE_ALL_REQUESTS, -1));
    for (size_t r = 0; r < prompts.size(); ++r) {
      auto reference = ReferenceForward::Create(**file, 128);
      ASSERT_TRUE(reference.ok()) << reference.status();
      std::vector<double> logits;
      for (int32_t t : prompts[r]) logits = reference->Step(t);
      std::vector<int32_t> want;
      for (int i = 0; i < 8; ++i) {
        want.push_back(ArgMax(logits));
        logits = reference->Step(want.back());
      }
      size_t n = 0;
      std::vector<int32_t> got(16);
      KESTREL_ASSERT_OK(kestrel_engine_request_tokens(engine.get(), ids[r], 0, got.data(), got.size(), &n));
      got.resize(n);
      EXPECT_EQ(got, want) << "request " << r;
    }
  }
}

// ---- bad input ---------------------------------------------------------------------------------

// A copy of `src` without the tensor `drop_tensor` / the key `drop_key`.
std::string Without(const std::string& src_path, const std::string& name,
                    const std::string& drop_tensor, const std::string& drop_key) {
  auto src = runtime::GgufFile::Open(src_path);
  EXPECT_TRUE(src.ok()) << src.status();
  runtime::GgufWriter w;
  for (const auto& kv : (*src)->metadata()) {
    if (kv.key == drop_key || kv.key == "general.alignment") continue;
    EXPECT_TRUE(w.AddKv(kv.key, kv.value).ok());
  }
  std::vector<const runtime::GgufTensorInfo*> kept;
  for (const auto& t : (*src)->tensors()) {
    if (t.name == drop_tensor) continue;
    EXPECT_TRUE(w.AddTensor(t.name, t.type, t.dims).ok());
    kept.push_back(&t);
  }
  const std::string path = TempPath(name);
  EXPECT_TRUE(w.OpenFile(path).ok());
  for (const auto* t : kept) {
    EXPECT_TRUE(w.WriteTensor(t->name, (*src)->TensorData(*t), t->size_bytes).ok());
  }
  EXPECT_TRUE(w.Close().ok());
  return path;
}

void ExpectRefused(const std::string& path, const std::string& needle) {
  RuntimePtr rt = MakeRuntime();
  ModelPtr model;
  StatusPtr s = LoadModel(rt.get(), path, "ref", &model);
  ASSERT_NE(s, nullptr) << path << " loaded";
  EXPECT_NE(std::string(kestrel_status_message(s.get())).find(needle), std::string::npos)
      << kestrel_status_message(s.get());
  std::remove(path.c_str());
}

TEST(ArchBadInputTest, MissingRequiredTensorsAndKeysAreNamed) {
  ExpectRefused(Without(SynthModel("qwen2-tiny"), "q2.gguf", "blk.1.attn_k.bias", ""),
                "blk.1.attn_k.bias");
  ExpectRefused(Without(SynthModel("qwen3-tiny"), "q3.gguf", "blk.0.attn_k_norm.weight", ""),
                "blk.0.attn_k_norm.weight");
  ExpectRefused(Without(SynthModel("phi3-tiny"), "p3.gguf", "blk.1.attn_qkv.weight", ""),
                "blk.1.attn_q.weight");  // neither the fused nor the separate tensors
  ExpectRefused(Without(SynthModel("phi3-tiny"), "p3k.gguf", "", "phi3.block_count"),
                "phi3.block_count");
  ExpectRefused(Without(SynthModel("qwen3-tiny"), "q3k.gguf", "", "qwen3.attention.head_count"),
                "qwen3.attention.head_count");
  ExpectRefused(Without(SynthModel("gemma3-tiny"), "g3.gguf", "blk.2.post_ffw_norm.weight", ""),
                "blk.2.post_ffw_norm.weight");
  ExpectRefused(Without(SynthModel("gemma3-tiny"), "g3q.gguf", "blk.0.attn_q_norm.weight", ""),
                "blk.0.attn_q_norm.weight");
}

}  // namespace
}  // namespace kestrel::testing
