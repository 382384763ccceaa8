#include "runtime/tokenizer/bpe/bpe_tokenizer.h"

#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/tokenizer/bpe/byte_level.h"

namespace kestrel::runtime {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr int32_t kControl = static_cast<int32_t>(VocabTokenType::kControl);

// Byte-level spelling of `s` (what vocab texts and merges are written in).
std::string B(absl::string_view s) {
  std::string out;
  ByteLevelEncode(s, &out);
  return out;
}

// A vocab of the 256 byte symbols (ids 0..255, byte order), then merged tokens, then specials.
BpeVocab SmallVocab() {
  BpeVocab v;
  for (int b = 0; b < 256; ++b) v.tokens.push_back(std::string(ByteLevelChar(static_cast<uint8_t>(b))));
  for (const char* t : {"he", "ll", "hell", "hello", " w", " wo", "or", " wor", " world", "lo"}) v.tokens.push_back(B(t));
  v.tokens.push_back("<|im_start|>");
  v.tokens.push_back("<|im_end|>");
  v.token_types.assign(v.tokens.size(), 1);
  v.token_types[v.tokens.size() - 2] = kControl;
  v.token_types[v.tokens.size() - 1] = kControl;
  // Ranks: "l l" before "h e"; " w" + "o" before "o r".
  v.merges = {B("l") + " " + B("l"), B("h") + " " + B("e"), B("he") + " " + B("ll"), B("hell") + " " + B("o"),
              B(" ") + " " + B("w"), B(" w") + " " + B("o"), B("o") + " " + B("r"), B(" wo") + " " + B("r"),
              B(" wor") + " " + B("ld"), B("l") + " " + B("o")};
  v.pre = "gpt-2";
  v.eos_id = static_cast<int32_t>(v.tokens.size() - 1);
  return v;
}

std::unique_ptr<BpeTokenizer> Make(BpeVocab v) {
  auto t = BpeTokenizer::Create(std::move(v));
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? std::move(*t) : nullptr;
}

TEST(BpeTokenizerTest, MergesByRank) {
  auto t = Make(SmallVocab());
  const int32_t hello = t->TextToToken("hello"), wor = t->TextToToken(B(" wor"));
  EXPECT_THAT(t->Encode("hello", false, false), ElementsAre(hello));
  // " world": " w" -> " wo" -> " wor" (rank 7 beats "o r"), then "l" "d" stay apart: "ld" is no token,
  // so the merge " wor"+"ld" never applies.
  EXPECT_THAT(t->Encode(" world", false, false), ElementsAre(wor, t->TextToToken("l"), t->TextToToken("d")));
  // "lo" has the lowest-but-one rank after "ll": "llo" -> "ll" "o" (leftmost pair first).
  EXPECT_THAT(t->Encode("llo", false, false), ElementsAre(t->TextToToken("ll"), t->TextToToken("o")));
}

TEST(BpeTokenizerTest, RoundTripsUtf8) {
  auto t = Make(SmallVocab());
  std::mt19937 rng(42);
  for (int i = 0; i < 200; ++i) {
    std::string s;
    for (int k = rng() % 20; k > 0; --k) {
      uint32_t cp = rng() % 0x30000;
      if (cp >= 0xD800 && cp < 0xE000) cp = ' ';
      AppendUtf8(cp, &s);
    }
    EXPECT_EQ(t->Decode(t->Encode(s, false, false), false), s);
  }
}

TEST(BpeTokenizerTest, BadUtf8IsReadLikeLlamaCpp) {
  auto t = Make(SmallVocab());
  const std::string fffd = "\xEF\xBF\xBD";
  // A stray continuation byte, a truncated sequence, a lead byte 0xF8..0xFF: U+FFFD each.
  EXPECT_EQ(t->Decode(t->Encode("a\x80" "b", false, false), false), "a" + fffd + "b");
  EXPECT_EQ(t->Decode(t->Encode("a\xE2\x82", false, false), false), "a" + fffd + fffd);
  EXPECT_EQ(t->Decode(t->Encode("\xFF", false, false), false), fffd);
  // An overlong sequence is read as its code point: C0 80 is U+0000.
  EXPECT_EQ(t->Decode(t->Encode("x\xC0\x80", false, false), false), std::string("x\0", 2));
  std::string storage;
  EXPECT_EQ(CanonicalUtf8("plain \xC3\xA9", &storage), "plain \xC3\xA9");
  EXPECT_TRUE(storage.empty());  // nothing to rewrite: no copy
}

TEST(BpeTokenizerTest, SpecialTokensNeedParseSpecial) {
  auto t = Make(SmallVocab());
  const int32_t start = t->TextToToken("<|im_start|>"), end = t->TextToToken("<|im_end|>");
  std::vector<int32_t> ids = t->Encode("<|im_start|>hello<|im_end|>", false, true);
  EXPECT_THAT(ids, ElementsAre(start, t->TextToToken("hello"), end));
  std::vector<int32_t> plain = t->Encode("<|im_start|>", false, false);
  EXPECT_GT(plain.size(), 1u);
  EXPECT_EQ(t->Decode(plain, false), "<|im_start|>");
  // Control tokens print nothing in generated text, their text with special = true.
  EXPECT_EQ(t->PieceView(start), "");
  EXPECT_EQ(t->PieceView(start, true), "<|im_start|>");
  EXPECT_TRUE(t->IsEndOfGeneration(end));
  EXPECT_FALSE(t->IsEndOfGeneration(start));
}

TEST(BpeTokenizerTest, AddSpecialFollowsVocabAndPreTokenizerDefaults) {
  BpeVocab v = SmallVocab();
  v.bos_id = 0;
  auto t = Make(v);
  EXPECT_FALSE(t->add_bos());  // gpt-2: no BOS unless the GGUF says so
  v.pre = "llama-bpe";
  auto l3 = Make(v);
  EXPECT_TRUE(l3->add_bos());  // llama.cpp's Llama 3 default
  EXPECT_EQ(l3->Encode("hello", true, false).front(), 0);
  v.add_bos = false;
  EXPECT_FALSE(Make(v)->add_bos());
}

TEST(BpeTokenizerTest, IgnoreMergesTakesWholeTokens) {
  BpeVocab v = SmallVocab();
  v.pre = "llama-bpe";
  v.merges.clear();  // no merges at all: only whole-word lookups can produce "hello"
  v.bos_id = 0;
  auto t = Make(v);
  EXPECT_THAT(t->Encode("hello", false, false), ElementsAre(t->TextToToken("hello")));
}

TEST(BpeTokenizerTest, MalformedMergesAreRefusedNamingTheKey) {
  for (const std::string bad : {"nospace", "a ", " ", ""}) {
    BpeVocab v = SmallVocab();
    v.merges.push_back(bad);
    auto t = BpeTokenizer::Create(v);
    ASSERT_FALSE(t.ok()) << bad;
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(t.status().message()), HasSubstr("tokenizer.ggml.merges[10]"));
  }
}

TEST(BpeTokenizerTest, BadVocabIsRefusedNamingTheKey) {
  BpeVocab v = SmallVocab();
  v.pre = "unknown-pre";
  EXPECT_THAT(std::string(BpeTokenizer::Create(v).status().message()), HasSubstr("tokenizer.ggml.pre"));
  v = SmallVocab();
  v.token_types[3] = 9;
  EXPECT_THAT(std::string(BpeTokenizer::Create(v).status().message()), HasSubstr("tokenizer.ggml.token_type[3]"));
  v = SmallVocab();
  v.bos_id = 100000;
  EXPECT_THAT(std::string(BpeTokenizer::Create(v).status().message()), HasSubstr("tokenizer.ggml.bos_token_id"));
  v = SmallVocab();
  v.add_bos = true;
  EXPECT_THAT(std::string(BpeTokenizer::Create(v).status().message()), HasSubstr("add_bos_token"));
  v = SmallVocab();
  v.tokens.clear();
  EXPECT_FALSE(BpeTokenizer::Create(v).ok());
}

TEST(ByteLevelTest, MapsEveryByteAndBack) {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  std::string spelled;
  ByteLevelEncode(all, &spelled);
  EXPECT_EQ(ByteLevelDecode(spelled), all);
  EXPECT_EQ(ByteLevelChar(' '), "\xC4\xA0");  // U+0120 'Ġ'
  EXPECT_EQ(ByteLevelChar('\n'), "\xC4\x8A");  // U+010A 'Ċ'
  EXPECT_EQ(ByteLevelChar('a'), "a");
}

}  // namespace
}  // namespace kestrel::runtime
