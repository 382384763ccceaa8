// kestrel-synth end to end: the vocab, determinism of the bytes, and tiny written models loaded and
// run through the public C API on the reference device.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "kestrel/kestrel.h"
#include "runtime/gguf/gguf_file.h"
#include "tools/synth/synth_vocab.h"
#include "tools/synth/synth_writer.h"

namespace kestrel::synth {
namespace {

using runtime::GgmlType;

class TempDir {
 public:
  TempDir() {
    std::string pattern = ::testing::TempDir() + "kestrel_synth_XXXXXX";
    path_ = mkdtemp(pattern.data()) ? pattern : std::string();
  }
  ~TempDir() {
    if (!path_.empty()) std::system(("rm -rf '" + path_ + "'").c_str());
  }
  std::string File(const std::string& name) const { return path_ + "/" + name; }
  bool ok() const { return !path_.empty(); }

 private:
  std::string path_;
};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

ModelShape TinyShape(uint32_t vocab = 512) {
  ModelShape s;
  s.name = "custom";
  s.dim = 64;
  s.layers = 2;
  s.heads = 4;
  s.kv_heads = 2;
  s.ffn = 128;
  s.vocab = vocab;
  s.context = 128;
  return s;
}

absl::Status Write(const ModelShape& shape, GgmlType type, uint64_t seed, const std::string& path) {
  SynthOptions o;
  o.shape = shape;
  o.type = type;
  o.seed = seed;
  o.output_path = path;
  return WriteSyntheticModel(o);
}

// RAII for the C handles.
struct Api {
  kestrel_runtime_t* rt = nullptr;
  kestrel_model_t* model = nullptr;
  kestrel_session_t* session = nullptr;
  ~Api() {
    kestrel_session_destroy(session);
    kestrel_model_release(model);
    kestrel_runtime_destroy(rt);
  }
};

std::string Message(kestrel_status_t* st) {
  std::string m = st ? kestrel_status_message(st) : "";
  kestrel_status_free(st);
  return m;
}

#define ASSERT_API_OK(expr)                              \
  do {                                                   \
    kestrel_status_t* st_ = (expr);                      \
    ASSERT_EQ(st_, nullptr) << #expr << ": " << Message(st_); \
  } while (0)

void LoadOnRef(const std::string& path, Api* api) {
  ASSERT_API_OK(kestrel_runtime_create(nullptr, &api->rt));
  kestrel_model_options_t mo;
  kestrel_model_options_init(&mo);
  mo.device = "ref";
  ASSERT_API_OK(kestrel_model_load(api->rt, path.data(), path.size(), &mo, &api->model));
}

std::vector<int32_t> Tokenize(const kestrel_model_t* model, const std::string& text) {
  size_t n = 0;
  kestrel_status_t* st = kestrel_tokenize(model, text.data(), text.size(), true, nullptr, 0, &n);
  EXPECT_EQ(st, nullptr) << Message(st);
  std::vector<int32_t> ids(n);
  st = kestrel_tokenize(model, text.data(), text.size(), true, ids.data(), ids.size(), &n);
  EXPECT_EQ(st, nullptr) << Message(st);
  return ids;
}

TEST(SynthVocabTest, LlamaStyleLayout) {
  const SynthVocab v = BuildSynthVocab(32000);
  ASSERT_EQ(v.tokens.size(), 32000u);
  ASSERT_EQ(v.scores.size(), 32000u);
  ASSERT_EQ(v.token_types.size(), 32000u);
  EXPECT_EQ(v.tokens[0], "<unk>");
  EXPECT_EQ(v.tokens[1], "<s>");
  EXPECT_EQ(v.tokens[2], "</s>");
  EXPECT_EQ(v.token_types[0], 2);
  EXPECT_EQ(v.token_types[1], 3);
  EXPECT_EQ(v.token_types[2], 3);
  EXPECT_EQ(v.tokens[3], "<0x00>");
  EXPECT_EQ(v.tokens[3 + 0x41], "<0x41>");
  EXPECT_EQ(v.tokens[258], "<0xFF>");
  for (int i = 3; i < 259; ++i) EXPECT_EQ(v.token_types[i], 6) << i;
  for (int i = 259; i < 32000; ++i) ASSERT_EQ(v.token_types[i], 1) << i;
  EXPECT_EQ(v.tokens[259], "\xe2\x96\x81");
  std::set<std::string> unique(v.tokens.begin(), v.tokens.end());
  EXPECT_EQ(unique.size(), v.tokens.size());
  for (int i = 260; i < 32000; ++i) ASSERT_LT(v.scores[i], v.scores[i - 1]) << i;
  // Smaller sizes are prefixes of the same list.
  const SynthVocab small = BuildSynthVocab(300);
  ASSERT_EQ(small.tokens.size(), 300u);
  EXPECT_TRUE(std::equal(small.tokens.begin(), small.tokens.end(), v.tokens.begin()));
}

TEST(SynthWriterTest, NormalGeneratorMoments) {
  uint64_t state = TensorSeed(1, "x");
  std::vector<float> x(1 << 16);
  FillNormal(&state, 0.5f, x.data(), x.size());
  double sum = 0, sum2 = 0;
  for (float v : x) {
    sum += v;
    sum2 += double(v) * v;
  }
  const double mean = sum / x.size(), var = sum2 / x.size() - mean * mean;
  EXPECT_NEAR(mean, 0.0, 0.01);
  EXPECT_NEAR(std::sqrt(var), 0.5, 0.01);
  EXPECT_NE(TensorSeed(1, "a"), TensorSeed(1, "b"));
  EXPECT_NE(TensorSeed(1, "a"), TensorSeed(2, "a"));
}

TEST(SynthWriterTest, SameSeedSameBytes) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  for (GgmlType type : {GgmlType::Q4_0, GgmlType::Q8_0, GgmlType::F16}) {
    ASSERT_TRUE(Write(TinyShape(), type, 42, dir.File("a.gguf")).ok());
    ASSERT_TRUE(Write(TinyShape(), type, 42, dir.File("b.gguf")).ok());
    ASSERT_TRUE(Write(TinyShape(), type, 43, dir.File("c.gguf")).ok());
    const std::string a = ReadAll(dir.File("a.gguf"));
    EXPECT_GT(a.size(), 50000u);  // the Q4_0 file is the smallest, ~90 KB
    EXPECT_TRUE(a == ReadAll(dir.File("b.gguf"))) << runtime::GgmlTypeName(type);
    EXPECT_FALSE(a == ReadAll(dir.File("c.gguf"))) << runtime::GgmlTypeName(type);
    EXPECT_NE(access(dir.File("a.gguf.partial").c_str(), F_OK), 0);  // renamed away
  }
}

TEST(SynthWriterTest, MetadataAndTensorsAsDeclared) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  ModelShape s = TinyShape();
  s.experts = 4;
  s.experts_used = 2;
  ASSERT_TRUE(Write(s, GgmlType::Q8_0, 1, dir.File("moe.gguf")).ok());
  auto file = runtime::GgufFile::Open(dir.File("moe.gguf"), {});
  ASSERT_TRUE(file.ok()) << file.status();
  const runtime::GgufFile& f = **file;
  EXPECT_EQ(*f.GetString("general.architecture"), "llama");
  EXPECT_EQ(*f.GetU32("general.file_type"), 7u);
  EXPECT_EQ(*f.GetU32("llama.embedding_length"), 64u);
  EXPECT_EQ(*f.GetU32("llama.block_count"), 2u);
  EXPECT_EQ(*f.GetU32("llama.attention.head_count_kv"), 2u);
  EXPECT_EQ(*f.GetU32("llama.rope.dimension_count"), 16u);
  EXPECT_EQ(*f.GetU32("llama.expert_count"), 4u);
  EXPECT_EQ(*f.GetU32("llama.expert_used_count"), 2u);
  EXPECT_FLOAT_EQ(*f.GetF32("llama.attention.layer_norm_rms_epsilon"), 1e-5f);
  EXPECT_EQ(f.GetStringArray("tokenizer.ggml.tokens")->size(), 512u);
  EXPECT_TRUE(*f.GetBool("tokenizer.ggml.add_bos_token"));
  // 1 + 2 * (2 norms + 4 attention + 4 MoE) + 2 tensors.
  EXPECT_EQ(f.tensors().size(), 23u);
  const runtime::GgufTensorInfo* gate_inp = f.FindTensor("blk.1.ffn_gate_inp.weight");
  ASSERT_NE(gate_inp, nullptr);
  EXPECT_EQ(gate_inp->type, GgmlType::F32);
  EXPECT_EQ(gate_inp->dims, (std::vector<uint64_t>{64, 4}));
  const runtime::GgufTensorInfo* up = f.FindTensor("blk.0.ffn_up_exps.weight");
  ASSERT_NE(up, nullptr);
  EXPECT_EQ(up->type, GgmlType::Q8_0);
  EXPECT_EQ(up->dims, (std::vector<uint64_t>{64, 128, 4}));
  const runtime::GgufTensorInfo* down = f.FindTensor("blk.0.ffn_down_exps.weight");
  ASSERT_NE(down, nullptr);
  EXPECT_EQ(down->dims, (std::vector<uint64_t>{128, 64, 4}));
  const runtime::GgufTensorInfo* norm = f.FindTensor("output_norm.weight");
  ASSERT_NE(norm, nullptr);
  EXPECT_EQ(norm->type, GgmlType::F32);
  const float* ones = reinterpret_cast<const float*>(f.TensorData(*norm));
  for (int i = 0; i < 64; ++i) EXPECT_EQ(ones[i], 1.0f);
}

// Loads each type on `ref`, checks the info, and greedily generates a few tokens with finite logits.
TEST(SynthWriterTest, LoadsAndGeneratesThroughCApi) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  for (GgmlType type : {GgmlType::Q4_0, GgmlType::Q8_0, GgmlType::F16}) {
    SCOPED_TRACE(runtime::GgmlTypeName(type));
    const std::string path = dir.File("tiny.gguf");
    ASSERT_TRUE(Write(TinyShape(), type, 3, path).ok());
    Api api;
    LoadOnRef(path, &api);
    if (HasFatalFailure()) return;
    kestrel_model_info_t info = {};
    info.struct_size = sizeof(info);
    ASSERT_API_OK(kestrel_model_get_info(api.model, &info));
    EXPECT_EQ(info.n_embd, 64u);
    EXPECT_EQ(info.n_layers, 2u);
    EXPECT_EQ(info.n_heads, 4u);
    EXPECT_EQ(info.n_kv_heads, 2u);
    EXPECT_EQ(info.vocab_size, 512u);
    EXPECT_EQ(info.bos_id, 1);
    EXPECT_STREQ(info.device, "ref");

    kestrel_sampler_options_t sampler;
    kestrel_sampler_options_init(&sampler);
    sampler.temperature = 0.0f;
    kestrel_session_options_t so;
    kestrel_session_options_init(&so);
    so.sampler = &sampler;
    ASSERT_API_OK(kestrel_session_create(api.model, &so, &api.session));
    const std::vector<int32_t> prompt = {1, 300, 301, 302, 400};
    ASSERT_API_OK(kestrel_session_decode(api.session, prompt.data(), prompt.size()));
    std::vector<float> logits(512);
    size_t required = 0;
    ASSERT_API_OK(kestrel_session_get_logits(api.session, logits.data(), logits.size(), &required));
    float lo = logits[0], hi = logits[0];
    for (float v : logits) {
      ASSERT_TRUE(std::isfinite(v));
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
    EXPECT_GT(hi - lo, 0.1f);  // the weights are not degenerate
    EXPECT_LT(hi - lo, 1000.0f);

    kestrel_generate_options_t gen;
    kestrel_generate_options_init(&gen);
    gen.max_new_tokens = 4;
    kestrel_generate_stats_t stats = {};
    stats.struct_size = sizeof(stats);
    ASSERT_API_OK(kestrel_session_generate_tokens(api.session, prompt.data(), prompt.size(), &gen, &stats));
    EXPECT_EQ(stats.n_prompt_tokens, prompt.size());
    EXPECT_GE(stats.n_generated_tokens, 1u);  // a random model may pick EOS early
    EXPECT_LE(stats.n_generated_tokens, 4u);
  }
}

// The full-size 32000-token vocab tokenizes ordinary text with pieces, without <unk>, and
// detokenizes it back.
TEST(SynthWriterTest, VocabTokenizesHelloWorld) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  ModelShape s = TinyShape(32000);
  s.dim = 32;
  s.heads = 2;
  s.kv_heads = 1;
  s.ffn = 32;
  s.layers = 1;
  const std::string path = dir.File("vocab.gguf");
  ASSERT_TRUE(Write(s, GgmlType::Q8_0, 1, path).ok());
  Api api;
  LoadOnRef(path, &api);
  if (HasFatalFailure()) return;
  for (const std::string text : {"Hello world", "The quick brown fox, 42 times!"}) {
    const std::vector<int32_t> ids = Tokenize(api.model, text);
    ASSERT_GE(ids.size(), 2u);
    EXPECT_EQ(ids[0], 1);  // BOS
    for (size_t i = 1; i < ids.size(); ++i) {
      EXPECT_NE(ids[i], 0) << text << ": <unk> at " << i;
      EXPECT_GE(ids[i], 259) << text << ": byte fallback at " << i;  // every char is a piece
    }
    EXPECT_LT(ids.size(), text.size());  // pieces merged, not one token per character
    size_t n = 0;
    ASSERT_API_OK(kestrel_detokenize(api.model, ids.data(), ids.size(), true, nullptr, 0, &n));
    std::string back(n, '\0');
    ASSERT_API_OK(kestrel_detokenize(api.model, ids.data(), ids.size(), true, back.data(), n, &n));
    EXPECT_EQ(back, text);
  }
}

}  // namespace
}  // namespace kestrel::synth
