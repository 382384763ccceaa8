#include "runtime/grammar/gbnf_parser.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "runtime/grammar/matcher.h"

namespace kestrel::runtime::grammar {
namespace {

using ::testing::HasSubstr;

bool Full(const Grammar& g, const std::string& text) {
  Matcher m(&g);
  return m.AcceptBytes(text) && m.accepting();
}

TEST(GbnfParser, LiteralsClassesAndRepetition) {
  absl::StatusOr<Grammar> g = ParseGbnf(R"(# a comment line
root ::= "ab" [0-9]+ tail?   # trailing comment
tail ::= ("x" | "y"){2,3} [^a-z]* "."
)");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_TRUE(Full(*g, "ab1"));
  EXPECT_TRUE(Full(*g, "ab123xy."));
  EXPECT_TRUE(Full(*g, "ab9yyxAB!."));
  EXPECT_FALSE(Full(*g, "ab"));         // [0-9]+ needs one
  EXPECT_FALSE(Full(*g, "ab1x."));      // {2,3}
  EXPECT_FALSE(Full(*g, "ab1xyxy."));   // at most 3
  EXPECT_FALSE(Full(*g, "ab1xya."));    // [^a-z]
}

TEST(GbnfParser, EscapesUnicodeAndMultiLineRules) {
  absl::StatusOr<Grammar> g = ParseGbnf(
      "root ::=\n  \"\\x41\\u00e9\" (\n    \"\\n\" |\n    [\\t\\]]\n  ) \"\xc3\xb1\" .\n"
      "  | \"alt\"\n");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_TRUE(Full(*g, "A\xc3\xa9\n\xc3\xb1z"));
  EXPECT_TRUE(Full(*g, "A\xc3\xa9]\xc3\xb1\xe2\x82\xac"));  // '.' takes any character
  EXPECT_TRUE(Full(*g, "alt"));
  EXPECT_FALSE(Full(*g, "A\xc3\xa9x\xc3\xb1z"));
}

struct BadCase {
  const char* text;
  const char* message;
};

TEST(GbnfParser, ErrorsNameLineAndColumn) {
  const BadCase cases[] = {
      {"root ::= \"abc", "line 1, column 10: string literal is never closed"},
      {"root ::= a\na ::= [b-a]", "line 2, column 8: character range is reversed"},
      {"root ::= ( \"x\" ", "line 1, column 10: '(' is never closed"},
      {"root ::= \"x\" )", "line 1, column 14: unexpected ')'"},
      {"root = \"x\"", "line 1, column 6: expected '::=' after rule name 'root'"},
      {"root ::= * \"x\"", "line 1, column 10: '*' has nothing to repeat"},
      {"root ::= \"\\q\"", "line 1, column 11: unknown escape '\\q'"},
      {"root ::= \"a\"{3,1}", "line 1, column 13: repetition {m,n} with n < m"},
      {"root ::= \"a\"\n\nroot ::= \"b\"", "line 3, column 1: rule 'root' is defined twice"},
      {"root ::= []", "line 1, column 10: empty character class"},
      {"root ::= \"\\x4\"", "line 1, column 11: '\\x' needs 2 hex digits"},
  };
  for (const BadCase& c : cases) {
    absl::StatusOr<Grammar> g = ParseGbnf(c.text);
    ASSERT_FALSE(g.ok()) << c.text;
    EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(g.status().message()), HasSubstr(c.message)) << c.text;
  }
}

TEST(GbnfParser, SemanticErrorsNameTheRule) {
  EXPECT_THAT(std::string(ParseGbnf("root ::= item\n").status().message()),
              HasSubstr("rule 'item' is used but never defined"));
  EXPECT_THAT(std::string(ParseGbnf("start ::= \"x\"\n").status().message()),
              HasSubstr("no rule named 'root'"));
  EXPECT_THAT(std::string(ParseGbnf("root ::= expr\nexpr ::= expr \"+\" \"1\" | \"1\"\n").status().message()),
              HasSubstr("rule 'expr' is left-recursive (expr -> expr)"));
  // Hidden behind a nullable rule.
  EXPECT_THAT(std::string(ParseGbnf("root ::= a\na ::= b? a \"x\" | \"y\"\nb ::= \"z\"\n").status().message()),
              HasSubstr("left-recursive"));
  // Another start rule may be named.
  EXPECT_TRUE(ParseGbnf("start ::= \"x\"\n", "start").ok());
}

TEST(GbnfParser, DeepRightRecursionStaysFlat) {
  absl::StatusOr<Grammar> g = ParseGbnf("root ::= \"a\"* \"b\"\n");
  ASSERT_TRUE(g.ok()) << g.status();
  Matcher m(&*g);
  for (int i = 0; i < 10000; ++i) ASSERT_TRUE(m.AcceptCodePoint('a'));
  for (const Stack& s : m.stacks()) EXPECT_LE(s.size(), 3u);
  EXPECT_FALSE(m.accepting());
  EXPECT_TRUE(m.AcceptCodePoint('b'));
  EXPECT_TRUE(m.accepting());
  EXPECT_FALSE(m.can_continue());
}

}  // namespace
}  // namespace kestrel::runtime::grammar
