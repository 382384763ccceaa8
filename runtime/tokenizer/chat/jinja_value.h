// runtime/tokenizer/chat/jinja_value.h: the values a chat template computes with (Jinja's Python
// objects, reduced to what chat templates use): undefined, none, bool, int, float, string, list,
// dict (insertion-ordered, as Python's), and a namespace() object (a dict whose attributes can be
// set), and a template's macro. Lists and dicts are shared, as Python references are.
#ifndef KESTREL_RUNTIME_TOKENIZER_CHAT_JINJA_VALUE_H_
#define KESTREL_RUNTIME_TOKENIZER_CHAT_JINJA_VALUE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace kestrel::runtime::jinja {

class Value;
using List = std::vector<Value>;
using Dict = std::vector<std::pair<std::string, Value>>;

class Value {
 public:
  enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kMacro };

  Value() = default;  // undefined
  static Value None() { return Value(Kind::kNone); }
  static Value Bool(bool b) { Value v(Kind::kBool); v.i_ = b; return v; }
  static Value Int(int64_t i) { Value v(Kind::kInt); v.i_ = i; return v; }
  static Value Float(double f) { Value v(Kind::kFloat); v.f_ = f; return v; }
  static Value Str(std::string s) { Value v(Kind::kString); v.s_ = std::move(s); return v; }
  static Value MakeList(List items = {});
  // namespace(): a dict whose attributes `set ns.x = ...` may assign.
  static Value MakeDict(Dict items = {}, bool is_namespace = false);
  // A {% macro %} defined by the template (the pointer is to its syntax-tree node, which lives as
  // long as the parsed template).
  static Value Macro(const void* node) { Value v(Kind::kMacro); v.macro_ = node; return v; }
  bool is_macro() const { return kind_ == Kind::kMacro; }
  const void* macro() const { return macro_; }

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_number() const { return kind_ == Kind::kInt || kind_ == Kind::kFloat; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_namespace() const { return kind_ == Kind::kDict && is_namespace_; }

  bool bool_value() const { return i_ != 0; }
  // A float converts as Python's int() does, saturated at the 64-bit range (NaN gives 0): the
  // plain cast is undefined behaviour outside it.
  int64_t int_value() const { return kind_ == Kind::kFloat ? FloatToInt(f_) : i_; }
  double float_value() const { return kind_ == Kind::kFloat ? f_ : static_cast<double>(i_); }
  const std::string& str() const { return s_; }
  List& list() const { return *list_; }
  Dict& dict() const { return *dict_; }

  // Python truthiness.
  bool Truthy() const;
  // Dict lookup; nullptr when absent (or not a dict).
  const Value* Find(const std::string& key) const;
  void Set(const std::string& key, Value value) const;
  // What {{ value }} prints (Python str(): None, True, 1.5, lists as Python reprs).
  std::string ToString() const;
  // Python repr (strings quoted), used inside printed lists and dicts.
  std::string Repr() const;
  // JSON text (the tojson filter); indent < 0: compact, Python json.dumps separators.
  std::string ToJson(int indent = -1, int depth = 0) const;
  // Python ==.
  bool Equals(const Value& other) const;

  static int64_t FloatToInt(double f) {
    if (!(f == f)) return 0;
    if (f >= 9223372036854775807.0) return INT64_MAX;
    if (f <= -9223372036854775808.0) return INT64_MIN;
    return static_cast<int64_t>(f);
  }

 private:
  explicit Value(Kind kind) : kind_(kind) {}

  Kind kind_ = Kind::kUndefined;
  int64_t i_ = 0;
  double f_ = 0;
  std::string s_;
  std::shared_ptr<List> list_;
  std::shared_ptr<Dict> dict_;
  bool is_namespace_ = false;
  const void* macro_ = nullptr;
};

}  // namespace kestrel::runtime::jinja

#endif  // KESTREL_RUNTIME_TOKENIZER_CHAT_JINJA_VALUE_H_
