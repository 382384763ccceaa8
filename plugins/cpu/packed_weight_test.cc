// AlignedBuffer: alignment (64 bytes; 2 MiB for huge-page buffers), every byte usable, moves.
#include "packed_weight.h"

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <utility>

#include "gtest/gtest.h"

namespace kestrel::plugins::cpu {
namespace {

TEST(AlignedBufferTest, SmallBuffersAre64ByteAligned) {
  AlignedBuffer b(100);
  ASSERT_NE(b.data(), nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % 64, 0u);
  EXPECT_EQ(b.size(), 100u);
  EXPECT_FALSE(b.huge_pages());
  std::memset(b.data(), 0xAB, 100);
}

TEST(AlignedBufferTest, LargeBuffersStartOnA2MiBBoundary) {
  const uint64_t size = AlignedBuffer::kHugePageBytes * 2 + 12345;  // a 4 KiB-page tail
  AlignedBuffer b(size);
  ASSERT_NE(b.data(), nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % AlignedBuffer::kHugePageBytes, 0u);
#if defined(__linux__)
  // The advice is best effort (a kernel without THP refuses it); report what happened.
  std::printf("huge-page advice accepted: %s\n", b.huge_pages() ? "yes" : "no");
#endif
  auto* p = static_cast<uint8_t*>(b.data());
  std::memset(p, 0x5A, size);
  EXPECT_EQ(p[0], 0x5A);
  EXPECT_EQ(p[size - 1], 0x5A);

  AlignedBuffer moved(std::move(b));
  EXPECT_EQ(moved.data(), p);
  EXPECT_EQ(moved.size(), size);
  EXPECT_EQ(b.data(), nullptr);  // NOLINT(bugprone-use-after-move): the moved-from state
  AlignedBuffer assigned(64);
  assigned = std::move(moved);   // frees the small buffer, takes the large one
  EXPECT_EQ(assigned.data(), p);
  EXPECT_EQ(moved.data(), nullptr);  // NOLINT(bugprone-use-after-move)
}

}  // namespace
}  // namespace kestrel::plugins::cpu
