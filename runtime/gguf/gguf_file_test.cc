#include "runtime/gguf/gguf_file.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"

#include "runtime/gguf/gguf_writer.h"
#include "runtime/gguf/half.h"

namespace kestrel {
namespace runtime {
namespace {

std::string ModelPath(const char* name) {
  const char* dir = std::getenv("KESTREL_MODELS_DIR");
  return std::string(dir != nullptr ? dir : "../shared/models") + "/" + name;
}

::testing::AssertionResult HasError(const absl::Status& s, absl::StatusCode code,
                                    std::initializer_list<const char*> needles) {
  if (s.ok()) return ::testing::AssertionFailure() << "expected an error, got OK";
  if (s.code() != code) {
    return ::testing::AssertionFailure()
           << "expected code " << absl::StatusCodeToString(code) << ", got " << s;
  }
  const std::string msg(s.message());
  for (const char* n : needles) {
    if (msg.find(n) == std::string::npos) {
      return ::testing::AssertionFailure() << "message lacks '" << n << "': " << s;
    }
  }
  return ::testing::AssertionSuccess();
}

absl::Status OpenStatus(const std::string& bytes) {
  return GgufFile::OpenFromMemory(bytes).status();
}

// Raw little-endian builder for crafting (mal)formed files.
class Bytes {
 public:
  Bytes& U32(uint32_t v) { return Le(v, 4); }
  Bytes& U64(uint64_t v) { return Le(v, 8); }
  Bytes& Raw(const std::string& s) {
    s_ += s;
    return *this;
  }
  Bytes& Str(const std::string& s) { return U64(s.size()).Raw(s); }
  Bytes& Header(uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    return Raw("GGUF").U32(version).U64(n_tensors).U64(n_kv);
  }
  Bytes& KvU32(const std::string& key, uint32_t v) { return Str(key).U32(4).U32(v); }
  Bytes& Tensor(const std::string& name, std::vector<uint64_t> dims, uint32_t type,
                uint64_t offset) {
    Str(name).U32(static_cast<uint32_t>(dims.size()));
    for (uint64_t d : dims) U64(d);
    return U32(type).U64(offset);
  }
  Bytes& PadTo(size_t align) {
    while (s_.size() % align) s_.push_back('\0');
    return *this;
  }
  Bytes& Zeros(size_t n) {
    s_.append(n, '\0');
    return *this;
  }
  const std::string& str() const { return s_; }
  size_t size() const { return s_.size(); }

 private:
  Bytes& Le(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) s_.push_back(static_cast<char>(v >> (8 * i)));
    return *this;
  }
  std::string s_;
};

// A file with one tensor (no metadata) whose info fields are given raw.
std::string OneTensorFile(std::vector<uint64_t> dims, uint32_t type, uint64_t offset,
                          size_t data_bytes, const std::string& name = "blk.0.attn_q.weight") {
  Bytes b;
  b.Header(3, 1, 0).Tensor(name, std::move(dims), type, offset).PadTo(32).Zeros(data_bytes);
  return b.str();
}

// A valid file with a bit of everything, written by GgufWriter.
std::string RichFile(uint32_t alignment = 32) {
  GgufWriter w(alignment);
  EXPECT_TRUE(w.AddString("general.architecture", "llama").ok());
  EXPECT_TRUE(w.AddU32("llama.block_count", 5).ok());
  EXPECT_TRUE(w.AddKv("k.i8", GgufValue::I8(-3)).ok());
  EXPECT_TRUE(w.AddKv("k.u16", GgufValue::U16(65535)).ok());
  EXPECT_TRUE(w.AddKv("k.i64", GgufValue::I64(-1)).ok());
  EXPECT_TRUE(w.AddKv("k.f64", GgufValue::F64(0.25)).ok());
  EXPECT_TRUE(w.AddBool("k.bool", true).ok());
  EXPECT_TRUE(w.AddStringArray("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "hello"}).ok());
  const std::vector<float> scores = {0.f, -1.f, -2.f, 3.5f};
  EXPECT_TRUE(w.AddF32Array("tokenizer.ggml.scores", scores).ok());
  const std::vector<int32_t> types = {2, 3, 3, 1};
  EXPECT_TRUE(w.AddI32Array("tokenizer.ggml.token_type", types).ok());
  EXPECT_TRUE(w.AddKv("k.nested", GgufValue::ArrayOfArrays(
                                      {GgufValue::StringArray({"a", "b"}),
                                       GgufValue::U32Array(std::vector<uint32_t>{1, 2, 3})}))
                  .ok());
  EXPECT_TRUE(w.AddTensor("a", GgmlType::F32, {4, 3}).ok());
  EXPECT_TRUE(w.AddTensor("b", GgmlType::Q8_0, {64, 2}).ok());
  EXPECT_TRUE(w.AddTensor("c", GgmlType::F16, {16}).ok());  // 32 bytes: the file ends at its end
  std::string out;
  EXPECT_TRUE(w.OpenString(&out).ok());
  for (const GgufTensorInfo& t : w.tensors()) {
    std::vector<uint8_t> data(t.size_bytes);
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7 + t.name[0]);
    EXPECT_TRUE(w.WriteTensorData(data.data(), data.size()).ok());
  }
  EXPECT_TRUE(w.Close().ok());
  return out;
}

// ---- real models ---------------------------------------------------------------------------

class RealModelTest : public ::testing::TestWithParam<bool> {
 protected:
  GgufOpenOptions Options() const {
    GgufOpenOptions o;
    o.use_mmap = GetParam();
    return o;
  }
};

TEST_P(RealModelTest, Stories260K) {
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::Open(ModelPath("stories260K.gguf"), Options());
  ASSERT_TRUE(f.ok()) << f.status();
  const GgufFile& g = **f;
  EXPECT_EQ(g.is_mmapped(), GetParam());
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(g.alignment(), 32u);
  EXPECT_EQ(g.file_size(), 1185376u);
  EXPECT_EQ(g.data_offset() % 32, 0u);
  EXPECT_EQ(*g.GetString("general.architecture"), "llama");
  EXPECT_EQ(*g.GetU32("llama.block_count"), 5u);
  EXPECT_EQ(*g.GetU32("llama.embedding_length"), 64u);
  EXPECT_EQ(*g.GetU32("tokenizer.ggml.seperator_token_id"), 0xffffffffu);
  EXPECT_FLOAT_EQ(*g.GetF32("llama.attention.layer_norm_rms_epsilon"), 1e-5f);
  absl::StatusOr<absl::Span<const std::string>> tokens = g.GetStringArray("tokenizer.ggml.tokens");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_EQ(tokens->size(), 512u);
  EXPECT_EQ((*tokens)[1], "<s>");
  EXPECT_EQ((*tokens)[2], "</s>");
  EXPECT_EQ(g.GetF32Array("tokenizer.ggml.scores")->size(), 512u);
  EXPECT_EQ(g.GetI32Array("tokenizer.ggml.token_type")->size(), 512u);
  EXPECT_EQ(g.metadata().front().key, "tokenizer.ggml.tokens");  // file order

  ASSERT_EQ(g.tensors().size(), 48u);
  for (const GgufTensorInfo& t : g.tensors()) {
    EXPECT_EQ(t.type, GgmlType::F32) << t.name;
    EXPECT_EQ(t.size_bytes, t.n_elements * 4) << t.name;
    EXPECT_EQ(g.FindTensor(t.name), &t);
    EXPECT_LE(g.data_offset() + t.offset_in_data + t.size_bytes, g.file_size());
  }
  const GgufTensorInfo* emb = g.FindTensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->dims, (std::vector<uint64_t>{64, 512}));
  const GgufTensorInfo* down = g.FindTensor("blk.0.ffn_down.weight");
  ASSERT_NE(down, nullptr);
  EXPECT_EQ(down->dims, (std::vector<uint64_t>{172, 64}));
  EXPECT_EQ(g.FindTensor("nope"), nullptr);
  // The norm weights of a trained model are finite and not all zero.
  const GgufTensorInfo* norm = g.FindTensor("output_norm.weight");
  ASSERT_NE(norm, nullptr);
  std::vector<float> w(64);
  std::memcpy(w.data(), g.TensorData(*norm), 256);
  double sum = 0;
  for (float x : w) {
    EXPECT_TRUE(std::isfinite(x));
    sum += std::fabs(x);
  }
  EXPECT_GT(sum, 0.0);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(g.TensorData(*emb)) % 32, 0u);
}

TEST_P(RealModelTest, LlamaTinyRandomF16With32000Tokens) {
  absl::StatusOr<std::unique_ptr<GgufFile>> f =
      GgufFile::Open(ModelPath("llama-2-tiny-random.gguf"), Options());
  ASSERT_TRUE(f.ok()) << f.status();
  const GgufFile& g = **f;
  EXPECT_EQ(g.GetStringArray("tokenizer.ggml.tokens")->size(), 32000u);
  EXPECT_EQ(g.GetF32Array("tokenizer.ggml.scores")->size(), 32000u);
  EXPECT_EQ(g.GetI32Array("tokenizer.ggml.token_type")->size(), 32000u);
  EXPECT_EQ(*g.GetU32("general.file_type"), 1u);
  const GgufTensorInfo* emb = g.FindTensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->type, GgmlType::F16);
  EXPECT_EQ(emb->dims, (std::vector<uint64_t>{8, 32000}));
  EXPECT_EQ(emb->size_bytes, 8u * 32000 * 2);
  EXPECT_EQ(g.FindTensor("output_norm.weight")->type, GgmlType::F32);
  int f16 = 0;
  for (const GgufTensorInfo& t : g.tensors()) f16 += t.type == GgmlType::F16;
  EXPECT_EQ(f16, 9);
  const uint8_t* p = g.TensorData(*emb);
  for (int i = 0; i < 64; ++i) {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    EXPECT_TRUE(std::isfinite(F16ToF32(h)));
  }
}

TEST_P(RealModelTest, TinyMoeHas3dExpertTensors) {
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::Open(ModelPath("tiny-moe-f32.gguf"), Options());
  ASSERT_TRUE(f.ok()) << f.status();
  const GgufFile& g = **f;
  EXPECT_EQ(*g.GetU32("llama.expert_count"), 4u);
  EXPECT_EQ(*g.GetU32("llama.expert_used_count"), 2u);
  EXPECT_EQ(*g.GetBool("tokenizer.ggml.add_bos_token"), true);
  EXPECT_FLOAT_EQ(*g.GetF32("llama.rope.freq_base"), 10000.0f);
  const GgufTensorInfo* gate = g.FindTensor("blk.0.ffn_gate_exps.weight");
  ASSERT_NE(gate, nullptr);
  EXPECT_EQ(gate->dims, (std::vector<uint64_t>{64, 128, 4}));
  EXPECT_EQ(gate->n_elements, 64u * 128 * 4);
  const GgufTensorInfo* down = g.FindTensor("blk.3.ffn_down_exps.weight");
  ASSERT_NE(down, nullptr);
  EXPECT_EQ(down->dims, (std::vector<uint64_t>{128, 64, 4}));
  EXPECT_EQ(g.FindTensor("blk.0.ffn_gate_inp.weight")->dims, (std::vector<uint64_t>{64, 4}));
}

INSTANTIATE_TEST_SUITE_P(MmapAndRead, RealModelTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& i) {
                           return i.param ? "mmap" : "read";
                         });

TEST(GgufFileTest, MmapAndReadGiveTheSameBytes) {
  GgufOpenOptions no_mmap;
  no_mmap.use_mmap = false;
  auto a = GgufFile::Open(ModelPath("stories260K.gguf"), {});
  auto b = GgufFile::Open(ModelPath("stories260K.gguf"), no_mmap);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ((*a)->file_size(), (*b)->file_size());
  EXPECT_EQ(std::memcmp((*a)->data(), (*b)->data(), (*a)->file_size()), 0);
  EXPECT_EQ(reinterpret_cast<uintptr_t>((*b)->data()) % 4096, 0u);
}

// ---- getters ---------------------------------------------------------------------------------

TEST(GgufFileTest, TypedGetters) {
  auto f = GgufFile::OpenFromMemory(RichFile());
  ASSERT_TRUE(f.ok()) << f.status();
  const GgufFile& g = **f;
  EXPECT_TRUE(HasError(g.GetU32("missing.key").status(), absl::StatusCode::kNotFound,
                       {"missing.key"}));
  EXPECT_TRUE(HasError(g.GetString("missing.key").status(), absl::StatusCode::kNotFound,
                       {"missing.key"}));
  EXPECT_TRUE(HasError(g.GetU32("general.architecture").status(),
                       absl::StatusCode::kInvalidArgument, {"general.architecture", "STRING"}));
  EXPECT_TRUE(HasError(g.GetU32("k.i64").status(), absl::StatusCode::kInvalidArgument,
                       {"k.i64", "-1"}));
  EXPECT_TRUE(HasError(g.GetString("llama.block_count").status(),
                       absl::StatusCode::kInvalidArgument, {"llama.block_count", "UINT32"}));
  EXPECT_TRUE(HasError(g.GetF32("llama.block_count").status(), absl::StatusCode::kInvalidArgument,
                       {"llama.block_count", "UINT32"}));
  EXPECT_TRUE(HasError(g.GetBool("llama.block_count").status(),
                       absl::StatusCode::kInvalidArgument, {"llama.block_count"}));
  EXPECT_TRUE(HasError(g.GetStringArray("tokenizer.ggml.scores").status(),
                       absl::StatusCode::kInvalidArgument, {"tokenizer.ggml.scores", "ARRAY"}));
  EXPECT_TRUE(HasError(g.GetF32Array("tokenizer.ggml.tokens").status(),
                       absl::StatusCode::kInvalidArgument, {"tokenizer.ggml.tokens"}));
  EXPECT_TRUE(HasError(g.GetI32Array("tokenizer.ggml.scores").status(),
                       absl::StatusCode::kInvalidArgument, {"tokenizer.ggml.scores"}));
  EXPECT_EQ(*g.GetU32("k.u16"), 65535u);
  EXPECT_EQ(*g.GetU64("llama.block_count"), 5u);
  EXPECT_EQ(*g.GetI64("k.i8"), -3);
  EXPECT_EQ(*g.GetI64("k.i64"), -1);
  EXPECT_EQ(*g.GetF32("k.f64"), 0.25f);
  EXPECT_EQ(*g.GetBool("k.bool"), true);
  EXPECT_EQ(*g.GetI32Array("tokenizer.ggml.token_type"), (std::vector<int32_t>{2, 3, 3, 1}));
  EXPECT_EQ(*g.GetF32Array("tokenizer.ggml.scores"), (std::vector<float>{0.f, -1.f, -2.f, 3.5f}));
  const GgufValue* nested = g.Find("k.nested");
  ASSERT_NE(nested, nullptr);
  ASSERT_NE(nested->AsArrayOfArrays(), nullptr);
  EXPECT_EQ(nested->AsArrayOfArrays()->at(0).AsStringArray()->at(1), "b");
  EXPECT_EQ(nested->AsArrayOfArrays()->at(1).ArrayU64At(2), 3u);
  EXPECT_EQ(g.Find("nope"), nullptr);
}

TEST(GgufFileTest, I32ArrayRangeCheck) {
  GgufWriter w;
  const std::vector<int64_t> v = {1, int64_t{1} << 40};
  ASSERT_TRUE(w.AddKv("big", GgufValue::I64Array(v)).ok());
  std::string out;
  ASSERT_TRUE(w.OpenString(&out).ok());
  ASSERT_TRUE(w.Close().ok());
  auto f = GgufFile::OpenFromMemory(out);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE(HasError((*f)->GetI32Array("big").status(), absl::StatusCode::kInvalidArgument,
                       {"big", "element 1", "1099511627776"}));
}

// ---- bad inputs --------------------------------------------------------------------------------

TEST(GgufBadInputTest, EmptyFile) {
  EXPECT_TRUE(HasError(OpenStatus(""), absl::StatusCode::kDataLoss, {"magic", "needed 4 bytes"}));
  const std::string path = ::testing::TempDir() + "/gguf_empty.gguf";
  { std::ofstream(path, std::ios::binary | std::ios::trunc); }
  for (bool mmap : {true, false}) {
    GgufOpenOptions o;
    o.use_mmap = mmap;
    EXPECT_TRUE(HasError(GgufFile::Open(path, o).status(), absl::StatusCode::kDataLoss,
                         {"magic", path.c_str()}));
  }
  std::remove(path.c_str());
}

TEST(GgufBadInputTest, MissingFileAndDirectory) {
  EXPECT_TRUE(HasError(GgufFile::Open("/nonexistent/x.gguf", {}).status(),
                       absl::StatusCode::kNotFound, {"/nonexistent/x.gguf"}));
  EXPECT_TRUE(HasError(GgufFile::Open(::testing::TempDir(), {}).status(),
                       absl::StatusCode::kInvalidArgument, {"regular file"}));
}

TEST(GgufBadInputTest, WrongMagic) {
  Bytes b;
  b.Raw("GGML").U32(3).U64(0).U64(0);
  EXPECT_TRUE(HasError(OpenStatus(b.str()), absl::StatusCode::kInvalidArgument, {"magic", "GGML"}));
}

TEST(GgufBadInputTest, UnsupportedVersions) {
  auto with_version = [](uint32_t v) {
    Bytes b;
    b.Header(v, 0, 0);
    return OpenStatus(b.str());
  };
  EXPECT_TRUE(HasError(with_version(1), absl::StatusCode::kUnimplemented, {"version 1"}));
  EXPECT_TRUE(HasError(with_version(4), absl::StatusCode::kUnimplemented, {"version 4"}));
  EXPECT_TRUE(HasError(with_version(0x03000000), absl::StatusCode::kUnimplemented,
                       {"big-endian", "0x03000000"}));
  EXPECT_TRUE(HasError(with_version(0), absl::StatusCode::kInvalidArgument, {"version 0"}));
  EXPECT_TRUE(with_version(2).ok());
  EXPECT_TRUE(with_version(3).ok());
}

TEST(GgufBadInputTest, TruncationAtEveryOffsetFails) {
  const std::string full = RichFile();
  auto f = GgufFile::OpenFromMemory(full);
  ASSERT_TRUE(f.ok()) << f.status();
  uint64_t data_end = 0;
  for (const GgufTensorInfo& t : (*f)->tensors()) {
    data_end = std::max(data_end, (*f)->data_offset() + t.offset_in_data + t.size_bytes);
  }
  ASSERT_EQ(data_end, full.size());
  for (size_t cut = 0; cut < full.size(); ++cut) {
    const absl::Status s = OpenStatus(full.substr(0, cut));
    ASSERT_FALSE(s.ok()) << "cut at " << cut;
    ASSERT_TRUE(s.code() == absl::StatusCode::kDataLoss ||
                s.code() == absl::StatusCode::kInvalidArgument)
        << "cut at " << cut << ": " << s;
  }
}

TEST(GgufBadInputTest, TruncatedKeyMessageNamesKeyAndOffsets) {
  Bytes b;
  b.Header(3, 0, 2).KvU32("general.alignment", 32).Str("llama.block_count").U32(10).U32(5);
  const std::string cut = b.str().substr(0, b.size() - 2);  // half of the u64 value
  EXPECT_TRUE(HasError(OpenStatus(cut), absl::StatusCode::kDataLoss,
                       {"key #1", "'llama.block_count'", "needed 8 bytes",
                        absl::StrCat("offset ", cut.size() - 2).c_str(),
                        absl::StrCat("file has ", cut.size()).c_str()}));
}

TEST(GgufBadInputTest, TruncatedRealModelHeaderFails) {
  std::ifstream in(ModelPath("stories260K.gguf"), std::ios::binary);
  ASSERT_TRUE(in.good());
  const std::string full((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto f = GgufFile::OpenFromMemory(full);
  ASSERT_TRUE(f.ok()) << f.status();
  const size_t header_end = static_cast<size_t>((*f)->data_offset());
  // Every offset in the first 2 KiB, then a dense sample through the header and the data.
  for (size_t cut = 0; cut < full.size(); cut += (cut < 2048 ? 1 : (cut < header_end ? 7 : 4093))) {
    ASSERT_FALSE(OpenStatus(full.substr(0, cut)).ok()) << "cut at " << cut;
  }
}

// Seeds for the randomized tests: KESTREL_TEST_SEED=<n> reproduces one; otherwise fresh ones.
std::vector<uint64_t> DrawSeeds(int n) {
  if (const char* s = std::getenv("KESTREL_TEST_SEED"); s != nullptr && *s != '\0') {
    return {std::strtoull(s, nullptr, 10)};
  }
  std::random_device rd;
  std::vector<uint64_t> seeds;
  for (int i = 0; i < n; ++i) seeds.push_back((uint64_t{rd()} << 32) | rd());
  return seeds;
}

// Every mutated file either is refused with a status of the reader's documented codes and a
// message, or parses with every tensor inside the file; a change inside the tensor data alone
// (which the reader does not interpret) always parses, to the same tensor table; a change of the
// magic is always refused.
TEST(GgufBadInputTest, RandomCorruptionIsRefusedOrParsesInBounds) {
  const std::string full = RichFile();
  auto clean = GgufFile::OpenFromMemory(full);
  ASSERT_TRUE(clean.ok()) << clean.status();
  const uint64_t data_offset = (*clean)->data_offset();
  const size_t n_tensors = (*clean)->tensors().size();
  for (uint64_t seed : DrawSeeds(3)) {
    std::printf("GgufBadInputTest.RandomCorruption: seed %llu (KESTREL_TEST_SEED=%llu reproduces)\n",
                static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed));
    SCOPED_TRACE(::testing::Message() << "seed " << seed << " (KESTREL_TEST_SEED=" << seed << ")");
    std::mt19937_64 rng(seed);
    int refused = 0, parsed = 0;
    for (int iter = 0; iter < 1000; ++iter) {
      std::string s = full;
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int i = 0; i < flips; ++i) {
        // Mostly the header; one in four anywhere, the tensor data included.
        const size_t at = rng() % 4 == 0 ? rng() % s.size() : rng() % 400 % s.size();
        s[at] = static_cast<char>(rng() % 3 == 0 ? 0xff : rng());
      }
      bool header = false, magic = false;
      std::string where;
      for (size_t at = 0; at < s.size(); ++at) {
        if (s[at] == full[at]) continue;
        header |= at < data_offset;
        magic |= at < 4;
        where += absl::StrCat(" ", at);
      }
      SCOPED_TRACE("iteration " + std::to_string(iter) + ", bytes changed at" + where);
      auto f = GgufFile::OpenFromMemory(s);
      if (!f.ok()) {
        ++refused;
        const absl::StatusCode code = f.status().code();
        ASSERT_TRUE(code == absl::StatusCode::kDataLoss ||
                    code == absl::StatusCode::kInvalidArgument ||
                    code == absl::StatusCode::kUnimplemented)
            << f.status();
        ASSERT_FALSE(f.status().message().empty());
        ASSERT_TRUE(header) << "only tensor data changed, yet refused: " << f.status();
        continue;
      }
      ++parsed;
      ASSERT_FALSE(magic) << "a changed magic was accepted";
      if (!header) {
        ASSERT_EQ((*f)->tensors().size(), n_tensors);
        ASSERT_EQ((*f)->data_offset(), data_offset);
      }
      for (const GgufTensorInfo& t : (*f)->tensors()) {
        ASSERT_LE((*f)->data_offset() + t.offset_in_data + t.size_bytes, (*f)->file_size());
        if (t.size_bytes == 0) continue;
        volatile uint8_t sink = (*f)->TensorData(t)[t.size_bytes - 1];
        (void)sink;
      }
    }
    std::printf("  %d refused, %d parsed\n", refused, parsed);
    // Both outcomes occur: the header is mostly refused, tensor-data changes always parse.
    EXPECT_GT(refused, 0);
    EXPECT_GT(parsed, 0);
  }
}

TEST(GgufBadInputTest, OverlappingTensorsAreRefused) {
  Bytes b;
  b.Header(3, 2, 0)
      .Tensor("first", {16}, 0, 0)
      .Tensor("second", {16}, 0, 32)  // bytes 32..96 overlap first's 0..64
      .PadTo(32)
      .Zeros(128);
  EXPECT_TRUE(HasError(OpenStatus(b.str()), absl::StatusCode::kInvalidArgument,
                       {"'first'", "'second'", "overlap"}));
  // Adjacent tensors are fine.
  Bytes ok;
  ok.Header(3, 2, 0).Tensor("first", {16}, 0, 0).Tensor("second", {16}, 0, 64).PadTo(32).Zeros(128);
  EXPECT_TRUE(OpenStatus(ok.str()).ok()) << OpenStatus(ok.str());
}

TEST(GgufBadInputTest, TensorPastEndOfFile) {
  // 4096 bytes of F32 declared at offset 0 but only 100 bytes present.
  EXPECT_TRUE(HasError(OpenStatus(OneTensorFile({1024}, 0, 0, 100)),
                       absl::StatusCode::kInvalidArgument,
                       {"'blk.0.attn_q.weight'", "offset 0 + size 4096", "exceeds", "file size"}));
  // Offset past the end.
  EXPECT_TRUE(HasError(OpenStatus(OneTensorFile({8}, 0, 123456, 64)),
                       absl::StatusCode::kInvalidArgument,
                       {"'blk.0.attn_q.weight'", "offset 123456 + size 32", "exceeds"}));
  // Offset near 2^64: offset + size must not wrap around.
  EXPECT_TRUE(HasError(OpenStatus(OneTensorFile({8}, 0, 0xffffffffffffffe0ull, 64)),
                       absl::StatusCode::kInvalidArgument, {"exceeds"}));
  // Exactly fitting is fine.
  EXPECT_TRUE(OpenStatus(OneTensorFile({8}, 0, 32, 64)).ok());
}

TEST(GgufBadInputTest, MisalignedOffset) {
  EXPECT_TRUE(HasError(OpenStatus(OneTensorFile({8}, 0, 4, 64)), absl::StatusCode::kInvalidArgument,
                       {"'blk.0.attn_q.weight'", "offset 4", "alignment 32"}));
}

TEST(GgufBadInputTest, AbsurdCounts) {
  Bytes t;
  t.Header(3, uint64_t{1} << 60, 0).Zeros(64);
  EXPECT_TRUE(HasError(OpenStatus(t.str()), absl::StatusCode::kDataLoss,
                       {"tensor count 1152921504606846976"}));
  Bytes k;
  k.Header(3, 0, uint64_t{1} << 60).Zeros(64);
  EXPECT_TRUE(HasError(OpenStatus(k.str()), absl::StatusCode::kDataLoss,
                       {"kv count 1152921504606846976"}));
  Bytes m;
  m.Header(3, ~uint64_t{0}, ~uint64_t{0});
  EXPECT_TRUE(HasError(OpenStatus(m.str()), absl::StatusCode::kDataLoss, {"count"}));
  // Each count alone fits, the two together do not.
  Bytes both;
  both.Header(3, 1, 3).Zeros(64);
  EXPECT_TRUE(HasError(OpenStatus(both.str()), absl::StatusCode::kDataLoss,
                       {"tensor count 1", "kv count 3"}));
}

TEST(GgufBadInputTest, AbsurdDims) {
  const uint64_t big = uint64_t{1} << 32;
  EXPECT_TRUE(HasError(OpenStatus(OneTensorFile({big, big, 2}, 0, 0, 64)),
                       absl::StatusCode::kInvalidArgument,
                       {"'blk.0.attn_q.weight'", "overflows", "4294967296"}));
  EXPECT_TRUE(HasError(OpenStatus(OneTensorFile({~uint64_t{0}}, 0, 0, 64)),
                       absl::StatusCode::kInvalidArgument, {"dim[0] = 18446744073709551615"}));
  EXPECT_TRUE(HasError(OpenStatus(OneTensorFile({8, 0}, 0, 0, 64)),
                       absl::StatusCode::kInvalidArgument, {"dim[1] = 0"}));
  // Element count fits in int64, byte size does not (F64 = 8 bytes each).
  EXPECT_TRUE(HasError(OpenStatus(OneTensorFile({uint64_t{1} << 62}, 28, 0, 64)),
                       absl::StatusCode::kInvalidArgument, {"byte size", "overflows"}));
  // Valid element count and byte size, but far larger than the file.
  const uint64_t g = uint64_t{1} << 30;
  EXPECT_TRUE(HasError(OpenStatus(OneTensorFile({g, g}, 0, 0, 64)),
                       absl::StatusCode::kInvalidArgument,
                       {"exceeds", "size 4611686018427387904"}));
}

TEST(GgufBadInputTest, RankZeroAndFive) {
  EXPECT_TRUE(HasError(OpenStatus(OneTensorFile({}, 0, 0, 64)), absl::StatusCode::kInvalidArgument,
                       {"'blk.0.attn_q.weight'", "rank 0"}));
  EXPECT_TRUE(HasError(OpenStatus(OneTensorFile({1, 1, 1, 1, 1}, 0, 0, 64)),
                       absl::StatusCode::kInvalidArgument, {"'blk.0.attn_q.weight'", "rank 5"}));
  EXPECT_TRUE(OpenStatus(OneTensorFile({2, 1, 1, 4}, 0, 0, 64)).ok());
}

TEST(GgufBadInputTest, UnknownTensorType) {
  EXPECT_TRUE(HasError(OpenStatus(OneTensorFile({32}, 99, 0, 256)),
                       absl::StatusCode::kUnimplemented, {"'blk.0.attn_q.weight'", "type 99"}));
  EXPECT_TRUE(HasError(OpenStatus(OneTensorFile({32}, 4, 0, 256)),  // retired Q4_2
                       absl::StatusCode::kUnimplemented, {"type 4"}));
}

TEST(GgufBadInputTest, RowLengthNotMultipleOfBlock) {
  EXPECT_TRUE(HasError(OpenStatus(OneTensorFile({33, 2}, 8, 0, 256)),
                       absl::StatusCode::kInvalidArgument, {"row length", "33", "Q8_0", "32"}));
  // A legal Q4_0 tensor: 64 x 2 = 4 blocks of 18 bytes.
  auto f = GgufFile::OpenFromMemory(OneTensorFile({64, 2}, 2, 0, 96));
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->tensors()[0].size_bytes, 72u);
}

TEST(GgufBadInputTest, UnknownValueType) {
  Bytes b;
  b.Header(3, 0, 1).Str("general.weird").U32(13).U64(0);
  EXPECT_TRUE(HasError(OpenStatus(b.str()), absl::StatusCode::kInvalidArgument,
                       {"'general.weird'", "value type 13"}));
  Bytes a;
  a.Header(3, 0, 1).Str("general.arr").U32(9).U32(77).U64(1).U64(0);
  EXPECT_TRUE(HasError(OpenStatus(a.str()), absl::StatusCode::kInvalidArgument,
                       {"'general.arr'", "element type 77"}));
}

TEST(GgufBadInputTest, DuplicateKeyAndTensor) {
  Bytes b;
  b.Header(3, 0, 2).KvU32("llama.block_count", 5).KvU32("llama.block_count", 6);
  EXPECT_TRUE(HasError(OpenStatus(b.str()), absl::StatusCode::kInvalidArgument,
                       {"duplicate", "'llama.block_count'"}));
  Bytes t;
  t.Header(3, 2, 0).Tensor("w", {8}, 0, 0).Tensor("w", {8}, 0, 32).PadTo(32).Zeros(64);
  EXPECT_TRUE(
      HasError(OpenStatus(t.str()), absl::StatusCode::kInvalidArgument, {"duplicate", "'w'"}));
}

TEST(GgufBadInputTest, StringLengthLargerThanFile) {
  Bytes b;
  b.Header(3, 0, 1).Str("general.name").U32(8).U64(1000000).Raw("abc");
  EXPECT_TRUE(HasError(OpenStatus(b.str()), absl::StatusCode::kDataLoss,
                       {"'general.name'", "string length 1000000"}));
  Bytes k;  // a key whose length is absurd
  k.Header(3, 0, 1).U64(~uint64_t{0} - 3).Raw("xyz").Zeros(16);
  EXPECT_TRUE(HasError(OpenStatus(k.str()), absl::StatusCode::kDataLoss,
                       {"key #0 name", "string length 18446744073709551612"}));
  Bytes e;  // an element of a string array
  e.Header(3, 0, 1).Str("tokenizer.ggml.tokens").U32(9).U32(8).U64(2).Str("a").U64(99).Raw("b");
  EXPECT_TRUE(HasError(OpenStatus(e.str()), absl::StatusCode::kDataLoss,
                       {"'tokenizer.ggml.tokens'", "element 1", "string length 99"}));
}

TEST(GgufBadInputTest, ArrayLengthLargerThanFile) {
  Bytes b;
  b.Header(3, 0, 1).Str("tokenizer.ggml.scores").U32(9).U32(6).U64(uint64_t{1} << 62).Zeros(16);
  EXPECT_TRUE(HasError(OpenStatus(b.str()), absl::StatusCode::kDataLoss,
                       {"'tokenizer.ggml.scores'", "array length 4611686018427387904"}));
  Bytes s;
  s.Header(3, 0, 1).Str("tokenizer.ggml.tokens").U32(9).U32(8).U64(~uint64_t{0}).Zeros(16);
  EXPECT_TRUE(HasError(OpenStatus(s.str()), absl::StatusCode::kDataLoss,
                       {"'tokenizer.ggml.tokens'", "array length 18446744073709551615"}));
}

TEST(GgufBadInputTest, NestedArraysTooDeep) {
  Bytes b;
  b.Header(3, 0, 1).Str("deep").U32(9);
  for (int i = 0; i < 20; ++i) b.U32(9).U64(1);  // arrays of arrays of ...
  b.U32(0).U64(0);
  EXPECT_TRUE(HasError(OpenStatus(b.str()), absl::StatusCode::kInvalidArgument,
                       {"'deep'", "nested deeper"}));
  Bytes ok;  // two levels are fine
  ok.Header(3, 0, 1).Str("k").U32(9).U32(9).U64(2).U32(4).U64(1).U32(7).U32(8).U64(1).Str("x");
  auto f = GgufFile::OpenFromMemory(ok.str());
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->Find("k")->AsArrayOfArrays()->at(1).AsStringArray()->at(0), "x");
}

TEST(GgufBadInputTest, BadAlignment) {
  for (uint32_t a : {0u, 3u, 48u}) {
    Bytes b;
    b.Header(3, 0, 1).KvU32("general.alignment", a);
    EXPECT_TRUE(HasError(OpenStatus(b.str()), absl::StatusCode::kInvalidArgument,
                         {"general.alignment", std::to_string(a).c_str(), "power of two"}));
  }
  Bytes s;
  s.Header(3, 0, 1).Str("general.alignment").U32(8).Str("32");
  EXPECT_TRUE(HasError(OpenStatus(s.str()), absl::StatusCode::kInvalidArgument,
                       {"general.alignment", "STRING"}));
  // A custom alignment applies to the data section and the offsets.
  Bytes g;
  g.Header(3, 1, 1).KvU32("general.alignment", 64).Tensor("t", {8}, 0, 64).PadTo(64).Zeros(96);
  auto f = GgufFile::OpenFromMemory(g.str());
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->alignment(), 64u);
  EXPECT_EQ((*f)->data_offset() % 64, 0u);
  Bytes m;
  m.Header(3, 1, 1).KvU32("general.alignment", 64).Tensor("t", {8}, 0, 32).PadTo(64).Zeros(96);
  EXPECT_TRUE(HasError(OpenStatus(m.str()), absl::StatusCode::kInvalidArgument,
                       {"'t'", "offset 32", "alignment 64"}));
}

TEST(GgufBadInputTest, HostileNamesAreEscapedInMessages) {
  EXPECT_TRUE(HasError(OpenStatus(OneTensorFile({8}, 0, 4, 64, std::string("a\nb\x01", 4))),
                       absl::StatusCode::kInvalidArgument, {"'a\\nb\\x01'"}));
}

}  // namespace
}  // namespace runtime
}  // namespace kestrel
