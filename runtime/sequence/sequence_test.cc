// The stop rules every driver shares (Sequence::Emit) and the history/KV bookkeeping.
#include "runtime/sequence/sequence.h"

#include "runtime/grammar/gbnf_parser.h"

#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace kestrel::runtime {
namespace {

// Token i's piece is pieces[i]; token 2 ends generation.
class FakeTokenizer : public Tokenizer {
 public:
  explicit FakeTokenizer(std::vector<std::string> pieces) : pieces_(std::move(pieces)) {}
  absl::string_view kind() const override { return "fake"; }
  std::vector<int32_t> Encode(absl::string_view, bool, bool) const override { return {}; }
  using Tokenizer::PieceView;
  absl::string_view PieceView(int32_t id, bool) const override { return pieces_[id]; }
  std::string Decode(absl::Span<const int32_t>, bool) const override { return ""; }
  int32_t vocab_size() const override { return static_cast<int32_t>(pieces_.size()); }
  int32_t bos_id() const override { return 1; }
  int32_t eos_id() const override { return 2; }
  int32_t unk_id() const override { return 0; }
  int32_t pad_id() const override { return -1; }
  bool add_bos() const override { return true; }
  bool add_eos() const override { return false; }
  bool IsEndOfGeneration(int32_t id) const override { return id == 2; }
  const std::vector<int32_t>& EndOfGenerationIds() const override { return eog_; }
  int32_t TokenType(int32_t) const override { return 1; }
  const std::string& TokenText(int32_t id) const override { return pieces_[id]; }
  int32_t TextToToken(absl::string_view) const override { return -1; }

 private:
  std::vector<std::string> pieces_;
  std::vector<int32_t> eog_ = {2};
};

struct Out {
  std::vector<int32_t> tokens;
  std::string text;
  bool refuse_after = false;
  TokenSink Sink() {
    return [this](int32_t t, absl::string_view s) {
      tokens.push_back(t);
      text.append(s.data(), s.size());
      return !refuse_after;
    };
  }
};

class SequenceTest : public ::testing::Test {
 protected:
  FakeTokenizer tok_{{"<unk>", "<s>", "</s>", "a", "b", "S", "TOP", "\xC3", "\xA9"}};
  BlockPool pool_{8, 4};
  Sequence Make() { return Sequence(&pool_, &tok_, *Sampler::Create(SamplerConfig{})); }
};

TEST_F(SequenceTest, PendingFollowsTheTableAndTruncateCutsBoth) {
  Sequence s = Make();
  const int32_t prompt[] = {1, 3, 4, 3};
  s.AddTokens(prompt);
  EXPECT_EQ(s.n_pending(), 4u);
  ASSERT_TRUE(s.table().Append(3).ok());
  EXPECT_EQ(s.n_pending(), 1u);
  EXPECT_EQ(s.pending()[0], 3);
  s.Truncate(2);
  EXPECT_EQ(s.n_computed(), 2u);
  EXPECT_EQ(s.tokens().size(), 2u);
  s.DropPending();
  EXPECT_EQ(s.tokens().size(), 2u);
}

// A restored history replaces the old one, all computed; one the pool cannot hold leaves the
// sequence empty (and its blocks back in the pool).
TEST_F(SequenceTest, RestoreComputedReplacesTheHistoryOrEmptiesIt) {
  Sequence s = Make();
  const int32_t old[] = {1, 4, 4, 4, 4, 3};
  s.AddTokens(old);
  ASSERT_TRUE(s.table().Append(5).ok());
  const int32_t saved[] = {1, 3, 3};
  ASSERT_TRUE(s.RestoreComputed(saved).ok());
  EXPECT_EQ(s.tokens(), (std::vector<int32_t>{1, 3, 3}));
  EXPECT_EQ(s.n_computed(), 3u);
  EXPECT_EQ(s.n_pending(), 0u);
  EXPECT_EQ(s.table().n_held_blocks(), 1u);
  std::vector<int32_t> too_long(8 * 4 + 1, 3);  // one more than the pool's 8 blocks of 4
  EXPECT_FALSE(s.RestoreComputed(too_long).ok());
  EXPECT_EQ(s.tokens().size(), 0u);
  EXPECT_EQ(s.n_computed(), 0u);
  EXPECT_EQ(pool_.n_free(), 8u);
}

TEST_F(SequenceTest, EndOfGenerationFlushesHeldTextAndIsNotKept) {
  Sequence s = Make();
  s.Begin({10, {"STOP"}, 100}, 1);
  Out out;
  EXPECT_EQ(s.Emit(3, 0, out.Sink()), StopReason::kNone);
  EXPECT_EQ(s.Emit(5, 0, out.Sink()), StopReason::kNone);  // "S" may start "STOP": held
  EXPECT_EQ(out.text, "a");
  EXPECT_EQ(s.Emit(2, 0, out.Sink()), StopReason::kEos);
  EXPECT_EQ(out.text, "aS");
  EXPECT_EQ(out.tokens, (std::vector<int32_t>{3, 5, kNoToken}));
  EXPECT_EQ(s.n_generated(), 2u);
  EXPECT_EQ(s.tokens(), (std::vector<int32_t>{3, 5}));
}

TEST_F(SequenceTest, StopStringEndsAfterTheSinkSeesTheTextBeforeIt) {
  Sequence s = Make();
  s.Begin({10, {"STOP"}, 100}, 1);
  Out out;
  EXPECT_EQ(s.Emit(3, 0, out.Sink()), StopReason::kNone);
  EXPECT_EQ(s.Emit(5, 0, out.Sink()), StopReason::kNone);
  EXPECT_EQ(s.Emit(6, 0, out.Sink()), StopReason::kStopString);
  EXPECT_EQ(out.text, "a");
  EXPECT_EQ(out.tokens.back(), 6);
}

TEST_F(SequenceTest, BudgetAndFullContextFlushWithTheLastToken) {
  Sequence s = Make();
  s.Begin({2, {}, 100}, 1);
  EXPECT_EQ(s.BeforeSample(), StopReason::kNone);
  Out out;
  EXPECT_EQ(s.Emit(7, 0, out.Sink()), StopReason::kNone);  // half a UTF-8 character: held
  EXPECT_EQ(out.text, "");
  EXPECT_EQ(s.Emit(3, 0, out.Sink()), StopReason::kMaxTokens);
  EXPECT_EQ(out.text, "\xC3" "a");  // the last token flushes (invalid UTF-8 passes as bytes)
  EXPECT_EQ(s.BeforeSample(), StopReason::kMaxTokens);

  Sequence c = Make();
  c.Begin({10, {}, 5}, 1);
  Out o2;
  EXPECT_EQ(c.Emit(3, 4, o2.Sink()), StopReason::kNone);
  EXPECT_EQ(c.Emit(4, 5, o2.Sink()), StopReason::kContextFull);
}

TEST_F(SequenceTest, SinkRefusalStopsWithCallback) {
  Sequence s = Make();
  s.Begin({10, {}, 100}, 1);
  Out out;
  out.refuse_after = true;
  EXPECT_EQ(s.Emit(3, 0, out.Sink()), StopReason::kCallback);
  EXPECT_EQ(s.n_generated(), 1u);
}

TEST_F(SequenceTest, LogprobsGoFirstFromTheSampledRowOrAsGiven) {
  Sequence s = Make();
  std::vector<TokenLogprobs> got;
  Out out;
  s.Begin({10, {}, 100}, 1, {2, [&](const TokenLogprobs& lp) {
                               EXPECT_EQ(out.tokens.size(), got.size());  // before the token's text
                               got.push_back(lp);
                             }});
  // Row: token 4 the likeliest; greedy picks it and its log-softmax is reported.
  const std::vector<float> row = {0.0f, 0.0f, 0.0f, 1.0f, 3.0f, 0.0f, 0.0f, 0.0f, 0.0f};
  absl::StatusOr<int32_t> t = s.Sample(row);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(s.Emit(*t, 0, out.Sink()), StopReason::kNone);
  ASSERT_EQ(got.size(), 1u);
  double z = 0;
  for (float l : row) z += std::exp(static_cast<double>(l));
  EXPECT_EQ(got[0].chosen.token, *t);
  EXPECT_NEAR(got[0].chosen.logprob, row[static_cast<size_t>(*t)] - std::log(z), 1e-6);
  ASSERT_EQ(got[0].top.size(), 2u);
  EXPECT_EQ(got[0].top[1].token, 3);
  // Given log-probabilities (a speculative step's) pass through unchanged.
  TokenLogprobs given;
  given.chosen = {3, -0.25f};
  EXPECT_EQ(s.Emit(3, 0, out.Sink(), &given), StopReason::kNone);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[1].chosen.logprob, -0.25f);
  // End of generation is not reported, as on_token does not get it either.
  EXPECT_EQ(s.Emit(2, 0, out.Sink(), &given), StopReason::kEos);
  EXPECT_EQ(got.size(), 2u);
  // A generation begun without them reports nothing.
  s.Begin({10, {}, 100}, 1);
  EXPECT_FALSE(s.wants_logprobs());
  EXPECT_EQ(s.Emit(3, 0, out.Sink()), StopReason::kNone);
  EXPECT_EQ(got.size(), 2u);
}

TEST_F(SequenceTest, ZeroBudgetStopsBeforeSampling) {
  Sequence s = Make();
  s.Begin({0, {}, 100}, 1);
  EXPECT_EQ(s.BeforeSample(), StopReason::kMaxTokens);
}

}  // namespace
}  // namespace kestrel::runtime

namespace kestrel::runtime {
namespace {

// A constrained generation samples only what the grammar allows, advances it with each token,
// and allows end of generation only at a complete sentence; the next Begin drops the grammar.
TEST_F(SequenceTest, ConstrainMasksSamplingAndBeginDropsIt) {
  absl::StatusOr<grammar::Grammar> g = grammar::ParseGbnf("root ::= \"b\" \"a\"\n");
  ASSERT_TRUE(g.ok()) << g.status();
  auto shared = std::make_shared<const grammar::Grammar>(*std::move(g));
  Sequence s = Make();
  s.Begin({}, 0);
  s.Constrain(shared, BuildGrammarVocab(tok_));
  ASSERT_TRUE(s.constrained());
  // "a" (3) and EOS (2) are the most likely, but only "b" (4) may come first.
  const float logits[9] = {0, 0, 9, 8, 1, 0, 0, 0, 0};
  absl::StatusOr<int32_t> t = s.Sample(logits);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*t, 4);
  t = s.Sample(logits);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*t, 3);  // then "a"
  t = s.Sample(logits);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*t, 2);  // complete: only end of generation is left
  s.Begin({}, 0);
  EXPECT_FALSE(s.constrained());
}

}  // namespace
}  // namespace kestrel::runtime
