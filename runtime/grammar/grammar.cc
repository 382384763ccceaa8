#include "runtime/grammar/grammar.h"

#include <algorithm>
#include <functional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace kestrel {
namespace runtime {
namespace grammar {
namespace {

std::vector<Grammar::Range> SortAndMerge(std::vector<Grammar::Range> r) {
  std::sort(r.begin(), r.end());
  std::vector<Grammar::Range> out;
  for (const auto& x : r) {
    if (!out.empty() && x.first <= out.back().second + 1) {
      out.back().second = std::max(out.back().second, x.second);
    } else {
      out.push_back(x);
    }
  }
  return out;
}

}  // namespace

bool Grammar::Matches(uint32_t pos, uint32_t c) const {
  const Element& e = elements_[pos];
  bool in = false;
  for (uint32_t i = 0; i < e.n_ranges && !in; ++i) {
    const Range& r = ranges_[e.first_range + i];
    if (c < r.first) break;  // sorted
    in = c <= r.second;
  }
  return in != e.negated;
}

bool Grammar::MatchesSome(uint32_t pos, uint32_t lo, uint32_t hi) const {
  const Element& e = elements_[pos];
  for (uint32_t i = 0; i < e.n_ranges; ++i) {
    const Range& r = ranges_[e.first_range + i];
    if (e.negated) {
      if (r.first <= lo && hi <= r.second) return false;  // merged: one range covers all or none
    } else if (r.first <= hi && lo <= r.second) {
      return true;
    }
  }
  return e.negated;
}

uint32_t GrammarBuilder::Rule(const std::string& name) {
  for (uint32_t i = 0; i < names_.size(); ++i) {
    if (names_[i] == name) return i;
  }
  names_.push_back(name);
  defined_.push_back(false);
  rules_.emplace_back();
  return static_cast<uint32_t>(names_.size() - 1);
}

uint32_t GrammarBuilder::NewRule(const std::string& base) {
  std::string name;
  for (size_t k = 1;; ++k) {
    // '~' cannot appear in a GBNF name, so a rule the text defines later never collides.
    name = absl::StrCat(base, "~", k);
    if (std::find(names_.begin(), names_.end(), name) == names_.end()) break;
  }
  return Rule(name);
}

void GrammarBuilder::AddAlternative(uint32_t rule, const std::vector<Item>& items) {
  defined_[rule] = true;
  rules_[rule].push_back(items);
}

absl::Status GrammarBuilder::Finish(const std::string& root, Grammar* out) {
  Grammar g;
  g.rule_names_ = names_;
  g.alts_.resize(names_.size());
  for (uint32_t r = 0; r < names_.size(); ++r) {
    if (!defined_[r]) {
      return absl::InvalidArgumentError(absl::StrCat("grammar: rule '", names_[r], "' is used but never defined"));
    }
    for (const auto& alt : rules_[r]) {
      g.alts_[r].push_back(static_cast<uint32_t>(g.elements_.size()));
      for (const Item& it : alt) {
        Element e;
        e.kind = it.kind;
        e.negated = it.negated;
        e.rule = it.rule;
        if (it.kind == Element::kChars) {
          std::vector<Grammar::Range> merged = SortAndMerge(it.ranges);
          e.first_range = static_cast<uint32_t>(g.ranges_.size());
          e.n_ranges = static_cast<uint32_t>(merged.size());
          g.ranges_.insert(g.ranges_.end(), merged.begin(), merged.end());
        }
        g.elements_.push_back(e);
      }
      g.elements_.push_back(Element{});  // kEnd
    }
  }
  auto it = std::find(names_.begin(), names_.end(), root);
  if (it == names_.end()) {
    return absl::InvalidArgumentError(absl::StrCat("grammar: no rule named '", root, "' (the start rule)"));
  }
  g.root_ = static_cast<uint32_t>(it - names_.begin());
  if (auto s = CheckLeftRecursion(g); !s.ok()) return s;
  *out = std::move(g);
  return absl::OkStatus();
}

absl::Status GrammarBuilder::CheckLeftRecursion(const Grammar& g) const {
  const size_t n = g.n_rules();
  // Nullable rules, by fixpoint.
  std::vector<bool> nullable(n, false);
  for (bool changed = true; changed;) {
    changed = false;
    for (uint32_t r = 0; r < n; ++r) {
      if (nullable[r]) continue;
      for (uint32_t pos : g.alternatives(r)) {
        bool all = true;
        for (; g.element(pos).kind != Element::kEnd && all; ++pos) {
          all = g.element(pos).kind == Element::kRule && nullable[g.element(pos).rule];
        }
        if (all) {
          nullable[r] = changed = true;
          break;
        }
      }
    }
  }
  // r -> s when s can be reached in r without consuming a code point.
  std::vector<std::vector<uint32_t>> first(n);
  for (uint32_t r = 0; r < n; ++r) {
    for (uint32_t pos : g.alternatives(r)) {
      for (; g.element(pos).kind == Element::kRule; ++pos) {
        first[r].push_back(g.element(pos).rule);
        if (!nullable[g.element(pos).rule]) break;
      }
    }
  }
  std::vector<int> color(n, 0);
  std::vector<uint32_t> path;
  std::string cycle, start;
  std::function<bool(uint32_t)> dfs = [&](uint32_t r) {
    color[r] = 1;
    path.push_back(r);
    for (uint32_t s : first[r]) {
      if (color[s] == 1) {
        std::vector<std::string> names;
        auto from = std::find(path.begin(), path.end(), s);
        for (auto p = from; p != path.end(); ++p) names.push_back(g.rule_name(*p));
        names.push_back(g.rule_name(s));
        cycle = absl::StrJoin(names, " -> ");
        start = g.rule_name(s);
        return true;
      }
      if (color[s] == 0 && dfs(s)) return true;
    }
    color[r] = 2;
    path.pop_back();
    return false;
  };
  for (uint32_t r = 0; r < n; ++r) {
    if (color[r] == 0 && dfs(r)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "grammar: rule '", start,
          "' is left-recursive (", cycle, "); rewrite it with repetition, e.g. x ::= y (\"+\" y)*"));
    }
  }
  return absl::OkStatus();
}

}  // namespace grammar
}  // namespace runtime
}  // namespace kestrel
