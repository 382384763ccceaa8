#include "runtime/engine/prefix_cache.h"

#include <numeric>

#include "gtest/gtest.h"

namespace kestrel::runtime {
namespace {

std::vector<int32_t> Iota(int n, int start) {
  std::vector<int32_t> v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}

// Inserts the full blocks of `tokens` as a sequence would (own blocks from the pool) and returns
// the blocks the sequence holds afterwards (its own or the cache's shared copies).
std::vector<int32_t> Fill(PrefixCache& cache, BlockPool& pool, const std::vector<int32_t>& tokens) {
  const uint32_t bs = pool.block_size();
  std::vector<int32_t> blocks;
  uint64_t parent = PrefixCache::kRoot;
  for (size_t i = 0; (i + 1) * bs <= tokens.size(); ++i) {
    int32_t b = *pool.Allocate();
    int32_t shared = -1;
    parent = cache.Insert(parent, absl::MakeConstSpan(tokens.data() + i * bs, bs), b, &shared);
    if (shared >= 0) {
      pool.Release(b);
      b = shared;
    }
    blocks.push_back(b);
  }
  return blocks;
}

TEST(PrefixCacheTest, MatchesOnlyWholeEqualPrefixBlocks) {
  BlockPool pool(16, 4);
  PrefixCache cache(&pool);
  std::vector<int32_t> a = Iota(10, 100);  // blocks [100..103] [104..107], 2 tokens left over
  std::vector<int32_t> held = Fill(cache, pool, a);
  ASSERT_EQ(held.size(), 2u);
  EXPECT_EQ(cache.size(), 2u);

  PrefixCache::Match m = cache.Lookup(a, 10, false);
  EXPECT_EQ(m.blocks, held);
  // max_blocks limits the match.
  EXPECT_EQ(cache.Lookup(a, 1, false).blocks.size(), 1u);
  // Same second block content after a different first block: no match past block 0.
  std::vector<int32_t> b = a;
  b[1] = 7;
  EXPECT_EQ(cache.Lookup(b, 10, false).blocks.size(), 0u);
  std::vector<int32_t> c = a;
  c[5] = 7;
  EXPECT_EQ(cache.Lookup(c, 10, false).blocks.size(), 1u);
}

TEST(PrefixCacheTest, DuplicateContentSharesTheCachedBlock) {
  BlockPool pool(16, 4);
  PrefixCache cache(&pool);
  std::vector<int32_t> a = Iota(8, 0);
  std::vector<int32_t> first = Fill(cache, pool, a);
  std::vector<int32_t> second = Fill(cache, pool, a);
  EXPECT_EQ(first, second);
  EXPECT_EQ(pool.ref_count(first[0]), 3u);  // two sequences + the cache
  EXPECT_EQ(pool.n_free(), 14u);
}

TEST(PrefixCacheTest, EvictsLeastRecentlyUsedLeavesOnlyWhenUnreferenced) {
  BlockPool pool(8, 2);
  PrefixCache cache(&pool);
  std::vector<int32_t> a = {1, 2, 3, 4, 5, 6};
  std::vector<int32_t> b = {9, 9, 8, 8};
  std::vector<int32_t> ha = Fill(cache, pool, a);
  std::vector<int32_t> hb = Fill(cache, pool, b);
  EXPECT_EQ(cache.NumEvictable(), 0u);
  EXPECT_FALSE(cache.EvictOne());
  for (int32_t x : hb) pool.Release(x);  // sequence b ends
  EXPECT_EQ(cache.NumEvictable(), 2u);
  EXPECT_TRUE(cache.EvictOne());  // b's leaf first, never a's blocks (still in use)
  EXPECT_EQ(cache.Lookup(b, 10, false).blocks.size(), 1u);
  EXPECT_TRUE(cache.EvictOne());
  EXPECT_FALSE(cache.EvictOne());
  EXPECT_EQ(cache.Lookup(a, 10, false).blocks.size(), 3u);
  for (int32_t x : ha) pool.Release(x);
  // a was used more recently than nothing else; its chain goes leaf first.
  PrefixCache::Match m = cache.Lookup(a, 10, true);  // touch + retain
  for (int32_t x : m.blocks) pool.Release(x);
  cache.Clear();
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_EQ(pool.n_free(), 8u);
}

TEST(PrefixCacheTest, WindowGroupsLimitHitsToHeldWindowRowsAndGiveWayUnderPressure) {
  // Block size 2, one window group of window 3: a hit of k blocks continues at position 2k and
  // needs the group's rows from 2k - 2 on, i.e. its block k-1.
  BlockPool pool(16, 2), wpool(6, 2);
  PrefixCache cache(&pool, {{3, &wpool}});
  const std::vector<int32_t> a = Iota(9, 1);  // 4 full blocks
  std::vector<int32_t> held;
  std::vector<uint64_t> ids;
  for (size_t i = 0; i < 4; ++i) {
    held.push_back(*pool.Allocate());
    int32_t shared = -1;
    ids.push_back(cache.Insert(ids.empty() ? PrefixCache::kRoot : ids.back(),
                               absl::MakeConstSpan(a.data() + 2 * i, 2), held.back(), &shared));
    ASSERT_EQ(shared, -1);
  }
  // No window block held: nothing can be restored.
  EXPECT_EQ(cache.Lookup(a, 4, false).blocks.size(), 0u);
  // The group's blocks of entries 1 and 2 (a sequence's, the cache takes a reference).
  std::vector<int32_t> w;
  for (int i = 0; i < 4; ++i) w.push_back(*wpool.Allocate());
  cache.AttachWindowBlock(ids[1], 0, w[1]);
  cache.AttachWindowBlock(ids[2], 0, w[2]);
  EXPECT_EQ(wpool.ref_count(w[1]), 2u);
  // 3 blocks (continues at 6, reads from 4: block 2) or 2 blocks (reads from 2: block 1).
  PrefixCache::Match m = cache.Lookup(a, 4, true);
  ASSERT_EQ(m.blocks.size(), 3u);
  ASSERT_EQ(m.window_blocks.size(), 1u);
  EXPECT_EQ(m.window_blocks[0], (std::vector<int32_t>{-1, -1, w[2]}));
  EXPECT_EQ(wpool.ref_count(w[2]), 3u) << "retained for the caller";
  for (int32_t b : m.blocks) pool.Release(b);
  wpool.Release(w[2]);
  cache.AttachWindowBlock(ids[3], 0, w[3]);
  EXPECT_EQ(cache.Lookup(a, 4, false).blocks.size(), 4u);
  // The sequence lets go of its window blocks: only the cache holds them.
  for (int32_t b : w) wpool.Release(b);
  EXPECT_EQ(cache.NumWindowCached(0), 3u);
  EXPECT_EQ(wpool.n_free(), 3u);
  // Pressure: one reference at a time, each freeing its block (only the cache held them).
  ASSERT_TRUE(cache.EvictWindowBlock(0));
  EXPECT_EQ(wpool.n_free(), 4u);
  EXPECT_EQ(cache.NumWindowCached(0), 2u);
  while (cache.EvictWindowBlock(0)) {
  }
  EXPECT_EQ(wpool.n_free(), 6u);
  EXPECT_EQ(cache.Lookup(a, 4, false).blocks.size(), 0u) << "no window rows left to restore";
  // Removing entries releases their window blocks too.
  int32_t x = *wpool.Allocate();
  cache.AttachWindowBlock(ids[3], 0, x);
  wpool.Release(x);
  for (int32_t b : held) pool.Release(b);
  cache.Clear();
  EXPECT_EQ(wpool.n_free(), 6u);
  EXPECT_EQ(pool.n_free(), 16u);
}

TEST(PrefixCacheTest, DestructorReturnsEveryBlock) {
  BlockPool pool(8, 2);
  {
    PrefixCache cache(&pool);
    std::vector<int32_t> held = Fill(cache, pool, {1, 2, 3, 4});
    for (int32_t x : held) pool.Release(x);
    EXPECT_EQ(pool.n_free(), 6u);
  }
  EXPECT_EQ(pool.n_free(), 8u);
}

}  // namespace
}  // namespace kestrel::runtime
