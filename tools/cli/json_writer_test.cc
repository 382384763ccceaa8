#include "json_writer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

namespace kestrel::cli {
namespace {

std::string Quote(std::string_view s) {
  std::string out;
  AppendJsonString(s, &out);
  return out;
}

TEST(JsonStringTest, EscapesQuotesBackslashAndControls) {
  EXPECT_EQ(Quote("plain"), "\"plain\"");
  EXPECT_EQ(Quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(Quote("\n\r\t\b\f"), "\"\\n\\r\\t\\b\\f\"");
  EXPECT_EQ(Quote(std::string("\x01\x1f", 2)), "\"\\u0001\\u001f\"");
  EXPECT_EQ(Quote(std::string("a\0b", 3)), "\"a\\u0000b\"");
  EXPECT_EQ(Quote("/\x7f"), "\"/\x7f\"");  // '/' and DEL need no escape
}

TEST(JsonStringTest, KeepsValidUtf8) {
  EXPECT_EQ(Quote("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x90\xa6"),
            "\"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x90\xa6\"");
  EXPECT_EQ(Quote("\xef\xbf\xbf\xf4\x8f\xbf\xbf"), "\"\xef\xbf\xbf\xf4\x8f\xbf\xbf\"");  // U+FFFF, U+10FFFF
}

TEST(JsonStringTest, ReplacesInvalidUtf8ByMaximalSubparts) {
  EXPECT_EQ(Quote("\xff"), "\"\\ufffd\"");
  EXPECT_EQ(Quote("a\x80z"), "\"a\\ufffdz\"");               // stray continuation
  EXPECT_EQ(Quote("\xc0\xaf"), "\"\\ufffd\\ufffd\"");        // overlong lead C0
  EXPECT_EQ(Quote("\xe0\x80\xaf"), "\"\\ufffd\\ufffd\\ufffd\"");  // overlong 3-byte
  EXPECT_EQ(Quote("\xed\xa0\x80"), "\"\\ufffd\\ufffd\\ufffd\"");  // surrogate D800
  EXPECT_EQ(Quote("\xf4\x90\x80\x80"), "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");  // > U+10FFFF
  EXPECT_EQ(Quote("\xe2\x82"), "\"\\ufffd\"");               // truncated: one maximal subpart
  EXPECT_EQ(Quote("\xe2\x82z"), "\"\\ufffdz\"");
  EXPECT_EQ(Quote("\xf0\x9f\x90"), "\"\\ufffd\"");
  EXPECT_EQ(Quote("\xc3(\xc3\xa9"), "\"\\ufffd(\xc3\xa9\"");
}

TEST(JsonWriterTest, NestedValues) {
  JsonWriter w;
  w.BeginObject();
  w.Key("a");
  w.BeginArray();
  w.Int(-1);
  w.Uint(18446744073709551615ull);
  w.BeginObject();
  w.EndObject();
  w.BeginArray();
  w.EndArray();
  w.EndArray();
  w.Key("b");
  w.Bool(true);
  w.Key("c");
  w.Null();
  w.Key("d\n");
  w.String("x");
  w.EndObject();
  EXPECT_EQ(w.str(), "{\"a\":[-1,18446744073709551615,{},[]],\"b\":true,\"c\":null,\"d\\n\":\"x\"}");
}

TEST(JsonWriterTest, Numbers) {
  JsonWriter w;
  w.BeginArray();
  w.Float(0.8f);
  w.Double(0.1);
  w.Double(2.0);
  w.Double(std::nan(""));
  w.Double(std::numeric_limits<double>::infinity());
  w.Float(1e-5f);
  w.EndArray();
  EXPECT_EQ(w.str(), "[0.8,0.1,2,null,null,1e-05]");
}

TEST(JsonWriterTest, DoubleArrayInsideAnObject) {
  JsonWriter w;
  w.BeginObject();
  w.Key("all");
  w.DoubleArray({1.5, 2});
  w.Key("none");
  w.DoubleArray({});
  w.EndObject();
  EXPECT_EQ(w.str(), "{\"all\":[1.5,2],\"none\":[]}");
}

}  // namespace
}  // namespace kestrel::cli
