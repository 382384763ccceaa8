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
