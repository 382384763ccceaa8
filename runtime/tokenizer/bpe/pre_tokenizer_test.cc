#include "runtime/tokenizer/bpe/pre_tokenizer.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kestrel::runtime {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<std::string> Words(absl::string_view pre, absl::string_view text) {
  auto p = PreTokenizer::Create(pre);
  EXPECT_TRUE(p.ok()) << p.status();
  std::vector<absl::string_view> words;
  (*p)->Split(text, &words);
  return std::vector<std::string>(words.begin(), words.end());
}

TEST(PreTokenizerTest, Gpt2) {
  EXPECT_THAT(Words("gpt-2", "Hello world's 123  foo\n"),
              ElementsAre("Hello", " world", "'s", " 123", " ", " foo", "\n"));
  // Unicode letters and numbers (PCRE2 UCP): Greek letters group, Arabic-Indic digits are \p{N}.
  EXPECT_THAT(Words("gpt-2", "καλη ١٢"), ElementsAre("καλη", " ١٢"));
  // U+0085 is whitespace for llama.cpp (and here), U+00A0 too.
  EXPECT_THAT(Words("gpt-2", "a\xC2\x85\xC2\xA0" "b"), ElementsAre("a", "\xC2\x85", "\xC2\xA0", "b"));
}

TEST(PreTokenizerTest, SmollmSplitsEveryDigit) {
  EXPECT_THAT(Words("smollm", "abc 2024!"), ElementsAre("abc", " ", "2", "0", "2", "4", "!"));
}

TEST(PreTokenizerTest, Llama3GroupsDigitsByThreeAndKeepsNewlines) {
  EXPECT_THAT(Words("llama-bpe", "1234567 I'M ok\n\n  x"),
              ElementsAre("123", "456", "7", " I", "'M", " ok", "\n\n", " ", " x"));
  auto p = PreTokenizer::Create("llama-bpe");
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE((*p)->ignore_merges());
  EXPECT_TRUE((*p)->add_bos_default());
}

TEST(PreTokenizerTest, Qwen2SplitsEveryDigit) {
  EXPECT_THAT(Words("qwen2", "x=12;"), ElementsAre("x", "=", "1", "2", ";"));
  EXPECT_THAT(Words("deepseek-r1-qwen", "x=12;"), ElementsAre("x", "=", "1", "2", ";"));
}

TEST(PreTokenizerTest, InvalidUtf8StaysInWordsOfItsOwn) {
  EXPECT_THAT(Words("gpt-2", "ab\xFF\xFE" "cd"), ElementsAre("ab", "\xFF\xFE", "cd"));
}

TEST(PreTokenizerTest, EveryByteIsCovered) {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  all += "  tail  ";
  for (const std::string& name : PreTokenizer::KnownNames()) {
    std::string joined;
    for (const std::string& w : Words(name, all)) {
      EXPECT_FALSE(w.empty()) << name;
      joined += w;
    }
    EXPECT_EQ(joined, all) << name;
  }
}

TEST(PreTokenizerTest, UnknownNameIsRefusedNamingTheKey) {
  auto p = PreTokenizer::Create("no-such-pre");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(p.status().message()), HasSubstr("tokenizer.ggml.pre 'no-such-pre'"));
}

}  // namespace
}  // namespace kestrel::runtime
