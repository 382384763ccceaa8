#include "runtime/grammar/token_mask.h"

#include <cmath>
#include <cstdio>
#include <random>
#include <string>

#include <gtest/gtest.h>

#include "runtime/grammar/constraint.h"
#include "runtime/grammar/gbnf_parser.h"
#include "runtime/grammar/json_schema.h"

namespace kestrel::runtime::grammar {
namespace {

std::vector<int32_t> Allowed(const TokenVocab& v, const Matcher& m, MaskCache* cache) {
  std::vector<uint8_t> mask;
  v.Mask(m, cache, &mask);
  std::vector<int32_t> ids;
  for (size_t i = 0; i < mask.size(); ++i) {
    if (mask[i]) ids.push_back(static_cast<int32_t>(i));
  }
  return ids;
}

// The mask equals walking every token on its own (the trie only shares the work).
TEST(TokenMask, TrieAgreesWithTokenByToken) {
  std::vector<std::string> texts = {"", "{", "}", "{\"", "\"", "a", "ab", "abc", "\":", " ", "\n",
                                    "1", "12", "-", "true", "tr", "\xc3", "\xa9", "\xc3\xa9",
                                    "\xe2\x82", "null}", "\"}", ",", "x\"", "EOS"};
  auto vocab = TokenVocab::Build(texts, {24});
  absl::StatusOr<std::string> gbnf = JsonSchemaToGbnf(
      R"({"type":"object","properties":{"ab":{"type":"string"},"n":{"type":"integer"}},"required":["ab"]})");
  ASSERT_TRUE(gbnf.ok()) << gbnf.status();
  absl::StatusOr<Grammar> g = ParseGbnf(*gbnf);
  ASSERT_TRUE(g.ok()) << g.status();
  // Walk a fixed output, checking the mask against per-token Allows at every step.
  const std::vector<int32_t> path = {3, 6, 8, 9, 4, 5, 16, 17, 18, 4, 2};
  Matcher m(&*g);
  MaskCache cache;  // kept across steps, as a sequence keeps it
  for (size_t step = 0; step <= path.size(); ++step) {
    std::vector<int32_t> expect;
    for (int32_t id = 0; id < vocab->size(); ++id) {
      if (id == 24 ? m.accepting() : (!texts[id].empty() && m.Allows(texts[id]))) expect.push_back(id);
    }
    EXPECT_EQ(Allowed(*vocab, m, &cache), expect) << "step " << step;
    if (step < path.size()) {
      ASSERT_TRUE(m.AcceptBytes(texts[path[step]])) << "step " << step;
    }
  }
  EXPECT_TRUE(m.accepting());
  EXPECT_EQ(Allowed(*vocab, m, &cache), std::vector<int32_t>{24});  // only end of generation is left
}

// Random vocabularies (ASCII, multi-byte and split characters) over a JSON grammar: at every
// step of a random allowed walk the trie's mask equals token-by-token checking.
TEST(TokenMask, RandomVocabulariesAgreeWithTokenByToken) {
  const uint32_t seed = std::random_device{}();
  std::printf("seed %u\n", seed);
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  const std::vector<std::string> atoms = {"{", "}", "[", "]", "\"", ":", ",", " ", "\n", "a", "b", "1",
                                          "-", "0", "t", "rue", "null", "\xc3", "\xa9", "\xc3\xa9",
                                          "\xe2\x82\xac", "\xe2", "\x82\xac", "\\", "n", "e"};
  absl::StatusOr<Grammar> g = ParseGbnf(JsonObjectGbnf());
  ASSERT_TRUE(g.ok()) << g.status();
  for (int round = 0; round < 20; ++round) {
    std::vector<std::string> texts = {"EOS"};
    for (int i = 0; i < 60; ++i) {
      std::string t;
      for (int k = 1 + static_cast<int>(rng() % 3); k > 0; --k) t += atoms[rng() % atoms.size()];
      texts.push_back(t);
    }
    auto vocab = TokenVocab::Build(texts, {0});
    Matcher m(&*g);
    MaskCache cache;
    for (int step = 0; step < 30; ++step) {
      std::vector<int32_t> expect;
      for (int32_t id = 0; id < vocab->size(); ++id) {
        if (id == 0 ? m.accepting() : m.Allows(texts[id])) expect.push_back(id);
      }
      ASSERT_EQ(Allowed(*vocab, m, &cache), expect) << "round " << round << " step " << step;
      std::vector<int32_t> go;
      for (int32_t id : expect) {
        if (id != 0) go.push_back(id);
      }
      if (go.empty()) break;
      ASSERT_TRUE(m.AcceptBytes(texts[go[rng() % go.size()]]));
    }
  }
}

TEST(TokenMask, ConstraintMasksLogitsAndRefusesBadTokens) {
  auto vocab = TokenVocab::Build({"a", "b", "ab", "", "END"}, {4});
  absl::StatusOr<Grammar> g = ParseGbnf("root ::= \"a\" \"b\"?\n");
  ASSERT_TRUE(g.ok());
  GrammarConstraint c(std::make_shared<Grammar>(*g), vocab);
  std::vector<float> logits(6, 1.0f);  // one id past the vocabulary
  ASSERT_TRUE(c.Apply(absl::MakeSpan(logits)).ok());
  EXPECT_EQ(logits[0], 1.0f);
  EXPECT_EQ(logits[2], 1.0f);
  for (int i : {1, 3, 4, 5}) EXPECT_TRUE(std::isinf(logits[i]) && logits[i] < 0) << i;
  EXPECT_FALSE(c.Accept(1).ok());
  EXPECT_FALSE(c.Accept(4).ok());  // end before the output is complete
  ASSERT_TRUE(c.Accept(0).ok());
  EXPECT_TRUE(c.accepting());
  logits.assign(6, 0.0f);
  ASSERT_TRUE(c.Apply(absl::MakeSpan(logits)).ok());
  EXPECT_EQ(logits[1], 0.0f);  // "b"
  EXPECT_EQ(logits[4], 0.0f);  // END
  EXPECT_TRUE(std::isinf(logits[0]));
  ASSERT_TRUE(c.Accept(1).ok());
  logits.assign(6, 0.0f);
  ASSERT_TRUE(c.Apply(absl::MakeSpan(logits)).ok());
  for (int i : {0, 1, 2, 3, 5}) EXPECT_TRUE(std::isinf(logits[i])) << i;
}

TEST(TokenMask, NothingAllowedIsAnError) {
  auto vocab = TokenVocab::Build({"a", "b"}, {});
  absl::StatusOr<Grammar> g = ParseGbnf("root ::= \"z\"\n");
  ASSERT_TRUE(g.ok());
  GrammarConstraint c(std::make_shared<Grammar>(*g), vocab);
  std::vector<float> logits(2, 0.0f);
  absl::Status s = c.Apply(absl::MakeSpan(logits));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("no token of the vocabulary"), absl::string_view::npos);
}

}  // namespace
}  // namespace kestrel::runtime::grammar
