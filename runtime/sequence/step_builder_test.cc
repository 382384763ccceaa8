// StepBuilder: positions, slots, block tables, query starts, KV lengths and logit rows for chains
// and trees of several sequences in one step.
#include "runtime/sequence/step_builder.h"

#include "gtest/gtest.h"

namespace kestrel::runtime {
namespace {

TEST(StepBuilderTest, ChainsOfTwoSequences) {
  BlockPool pool(16, 4);
  BlockTable a(&pool), b(&pool);
  ASSERT_TRUE(a.Append(6).ok());   // 5 computed + 1 new
  ASSERT_TRUE(b.Append(3).ok());   // a 3-token prompt chunk
  StepBuilder sb;
  sb.Reset();
  const int32_t ta[] = {7}, tb[] = {1, 2, 3};
  EXPECT_EQ(*sb.Add({&a, 5, ta, {}, LogitRows::kLast}), 0);
  EXPECT_EQ(*sb.Add({&b, 0, tb, {}, LogitRows::kNone}), -1);
  const StepInputs& in = sb.Finish();
  EXPECT_EQ(in.tokens, (std::vector<int32_t>{7, 1, 2, 3}));
  EXPECT_EQ(in.positions, (std::vector<int32_t>{5, 0, 1, 2}));
  EXPECT_EQ(in.slots[0], a.Slot(5));
  EXPECT_EQ(in.slots[3], b.Slot(2));
  EXPECT_EQ(in.query_start, (std::vector<int32_t>{0, 1, 4}));
  EXPECT_EQ(in.kv_lens, (std::vector<int32_t>{6, 3}));
  EXPECT_EQ(in.logit_rows, (std::vector<int32_t>{0}));
  EXPECT_EQ(in.n_seqs, 2);
  EXPECT_EQ(in.max_blocks, 2);
  EXPECT_EQ(in.block_tables.size(), 4u);
  EXPECT_EQ(in.block_tables[2], b.blocks()[0]);
  EXPECT_EQ(in.block_tables[3], 0);  // padding
  EXPECT_TRUE(in.parents.empty());   // chains: causal attention
}

TEST(StepBuilderTest, TreePositionsAreDepthsAndSlotsAreConsecutive) {
  BlockPool pool(16, 4);
  BlockTable a(&pool), b(&pool);
  ASSERT_TRUE(a.Append(10 + 5).ok());
  ASSERT_TRUE(b.Append(4).ok());
  StepBuilder sb;
  sb.Reset();
  // root r; children x, y; x's child z; y's child w.
  const int32_t toks[] = {9, 10, 11, 12, 13}, parents[] = {-1, 0, 0, 1, 2};
  const int32_t tb[] = {5};
  EXPECT_EQ(*sb.Add({&b, 3, tb, {}, LogitRows::kLast}), 0);
  EXPECT_EQ(*sb.Add({&a, 10, toks, parents, LogitRows::kAll}), 1);
  const StepInputs& in = sb.Finish();
  EXPECT_EQ(in.positions, (std::vector<int32_t>{3, 10, 11, 11, 12, 12}));
  EXPECT_EQ(in.slots[5], a.Slot(14));
  EXPECT_EQ(in.logit_rows, (std::vector<int32_t>{0, 1, 2, 3, 4, 5}));
  // The chain entry gets chain parents once any entry branches.
  EXPECT_EQ(in.parents, (std::vector<int32_t>{-1, -1, 0, 0, 1, 2}));
}

TEST(StepBuilderTest, RefusesBadTreesAndShortTables) {
  BlockPool pool(4, 4);
  BlockTable a(&pool);
  ASSERT_TRUE(a.Append(2).ok());
  StepBuilder sb;
  sb.Reset();
  const int32_t toks[] = {1, 2}, bad[] = {-1, 1};
  EXPECT_FALSE(sb.Add({&a, 0, toks, bad, LogitRows::kAll}).ok());
  const int32_t many[] = {1, 2, 3, 4, 5};
  EXPECT_FALSE(sb.Add({&a, 0, many, {}, LogitRows::kAll}).ok());
}

}  // namespace
}  // namespace kestrel::runtime
