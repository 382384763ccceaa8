#include "runtime/grammar/json_schema.h"

#include <set>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace kestrel {
namespace runtime {
namespace grammar {
namespace {

using Json = nlohmann::ordered_json;

// Shared rules every generated grammar ends with. Whitespace is at most one space or newline
// between tokens: small models otherwise pad with blanks until the token budget runs out. \u escapes of UTF-16 surrogates are left out
// (an unpaired one is not valid JSON to strict parsers; characters past U+FFFF come as UTF-8).
constexpr const char* kCommonRules = R"(ws ::= [ \n]?
value ::= object | array | string | number | "true" | "false" | "null"
object ::= "{" ws ( string ws ":" ws value ws ( "," ws string ws ":" ws value ws )* )? "}"
array ::= "[" ws ( value ws ( "," ws value ws )* )? "]"
string ::= "\"" char* "\""
char ::= [^"\\\x00-\x1F\x7F] | "\\" ( ["\\/bfnrt] | "u" hex-unit )
hex-unit ::= [0-9a-cA-CeEfF] [0-9a-fA-F]{3} | [dD] [0-7] [0-9a-fA-F]{2}
integer ::= "-"? ( "0" | [1-9] [0-9]{0,15} )
number ::= integer ( "." [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )?
boolean ::= "true" | "false"
null ::= "null"
)";

std::string Literal(const std::string& bytes) {
  std::string out = "\"";
  for (unsigned char c : bytes) {
    if (c == '"') out += "\\\"";
    else if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || c == 0x7F) out += absl::StrFormat("\\x%02X", c);
    else out.push_back(static_cast<char>(c));
  }
  return out + "\"";
}

class Compiler {
 public:
  absl::StatusOr<std::string> Compile(const Json& schema) {
    absl::StatusOr<std::string> root = Schema(schema, "#", "root-value");
    if (!root.ok()) return root.status();
    std::string out = absl::StrCat("root ::= ", *root, "\n");
    for (const std::string& r : rules_) absl::StrAppend(&out, r, "\n");
    return out + kCommonRules;
  }

 private:
  absl::Status Bad(const std::string& at, absl::string_view what, absl::string_view hint = "") {
    return absl::InvalidArgumentError(
        absl::StrCat("json_schema: ", what, " at ", at, hint.empty() ? "" : " ", hint));
  }
  // A new rule `name-N ::= body`; returns its name.
  std::string AddRule(const std::string& base, const std::string& body) {
    std::string name = absl::StrCat(base, "-r", ++n_rules_);
    rules_.push_back(absl::StrCat(name, " ::= ", body));
    return name;
  }
  static std::string Slug(const std::string& s) {
    std::string out;
    for (char c : s) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
      out.push_back(ok ? c : '-');
      if (out.size() >= 24) break;
    }
    return out.empty() ? "p" : out;
  }

  absl::StatusOr<uint32_t> Count(const Json& s, const char* key, const std::string& at, uint32_t dflt) {
    if (!s.contains(key)) return dflt;
    const Json& v = s[key];
    if (!v.is_number_unsigned() || v.get<uint64_t>() > 1000) {
      return Bad(at, absl::StrCat("'", key, "' must be an integer from 0 to 1000"));
    }
    return static_cast<uint32_t>(v.get<uint64_t>());
  }

  // The GBNF expression of the instances of schema `s` at `at`; rules it needs are added.
  absl::StatusOr<std::string> Schema(const Json& s, const std::string& at, const std::string& base) {
    if (s.is_boolean()) {
      if (s.get<bool>()) return std::string("value");
      return Bad(at, "the schema 'false' allows nothing");
    }
    if (!s.is_object()) return Bad(at, "a schema must be an object or a boolean");
    static const std::set<std::string> kKnown = {
        "type", "enum", "const", "anyOf", "oneOf", "properties", "required", "additionalProperties",
        "items", "minItems", "maxItems", "minLength", "maxLength", "title", "description",
        "default", "examples", "$schema", "$id", "$comment"};
    for (auto it = s.begin(); it != s.end(); ++it) {
      if (!kKnown.count(it.key())) {
        return Bad(at, absl::StrCat("unsupported keyword '", it.key(), "'"),
                   "(supported: type, properties, required, additionalProperties: false, items, "
                   "minItems, maxItems, minLength, maxLength, enum, const, anyOf, oneOf)");
      }
    }
    if (s.contains("const")) return Literal(s["const"].dump());
    if (s.contains("enum")) {
      if (!s["enum"].is_array() || s["enum"].empty()) return Bad(at, "'enum' must be a non-empty array");
      std::vector<std::string> alts;
      for (const Json& v : s["enum"]) alts.push_back(Literal(v.dump()));
      return absl::StrCat("( ", absl::StrJoin(alts, " | "), " )");
    }
    for (const char* key : {"anyOf", "oneOf"}) {
      if (!s.contains(key)) continue;
      if (!s[key].is_array() || s[key].empty()) return Bad(at, absl::StrCat("'", key, "' must be a non-empty array"));
      std::vector<std::string> alts;
      for (size_t i = 0; i < s[key].size(); ++i) {
        absl::StatusOr<std::string> a = Schema(s[key][i], absl::StrCat(at, "/", key, "/", i), base);
        if (!a.ok()) return a.status();
        alts.push_back(*a);
      }
      return absl::StrCat("( ", absl::StrJoin(alts, " | "), " )");
    }
    if (!s.contains("type")) {
      if (s.contains("properties")) return Object(s, at, base);
      if (s.contains("items")) return Array(s, at, base);
      return std::string("value");
    }
    const Json& type = s["type"];
    if (type.is_array()) {
      if (type.empty()) return Bad(at, "'type' is an empty list");
      std::vector<std::string> alts;
      for (const Json& t : type) {
        if (!t.is_string()) return Bad(at, "'type' must be a string or a list of strings");
        absl::StatusOr<std::string> a = Typed(s, t.get<std::string>(), at, base);
        if (!a.ok()) return a.status();
        alts.push_back(*a);
      }
      return absl::StrCat("( ", absl::StrJoin(alts, " | "), " )");
    }
    if (!type.is_string()) return Bad(at, "'type' must be a string or a list of strings");
    return Typed(s, type.get<std::string>(), at, base);
  }

  absl::StatusOr<std::string> Typed(const Json& s, const std::string& type, const std::string& at,
                                    const std::string& base) {
    if (type == "object") return Object(s, at, base);
    if (type == "array") return Array(s, at, base);
    if (type == "string") return String(s, at, base);
    if (type == "number" || type == "integer" || type == "boolean" || type == "null") return type;
    return Bad(at, absl::StrCat("unsupported type '", type, "'"),
               "(supported: object, array, string, number, integer, boolean, null)");
  }

  absl::StatusOr<std::string> String(const Json& s, const std::string& at, const std::string& base) {
    absl::StatusOr<uint32_t> min = Count(s, "minLength", at, 0);
    if (!min.ok()) return min.status();
    if (!s.contains("maxLength")) {
      return min.value() == 0 ? std::string("string") : AddRule(base, absl::StrFormat("\"\\\"\" char{%u,} \"\\\"\"", *min));
    }
    absl::StatusOr<uint32_t> max = Count(s, "maxLength", at, 0);
    if (!max.ok()) return max.status();
    if (*max < *min) return Bad(at, "'maxLength' is below 'minLength'");
    return AddRule(base, absl::StrFormat("\"\\\"\" char{%u,%u} \"\\\"\"", *min, *max));
  }

  absl::StatusOr<std::string> Array(const Json& s, const std::string& at, const std::string& base) {
    std::string item = "value";
    if (s.contains("items")) {
      absl::StatusOr<std::string> i = Schema(s["items"], at + "/items", base + "-item");
      if (!i.ok()) return i.status();
      item = *i;
    }
    absl::StatusOr<uint32_t> min = Count(s, "minItems", at, 0);
    if (!min.ok()) return min.status();
    absl::StatusOr<uint32_t> max = Count(s, "maxItems", at, 1000);
    if (!max.ok()) return max.status();
    if (*max < *min) return Bad(at, "'maxItems' is below 'minItems'");
    if (*max == 0) return std::string("( \"[\" ws \"]\" )");
    const std::string more = s.contains("maxItems")
        ? absl::StrFormat("( \",\" ws %s ws ){%u,%u}", item, *min > 0 ? *min - 1 : 0, *max - 1)
        : absl::StrFormat("( \",\" ws %s ws ){%u,}", item, *min > 0 ? *min - 1 : 0);
    std::string list = absl::StrCat(item, " ws ", more);
    if (*min == 0) list = absl::StrCat("( ", list, " )?");
    return AddRule(base, absl::StrCat("\"[\" ws ", list, " \"]\""));
  }

  absl::StatusOr<std::string> Object(const Json& s, const std::string& at, const std::string& base) {
    if (s.contains("additionalProperties") && s["additionalProperties"] != false) {
      if (!s.contains("properties") && s["additionalProperties"] == true) return std::string("object");
      return Bad(at, "unsupported keyword 'additionalProperties' with a value other than false");
    }
    if (!s.contains("properties")) {
      if (s.contains("required")) return Bad(at, "'required' without 'properties'");
      return std::string("object");
    }
    const Json& props = s["properties"];
    if (!props.is_object()) return Bad(at, "'properties' must be an object");
    std::set<std::string> required;
    if (s.contains("required")) {
      if (!s["required"].is_array()) return Bad(at, "'required' must be an array of names");
      for (const Json& r : s["required"]) {
        if (!r.is_string()) return Bad(at, "'required' must be an array of names");
        if (!props.contains(r.get<std::string>())) {
          return Bad(at, absl::StrCat("required property '", r.get<std::string>(), "' is not in 'properties'"));
        }
        required.insert(r.get<std::string>());
      }
    }
    std::vector<std::string> kv;
    std::vector<bool> req;
    for (auto it = props.begin(); it != props.end(); ++it) {
      const std::string pat = absl::StrCat(at, "/properties/", it.key());
      absl::StatusOr<std::string> v = Schema(it.value(), pat, absl::StrCat(base, "-", Slug(it.key())));
      if (!v.ok()) return v.status();
      kv.push_back(absl::StrCat(Literal(Json(it.key()).dump()), " ws \":\" ws ", *v, " ws"));
      req.push_back(required.count(it.key()) > 0);
    }
    // tail_i: properties i.. after one was written (each starts with a comma); head_i: before.
    const size_t n = kv.size();
    std::string tail = "", head = "";
    for (size_t k = n; k-- > 0;) {
      const std::string t = tail.empty() ? "" : " " + tail;
      const std::string new_tail = req[k] ? AddRule(base + "-tail", absl::StrCat("\",\" ws ", kv[k], t))
                                          : AddRule(base + "-tail", absl::StrCat("( \",\" ws ", kv[k], " )?", t));
      const std::string new_head = req[k] ? AddRule(base + "-head", absl::StrCat(kv[k], t))
                                          : AddRule(base + "-head", absl::StrCat(kv[k], t, " | ", head.empty() ? "\"\"" : head));
      tail = new_tail;
      head = new_head;
    }
    return AddRule(base, absl::StrCat("\"{\" ws ", head.empty() ? "" : head + " ", "\"}\""));
  }

  std::vector<std::string> rules_;
  int n_rules_ = 0;
};

}  // namespace

absl::StatusOr<std::string> JsonSchemaToGbnf(absl::string_view schema) {
  Json j = Json::parse(schema.begin(), schema.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError("json_schema: the schema is not valid JSON");
  return Compiler().Compile(j);
}

std::string JsonObjectGbnf() { return std::string("root ::= object\n") + kCommonRules; }

}  // namespace grammar
}  // namespace runtime
}  // namespace kestrel
