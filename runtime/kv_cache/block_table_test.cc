#include "runtime/kv_cache/block_table.h"

#include <set>

#include "gtest/gtest.h"

namespace kestrel::runtime {
namespace {

TEST(BlockTableTest, AppendAllocatesBlocksAndSlotsFollowTheTable) {
  BlockPool pool(4, 16);
  BlockTable t(&pool);
  ASSERT_TRUE(t.Append(20).ok());
  EXPECT_EQ(t.n_tokens(), 20u);
  ASSERT_EQ(t.blocks().size(), 2u);
  EXPECT_EQ(pool.n_free(), 2u);
  EXPECT_EQ(t.Slot(0), t.blocks()[0] * 16);
  EXPECT_EQ(t.Slot(17), t.blocks()[1] * 16 + 1);
}

TEST(BlockTableTest, FullPoolFailsWithNumbersAndLeavesTableUnchanged) {
  BlockPool pool(2, 16);
  BlockTable t(&pool);
  ASSERT_TRUE(t.Append(17).ok());
  absl::Status s = t.Append(40);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("2 blocks of 16 tokens"), std::string::npos) << s;
  EXPECT_EQ(t.n_tokens(), 17u);
  EXPECT_EQ(t.blocks().size(), 2u);
}

TEST(BlockTableTest, TruncateReleasesBlocksAndDestructorFreesAll) {
  BlockPool pool(8, 4);
  {
    BlockTable t(&pool);
    ASSERT_TRUE(t.Append(30).ok());
    EXPECT_EQ(pool.n_free(), 0u);
    t.Truncate(5);
    EXPECT_EQ(t.blocks().size(), 2u);
    EXPECT_EQ(pool.n_free(), 6u);
    t.Truncate(8);  // no-op: beyond the tokens present it cannot grow
    EXPECT_EQ(t.n_tokens(), 5u);
  }
  EXPECT_EQ(pool.n_free(), 8u);
}

TEST(BlockTableTest, DropBeforeReleasesWholeBlocksAndTheirEntriesReadMinusOne) {
  BlockPool pool(4, 4);
  BlockTable t(&pool);
  ASSERT_TRUE(t.Append(14).ok());  // blocks for 0..3, 4..7, 8..11, 12..13
  EXPECT_EQ(pool.n_free(), 0u);
  t.DropBefore(7);  // block 0 lies wholly before 7, block 1 does not
  EXPECT_EQ(t.blocks()[0], -1);
  EXPECT_GE(t.blocks()[1], 0);
  EXPECT_EQ(t.n_held_blocks(), 3u);
  EXPECT_EQ(t.first_held_position(), 4u);
  EXPECT_EQ(pool.n_free(), 1u);
  // The freed block is reused: the table grows past the pool's 4 blocks of positions.
  ASSERT_TRUE(t.Append(6).ok());  // 20 tokens: entries 0..4
  EXPECT_EQ(t.blocks().size(), 5u);
  EXPECT_EQ(t.n_held_blocks(), 4u);
  EXPECT_EQ(pool.n_free(), 0u);
  EXPECT_EQ(t.Slot(19), t.blocks()[4] * 4 + 3);
  t.DropBefore(12);
  EXPECT_EQ(t.n_held_blocks(), 2u);
  EXPECT_EQ(t.first_held_position(), 12u);
  EXPECT_EQ(pool.n_free(), 2u);
  t.DropBefore(3);  // already dropped further: nothing changes
  EXPECT_EQ(t.n_held_blocks(), 2u);
  // Truncating releases held blocks only, never a dropped entry twice.
  t.Truncate(13);
  EXPECT_EQ(t.blocks().size(), 4u);
  EXPECT_EQ(t.n_held_blocks(), 1u);
  EXPECT_EQ(pool.n_free(), 3u);
  t.Truncate(0);
  EXPECT_EQ(pool.n_free(), 4u);
  ASSERT_TRUE(t.Append(10).ok());
  EXPECT_EQ(t.n_held_blocks(), 3u);
  EXPECT_EQ(t.first_held_position(), 0u);
  EXPECT_EQ(pool.n_free(), 1u);
}

TEST(BlockTableTest, TwoTablesNeverShareABlock) {
  BlockPool pool(6, 2);
  BlockTable a(&pool), b(&pool);
  ASSERT_TRUE(a.Append(5).ok());
  ASSERT_TRUE(b.Append(6).ok());
  std::set<int32_t> all(a.blocks().begin(), a.blocks().end());
  all.insert(b.blocks().begin(), b.blocks().end());
  EXPECT_EQ(all.size(), 6u);
}

TEST(BlockPoolTest, RefCountsKeepSharedBlocksAlive) {
  BlockPool pool(1, 16);
  auto b = pool.Allocate();
  ASSERT_TRUE(b.ok());
  pool.Retain(*b);
  pool.Release(*b);
  EXPECT_EQ(pool.n_free(), 0u);
  pool.Release(*b);
  EXPECT_EQ(pool.n_free(), 1u);
}

}  // namespace
}  // namespace kestrel::runtime
