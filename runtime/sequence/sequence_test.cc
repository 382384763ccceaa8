// The stop rules every driver shares (Sequence::Emit) and the history/KV bookkeeping.
#include "runtime/sequence/sequence.h"

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

TEST_F(SequenceTest, ZeroBudgetStopsBeforeSampling) {
  Sequence s = Make();
  s.Begin({0, {}, 100}, 1);
  EXPECT_EQ(s.BeforeSample(), StopReason::kMaxTokens);
}

}  // namespace
}  // namespace kestrel::runtime
