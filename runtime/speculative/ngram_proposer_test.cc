#include "runtime/speculative/ngram_proposer.h"

#include <vector>

#include "gtest/gtest.h"

namespace kestrel {
namespace runtime {
namespace {

DraftTree Propose(const std::vector<int32_t>& history, uint32_t depth,
                  NgramProposer p = NgramProposer()) {
  ProposeRequest req;
  req.history = history;
  req.max_depth = depth;
  req.max_nodes = 2 * depth + 4;
  DraftTree t;
  EXPECT_TRUE(p.Propose(req, &t).ok());
  return t;
}

TEST(NgramProposerTest, ConfidenceIsTheLengthOfTheRepeatedRun) {
  // "1 2 3 4 5 6 7 8 9 | 1 2 3 4 5": the source of the proposal repeats the last 5 tokens.
  const DraftTree quote = Propose({1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3, 4, 5}, 3);
  ASSERT_EQ(quote.Depth(), 3u);
  EXPECT_EQ(quote.tokens[0], 6);
  EXPECT_EQ(quote.confidence, 5u);
  // A one-token match is a weak guess.
  const DraftTree weak = Propose({7, 1, 9, 8, 2, 1}, 3);
  ASSERT_FALSE(weak.empty());
  EXPECT_EQ(weak.tokens[0], 9);
  EXPECT_EQ(weak.confidence, 1u);
  // Nothing repeats: no proposal, no confidence.
  const DraftTree none = Propose({1, 2, 3, 4}, 3);
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(none.confidence, 0u);
}

TEST(NgramProposerTest, TheFixedMethodsSettingsDraftOneChainFromLongerMatches) {
  // The settings of the fixed `ngram` method (3..2-token matches, one branch).
  const NgramProposer fixed(3, 2, 1);
  // "5 6" occurred twice with different continuations: the default proposes both as branches,
  // the fixed settings only the most recent one as a chain.
  const std::vector<int32_t> h = {5, 6, 1, 2, 8, 5, 6, 3, 4, 7, 5, 6};
  const DraftTree both = Propose(h, 2);
  EXPECT_EQ(both.size(), 4u);
  const DraftTree chain = Propose(h, 2, fixed);
  ASSERT_EQ(chain.size(), 2u);
  EXPECT_EQ(chain.tokens[0], 3);
  EXPECT_EQ(chain.tokens[1], 4);
  EXPECT_EQ(chain.Depth(), 2u);
  // A one-token match is not proposed at all.
  EXPECT_TRUE(Propose({7, 1, 9, 8, 2, 1}, 3, fixed).empty());
}

}  // namespace
}  // namespace runtime
}  // namespace kestrel
