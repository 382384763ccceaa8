// runtime/grammar/: the automaton that walks a Grammar over code points.
//
// The state is a set of stacks (a pushdown automaton run on every parse at once, the way
// llama.cpp's grammar sampler does it): each stack holds element positions, the top one a
// character set to match next, the ones below where each enclosing rule continues. An empty
// stack means the input so far is a complete sentence. A code point keeps the stacks whose top
// matches it, each advanced and re-expanded until its top is a character set again. Bytes that
// end inside a UTF-8 character are kept as a partial sequence and accepted when some stack could
// match a character that starts with them.
#ifndef KESTREL_RUNTIME_GRAMMAR_MATCHER_H_
#define KESTREL_RUNTIME_GRAMMAR_MATCHER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "runtime/grammar/grammar.h"

namespace kestrel {
namespace runtime {
namespace grammar {

using Stack = std::vector<uint32_t>;
using StackSet = std::vector<Stack>;  // sorted, no duplicates

// `out` = the stacks of `in` advanced over code point `c` (empty: `c` cannot come next).
void AdvanceStacks(const Grammar& g, const StackSet& in, uint32_t c, StackSet* out);
// Could some stack of `in` match a character that starts with the partial UTF-8 `partial`?
bool AllowsPartial(const Grammar& g, const StackSet& in, absl::string_view partial);

class Matcher {
 public:
  // At the start of the grammar's root rule. `g` must outlive the matcher.
  explicit Matcher(const Grammar* g);

  // Takes `c` if the grammar allows it next; false leaves the state unchanged.
  bool AcceptCodePoint(uint32_t c);
  // Takes the UTF-8 `bytes` (continuing a partial character from before); false (invalid UTF-8
  // or not allowed) leaves the state unchanged.
  bool AcceptBytes(absl::string_view bytes);
  // Would AcceptBytes(bytes) succeed? (The state is unchanged either way.)
  bool Allows(absl::string_view bytes) const;
  // Is the input so far a complete sentence (and no character half-written)?
  bool accepting() const;
  // Can more input follow?
  bool can_continue() const;

  const Grammar& grammar() const { return *g_; }
  const StackSet& stacks() const { return stacks_; }
  const std::string& partial() const { return partial_; }

 private:
  // The state after `bytes` into *stacks / *partial; false when they are not allowed.
  bool Walk(absl::string_view bytes, StackSet* stacks, std::string* partial) const;

  const Grammar* g_;
  StackSet stacks_;
  std::string partial_;  // bytes of a character not finished yet
  StackSet scratch_;
};

}  // namespace grammar
}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_GRAMMAR_MATCHER_H_
