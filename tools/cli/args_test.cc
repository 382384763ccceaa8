#include "args.h"

#include <gtest/gtest.h>

#include <cmath>
#include <initializer_list>
#include <utility>
#include <vector>

namespace kestrel::cli {
namespace {

ParseResult Parse(std::initializer_list<const char*> args, Options* out) {
  std::vector<const char*> argv = {"kestrel"};
  argv.insert(argv.end(), args.begin(), args.end());
  return ParseArgs(static_cast<int>(argv.size()), argv.data(), out);
}

ParseResult Parse(const std::vector<const char*>& args, Options* out) {
  std::vector<const char*> argv = {"kestrel"};
  argv.insert(argv.end(), args.begin(), args.end());
  return ParseArgs(static_cast<int>(argv.size()), argv.data(), out);
}

TEST(ParseNumbersTest, StrictIntegers) {
  uint32_t u = 7;
  EXPECT_TRUE(ParseUint32("0", &u));
  EXPECT_EQ(u, 0u);
  EXPECT_TRUE(ParseUint32("4294967295", &u));
  EXPECT_EQ(u, 4294967295u);
  for (const char* bad : {"", "abc", "1.5", "1.5x", "12 ", " 12", "-1", "+1", "4294967296", "0x10"}) {
    u = 7;
    EXPECT_FALSE(ParseUint32(bad, &u)) << bad;
    EXPECT_EQ(u, 7u) << "written on failure: " << bad;
  }
  int32_t i = 0;
  EXPECT_TRUE(ParseInt32("-5", &i));
  EXPECT_EQ(i, -5);
  EXPECT_FALSE(ParseInt32("2147483648", &i));
  uint64_t s = 0;
  EXPECT_TRUE(ParseUint64("18446744073709551615", &s));
  EXPECT_EQ(s, UINT64_MAX);
  EXPECT_FALSE(ParseUint64("18446744073709551616", &s));
}

TEST(ParseNumbersTest, StrictFloats) {
  float f = 0;
  EXPECT_TRUE(ParseFloat("0.8", &f));
  EXPECT_FLOAT_EQ(f, 0.8f);
  EXPECT_TRUE(ParseFloat("1e-3", &f));
  EXPECT_TRUE(ParseFloat("-2", &f));
  for (const char* bad : {"", "x", "0.8x", "nan", "inf", "1e99", " 1", "1,5"}) {
    f = 42;
    EXPECT_FALSE(ParseFloat(bad, &f)) << bad;
    EXPECT_EQ(f, 42) << bad;
  }
}

TEST(ParseArgsTest, GenerateWithEveryFlag) {
  Options o;
  ParseResult r = Parse({"generate", "-m", "m.gguf", "-p", "-hello", "-n", "5", "--temp", "0",
                         "--top-k", "10", "--top-p=0.5", "--min-p", "0.1", "--repeat-penalty",
                         "1.1", "--repeat-last-n", "32", "--seed", "42", "--ctx", "256",
                         "--device", "ref", "--stop", "\n\n", "--stop", "The end", "-t", "4",
                         "--json", "--no-mmap", "--no-echo", "-vv"},
                        &o);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(o.command, Command::kGenerate);
  EXPECT_EQ(o.model_path, "m.gguf");
  EXPECT_EQ(*o.prompt, "-hello");  // a value that looks like a flag is still the value
  EXPECT_EQ(o.max_new_tokens, 5u);
  EXPECT_EQ(o.temperature, 0.0f);
  EXPECT_EQ(*o.top_k, 10);
  EXPECT_FLOAT_EQ(*o.top_p, 0.5f);
  EXPECT_FLOAT_EQ(*o.min_p, 0.1f);
  EXPECT_FLOAT_EQ(*o.repeat_penalty, 1.1f);
  EXPECT_EQ(*o.repeat_last_n, 32);
  EXPECT_EQ(*o.seed, 42u);
  EXPECT_EQ(o.context_length, 256u);
  EXPECT_EQ(o.device, "ref");
  ASSERT_EQ(o.stop_strings.size(), 2u);
  EXPECT_EQ(o.stop_strings[0], "\n\n");
  EXPECT_EQ(o.stop_strings[1], "The end");
  EXPECT_EQ(o.n_threads, 4u);
  EXPECT_TRUE(o.json);
  EXPECT_FALSE(o.use_mmap);
  EXPECT_FALSE(o.echo_prompt);
  EXPECT_EQ(o.verbosity, 2);
}

TEST(ParseArgsTest, PlanAndMemoryBudgets) {
  Options o;
  ParseResult r = Parse({"plan", "-m", "m.gguf", "--device", "cpu", "--mem", "cpu=512M",
                         "--mem=host=60%", "--ctx", "4096", "--expert-policy", "lfu", "--json"},
                        &o);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(o.command, Command::kPlan);
  EXPECT_EQ(o.mem, (std::vector<std::string>{"cpu=512M", "host=60%"}));
  EXPECT_EQ(o.context_length, 4096u);
  EXPECT_EQ(o.expert_policy, "lfu");
  EXPECT_TRUE(o.json);
  EXPECT_TRUE(Parse({"generate", "-m", "m", "-p", "x", "--mem", "host=1G"}, &o).ok);
  EXPECT_TRUE(Parse({"bench", "-m", "m", "--mem", "host=50%"}, &o).ok);
  EXPECT_TRUE(o.expert_prefetch);
  EXPECT_TRUE(Parse({"bench", "-m", "m", "--mem", "host=50%", "--no-expert-prefetch"}, &o).ok);
  EXPECT_FALSE(o.expert_prefetch);
  EXPECT_FALSE(Parse({"plan", "-m", "m", "--no-expert-prefetch"}, &o).ok);  // nothing runs
  r = Parse({"plan", "-m", "m", "--mem", "1G"}, &o);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("DEVICE=SIZE"), std::string::npos) << r.error;
  r = Parse({"plan", "-m", "m", "--expert-policy", "fifo"}, &o);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("lru or lfu"), std::string::npos) << r.error;
  EXPECT_FALSE(Parse({"plan", "--mem", "host=1G"}, &o).ok);  // needs -m
  EXPECT_FALSE(Parse({"info", "-m", "m", "--mem", "host=1G"}, &o).ok);
}

TEST(ParseArgsTest, Defaults) {
  Options o;
  ASSERT_TRUE(Parse({"generate", "-m", "m", "-p", "x"}, &o).ok);
  EXPECT_EQ(o.max_new_tokens, 128u);
  EXPECT_FLOAT_EQ(o.temperature, 0.8f);
  EXPECT_FALSE(o.top_k.has_value());
  EXPECT_FALSE(o.seed.has_value());
  EXPECT_TRUE(o.use_mmap);
  EXPECT_TRUE(o.echo_prompt);
  EXPECT_FALSE(o.json);
}

TEST(ParseArgsTest, BadNumberNamesFlagAndValue) {
  Options o;
  ParseResult r = Parse({"generate", "-m", "m", "-p", "x", "-n", "abc"}, &o);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("-n"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("'abc'"), std::string::npos) << r.error;
  r = Parse({"generate", "-m", "m", "-p", "x", "-n", "1.5x"}, &o);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("'1.5x'"), std::string::npos) << r.error;
  r = Parse({"generate", "-m", "m", "-p", "x", "--top-p=0"}, &o);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("--top-p"), std::string::npos) << r.error;
  r = Parse({"generate", "-m", "m", "-p", "x", "--temp", "-1"}, &o);
  EXPECT_FALSE(r.ok);
}

TEST(ParseArgsTest, UsageErrors) {
  Options o;
  EXPECT_FALSE(Parse({}, &o).ok);
  EXPECT_FALSE(Parse({"frobnicate"}, &o).ok);
  EXPECT_FALSE(Parse({"-m", "x", "generate"}, &o).ok);               // command first
  EXPECT_FALSE(Parse({"generate", "-p", "x"}, &o).ok);               // no model
  EXPECT_FALSE(Parse({"generate", "-m", "x"}, &o).ok);               // no prompt
  EXPECT_FALSE(Parse({"generate", "-m", "x", "-p"}, &o).ok);         // missing value
  EXPECT_FALSE(Parse({"generate", "-m", "x", "-p", "y", "--bogus"}, &o).ok);
  EXPECT_FALSE(Parse({"generate", "-m", "x", "-p", "y", "stray"}, &o).ok);
  EXPECT_FALSE(Parse({"generate", "-m", "x", "-p", "y", "--json=1"}, &o).ok);
  ParseResult r = Parse({"devices", "-p", "x"}, &o);                 // flag of another command
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("devices"), std::string::npos) << r.error;
  EXPECT_FALSE(Parse({"info"}, &o).ok);
  EXPECT_FALSE(Parse({"help", "nope"}, &o).ok);
}

TEST(ParseArgsTest, HelpAndVersion) {
  Options o;
  ASSERT_TRUE(Parse({"--version"}, &o).ok);
  EXPECT_EQ(o.command, Command::kVersion);
  ASSERT_TRUE(Parse({"help"}, &o).ok);
  EXPECT_EQ(o.command, Command::kHelp);
  ASSERT_TRUE(Parse({"help", "generate"}, &o).ok);
  EXPECT_EQ(o.help_topic, "generate");
  ASSERT_TRUE(Parse({"--help"}, &o).ok);
  EXPECT_EQ(o.command, Command::kHelp);
  ASSERT_TRUE(Parse({"generate", "-h"}, &o).ok);  // help needs no -m/-p
  EXPECT_TRUE(o.help);
  EXPECT_EQ(o.command, Command::kGenerate);
  ASSERT_TRUE(Parse({"devices", "--json"}, &o).ok);
  EXPECT_TRUE(o.json);
}

TEST(ParseArgsTest, BenchModel) {
  Options o;
  ParseResult r = Parse({"bench", "-m", "m.gguf", "-p", "8", "-n", "4", "-t", "2", "--reps", "3",
                         "--warmup", "0", "--device", "ref", "--json", "--no-mmap"},
                        &o);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(o.command, Command::kBench);
  EXPECT_EQ(o.model_path, "m.gguf");
  EXPECT_EQ(o.bench.n_prompt, 8u);
  EXPECT_EQ(o.bench.n_decode, 4u);
  EXPECT_EQ(o.n_threads, 2u);
  EXPECT_EQ(o.bench.reps, 3u);
  EXPECT_EQ(o.bench.warmup, 0u);
  EXPECT_EQ(o.device, "ref");
  EXPECT_TRUE(o.json);
  EXPECT_FALSE(o.use_mmap);
  EXPECT_FALSE(o.bench.membw);
  EXPECT_FALSE(o.prompt.has_value());   // -p is a token count here, not prompt text
  EXPECT_EQ(o.max_new_tokens, 128u);    // -n went to bench.n_decode

  ASSERT_TRUE(Parse({"bench", "-m", "m.gguf", "--n-prompt=16"}, &o).ok);
  EXPECT_EQ(o.bench.n_prompt, 16u);
  EXPECT_EQ(o.bench.n_decode, 64u);  // defaults
  EXPECT_EQ(o.bench.reps, 5u);
  EXPECT_EQ(o.bench.warmup, 1u);
  EXPECT_EQ(o.n_threads, 0u);
}

TEST(ParseArgsTest, BenchMembw) {
  Options o;
  ParseResult r = Parse({"bench", "--membw", "--threads", "2", "--size-mb", "64", "--json"}, &o);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_TRUE(o.bench.membw);
  EXPECT_EQ(o.n_threads, 2u);
  EXPECT_EQ(o.bench.size_mb, 64u);
  EXPECT_TRUE(o.json);
  ASSERT_TRUE(Parse({"bench", "--membw"}, &o).ok);
  EXPECT_EQ(o.bench.size_mb, 0u);  // automatic
}

TEST(ParseNumbersTest, ConcurrencyList) {
  std::vector<uint32_t> v = {7};
  ASSERT_TRUE(ParseConcurrencyList("1,8,32", &v));
  EXPECT_EQ(v, (std::vector<uint32_t>{1, 8, 32}));
  ASSERT_TRUE(ParseConcurrencyList("4096", &v));
  EXPECT_EQ(v, (std::vector<uint32_t>{4096}));
  for (const char* bad : {"", ",", "1,", ",1", "1,,2", "0", "1,0", "4097", "1, 8", " 1", "-1",
                          "+1", "1.5", "1;8", "x", "1,8x"}) {
    v = {7};
    EXPECT_FALSE(ParseConcurrencyList(bad, &v)) << bad;
    EXPECT_EQ(v, (std::vector<uint32_t>{7})) << "written on failure: " << bad;
  }
}

TEST(ParseArgsTest, KvType) {
  Options o;
  ASSERT_TRUE(Parse({"generate", "-m", "m.gguf", "-p", "hi"}, &o).ok);
  EXPECT_EQ(o.kv_type, 0u);  // KESTREL_KV_F32
  ASSERT_TRUE(Parse({"generate", "-m", "m.gguf", "-p", "hi", "--kv-type", "f16"}, &o).ok);
  EXPECT_EQ(o.kv_type, 1u);  // KESTREL_KV_F16
  Options b;
  ASSERT_TRUE(Parse({"bench", "-m", "m.gguf", "--engine", "--kv-type=f16"}, &b).ok);
  EXPECT_EQ(b.kv_type, 1u);
  Options bad;
  ParseResult r = Parse({"generate", "-m", "m.gguf", "-p", "hi", "--kv-type", "q8"}, &bad);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("invalid value 'q8' for --kv-type: expected f32 or f16"), std::string::npos)
      << r.error;
}

TEST(ParseArgsTest, Speculative) {
  Options g;
  ASSERT_TRUE(Parse({"generate", "-m", "m.gguf", "-p", "hi", "--spec", "draft", "--draft-model",
                     "d.gguf", "--spec-max", "6", "--heads", "h.gguf"},
                    &g)
                  .ok);
  EXPECT_EQ(g.spec, "draft");
  EXPECT_EQ(g.draft_model, "d.gguf");
  EXPECT_EQ(g.spec_max, 6u);
  EXPECT_EQ(g.heads, "h.gguf");
  // bench --spec: -p is the prompt text, -n defaults to 128 and reps to 3.
  Options b;
  ASSERT_TRUE(Parse({"bench", "-m", "m.gguf", "-p", "Once upon a time", "--spec=auto", "--json"}, &b).ok);
  EXPECT_EQ(b.prompt, "Once upon a time");
  EXPECT_EQ(b.spec, "auto");
  EXPECT_EQ(b.bench.n_decode, 128u);
  EXPECT_EQ(b.bench.reps, 3u);
  Options f;
  ASSERT_TRUE(Parse({"bench", "-m", "m.gguf", "--spec", "ngram", "--prompt-file", "p.txt", "--special",
                     "-n", "64"},
                    &f)
                  .ok);
  EXPECT_EQ(f.spec_prompt_file, "p.txt");
  EXPECT_TRUE(f.special);
  EXPECT_EQ(f.bench.n_decode, 64u);
  // bench compares a list of methods in one run; generate takes one method.
  Options list;
  ASSERT_TRUE(Parse({"bench", "-m", "m.gguf", "-p", "x", "--spec", "auto,ngram"}, &list).ok);
  EXPECT_EQ(list.spec, "auto,ngram");
  // Plain bench keeps -p as a token count.
  Options plain;
  ASSERT_TRUE(Parse({"bench", "-m", "m.gguf", "-p", "16"}, &plain).ok);
  EXPECT_EQ(plain.bench.n_prompt, 16u);
  for (const std::vector<const char*>& bad :
       std::vector<std::vector<const char*>>{
           {"generate", "-m", "m.gguf", "-p", "hi", "--spec", "fast"},
           {"generate", "-m", "m.gguf", "-p", "hi", "--spec-max", "4"},
           {"generate", "-m", "m.gguf", "-p", "hi", "--spec", "ngram", "--spec-max", "65"},
           {"bench", "-m", "m.gguf", "--spec", "ngram"},
           {"bench", "-m", "m.gguf", "--spec", "ngram", "-p", "x", "--prompt-file", "f"},
           {"bench", "-m", "m.gguf", "--spec", "ngram", "-p", "x", "--membw"},
           {"bench", "-m", "m.gguf", "--special"},
           {"generate", "-m", "m.gguf", "-p", "hi", "--spec", "auto,ngram"},
           {"bench", "-m", "m.gguf", "-p", "x", "--spec", "auto,off"},
           {"bench", "-m", "m.gguf", "-p", "x", "--spec", "auto,"},
           {"bench", "-m", "m.gguf", "-p", "x", "--spec", "auto,fast"}}) {
    Options o;
    EXPECT_FALSE(Parse(bad, &o).ok) << bad.back();
  }
  Options e;
  ParseResult r = Parse({"generate", "-m", "m.gguf", "-p", "hi", "--spec", "fast"}, &e);
  EXPECT_NE(r.error.find("invalid value 'fast' for --spec: expected auto, off, draft, self, ngram, "
                         "lookahead, medusa or eagle"),
            std::string::npos)
      << r.error;
}

TEST(ParseArgsTest, BenchEngine) {
  Options o;
  ParseResult r = Parse({"bench", "-m", "m.gguf", "--engine", "--concurrency", "1,4", "-n", "8",
                         "-t", "2", "--device", "cpu", "--reps", "1", "--prefix-tokens", "32",
                         "--kv-block-size", "4", "--json"},
                        &o);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_TRUE(o.bench.engine);
  EXPECT_FALSE(o.bench.membw);
  EXPECT_EQ(o.bench.concurrency, (std::vector<uint32_t>{1, 4}));
  EXPECT_EQ(o.bench.n_decode, 8u);
  EXPECT_EQ(o.n_threads, 2u);
  EXPECT_EQ(o.device, "cpu");
  EXPECT_EQ(o.bench.reps, 1u);
  ASSERT_TRUE(o.bench.prefix_tokens.has_value());
  EXPECT_EQ(*o.bench.prefix_tokens, 32u);
  ASSERT_TRUE(o.bench.kv_block_size.has_value());
  EXPECT_EQ(*o.bench.kv_block_size, 4u);
  EXPECT_TRUE(o.json);

  // The engine bench's defaults: -n 128, --reps 3, concurrencies 1,8,32, prefix length automatic.
  ASSERT_TRUE(Parse({"bench", "-m", "m.gguf", "--engine"}, &o).ok);
  EXPECT_EQ(o.bench.n_decode, 128u);
  EXPECT_EQ(o.bench.reps, 3u);
  EXPECT_EQ(o.bench.concurrency, (std::vector<uint32_t>{1, 8, 32}));
  EXPECT_FALSE(o.bench.prefix_tokens.has_value());
  EXPECT_FALSE(o.bench.kv_block_size.has_value());  // the library's default
  EXPECT_EQ(o.n_threads, 0u);
  ASSERT_TRUE(Parse({"bench", "-m", "m.gguf", "--engine", "--prefix-tokens=0",
                     "--concurrency=16"},
                    &o)
                  .ok);
  EXPECT_EQ(*o.bench.prefix_tokens, 0u);  // 0: skip the shared-prefix workload
  EXPECT_EQ(o.bench.concurrency, (std::vector<uint32_t>{16}));
  ASSERT_TRUE(Parse({"bench", "-m", "m.gguf"}, &o).ok);  // without --engine: model bench defaults
  EXPECT_FALSE(o.bench.engine);
  EXPECT_EQ(o.bench.n_decode, 64u);
  EXPECT_EQ(o.bench.reps, 5u);
}

TEST(ParseArgsTest, BenchEngineUsageErrors) {
  Options o;
  auto error = [&](std::initializer_list<const char*> args) {
    ParseResult r = Parse(args, &o);
    EXPECT_FALSE(r.ok);
    return r.error;
  };
  EXPECT_NE(error({"bench", "--engine"}).find("needs -m/--model"), std::string::npos);
  EXPECT_NE(error({"bench", "-m", "m", "--engine", "--concurrency", "1,x"})
                .find("'1,x' for --concurrency"),
            std::string::npos);
  EXPECT_NE(error({"bench", "-m", "m", "--engine", "--concurrency", "0"}).find("--concurrency"),
            std::string::npos);
  EXPECT_NE(error({"bench", "-m", "m", "--engine", "--concurrency"}).find("needs a value"),
            std::string::npos);
  EXPECT_NE(error({"bench", "-m", "m", "--engine", "--prefix-tokens", "-1"})
                .find("'-1' for --prefix-tokens"),
            std::string::npos);
  EXPECT_NE(error({"bench", "-m", "m", "--engine", "--prefix-tokens", "12k"}).find("--prefix-tokens"),
            std::string::npos);
  for (const char* bad : {"0", "3", "8192", "-4", "x"}) {
    EXPECT_NE(error({"bench", "-m", "m", "--engine", "--kv-block-size", bad})
                  .find("for --kv-block-size"),
              std::string::npos)
        << bad;
  }
  EXPECT_NE(error({"bench", "-m", "m", "--kv-block-size", "4"}).find("needs --engine"),
            std::string::npos);
  EXPECT_NE(error({"bench", "-m", "m", "--engine", "-n", "0"}).find("'0' for -n"),
            std::string::npos);
  EXPECT_NE(error({"bench", "-m", "m", "--engine", "-t", "two"}).find("'two' for -t"),
            std::string::npos);
  EXPECT_NE(error({"bench", "-m", "m", "--engine", "--reps", "0"}).find("--reps"),
            std::string::npos);
  EXPECT_NE(error({"bench", "-m", "m", "--engine", "-p", "8"})
                .find("'-p' does not apply to 'bench --engine'"),
            std::string::npos);
  EXPECT_NE(error({"bench", "-m", "m", "--engine", "--warmup", "1"}).find("'--warmup'"),
            std::string::npos);
  EXPECT_NE(error({"bench", "--engine", "--membw"}).find("exclude each other"), std::string::npos);
  EXPECT_NE(error({"bench", "-m", "m", "--concurrency", "1,8"}).find("'--concurrency' needs --engine"),
            std::string::npos);
  EXPECT_NE(error({"bench", "-m", "m", "--prefix-tokens", "32"}).find("needs --engine"),
            std::string::npos);
  EXPECT_NE(error({"generate", "-m", "m", "-p", "x", "--engine"}).find("does not apply to 'generate'"),
            std::string::npos);
}

TEST(ParseArgsTest, BenchUsageErrors) {
  Options o;
  auto error = [&](std::initializer_list<const char*> args) {
    ParseResult r = Parse(args, &o);
    EXPECT_FALSE(r.ok);
    return r.error;
  };
  EXPECT_NE(error({"bench"}).find("needs -m/--model"), std::string::npos);
  EXPECT_NE(error({"bench", "-m", "m", "-p", "abc"}).find("'abc' for -p"), std::string::npos);
  EXPECT_NE(error({"bench", "-m", "m", "-p", "0"}).find("'0' for -p"), std::string::npos);
  EXPECT_NE(error({"bench", "-m", "m", "-n", "0"}).find("'0' for -n"), std::string::npos);
  EXPECT_NE(error({"bench", "-m", "m", "--reps", "0"}).find("--reps"), std::string::npos);
  EXPECT_NE(error({"bench", "-m", "m", "--reps", "2x"}).find("'2x'"), std::string::npos);
  EXPECT_NE(error({"bench", "-m", "m", "--size-mb", "64"}).find("needs --membw"), std::string::npos);
  EXPECT_NE(error({"bench", "--membw", "-m", "m"}).find("'-m' does not apply to 'bench --membw'"),
            std::string::npos);
  EXPECT_NE(error({"bench", "--membw", "-p", "8"}).find("'-p'"), std::string::npos);
  EXPECT_NE(error({"bench", "--membw", "--size-mb", "0"}).find("--size-mb"), std::string::npos);
  EXPECT_NE(error({"bench", "-m", "m", "--stop", "x"}).find("does not apply to 'bench'"),
            std::string::npos);
  EXPECT_NE(error({"bench", "-m", "m", "--temp", "0"}).find("does not apply to 'bench'"),
            std::string::npos);
  EXPECT_NE(error({"generate", "-m", "m", "-p", "x", "--reps", "2"}).find("does not apply to 'generate'"),
            std::string::npos);
  EXPECT_NE(error({"generate", "-m", "m", "-p", "x", "--n-prompt", "2"}).find("does not apply"),
            std::string::npos);
  EXPECT_NE(error({"devices", "--membw"}).find("does not apply to 'devices'"), std::string::npos);
  ASSERT_TRUE(Parse({"help", "bench"}, &o).ok);
  EXPECT_EQ(o.help_topic, "bench");
  ASSERT_TRUE(Parse({"bench", "-h"}, &o).ok);  // help needs no -m
}

TEST(ParseArgsTest, PromptFromFileOrStdinAndUnlimitedTokens) {
  Options o;
  ASSERT_TRUE(Parse({"generate", "-m", "m", "-f", "p.txt"}, &o).ok);
  EXPECT_EQ(o.prompt_file, "p.txt");
  EXPECT_FALSE(o.prompt.has_value());
  ASSERT_TRUE(Parse({"generate", "-m", "m", "--file=-"}, &o).ok);
  EXPECT_EQ(o.prompt_file, "-");
  ASSERT_TRUE(Parse({"generate", "-m", "m", "-p", "-"}, &o).ok);
  EXPECT_EQ(o.prompt_file, "-");
  EXPECT_FALSE(o.prompt.has_value());
  ASSERT_TRUE(Parse({"generate", "-m", "m", "-p", "x", "-n", "-1"}, &o).ok);
  EXPECT_EQ(o.max_new_tokens, 4294967295u);
  ParseResult r = Parse({"generate", "-m", "m", "-p", "x", "-f", "p.txt"}, &o);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("give the prompt once"), std::string::npos) << r.error;
  EXPECT_FALSE(Parse({"generate", "-m", "m", "-p", "x", "-p", "y"}, &o).ok);
  r = Parse({"generate", "-m", "m", "-p", "x", "-n", "-2"}, &o);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("or -1"), std::string::npos) << r.error;
  EXPECT_FALSE(Parse({"bench", "-m", "m", "-n", "-1"}, &o).ok);  // bench counts tokens
  EXPECT_FALSE(Parse({"bench", "-m", "m", "-f", "p.txt"}, &o).ok);
}

TEST(ParseArgsTest, BenchKvSwap) {
  Options o;
  ASSERT_TRUE(Parse({"bench", "-m", "m.gguf", "--kv-swap"}, &o).ok);
  EXPECT_TRUE(o.bench.kv_swap);
  EXPECT_EQ(o.bench.n_prompt, 2048u);  // the 2,048-token request
  EXPECT_EQ(o.bench.n_decode, 16u);
  EXPECT_EQ(o.bench.reps, 3u);
  Options p;
  ASSERT_TRUE(Parse({"bench", "-m", "m.gguf", "--kv-swap", "-p", "256", "-n", "4", "--reps", "5",
                     "--mem", "host=1G", "--json"},
                    &p)
                  .ok);
  EXPECT_EQ(p.bench.n_prompt, 256u);
  EXPECT_EQ(p.bench.n_decode, 4u);
  EXPECT_EQ(p.bench.reps, 5u);
  EXPECT_EQ(p.mem, std::vector<std::string>{"host=1G"});
  for (const char* other : {"--engine", "--soak", "--membw"}) {
    Options x;
    ParseResult r = Parse({"bench", "-m", "m", "--kv-swap", other}, &x);
    EXPECT_FALSE(r.ok) << other;
    EXPECT_NE(r.error.find("excludes"), std::string::npos) << r.error;
  }
  Options y;
  EXPECT_FALSE(Parse({"bench", "--kv-swap"}, &y).ok);
}

TEST(ParseArgsTest, BenchVerifyCost) {
  Options o;
  ASSERT_TRUE(Parse({"bench", "-m", "m.gguf", "--verify-cost", "8"}, &o).ok);
  EXPECT_EQ(o.bench.verify_cost, 8u);
  EXPECT_EQ(o.bench.n_prompt, 128u);  // the context depth
  EXPECT_EQ(o.bench.reps, 20u);
  Options p;
  ASSERT_TRUE(Parse({"bench", "-m", "m.gguf", "--verify-cost=2", "-p", "64", "--reps", "3", "--json"}, &p).ok);
  EXPECT_EQ(p.bench.verify_cost, 2u);
  EXPECT_EQ(p.bench.n_prompt, 64u);
  EXPECT_EQ(p.bench.reps, 3u);
  for (const char* bad : {"0", "1", "4097", "x"}) {
    Options x;
    ParseResult r = Parse({"bench", "-m", "m", "--verify-cost", bad}, &x);
    EXPECT_FALSE(r.ok) << bad;
    EXPECT_NE(r.error.find("[2, 4096]"), std::string::npos) << r.error;
  }
  for (const char* other : {"--engine", "--soak", "--membw", "--kv-swap"}) {
    Options x;
    ParseResult r = Parse({"bench", "-m", "m", "--verify-cost", "8", other}, &x);
    EXPECT_FALSE(r.ok) << other;
    EXPECT_NE(r.error.find("excludes"), std::string::npos) << r.error;
  }
  Options n;
  EXPECT_FALSE(Parse({"bench", "-m", "m", "--verify-cost", "8", "-n", "4"}, &n).ok);
  Options y;
  EXPECT_FALSE(Parse({"bench", "--verify-cost", "8"}, &y).ok);
}

TEST(ParseArgsTest, BenchSoak) {
  Options o;
  ASSERT_TRUE(Parse({"bench", "-m", "m.gguf", "--soak"}, &o).ok);
  EXPECT_TRUE(o.bench.soak);
  // The soak's defaults: 10,000 requests, 64 in flight, up to 32 new tokens, 60 s watchdog, 1 %.
  EXPECT_EQ(o.bench.soak_requests, 10000u);
  EXPECT_EQ(o.bench.concurrency, std::vector<uint32_t>{64});
  EXPECT_EQ(o.bench.n_decode, 32u);
  EXPECT_EQ(o.bench.watchdog_s, 60u);
  EXPECT_DOUBLE_EQ(o.bench.max_rss_growth, 0.01);
  EXPECT_FALSE(o.seed.has_value());
  Options p;
  ASSERT_TRUE(Parse({"bench", "-m", "m.gguf", "--soak", "--requests", "50", "--concurrency=8",
                     "-n", "4", "--seed", "7", "--watchdog-s", "5", "--max-rss-growth", "0.5",
                     "--kv-block-size", "16", "--json"},
                    &p)
                  .ok);
  EXPECT_EQ(p.bench.soak_requests, 50u);
  EXPECT_EQ(p.bench.concurrency, std::vector<uint32_t>{8});
  EXPECT_EQ(p.bench.n_decode, 4u);
  EXPECT_EQ(p.seed, 7u);
  EXPECT_EQ(p.bench.watchdog_s, 5u);
  EXPECT_DOUBLE_EQ(p.bench.max_rss_growth, 0.5);
  EXPECT_EQ(p.bench.kv_block_size, 16u);
  auto error = [](std::initializer_list<const char*> args) {
    Options x;
    ParseResult r = Parse(args, &x);
    EXPECT_FALSE(r.ok);
    return r.error;
  };
  EXPECT_NE(error({"bench", "-m", "m", "--soak", "--engine"}).find("exclude"), std::string::npos);
  EXPECT_NE(error({"bench", "-m", "m", "--soak", "--membw"}).find("exclude"), std::string::npos);
  EXPECT_NE(error({"bench", "-m", "m", "--soak", "--concurrency", "1,2"}).find("one"),
            std::string::npos);
  EXPECT_NE(error({"bench", "-m", "m", "--soak", "-p", "4"}).find("'-p'"), std::string::npos);
  EXPECT_NE(error({"bench", "-m", "m", "--soak", "--reps", "2"}).find("--reps"), std::string::npos);
  EXPECT_NE(error({"bench", "-m", "m", "--requests", "5"}).find("needs --soak"),
            std::string::npos);
  EXPECT_NE(error({"bench", "-m", "m", "--seed", "5"}).find("needs --soak"), std::string::npos);
  EXPECT_NE(error({"bench", "--soak"}).find("needs -m/--model"), std::string::npos);
  EXPECT_NE(error({"bench", "-m", "m", "--soak", "--requests", "0"}).find("--requests"),
            std::string::npos);
  EXPECT_NE(error({"bench", "-m", "m", "--soak", "--max-rss-growth", "-1"}).find("fraction"),
            std::string::npos);
}

TEST(ParseArgsTest, TokenizeChatAndSpecial) {
  Options o;
  ASSERT_TRUE(Parse({"tokenize", "-m", "m.gguf", "-p", "hi", "--special", "--json"}, &o).ok);
  EXPECT_EQ(o.command, Command::kTokenize);
  EXPECT_TRUE(o.special);
  EXPECT_TRUE(o.json);
  EXPECT_EQ(*o.prompt, "hi");

  o = Options();
  ASSERT_TRUE(Parse({"chat", "-m", "m.gguf", "--system", "Be brief.", "-n", "64", "--temp", "0"}, &o).ok);
  EXPECT_EQ(o.command, Command::kChat);
  EXPECT_EQ(*o.system_prompt, "Be brief.");
  EXPECT_EQ(o.max_new_tokens, 64u);

  o = Options();
  ASSERT_TRUE(Parse({"generate", "-m", "m.gguf", "-p", "hi", "--chat", "--system", "s"}, &o).ok);
  EXPECT_TRUE(o.chat);
  EXPECT_FALSE(o.special);

  struct Bad {
    std::initializer_list<const char*> args;
    const char* message;
  };
  for (const Bad& b : {Bad{{"tokenize", "-m", "m.gguf"}, "'tokenize' needs -p/--prompt"},
                       Bad{{"tokenize", "-p", "x"}, "'tokenize' needs -m/--model"},
                       Bad{{"chat"}, "'chat' needs -m/--model"},
                       Bad{{"chat", "-m", "m.gguf", "-p", "x"}, "does not apply to 'chat'"},
                       Bad{{"chat", "-m", "m.gguf", "--json"}, "does not apply to 'chat'"},
                       Bad{{"tokenize", "-m", "m.gguf", "-p", "x", "--chat"}, "does not apply to 'tokenize'"},
                       Bad{{"generate", "-m", "m.gguf", "-p", "x", "--system", "s"}, "'--system' needs --chat"},
                       Bad{{"info", "-m", "m.gguf", "--special"}, "does not apply to 'info'"}}) {
    Options bad;
    ParseResult r = Parse(b.args, &bad);
    EXPECT_FALSE(r.ok) << b.message;
    EXPECT_NE(r.error.find(b.message), std::string::npos) << r.error;
  }
}

}  // namespace
TEST(ParseArgsTest, LogprobsLogitBiasAndIgnoreEos) {
  Options o;
  ASSERT_TRUE(Parse({"generate", "-m", "m", "-p", "x", "--n-probs", "5", "--json", "--logit-bias", "15043+1",
                     "--logit-bias", "2-inf", "--logit-bias", "7=-0.5", "--logit-bias", "9-2", "--ignore-eos"},
                    &o)
                  .ok);
  EXPECT_EQ(o.n_probs, 5u);
  EXPECT_TRUE(o.ignore_eos);
  ASSERT_EQ(o.logit_bias.size(), 4u);
  EXPECT_EQ(o.logit_bias[0], (std::pair<int32_t, float>{15043, 1.0f}));
  EXPECT_EQ(o.logit_bias[1].first, 2);
  EXPECT_TRUE(std::isinf(o.logit_bias[1].second) && o.logit_bias[1].second < 0);
  EXPECT_EQ(o.logit_bias[2], (std::pair<int32_t, float>{7, -0.5f}));
  EXPECT_EQ(o.logit_bias[3], (std::pair<int32_t, float>{9, -2.0f}));
  o = Options();
  ASSERT_TRUE(Parse({"chat", "-m", "m", "--logit-bias", "3+2", "--ignore-eos"}, &o).ok);
  EXPECT_EQ(o.logit_bias.size(), 1u);
  for (const char* bad : {"12", "x+1", "-3+1", "3+", "3+inf", "3--1", "3+nan", "3+1x"}) {
    Options b;
    ParseResult r = Parse({"generate", "-m", "m", "-p", "x", "--logit-bias", bad}, &b);
    EXPECT_FALSE(r.ok) << bad;
    EXPECT_NE(r.error.find("TOKEN_ID+BIAS"), std::string::npos) << r.error;
  }
  Options b;
  ParseResult r = Parse({"generate", "-m", "m", "-p", "x", "--n-probs", "3"}, &b);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("needs --json"), std::string::npos) << r.error;
  EXPECT_FALSE(Parse({"generate", "-m", "m", "-p", "x", "--n-probs", "101", "--json"}, &b).ok);
  EXPECT_FALSE(Parse({"chat", "-m", "m", "--n-probs", "3"}, &b).ok);  // generate only
  EXPECT_FALSE(Parse({"bench", "-m", "m", "--ignore-eos"}, &b).ok);
}

TEST(ParseArgsTest, ConstrainedOutputFlags) {
  Options o;
  ASSERT_TRUE(Parse({"generate", "-m", "m", "-p", "x", "--grammar", "g.gbnf"}, &o).ok);
  EXPECT_EQ(o.grammar_file.value_or(""), "g.gbnf");
  o = Options();
  ASSERT_TRUE(Parse({"generate", "-m", "m", "-p", "x", "--json-schema=s.json"}, &o).ok);
  EXPECT_EQ(o.json_schema_file.value_or(""), "s.json");
  o = Options();
  ASSERT_TRUE(Parse({"generate", "-m", "m", "-p", "x", "--json-object", "--json"}, &o).ok);
  EXPECT_TRUE(o.json_object && o.json);
  Options b;
  ParseResult r = Parse({"generate", "-m", "m", "-p", "x", "--grammar", "g", "--json-schema", "s"}, &b);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("exclude each other"), std::string::npos) << r.error;
  EXPECT_FALSE(Parse({"chat", "-m", "m", "--grammar", "g"}, &b).ok);  // generate only
  EXPECT_FALSE(Parse({"generate", "-m", "m", "-p", "x", "--grammar", ""}, &b).ok);
}

}  // namespace kestrel::cli
