// runtime/grammar/: the GBNF text format (llama.cpp's grammar format) -> Grammar.
//
//   name ::= alternatives           one rule per line; `root` is where the output starts
//   "literal"  [a-z0-9_]  [^"\\]  .  literals, character classes (^ negates), any character
//   ( ... )  a | b  x*  x+  x?  x{m}  x{m,}  x{m,n}    grouping, alternatives, repetition
//   # comment to the end of the line; escapes \n \r \t \\ \" \[ \] \- \xHH \uHHHH \UHHHHHHHH
//
// A rule ends at the end of its line, except inside parentheses and after `::=` or `|`; a line
// that starts with `|` continues the rule above it.
#ifndef KESTREL_RUNTIME_GRAMMAR_GBNF_PARSER_H_
#define KESTREL_RUNTIME_GRAMMAR_GBNF_PARSER_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "runtime/grammar/grammar.h"

namespace kestrel {
namespace runtime {
namespace grammar {

// INVALID_ARGUMENT "grammar line L, column C: <what is wrong>" for a syntax error (columns count
// code points from 1), or a message naming the undefined / left-recursive rule, or the missing
// `root` rule.
absl::StatusOr<Grammar> ParseGbnf(absl::string_view text, const std::string& root = "root");

}  // namespace grammar
}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_GRAMMAR_GBNF_PARSER_H_
