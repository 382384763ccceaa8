// runtime/tokenizer/chat/jinja_parser.h: the syntax tree of the Jinja subset chat templates are
// written in, and its parser. The template environment is Hugging Face's (trim_blocks and
// lstrip_blocks on), so the text between tags is what transformers' apply_chat_template renders.
//
// Statements: if/elif/else, for (one or two targets, an `if` filter, else, loop.*, break and
// continue), set (a name or a namespace attribute; also as a block up to endset), macro (with
// default arguments), comments, {%- -%} whitespace control; generation/endgeneration blocks are
// transparent. Expressions: literals (strings, numbers, true/false/none, lists, dicts), names,
// .attr, [index], [a:b:c] slices, calls with keyword arguments, filters, `is [not]` tests, unary
// not/-, * / // % + - ~, comparisons, in / not in, and/or, `x if c else y`. Anything else (call
// blocks, include, import, extends, block, raw, filter blocks) is refused.
#ifndef KESTREL_RUNTIME_TOKENIZER_CHAT_JINJA_PARSER_H_
#define KESTREL_RUNTIME_TOKENIZER_CHAT_JINJA_PARSER_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "runtime/tokenizer/chat/jinja_value.h"

namespace kestrel::runtime::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral,  // literal
    kName,     // name
    kList,     // args: items
    kDict,     // args: key, value, key, value, ...
    kGetAttr,  // args[0] . name
    kGetItem,  // args[0] [ args[1] ]
    kSlice,    // args[0] [ args[1] : args[2] : args[3] ] (a missing part is nullptr)
    kCall,     // args[0] ( args[1..] ), the last kwarg_names.size() of them keyword arguments
    kFilter,   // args[0] | name ( args[1..] )
    kTest,     // args[0] is [not] name ( args[1..] )
    kUnary,    // name (not, -) args[0]
    kBinary,   // args[0] name args[1]
    kTernary,  // args[0] if args[1] else args[2] (nullptr: undefined)
  };
  Kind kind;
  int line = 0;
  Value literal;
  std::string name;
  std::vector<ExprPtr> args;
  std::vector<std::string> kwarg_names;
  bool negated = false;  // kTest: `is not`
};

struct Node {
  enum class Kind { kText, kOutput, kIf, kFor, kSet, kSetBlock, kMacro, kBreak, kContinue };
  Kind kind;
  int line = 0;
  std::string text;                                             // kText
  ExprPtr expr;                                                 // kOutput, kSet (value), kFor (iterable)
  std::vector<std::pair<ExprPtr, std::vector<Node>>> branches;  // kIf: (condition, body)
  std::vector<Node> body;                                       // kFor, kSetBlock, kMacro
  std::vector<Node> else_body;                                  // kIf, kFor
  // kFor: loop variables; kSet, kSetBlock: {name} or {namespace, attribute}; kMacro: {name,
  // parameters...}
  std::vector<std::string> targets;
  ExprPtr filter;                  // kFor: the `if` clause, or nullptr
  std::vector<ExprPtr> defaults;   // kMacro: per parameter, its default or nullptr
};

// Parses a template. INVALID_ARGUMENT ("line N: ...") for a syntax error, UNIMPLEMENTED
// ("line N: ...") for a construct outside the subset.
absl::StatusOr<std::vector<Node>> Parse(absl::string_view source);

}  // namespace kestrel::runtime::jinja

#endif  // KESTREL_RUNTIME_TOKENIZER_CHAT_JINJA_PARSER_H_
