// Every weight format end to end against an exact reference. llama.cpp's goldens exist for F32
// models only (stories260K, tiny-moe-f32: tests/golden_test.cc, tests/moe), so the reference for
// a model stored in another format is that same model with its weights' exact F32 values (every
// F16/BF16/Q8_0/Q4_0 value is an f32; this is also how ../shared/models made the SmolLM2
// reference): on the reference plugin, which computes in exact f32/f64 for every format, the two
// must give bit-identical logits and the same greedy ids. Together with the F32 goldens this is
// the chain that backs "llama.cpp-exact" for those formats on `ref`; the fast plugins are held to
// `ref` per op by their conformance suites.
//   llama-2-tiny-random.gguf   stored F16 (the shared file itself) vs its F32 copy
//   tiny-moe-f32.gguf          every 2-D+ weight converted to F16, BF16, Q8_0, Q4_0 (encoders of
//                              tools/synth, llama.cpp's reference bit for bit) vs the F32 copy of
//                              the converted values; dense and MoE expert weights alike
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include "nlohmann/json.hpp"
#include "runtime/gguf/gguf_file.h"
#include "runtime/gguf/gguf_writer.h"
#include "runtime/gguf/half.h"
#include "tests/test_util.h"
#include "tools/synth/quantize.h"

namespace kestrel::testing {
namespace {

using runtime::GgmlType;
using runtime::GgufFile;
using runtime::GgufTensorInfo;
using runtime::GgufWriter;

// Tensor bytes in `type` and their exact F32 values, from the source tensor's F32 values.
struct Converted {
  GgmlType type;
  std::vector<uint8_t> bytes;
  std::vector<float> exact;  // what `bytes` decode to
};

std::vector<float> ToF32(const GgufFile& f, const GgufTensorInfo& t) {
  std::vector<float> v(t.n_elements);
  const uint8_t* p = f.TensorData(t);
  if (t.type == GgmlType::F32) {
    std::memcpy(v.data(), p, v.size() * 4);
  } else if (t.type == GgmlType::F16) {
    for (size_t i = 0; i < v.size(); ++i) {
      uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      v[i] = runtime::F16ToF32(h);
    }
  } else {
    ADD_FAILURE() << "tensor " << t.name << ": unexpected source type";
  }
  return v;
}

Converted Convert(const std::vector<float>& x, GgmlType type) {
  Converted c{type, {}, std::vector<float>(x.size())};
  switch (type) {
    case GgmlType::F16:
    case GgmlType::BF16:
      c.bytes.resize(x.size() * 2);
      for (size_t i = 0; i < x.size(); ++i) {
        const uint16_t h = type == GgmlType::F16 ? runtime::F32ToF16(x[i]) : runtime::F32ToBf16(x[i]);
        std::memcpy(c.bytes.data() + 2 * i, &h, 2);
        c.exact[i] = type == GgmlType::F16 ? runtime::F16ToF32(h) : runtime::Bf16ToF32(h);
      }
      break;
    case GgmlType::Q8_0:
      c.bytes.resize(x.size() / 32 * synth::kQ8_0BlockBytes);
      synth::QuantizeQ8_0(x.data(), x.size(), c.bytes.data());
      synth::DequantizeQ8_0(c.bytes.data(), x.size(), c.exact.data());
      break;
    case GgmlType::Q4_0:
      c.bytes.resize(x.size() / 32 * synth::kQ4_0BlockBytes);
      synth::QuantizeQ4_0(x.data(), x.size(), c.bytes.data());
      synth::DequantizeQ4_0(c.bytes.data(), x.size(), c.exact.data());
      break;
    default:
      ADD_FAILURE() << "Convert: unexpected type";
  }
  return c;
}

// Writes two copies of `src`: `converted` with every weight of rank >= 2 (and rows a multiple of
// 32) in `type` (nullopt: every tensor as stored), and `exact` with those weights' exact F32
// values. Returns how many tensors are in a format other than F32 in `converted`.
int WriteCopies(const std::string& src, std::optional<GgmlType> type, const std::string& converted,
                const std::string& exact) {
  auto f = GgufFile::Open(src);
  EXPECT_TRUE(f.ok()) << f.status();
  if (!f.ok()) return 0;
  GgufWriter wc((*f)->alignment()), we((*f)->alignment());
  for (const auto& kv : (*f)->metadata()) {
    if (kv.key == "general.alignment") continue;
    EXPECT_TRUE(wc.AddKv(kv.key, kv.value).ok());
    EXPECT_TRUE(we.AddKv(kv.key, kv.value).ok());
  }
  std::vector<Converted> data;
  int n_converted = 0;
  for (const GgufTensorInfo& t : (*f)->tensors()) {
    const std::vector<float> x = ToF32(**f, t);
    const bool weight = t.dims.size() >= 2 && t.dims[0] % 32 == 0;
    Converted c;
    if (weight && type) {
      c = Convert(x, *type);
      ++n_converted;
    } else if (t.type == GgmlType::F16) {
      c = Converted{GgmlType::F16, {}, x};
      c.bytes.assign((*f)->TensorData(t), (*f)->TensorData(t) + t.size_bytes);
      ++n_converted;
    } else {
      c = Converted{GgmlType::F32, {}, x};
      c.bytes.resize(x.size() * 4);
      std::memcpy(c.bytes.data(), x.data(), c.bytes.size());
    }
    EXPECT_TRUE(wc.AddTensor(t.name, c.type, t.dims).ok());
    EXPECT_TRUE(we.AddTensor(t.name, GgmlType::F32, t.dims).ok());
    data.push_back(std::move(c));
  }
  EXPECT_TRUE(wc.OpenFile(converted).ok());
  EXPECT_TRUE(we.OpenFile(exact).ok());
  for (const Converted& c : data) {
    EXPECT_TRUE(wc.WriteTensorData(c.bytes.data(), c.bytes.size()).ok());
    EXPECT_TRUE(we.WriteTensorData(c.exact.data(), c.exact.size() * 4).ok());
  }
  EXPECT_TRUE(wc.Close().ok());
  EXPECT_TRUE(we.Close().ok());
  return n_converted;
}

struct ModelRun {
  std::vector<float> logits;
  std::vector<int32_t> tokens;
};

ModelRun RunModel(kestrel_runtime_t* rt, const std::string& path, const std::vector<int32_t>& prompt,
             uint32_t n) {
  ModelRun r;
  ModelPtr model;
  StatusPtr s = LoadModel(rt, path, "ref", &model);
  EXPECT_EQ(s, nullptr) << kestrel_status_message(s.get());
  if (s != nullptr) return r;
  SessionPtr session = MakeGreedySession(model.get(), 128);
  KESTREL_EXPECT_OK(kestrel_session_decode(session.get(), prompt.data(), prompt.size()));
  size_t count = 0;
  KESTREL_EXPECT_OK(kestrel_session_get_logits(session.get(), nullptr, 0, &count));
  r.logits.resize(count);
  KESTREL_EXPECT_OK(kestrel_session_get_logits(session.get(), r.logits.data(), count, &count));
  SessionPtr gen = MakeGreedySession(model.get(), 128);
  Collected got;
  kestrel_generate_options_t g;
  kestrel_generate_options_init(&g);
  g.max_new_tokens = n;
  g.on_token = &Collected::OnToken;
  g.user_data = &got;
  KESTREL_EXPECT_OK(kestrel_session_generate_tokens(gen.get(), prompt.data(), prompt.size(), &g,
                                                    nullptr));
  r.tokens = got.tokens;
  return r;
}

class WeightFormatsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    rt_ = MakeRuntime();
    ASSERT_NE(rt_, nullptr);
    dir_ = std::filesystem::temp_directory_path() /
           ("kestrel_weight_formats_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void ExpectSameFunction(const std::string& src, std::optional<GgmlType> type, const char* name,
                          int want_converted, const std::vector<int32_t>& prompt) {
    SCOPED_TRACE(name);
    const std::string converted = (dir_ / (std::string(name) + ".gguf")).string();
    const std::string exact = (dir_ / (std::string(name) + ".f32.gguf")).string();
    EXPECT_EQ(WriteCopies(src, type, converted, exact), want_converted);
    const ModelRun a = RunModel(rt_.get(), converted, prompt, 24);
    const ModelRun b = RunModel(rt_.get(), exact, prompt, 24);
    ASSERT_EQ(a.logits.size(), b.logits.size());
    ASSERT_FALSE(a.logits.empty());
    for (size_t i = 0; i < a.logits.size(); ++i) {
      ASSERT_FALSE(std::isnan(a.logits[i])) << i;
      ASSERT_EQ(a.logits[i], b.logits[i]) << "logit " << i << " differs from the F32 copy's";
    }
    EXPECT_EQ(a.tokens.size(), 24u);
    EXPECT_EQ(a.tokens, b.tokens);
  }

  RuntimePtr rt_;
  std::filesystem::path dir_;
};

TEST_F(WeightFormatsTest, LlamaTinyRandomF16EqualsItsF32Copy) {
  // The shared file's own F16 weights (7 layer matrices, token_embd, output) vs their F32 values.
  ExpectSameFunction(ModelPath("llama-2-tiny-random.gguf"), std::nullopt, "llama-f16", 9,
                     {1, 15043, 3186});
}

TEST_F(WeightFormatsTest, TinyMoeInEveryWeightFormatEqualsItsF32Copy) {
  const std::vector<int32_t> prompt = {1, 403, 407, 261, 378};
  // token_embd, output, 4 layers x (q, k, v, o, router, 3 expert stacks).
  const int n = 2 + 4 * 8;
  ExpectSameFunction(ModelPath("tiny-moe-f32.gguf"), GgmlType::F16, "moe-f16", n, prompt);
  ExpectSameFunction(ModelPath("tiny-moe-f32.gguf"), GgmlType::BF16, "moe-bf16", n, prompt);
  ExpectSameFunction(ModelPath("tiny-moe-f32.gguf"), GgmlType::Q8_0, "moe-q8_0", n, prompt);
  ExpectSameFunction(ModelPath("tiny-moe-f32.gguf"), GgmlType::Q4_0, "moe-q4_0", n, prompt);
}

}  // namespace
}  // namespace kestrel::testing
