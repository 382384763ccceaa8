#include "tools/synth/synth_args.h"

#include <gtest/gtest.h>

#include <initializer_list>
#include <vector>

namespace kestrel::synth {
namespace {

SynthParseResult Parse(std::initializer_list<const char*> args, SynthArgs* out) {
  std::vector<const char*> argv = {"kestrel-synth"};
  argv.insert(argv.end(), args.begin(), args.end());
  return ParseSynthArgs(static_cast<int>(argv.size()), argv.data(), out);
}

TEST(SynthArgsTest, Preset) {
  SynthArgs a;
  SynthParseResult r = Parse({"--shape", "tinyllama-1.1b", "--type", "Q8_0", "--seed", "7", "-o", "x.gguf"}, &a);
  ASSERT_TRUE(r.ok) << r.error;
  const ModelShape& s = a.options.shape;
  EXPECT_EQ(s.name, "tinyllama-1.1b");
  EXPECT_EQ(s.dim, 2048u);
  EXPECT_EQ(s.layers, 22u);
  EXPECT_EQ(s.heads, 32u);
  EXPECT_EQ(s.kv_heads, 4u);
  EXPECT_EQ(s.ffn, 5632u);
  EXPECT_EQ(s.vocab, 32000u);
  EXPECT_EQ(a.options.type, runtime::GgmlType::Q8_0);
  EXPECT_EQ(a.options.seed, 7u);
  EXPECT_EQ(a.options.output_path, "x.gguf");

  ASSERT_TRUE(Parse({"--shape=mixtral-small", "--output=m.gguf"}, &a).ok);
  EXPECT_EQ(a.options.shape.experts, 8u);
  EXPECT_EQ(a.options.shape.experts_used, 2u);
  EXPECT_EQ(a.options.shape.ffn, 2816u);
  EXPECT_EQ(a.options.type, runtime::GgmlType::Q4_0);  // default

  ASSERT_TRUE(Parse({"--shape", "llama-8b", "-o", "l.gguf", "--type", "f16"}, &a).ok);
  EXPECT_EQ(a.options.shape.dim, 4096u);
  EXPECT_EQ(a.options.shape.kv_heads, 8u);
  EXPECT_EQ(a.options.shape.ffn, 14336u);
  EXPECT_EQ(a.options.type, runtime::GgmlType::F16);

  // Shape flags override a preset.
  ASSERT_TRUE(Parse({"--shape", "tinyllama-1.1b", "--layers", "2", "-o", "t.gguf"}, &a).ok);
  EXPECT_EQ(a.options.shape.layers, 2u);
  EXPECT_EQ(a.options.shape.dim, 2048u);
}

TEST(SynthArgsTest, Custom) {
  SynthArgs a;
  SynthParseResult r = Parse({"--shape", "custom", "--dim", "64", "--layers", "2", "--heads", "4",
                              "--ffn", "128", "--vocab", "512", "--ctx", "256", "-o", "c.gguf"},
                             &a);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(a.options.shape.kv_heads, 4u);  // defaults to --heads
  EXPECT_EQ(a.options.shape.vocab, 512u);
  EXPECT_EQ(a.options.shape.context, 256u);
  EXPECT_EQ(a.options.shape.experts, 0u);
}

TEST(SynthArgsTest, UsageErrorsNameTheProblem) {
  SynthArgs a;
  auto error = [&](std::initializer_list<const char*> args) {
    SynthParseResult r = Parse(args, &a);
    EXPECT_FALSE(r.ok);
    return r.error;
  };
  EXPECT_NE(error({"-o", "x"}).find("--shape"), std::string::npos);
  EXPECT_NE(error({"--shape", "tinyllama-1.1b"}).find("-o"), std::string::npos);
  EXPECT_NE(error({"--shape", "gpt5", "-o", "x"}).find("unknown shape 'gpt5'"), std::string::npos);
  EXPECT_NE(error({"--shape", "custom", "--dim", "64", "-o", "x"}).find("--layers"), std::string::npos);
  EXPECT_NE(error({"--shape", "tinyllama-1.1b", "--type", "Q7_K", "-o", "x"}).find("'Q7_K'"),
            std::string::npos);
  EXPECT_NE(error({"--shape", "tinyllama-1.1b", "--seed", "-1", "-o", "x"}).find("--seed"),
            std::string::npos);
  EXPECT_NE(error({"--shape", "tinyllama-1.1b", "--layers", "2x", "-o", "x"}).find("'2x'"),
            std::string::npos);
  EXPECT_NE(error({"--shape", "tinyllama-1.1b", "--bogus", "1", "-o", "x"}).find("--bogus"),
            std::string::npos);
  EXPECT_NE(error({"--shape", "tinyllama-1.1b", "-o"}).find("needs a value"), std::string::npos);
  EXPECT_NE(error({"--shape", "tinyllama-1.1b", "stray", "-o", "x"}).find("'stray'"), std::string::npos);
  // Shape checks.
  EXPECT_NE(error({"--shape", "custom", "--dim", "60", "--layers", "1", "--heads", "4", "--ffn",
                   "64", "-o", "x"})
                .find("--dim 60"),
            std::string::npos);  // not a multiple of 32 for Q4_0
  EXPECT_NE(error({"--shape", "custom", "--dim", "64", "--layers", "1", "--heads", "3", "--ffn",
                   "64", "-o", "x"})
                .find("--heads"),
            std::string::npos);
  EXPECT_NE(error({"--shape", "custom", "--dim", "64", "--layers", "1", "--heads", "4",
                   "--kv-heads", "3", "--ffn", "64", "-o", "x"})
                .find("--kv-heads 3"),
            std::string::npos);
  EXPECT_NE(error({"--shape", "custom", "--dim", "64", "--layers", "1", "--heads", "4", "--ffn",
                   "64", "--vocab", "100", "-o", "x"})
                .find("--vocab 100"),
            std::string::npos);
  EXPECT_NE(error({"--shape", "custom", "--dim", "64", "--layers", "1", "--heads", "4", "--ffn",
                   "64", "--experts", "4", "--experts-used", "5", "-o", "x"})
                .find("--experts-used 5"),
            std::string::npos);
  EXPECT_NE(error({"--shape", "custom", "--dim", "64", "--layers", "0", "--heads", "4", "--ffn",
                   "64", "-o", "x"})
                .find("--layers 0"),
            std::string::npos);
}

TEST(SynthArgsTest, Help) {
  SynthArgs a;
  ASSERT_TRUE(Parse({"--help"}, &a).ok);
  EXPECT_TRUE(a.help);
}

}  // namespace
}  // namespace kestrel::synth
