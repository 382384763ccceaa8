#include "runtime/tokenizer/chat/jinja_parser.h"

#include <cctype>
#include <cstdlib>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace kestrel::runtime::jinja {
namespace {

// ---------------------------------------------------------------------------------------------
// Template segments: text and tags, after whitespace control.

struct Segment {
  enum class Kind { kText, kVar, kBlock, kComment } kind;
  std::string content;
  int line = 1;
  bool strip_left = false;   // {{- {%- {#-
  bool strip_right = false;  // -}} -%} -#}
  bool keep_left = false;    // {%+ : no lstrip_blocks
};

absl::Status SyntaxError(int line, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("line ", line, ": ", what));
}

// Finds the end of a {{ }} or {% %} tag starting at `from` (after the opening), skipping quoted
// strings; npos if unterminated.
size_t FindClose(absl::string_view src, size_t from, absl::string_view close) {
  char quote = 0;
  for (size_t i = from; i < src.size(); ++i) {
    const char c = src[i];
    if (quote != 0) {
      if (c == '\\') ++i;
      else if (c == quote) quote = 0;
      continue;
    }
    if (c == '\'' || c == '"') quote = c;
    else if (src.substr(i, close.size()) == close) return i;
  }
  return absl::string_view::npos;
}

int CountLines(absl::string_view s) {
  int n = 0;
  for (const char c : s) n += c == '\n';
  return n;
}

absl::StatusOr<std::vector<Segment>> Lex(absl::string_view src) {
  std::vector<Segment> out;
  int line = 1;
  size_t pos = 0;
  while (pos < src.size()) {
    size_t open = pos;
    while (true) {
      open = src.find('{', open);
      if (open == absl::string_view::npos || open + 1 >= src.size()) {
        open = absl::string_view::npos;
        break;
      }
      const char n = src[open + 1];
      if (n == '{' || n == '%' || n == '#') break;
      ++open;
    }
    const size_t text_end = open == absl::string_view::npos ? src.size() : open;
    if (text_end > pos) {
      out.push_back({Segment::Kind::kText, std::string(src.substr(pos, text_end - pos)), line});
      line += CountLines(src.substr(pos, text_end - pos));
    }
    if (open == absl::string_view::npos) break;
    Segment seg;
    seg.line = line;
    const char type = src[open + 1];
    absl::string_view close = type == '{' ? "}}" : type == '%' ? "%}" : "#}";
    seg.kind = type == '{' ? Segment::Kind::kVar : type == '%' ? Segment::Kind::kBlock : Segment::Kind::kComment;
    size_t body = open + 2;
    if (body < src.size() && src[body] == '-') {
      seg.strip_left = true;
      ++body;
    } else if (body < src.size() && src[body] == '+') {
      seg.keep_left = true;
      ++body;
    }
    const size_t end = type == '#' ? src.find(close, body) : FindClose(src, body, close);
    if (end == absl::string_view::npos) return SyntaxError(line, absl::StrCat("unterminated '{", std::string(1, type), "' tag"));
    size_t content_end = end;
    if (content_end > body && src[content_end - 1] == '-') {
      seg.strip_right = true;
      --content_end;
    } else if (content_end > body && src[content_end - 1] == '+') {
      --content_end;
    }
    seg.content = std::string(absl::StripAsciiWhitespace(src.substr(body, content_end - body)));
    line += CountLines(src.substr(open, end + 2 - open));
    out.push_back(std::move(seg));
    pos = end + 2;
  }
  // Whitespace control, with Hugging Face's trim_blocks and lstrip_blocks. lstrip_blocks looks at
  // the source line (what precedes the tag on it), so it is decided on the unmodified texts first.
  std::vector<bool> lstrip(out.size(), false);
  for (size_t i = 1; i < out.size(); ++i) {
    const Segment& s = out[i];
    if (s.kind == Segment::Kind::kText || s.kind == Segment::Kind::kVar || s.strip_left || s.keep_left) continue;
    if (out[i - 1].kind != Segment::Kind::kText) continue;
    const std::string& prev = out[i - 1].content;
    const size_t nl = prev.rfind('\n');
    const size_t from = nl == std::string::npos ? 0 : nl + 1;
    lstrip[i] = (nl != std::string::npos || i == 1) && prev.find_first_not_of(" \t", from) == std::string::npos;
  }
  for (size_t i = 0; i < out.size(); ++i) {
    Segment& s = out[i];
    if (s.kind == Segment::Kind::kText) continue;
    const bool block_like = s.kind != Segment::Kind::kVar;
    if (i > 0 && out[i - 1].kind == Segment::Kind::kText) {
      std::string& prev = out[i - 1].content;
      if (s.strip_left) {
        prev.erase(prev.find_last_not_of(" \t\r\n\f\v") + 1);
      } else if (lstrip[i]) {
        prev.erase(prev.find_last_not_of(" \t") + 1);
      }
    }
    if (i + 1 < out.size() && out[i + 1].kind == Segment::Kind::kText) {
      std::string& next = out[i + 1].content;
      if (s.strip_right) {
        const size_t keep = next.find_first_not_of(" \t\r\n\f\v");
        next.erase(0, keep == std::string::npos ? next.size() : keep);
      } else if (block_like) {
        if (absl::StartsWith(next, "\n")) next.erase(0, 1);
        else if (absl::StartsWith(next, "\r\n")) next.erase(0, 2);
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Expression tokens and parser.

struct Token {
  enum class Kind { kName, kInt, kFloat, kString, kOp, kEnd } kind;
  std::string text;
  Value value;
};

absl::StatusOr<std::vector<Token>> TokenizeExpr(absl::string_view s, int line) {
  std::vector<Token> out;
  size_t i = 0;
  while (i < s.size()) {
    const char c = s[i];
    if (absl::ascii_isspace(static_cast<unsigned char>(c))) {
      ++i;
      continue;
    }
    if (absl::ascii_isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t j = i;
      while (j < s.size() && (absl::ascii_isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_')) ++j;
      out.push_back({Token::Kind::kName, std::string(s.substr(i, j - i)), {}});
      i = j;
      continue;
    }
    if (absl::ascii_isdigit(static_cast<unsigned char>(c))) {
      size_t j = i;
      while (j < s.size() && absl::ascii_isdigit(static_cast<unsigned char>(s[j]))) ++j;
      bool is_float = false;
      if (j + 1 < s.size() && s[j] == '.' && absl::ascii_isdigit(static_cast<unsigned char>(s[j + 1]))) {
        is_float = true;
        ++j;
        while (j < s.size() && absl::ascii_isdigit(static_cast<unsigned char>(s[j]))) ++j;
      }
      const std::string text(s.substr(i, j - i));
      out.push_back({is_float ? Token::Kind::kFloat : Token::Kind::kInt, text,
                     is_float ? Value::Float(std::strtod(text.c_str(), nullptr))
                              : Value::Int(std::strtoll(text.c_str(), nullptr, 10))});
      i = j;
      continue;
    }
    if (c == '\'' || c == '"') {
      std::string str;
      size_t j = i + 1;
      for (; j < s.size() && s[j] != c; ++j) {
        if (s[j] != '\\' || j + 1 >= s.size()) {
          str.push_back(s[j]);
          continue;
        }
        const char e = s[++j];
        switch (e) {
          case 'n': str.push_back('\n'); break;
          case 't': str.push_back('\t'); break;
          case 'r': str.push_back('\r'); break;
          case '\\': str.push_back('\\'); break;
          case '\'': str.push_back('\''); break;
          case '"': str.push_back('"'); break;
          default: str.push_back('\\'); str.push_back(e);
        }
      }
      if (j >= s.size()) return SyntaxError(line, "unterminated string literal");
      out.push_back({Token::Kind::kString, "", Value::Str(std::move(str))});
      i = j + 1;
      continue;
    }
    static constexpr absl::string_view kTwo[] = {"==", "!=", "<=", ">=", "//", "**"};
    bool two = false;
    for (absl::string_view op : kTwo) {
      if (s.substr(i, 2) == op) {
        out.push_back({Token::Kind::kOp, std::string(op), {}});
        i += 2;
        two = true;
        break;
      }
    }
    if (two) continue;
    if (absl::string_view("()[]{}.,:|~+-*/%<>=").find(c) == absl::string_view::npos) {
      return SyntaxError(line, absl::StrCat("unexpected character '", std::string(1, c), "' in an expression"));
    }
    out.push_back({Token::Kind::kOp, std::string(1, c), {}});
    ++i;
  }
  // Operator chains (a + b + ...) nest as deep as they are long when evaluated; real templates stay
  // far below this bound, which keeps evaluation off the end of any thread's stack.
  if (out.size() > 1000) return SyntaxError(line, "a tag longer than 1000 tokens");
  out.push_back({Token::Kind::kEnd, "", {}});
  return out;
}

class ExprParser {
 public:
  ExprParser(std::vector<Token> tokens, int line) : t_(std::move(tokens)), line_(line) {}

  absl::StatusOr<ExprPtr> ParseAll() {
    auto e = ParseExpression();
    if (!e.ok()) return e;
    if (Peek().kind != Token::Kind::kEnd) return Error(absl::StrCat("unexpected '", Describe(Peek()), "'"));
    return e;
  }
  // For statements: the parser stops at a top-level keyword the caller handles.
  absl::StatusOr<ExprPtr> ParseExpression(bool allow_ternary = true) {
    // Nesting is bounded so that a hostile template cannot exhaust the stack.
    if (depth_ >= kMaxDepth) return Error("expressions nested deeper than 100 levels");
    ++depth_;
    auto e = ParseExpressionBody(allow_ternary);
    --depth_;
    return e;
  }
  absl::StatusOr<ExprPtr> ParseExpressionBody(bool allow_ternary) {
    auto e = ParseOr();
    if (!e.ok() || !allow_ternary || !IsName("if")) return e;
    Next();
    auto cond = ParseOr();
    if (!cond.ok()) return cond;
    ExprPtr other;
    if (IsName("else")) {
      Next();
      auto o = ParseExpression();
      if (!o.ok()) return o;
      other = std::move(*o);
    }
    auto t = Make(Expr::Kind::kTernary);
    t->args.push_back(std::move(*e));
    t->args.push_back(std::move(*cond));
    t->args.push_back(std::move(other));
    return t;
  }
  const Token& Peek(size_t ahead = 0) const { return t_[std::min(pos_ + ahead, t_.size() - 1)]; }
  const Token& Next() { return t_[std::min(pos_++, t_.size() - 1)]; }
  bool IsName(absl::string_view n, size_t ahead = 0) const {
    return Peek(ahead).kind == Token::Kind::kName && Peek(ahead).text == n;
  }
  bool IsOp(absl::string_view op) const { return Peek().kind == Token::Kind::kOp && Peek().text == op; }
  absl::Status Error(absl::string_view what) const { return SyntaxError(line_, what); }
  absl::Status Expect(absl::string_view op) {
    if (!IsOp(op)) return Error(absl::StrCat("expected '", op, "', found '", Describe(Peek()), "'"));
    Next();
    return absl::OkStatus();
  }

 private:
  static std::string Describe(const Token& t) {
    if (t.kind == Token::Kind::kEnd) return "end of tag";
    if (t.kind == Token::Kind::kString) return t.value.Repr();
    return t.text;
  }
  ExprPtr Make(Expr::Kind kind) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = line_;
    return e;
  }
  ExprPtr Binary(std::string op, ExprPtr a, ExprPtr b) {
    auto e = Make(Expr::Kind::kBinary);
    e->name = std::move(op);
    e->args.push_back(std::move(a));
    e->args.push_back(std::move(b));
    return e;
  }

  absl::StatusOr<ExprPtr> ParseOr() {
    auto a = ParseAnd();
    while (a.ok() && IsName("or")) {
      Next();
      auto b = ParseAnd();
      if (!b.ok()) return b;
      a = Binary("or", std::move(*a), std::move(*b));
    }
    return a;
  }
  absl::StatusOr<ExprPtr> ParseAnd() {
    auto a = ParseNot();
    while (a.ok() && IsName("and")) {
      Next();
      auto b = ParseNot();
      if (!b.ok()) return b;
      a = Binary("and", std::move(*a), std::move(*b));
    }
    return a;
  }
  absl::StatusOr<ExprPtr> ParseNot() {
    if (!IsName("not")) return ParseCompare();
    Next();
    if (++unary_depth_ > kMaxDepth) return Error("operators nested deeper than 100 levels");
    auto x = ParseNot();
    --unary_depth_;
    if (!x.ok()) return x;
    auto e = Make(Expr::Kind::kUnary);
    e->name = "not";
    e->args.push_back(std::move(*x));
    return e;
  }
  absl::StatusOr<ExprPtr> ParseCompare() {
    auto a = ParseMath1();
    while (a.ok()) {
      std::string op;
      if (Peek().kind == Token::Kind::kOp &&
          (IsOp("==") || IsOp("!=") || IsOp("<") || IsOp(">") || IsOp("<=") || IsOp(">="))) {
        op = Next().text;
      } else if (IsName("in")) {
        Next();
        op = "in";
      } else if (IsName("not") && IsName("in", 1)) {
        Next();
        Next();
        op = "not in";
      } else {
        break;
      }
      auto b = ParseMath1();
      if (!b.ok()) return b;
      a = Binary(op, std::move(*a), std::move(*b));
    }
    return a;
  }
  absl::StatusOr<ExprPtr> ParseMath1() {
    auto a = ParseConcat();
    while (a.ok() && (IsOp("+") || IsOp("-"))) {
      const std::string op = Next().text;
      auto b = ParseConcat();
      if (!b.ok()) return b;
      a = Binary(op, std::move(*a), std::move(*b));
    }
    return a;
  }
  absl::StatusOr<ExprPtr> ParseConcat() {
    auto a = ParseMath2();
    while (a.ok() && IsOp("~")) {
      Next();
      auto b = ParseMath2();
      if (!b.ok()) return b;
      a = Binary("~", std::move(*a), std::move(*b));
    }
    return a;
  }
  absl::StatusOr<ExprPtr> ParseMath2() {
    auto a = ParseUnary();
    while (a.ok() && (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%"))) {
      const std::string op = Next().text;
      auto b = ParseUnary();
      if (!b.ok()) return b;
      a = Binary(op, std::move(*a), std::move(*b));
    }
    return a;
  }
  absl::StatusOr<ExprPtr> ParseUnary() {
    if (IsOp("-") || IsOp("+")) {
      const std::string op = Next().text;
      if (++unary_depth_ > kMaxDepth) return Error("operators nested deeper than 100 levels");
      auto x = ParseUnary();
      --unary_depth_;
      if (!x.ok() || op == "+") return x;
      auto e = Make(Expr::Kind::kUnary);
      e->name = "-";
      e->args.push_back(std::move(*x));
      return e;
    }
    auto p = ParsePostfix();
    if (!p.ok()) return p;
    return ParseFiltersAndTests(std::move(*p));
  }
  // Call arguments after '(' up to ')': positional ones first, then name=value ones.
  absl::Status ParseArgs(Expr* e) {
    while (!IsOp(")")) {
      if (Peek().kind == Token::Kind::kName && Peek(1).kind == Token::Kind::kOp && Peek(1).text == "=") {
        e->kwarg_names.push_back(Next().text);
        Next();
      } else if (!e->kwarg_names.empty()) {
        return Error("a positional argument follows a keyword argument");
      }
      auto a = ParseExpression();
      if (!a.ok()) return a.status();
      e->args.push_back(std::move(*a));
      if (!IsOp(",")) break;
      Next();
    }
    return Expect(")");
  }
  absl::StatusOr<ExprPtr> ParseFiltersAndTests(ExprPtr x) {
    while (true) {
      if (IsOp("|")) {
        Next();
        if (Peek().kind != Token::Kind::kName) return Error("expected a filter name after '|'");
        auto f = Make(Expr::Kind::kFilter);
        f->name = Next().text;
        f->args.push_back(std::move(x));
        if (IsOp("(")) {
          Next();
          if (auto s = ParseArgs(f.get()); !s.ok()) return s;
        }
        x = std::move(f);
      } else if (IsName("is")) {
        Next();
        auto t = Make(Expr::Kind::kTest);
        if (IsName("not")) {
          Next();
          t->negated = true;
        }
        if (Peek().kind != Token::Kind::kName) return Error("expected a test name after 'is'");
        t->name = Next().text;
        t->args.push_back(std::move(x));
        if (IsOp("(")) {
          Next();
          if (auto s = ParseArgs(t.get()); !s.ok()) return s;
        } else if (Peek().kind == Token::Kind::kString || Peek().kind == Token::Kind::kInt ||
                   (Peek().kind == Token::Kind::kName && !IsName("and") && !IsName("or") && !IsName("else") &&
                    !IsName("if") && !IsName("in") && !IsName("not") && !IsName("is"))) {
          auto arg = ParsePostfix();  // `is equalto 'x'`, `is divisibleby 3`
          if (!arg.ok()) return arg;
          t->args.push_back(std::move(*arg));
        }
        x = std::move(t);
      } else {
        return x;
      }
    }
  }
  absl::StatusOr<ExprPtr> ParsePostfix() {
    auto p = ParsePrimary();
    while (p.ok()) {
      if (IsOp(".")) {
        Next();
        if (Peek().kind != Token::Kind::kName && Peek().kind != Token::Kind::kInt) {
          return Error("expected an attribute name after '.'");
        }
        auto e = Make(Expr::Kind::kGetAttr);
        e->name = Next().text;
        e->args.push_back(std::move(*p));
        p = std::move(e);
      } else if (IsOp("[")) {
        Next();
        ExprPtr start, stop;
        bool slice = false;
        if (!IsOp(":")) {
          auto s = ParseExpression();
          if (!s.ok()) return s;
          start = std::move(*s);
        }
        ExprPtr step;
        if (IsOp(":")) {
          slice = true;
          Next();
          if (!IsOp("]") && !IsOp(":")) {
            auto s = ParseExpression();
            if (!s.ok()) return s;
            stop = std::move(*s);
          }
          if (IsOp(":")) {
            Next();
            if (!IsOp("]")) {
              auto s = ParseExpression();
              if (!s.ok()) return s;
              step = std::move(*s);
            }
          }
        }
        if (auto s = Expect("]"); !s.ok()) return s;
        auto e = Make(slice ? Expr::Kind::kSlice : Expr::Kind::kGetItem);
        e->args.push_back(std::move(*p));
        e->args.push_back(std::move(start));
        if (slice) {
          e->args.push_back(std::move(stop));
          e->args.push_back(std::move(step));
        }
        p = std::move(e);
      } else if (IsOp("(")) {
        Next();
        auto e = Make(Expr::Kind::kCall);
        e->args.push_back(std::move(*p));
        if (auto s = ParseArgs(e.get()); !s.ok()) return s;
        p = std::move(e);
      } else {
        break;
      }
    }
    return p;
  }
  absl::StatusOr<ExprPtr> ParsePrimary() {
    const Token& t = Peek();
    if (t.kind == Token::Kind::kInt || t.kind == Token::Kind::kFloat || t.kind == Token::Kind::kString) {
      auto e = Make(Expr::Kind::kLiteral);
      e->literal = Next().value;
      // Adjacent string literals concatenate, as in Python.
      while (e->literal.is_string() && Peek().kind == Token::Kind::kString) {
        e->literal = Value::Str(e->literal.str() + Next().value.str());
      }
      return e;
    }
    if (t.kind == Token::Kind::kName) {
      const std::string n = Next().text;
      auto e = Make(Expr::Kind::kLiteral);
      if (n == "true" || n == "True") e->literal = Value::Bool(true);
      else if (n == "false" || n == "False") e->literal = Value::Bool(false);
      else if (n == "none" || n == "None") e->literal = Value::None();
      else {
        e->kind = Expr::Kind::kName;
        e->name = n;
      }
      return e;
    }
    if (IsOp("(")) {
      Next();
      auto inner = ParseExpression();
      if (!inner.ok()) return inner;
      if (IsOp(",")) {  // a tuple: a list for our purposes
        auto list = Make(Expr::Kind::kList);
        list->args.push_back(std::move(*inner));
        while (IsOp(",")) {
          Next();
          if (IsOp(")")) break;
          auto item = ParseExpression();
          if (!item.ok()) return item;
          list->args.push_back(std::move(*item));
        }
        inner = std::move(list);
      }
      if (auto s = Expect(")"); !s.ok()) return s;
      return inner;
    }
    if (IsOp("[")) {
      Next();
      auto list = Make(Expr::Kind::kList);
      while (!IsOp("]")) {
        auto item = ParseExpression();
        if (!item.ok()) return item;
        list->args.push_back(std::move(*item));
        if (!IsOp(",")) break;
        Next();
      }
      if (auto s = Expect("]"); !s.ok()) return s;
      return list;
    }
    if (IsOp("{")) {
      Next();
      auto dict = Make(Expr::Kind::kDict);
      while (!IsOp("}")) {
        auto key = ParseExpression();
        if (!key.ok()) return key;
        if (auto s = Expect(":"); !s.ok()) return s;
        auto value = ParseExpression();
        if (!value.ok()) return value;
        dict->args.push_back(std::move(*key));
        dict->args.push_back(std::move(*value));
        if (!IsOp(",")) break;
        Next();
      }
      if (auto s = Expect("}"); !s.ok()) return s;
      return dict;
    }
    return Error(absl::StrCat("unexpected '", Describe(t), "'"));
  }

  static constexpr int kMaxDepth = 100;
  std::vector<Token> t_;
  size_t pos_ = 0;
  int line_;
  int depth_ = 0;
  int unary_depth_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Statements.

class StatementParser {
 public:
  explicit StatementParser(std::vector<Segment> segments) : s_(std::move(segments)) {}

  // Parses nodes until a block whose first word is in `stops` (left unconsumed) or the end.
  absl::Status ParseBody(std::vector<Node>* out, std::initializer_list<absl::string_view> stops, std::string* stop_word) {
    stop_word->clear();
    if (depth_ >= 100) {
      return SyntaxError(pos_ < s_.size() ? s_[pos_].line : 0, "blocks nested deeper than 100 levels");
    }
    ++depth_;
    absl::Status s = ParseBodyAtDepth(out, stops, stop_word);
    --depth_;
    return s;
  }

 private:
  absl::Status ParseBodyAtDepth(std::vector<Node>* out, std::initializer_list<absl::string_view> stops,
                                std::string* stop_word) {
    while (pos_ < s_.size()) {
      Segment& seg = s_[pos_];
      if (seg.kind == Segment::Kind::kComment) {
        ++pos_;
        continue;
      }
      if (seg.kind == Segment::Kind::kText) {
        if (!seg.content.empty()) {
          Node n;
          n.kind = Node::Kind::kText;
          n.line = seg.line;
          n.text = std::move(seg.content);
          out->push_back(std::move(n));
        }
        ++pos_;
        continue;
      }
      if (seg.kind == Segment::Kind::kVar) {
        auto e = ParseExpr(seg.content, seg.line);
        if (!e.ok()) return e.status();
        Node n;
        n.kind = Node::Kind::kOutput;
        n.line = seg.line;
        n.expr = std::move(*e);
        out->push_back(std::move(n));
        ++pos_;
        continue;
      }
      const std::string word = FirstWord(seg.content);
      for (absl::string_view stop : stops) {
        if (word == stop) {
          *stop_word = word;
          return absl::OkStatus();
        }
      }
      ++pos_;
      absl::Status s;
      if (word == "if") s = ParseIf(seg, out);
      else if (word == "for") s = ParseFor(seg, out);
      else if (word == "set") s = ParseSet(seg, out);
      else if (word == "macro") s = ParseMacro(seg, out);
      else if (word == "break" || word == "continue") s = ParseLoopControl(seg, word, out);
      else if (word == "generation" || word == "endgeneration") s = absl::OkStatus();  // HF training marker
      else if (word == "call" || word == "include" || word == "import" || word == "from" || word == "extends" ||
               word == "block" || word == "raw" || word == "filter" || word == "with" || word == "do") {
        s = absl::UnimplementedError(absl::StrCat("line ", seg.line, ": '{% ", word,
                                                  " %}' is outside the Jinja subset this build renders"));
      } else {
        s = SyntaxError(seg.line, absl::StrCat("unexpected '{% ", word, " %}'"));
      }
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }

 private:
  static std::string FirstWord(absl::string_view content) {
    size_t i = 0;
    while (i < content.size() && (absl::ascii_isalnum(static_cast<unsigned char>(content[i])) || content[i] == '_')) ++i;
    return std::string(content.substr(0, i));
  }
  static absl::StatusOr<ExprPtr> ParseExpr(absl::string_view text, int line) {
    auto tokens = TokenizeExpr(text, line);
    if (!tokens.ok()) return tokens.status();
    ExprParser p(std::move(*tokens), line);
    return p.ParseAll();
  }
  static absl::StatusOr<ExprParser> StatementTokens(const Segment& seg) {
    auto tokens = TokenizeExpr(seg.content, seg.line);
    if (!tokens.ok()) return tokens.status();
    ExprParser p(std::move(*tokens), seg.line);
    p.Next();  // the keyword
    return p;
  }
  absl::Status ExpectEndTag(const Segment& open, absl::string_view end_word) {
    if (pos_ >= s_.size()) return SyntaxError(open.line, absl::StrCat("missing '{% ", end_word, " %}'"));
    ++pos_;
    return absl::OkStatus();
  }

  absl::Status ParseIf(const Segment& open, std::vector<Node>* out) {
    Node n;
    n.kind = Node::Kind::kIf;
    n.line = open.line;
    const Segment* cond_seg = &open;
    while (true) {
      auto p = StatementTokens(*cond_seg);
      if (!p.ok()) return p.status();
      auto cond = p->ParseAll();
      if (!cond.ok()) return cond.status();
      std::vector<Node> body;
      std::string stop;
      if (auto s = ParseBody(&body, {"elif", "else", "endif"}, &stop); !s.ok()) return s;
      n.branches.emplace_back(std::move(*cond), std::move(body));
      if (stop.empty()) return SyntaxError(open.line, "missing '{% endif %}'");
      const Segment& tag = s_[pos_++];
      if (stop == "elif") {
        cond_seg = &tag;
        continue;
      }
      if (stop == "else") {
        if (auto s = ParseBody(&n.else_body, {"endif"}, &stop); !s.ok()) return s;
        if (stop.empty()) return SyntaxError(open.line, "missing '{% endif %}'");
        ++pos_;
      }
      break;
    }
    out->push_back(std::move(n));
    return absl::OkStatus();
  }

  absl::Status ParseFor(const Segment& open, std::vector<Node>* out) {
    auto p = StatementTokens(open);
    if (!p.ok()) return p.status();
    Node n;
    n.kind = Node::Kind::kFor;
    n.line = open.line;
    while (true) {
      if (p->Peek().kind != Token::Kind::kName) return p->Error("expected a loop variable after 'for'");
      n.targets.push_back(p->Next().text);
      if (!p->IsOp(",")) break;
      p->Next();
    }
    if (!p->IsName("in")) return p->Error("expected 'in' in a for loop");
    p->Next();
    auto iter = p->ParseExpression(/*allow_ternary=*/false);
    if (!iter.ok()) return iter.status();
    n.expr = std::move(*iter);
    if (p->IsName("if")) {
      p->Next();
      auto f = p->ParseExpression(/*allow_ternary=*/false);
      if (!f.ok()) return f.status();
      n.filter = std::move(*f);
    }
    if (p->IsName("recursive")) {
      return absl::UnimplementedError(absl::StrCat("line ", open.line, ": recursive for loops are outside the subset"));
    }
    if (p->Peek().kind != Token::Kind::kEnd) return p->Error("unexpected text after the for loop's iterable");
    std::string stop;
    if (auto s = ParseBody(&n.body, {"else", "endfor"}, &stop); !s.ok()) return s;
    if (stop.empty()) return SyntaxError(open.line, "missing '{% endfor %}'");
    ++pos_;
    if (stop == "else") {
      if (auto s = ParseBody(&n.else_body, {"endfor"}, &stop); !s.ok()) return s;
      if (stop.empty()) return SyntaxError(open.line, "missing '{% endfor %}'");
      ++pos_;
    }
    out->push_back(std::move(n));
    return absl::OkStatus();
  }

  absl::Status ParseSet(const Segment& open, std::vector<Node>* out) {
    auto p = StatementTokens(open);
    if (!p.ok()) return p.status();
    Node n;
    n.kind = Node::Kind::kSet;
    n.line = open.line;
    if (p->Peek().kind != Token::Kind::kName) return p->Error("expected a name after 'set'");
    n.targets.push_back(p->Next().text);
    if (p->IsOp(".")) {
      p->Next();
      if (p->Peek().kind != Token::Kind::kName) return p->Error("expected an attribute name after '.'");
      n.targets.push_back(p->Next().text);
    }
    if (p->Peek().kind == Token::Kind::kEnd) {  // {% set x %}...{% endset %}
      n.kind = Node::Kind::kSetBlock;
      std::string stop;
      if (auto s = ParseBody(&n.body, {"endset"}, &stop); !s.ok()) return s;
      if (stop.empty()) return SyntaxError(open.line, "missing '{% endset %}'");
      ++pos_;
      out->push_back(std::move(n));
      return absl::OkStatus();
    }
    if (auto s = p->Expect("="); !s.ok()) return s;
    auto value = p->ParseAll();
    if (!value.ok()) return value.status();
    n.expr = std::move(*value);
    out->push_back(std::move(n));
    return absl::OkStatus();
  }

  absl::Status ParseMacro(const Segment& open, std::vector<Node>* out) {
    auto p = StatementTokens(open);
    if (!p.ok()) return p.status();
    Node n;
    n.kind = Node::Kind::kMacro;
    n.line = open.line;
    if (p->Peek().kind != Token::Kind::kName) return p->Error("expected a macro name");
    n.targets.push_back(p->Next().text);
    if (auto s = p->Expect("("); !s.ok()) return s;
    while (!p->IsOp(")")) {
      if (p->Peek().kind != Token::Kind::kName) return p->Error("expected a macro parameter name");
      n.targets.push_back(p->Next().text);
      ExprPtr dflt;
      if (p->IsOp("=")) {
        p->Next();
        auto d = p->ParseExpression();
        if (!d.ok()) return d.status();
        dflt = std::move(*d);
      }
      n.defaults.push_back(std::move(dflt));
      if (!p->IsOp(",")) break;
      p->Next();
    }
    if (auto s = p->Expect(")"); !s.ok()) return s;
    if (p->Peek().kind != Token::Kind::kEnd) return p->Error("unexpected text after the macro's parameters");
    std::string stop;
    if (auto s = ParseBody(&n.body, {"endmacro"}, &stop); !s.ok()) return s;
    if (stop.empty()) return SyntaxError(open.line, "missing '{% endmacro %}'");
    ++pos_;
    out->push_back(std::move(n));
    return absl::OkStatus();
  }

  absl::Status ParseLoopControl(const Segment& seg, const std::string& word, std::vector<Node>* out) {
    if (seg.content != word) return SyntaxError(seg.line, absl::StrCat("unexpected text after '", word, "'"));
    Node n;
    n.kind = word == "break" ? Node::Kind::kBreak : Node::Kind::kContinue;
    n.line = seg.line;
    out->push_back(std::move(n));
    return absl::OkStatus();
  }

  std::vector<Segment> s_;
  size_t pos_ = 0;
  int depth_ = 0;
};

}  // namespace

absl::StatusOr<std::vector<Node>> Parse(absl::string_view source) {
  auto segments = Lex(source);
  if (!segments.ok()) return segments.status();
  StatementParser p(std::move(*segments));
  std::vector<Node> nodes;
  std::string stop;
  if (auto s = p.ParseBody(&nodes, {"endif", "endfor", "elif", "else", "endset", "endmacro"}, &stop); !s.ok()) {
    return s;
  }
  if (!stop.empty()) return absl::InvalidArgumentError(absl::StrCat("unexpected '{% ", stop, " %}'"));
  return nodes;
}

}  // namespace kestrel::runtime::jinja
