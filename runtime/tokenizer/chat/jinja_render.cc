#include "runtime/tokenizer/chat/jinja_render.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <ctime>
#include <map>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace kestrel::runtime::jinja {
namespace {

constexpr size_t kMaxRange = 100'000;

std::string TypeName(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined: return "undefined";
    case Value::Kind::kNone: return "none";
    case Value::Kind::kBool: return "bool";
    case Value::Kind::kInt: return "int";
    case Value::Kind::kFloat: return "float";
    case Value::Kind::kString: return "string";
    case Value::Kind::kList: return "list";
    case Value::Kind::kDict: return "dict";
    case Value::Kind::kMacro: return "macro";
  }
  return "?";
}

class Renderer {
 public:
  Renderer(const Dict& globals, int64_t now, const RenderLimits& limits) : now_(now), limits_(limits) {
    scopes_.emplace_back();
    for (const auto& [k, v] : globals) scopes_.back()[k] = v;
  }

  absl::Status RenderNodes(const std::vector<Node>& nodes) {
    for (const Node& n : nodes) {
      if (auto s = RenderNode(n); !s.ok()) return s;
      if (loop_control_ != LoopControl::kNone) break;  // {% break %} / {% continue %} pending
    }
    return absl::OkStatus();
  }
  std::string& output() { return out_; }

 private:
  using Scope = std::map<std::string, Value>;

  static absl::Status Err(absl::StatusCode code, int line, absl::string_view what) {
    return absl::Status(code, absl::StrCat("line ", line, ": ", what));
  }
  static absl::Status TypeErr(int line, absl::string_view what) {
    return Err(absl::StatusCode::kInvalidArgument, line, what);
  }
  static absl::Status Unsupported(int line, absl::string_view what) {
    return Err(absl::StatusCode::kUnimplemented, line, absl::StrCat(what, " is outside the Jinja subset this build renders"));
  }

  Value Lookup(const std::string& name) const {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      const auto f = it->find(name);
      if (f != it->end()) return f->second;
    }
    return Value();
  }

  absl::Status Emit(const std::string& s, int line) {
    out_ += s;
    if (out_.size() > limits_.max_output_bytes) {
      return Err(absl::StatusCode::kResourceExhausted, line,
                 absl::StrCat("the rendered prompt passed ", limits_.max_output_bytes, " bytes"));
    }
    return absl::OkStatus();
  }

  absl::Status RenderNode(const Node& n) {
    switch (n.kind) {
      case Node::Kind::kText:
        return Emit(n.text, n.line);
      case Node::Kind::kOutput: {
        auto v = Eval(*n.expr);
        if (!v.ok()) return v.status();
        return Emit(v->ToString(), n.line);
      }
      case Node::Kind::kIf:
        for (const auto& [cond, body] : n.branches) {
          auto c = Eval(*cond);
          if (!c.ok()) return c.status();
          if (c->Truthy()) return RenderNodes(body);
        }
        return RenderNodes(n.else_body);
      case Node::Kind::kSet: {
        auto v = Eval(*n.expr);
        if (!v.ok()) return v.status();
        return Assign(n, std::move(*v));
      }
      case Node::Kind::kFor:
        return RenderFor(n);
      case Node::Kind::kSetBlock: {
        auto text = RenderToString(n.body);
        if (!text.ok()) return text.status();
        return Assign(n, Value::Str(std::move(*text)));
      }
      case Node::Kind::kMacro:
        scopes_.back()[n.targets[0]] = Value::Macro(&n);
        return absl::OkStatus();
      case Node::Kind::kBreak:
      case Node::Kind::kContinue:
        if (loop_depth_ == 0) {
          return TypeErr(n.line, n.kind == Node::Kind::kBreak ? "'break' outside a loop" : "'continue' outside a loop");
        }
        loop_control_ = n.kind == Node::Kind::kBreak ? LoopControl::kBreak : LoopControl::kContinue;
        return absl::OkStatus();
    }
    return absl::OkStatus();
  }

  // Renders `nodes` into a string of their own (a set block, a macro call).
  absl::StatusOr<std::string> RenderToString(const std::vector<Node>& nodes) {
    std::string saved;
    saved.swap(out_);
    absl::Status s = RenderNodes(nodes);
    std::string text;
    text.swap(out_);
    out_.swap(saved);
    if (!s.ok()) return s;
    return text;
  }

  absl::Status Assign(const Node& n, Value v) {
    if (n.targets.size() == 1) {
      scopes_.back()[n.targets[0]] = std::move(v);
      return absl::OkStatus();
    }
    const Value ns = Lookup(n.targets[0]);
    if (!ns.is_namespace()) {
      return TypeErr(n.line, absl::StrCat("'", n.targets[0], "' is not a namespace(), so '", n.targets[0], ".",
                                          n.targets[1], "' cannot be set"));
    }
    ns.Set(n.targets[1], std::move(v));
    return absl::OkStatus();
  }

  // A macro call: parameters from positional then keyword arguments then defaults, the body
  // rendered in a scope of its own; the result is the rendered text.
  absl::StatusOr<Value> CallMacro(const Node& macro, const std::vector<Value>& args,
                                  const std::map<std::string, Value>& kwargs, int line) {
    const size_t n_params = macro.targets.size() - 1;
    if (args.size() > n_params) {
      return TypeErr(line, absl::StrCat("macro '", macro.targets[0], "' takes ", n_params, " arguments, not ",
                                        args.size()));
    }
    if (++call_depth_ > 64) {
      --call_depth_;
      return Err(absl::StatusCode::kResourceExhausted, line, "macro calls nested deeper than 64");
    }
    Scope scope;
    for (size_t i = 0; i < n_params; ++i) {
      const std::string& name = macro.targets[i + 1];
      if (i < args.size()) {
        scope[name] = args[i];
      } else if (const auto it = kwargs.find(name); it != kwargs.end()) {
        scope[name] = it->second;
      } else if (macro.defaults[i] != nullptr) {
        auto d = Eval(*macro.defaults[i]);
        if (!d.ok()) {
          --call_depth_;
          return d;
        }
        scope[name] = std::move(*d);
      }
    }
    scopes_.push_back(std::move(scope));
    const int saved_depth = loop_depth_;
    loop_depth_ = 0;
    auto text = RenderToString(macro.body);
    loop_depth_ = saved_depth;
    scopes_.pop_back();
    --call_depth_;
    if (!text.ok()) return text.status();
    return Value::Str(std::move(*text));
  }

  absl::Status RenderFor(const Node& n) {
    auto iterable = Eval(*n.expr);
    if (!iterable.ok()) return iterable.status();
    std::vector<Value> items;
    if (iterable->is_list()) {
      items = iterable->list();
    } else if (iterable->is_dict()) {
      for (const auto& [k, v] : iterable->dict()) items.push_back(Value::Str(k));
    } else if (iterable->is_string()) {
      for (const char c : iterable->str()) items.push_back(Value::Str(std::string(1, c)));
    } else if (!iterable->is_undefined() && !iterable->is_none()) {
      return TypeErr(n.line, absl::StrCat("cannot loop over a ", TypeName(*iterable)));
    }
    // Bind the targets (two targets unpack a pair), then keep the items the `if` filter accepts.
    std::vector<Scope> bound;
    for (const Value& item : items) {
      Scope s;
      if (n.targets.size() == 1) {
        s[n.targets[0]] = item;
      } else {
        if (!item.is_list() || item.list().size() != n.targets.size()) {
          return TypeErr(n.line, absl::StrCat("cannot unpack a ", TypeName(item), " into ", n.targets.size(), " loop variables"));
        }
        for (size_t i = 0; i < n.targets.size(); ++i) s[n.targets[i]] = item.list()[i];
      }
      if (n.filter != nullptr) {
        scopes_.push_back(s);
        auto keep = Eval(*n.filter);
        scopes_.pop_back();
        if (!keep.ok()) return keep.status();
        if (!keep->Truthy()) continue;
      }
      bound.push_back(std::move(s));
    }
    if (bound.empty()) return RenderNodes(n.else_body);
    const int64_t len = static_cast<int64_t>(bound.size());
    for (int64_t i = 0; i < len; ++i) {
      if (++iterations_ > limits_.max_iterations) {
        return Err(absl::StatusCode::kResourceExhausted, n.line,
                   absl::StrCat("loops ran past ", limits_.max_iterations, " iterations"));
      }
      Scope s = std::move(bound[i]);
      Value loop = Value::MakeDict({{"index", Value::Int(i + 1)},
                                    {"index0", Value::Int(i)},
                                    {"revindex", Value::Int(len - i)},
                                    {"revindex0", Value::Int(len - i - 1)},
                                    {"first", Value::Bool(i == 0)},
                                    {"last", Value::Bool(i + 1 == len)},
                                    {"length", Value::Int(len)}});
      s["loop"] = loop;
      scopes_.push_back(std::move(s));
      ++loop_depth_;
      absl::Status st = RenderNodes(n.body);
      --loop_depth_;
      scopes_.pop_back();
      if (!st.ok()) return st;
      const LoopControl control = loop_control_;
      loop_control_ = LoopControl::kNone;
      if (control == LoopControl::kBreak) break;
    }
    return absl::OkStatus();
  }

  absl::StatusOr<Value> Eval(const Expr& e) {
    switch (e.kind) {
      case Expr::Kind::kLiteral:
        return e.literal;
      case Expr::Kind::kName:
        return Lookup(e.name);
      case Expr::Kind::kList: {
        List items;
        for (const ExprPtr& a : e.args) {
          auto v = Eval(*a);
          if (!v.ok()) return v;
          items.push_back(std::move(*v));
        }
        return Value::MakeList(std::move(items));
      }
      case Expr::Kind::kDict: {
        Value d = Value::MakeDict();
        for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
          auto k = Eval(*e.args[i]);
          if (!k.ok()) return k;
          auto v = Eval(*e.args[i + 1]);
          if (!v.ok()) return v;
          d.Set(k->ToString(), std::move(*v));
        }
        return d;
      }
      case Expr::Kind::kGetAttr: {
        auto obj = Eval(*e.args[0]);
        if (!obj.ok()) return obj;
        return GetItem(*obj, Value::Str(e.name), e.line, /*attribute=*/true);
      }
      case Expr::Kind::kGetItem: {
        auto obj = Eval(*e.args[0]);
        if (!obj.ok()) return obj;
        auto key = Eval(*e.args[1]);
        if (!key.ok()) return key;
        return GetItem(*obj, *key, e.line, /*attribute=*/false);
      }
      case Expr::Kind::kSlice:
        return EvalSlice(e);
      case Expr::Kind::kCall:
        return EvalCall(e);
      case Expr::Kind::kFilter:
        return EvalFilter(e);
      case Expr::Kind::kTest: {
        auto r = EvalTest(e);
        if (!r.ok()) return r.status();
        return Value::Bool(*r != e.negated);
      }
      case Expr::Kind::kUnary: {
        auto x = Eval(*e.args[0]);
        if (!x.ok()) return x;
        if (e.name == "not") return Value::Bool(!x->Truthy());
        if (x->kind() == Value::Kind::kInt) {
          if (x->int_value() == INT64_MIN) {
            return TypeErr(e.line, "integer overflow in -(-9223372036854775808) (integers are 64-bit)");
          }
          return Value::Int(-x->int_value());
        }
        if (x->kind() == Value::Kind::kFloat) return Value::Float(-x->float_value());
        return TypeErr(e.line, absl::StrCat("cannot negate a ", TypeName(*x)));
      }
      case Expr::Kind::kBinary:
        return EvalBinary(e);
      case Expr::Kind::kTernary: {
        auto c = Eval(*e.args[1]);
        if (!c.ok()) return c;
        if (c->Truthy()) return Eval(*e.args[0]);
        if (e.args[2] == nullptr) return Value();
        return Eval(*e.args[2]);
      }
    }
    return Value();
  }

  absl::StatusOr<Value> GetItem(const Value& obj, const Value& key, int line, bool attribute) {
    if (obj.is_dict()) {
      const Value* v = obj.Find(key.ToString());
      return v != nullptr ? *v : Value();
    }
    if (obj.is_list() || obj.is_string()) {
      if (!key.is_number() || key.kind() == Value::Kind::kFloat) {
        if (attribute) return Value();  // e.g. a method name; calls are resolved in EvalCall
        return TypeErr(line, absl::StrCat("a ", TypeName(obj), " index must be an integer, not a ", TypeName(key)));
      }
      const int64_t size = obj.is_list() ? static_cast<int64_t>(obj.list().size()) : static_cast<int64_t>(obj.str().size());
      int64_t i = key.int_value();
      if (i < 0) i += size;
      if (i < 0 || i >= size) return Value();  // Jinja: undefined
      return obj.is_list() ? obj.list()[i] : Value::Str(std::string(1, obj.str()[i]));
    }
    if (obj.is_undefined()) {
      return TypeErr(line, absl::StrCat("'", key.ToString(), "' of an undefined value"));
    }
    return Value();
  }

  // Python slicing, with a step (negative steps walk backwards; `[::-1]` reverses).
  absl::StatusOr<Value> EvalSlice(const Expr& e) {
    auto obj = Eval(*e.args[0]);
    if (!obj.ok()) return obj;
    int64_t size = 0;
    if (obj->is_list()) size = static_cast<int64_t>(obj->list().size());
    else if (obj->is_string()) size = static_cast<int64_t>(obj->str().size());
    else return TypeErr(e.line, absl::StrCat("cannot slice a ", TypeName(*obj)));
    auto part = [&](const ExprPtr& b, int64_t* out) -> absl::Status {
      if (b == nullptr) return absl::OkStatus();
      auto v = Eval(*b);
      if (!v.ok()) return v.status();
      if (v->is_none()) return absl::OkStatus();
      if (!v->is_number()) return TypeErr(e.line, "slice bounds must be integers");
      *out = v->int_value();
      return absl::OkStatus();
    };
    int64_t step = 1;
    if (auto s = part(e.args[3], &step); !s.ok()) return s;
    if (step == 0) return TypeErr(e.line, "slice step cannot be zero");
    int64_t start = step > 0 ? 0 : size - 1, stop = step > 0 ? size : -1;
    const bool has_start = e.args[1] != nullptr, has_stop = e.args[2] != nullptr;
    if (has_start) {
      if (auto s = part(e.args[1], &start); !s.ok()) return s;
      if (start < 0) start += size;
      start = step > 0 ? std::clamp<int64_t>(start, 0, size) : std::clamp<int64_t>(start, -1, size - 1);
    }
    if (has_stop) {
      if (auto s = part(e.args[2], &stop); !s.ok()) return s;
      if (stop < 0) stop += size;
      stop = step > 0 ? std::clamp<int64_t>(stop, 0, size) : std::clamp<int64_t>(stop, -1, size - 1);
    }
    List items;
    std::string text;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
      if (obj->is_string()) {
        text.push_back(obj->str()[i]);
      } else {
        items.push_back(obj->list()[i]);
      }
    }
    if (obj->is_string()) return Value::Str(std::move(text));
    return Value::MakeList(std::move(items));
  }

  absl::StatusOr<std::vector<Value>> EvalArgs(const Expr& e, size_t first, std::map<std::string, Value>* kwargs) {
    std::vector<Value> args;
    const size_t n_kw = e.kwarg_names.size();
    const size_t n_pos = e.args.size() - first - n_kw;
    for (size_t i = first; i < e.args.size(); ++i) {
      auto v = Eval(*e.args[i]);
      if (!v.ok()) return v.status();
      if (i - first < n_pos) {
        args.push_back(std::move(*v));
      } else {
        (*kwargs)[e.kwarg_names[i - first - n_pos]] = std::move(*v);
      }
    }
    return args;
  }

  absl::StatusOr<Value> EvalCall(const Expr& e) {
    const Expr& callee = *e.args[0];
    std::map<std::string, Value> kwargs;
    auto args = EvalArgs(e, 1, &kwargs);
    if (!args.ok()) return args.status();
    if (callee.kind == Expr::Kind::kGetAttr) {
      auto obj = Eval(*callee.args[0]);
      if (!obj.ok()) return obj;
      return CallMethod(*obj, callee.name, *args, e.line);
    }
    if (callee.kind != Expr::Kind::kName) return Unsupported(e.line, "calling an expression");
    const std::string& f = callee.name;
    if (const Value v = Lookup(f); v.is_macro()) {
      return CallMacro(*static_cast<const Node*>(v.macro()), *args, kwargs, e.line);
    }
    if (f == "raise_exception") {
      return Err(absl::StatusCode::kFailedPrecondition, e.line,
                 absl::StrCat("the template refuses these messages: ", args->empty() ? "" : (*args)[0].ToString()));
    }
    if (f == "namespace" || f == "dict") {
      Value ns = Value::MakeDict({}, f == "namespace");
      for (auto& [k, v] : kwargs) ns.Set(k, v);
      return ns;
    }
    if (f == "range") {
      int64_t start = 0, stop = 0, step = 1;
      if (args->size() == 1) stop = (*args)[0].int_value();
      else if (args->size() >= 2) {
        start = (*args)[0].int_value();
        stop = (*args)[1].int_value();
        if (args->size() >= 3) step = (*args)[2].int_value();
      }
      if (step == 0) return TypeErr(e.line, "range() step must not be zero");
      List items;
      for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
        if (items.size() >= kMaxRange) {
          return Err(absl::StatusCode::kResourceExhausted, e.line, "range() longer than 100000");
        }
        items.push_back(Value::Int(i));
      }
      return Value::MakeList(std::move(items));
    }
    if (f == "strftime_now") {
      const std::time_t now = now_ >= 0 ? static_cast<std::time_t>(now_) : std::time(nullptr);
      std::tm tm{};
      gmtime_r(&now, &tm);
      char buf[128];
      const std::string fmt = args->empty() ? "%Y-%m-%d" : (*args)[0].ToString();
      const size_t n = std::strftime(buf, sizeof(buf), fmt.c_str(), &tm);
      return Value::Str(std::string(buf, n));
    }
    return Unsupported(e.line, absl::StrCat("function '", f, "'"));
  }

  absl::StatusOr<Value> CallMethod(const Value& obj, const std::string& m, const std::vector<Value>& args, int line) {
    auto arg = [&](size_t i) { return i < args.size() ? args[i] : Value(); };
    if (obj.is_string()) {
      const std::string& s = obj.str();
      const std::string chars = args.empty() || args[0].is_none() ? " \t\n\r\f\v" : args[0].ToString();
      if (m == "strip" || m == "lstrip" || m == "rstrip") {
        size_t a = 0, b = s.size();
        if (m != "rstrip") a = std::min(s.find_first_not_of(chars), s.size());
        if (m != "lstrip") b = s.find_last_not_of(chars) == std::string::npos ? 0 : s.find_last_not_of(chars) + 1;
        return Value::Str(a < b ? s.substr(a, b - a) : "");
      }
      if (m == "startswith") return Value::Bool(absl::StartsWith(s, arg(0).ToString()));
      if (m == "endswith") return Value::Bool(absl::EndsWith(s, arg(0).ToString()));
      if (m == "upper") return Value::Str(absl::AsciiStrToUpper(s));
      if (m == "lower") return Value::Str(absl::AsciiStrToLower(s));
      if (m == "replace") return Value::Str(absl::StrReplaceAll(s, {{arg(0).ToString(), arg(1).ToString()}}));
      if (m == "split") {
        List parts;
        if (args.empty() || args[0].is_none()) {
          for (absl::string_view p : absl::StrSplit(s, absl::ByAnyChar(" \t\n\r\f\v"), absl::SkipEmpty())) {
            parts.push_back(Value::Str(std::string(p)));
          }
        } else {
          for (absl::string_view p : absl::StrSplit(s, args[0].ToString())) parts.push_back(Value::Str(std::string(p)));
        }
        return Value::MakeList(std::move(parts));
      }
      if (m == "title" || m == "capitalize") return ApplyStringFilter(m, s);
      if (m == "format") return FormatString(s, args, line);
    }
    if (obj.is_dict()) {
      if (m == "items") {
        List items;
        for (const auto& [k, v] : obj.dict()) items.push_back(Value::MakeList({Value::Str(k), v}));
        return Value::MakeList(std::move(items));
      }
      if (m == "keys" || m == "values") {
        List items;
        for (const auto& [k, v] : obj.dict()) items.push_back(m == "keys" ? Value::Str(k) : v);
        return Value::MakeList(std::move(items));
      }
      if (m == "get") {
        const Value* v = obj.Find(arg(0).ToString());
        return v != nullptr ? *v : (args.size() > 1 ? args[1] : Value::None());
      }
    }
    if (obj.is_list() && m == "append") {
      obj.list().push_back(arg(0));
      return Value::None();
    }
    return Unsupported(line, absl::StrCat("method '", m, "' of a ", TypeName(obj)));
  }

  // Python str.format with "{}" and "{N}" fields ("{{" and "}}" are braces); format specs are
  // outside the subset.
  static absl::StatusOr<Value> FormatString(const std::string& s, const std::vector<Value>& args, int line) {
    std::string out;
    size_t next = 0;
    for (size_t i = 0; i < s.size(); ++i) {
      const char c = s[i];
      if ((c == '{' || c == '}') && i + 1 < s.size() && s[i + 1] == c) {
        out.push_back(c);
        ++i;
        continue;
      }
      if (c != '{') {
        out.push_back(c);
        continue;
      }
      const size_t close = s.find('}', i);
      if (close == std::string::npos) return TypeErr(line, "format(): unmatched '{'");
      const std::string field = s.substr(i + 1, close - i - 1);
      size_t index = next++;
      if (!field.empty()) {
        if (field.find_first_not_of("0123456789") != std::string::npos) {
          return Unsupported(line, absl::StrCat("format field '{", field, "}'"));
        }
        index = std::stoul(field);
      }
      if (index >= args.size()) return TypeErr(line, "format(): not enough arguments");
      out += args[index].ToString();
      i = close;
    }
    return Value::Str(std::move(out));
  }

  static Value ApplyStringFilter(const std::string& f, const std::string& s) {
    std::string out = absl::AsciiStrToLower(s);
    if (f == "capitalize") {
      if (!out.empty()) out[0] = absl::ascii_toupper(out[0]);
      return Value::Str(out);
    }
    bool start = true;  // title
    for (char& c : out) {
      if (absl::ascii_isalpha(static_cast<unsigned char>(c))) {
        if (start) c = absl::ascii_toupper(c);
        start = false;
      } else {
        start = true;
      }
    }
    return Value::Str(out);
  }

  absl::StatusOr<Value> EvalFilter(const Expr& e) {
    auto x = Eval(*e.args[0]);
    if (!x.ok()) return x;
    std::map<std::string, Value> kwargs;
    auto args = EvalArgs(e, 1, &kwargs);
    if (!args.ok()) return args.status();
    const std::string& f = e.name;
    const Value& v = *x;
    auto arg = [&](size_t i) { return i < args->size() ? (*args)[i] : Value(); };
    if (f == "trim") {
      return Value::Str(std::string(absl::StripAsciiWhitespace(v.ToString())));
    }
    if (f == "upper") return Value::Str(absl::AsciiStrToUpper(v.ToString()));
    if (f == "lower") return Value::Str(absl::AsciiStrToLower(v.ToString()));
    if (f == "capitalize" || f == "title") return ApplyStringFilter(f, v.ToString());
    if (f == "string") return Value::Str(v.ToString());
    if (f == "safe" || f == "e" || f == "escape") return v;  // autoescape is off for chat templates
    if (f == "length" || f == "count") {
      if (v.is_list()) return Value::Int(static_cast<int64_t>(v.list().size()));
      if (v.is_dict()) return Value::Int(static_cast<int64_t>(v.dict().size()));
      if (v.is_string()) return Value::Int(static_cast<int64_t>(v.str().size()));
      if (v.is_undefined()) return Value::Int(0);  // Jinja2's lenient Undefined is empty
      return TypeErr(e.line, absl::StrCat("a ", TypeName(v), " has no length"));
    }
    if (f == "default" || f == "d") {
      const bool boolean = arg(1).Truthy() || (kwargs.count("boolean") && kwargs["boolean"].Truthy());
      if (v.is_undefined() || (boolean && !v.Truthy())) return arg(0).is_undefined() ? Value::Str("") : arg(0);
      return v;
    }
    if (f == "tojson") {
      const int indent = kwargs.count("indent") ? static_cast<int>(kwargs["indent"].int_value()) : -1;
      return Value::Str(v.ToJson(indent));
    }
    if (f == "int") return Value::Int(v.is_string() ? std::strtoll(v.str().c_str(), nullptr, 10) : v.int_value());
    if (f == "float") return Value::Float(v.is_string() ? std::strtod(v.str().c_str(), nullptr) : v.float_value());
    if (f == "abs") return v.kind() == Value::Kind::kFloat ? Value::Float(std::fabs(v.float_value())) : Value::Int(std::llabs(v.int_value()));
    if (f == "replace") return Value::Str(absl::StrReplaceAll(v.ToString(), {{arg(0).ToString(), arg(1).ToString()}}));
    if (f == "items") return CallMethod(v, "items", {}, e.line);
    if (f == "dictsort") {  // (key, value) pairs by key (case-insensitive, as Jinja2 by default)
      if (!v.is_dict()) return TypeErr(e.line, absl::StrCat("dictsort needs a dict, not a ", TypeName(v)));
      Dict items = v.dict();
      std::stable_sort(items.begin(), items.end(), [](const auto& a, const auto& b) {
        return absl::AsciiStrToLower(a.first) < absl::AsciiStrToLower(b.first);
      });
      List pairs;
      for (auto& [k, val] : items) pairs.push_back(Value::MakeList({Value::Str(k), val}));
      return Value::MakeList(std::move(pairs));
    }
    if (f == "join") {
      if (!v.is_list()) return TypeErr(e.line, absl::StrCat("cannot join a ", TypeName(v)));
      std::string out;
      for (size_t i = 0; i < v.list().size(); ++i) out += (i ? arg(0).ToString() : "") + v.list()[i].ToString();
      return Value::Str(out);
    }
    // Filters over sequences.
    List items;
    if (v.is_list()) items = v.list();
    else if (v.is_string()) for (const char c : v.str()) items.push_back(Value::Str(std::string(1, c)));
    else if (v.is_dict()) for (const auto& [k, val] : v.dict()) items.push_back(Value::Str(k));
    else if (!v.is_undefined() && !v.is_none()) return TypeErr(e.line, absl::StrCat("filter '", f, "' needs a sequence, not a ", TypeName(v)));
    if (f == "list") return Value::MakeList(items);
    if (f == "first") return items.empty() ? Value() : items.front();
    if (f == "last") return items.empty() ? Value() : items.back();
    if (f == "reverse") {
      std::reverse(items.begin(), items.end());
      return v.is_string() ? Value::Str(std::string(v.str().rbegin(), v.str().rend())) : Value::MakeList(items);
    }
    if (f == "unique") {
      List out;
      for (const Value& i : items) {
        if (std::none_of(out.begin(), out.end(), [&](const Value& o) { return o.Equals(i); })) out.push_back(i);
      }
      return Value::MakeList(out);
    }
    if (f == "map") {
      if (!kwargs.count("attribute")) return Unsupported(e.line, "filter 'map' without attribute=");
      List out;
      for (const Value& i : items) {
        auto a = GetItem(i, kwargs["attribute"], e.line, true);
        if (!a.ok()) return a;
        out.push_back(a->is_undefined() && kwargs.count("default") ? kwargs["default"] : *a);
      }
      return Value::MakeList(out);
    }
    if (f == "selectattr" || f == "rejectattr") {
      const bool select = f == "selectattr";
      List out;
      for (const Value& i : items) {
        auto a = GetItem(i, arg(0), e.line, true);
        if (!a.ok()) return a;
        bool pass = a->Truthy();
        if (args->size() >= 2) {
          auto t = ApplyTest(arg(1).ToString(), *a, std::vector<Value>(args->begin() + 2, args->end()), e.line);
          if (!t.ok()) return t.status();
          pass = *t;
        }
        if (pass == select) out.push_back(i);
      }
      return Value::MakeList(out);
    }
    return Unsupported(e.line, absl::StrCat("filter '", f, "'"));
  }

  absl::StatusOr<bool> EvalTest(const Expr& e) {
    if (e.name == "defined" || e.name == "undefined") {
      auto x = Eval(*e.args[0]);
      const bool defined = x.ok() && !x->is_undefined();
      return e.name == "defined" ? defined : !defined;
    }
    auto x = Eval(*e.args[0]);
    if (!x.ok()) return x.status();
    std::map<std::string, Value> kwargs;
    auto args = EvalArgs(e, 1, &kwargs);
    if (!args.ok()) return args.status();
    return ApplyTest(e.name, *x, *args, e.line);
  }

  absl::StatusOr<bool> ApplyTest(const std::string& t, const Value& v, const std::vector<Value>& args, int line) {
    const Value a = args.empty() ? Value() : args[0];
    if (t == "defined") return !v.is_undefined();
    if (t == "undefined") return v.is_undefined();
    if (t == "none") return v.is_none();
    if (t == "string") return v.is_string();
    if (t == "number") return v.is_number();
    if (t == "integer") return v.kind() == Value::Kind::kInt;
    if (t == "float") return v.kind() == Value::Kind::kFloat;
    if (t == "boolean") return v.kind() == Value::Kind::kBool;
    if (t == "mapping") return v.is_dict();
    if (t == "iterable" || t == "sequence") return v.is_list() || v.is_string() || v.is_dict();
    if (t == "true") return v.kind() == Value::Kind::kBool && v.bool_value();
    if (t == "false") return v.kind() == Value::Kind::kBool && !v.bool_value();
    if (t == "equalto" || t == "eq" || t == "==" || t == "sameas") return v.Equals(a);
    if (t == "ne" || t == "!=") return !v.Equals(a);
    if (t == "odd") return v.int_value() % 2 != 0;
    if (t == "even") return v.int_value() % 2 == 0;
    if (t == "divisibleby") return a.int_value() != 0 && v.int_value() % a.int_value() == 0;
    if (t == "in") {
      auto r = Contains(a, v, line);
      if (!r.ok()) return r.status();
      return *r;
    }
    return Unsupported(line, absl::StrCat("test '", t, "'"));
  }

  absl::StatusOr<bool> Contains(const Value& container, const Value& item, int line) {
    if (container.is_string()) return absl::StrContains(container.str(), item.ToString());
    if (container.is_list()) {
      return std::any_of(container.list().begin(), container.list().end(), [&](const Value& v) { return v.Equals(item); });
    }
    if (container.is_dict()) return container.Find(item.ToString()) != nullptr;
    if (container.is_undefined() || container.is_none()) return false;
    return TypeErr(line, absl::StrCat("'in' needs a string, list or dict, not a ", TypeName(container)));
  }

  absl::StatusOr<Value> EvalBinary(const Expr& e) {
    const std::string& op = e.name;
    auto a = Eval(*e.args[0]);
    if (!a.ok()) return a;
    if (op == "and") return a->Truthy() ? Eval(*e.args[1]) : *a;
    if (op == "or") return a->Truthy() ? *a : Eval(*e.args[1]);
    auto b = Eval(*e.args[1]);
    if (!b.ok()) return b;
    const Value& x = *a;
    const Value& y = *b;
    if (op == "==") return Value::Bool(x.Equals(y));
    if (op == "!=") return Value::Bool(!x.Equals(y));
    if (op == "in" || op == "not in") {
      auto r = Contains(y, x, e.line);
      if (!r.ok()) return r.status();
      return Value::Bool(*r == (op == "in"));
    }
    if (op == "~") return Value::Str(x.ToString() + y.ToString());
    if (op == "<" || op == ">" || op == "<=" || op == ">=") {
      int cmp = 0;
      if (x.is_number() && y.is_number()) {
        cmp = x.float_value() < y.float_value() ? -1 : x.float_value() > y.float_value() ? 1 : 0;
      } else if (x.is_string() && y.is_string()) {
        cmp = x.str().compare(y.str());
      } else {
        return TypeErr(e.line, absl::StrCat("cannot compare a ", TypeName(x), " with a ", TypeName(y)));
      }
      if (op == "<") return Value::Bool(cmp < 0);
      if (op == ">") return Value::Bool(cmp > 0);
      if (op == "<=") return Value::Bool(cmp <= 0);
      return Value::Bool(cmp >= 0);
    }
    if (op == "+") {
      if (x.is_string() && y.is_string()) return Value::Str(x.str() + y.str());
      if (x.is_list() && y.is_list()) {
        List items = x.list();
        items.insert(items.end(), y.list().begin(), y.list().end());
        return Value::MakeList(std::move(items));
      }
    }
    const bool numbers = (x.is_number() || x.kind() == Value::Kind::kBool) && (y.is_number() || y.kind() == Value::Kind::kBool);
    if (!numbers) {
      return TypeErr(e.line, absl::StrCat("unsupported operand types for '", op, "': ", TypeName(x), " and ", TypeName(y)));
    }
    const bool ints = x.kind() != Value::Kind::kFloat && y.kind() != Value::Kind::kFloat;
    if (ints && (op == "+" || op == "-" || op == "*")) {
      // Python's integers do not overflow; ours are 64-bit, so a result outside that range is an
      // error naming the operation rather than undefined behaviour (found by chat_template_fuzzer).
      int64_t r = 0;
      const int64_t a = x.int_value(), b = y.int_value();
      const bool overflow = op == "+" ? __builtin_add_overflow(a, b, &r)
                            : op == "-" ? __builtin_sub_overflow(a, b, &r)
                                        : __builtin_mul_overflow(a, b, &r);
      if (overflow) {
        return TypeErr(e.line, absl::StrCat("integer overflow in ", a, " ", op, " ", b,
                                            " (integers are 64-bit)"));
      }
      return Value::Int(r);
    }
    if (op == "+") return Value::Float(x.float_value() + y.float_value());
    if (op == "-") return Value::Float(x.float_value() - y.float_value());
    if (op == "*") return Value::Float(x.float_value() * y.float_value());
    if (y.float_value() == 0) return TypeErr(e.line, "division by zero");
    if (ints && (op == "//" || op == "%") && x.int_value() == INT64_MIN && y.int_value() == -1) {
      return TypeErr(e.line, absl::StrCat("integer overflow in ", x.int_value(), " ", op,
                                          " -1 (integers are 64-bit)"));
    }
    if (op == "/") return Value::Float(x.float_value() / y.float_value());
    if (op == "//") {
      if (ints) {
        const int64_t q = x.int_value() / y.int_value();
        return Value::Int((x.int_value() % y.int_value() != 0 && ((x.int_value() < 0) != (y.int_value() < 0))) ? q - 1 : q);
      }
      return Value::Float(std::floor(x.float_value() / y.float_value()));
    }
    if (op == "%") {
      if (ints) {
        const int64_t r = x.int_value() % y.int_value();
        return Value::Int(r != 0 && ((r < 0) != (y.int_value() < 0)) ? r + y.int_value() : r);
      }
      return Value::Float(std::fmod(x.float_value(), y.float_value()));
    }
    return Unsupported(e.line, absl::StrCat("operator '", op, "'"));
  }

  enum class LoopControl { kNone, kBreak, kContinue };

  std::vector<Scope> scopes_;
  std::string out_;
  size_t iterations_ = 0;
  int64_t now_;
  RenderLimits limits_;
  int loop_depth_ = 0;
  int call_depth_ = 0;
  LoopControl loop_control_ = LoopControl::kNone;
};

}  // namespace

absl::StatusOr<std::string> Render(const std::vector<Node>& nodes, const Dict& globals, int64_t now,
                                   const RenderLimits& limits) {
  Renderer r(globals, now, limits);
  if (auto s = r.RenderNodes(nodes); !s.ok()) return s;
  return std::move(r.output());
}

}  // namespace kestrel::runtime::jinja
