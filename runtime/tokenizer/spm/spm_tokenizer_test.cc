#include "runtime/tokenizer/spm/spm_tokenizer.h"

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kestrel::runtime {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

const std::string kS = "\xE2\x96\x81";  // U+2581, the SPM space marker

// A Llama-shaped vocab: 0 <unk>, 1 <s>, 2 </s>, then (optionally) the 256 byte tokens, then whatever
// a test adds.
class VocabBuilder {
 public:
  explicit VocabBuilder(bool with_bytes = true) {
    Add("<unk>", 0, SpmTokenType::kUnknown);
    Add("<s>", 0, SpmTokenType::kControl);
    Add("</s>", 0, SpmTokenType::kControl);
    if (with_bytes) {
      for (int b = 0; b < 256; ++b) Add(absl::StrFormat("<0x%02X>", b), 0, SpmTokenType::kByte);
    }
  }
  int32_t Add(std::string text, float score, SpmTokenType type = SpmTokenType::kNormal) {
    vocab.tokens.push_back(std::move(text));
    vocab.scores.push_back(score);
    vocab.token_types.push_back(static_cast<int32_t>(type));
    return static_cast<int32_t>(vocab.tokens.size()) - 1;
  }
  std::unique_ptr<SpmTokenizer> Build() const {
    auto t = SpmTokenizer::Create(vocab);
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? std::move(*t) : nullptr;
  }
  SpmVocab vocab;
};

int32_t Byte(int b) { return 3 + b; }  // id of <0xXX> in a VocabBuilder(true) vocab

TEST(SpmTokenizerTest, MergesHighestScoringPairFirst) {
  for (const bool ab_wins : {true, false}) {
    VocabBuilder vb;
    vb.vocab.add_space_prefix = false;
    const int32_t a = vb.Add("a", -1), b = vb.Add("b", -1), c = vb.Add("c", -1);
    const int32_t ab = vb.Add("ab", ab_wins ? -2 : -5);
    const int32_t bc = vb.Add("bc", ab_wins ? -5 : -2);
    auto t = vb.Build();
    ASSERT_NE(t, nullptr);
    (void)b;
    if (ab_wins) {
      EXPECT_THAT(t->Encode("abc", false), ElementsAre(ab, c));
    } else {
      EXPECT_THAT(t->Encode("abc", false), ElementsAre(a, bc));
    }
  }
}

TEST(SpmTokenizerTest, MergesRepeatUntilNoPairIsAToken) {
  VocabBuilder vb;
  vb.Add(kS, -1);
  for (const char* ch : {"h", "e", "l", "o"}) vb.Add(ch, -1);
  vb.Add("he", -3);
  vb.Add("ll", -1);
  vb.Add("llo", -2);
  const int32_t s_he = vb.Add(kS + "he", -4);
  vb.Add("hello", -5);
  const int32_t s_hello = vb.Add(kS + "hello", -6);
  auto t = vb.Build();
  ASSERT_NE(t, nullptr);
  // ll, then llo, then he, then ▁he (beats hello), then ▁hello.
  EXPECT_THAT(t->Encode("hello", false), ElementsAre(s_hello));
  EXPECT_THAT(t->Encode("he", false), ElementsAre(s_he));
}

TEST(SpmTokenizerTest, EqualScoresMergeLeftmostFirst) {
  VocabBuilder vb;
  vb.vocab.add_space_prefix = false;
  const int32_t a = vb.Add("a", -1);
  const int32_t aa = vb.Add("aa", -1);
  auto t = vb.Build();
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(t->Encode("aaa", false), ElementsAre(aa, a));
  EXPECT_THAT(t->Encode("aaaa", false), ElementsAre(aa, aa));
  EXPECT_THAT(t->Encode("aaaaa", false), ElementsAre(aa, aa, a));
}

TEST(SpmTokenizerTest, LongInputIsCorrect) {
  VocabBuilder vb;
  vb.vocab.add_space_prefix = false;
  const int32_t a = vb.Add("a", -1);
  const int32_t aa = vb.Add("aa", -1);
  auto t = vb.Build();
  ASSERT_NE(t, nullptr);
  const std::vector<int32_t> ids = t->Encode(std::string(200001, 'a'), false);
  ASSERT_EQ(ids.size(), 100001u);
  for (size_t i = 0; i + 1 < ids.size(); ++i) ASSERT_EQ(ids[i], aa) << i;
  EXPECT_EQ(ids.back(), a);
}

TEST(SpmTokenizerTest, NonVocabCharactersFallBackToByteTokens) {
  VocabBuilder vb;
  const int32_t sp = vb.Add(kS, -1);
  auto t = vb.Build();
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(t->missing_byte_tokens(), IsEmpty());
  // U+1F642 is F0 9F 99 82.
  EXPECT_THAT(t->Encode("\xF0\x9F\x99\x82", false), ElementsAre(sp, Byte(0xF0), Byte(0x9F), Byte(0x99), Byte(0x82)));
  EXPECT_THAT(t->Encode("\n", false), ElementsAre(sp, Byte(0x0A)));
  EXPECT_THAT(t->Encode(std::string("\0", 1), false), ElementsAre(sp, Byte(0x00)));
}

TEST(SpmTokenizerTest, WithoutByteTokensFallsBackToSingleByteTokenThenUnk) {
  VocabBuilder vb(/*with_bytes=*/false);
  const int32_t sp = vb.Add(kS, -1);
  const int32_t c3 = vb.Add("\xC3", -1);  // a token whose text is one byte
  auto t = vb.Build();
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->missing_byte_tokens().size(), 256u);
  // "é" is C3 A9: C3 has a single-byte token, A9 goes to unk.
  EXPECT_THAT(t->Encode("\xC3\xA9", false), ElementsAre(sp, c3, 0));
}

TEST(SpmTokenizerTest, InvalidUtf8IsSplitByLeadByteLikeLlamaCpp) {
  VocabBuilder vb;
  const int32_t sp = vb.Add(kS, -1);
  const int32_t paren = vb.Add("(", -1);
  const int32_t sp_paren = vb.Add(kS + "(", -1);
  auto t = vb.Build();
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(t->Encode("(", false), ElementsAre(sp_paren));
  // The lead byte C3 swallows the '(' after it, so "▁(" cannot form.
  EXPECT_THAT(t->Encode("\xC3(", false), ElementsAre(sp, Byte(0xC3), Byte('(')));
  // A stray continuation byte stands alone.
  EXPECT_THAT(t->Encode("\x80(", false), ElementsAre(sp, Byte(0x80), paren));
  // A sequence cut off by the end of the text is kept as what is left.
  EXPECT_THAT(t->Encode("(\xE2", false), ElementsAre(sp_paren, Byte(0xE2)));
  EXPECT_THAT(t->Encode("(\xF0\x9F", false), ElementsAre(sp_paren, Byte(0xF0), Byte(0x9F)));
}

TEST(SpmTokenizerTest, EmptyTextGivesOnlySpecialTokens) {
  VocabBuilder vb;
  auto t = vb.Build();
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(t->Encode("", true), ElementsAre(1));
  EXPECT_THAT(t->Encode("", false), IsEmpty());

  vb.vocab.add_eos = true;
  t = vb.Build();
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(t->Encode("", true), ElementsAre(1, 2));
}

TEST(SpmTokenizerTest, BosAndEosFollowVocabFlags) {
  VocabBuilder vb;
  const int32_t sa = vb.Add(kS + "a", -1);
  auto t = vb.Build();
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(t->Encode("a", true), ElementsAre(1, sa));
  EXPECT_THAT(t->Encode("a", false), ElementsAre(sa));

  vb.vocab.add_bos = false;
  vb.vocab.add_eos = true;
  t = vb.Build();
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(t->Encode("a", true), ElementsAre(sa, 2));
  EXPECT_THAT(t->Encode("a", false), ElementsAre(sa));
}

class SpacesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sp_ = vb_.Add(kS, -1);
    vb_.Add(kS + kS, -2);
    a_ = vb_.Add("a", -3);
    sa_ = vb_.Add(kS + "a", -0.5);
    b_ = vb_.Add("b", -3);
    sb_ = vb_.Add(kS + "b", -0.5);
    t_ = vb_.Build();
    ASSERT_NE(t_, nullptr);
  }
  VocabBuilder vb_;
  std::unique_ptr<SpmTokenizer> t_;
  int32_t sp_ = -1, a_ = -1, sa_ = -1, b_ = -1, sb_ = -1;
};

TEST_F(SpacesTest, LeadingTrailingAndRepeatedSpaces) {
  EXPECT_THAT(t_->Encode("a", false), ElementsAre(sa_));
  EXPECT_THAT(t_->Encode(" a", false), ElementsAre(sp_, sa_));
  EXPECT_THAT(t_->Encode("a ", false), ElementsAre(sa_, sp_));
  // ▁a▁▁b: ▁a and ▁b (tied, leftmost first) beat ▁▁, whose right side is then gone.
  EXPECT_THAT(t_->Encode("a  b", false), ElementsAre(sa_, sp_, sb_));
  EXPECT_THAT(t_->Encode("a\nb", false), ElementsAre(sa_, Byte('\n'), b_));
  EXPECT_THAT(t_->Encode("   ", false), ElementsAre(t_->TextToToken(kS + kS), t_->TextToToken(kS + kS)));
}

TEST_F(SpacesTest, NoSpacePrefix) {
  vb_.vocab.add_space_prefix = false;
  auto t = vb_.Build();
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(t->Encode("a", false), ElementsAre(a_));
  EXPECT_THAT(t->Encode("a b", false), ElementsAre(a_, sb_));
  EXPECT_EQ(t->Decode(t->Encode(" a", true), true), " a");
}

TEST_F(SpacesTest, DecodeRoundTrips) {
  for (const std::string s : {"a", " a", "a ", "a  b", "  a b  ", "a\nb", "\xF0\x9F\x99\x82 a", "\xC3("}) {
    EXPECT_EQ(t_->Decode(t_->Encode(s, true), true), s) << s;
    EXPECT_EQ(t_->Decode(t_->Encode(s, false), true), s) << s;
    EXPECT_EQ(t_->Decode(t_->Encode(s, true), false), " " + s) << s;
  }
}

TEST_F(SpacesTest, DecodeSkipsControlTokensAndStripsOnlyOnce) {
  EXPECT_EQ(t_->Decode({1, sa_, 2, sb_, 0}, true), "a b");
  EXPECT_EQ(t_->Decode({1, sa_, 2, sb_, 0}, false), " a b");
  EXPECT_EQ(t_->Decode({sp_, sa_}, true), " a");
  EXPECT_EQ(t_->Decode({a_, sb_}, true), "a b");
  EXPECT_EQ(t_->Decode({}, true), "");
  EXPECT_EQ(t_->Decode({-1, 100000}, true), "");
}

TEST(SpmTokenizerTest, UserDefinedTokensAreCutOutEvenWithoutParseSpecial) {
  VocabBuilder vb;
  const int32_t sa = vb.Add(kS + "a", -1);
  const int32_t sb = vb.Add(kS + "b", -1);
  const int32_t tag = vb.Add("<t>", 0, SpmTokenType::kUserDefined);
  const int32_t tagx = vb.Add("<t>x", 0, SpmTokenType::kUserDefined);
  auto t = vb.Build();
  ASSERT_NE(t, nullptr);
  // The text after a user-defined token gets the space prefix again, as in llama.cpp.
  EXPECT_THAT(t->Encode("a<t>b", true), ElementsAre(1, sa, tag, sb));
  EXPECT_THAT(t->Encode("<t><t>", false), ElementsAre(tag, tag));
  EXPECT_THAT(t->Encode("<t>xb<t>", false), ElementsAre(tagx, sb, tag));
}

TEST(SpmTokenizerTest, ControlTextIsNotParsed) {
  VocabBuilder vb;
  auto t = vb.Build();
  ASSERT_NE(t, nullptr);
  // No "▁" token in this vocab: the prefix space goes out as its three bytes.
  EXPECT_THAT(t->Encode("<s>", false),
              ElementsAre(Byte(0xE2), Byte(0x96), Byte(0x81), Byte('<'), Byte('s'), Byte('>')));
}

TEST(SpmTokenizerTest, TokenToPiece) {
  VocabBuilder vb;
  const int32_t sa = vb.Add(kS + "a" + kS + "b", -1);
  const int32_t user = vb.Add(kS + "u", 0, SpmTokenType::kUserDefined);
  const int32_t unused = vb.Add("unused", 0, SpmTokenType::kUnused);
  const int32_t undefined = vb.Add("undef", 0, SpmTokenType::kUndefined);
  auto t = vb.Build();
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->TokenToPiece(sa), " a b");
  EXPECT_EQ(t->TokenToPiece(user), kS + "u");  // user-defined text is not unescaped
  EXPECT_EQ(t->TokenToPiece(Byte(0xAB)), "\xAB");
  EXPECT_EQ(t->TokenToPiece(Byte(0x00)), std::string("\0", 1));
  EXPECT_EQ(t->TokenToPiece(0), "");  // UNKNOWN
  EXPECT_EQ(t->TokenToPiece(1), "");  // CONTROL
  EXPECT_EQ(t->TokenToPiece(2), "");
  EXPECT_EQ(t->TokenToPiece(unused), "");
  EXPECT_EQ(t->TokenToPiece(undefined), "");
  EXPECT_EQ(t->TokenToPiece(-1), "");
  EXPECT_EQ(t->TokenToPiece(t->vocab_size()), "");
}

TEST(SpmTokenizerTest, Accessors) {
  VocabBuilder vb;
  vb.vocab.eot_id = vb.Add("<eot>", 0, SpmTokenType::kControl);
  const int32_t x = vb.Add("x", -7.5f);
  auto t = vb.Build();
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->vocab_size(), 3 + 256 + 2);
  EXPECT_EQ(t->bos_id(), 1);
  EXPECT_EQ(t->eos_id(), 2);
  EXPECT_EQ(t->unk_id(), 0);
  EXPECT_EQ(t->pad_id(), -1);
  EXPECT_TRUE(t->add_bos());
  EXPECT_FALSE(t->add_eos());
  EXPECT_TRUE(t->add_space_prefix());
  EXPECT_TRUE(t->IsEndOfGeneration(2));
  EXPECT_TRUE(t->IsEndOfGeneration(t->eot_id()));
  EXPECT_FALSE(t->IsEndOfGeneration(1));
  EXPECT_FALSE(t->IsEndOfGeneration(-1));
  EXPECT_EQ(t->TokenType(x), static_cast<int32_t>(SpmTokenType::kNormal));
  EXPECT_EQ(t->TokenType(Byte(7)), static_cast<int32_t>(SpmTokenType::kByte));
  EXPECT_EQ(t->TokenType(-1), -1);
  EXPECT_EQ(t->TokenText(x), "x");
  EXPECT_EQ(t->TokenText(99999), "");
  EXPECT_EQ(t->TokenScore(x), -7.5f);
  EXPECT_EQ(t->TextToToken("x"), x);
  EXPECT_EQ(t->TextToToken("nope"), -1);
}

TEST(SpmTokenizerTest, DefaultsForEmptyScoresAndTypes) {
  SpmVocab v;
  v.tokens = {"<unk>", "<s>", "</s>", "a", kS + "a"};
  auto t = SpmTokenizer::Create(v);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->TokenType(1), static_cast<int32_t>(SpmTokenType::kNormal));
  EXPECT_EQ((*t)->TokenScore(3), 0.0f);
  EXPECT_THAT((*t)->Encode("a", true), ElementsAre(1, 4));
}

TEST(SpmTokenizerTest, DuplicateTextMapsToLastIdAndEmptyTextIsRenamed) {
  VocabBuilder vb;
  vb.Add("x", -1);
  const int32_t x2 = vb.Add("x", -1);
  const int32_t empty = vb.Add("", -1);
  auto t = vb.Build();
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->TextToToken("x"), x2);
  EXPECT_EQ(t->TokenText(empty), absl::StrFormat("[EMPTY_%d]", empty));
}

absl::Status CreateStatus(const SpmVocab& v) { return SpmTokenizer::Create(v).status(); }

void ExpectInvalid(const SpmVocab& v, const std::string& substr) {
  const absl::Status s = CreateStatus(v);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(substr));
}

TEST(SpmTokenizerCreateTest, RejectsBadVocabs) {
  ExpectInvalid(SpmVocab{}, "tokens is empty");

  VocabBuilder good;
  good.Add("a", -1);
  ASSERT_TRUE(CreateStatus(good.vocab).ok());

  SpmVocab v = good.vocab;
  v.scores.pop_back();
  ExpectInvalid(v, "SpmVocab.scores has 259 entries but tokens has 260");

  v = good.vocab;
  v.token_types.push_back(1);
  ExpectInvalid(v, "SpmVocab.token_types has 261 entries");

  v = good.vocab;
  v.token_types[5] = 7;
  ExpectInvalid(v, "SpmVocab.token_types[5] = 7");

  v = good.vocab;
  v.scores[9] = std::numeric_limits<float>::quiet_NaN();
  ExpectInvalid(v, "SpmVocab.scores[9] is NaN");

  v = good.vocab;
  v.tokens[3 + 0x41] = "<0xZZ>";
  ExpectInvalid(v, "SpmVocab.tokens[68] = \"<0xZZ>\" has type BYTE");

  v = good.vocab;
  v.bos_id = 260;
  ExpectInvalid(v, "SpmVocab.bos_id = 260 is neither -1 nor an id in [0, 260)");
  v = good.vocab;
  v.eos_id = -2;
  ExpectInvalid(v, "SpmVocab.eos_id = -2");
  v = good.vocab;
  v.pad_id = 1000;
  ExpectInvalid(v, "SpmVocab.pad_id = 1000");
  v = good.vocab;
  v.eot_id = 260;
  ExpectInvalid(v, "SpmVocab.eot_id = 260");

  v = good.vocab;
  v.bos_id = -1;
  ExpectInvalid(v, "add_bos is set but bos_id is -1");
  v.add_bos = false;
  EXPECT_TRUE(CreateStatus(v).ok());

  v = good.vocab;
  v.eos_id = -1;
  EXPECT_TRUE(CreateStatus(v).ok());
  v.add_eos = true;
  ExpectInvalid(v, "add_eos is set but eos_id is -1");
}

TEST(SpmTokenizerCreateTest, MissingByteTokensNeedUnk) {
  VocabBuilder vb;
  vb.vocab.tokens[3 + 0x10] = "sixteen";
  vb.vocab.token_types[3 + 0x10] = static_cast<int32_t>(SpmTokenType::kNormal);
  auto t = vb.Build();
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(t->missing_byte_tokens(), ElementsAre(0x10));
  EXPECT_THAT(t->Encode("\x10", false), ElementsAre(Byte(0xE2), Byte(0x96), Byte(0x81), 0));

  vb.vocab.unk_id = -1;
  const absl::Status s = CreateStatus(vb.vocab);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("<0x10>"));
}

}  // namespace
}  // namespace kestrel::runtime
