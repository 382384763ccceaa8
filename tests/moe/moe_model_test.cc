// Expert models through the public C API: the per-expert routing statistics
// (kestrel_session_expert_stats), tiny-moe-f32 rewritten with F16 / Q8_0 / Q4_0 experts, and the
// validation of expert_count / expert_used_count and of the expert tensors.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "kestrel/plugin_sdk/reference_kernels.h"
#include "runtime/gguf/gguf_file.h"
#include "runtime/gguf/gguf_writer.h"
#include "runtime/gguf/half.h"
#include "tests/test_util.h"
#include "tests/temp_dir.h"

namespace kestrel::testing {
namespace {

constexpr uint32_t kLayers = 4, kExperts = 4, kTopK = 2;

std::string TempPath(const std::string& name) { return TestTempDir().File("moe_" + name); }

bool IsExpertTensor(const std::string& name) {
  return name.find("_exps.weight") != std::string::npos;
}

// tiny-moe-f32 rewritten: metadata keys replaced (value) or dropped (nullopt), one tensor dropped,
// the stacked expert tensors converted to `expert_type`.
struct Rewrite {
  std::map<std::string, std::optional<uint32_t>> u32_keys;
  std::string drop_tensor;
  runtime::GgmlType expert_type = runtime::GgmlType::F32;
};

std::string WriteRewritten(const std::string& name, const Rewrite& rw) {
  auto src = runtime::GgufFile::Open(ModelPath("tiny-moe-f32.gguf"));
  EXPECT_TRUE(src.ok()) << src.status();
  runtime::GgufWriter w;
  for (const auto& kv : (*src)->metadata()) {
    if (kv.key == "general.alignment" || rw.u32_keys.count(kv.key)) continue;
    EXPECT_TRUE(w.AddKv(kv.key, kv.value).ok());
  }
  for (const auto& [key, value] : rw.u32_keys) {
    if (value) {
      EXPECT_TRUE(w.AddU32(key, *value).ok());
    }
  }
  std::vector<const runtime::GgufTensorInfo*> kept;
  for (const auto& t : (*src)->tensors()) {
    if (t.name == rw.drop_tensor) continue;
    EXPECT_EQ(t.type, runtime::GgmlType::F32) << t.name;
    const runtime::GgmlType type = IsExpertTensor(t.name) ? rw.expert_type : t.type;
    EXPECT_TRUE(w.AddTensor(t.name, type, t.dims).ok());
    kept.push_back(&t);
  }
  const std::string path = TempPath(name);
  EXPECT_TRUE(w.OpenFile(path).ok());
  for (size_t i = 0; i < kept.size(); ++i) {
    const runtime::GgufTensorInfo& t = *kept[i];
    const float* f = reinterpret_cast<const float*>((*src)->TensorData(t));
    const int64_t row = static_cast<int64_t>(t.dims[0]);
    const int64_t rows = static_cast<int64_t>(t.n_elements) / row;
    std::vector<uint8_t> bytes(w.tensors()[i].size_bytes);
    if (!IsExpertTensor(t.name) || rw.expert_type == runtime::GgmlType::F32) {
      std::memcpy(bytes.data(), f, t.size_bytes);
    } else if (rw.expert_type == runtime::GgmlType::F16) {
      for (uint64_t j = 0; j < t.n_elements; ++j) {
        const uint16_t h = runtime::F32ToF16(f[j]);
        std::memcpy(bytes.data() + 2 * j, &h, 2);
      }
    } else {
      const size_t row_bytes = bytes.size() / rows;
      for (int64_t r = 0; r < rows; ++r) {
        if (rw.expert_type == runtime::GgmlType::Q8_0) {
          plugin_sdk::QuantizeRowQ8_0(f + r * row, row, bytes.data() + r * row_bytes);
        } else {
          plugin_sdk::QuantizeRowQ4_0(f + r * row, row, bytes.data() + r * row_bytes);
        }
      }
    }
    EXPECT_TRUE(w.WriteTensor(t.name, bytes.data(), bytes.size()).ok());
  }
  EXPECT_TRUE(w.Close().ok());
  return path;
}

std::vector<uint64_t> ExpertStats(kestrel_session_t* s, size_t layer) {
  size_t n = 0;
  KESTREL_EXPECT_OK(kestrel_session_expert_stats(s, layer, nullptr, 0, &n));
  std::vector<uint64_t> counts(n, 0xDEAD);
  KESTREL_EXPECT_OK(kestrel_session_expert_stats(s, layer, counts.data(), counts.size(), &n));
  return counts;
}

std::vector<float> Logits(kestrel_session_t* s) {
  size_t n = 0;
  KESTREL_EXPECT_OK(kestrel_session_get_logits(s, nullptr, 0, &n));
  std::vector<float> l(n);
  KESTREL_EXPECT_OK(kestrel_session_get_logits(s, l.data(), l.size(), &n));
  return l;
}

class MoeModelTest : public ::testing::Test {
 protected:
  void SetUp() override { rt_ = MakeRuntime(); }
  RuntimePtr rt_;
};

TEST_F(MoeModelTest, ExpertCountsSumToTokensTimesTopK) {
  ModelPtr model;
  StatusPtr s = LoadModel(rt_.get(), ModelPath("tiny-moe-f32.gguf"), TestDevice(), &model);
  ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
  SessionPtr session = MakeGreedySession(model.get(), 128);
  for (uint32_t l = 0; l < kLayers; ++l) {
    EXPECT_EQ(ExpertStats(session.get(), l), std::vector<uint64_t>(kExperts, 0)) << "layer " << l;
  }
  kestrel_generate_options_t g;
  kestrel_generate_options_init(&g);
  g.max_new_tokens = 20;
  KESTREL_ASSERT_OK(kestrel_session_generate(session.get(), "Once upon a time", 16, &g, nullptr));
  const uint64_t computed = kestrel_session_token_count(session.get());
  ASSERT_GT(computed, 20u);
  std::vector<std::vector<uint64_t>> before(kLayers);
  for (uint32_t l = 0; l < kLayers; ++l) {
    before[l] = ExpertStats(session.get(), l);
    ASSERT_EQ(before[l].size(), kExperts);
    EXPECT_EQ(std::accumulate(before[l].begin(), before[l].end(), uint64_t{0}), computed * kTopK)
        << "layer " << l;
    for (uint64_t c : before[l]) EXPECT_LE(c, computed) << "layer " << l;  // once per token at most
    std::printf("layer %u expert load:", l);
    for (uint64_t c : before[l]) std::printf(" %llu", static_cast<unsigned long long>(c));
    std::printf("\n");
  }
  // Three more tokens in one step: every layer gains exactly 3 * top_k routings.
  const int32_t more[3] = {100, 200, 300};
  KESTREL_ASSERT_OK(kestrel_session_decode(session.get(), more, 3));
  for (uint32_t l = 0; l < kLayers; ++l) {
    const std::vector<uint64_t> after = ExpertStats(session.get(), l);
    uint64_t added = 0;
    for (uint32_t e = 0; e < kExperts; ++e) {
      EXPECT_GE(after[e], before[l][e]);
      added += after[e] - before[l][e];
    }
    EXPECT_EQ(added, 3u * kTopK) << "layer " << l;
  }
  // Truncation does not un-count computed tokens; reset does.
  KESTREL_ASSERT_OK(kestrel_session_truncate(session.get(), 2));
  EXPECT_NE(ExpertStats(session.get(), 0), std::vector<uint64_t>(kExperts, 0));
  kestrel_session_reset_expert_stats(session.get());
  kestrel_session_reset_expert_stats(nullptr);
  for (uint32_t l = 0; l < kLayers; ++l) {
    EXPECT_EQ(ExpertStats(session.get(), l), std::vector<uint64_t>(kExperts, 0));
  }
}

TEST_F(MoeModelTest, ExpertStatsArguments) {
  ModelPtr model;
  StatusPtr s = LoadModel(rt_.get(), ModelPath("tiny-moe-f32.gguf"), TestDevice(), &model);
  ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
  SessionPtr session = MakeGreedySession(model.get(), 64);
  size_t n = 99;
  std::vector<uint64_t> buf(8, 7);
  StatusPtr r(kestrel_session_expert_stats(session.get(), 4, buf.data(), buf.size(), &n));
  EXPECT_EQ(kestrel_status_code(r.get()), KESTREL_STATUS_OUT_OF_RANGE);
  EXPECT_NE(std::string(kestrel_status_message(r.get())).find("layer 4 >= the model's 4 layers"),
            std::string::npos)
      << kestrel_status_message(r.get());
  r.reset(kestrel_session_expert_stats(session.get(), 0, buf.data(), 3, &n));
  EXPECT_EQ(kestrel_status_code(r.get()), KESTREL_STATUS_OUT_OF_RANGE);
  EXPECT_EQ(n, kExperts);
  EXPECT_EQ(buf, std::vector<uint64_t>(8, 7));  // nothing written
  r.reset(kestrel_session_expert_stats(session.get(), 0, nullptr, 4, &n));
  EXPECT_EQ(kestrel_status_code(r.get()), KESTREL_STATUS_INVALID_ARGUMENT);
  r.reset(kestrel_session_expert_stats(nullptr, 0, buf.data(), buf.size(), &n));
  EXPECT_EQ(kestrel_status_code(r.get()), KESTREL_STATUS_INVALID_ARGUMENT);
  r.reset(kestrel_session_expert_stats(session.get(), 0, buf.data(), buf.size(), nullptr));
  EXPECT_EQ(kestrel_status_code(r.get()), KESTREL_STATUS_INVALID_ARGUMENT);

  // A dense model has no experts: required 0, OK.
  ModelPtr dense;
  s = LoadModel(rt_.get(), ModelPath("stories260K.gguf"), TestDevice(), &dense);
  ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
  kestrel_model_info_t info{};
  info.struct_size = sizeof(info);
  KESTREL_ASSERT_OK(kestrel_model_get_info(dense.get(), &info));
  EXPECT_EQ(info.n_experts, 0u);
  EXPECT_EQ(info.n_experts_used, 0u);
  SessionPtr ds = MakeGreedySession(dense.get(), 64);
  n = 99;
  KESTREL_ASSERT_OK(kestrel_session_expert_stats(ds.get(), 0, nullptr, 0, &n));
  EXPECT_EQ(n, 0u);
}

TEST_F(MoeModelTest, QuantizedExpertsLoadAndGenerate) {
  // Reference: the F32 model's logits for a prompt.
  const std::vector<int32_t> prompt = {1, 403, 407, 261, 378};
  ModelPtr f32;
  StatusPtr s = LoadModel(rt_.get(), ModelPath("tiny-moe-f32.gguf"), TestDevice(), &f32);
  ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
  SessionPtr fs = MakeGreedySession(f32.get(), 64);
  KESTREL_ASSERT_OK(kestrel_session_decode(fs.get(), prompt.data(), prompt.size()));
  const std::vector<float> want = Logits(fs.get());

  struct Format {
    runtime::GgmlType type;
    const char* name;
    double tier;  // relative norm error of the logits vs the F32 model
  };
  for (const Format& f : {Format{runtime::GgmlType::F16, "F16", 2e-3},
                          Format{runtime::GgmlType::Q8_0, "Q8_0", 3e-2},
                          Format{runtime::GgmlType::Q4_0, "Q4_0", 0.25}}) {
    SCOPED_TRACE(f.name);
    Rewrite rw;
    rw.expert_type = f.type;
    const std::string path = WriteRewritten(std::string("experts_") + f.name + ".gguf", rw);
    ModelPtr model;
    s = LoadModel(rt_.get(), path, TestDevice(), &model);
    ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
    bool found = false;
    for (size_t i = 0; i < kestrel_model_tensor_type_count(model.get()); ++i) {
      kestrel_tensor_type_summary_t t{};
      t.struct_size = sizeof t;
      KESTREL_ASSERT_OK(kestrel_model_tensor_type_summary(model.get(), i, &t));
      if (std::string(t.type_name) == f.name) {
        found = true;
        EXPECT_EQ(t.n_tensors, 3 * kLayers);
      }
    }
    EXPECT_TRUE(found);
    SessionPtr session = MakeGreedySession(model.get(), 64);
    KESTREL_ASSERT_OK(kestrel_session_decode(session.get(), prompt.data(), prompt.size()));
    const std::vector<float> got = Logits(session.get());
    ASSERT_EQ(got.size(), want.size());
    double num = 0, den = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_TRUE(std::isfinite(got[i])) << i;
      num += (double{got[i]} - want[i]) * (double{got[i]} - want[i]);
      den += double{want[i]} * want[i];
    }
    const double rel = std::sqrt(num / den);
    std::printf("%s experts: logits rel. error vs F32 experts %.3g\n", f.name, rel);
    EXPECT_LT(rel, f.tier);
    kestrel_generate_options_t g;
    kestrel_generate_options_init(&g);
    g.max_new_tokens = 8;
    KESTREL_ASSERT_OK(kestrel_session_generate_tokens(session.get(), prompt.data(), prompt.size(), &g, nullptr));
    const uint64_t computed = kestrel_session_token_count(session.get());
    for (uint32_t l = 0; l < kLayers; ++l) {
      const std::vector<uint64_t> c = ExpertStats(session.get(), l);
      // The earlier decode and this generate both count.
      EXPECT_EQ(std::accumulate(c.begin(), c.end(), uint64_t{0}),
                (computed + prompt.size()) * kTopK);
    }
    std::remove(path.c_str());
  }
}

void ExpectLoadFails(kestrel_runtime_t* rt, const std::string& path, kestrel_status_code_t code,
                     const std::vector<std::string>& needles) {
  ModelPtr m;
  StatusPtr s = LoadModel(rt, path, TestDevice(), &m);
  ASSERT_NE(s, nullptr) << path << " loaded but should not";
  EXPECT_EQ(kestrel_status_code(s.get()), code) << kestrel_status_message(s.get());
  for (const std::string& n : needles) {
    EXPECT_NE(std::string(kestrel_status_message(s.get())).find(n), std::string::npos)
        << "message '" << kestrel_status_message(s.get()) << "' lacks '" << n << "'";
  }
  std::remove(path.c_str());
}

TEST_F(MoeModelTest, BadExpertMetadataAndTensors) {
  Rewrite rw;
  rw.u32_keys = {{"llama.expert_used_count", 5u}};
  ExpectLoadFails(rt_.get(), WriteRewritten("used5.gguf", rw), KESTREL_STATUS_INVALID_ARGUMENT,
                  {"'llama.expert_used_count' = 5", "'llama.expert_count' = 4"});
  rw.u32_keys = {{"llama.expert_used_count", 0u}};
  ExpectLoadFails(rt_.get(), WriteRewritten("used0.gguf", rw), KESTREL_STATUS_INVALID_ARGUMENT,
                  {"'llama.expert_used_count' = 0", "out of range [1,"});
  rw.u32_keys = {{"llama.expert_used_count", std::nullopt}};
  ExpectLoadFails(rt_.get(), WriteRewritten("noused.gguf", rw), KESTREL_STATUS_INVALID_ARGUMENT,
                  {"'llama.expert_used_count' = 0"});
  rw.u32_keys = {{"llama.expert_count", std::nullopt}};
  ExpectLoadFails(rt_.get(), WriteRewritten("nocount.gguf", rw), KESTREL_STATUS_INVALID_ARGUMENT,
                  {"'llama.expert_used_count' = 2", "no experts"});
  rw.u32_keys = {{"llama.expert_count", 3u}};  // tensors hold 4 experts
  ExpectLoadFails(rt_.get(), WriteRewritten("count3.gguf", rw), KESTREL_STATUS_INVALID_ARGUMENT,
                  {"blk.0.ffn_gate_inp.weight", "[4, 64]", "expected [3, 64]"});
  rw.u32_keys = {{"llama.expert_count", 100000u}};
  ExpectLoadFails(rt_.get(), WriteRewritten("count100k.gguf", rw), KESTREL_STATUS_INVALID_ARGUMENT,
                  {"'llama.expert_count' = 100000"});
  rw.u32_keys = {};
  rw.drop_tensor = "blk.2.ffn_down_exps.weight";
  ExpectLoadFails(rt_.get(), WriteRewritten("nodown.gguf", rw), KESTREL_STATUS_INVALID_ARGUMENT,
                  {"required tensor 'blk.2.ffn_down_exps.weight' is missing"});
}

}  // namespace
}  // namespace kestrel::testing
