#include "runtime/kv_cache/window_tables.h"

#include "gtest/gtest.h"

namespace kestrel::runtime {
namespace {

TEST(WindowTablesTest, BlocksHeldStopGrowingAtTheWindow) {
  constexpr uint32_t kWindow = 10, kBlock = 4, kStep = 3;
  const uint32_t blocks = WindowTables::BlocksNeeded(kWindow, kStep, kBlock);
  EXPECT_EQ(blocks, 4u);  // 12 positions in at most 4 blocks of 4
  WindowTables t({{kWindow, blocks}}, kBlock);
  uint32_t n = 0;
  // 200 tokens in steps of 1..3 through a pool of 4 blocks.
  for (uint32_t i = 0; n < 200; ++i) {
    const uint32_t step = 1 + i % kStep;
    ASSERT_TRUE(t.Append(n, step).ok()) << "at " << n;
    // Every position a query of this step sees is held.
    EXPECT_LE(t.table(0).first_held_position(), n + 1 > kWindow ? n + 1 - kWindow : 0);
    EXPECT_LE(t.table(0).n_held_blocks(), blocks);
    n += step;
  }
  EXPECT_EQ(t.table(0).n_tokens(), n);
  EXPECT_GT(t.table(0).blocks().size(), 40u);  // entries for every position, most of them -1
}

TEST(WindowTablesTest, TruncationBelowTheHeldWindowIsRefused) {
  WindowTables t({{8, 5}, {4, 5}}, 4);
  ASSERT_TRUE(t.Append(0, 12).ok());
  ASSERT_TRUE(t.Append(12, 1).ok());  // drops: window 8 nothing (first seen 5), window 4 block 0..1
  EXPECT_EQ(t.table(0).first_held_position(), 4u);
  EXPECT_EQ(t.table(1).first_held_position(), 8u);
  EXPECT_TRUE(t.CanTruncateTo(13));
  EXPECT_TRUE(t.CanTruncateTo(12));
  EXPECT_TRUE(t.CanTruncateTo(11));   // window 4 sees 8.., window 8 sees 4..
  EXPECT_FALSE(t.CanTruncateTo(10));  // window 4 would need position 7
  EXPECT_TRUE(t.CanTruncateTo(0));
  EXPECT_EQ(t.MinTruncation(), 11u);
  t.Truncate(0);
  EXPECT_EQ(t.table(1).n_held_blocks(), 0u);
}

TEST(WindowTablesTest, FailedAppendLeavesNoGroupGrown) {
  WindowTables t({{8, 10}, {8, 2}}, 4);
  ASSERT_TRUE(t.Append(0, 4).ok());
  const absl::Status s = t.Append(4, 12);  // the second group's pool of 2 blocks is too small
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(t.table(0).n_tokens(), 4u);
  EXPECT_EQ(t.table(1).n_tokens(), 4u);
  EXPECT_EQ(t.table(0).n_held_blocks(), 1u);
}

TEST(WindowTablesTest, SharedPoolForkCopiesTheSharedPartialBlockOnWrite) {
  BlockPool pool(20, 4);
  WindowTables a({WindowTables::SharedGroup{8, &pool}});
  WindowTables b({WindowTables::SharedGroup{8, &pool}});
  std::vector<std::vector<int32_t>> copies;
  ASSERT_TRUE(a.Append(0, 8, &copies).ok());
  ASSERT_TRUE(a.Append(8, 6, &copies).ok());  // 14 tokens: block 3 is partial
  EXPECT_TRUE(copies[0].empty());
  a.ShareInto(&b);
  EXPECT_EQ(b.table(0).n_tokens(), 14u);
  EXPECT_EQ(b.table(0).blocks(), a.table(0).blocks());
  const uint32_t free_before = pool.n_free();
  const int32_t shared = a.table(0).blocks()[3];
  ASSERT_TRUE(b.Append(14, 1, &copies).ok());  // writes into the shared block 3: copy it
  ASSERT_EQ(copies[0].size(), 2u);
  EXPECT_EQ(copies[0][0], shared);
  EXPECT_EQ(copies[0][1], b.table(0).blocks()[3]);
  EXPECT_NE(b.table(0).blocks()[3], shared);
  EXPECT_EQ(a.table(0).blocks()[3], shared);
  // b dropped block 0 (its first query sees position 7): a still holds it.
  EXPECT_EQ(b.table(0).blocks()[0], -1);
  EXPECT_EQ(pool.ref_count(a.table(0).blocks()[0]), 1u);
  EXPECT_EQ(pool.n_free(), free_before - 1);
  a.Truncate(0);
  b.Truncate(0);
  EXPECT_EQ(pool.n_free(), 20u);
}

TEST(WindowTablesTest, GrowToHoldsWhatDecodingWouldHaveLeft) {
  constexpr uint32_t kWindow = 8, kBlock = 4;
  BlockPool pool(WindowTables::BlocksNeeded(kWindow, kWindow, kBlock), kBlock);
  WindowTables t({WindowTables::SharedGroup{kWindow, &pool}});
  ASSERT_TRUE(t.GrowTo(101, kWindow).ok());
  EXPECT_EQ(t.table(0).n_tokens(), 101u);
  // The next query (at 101) sees positions from 94: held, in at most 3 blocks (92..103).
  EXPECT_LE(t.table(0).first_held_position(), 94u);
  EXPECT_LE(t.table(0).n_held_blocks(), 3u);
  EXPECT_EQ(t.n_held_blocks(), t.table(0).n_held_blocks());
  ASSERT_TRUE(t.Append(101, kWindow).ok()) << "room for a window-sized step after it";
}

}  // namespace
}  // namespace kestrel::runtime
