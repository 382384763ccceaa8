#include "runtime/gguf/gguf_value.h"

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace kestrel {
namespace runtime {
namespace {

TEST(GgufValueTest, ScalarConversions) {
  EXPECT_EQ(GgufValue::U8(200).ToU64(), 200u);
  EXPECT_EQ(GgufValue::I8(-5).ToI64(), -5);
  EXPECT_FALSE(GgufValue::I8(-5).ToU64().has_value());
  EXPECT_EQ(GgufValue::I16(-300).ToI64(), -300);
  EXPECT_EQ(GgufValue::U16(65535).ToU64(), 65535u);
  EXPECT_EQ(GgufValue::I32(7).ToU64(), 7u);
  EXPECT_EQ(GgufValue::U64(std::numeric_limits<uint64_t>::max()).ToU64(),
            std::numeric_limits<uint64_t>::max());
  EXPECT_FALSE(GgufValue::U64(std::numeric_limits<uint64_t>::max()).ToI64().has_value());
  EXPECT_EQ(GgufValue::I64(std::numeric_limits<int64_t>::min()).ToI64(),
            std::numeric_limits<int64_t>::min());
  EXPECT_EQ(GgufValue::F32(1.5f).ToF64(), 1.5);
  EXPECT_EQ(GgufValue::F64(-2.25).ToF64(), -2.25);
  EXPECT_FALSE(GgufValue::F32(1.0f).ToU64().has_value());
  EXPECT_FALSE(GgufValue::U32(1).ToF64().has_value());
  EXPECT_EQ(GgufValue::Bool(true).ToBool(), true);
  EXPECT_FALSE(GgufValue::Bool(true).ToU64().has_value());
  EXPECT_EQ(*GgufValue::String("hi").AsString(), "hi");
  EXPECT_EQ(GgufValue::U32(1).AsString(), nullptr);
  EXPECT_EQ(GgufValue::U32(5).DebugString(), "UINT32 5");
  EXPECT_EQ(GgufValue::I32(-5).DebugString(), "INT32 -5");
}

TEST(GgufValueTest, Arrays) {
  const std::vector<float> f = {1.0f, -2.0f, 3.5f};
  GgufValue a = GgufValue::F32Array(f);
  EXPECT_TRUE(a.is_array());
  EXPECT_EQ(a.array_type(), GgufValueType::FLOAT32);
  EXPECT_EQ(a.array_size(), 3u);
  EXPECT_EQ(a.array_raw().size(), 12u);
  EXPECT_EQ(a.ArrayF64At(1), -2.0);
  EXPECT_FALSE(a.ArrayF64At(3).has_value());
  EXPECT_EQ(a.DebugString(), "ARRAY<FLOAT32>[3]");

  const std::vector<int32_t> i = {-1, 0, 70000};
  GgufValue b = GgufValue::I32Array(i);
  EXPECT_EQ(b.ArrayI64At(0), -1);
  EXPECT_FALSE(b.ArrayU64At(0).has_value());
  EXPECT_EQ(b.ArrayU64At(2), 70000u);

  GgufValue s = GgufValue::StringArray({"a", "bc"});
  ASSERT_NE(s.AsStringArray(), nullptr);
  EXPECT_EQ(s.AsStringArray()->at(1), "bc");
  EXPECT_EQ(s.array_size(), 2u);
  EXPECT_TRUE(s.array_raw().empty());

  GgufValue n = GgufValue::ArrayOfArrays({GgufValue::U8Array(std::vector<uint8_t>{1, 2}),
                                          GgufValue::StringArray({"x"})});
  EXPECT_EQ(n.array_type(), GgufValueType::ARRAY);
  ASSERT_NE(n.AsArrayOfArrays(), nullptr);
  EXPECT_EQ(n.AsArrayOfArrays()->at(0).ArrayU64At(1), 2u);

  // A raw array with a size that is not a multiple of the element size degrades safely.
  GgufValue bad = GgufValue::NumericArray(GgufValueType::UINT32, std::vector<uint8_t>(3));
  EXPECT_EQ(bad.array_size(), 0u);
  EXPECT_EQ(GgufValue::U8(1).array_size(), 0u);
  EXPECT_EQ(GgufValue::U8(1).AsStringArray(), nullptr);
}

TEST(GgufValueTest, TypeNames) {
  EXPECT_STREQ(GgufValueTypeName(GgufValueType::STRING), "STRING");
  EXPECT_STREQ(GgufValueTypeName(static_cast<GgufValueType>(13)), "unknown");
  EXPECT_TRUE(IsValidGgufValueType(12));
  EXPECT_FALSE(IsValidGgufValueType(13));
  EXPECT_EQ(GgufScalarSize(GgufValueType::FLOAT64), 8u);
  EXPECT_EQ(GgufScalarSize(GgufValueType::STRING), 0u);
}

}  // namespace
}  // namespace runtime
}  // namespace kestrel
