// kestrel-synth's GGUF formats Q4_1..Q6_K and the _M mixes: llama-quantize's per-tensor type rule,
// the command line, the shape rule (K types need rows of whole 256-element super-blocks), and
// tiny models of every format run through the C API on `ref`, `cpu` and `opencl` (where the
// machine has an OpenCL platform; its plugin runs the K-quant ops on ref, op by op): the devices'
// logits agree within each path's tier.
#include <cmath>
#include <cstdio>
#include <string>
#include <unistd.h>
#include <vector>

#include "gtest/gtest.h"
#include "kestrel/kestrel.h"
#include "runtime/gguf/gguf_file.h"
#include "tests/temp_dir.h"
#include "tools/synth/synth_args.h"
#include "tools/synth/synth_shape.h"
#include "tools/synth/synth_writer.h"

namespace kestrel::synth {
namespace {

using runtime::GgmlType;

TEST(SynthMixTest, Q4KMFollowsLlamaQuantize) {
  absl::StatusOr<ModelShape> s = PresetShape("tinyllama-1.1b");
  ASSERT_TRUE(s.ok());
  // 22 layers: use_more_bits = the first 22/8 = 2, from 7*22/8 = 19 on, and (i - 2) % 3 == 2.
  const std::vector<uint32_t> more = {0, 1, 4, 7, 10, 13, 16, 19, 20, 21};
  for (TypeMix mix : {TypeMix::kQ4_K_M, TypeMix::kQ5_K_M}) {
    const GgmlType base = mix == TypeMix::kQ4_K_M ? GgmlType::Q4_K : GgmlType::Q5_K;
    int n_q6 = 0;
    for (const TensorSpec& t : TensorPlan(*s, base, mix)) {
      SCOPED_TRACE(t.name);
      if (t.dims.size() == 1) {
        EXPECT_EQ(t.type, GgmlType::F32);
        continue;
      }
      uint32_t layer = 0;
      const bool in_block = std::sscanf(t.name.c_str(), "blk.%u.", &layer) == 1;
      const bool is_more = std::find(more.begin(), more.end(), layer) != more.end();
      GgmlType want = base;
      if (t.name == "output.weight") want = GgmlType::Q6_K;
      if (in_block && is_more &&
          (t.name.find("attn_v.") != std::string::npos || t.name.find("ffn_down.") != std::string::npos)) {
        want = GgmlType::Q6_K;
      }
      EXPECT_EQ(t.type, want);
      n_q6 += t.type == GgmlType::Q6_K;
    }
    EXPECT_EQ(n_q6, 1 + 2 * 10);
  }
  // Exactly 8 experts: attn_v / attn_k Q8_0, attn_output Q5_K (Q4_K_M only).
  ModelShape moe = *PresetShape("mixtral-small");
  moe.dim = 1024;
  moe.ffn = 2816;
  ASSERT_EQ(moe.experts, 8u);
  EXPECT_EQ(MixedType(TypeMix::kQ4_K_M, GgmlType::Q4_K, "blk.3.attn_v.weight", 3, moe), GgmlType::Q8_0);
  EXPECT_EQ(MixedType(TypeMix::kQ4_K_M, GgmlType::Q4_K, "blk.3.attn_k.weight", 3, moe), GgmlType::Q8_0);
  EXPECT_EQ(MixedType(TypeMix::kQ4_K_M, GgmlType::Q4_K, "blk.3.attn_output.weight", 3, moe), GgmlType::Q5_K);
  EXPECT_EQ(MixedType(TypeMix::kQ5_K_M, GgmlType::Q5_K, "blk.3.attn_output.weight", 3, moe), GgmlType::Q5_K);
  EXPECT_EQ(MixedType(TypeMix::kQ4_K_M, GgmlType::Q4_K, "blk.0.ffn_down_exps.weight", 0, moe), GgmlType::Q6_K);
  EXPECT_EQ(MixedType(TypeMix::kUniform, GgmlType::Q3_K, "output.weight", 0, moe), GgmlType::Q3_K);
  EXPECT_EQ(FileTypeOf(GgmlType::Q4_K, TypeMix::kQ4_K_M), 15u);
  EXPECT_EQ(FileTypeOf(GgmlType::Q5_K, TypeMix::kQ5_K_M), 17u);
  EXPECT_EQ(FileTypeOf(GgmlType::Q6_K), 18u);
  EXPECT_EQ(FileTypeOf(GgmlType::Q4_1), 3u);
}

TEST(SynthMixTest, CommandLineAndShapeRule) {
  const char* argv[] = {"kestrel-synth", "--shape", "tinyllama-1.1b", "--type", "q4_k_m", "-o", "x"};
  SynthArgs a;
  SynthParseResult r = ParseSynthArgs(7, argv, &a);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(a.options.type, GgmlType::Q4_K);
  EXPECT_EQ(a.options.mix, TypeMix::kQ4_K_M);
  const char* argv2[] = {"kestrel-synth", "--shape", "tinyllama-1.1b", "--type", "Q2_K", "--ffn", "5600", "-o", "x"};
  r = ParseSynthArgs(9, argv2, &a);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("--ffn 5600"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("256 for Q2_K"), std::string::npos) << r.error;
}

struct Handles {
  kestrel_runtime_t* rt = nullptr;
  kestrel_model_t* model = nullptr;
  kestrel_session_t* session = nullptr;
  ~Handles() {
    kestrel_session_destroy(session);
    kestrel_model_release(model);
    kestrel_runtime_destroy(rt);
  }
};

std::string Take(kestrel_status_t* st, kestrel_status_code_t* code = nullptr) {
  std::string m = st ? kestrel_status_message(st) : "";
  if (code != nullptr) *code = st ? kestrel_status_code(st) : KESTREL_STATUS_OK;
  kestrel_status_free(st);
  return m;
}

// Logits of the last prompt token on `device`; empty with *why (and *code) set on failure.
std::vector<float> RunOn(const std::string& path, const char* device, std::string* why,
                         kestrel_status_code_t* code = nullptr) {
  Handles h;
  std::string err = Take(kestrel_runtime_create(nullptr, &h.rt));
  if (!err.empty()) {
    *why = err;
    return {};
  }
  kestrel_model_options_t mo;
  kestrel_model_options_init(&mo);
  mo.device = device;
  err = Take(kestrel_model_load(h.rt, path.data(), path.size(), &mo, &h.model), code);
  if (!err.empty()) {
    *why = err;
    return {};
  }
  kestrel_session_options_t so;
  kestrel_session_options_init(&so);
  EXPECT_EQ(Take(kestrel_session_create(h.model, &so, &h.session)), "");
  const std::vector<int32_t> prompt = {1, 300, 301, 302, 400, 411, 290};
  EXPECT_EQ(Take(kestrel_session_decode(h.session, prompt.data(), prompt.size())), "");
  std::vector<float> logits(512);
  size_t n = 0;
  EXPECT_EQ(Take(kestrel_session_get_logits(h.session, logits.data(), logits.size(), &n)), "");
  return logits;
}

double RelErr(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < b.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

TEST(SynthKquantModelTest, RefCpuAndOpenClAgree) {
  const kestrel::testing::ScopedTempDir tmp("synth_kq");
  const std::string path = tmp.File("m.gguf");
  struct Type {
    GgmlType type;
    TypeMix mix;
  };
  const Type types[] = {{GgmlType::Q4_1, TypeMix::kUniform}, {GgmlType::Q5_0, TypeMix::kUniform},
                        {GgmlType::Q5_1, TypeMix::kUniform}, {GgmlType::Q2_K, TypeMix::kUniform},
                        {GgmlType::Q3_K, TypeMix::kUniform}, {GgmlType::Q4_K, TypeMix::kUniform},
                        {GgmlType::Q5_K, TypeMix::kUniform}, {GgmlType::Q6_K, TypeMix::kUniform},
                        {GgmlType::Q4_K, TypeMix::kQ4_K_M}};
  for (const Type& t : types) {
    SCOPED_TRACE(TypeLabel(t.type, t.mix));
    SynthOptions o;
    o.shape.dim = 256;
    o.shape.layers = 2;
    o.shape.heads = 4;
    o.shape.kv_heads = 2;
    o.shape.ffn = 512;
    o.shape.vocab = 512;
    o.shape.context = 64;
    o.type = t.type;
    o.mix = t.mix;
    o.seed = 5;
    o.output_path = path;
    ASSERT_TRUE(WriteSyntheticModel(o).ok());
    std::string why;
    const std::vector<float> ref = RunOn(path, "ref", &why);
    ASSERT_FALSE(ref.empty()) << why;
    const std::vector<float> cpu = RunOn(path, "cpu", &why);
    ASSERT_FALSE(cpu.empty()) << why;
    // cpu quantizes activations to 8 bits before every K-quant matmul (15 in series here):
    // measured 1.1e-2 to 1.2e-2 for every type (seed 5).
    EXPECT_LE(RelErr(cpu, ref), 5e-2);
    kestrel_status_code_t code = KESTREL_STATUS_OK;
    const std::vector<float> cl = RunOn(path, "opencl", &why, &code);
    if (cl.empty()) {
      // Only a missing device (no OpenCL platform on this machine) is not a failure.
      ASSERT_EQ(code, KESTREL_STATUS_NOT_FOUND) << why;
      std::printf("opencl: no such device here, not compared (%s)\n", why.c_str());
      continue;
    }
    // opencl: the K-quant matmuls run on ref (fallback), the rest in f32 on the device: measured
    // 1.3e-7 to 1.6e-7 (PoCL).
    EXPECT_LE(RelErr(cl, ref), 1e-5);
  }
}

}  // namespace
}  // namespace kestrel::synth
