#include "runtime/gguf/ggml_type.h"

#include <string>

#include <gtest/gtest.h>

namespace kestrel {
namespace runtime {
namespace {

TEST(GgmlTypeTest, KnownTraits) {
  struct Want {
    GgmlType type;
    const char* name;
    uint32_t elems, bytes;
  };
  const Want wants[] = {
      {GgmlType::F32, "F32", 1, 4},       {GgmlType::F16, "F16", 1, 2},
      {GgmlType::Q4_0, "Q4_0", 32, 18},   {GgmlType::Q4_1, "Q4_1", 32, 20},
      {GgmlType::Q5_0, "Q5_0", 32, 22},   {GgmlType::Q5_1, "Q5_1", 32, 24},
      {GgmlType::Q8_0, "Q8_0", 32, 34},   {GgmlType::Q8_1, "Q8_1", 32, 36},
      {GgmlType::Q2_K, "Q2_K", 256, 84},  {GgmlType::Q3_K, "Q3_K", 256, 110},
      {GgmlType::Q4_K, "Q4_K", 256, 144}, {GgmlType::Q5_K, "Q5_K", 256, 176},
      {GgmlType::Q6_K, "Q6_K", 256, 210}, {GgmlType::Q8_K, "Q8_K", 256, 292},
      {GgmlType::I8, "I8", 1, 1},         {GgmlType::I16, "I16", 1, 2},
      {GgmlType::I32, "I32", 1, 4},       {GgmlType::I64, "I64", 1, 8},
      {GgmlType::F64, "F64", 1, 8},       {GgmlType::BF16, "BF16", 1, 2},
      {GgmlType::IQ4_NL, "IQ4_NL", 32, 18},
  };
  for (const Want& w : wants) {
    absl::StatusOr<GgmlTypeTraits> t = GgmlTypeTraitsOf(static_cast<uint32_t>(w.type));
    ASSERT_TRUE(t.ok()) << w.name;
    EXPECT_EQ(t->type, w.type);
    EXPECT_STREQ(t->name, w.name);
    EXPECT_EQ(t->block_elems, w.elems) << w.name;
    EXPECT_EQ(t->block_bytes, w.bytes) << w.name;
    EXPECT_EQ(t->is_quantized, w.elems > 1) << w.name;
    EXPECT_STREQ(GgmlTypeName(w.type), w.name);
    EXPECT_EQ(GgmlTypeTraitsOf(w.type).block_bytes, w.bytes);
  }
  EXPECT_EQ(static_cast<uint32_t>(GgmlType::Q2_K), 10u);
  EXPECT_EQ(static_cast<uint32_t>(GgmlType::Q8_K), 15u);
  EXPECT_EQ(static_cast<uint32_t>(GgmlType::BF16), 30u);
}

TEST(GgmlTypeTest, UnknownIsUnimplementedNamingTheNumber) {
  for (uint32_t raw : {4u, 5u, 31u, 32u, 33u, 36u, 99u, 0xffffffffu}) {
    absl::StatusOr<GgmlTypeTraits> t = GgmlTypeTraitsOf(raw);
    ASSERT_FALSE(t.ok()) << raw;
    EXPECT_EQ(t.status().code(), absl::StatusCode::kUnimplemented);
    EXPECT_NE(std::string(t.status().message()).find(std::to_string(raw)), std::string::npos)
        << t.status();
  }
  EXPECT_STREQ(GgmlTypeName(static_cast<GgmlType>(77)), "unknown");
  EXPECT_EQ(GgmlTypeTraitsOf(static_cast<GgmlType>(77)).block_elems, 0u);
}

}  // namespace
}  // namespace runtime
}  // namespace kestrel
