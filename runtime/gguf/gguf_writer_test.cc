#include "runtime/gguf/gguf_writer.h"

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "runtime/gguf/gguf_file.h"
#include "runtime/gguf/half.h"

namespace kestrel {
namespace runtime {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::vector<uint8_t> Pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 13);
  return v;
}

TEST(GgufWriterTest, RoundTripThroughFileInChunks) {
  const std::string path = ::testing::TempDir() + "/gguf_writer_roundtrip.gguf";
  GgufWriter w(64);
  ASSERT_TRUE(w.AddString("general.architecture", "llama").ok());
  ASSERT_TRUE(w.AddKv("u8", GgufValue::U8(250)).ok());
  ASSERT_TRUE(w.AddKv("i8", GgufValue::I8(-128)).ok());
  ASSERT_TRUE(w.AddKv("u16", GgufValue::U16(60000)).ok());
  ASSERT_TRUE(w.AddKv("i16", GgufValue::I16(-30000)).ok());
  ASSERT_TRUE(w.AddU32("u32", 4000000000u).ok());
  ASSERT_TRUE(w.AddI32("i32", -2000000000).ok());
  ASSERT_TRUE(w.AddF32("f32", 1e-5f).ok());
  ASSERT_TRUE(w.AddBool("bool", false).ok());
  ASSERT_TRUE(w.AddU64("u64", 1ull << 40).ok());
  ASSERT_TRUE(w.AddKv("i64", GgufValue::I64(-(1ll << 40))).ok());
  ASSERT_TRUE(w.AddKv("f64", GgufValue::F64(3.25)).ok());
  std::vector<std::string> vocab;
  for (int i = 0; i < 32000; ++i) vocab.push_back("tok" + std::to_string(i));
  ASSERT_TRUE(w.AddStringArray("tokenizer.ggml.tokens", vocab).ok());
  const std::vector<bool> flags_src = {true, false, true};
  const bool flags[] = {true, false, true};
  ASSERT_TRUE(w.AddKv("bools", GgufValue::BoolArray(flags)).ok());
  const std::vector<double> d = {0.5, -0.25};
  ASSERT_TRUE(w.AddKv("f64s", GgufValue::F64Array(d)).ok());

  ASSERT_TRUE(w.AddTensor("token_embd.weight", GgmlType::F16, {8, 10}).ok());
  ASSERT_TRUE(w.AddTensor("blk.0.ffn_gate_exps.weight", GgmlType::F32, {4, 3, 2}).ok());
  ASSERT_TRUE(w.AddTensor("q4", GgmlType::Q4_0, {64, 3}).ok());
  ASSERT_TRUE(w.AddTensor("q8", GgmlType::Q8_0, {32}).ok());
  ASSERT_TRUE(w.AddTensor("k", GgmlType::Q4_K, {256, 1, 1, 2}).ok());
  ASSERT_EQ(w.tensors()[2].size_bytes, 6u * 18);
  ASSERT_EQ(w.tensors()[4].size_bytes, 2u * 144);

  ASSERT_TRUE(w.OpenFile(path).ok());
  std::vector<std::vector<uint8_t>> datas;
  for (size_t i = 0; i < w.tensors().size(); ++i) {
    datas.push_back(Pattern(w.tensors()[i].size_bytes, static_cast<uint8_t>(i)));
    const std::vector<uint8_t>& data = datas.back();
    // Stream in uneven chunks.
    for (size_t at = 0; at < data.size();) {
      const size_t n = std::min<size_t>(data.size() - at, 7 + at % 11);
      ASSERT_TRUE(w.WriteTensorData(data.data() + at, n).ok());
      at += n;
    }
  }
  ASSERT_TRUE(w.Close().ok());

  for (bool mmap : {true, false}) {
    GgufOpenOptions o;
    o.use_mmap = mmap;
    auto f = GgufFile::Open(path, o);
    ASSERT_TRUE(f.ok()) << f.status();
    const GgufFile& g = **f;
    EXPECT_EQ(g.version(), 3u);
    EXPECT_EQ(g.alignment(), 64u);
    EXPECT_EQ(g.metadata().front().key, "general.alignment");
    EXPECT_EQ(g.metadata()[1].key, "general.architecture");
    EXPECT_EQ(*g.GetString("general.architecture"), "llama");
    EXPECT_EQ(g.Find("u8")->ToU64(), 250u);
    EXPECT_EQ(*g.GetI64("i8"), -128);
    EXPECT_EQ(*g.GetU32("u16"), 60000u);
    EXPECT_EQ(*g.GetI64("i16"), -30000);
    EXPECT_EQ(*g.GetU32("u32"), 4000000000u);
    EXPECT_EQ(*g.GetI64("i32"), -2000000000);
    EXPECT_EQ(*g.GetF32("f32"), 1e-5f);
    EXPECT_EQ(*g.GetBool("bool"), false);
    EXPECT_EQ(*g.GetU64("u64"), 1ull << 40);
    EXPECT_EQ(*g.GetI64("i64"), -(1ll << 40));
    EXPECT_EQ(g.Find("f64")->ToF64(), 3.25);
    auto tokens = g.GetStringArray("tokenizer.ggml.tokens");
    ASSERT_TRUE(tokens.ok());
    ASSERT_EQ(tokens->size(), 32000u);
    EXPECT_EQ((*tokens)[31999], "tok31999");
    EXPECT_EQ(g.Find("bools")->array_size(), 3u);
    EXPECT_EQ(g.Find("bools")->array_raw()[2], 1);
    EXPECT_EQ(*g.GetF32Array("f64s"), (std::vector<float>{0.5f, -0.25f}));
    ASSERT_EQ(g.tensors().size(), 5u);
    for (size_t i = 0; i < g.tensors().size(); ++i) {
      const GgufTensorInfo& t = g.tensors()[i];
      EXPECT_EQ(t.name, w.tensors()[i].name);
      EXPECT_EQ(t.type, w.tensors()[i].type);
      EXPECT_EQ(t.dims, w.tensors()[i].dims);
      EXPECT_EQ(t.size_bytes, datas[i].size());
      EXPECT_EQ(t.offset_in_data % 64, 0u);
      EXPECT_EQ(std::memcmp(g.TensorData(t), datas[i].data(), datas[i].size()), 0) << t.name;
    }
    EXPECT_EQ(g.file_size() % 64, 0u);  // every tensor is followed by padding
  }
  std::remove(path.c_str());
  (void)flags_src;
}

TEST(GgufWriterTest, StringAndFileOutputsAreIdentical) {
  const std::string path = ::testing::TempDir() + "/gguf_writer_same.gguf";
  std::string mem;
  for (int pass = 0; pass < 2; ++pass) {
    GgufWriter w;
    ASSERT_TRUE(w.AddU32("a", 1).ok());
    ASSERT_TRUE(w.AddTensor("t", GgmlType::F32, {3}).ok());
    ASSERT_TRUE(pass == 0 ? w.OpenString(&mem).ok() : w.OpenFile(path).ok());
    const float v[3] = {1, 2, 3};
    ASSERT_TRUE(w.WriteTensor("t", v, sizeof(v)).ok());
    ASSERT_TRUE(w.Close().ok());
  }
  EXPECT_EQ(ReadAll(path), mem);
  EXPECT_EQ(mem.size() % 32, 0u);
  std::remove(path.c_str());
}

TEST(GgufWriterTest, F16DataSurvives) {
  GgufWriter w;
  ASSERT_TRUE(w.AddTensor("h", GgmlType::F16, {4}).ok());
  std::string mem;
  ASSERT_TRUE(w.OpenString(&mem).ok());
  const uint16_t h[4] = {F32ToF16(1.0f), F32ToF16(-0.5f), F32ToF16(65504.0f), F32ToF16(1e-7f)};
  ASSERT_TRUE(w.WriteTensor("h", h, sizeof(h)).ok());
  ASSERT_TRUE(w.Close().ok());
  auto f = GgufFile::OpenFromMemory(mem);
  ASSERT_TRUE(f.ok()) << f.status();
  const uint8_t* p = (*f)->TensorData((*f)->tensors()[0]);
  uint16_t back[4];
  std::memcpy(back, p, sizeof(back));
  EXPECT_EQ(F16ToF32(back[0]), 1.0f);
  EXPECT_EQ(F16ToF32(back[1]), -0.5f);
  EXPECT_EQ(F16ToF32(back[2]), 65504.0f);
}

TEST(GgufWriterTest, DeclarationErrors) {
  GgufWriter w;
  ASSERT_TRUE(w.AddU32("a", 1).ok());
  EXPECT_EQ(w.AddU32("a", 2).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(w.AddU32("general.alignment", 64).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(w.AddTensor("r0", GgmlType::F32, {}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(w.AddTensor("r5", GgmlType::F32, {1, 1, 1, 1, 1}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(w.AddTensor("z", GgmlType::F32, {4, 0}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(w.AddTensor("q", GgmlType::Q8_0, {33}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(w.AddTensor("o", GgmlType::F32, {1ull << 32, 1ull << 32}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(w.AddTensor("u", static_cast<GgmlType>(99), {4}).code(),
            absl::StatusCode::kUnimplemented);
  ASSERT_TRUE(w.AddTensor("t", GgmlType::F32, {4}).ok());
  EXPECT_EQ(w.AddTensor("t", GgmlType::F32, {4}).code(), absl::StatusCode::kInvalidArgument);
  GgufWriter bad_align(48);
  EXPECT_EQ(bad_align.AddTensor("t", GgmlType::F32, {4}).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(GgufWriterTest, StreamingErrors) {
  GgufWriter w;
  ASSERT_TRUE(w.AddTensor("a", GgmlType::F32, {4}).ok());
  ASSERT_TRUE(w.AddTensor("b", GgmlType::F32, {2}).ok());
  const uint8_t buf[64] = {};
  EXPECT_EQ(w.WriteTensorData(buf, 4).code(), absl::StatusCode::kFailedPrecondition);  // not open
  std::string mem;
  ASSERT_TRUE(w.OpenString(&mem).ok());
  EXPECT_EQ(w.AddU32("late", 1).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(w.WriteTensor("b", buf, 8).code(), absl::StatusCode::kFailedPrecondition);  // order
  EXPECT_EQ(w.WriteTensorData(buf, 17).code(), absl::StatusCode::kFailedPrecondition);  // too big
  ASSERT_TRUE(w.WriteTensorData(buf, 16).ok());
  absl::Status s = w.Close();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(s.message()).find("'b'"), std::string::npos) << s;
}

TEST(GgufWriterTest, UnwritablePath) {
  GgufWriter w;
  absl::Status s = w.OpenFile("/nonexistent-dir/x.gguf");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
}

}  // namespace
}  // namespace runtime
}  // namespace kestrel
