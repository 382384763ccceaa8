// Unit tests of the package format: checksum vectors, an exact metadata/tensor round trip through
// a .kpkg, and damaged packages (truncated, bit-flipped, wrong version) refused with a message
// naming what is wrong.
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "runtime/gguf/gguf_writer.h"
#include "runtime/package/checksum.h"
#include "runtime/package/container.h"
#include "runtime/package/fingerprint.h"
#include "runtime/package/package_reader.h"
#include "runtime/package/package_writer.h"
#include "tests/temp_dir.h"

namespace kestrel {
namespace runtime {
namespace {

TEST(Xxh64Test, KnownVectors) {
  EXPECT_EQ(Xxh64Of("", 0), 0xEF46DB3751D8E999ULL);
  EXPECT_EQ(Xxh64Of("abc", 3), 0x44BC2CF5AD770999ULL);
  // Streaming in uneven pieces gives the one-shot digest.
  std::string data(1000, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7 + 3);
  Xxh64 h;
  for (size_t at = 0, n = 1; at < data.size(); at += n, n = n * 3 % 61 + 1) {
    h.Update(data.data() + at, std::min(n, data.size() - at));
  }
  EXPECT_EQ(h.Digest(), Xxh64Of(data.data(), data.size()));
}

std::string TempPath(const std::string& name) { return kestrel::testing::TestTempDir().File(name); }

// A small GGUF with every kind of metadata value and a few tensor types.
std::string MakeGguf() {
  GgufWriter w;
  EXPECT_TRUE(w.AddString("general.architecture", "llama").ok());
  EXPECT_TRUE(w.AddU32("llama.block_count", 2).ok());
  EXPECT_TRUE(w.AddF32("llama.rope.freq_base", 10000.0f).ok());
  EXPECT_TRUE(w.AddKv("general.i8", GgufValue::I8(-5)).ok());
  EXPECT_TRUE(w.AddKv("general.i64", GgufValue::I64(-1234567890123LL)).ok());
  EXPECT_TRUE(w.AddKv("general.f64", GgufValue::F64(0.125)).ok());
  EXPECT_TRUE(w.AddKv("general.nested", GgufValue::ArrayOfArrays({GgufValue::I32Array(std::vector<int32_t>{1, 2}),
                                                                  GgufValue::I32Array(std::vector<int32_t>{3})}))
                  .ok());
  EXPECT_TRUE(w.AddString("tokenizer.ggml.model", "llama").ok());
  EXPECT_TRUE(w.AddStringArray("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "a"}).ok());
  EXPECT_TRUE(w.AddF32Array("tokenizer.ggml.scores", std::vector<float>{0, 0, 0, -1.5f}).ok());
  EXPECT_TRUE(w.AddI32Array("tokenizer.ggml.token_type", std::vector<int32_t>{2, 3, 3, 1}).ok());
  EXPECT_TRUE(w.AddStringArray("tokenizer.ggml.merges", {"a b", "ab c"}).ok());
  EXPECT_TRUE(w.AddU32("tokenizer.ggml.bos_token_id", 1).ok());
  EXPECT_TRUE(w.AddU32("tokenizer.ggml.eos_token_id", 2).ok());
  EXPECT_TRUE(w.AddI32("tokenizer.ggml.padding_token_id", 0).ok());  // INT32: travels in extra
  EXPECT_TRUE(w.AddBool("tokenizer.ggml.add_bos_token", true).ok());
  EXPECT_TRUE(w.AddString("tokenizer.chat_template", "{{ messages }}").ok());
  EXPECT_TRUE(w.AddTensor("a.weight", GgmlType::F32, {8, 3}).ok());
  EXPECT_TRUE(w.AddTensor("b.weight", GgmlType::F16, {64}).ok());
  EXPECT_TRUE(w.AddTensor("c.weight", GgmlType::Q8_0, {32, 2}).ok());
  std::string out;
  EXPECT_TRUE(w.OpenString(&out).ok());
  std::mt19937 rng(7);
  for (const GgufTensorInfo& t : w.tensors()) {
    std::vector<uint8_t> bytes(t.size_bytes);
    for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng());
    EXPECT_TRUE(w.WriteTensorData(bytes.data(), bytes.size()).ok());
  }
  EXPECT_TRUE(w.Close().ok());
  return out;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class PackageFormatTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<GgufFile>> g = GgufFile::OpenFromMemory(MakeGguf());
    ASSERT_TRUE(g.ok()) << g.status();
    gguf_ = std::move(*g);
    path_ = TempPath("kpkg_format.kpkg");
    PackageModelSource src;
    src.file = gguf_.get();
    src.role = "main";
    src.source_name = "test.gguf";
    src.fingerprint = ModelFingerprint(*gguf_);
    PreparedExport e;
    e.plugin = "fake";
    e.plugin_version = "1.0";
    e.device_fingerprint = "layout-a";
    e.weight_names = {"a.weight", "c.weight[rows 0:1]"};
    e.export_weight = [](size_t i) -> absl::StatusOr<std::vector<uint8_t>> {
      return std::vector<uint8_t>(100 + i, static_cast<uint8_t>(i + 1));
    };
    src.prepared.push_back(e);
    ASSERT_TRUE(WritePackage(path_, src, nullptr).ok());
    bytes_ = ReadAll(path_);
  }
  void TearDown() override { std::remove(path_.c_str()); }

  absl::StatusOr<std::unique_ptr<PackageReader>> OpenBytes(const std::string& bytes) {
    absl::StatusOr<std::shared_ptr<const FileImage>> image = FileImage::Copy(bytes);
    if (!image.ok()) return image.status();
    return PackageReader::FromImage(std::move(*image), "package 'mem'");
  }

  std::unique_ptr<GgufFile> gguf_;
  std::string path_, bytes_;
};

TEST_F(PackageFormatTest, RoundTripIsExact) {
  absl::StatusOr<std::unique_ptr<PackageReader>> r = PackageReader::Open(path_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE((*r)->VerifyData().ok());
  EXPECT_EQ((*r)->model().architecture, "llama");
  EXPECT_EQ((*r)->model().data.offset % kPackageSectionAlignment, 0u);
  absl::StatusOr<std::unique_ptr<GgufFile>> f = (*r)->ModelFile();
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_EQ((*f)->metadata().size(), gguf_->metadata().size());
  for (const GgufKeyValue& kv : gguf_->metadata()) {
    const GgufValue* v = (*f)->Find(kv.key);
    ASSERT_NE(v, nullptr) << kv.key;
    EXPECT_EQ(v->DebugString(), kv.value.DebugString()) << kv.key;
    EXPECT_EQ(v->type(), kv.value.type()) << kv.key;
  }
  ASSERT_EQ((*f)->tensors().size(), gguf_->tensors().size());
  for (size_t i = 0; i < gguf_->tensors().size(); ++i) {
    const GgufTensorInfo& a = gguf_->tensors()[i];
    const GgufTensorInfo& b = (*f)->tensors()[i];
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.dims, b.dims);
    EXPECT_EQ(a.type, b.type);
    EXPECT_EQ(0, std::memcmp(gguf_->TensorData(a), (*f)->TensorData(b), a.size_bytes)) << a.name;
    EXPECT_EQ(reinterpret_cast<uintptr_t>((*f)->TensorData(b)) % 64, 0u) << b.name;
  }
  EXPECT_EQ(ModelFingerprint(**f), ModelFingerprint(*gguf_));
  EXPECT_EQ((*r)->model().fingerprint, ModelFingerprint(*gguf_));
  const PreparedSet* p = (*r)->model().FindPrepared("fake", "1.0", "layout-a");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->weights.at("c.weight[rows 0:1]").size, 101u);
  EXPECT_EQ(p->weights.at("a.weight").data[0], 1);
  EXPECT_EQ((*r)->model().FindPrepared("fake", "1.1", "layout-a"), nullptr);
  EXPECT_EQ((*r)->model().FindPrepared("fake", "1.0", "layout-b"), nullptr);
}

TEST_F(PackageFormatTest, TruncatedIsRefusedNamingIt) {
  for (size_t n : {size_t{0}, size_t{3}, size_t{40}, size_t{64}, size_t{200}, bytes_.size() - 1}) {
    absl::StatusOr<std::unique_ptr<PackageReader>> r = OpenBytes(bytes_.substr(0, n));
    ASSERT_FALSE(r.ok()) << n;
    if (n >= 64) {
      EXPECT_NE(r.status().message().find("truncated"), std::string::npos) << r.status();
    }
  }
}

TEST_F(PackageFormatTest, WrongVersionIsRefusedNamingIt) {
  std::string b = bytes_;
  b[4] = 2;  // major 2, header checksum recomputed
  const uint64_t sum = Xxh64Of(b.data(), 56);
  std::memcpy(&b[56], &sum, 8);
  absl::StatusOr<std::unique_ptr<PackageReader>> r = OpenBytes(b);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(r.status().message().find("format version 2.0"), std::string::npos) << r.status();
}

TEST_F(PackageFormatTest, NotAPackage) {
  absl::StatusOr<std::unique_ptr<PackageReader>> r = OpenBytes("GGUF\3\0\0\0 and more bytes");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("not a KPKG container"), std::string::npos) << r.status();
}

// Every bit flip in the header and manifest is refused (checksums), never a crash; a flip in the
// tensor data is found by VerifyData.
TEST_F(PackageFormatTest, BitFlipsAreRefused) {
  absl::StatusOr<std::unique_ptr<PackageReader>> good = OpenBytes(bytes_);
  ASSERT_TRUE(good.ok());
  const uint64_t data_offset = (*good)->model().data.offset;
  std::mt19937 rng(11);
  const uint64_t manifest_end = 64 + [&] {
    uint64_t m;
    std::memcpy(&m, bytes_.data() + 24, 8);
    return m;
  }();
  for (uint64_t at = 0; at < manifest_end; at += 1 + rng() % 7) {
    std::string b = bytes_;
    b[at] ^= static_cast<char>(1u << (rng() % 8));
    absl::StatusOr<std::unique_ptr<PackageReader>> r = OpenBytes(b);
    ASSERT_FALSE(r.ok()) << "flip at " << at;
    EXPECT_FALSE(r.status().message().empty());
  }
  std::string b = bytes_;
  b[data_offset + 5] ^= 0x10;
  absl::StatusOr<std::unique_ptr<PackageReader>> r = OpenBytes(b);
  ASSERT_TRUE(r.ok()) << r.status();
  absl::Status v = (*r)->VerifyData();
  EXPECT_EQ(v.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(v.message().find("main data section"), std::string::npos) << v;
}

TEST_F(PackageFormatTest, SizeIsCloseToTheGguf) {
  // 64 KiB section alignment dominates at this size; the bound is what the writer promises:
  // header + manifest + alignment padding + the tensors (64-byte aligned) + prepared blobs.
  absl::StatusOr<std::unique_ptr<PackageReader>> r = OpenBytes(bytes_);
  ASSERT_TRUE(r.ok());
  EXPECT_LE(bytes_.size(), 3 * kPackageSectionAlignment + 1024);
}

}  // namespace
}  // namespace runtime
}  // namespace kestrel
