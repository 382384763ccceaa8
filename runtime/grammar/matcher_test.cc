#include "runtime/grammar/matcher.h"

#include <gtest/gtest.h>

#include "runtime/grammar/gbnf_parser.h"

namespace kestrel::runtime::grammar {
namespace {

Grammar MustParse(const std::string& text) {
  absl::StatusOr<Grammar> g = ParseGbnf(text);
  EXPECT_TRUE(g.ok()) << g.status();
  return g.ok() ? *std::move(g) : Grammar();
}

TEST(Matcher, RejectionLeavesStateUnchanged) {
  Grammar g = MustParse("root ::= \"ab\" | \"ac\"\n");
  Matcher m(&g);
  EXPECT_TRUE(m.AcceptBytes("a"));
  EXPECT_FALSE(m.AcceptBytes("bx"));  // 'b' fits, 'x' does not: nothing taken
  EXPECT_TRUE(m.AcceptBytes("c"));
  EXPECT_TRUE(m.accepting());
  EXPECT_FALSE(m.AcceptCodePoint('c'));
}

TEST(Matcher, AmbiguityKeepsEveryParse) {
  Grammar g = MustParse("root ::= x \"1\" | x \"2\"\nx ::= [a-z]+\n");
  Matcher m(&g);
  EXPECT_TRUE(m.AcceptBytes("abc"));
  Matcher m2 = m;
  EXPECT_TRUE(m.AcceptBytes("2"));
  EXPECT_TRUE(m.accepting());
  EXPECT_TRUE(m2.AcceptBytes("1"));
  EXPECT_TRUE(m2.accepting());
}

TEST(Matcher, PartialUtf8AcrossCalls) {
  Grammar g = MustParse("root ::= \"\xe2\x82\xac\" [\xc3\xa0-\xc3\xbf]\n");  // "€" [à-ÿ]
  Matcher m(&g);
  EXPECT_TRUE(m.AcceptBytes("\xe2"));        // first byte of €
  EXPECT_FALSE(m.accepting());
  EXPECT_FALSE(m.AcceptBytes("\x82\x80"));   // would be U+2080, not €
  EXPECT_TRUE(m.AcceptBytes("\x82"));
  EXPECT_TRUE(m.AcceptBytes("\xac\xc3"));    // € done, half of the next
  EXPECT_FALSE(m.Allows("\x80"));            // U+00C0 is outside [à-ÿ]
  EXPECT_TRUE(m.Allows("\xa9"));
  EXPECT_TRUE(m.AcceptBytes("\xa9"));
  EXPECT_TRUE(m.accepting());
  // A first byte no allowed character starts with is refused at once.
  Matcher m3(&g);
  EXPECT_FALSE(m3.AcceptBytes("\xc3"));
  EXPECT_FALSE(m3.AcceptBytes("\xff"));
}

TEST(Matcher, NegatedClassAndPartial) {
  Grammar g = MustParse("root ::= [^\xc3\xa9]\n");  // anything but é
  Matcher m(&g);
  EXPECT_TRUE(m.Allows("\xc3"));   // could still be another 2-byte character
  EXPECT_FALSE(m.Allows("\xc3\xa9"));
  EXPECT_TRUE(m.Allows("\xc3\xa8"));
}

}  // namespace
}  // namespace kestrel::runtime::grammar
