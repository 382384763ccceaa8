#include "runtime/grammar/json_schema.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "runtime/grammar/gbnf_parser.h"
#include "runtime/grammar/matcher.h"

namespace kestrel::runtime::grammar {
namespace {

using ::testing::HasSubstr;

Grammar Compile(const std::string& schema) {
  absl::StatusOr<std::string> gbnf = JsonSchemaToGbnf(schema);
  EXPECT_TRUE(gbnf.ok()) << gbnf.status();
  if (!gbnf.ok()) return Grammar();
  absl::StatusOr<Grammar> g = ParseGbnf(*gbnf);
  EXPECT_TRUE(g.ok()) << g.status() << "\n" << *gbnf;
  return g.ok() ? *std::move(g) : Grammar();
}

bool Full(const Grammar& g, const std::string& text) {
  Matcher m(&g);
  return m.AcceptBytes(text) && m.accepting();
}

TEST(JsonSchema, ObjectWithRequiredAndOptionalProperties) {
  Grammar g = Compile(R"({"type": "object", "properties": {
      "name": {"type": "string", "maxLength": 5},
      "age": {"type": "integer"},
      "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
      "ok": {"type": "boolean"}},
    "required": ["name", "ok"]})");
  EXPECT_TRUE(Full(g, R"({"name": "Tim", "ok": true})"));
  EXPECT_TRUE(Full(g, R"({"name":"Tim","age":-12,"tags":["a","b"],"ok":false})"));
  EXPECT_TRUE(Full(g, "{\n\"name\": \"\",\n\"age\": 0,\n\"ok\": true\n}"));
  EXPECT_FALSE(Full(g, "{  \"name\": \"\", \"ok\": true}"));  // at most one blank: no padding
  EXPECT_FALSE(Full(g, R"({"ok": true})"));                           // name is required
  EXPECT_FALSE(Full(g, R"({"name": "Timothy", "ok": true})"));        // maxLength
  EXPECT_FALSE(Full(g, R"({"name": "T", "age": 1.5, "ok": true})"));  // integer
  EXPECT_FALSE(Full(g, R"({"name": "T", "tags": ["a","b","c"], "ok": true})"));  // maxItems
  EXPECT_FALSE(Full(g, R"({"name": "T", "ok": true, "x": 1})"));      // no other properties
  EXPECT_FALSE(Full(g, R"({"name": "T", "age": 01, "ok": true})"));   // JSON numbers
  EXPECT_FALSE(Full(g, R"({"age": 1, "name": "T", "ok": true})"));    // schema order
}

TEST(JsonSchema, AllOptional) {
  Grammar g = Compile(R"({"type": "object", "properties": {"a": {"type": "null"}, "b": {"type": "number"}}})");
  EXPECT_TRUE(Full(g, "{}"));
  EXPECT_TRUE(Full(g, R"({"b": 2.5e+3})"));
  EXPECT_TRUE(Full(g, R"({"a": null, "b": -0.25})"));
  EXPECT_FALSE(Full(g, R"({, "b": 1})"));
  EXPECT_FALSE(Full(g, R"({"a": null,})"));
}

TEST(JsonSchema, EnumConstAnyOfAndTypeLists) {
  Grammar g = Compile(R"({"type": "object", "properties": {
      "color": {"enum": ["red", "green", 3, null]},
      "v": {"const": {"k": [1, "x\"y"]}},
      "u": {"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 1}]},
      "t": {"type": ["boolean", "null"]}},
    "required": ["color", "v", "u", "t"]})");
  EXPECT_TRUE(Full(g, R"({"color": "green", "v": {"k":[1,"x\"y"]}, "u": 7, "t": null})"));
  EXPECT_TRUE(Full(g, R"({"color": 3, "v": {"k":[1,"x\"y"]}, "u": "q", "t": true})"));
  EXPECT_FALSE(Full(g, R"({"color": "blue", "v": {"k":[1,"x\"y"]}, "u": 7, "t": null})"));
  EXPECT_FALSE(Full(g, R"({"color": "red", "v": {"k":[2,"x\"y"]}, "u": 7, "t": null})"));
  EXPECT_FALSE(Full(g, R"({"color": "red", "v": {"k":[1,"x\"y"]}, "u": "qq", "t": null})"));
}

TEST(JsonSchema, NestingArraysAndAnyValue) {
  Grammar g = Compile(R"({"type": "array", "minItems": 1, "items": {"type": "object",
      "properties": {"p": {"type": "array", "items": {"type": "integer"}}, "any": {}}, "required": ["p"]}})");
  EXPECT_TRUE(Full(g, R"([{"p": []}])"));
  EXPECT_TRUE(Full(g, R"([{"p": [1, 2]}, {"p": [3], "any": {"x": [true, null, "s"]}}])"));
  EXPECT_FALSE(Full(g, "[]"));
  EXPECT_FALSE(Full(g, R"([{"p": ["1"]}])"));
}

TEST(JsonSchema, StringEscapes) {
  Grammar g = Compile(R"({"type": "string"})");
  EXPECT_TRUE(Full(g, R"("a\"b\\c\n\u00e9 \u20AC ok")"));
  EXPECT_TRUE(Full(g, "\"caf\xc3\xa9\""));
  EXPECT_FALSE(Full(g, "\"a\nb\""));   // raw control character
  EXPECT_FALSE(Full(g, R"("\x")"));    // not a JSON escape
}

TEST(JsonSchema, JsonObjectGrammar) {
  absl::StatusOr<Grammar> g = ParseGbnf(JsonObjectGbnf());
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_TRUE(Full(*g, R"({"a": [1, {"b": null}], "c": "d"})"));
  EXPECT_TRUE(Full(*g, "{}"));
  EXPECT_FALSE(Full(*g, "[1]"));
  EXPECT_FALSE(Full(*g, R"({"a": 1,})"));
}

TEST(JsonSchema, RefusesWhatItCannotEnforce) {
  struct Case {
    const char* schema;
    const char* message;
  } cases[] = {
      {R"({"type": "string", "pattern": "^a"})", "unsupported keyword 'pattern' at #"},
      {R"({"type": "object", "properties": {"n": {"type": "integer", "minimum": 3}}})",
       "unsupported keyword 'minimum' at #/properties/n"},
      {R"({"type": "array", "items": {"$ref": "#/defs/x"}})", "unsupported keyword '$ref' at #/items"},
      {R"({"type": "date"})", "unsupported type 'date' at #"},
      {R"({"type": "object", "properties": {"a": {}}, "required": ["b"]})",
       "required property 'b' is not in 'properties' at #"},
      {R"({"type": "object", "properties": {"a": {}}, "additionalProperties": true})",
       "'additionalProperties' with a value other than false"},
      {R"({"type": "string", "maxLength": -1})", "'maxLength' must be an integer from 0 to 1000"},
      {R"({"type": "object", )", "not valid JSON"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::string> g = JsonSchemaToGbnf(c.schema);
    ASSERT_FALSE(g.ok()) << c.schema;
    EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(g.status().message()), HasSubstr(c.message)) << c.schema;
  }
}

}  // namespace
}  // namespace kestrel::runtime::grammar
