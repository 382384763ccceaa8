#include "runtime/tokenizer/special_tokens.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kestrel::runtime {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;

constexpr int32_t kN = static_cast<int32_t>(VocabTokenType::kNormal);
constexpr int32_t kC = static_cast<int32_t>(VocabTokenType::kControl);
constexpr int32_t kU = static_cast<int32_t>(VocabTokenType::kUserDefined);

// (token or -1, text) pairs, for readable expectations.
std::vector<std::pair<int32_t, std::string>> Split(const SpecialTokens& s, const std::string& text, bool parse) {
  std::vector<TextFragment> f;
  s.Split(text, parse, &f);
  std::vector<std::pair<int32_t, std::string>> out;
  for (const auto& x : f) out.emplace_back(x.token, std::string(x.text));
  return out;
}

TEST(SpecialTokensTest, ControlTokensNeedParseSpecialUserDefinedDoNot) {
  std::vector<std::string> tokens = {"a", "<c>", "<u>"};
  std::vector<int32_t> types = {kN, kC, kU};
  SpecialIds ids;
  SpecialTokens s = SpecialTokens::Build(tokens, types, &ids);
  EXPECT_THAT(Split(s, "x<c>y<u>z", false), ElementsAre(Pair(-1, "x<c>y"), Pair(2, "<u>"), Pair(-1, "z")));
  EXPECT_THAT(Split(s, "x<c>y<u>z", true),
              ElementsAre(Pair(-1, "x"), Pair(1, "<c>"), Pair(-1, "y"), Pair(2, "<u>"), Pair(-1, "z")));
  EXPECT_THAT(Split(s, "<c><c>", true), ElementsAre(Pair(1, "<c>"), Pair(1, "<c>")));
  EXPECT_THAT(Split(s, "", true), ElementsAre());
}

TEST(SpecialTokensTest, LongerTokensAreCutFirstLikeLlamaCpp) {
  // llama.cpp cuts "bcd" everywhere before it looks for "ab": "abcd" -> a, <bcd>.
  std::vector<std::string> tokens = {"ab", "bcd"};
  std::vector<int32_t> types = {kC, kC};
  SpecialIds ids;
  SpecialTokens s = SpecialTokens::Build(tokens, types, &ids);
  EXPECT_THAT(Split(s, "abcd", true), ElementsAre(Pair(-1, "a"), Pair(1, "bcd")));
  EXPECT_THAT(Split(s, "abab", true), ElementsAre(Pair(0, "ab"), Pair(0, "ab")));
  // Occurrences of one token do not overlap: "aaa" with "aa" -> <aa>, a.
  std::vector<std::string> t2 = {"aa"};
  std::vector<int32_t> y2 = {kC};
  SpecialTokens s2 = SpecialTokens::Build(t2, y2, &ids);
  EXPECT_THAT(Split(s2, "aaa", true), ElementsAre(Pair(0, "aa"), Pair(-1, "a")));
}

TEST(SpecialTokensTest, EndOfTurnTextsBecomeControlAndEndGeneration) {
  std::vector<std::string> tokens = {"<|endoftext|>", "hi", "<|im_end|>", "<end_of_turn>"};
  std::vector<int32_t> types = {kC, kN, kN, kN};
  SpecialIds ids;
  ids.eos_id = 0;
  SpecialTokens s = SpecialTokens::Build(tokens, types, &ids);
  EXPECT_EQ(types[2], kC);
  EXPECT_EQ(types[3], kC);
  EXPECT_EQ(types[1], kN);
  EXPECT_TRUE(s.IsEndOfGeneration(0));
  EXPECT_FALSE(s.IsEndOfGeneration(1));
  EXPECT_TRUE(s.IsEndOfGeneration(2));
  EXPECT_TRUE(s.IsEndOfGeneration(3));
  EXPECT_THAT(s.end_of_generation_ids(), ElementsAre(0, 2, 3));
  EXPECT_EQ(ids.eot_id, 0);  // the first end-of-turn text, by id
}

TEST(SpecialTokensTest, Phi3DropsWhitespaceAfterSpecialTokens) {
  std::vector<std::string> tokens = {"<|user|>", "<s>", "x"};
  std::vector<int32_t> types = {kC, kC, kN};
  SpecialIds ids;
  ids.phi3_rstrip = true;
  SpecialTokens s = SpecialTokens::Build(tokens, types, &ids);
  EXPECT_THAT(Split(s, "<|user|>\n Hi", true), ElementsAre(Pair(0, "<|user|>"), Pair(-1, "Hi")));
  EXPECT_THAT(Split(s, "<s> Hi", true), ElementsAre(Pair(1, "<s>"), Pair(-1, " Hi")));  // <s> keeps it
}

}  // namespace
}  // namespace kestrel::runtime
