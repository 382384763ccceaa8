#include "runtime/grammar/matcher.h"

#include <algorithm>
#include <utility>

#include "runtime/grammar/utf8.h"

namespace kestrel {
namespace runtime {
namespace grammar {
namespace {

// Expands `stack` until its top is a character set (or it is empty) and adds the results to
// `out`. Finished frames are popped first, so right recursion (x* ::= x x* | ) keeps a stack
// flat. Terminates because the grammar has no left recursion (GrammarBuilder::Finish).
void Expand(const Grammar& g, Stack stack, StackSet* out) {
  while (!stack.empty() && g.element(stack.back()).kind == Element::kEnd) stack.pop_back();
  if (stack.empty() || g.element(stack.back()).kind == Element::kChars) {
    out->push_back(std::move(stack));
    return;
  }
  const uint32_t pos = stack.back();
  const uint32_t rule = g.element(pos).rule;
  stack.back() = pos + 1;
  if (g.element(pos + 1).kind == Element::kEnd) stack.pop_back();  // a tail call
  const std::vector<uint32_t>& alts = g.alternatives(rule);
  for (size_t i = 0; i < alts.size(); ++i) {
    Stack s = i + 1 == alts.size() ? std::move(stack) : stack;
    s.push_back(alts[i]);
    Expand(g, std::move(s), out);
  }
}

void Normalize(StackSet* s) {
  std::sort(s->begin(), s->end());
  s->erase(std::unique(s->begin(), s->end()), s->end());
}

}  // namespace

void AdvanceStacks(const Grammar& g, const StackSet& in, uint32_t c, StackSet* out) {
  out->clear();
  for (const Stack& st : in) {
    if (st.empty() || !g.Matches(st.back(), c)) continue;
    Stack next = st;
    next.back() += 1;
    Expand(g, std::move(next), out);
  }
  Normalize(out);
}

bool AllowsPartial(const Grammar& g, const StackSet& in, absl::string_view partial) {
  uint32_t lo, hi;
  PartialRange(partial, &lo, &hi);
  if (lo > hi) return false;
  for (const Stack& st : in) {
    if (!st.empty() && g.MatchesSome(st.back(), lo, hi)) return true;
  }
  return false;
}

Matcher::Matcher(const Grammar* g) : g_(g) {
  for (uint32_t alt : g->alternatives(g->root())) {
    Stack s{alt};
    Expand(*g, std::move(s), &stacks_);
  }
  Normalize(&stacks_);
}

bool Matcher::AcceptCodePoint(uint32_t c) {
  if (!partial_.empty()) return false;
  AdvanceStacks(*g_, stacks_, c, &scratch_);
  if (scratch_.empty()) return false;
  stacks_.swap(scratch_);
  return true;
}

bool Matcher::Walk(absl::string_view bytes, StackSet* stacks, std::string* partial) const {
  const Utf8Decoded d = DecodeUtf8(partial_ + std::string(bytes));
  if (!d.valid) return false;
  StackSet cur = stacks_, next;
  for (uint32_t c : d.code_points) {
    AdvanceStacks(*g_, cur, c, &next);
    if (next.empty()) return false;
    cur.swap(next);
  }
  if (!d.partial.empty() && !AllowsPartial(*g_, cur, d.partial)) return false;
  *stacks = std::move(cur);
  *partial = d.partial;
  return true;
}

bool Matcher::AcceptBytes(absl::string_view bytes) {
  StackSet stacks;
  std::string partial;
  if (!Walk(bytes, &stacks, &partial)) return false;
  stacks_ = std::move(stacks);
  partial_ = std::move(partial);
  return true;
}

bool Matcher::Allows(absl::string_view bytes) const {
  StackSet stacks;
  std::string partial;
  return Walk(bytes, &stacks, &partial);
}

bool Matcher::accepting() const {
  if (!partial_.empty()) return false;
  for (const Stack& s : stacks_) {
    if (s.empty()) return true;
  }
  return false;
}

bool Matcher::can_continue() const {
  for (const Stack& s : stacks_) {
    if (!s.empty()) return true;
  }
  return false;
}

}  // namespace grammar
}  // namespace runtime
}  // namespace kestrel
