#include "runtime/grammar/gbnf_parser.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/grammar/utf8.h"

namespace kestrel {
namespace runtime {
namespace grammar {
namespace {

using Item = GrammarBuilder::Item;
constexpr uint32_t kMaxRepeat = 1000;  // x{m,n} expands to n copies: keep grammars small

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

class Parser {
 public:
  explicit Parser(absl::string_view text) : t_(text) {}

  absl::StatusOr<Grammar> Parse(const std::string& root) {
    SkipSpace(true);
    while (pos_ < t_.size()) {
      if (auto s = ParseRule(); !s.ok()) return s;
      SkipSpace(true);
    }
    Grammar g;
    if (auto s = b_.Finish(root, &g); !s.ok()) return s;
    return g;
  }

 private:
  absl::Status Error(size_t at, absl::string_view what) const {
    int line = 1, col = 1;
    for (size_t i = 0; i < at && i < t_.size(); ++i) {
      if (t_[i] == '\n') {
        ++line;
        col = 1;
      } else if ((static_cast<uint8_t>(t_[i]) & 0xC0) != 0x80) {
        ++col;
      }
    }
    return absl::InvalidArgumentError(absl::StrFormat("grammar line %d, column %d: %s", line, col, what));
  }
  char Peek(size_t k = 0) const { return pos_ + k < t_.size() ? t_[pos_ + k] : '\0'; }
  bool AtEnd() const { return pos_ >= t_.size(); }

  // Skips blanks and comments; newlines too when `newlines`.
  void SkipSpace(bool newlines) {
    while (!AtEnd()) {
      const char c = Peek();
      if (c == ' ' || c == '\t' || c == '\r' || (newlines && c == '\n')) {
        ++pos_;
      } else if (c == '#') {
        while (!AtEnd() && Peek() != '\n') ++pos_;
      } else {
        break;
      }
    }
  }

  // At a newline (outside parentheses): does the rule go on (the next line starts with `|`)?
  bool ContinuesOnNextLine() {
    size_t save = pos_;
    SkipSpace(true);
    if (Peek() == '|') return true;
    pos_ = save;
    return false;
  }

  absl::StatusOr<std::string> ParseName() {
    const size_t start = pos_;
    while (!AtEnd() && IsNameChar(Peek())) ++pos_;
    if (pos_ == start) return Error(start, "expected a rule name");
    return std::string(t_.substr(start, pos_ - start));
  }

  absl::Status ParseRule() {
    const size_t at = pos_;
    absl::StatusOr<std::string> name = ParseName();
    if (!name.ok()) return name.status();
    SkipSpace(false);
    if (t_.substr(pos_, 3) != "::=") return Error(pos_, absl::StrCat("expected '::=' after rule name '", *name, "'"));
    pos_ += 3;
    const uint32_t rule = b_.Rule(*name);
    if (b_.defined(rule)) return Error(at, absl::StrCat("rule '", *name, "' is defined twice"));
    SkipSpace(true);
    if (auto s = ParseAlternatives(rule, *name, /*nested=*/false); !s.ok()) return s;
    if (!AtEnd() && Peek() != '\n') {
      return Error(pos_, absl::StrCat("unexpected '", std::string(1, Peek()), "' (expected the end of the line)"));
    }
    return absl::OkStatus();
  }

  absl::Status ParseAlternatives(uint32_t rule, const std::string& name, bool nested) {
    while (true) {
      std::vector<Item> seq;
      if (auto s = ParseSequence(name, nested, &seq); !s.ok()) return s;
      b_.AddAlternative(rule, seq);
      if (!nested && Peek() == '\n' && !ContinuesOnNextLine()) return absl::OkStatus();
      if (Peek() != '|') return absl::OkStatus();
      ++pos_;
      SkipSpace(true);
    }
  }

  absl::Status ParseSequence(const std::string& name, bool nested, std::vector<Item>* seq) {
    SkipSpace(nested);
    while (!AtEnd()) {
      const char c = Peek();
      const size_t last = seq->size();
      if (c == '"') {
        if (auto s = ParseLiteral(seq); !s.ok()) return s;
      } else if (c == '[') {
        absl::StatusOr<Item> it = ParseClass();
        if (!it.ok()) return it.status();
        seq->push_back(*it);
      } else if (c == '.') {
        ++pos_;
        seq->push_back(GrammarBuilder::Chars({{0, 0x10FFFF}}));
      } else if (c == '(') {
        const size_t open = pos_++;
        const uint32_t group = b_.NewRule(name);
        SkipSpace(true);
        if (auto s = ParseAlternatives(group, name, true); !s.ok()) return s;
        SkipSpace(true);
        if (Peek() != ')') return Error(open, "'(' is never closed");
        ++pos_;
        seq->push_back(GrammarBuilder::Ref(group));
      } else if (IsNameChar(c)) {
        const size_t at = pos_;
        absl::StatusOr<std::string> ref = ParseName();
        if (!ref.ok()) return ref.status();
        SkipSpace(false);
        if (t_.substr(pos_, 3) == "::=") return Error(at, "expected the end of the line before a new rule");
        seq->push_back(GrammarBuilder::Ref(b_.Rule(*ref)));
      } else if (c == '*' || c == '+' || c == '?' || c == '{') {
        return Error(pos_, absl::StrCat("'", std::string(1, c), "' has nothing to repeat"));
      } else {
        break;  // '|', ')', newline, or an error the caller reports
      }
      if (auto s = ParseRepetition(name, last, seq); !s.ok()) return s;
      SkipSpace(nested);
    }
    if (!AtEnd() && Peek() != '|' && Peek() != '\n' && !(nested && Peek() == ')')) {
      return Error(pos_, absl::StrCat("unexpected '", std::string(1, Peek()), "'"));
    }
    return absl::OkStatus();
  }

  // One code point of a literal or class, with escapes.
  absl::StatusOr<uint32_t> ParseChar() {
    const size_t at = pos_;
    if (Peek() != '\\') {
      size_t len = 1;
      while (pos_ + len < t_.size() && (static_cast<uint8_t>(t_[pos_ + len]) & 0xC0) == 0x80) ++len;
      Utf8Decoded d = DecodeUtf8(t_.substr(pos_, len));
      if (!d.valid || d.code_points.size() != 1) return Error(at, "invalid UTF-8");
      pos_ += len;
      return d.code_points[0];
    }
    const char e = Peek(1);
    pos_ += 2;
    switch (e) {
      case 'n': return uint32_t{'\n'};
      case 'r': return uint32_t{'\r'};
      case 't': return uint32_t{'\t'};
      case '\\': case '"': case '[': case ']': case '-': case '/': case '^': case '\'':
        return static_cast<uint32_t>(e);
      case 'x': case 'u': case 'U': {
        const int n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
        uint32_t v = 0;
        for (int i = 0; i < n; ++i) {
          const char h = Peek();
          int d = (h >= '0' && h <= '9') ? h - '0' : (h >= 'a' && h <= 'f') ? h - 'a' + 10
                : (h >= 'A' && h <= 'F') ? h - 'A' + 10 : -1;
          if (d < 0) return Error(at, absl::StrFormat("'\\%c' needs %d hex digits", e, n));
          v = v * 16 + d;
          ++pos_;
        }
        if (v > 0x10FFFF) return Error(at, "code point past U+10FFFF");
        return v;
      }
      default:
        return Error(at, absl::StrCat("unknown escape '\\", std::string(1, e), "'"));
    }
  }

  absl::Status ParseLiteral(std::vector<Item>* seq) {
    const size_t open = pos_++;
    while (true) {
      if (AtEnd() || Peek() == '\n') return Error(open, "string literal is never closed");
      if (Peek() == '"') break;
      absl::StatusOr<uint32_t> c = ParseChar();
      if (!c.ok()) return c.status();
      seq->push_back(GrammarBuilder::Chars({{*c, *c}}));
    }
    ++pos_;  // a repetition after it applies to the whole literal (ParseRepetition)
    return absl::OkStatus();
  }

  absl::StatusOr<Item> ParseClass() {
    const size_t open = pos_++;
    bool negated = false;
    if (Peek() == '^') {
      negated = true;
      ++pos_;
    }
    std::vector<Grammar::Range> ranges;
    while (true) {
      if (AtEnd() || Peek() == '\n') return Error(open, "character class is never closed");
      if (Peek() == ']') break;
      const size_t at = pos_;
      absl::StatusOr<uint32_t> lo = ParseChar();
      if (!lo.ok()) return lo.status();
      uint32_t hi = *lo;
      if (Peek() == '-' && Peek(1) != ']') {
        ++pos_;
        absl::StatusOr<uint32_t> h = ParseChar();
        if (!h.ok()) return h.status();
        if (*h < *lo) return Error(at, "character range is reversed (end before start)");
        hi = *h;
      }
      ranges.emplace_back(*lo, hi);
    }
    ++pos_;
    if (ranges.empty() && !negated) return Error(open, "empty character class matches nothing");
    return GrammarBuilder::Chars(std::move(ranges), negated);
  }

  absl::StatusOr<uint32_t> ParseNumber() {
    const size_t at = pos_;
    uint64_t v = 0;
    while (Peek() >= '0' && Peek() <= '9') {
      v = v * 10 + (Peek() - '0');
      if (v > kMaxRepeat) return Error(at, absl::StrFormat("repetition count above %u", kMaxRepeat));
      ++pos_;
    }
    if (pos_ == at) return Error(at, "expected a number");
    return static_cast<uint32_t>(v);
  }

  // Applies a repetition suffix to the items seq[last, end) (one element, or a literal's chars).
  absl::Status ParseRepetition(const std::string& name, size_t last, std::vector<Item>* seq) {
    const char c = Peek();
    if (c != '*' && c != '+' && c != '?' && c != '{') return absl::OkStatus();
    const size_t at = pos_;
    uint32_t min = 0, max = UINT32_MAX;  // UINT32_MAX: unbounded
    ++pos_;
    if (c == '+') min = 1;
    if (c == '?') max = 1;
    if (c == '{') {
      absl::StatusOr<uint32_t> m = ParseNumber();
      if (!m.ok()) return m.status();
      min = max = *m;
      if (Peek() == ',') {
        ++pos_;
        max = UINT32_MAX;
        if (Peek() != '}') {
          absl::StatusOr<uint32_t> n = ParseNumber();
          if (!n.ok()) return n.status();
          if (*n < min) return Error(at, "repetition {m,n} with n < m");
          max = *n;
        }
      }
      if (Peek() != '}') return Error(at, "'{' is never closed");
      ++pos_;
    }
    std::vector<Item> body(seq->begin() + last, seq->end());
    seq->resize(last);
    if (body.empty()) return Error(at, "nothing to repeat");
    // One element to repeat (a literal of several chars becomes a rule).
    Item unit = body[0];
    if (body.size() > 1) {
      const uint32_t r = b_.NewRule(name);
      b_.AddAlternative(r, body);
      unit = GrammarBuilder::Ref(r);
    }
    for (uint32_t i = 0; i < min; ++i) seq->push_back(unit);
    if (max == UINT32_MAX) {
      const uint32_t star = b_.NewRule(name);  // star ::= unit star | (empty)
      b_.AddAlternative(star, {unit, GrammarBuilder::Ref(star)});
      b_.AddAlternative(star, {});
      seq->push_back(GrammarBuilder::Ref(star));
    } else if (max > min) {
      uint32_t tail = 0;  // opt_k ::= unit opt_{k-1} | (empty)
      for (uint32_t k = 0; k < max - min; ++k) {
        const uint32_t opt = b_.NewRule(name);
        std::vector<Item> alt{unit};
        if (k > 0) alt.push_back(GrammarBuilder::Ref(tail));
        b_.AddAlternative(opt, alt);
        b_.AddAlternative(opt, {});
        tail = opt;
      }
      seq->push_back(GrammarBuilder::Ref(tail));
    }
    return absl::OkStatus();
  }

  absl::string_view t_;
  size_t pos_ = 0;
  GrammarBuilder b_;
};

}  // namespace

absl::StatusOr<Grammar> ParseGbnf(absl::string_view text, const std::string& root) {
  return Parser(text).Parse(root);
}

}  // namespace grammar
}  // namespace runtime
}  // namespace kestrel
