#include "runtime/sequence/stream_text.h"

#include "gtest/gtest.h"

namespace kestrel::runtime {
namespace {

TEST(StreamTextTest, PassesTextThroughWithoutStops) {
  StreamText s({});
  bool stopped = true;
  EXPECT_EQ(s.Push("Hello", &stopped), "Hello");
  EXPECT_FALSE(stopped);
  EXPECT_EQ(s.Push(" world", &stopped), " world");
  EXPECT_EQ(s.Flush(), "");
}

TEST(StreamTextTest, HoldsBackAPossibleStopPrefixAndCutsTheStop) {
  StreamText s({"\n\n"});
  bool stopped = false;
  EXPECT_EQ(s.Push("one\n", &stopped), "one");
  EXPECT_FALSE(stopped);
  EXPECT_EQ(s.Push("two", &stopped), "\ntwo");  // the newline was not a stop after all
  EXPECT_EQ(s.Push("\n", &stopped), "");
  EXPECT_EQ(s.Push("\nthree", &stopped), "");
  EXPECT_TRUE(stopped);
}

TEST(StreamTextTest, StopInsideOnePiece) {
  StreamText s({"END"});
  bool stopped = false;
  EXPECT_EQ(s.Push("abcENDdef", &stopped), "abc");
  EXPECT_TRUE(stopped);
}

TEST(StreamTextTest, StopSpanningPieces) {
  StreamText s({"STOP"});
  bool stopped = false;
  EXPECT_EQ(s.Push("xS", &stopped), "x");
  EXPECT_EQ(s.Push("TO", &stopped), "");
  EXPECT_EQ(s.Push("P!", &stopped), "");
  EXPECT_TRUE(stopped);
}

TEST(StreamTextTest, IncompleteUtf8IsHeldUntilComplete) {
  StreamText s({});
  bool stopped = false;
  const std::string smile = "\xF0\x9F\x99\x82";  // U+1F642
  EXPECT_EQ(s.Push(smile.substr(0, 1), &stopped), "");
  EXPECT_EQ(s.Push(smile.substr(1, 2), &stopped), "");
  EXPECT_EQ(s.Push(smile.substr(3) + "a", &stopped), smile + "a");
  EXPECT_EQ(s.Push("\xE6\x9D", &stopped), "");
  EXPECT_EQ(s.Flush(), "\xE6\x9D");
}

TEST(StreamTextTest, CompleteUtf8Prefix) {
  EXPECT_EQ(CompleteUtf8Prefix("abc"), 3u);
  EXPECT_EQ(CompleteUtf8Prefix("ab\xC3"), 2u);
  EXPECT_EQ(CompleteUtf8Prefix("ab\xC3\xA9"), 4u);
  EXPECT_EQ(CompleteUtf8Prefix("\x80\x80"), 2u);
}

}  // namespace
}  // namespace kestrel::runtime
