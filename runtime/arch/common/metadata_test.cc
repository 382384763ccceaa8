// ReadDecoderConfig: the shared <arch>.* keys, their defaults, and the errors that name the key
// (in-memory GGUFs with metadata only).
#include "runtime/arch/common/metadata.h"

#include <functional>
#include <string>

#include "gtest/gtest.h"
#include "runtime/gguf/gguf_writer.h"

namespace kestrel::runtime {
namespace {

// A qwen2-style header: 2 layers, dim 64, 4 heads (2 KV), ffn 96, 300 tokens; `edit` adds keys.
std::unique_ptr<GgufFile> File(const std::string& arch,
                               const std::function<void(GgufWriter&, const std::string&)>& edit = {}) {
  GgufWriter w;
  const std::string p = arch + ".";
  EXPECT_TRUE(w.AddString("general.architecture", arch).ok());
  EXPECT_TRUE(w.AddU32(p + "block_count", 2).ok());
  EXPECT_TRUE(w.AddU32(p + "embedding_length", 64).ok());
  EXPECT_TRUE(w.AddU32(p + "attention.head_count", 4).ok());
  EXPECT_TRUE(w.AddU32(p + "attention.head_count_kv", 2).ok());
  EXPECT_TRUE(w.AddU32(p + "feed_forward_length", 96).ok());
  EXPECT_TRUE(w.AddU32(p + "context_length", 256).ok());
  EXPECT_TRUE(w.AddF32(p + "attention.layer_norm_rms_epsilon", 1e-6f).ok());
  EXPECT_TRUE(w.AddU32(p + "vocab_size", 300).ok());
  if (edit) edit(w, p);
  std::string bytes;
  EXPECT_TRUE(w.OpenString(&bytes).ok());
  EXPECT_TRUE(w.Close().ok());
  auto f = GgufFile::OpenFromMemory(bytes);
  EXPECT_TRUE(f.ok()) << f.status();
  return std::move(*f);
}

absl::Status ErrorOf(const GgufFile& f, DecoderConfigRules rules = {}) {
  return ReadDecoderConfig(f, rules).status();
}

TEST(DecoderConfigTest, DefaultsAndPerLayerCopies) {
  DecoderConfigRules rules;
  rules.rope_style = KESTREL_ROPE_STYLE_NEOX;
  auto c = ReadDecoderConfig(*File("qwen2"), rules);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 16u);
  EXPECT_EQ(c->rope_dim, 16u);
  EXPECT_EQ(c->rope_style, static_cast<uint32_t>(KESTREL_ROPE_STYLE_NEOX));
  EXPECT_EQ(c->rope_freq_base, 10000.0f);
  EXPECT_EQ(c->rope_freq_scale, 1.0f);
  EXPECT_EQ(c->rope_attn_factor, 1.0f);
  EXPECT_EQ(c->n_vocab, 300u);
  ASSERT_EQ(c->layers.size(), 2u);
  EXPECT_EQ(c->layers[1].rope_freq_base, 10000.0f);
  EXPECT_EQ(c->layers[1].sliding_window, 0u);
}

TEST(DecoderConfigTest, KeyLengthSetsTheHeadDimApartFromTheWidth) {
  auto c = ReadDecoderConfig(*File("qwen3", [](GgufWriter& w, const std::string& p) {
    ASSERT_TRUE(w.AddU32(p + "attention.key_length", 32).ok());
    ASSERT_TRUE(w.AddU32(p + "attention.value_length", 32).ok());
  }), {});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 32u);  // Q is 4 x 32 = 128 wide in a 64-wide model
  EXPECT_EQ(c->rope_dim, 32u);
  absl::Status s = ErrorOf(*File("qwen3", [](GgufWriter& w, const std::string& p) {
    ASSERT_TRUE(w.AddU32(p + "attention.key_length", 32).ok());
    ASSERT_TRUE(w.AddU32(p + "attention.value_length", 16).ok());
  }));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(s.message().find("qwen3.attention.value_length"), std::string::npos) << s;
}

TEST(DecoderConfigTest, RopeScalingKeys) {
  auto c = ReadDecoderConfig(*File("phi3", [](GgufWriter& w, const std::string& p) {
    ASSERT_TRUE(w.AddString(p + "rope.scaling.type", "longrope").ok());
    ASSERT_TRUE(w.AddF32(p + "rope.scaling.attn_factor", 1.19f).ok());
    ASSERT_TRUE(w.AddU32(p + "rope.scaling.original_context_length", 128).ok());
  }), {});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope_attn_factor, 1.19f);
  EXPECT_EQ(c->rope_original_context, 128u);
  auto linear = ReadDecoderConfig(*File("llama", [](GgufWriter& w, const std::string& p) {
    ASSERT_TRUE(w.AddString(p + "rope.scaling.type", "linear").ok());
    ASSERT_TRUE(w.AddF32(p + "rope.scaling.factor", 4.0f).ok());
  }), {});
  ASSERT_TRUE(linear.ok()) << linear.status();
  EXPECT_EQ(linear->rope_freq_scale, 0.25f);
  EXPECT_EQ(linear->layers[0].rope_freq_scale, 0.25f);
  absl::Status yarn = ErrorOf(*File("qwen2", [](GgufWriter& w, const std::string& p) {
    ASSERT_TRUE(w.AddString(p + "rope.scaling.type", "yarn").ok());
  }));
  EXPECT_EQ(yarn.code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(yarn.message().find("'yarn'"), std::string::npos) << yarn;
  absl::Status zero = ErrorOf(*File("phi3", [](GgufWriter& w, const std::string& p) {
    ASSERT_TRUE(w.AddF32(p + "rope.scaling.attn_factor", 0.0f).ok());
  }));
  EXPECT_EQ(zero.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(zero.message().find("phi3.rope.scaling.attn_factor"), std::string::npos) << zero;
}

TEST(DecoderConfigTest, ExpertsOnlyWhereTheFamilyAllowsThem) {
  auto experts = [](GgufWriter& w, const std::string& p) {
    ASSERT_TRUE(w.AddU32(p + "expert_count", 8).ok());
    ASSERT_TRUE(w.AddU32(p + "expert_used_count", 2).ok());
  };
  absl::Status s = ErrorOf(*File("qwen2", experts));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(s.message().find("qwen2.expert_count"), std::string::npos) << s;
  DecoderConfigRules llama;
  llama.allow_experts = true;
  auto c = ReadDecoderConfig(*File("llama", experts), llama);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->n_experts, 8u);
}

TEST(DecoderConfigTest, BadValuesNameTheKey) {
  absl::Status heads = ErrorOf(*File("qwen2", [](GgufWriter& w, const std::string& p) {
    ASSERT_TRUE(w.AddU32(p + "rope.dimension_count", 7).ok());
  }));
  EXPECT_EQ(heads.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(heads.message().find("qwen2.rope.dimension_count"), std::string::npos) << heads;
  GgufWriter w;
  ASSERT_TRUE(w.AddString("general.architecture", "qwen3").ok());
  std::string bytes;
  ASSERT_TRUE(w.OpenString(&bytes).ok());
  ASSERT_TRUE(w.Close().ok());
  auto f = GgufFile::OpenFromMemory(bytes);
  ASSERT_TRUE(f.ok());
  absl::Status missing = ErrorOf(**f);
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.message().find("qwen3.block_count"), std::string::npos) << missing;
  // Best effort never fails and reads what is there.
  const ModelConfig best = ReadConfigBestEffort(*File("gemma3"));
  EXPECT_EQ(best.architecture, "gemma3");
  EXPECT_EQ(best.n_layers, 2u);
  EXPECT_EQ(best.head_dim, 16u);
}

}  // namespace
}  // namespace kestrel::runtime
