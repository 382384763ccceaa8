// runtime/grammar/: constrained output. A GBNF grammar (llama.cpp's format) or a JSON-schema
// subset compiled to one becomes a Grammar; a Matcher walks it over Unicode code points; a
// TokenVocab (every token's text decoded once) and TokenMask tell the sampler which tokens may
// come next; GrammarConstraint ties them together for one sequence.
//
// This folder owns grammar text, its compiled form and the automaton. It knows nothing of models,
// tokenizers, sessions or devices: a vocabulary comes in as token texts, logits as a float span.
//
// Thread-safety: a Grammar and a TokenVocab are immutable once built and shared between
// sequences; a Matcher or GrammarConstraint belongs to one sequence.
#ifndef KESTREL_RUNTIME_GRAMMAR_GRAMMAR_H_
#define KESTREL_RUNTIME_GRAMMAR_GRAMMAR_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace kestrel {
namespace runtime {
namespace grammar {

// One element of an alternative: a set of code points, a reference to a rule, or the end of the
// alternative (each alternative ends with one, so a position's successor is position + 1).
struct Element {
  enum Kind : uint8_t { kChars = 0, kRule = 1, kEnd = 2 };
  Kind kind = kEnd;
  bool negated = false;         // kChars: matches code points outside the ranges
  uint32_t rule = 0;            // kRule: the rule's index
  uint32_t first_range = 0;     // kChars: ranges_[first_range, first_range + n_ranges)
  uint32_t n_ranges = 0;
};

// A compiled grammar: rules of alternatives of elements, flattened into one element array so a
// matcher position is one index. Built by GrammarBuilder (or ParseGbnf), then validated.
class Grammar {
 public:
  using Range = std::pair<uint32_t, uint32_t>;  // inclusive code point range

  uint32_t root() const { return root_; }
  size_t n_rules() const { return rule_names_.size(); }
  const std::string& rule_name(uint32_t rule) const { return rule_names_[rule]; }
  // Index of each alternative's first element.
  const std::vector<uint32_t>& alternatives(uint32_t rule) const { return alts_[rule]; }
  const Element& element(uint32_t pos) const { return elements_[pos]; }
  // Does the kChars element at `pos` match code point `c`?
  bool Matches(uint32_t pos, uint32_t c) const;
  // Does it match some code point in [lo, hi]? (A partial UTF-8 sequence could complete there.)
  bool MatchesSome(uint32_t pos, uint32_t lo, uint32_t hi) const;

 private:
  friend class GrammarBuilder;
  std::vector<std::string> rule_names_;
  std::vector<std::vector<uint32_t>> alts_;
  std::vector<Element> elements_;
  std::vector<Range> ranges_;  // sorted and merged per element
  uint32_t root_ = 0;
};

// Builds a Grammar rule by rule. Rule ids come from Rule(name) (declared on first use, defined
// by AddAlternative); Finish() checks that every used rule is defined, the root exists, and no
// rule is left-recursive (the matcher expands rules eagerly and would not terminate).
class GrammarBuilder {
 public:
  struct Item {  // one element of an alternative being added
    Element::Kind kind;
    bool negated;
    uint32_t rule;
    std::vector<Grammar::Range> ranges;
  };
  static Item Chars(std::vector<Grammar::Range> ranges, bool negated = false) {
    return {Element::kChars, negated, 0, std::move(ranges)};
  }
  static Item Ref(uint32_t rule) { return {Element::kRule, false, rule, {}}; }

  // The id of rule `name`, declaring it if new.
  uint32_t Rule(const std::string& name);
  // A fresh rule named after `base` (for groups and repetitions).
  uint32_t NewRule(const std::string& base);
  void AddAlternative(uint32_t rule, const std::vector<Item>& items);
  bool defined(uint32_t rule) const { return defined_[rule]; }
  // INVALID_ARGUMENT naming the undefined or left-recursive rule, or the missing root.
  absl::Status Finish(const std::string& root, Grammar* out);

 private:
  absl::Status CheckLeftRecursion(const Grammar& g) const;
  std::vector<std::string> names_;
  std::vector<bool> defined_;
  std::vector<std::vector<std::vector<Item>>> rules_;
};

}  // namespace grammar
}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_GRAMMAR_GRAMMAR_H_
