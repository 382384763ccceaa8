#include "runtime/tokenizer/chat/jinja_value.h"

#include <charconv>
#include <cstdio>
#include <cmath>
#include <string>

namespace kestrel::runtime::jinja {
namespace {

std::string FloatText(double f) {
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f > 0 ? "inf" : "-inf";
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof(buf), f);
  std::string s(buf, r.ptr);
  if (s.find_first_of(".en") == std::string::npos) s += ".0";
  return s;
}

void AppendJsonString(const std::string& s, std::string* out) {
  out->push_back('"');
  for (const char c : s) {
    switch (c) {
      case '"': *out += "\\\""; break;
      case '\\': *out += "\\\\"; break;
      case '\n': *out += "\\n"; break;
      case '\r': *out += "\\r"; break;
      case '\t': *out += "\\t"; break;
      case '\b': *out += "\\b"; break;
      case '\f': *out += "\\f"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          *out += buf;
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

}  // namespace

Value Value::MakeList(List items) {
  Value v(Kind::kList);
  v.list_ = std::make_shared<List>(std::move(items));
  return v;
}

Value Value::MakeDict(Dict items, bool is_namespace) {
  Value v(Kind::kDict);
  v.dict_ = std::make_shared<Dict>(std::move(items));
  v.is_namespace_ = is_namespace;
  return v;
}

bool Value::Truthy() const {
  switch (kind_) {
    case Kind::kUndefined:
    case Kind::kNone:
      return false;
    case Kind::kBool:
    case Kind::kInt:
      return i_ != 0;
    case Kind::kFloat:
      return f_ != 0;
    case Kind::kString:
      return !s_.empty();
    case Kind::kList:
      return !list_->empty();
    case Kind::kDict:
      return !dict_->empty();
    case Kind::kMacro:
      return true;
  }
  return false;
}

const Value* Value::Find(const std::string& key) const {
  if (kind_ != Kind::kDict) return nullptr;
  for (const auto& [k, v] : *dict_) {
    if (k == key) return &v;
  }
  return nullptr;
}

void Value::Set(const std::string& key, Value value) const {
  for (auto& [k, v] : *dict_) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  dict_->emplace_back(key, std::move(value));
}

std::string Value::ToString() const {
  switch (kind_) {
    case Kind::kUndefined:
      return "";
    case Kind::kNone:
      return "None";
    case Kind::kBool:
      return i_ ? "True" : "False";
    case Kind::kInt:
      return std::to_string(i_);
    case Kind::kFloat:
      return FloatText(f_);
    case Kind::kString:
      return s_;
    case Kind::kMacro:
      return "<macro>";
    default:
      return Repr();
  }
}

std::string Value::Repr() const {
  switch (kind_) {
    case Kind::kString: {
      const char quote = s_.find('\'') != std::string::npos && s_.find('"') == std::string::npos ? '"' : '\'';
      std::string out(1, quote);
      for (const char c : s_) {
        if (c == '\\') out += "\\\\";
        else if (c == '\n') out += "\\n";
        else if (c == '\r') out += "\\r";
        else if (c == '\t') out += "\\t";
        else if (c == quote) out += std::string("\\") + c;
        else out.push_back(c);
      }
      out.push_back(quote);
      return out;
    }
    case Kind::kList: {
      std::string out = "[";
      for (size_t i = 0; i < list_->size(); ++i) out += (i ? ", " : "") + (*list_)[i].Repr();
      return out + "]";
    }
    case Kind::kDict: {
      std::string out = "{";
      for (size_t i = 0; i < dict_->size(); ++i) {
        out += (i ? ", " : "") + Value::Str((*dict_)[i].first).Repr() + ": " + (*dict_)[i].second.Repr();
      }
      return out + "}";
    }
    default:
      return ToString();
  }
}

std::string Value::ToJson(int indent, int depth) const {
  const std::string nl = indent < 0 ? "" : "\n" + std::string(static_cast<size_t>(indent) * (depth + 1), ' ');
  const std::string nl_end = indent < 0 ? "" : "\n" + std::string(static_cast<size_t>(indent) * depth, ' ');
  const std::string sep = indent < 0 ? ", " : ",";
  switch (kind_) {
    case Kind::kUndefined:
    case Kind::kNone:
    case Kind::kMacro:
      return "null";
    case Kind::kBool:
      return i_ ? "true" : "false";
    case Kind::kInt:
      return std::to_string(i_);
    case Kind::kFloat:
      return FloatText(f_);
    case Kind::kString: {
      std::string out;
      AppendJsonString(s_, &out);
      return out;
    }
    case Kind::kList: {
      if (list_->empty()) return "[]";
      std::string out = "[";
      for (size_t i = 0; i < list_->size(); ++i) out += (i ? sep : "") + nl + (*list_)[i].ToJson(indent, depth + 1);
      return out + nl_end + "]";
    }
    case Kind::kDict: {
      if (dict_->empty()) return "{}";
      std::string out = "{";
      for (size_t i = 0; i < dict_->size(); ++i) {
        std::string key;
        AppendJsonString((*dict_)[i].first, &key);
        out += (i ? sep : "") + nl + key + ": " + (*dict_)[i].second.ToJson(indent, depth + 1);
      }
      return out + nl_end + "}";
    }
  }
  return "null";
}

bool Value::Equals(const Value& o) const {
  if (is_number() && o.is_number()) return float_value() == o.float_value();
  if ((kind_ == Kind::kBool && o.is_number()) || (o.kind_ == Kind::kBool && is_number())) {
    return float_value() == o.float_value();
  }
  if (kind_ != o.kind_) return false;
  switch (kind_) {
    case Kind::kUndefined:
    case Kind::kNone:
      return true;
    case Kind::kBool:
      return i_ == o.i_;
    case Kind::kString:
      return s_ == o.s_;
    case Kind::kList:
      if (list_->size() != o.list_->size()) return false;
      for (size_t i = 0; i < list_->size(); ++i) {
        if (!(*list_)[i].Equals((*o.list_)[i])) return false;
      }
      return true;
    case Kind::kDict:
      if (dict_->size() != o.dict_->size()) return false;
      for (const auto& [k, v] : *dict_) {
        const Value* other = o.Find(k);
        if (other == nullptr || !v.Equals(*other)) return false;
      }
      return true;
    default:
      return false;
  }
}

}  // namespace kestrel::runtime::jinja
