// .kpkg packages end to end (ctest label kpkg): a GGUF and its package give the same greedy ids
// on ref and cpu; a package with cpu prepared weights loads on cpu without repacking (counted by
// the plugin), and on ref, or for another plugin version, falls back to preparing as from a GGUF;
// the draft model travels in the package.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/package/fingerprint.h"
#include "runtime/package/package_reader.h"
#include "runtime/package/package_writer.h"
#include "tests/kpkg/kpkg_test_util.h"

namespace kestrel::testing {
namespace {

struct Case {
  const char* name;
  std::string path;
  std::vector<int32_t> prompt;
  bool on_ref = true;  // also compare on the reference device (slow for the big shapes)
};

std::vector<Case> Cases() {
  return {
      {"stories260K", SharedModel("stories260K.gguf"), {1, 403, 407, 261}},
      {"tiny_moe", SharedModel("tiny-moe-f32.gguf"), {1, 403, 407, 261}},
      {"llama2_tiny_random_f16", SharedModel("llama-2-tiny-random.gguf"), {1, 450, 4996, 17354}},
      {"tinyllama_shape_q4_0", "", {1, 17, 250, 3, 900}, false},
      {"smollm2_135m_q4_1", CachedModel("SmolLM2-135M-Instruct.Q4_1.gguf"), {1, 504, 3458}, false},
      {"gemma3_270m_q4_k_m", CachedModel("gemma-3-270m-q4_k_m.gguf"), {2, 818, 5279}, false},
  };
}

class KpkgModelTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    registry_ = MakeRegistry();
    auto cpu = registry_->FindDevice("cpu");
    ASSERT_TRUE(cpu.ok()) << cpu.status();
    cpu_ = *cpu;
    ref_ = registry_->ReferenceDevice();
    gguf_ = GetParam().path.empty() ? TinyLlamaShapeModel() : GetParam().path;
    if (std::FILE* f = std::fopen(gguf_.c_str(), "rb")) {
      std::fclose(f);
    } else {
      if (std::getenv("KESTREL_REQUIRE_MODELS") != nullptr &&
          std::string(std::getenv("KESTREL_REQUIRE_MODELS")) == "1") {
        FAIL() << "model " << gguf_ << " is missing and KESTREL_REQUIRE_MODELS=1";
      }
      GTEST_SKIP() << "model " << gguf_ << " is not there (scripts/fetch_models.sh fetches it)";
    }
    runtime::ModelLoadOptions meta;
    meta.metadata_only = true;
    auto probe = runtime::Model::Load(gguf_, nullptr, meta);
    ASSERT_TRUE(probe.ok()) << probe.status();
    if (!(*probe)->runnable()) {
      GTEST_SKIP() << GetParam().name << " does not run in this build yet: "
                   << (*probe)->unsupported().front();
    }
  }
  void TearDown() override {
    for (const std::string& p : cleanup_) std::remove(p.c_str());
  }
  std::string Packed(const std::string& tag, std::vector<hal::Device*> devices) {
    const std::string out = TempPath(absl::StrCat(GetParam().name, "_", tag, ".kpkg"));
    absl::Status s = Pack(gguf_, out, std::move(devices));
    EXPECT_TRUE(s.ok()) << s;
    cleanup_.push_back(out);
    return out;
  }

  std::unique_ptr<hal::PluginRegistry> registry_;
  hal::Device* cpu_ = nullptr;
  hal::Device* ref_ = nullptr;
  std::string gguf_;
  std::vector<std::string> cleanup_;
};

TEST_P(KpkgModelTest, GgufAndPackageGiveTheSameGreedyIds) {
  const std::string plain = Packed("plain", {});
  const std::string prepared = Packed("cpu", {cpu_});
  for (hal::Device* device : {cpu_, ref_}) {
    if (device == ref_ && !GetParam().on_ref) continue;  // 2048-wide / real models on ref: slow
    auto a = runtime::Model::Load(gguf_, device, {});
    ASSERT_TRUE(a.ok()) << a.status();
    auto want = Greedy(**a, ref_, GetParam().prompt, 12);
    ASSERT_TRUE(want.ok()) << want.status();
    for (const std::string& pkg : {plain, prepared}) {
      auto b = runtime::Model::Load(pkg, device, {});
      ASSERT_TRUE(b.ok()) << b.status();
      EXPECT_EQ((*b)->fingerprint(), (*a)->fingerprint());
      auto got = Greedy(**b, ref_, GetParam().prompt, 12);
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_EQ(*got, *want) << pkg << " on " << device->name();
    }
  }
}

TEST_P(KpkgModelTest, CpuPreparedWeightsLoadWithoutRepacking) {
  const std::string pkg = Packed("cpu", {cpu_});
  auto repacked0 = cpu_->Counter("weights_repacked");
  auto imported0 = cpu_->Counter("weights_imported");
  ASSERT_TRUE(repacked0.ok() && imported0.ok());
  auto m = runtime::Model::Load(pkg, cpu_, {});
  ASSERT_TRUE(m.ok()) << m.status();
  // Every weight but the parts of fused matrices (prepared only if a plan runs them alone).
  uint64_t n = 0;
  for (const runtime::WeightTensor& w : (*m)->weights().tensors) n += w.fused_into < 0;
  EXPECT_EQ((*m)->n_weights_imported(), n) << (*m)->prepared_skip_reason();
  EXPECT_EQ((*m)->n_weights_prepared(), 0u);
  EXPECT_EQ(*cpu_->Counter("weights_repacked"), *repacked0);  // the plugin repacked nothing
  EXPECT_EQ(*cpu_->Counter("weights_imported"), *imported0 + n);

  // The same package on another device is prepared as from a GGUF.
  auto on_ref = runtime::Model::Load(pkg, ref_, {});
  ASSERT_TRUE(on_ref.ok()) << on_ref.status();
  EXPECT_EQ((*on_ref)->n_weights_imported(), 0u);
  EXPECT_EQ((*on_ref)->n_weights_prepared(), n);
  EXPECT_NE((*on_ref)->prepared_skip_reason().find("cannot import"), std::string::npos)
      << (*on_ref)->prepared_skip_reason();
}

// Prepared weights of another plugin version are ignored: the cpu plugin repacks.
TEST_P(KpkgModelTest, AnotherPluginVersionFallsBackToRepacking) {
  auto loaded = runtime::Model::Load(gguf_, cpu_, {});
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  auto gguf = runtime::GgufFile::Open(gguf_);
  ASSERT_TRUE(gguf.ok());
  runtime::PackageModelSource src;
  src.file = gguf->get();
  src.role = "main";
  src.fingerprint = runtime::ModelFingerprint(**gguf);
  runtime::PreparedExport e;
  e.plugin = "cpu";
  e.plugin_version = "0.0.0-older";
  e.device_fingerprint = *cpu_->WeightLayoutId();
  const runtime::Model& model = **loaded;
  for (const auto& w : model.weights().tensors) e.weight_names.push_back(w.name);
  e.export_weight = [&](size_t i) -> absl::StatusOr<std::vector<uint8_t>> {
    return cpu_->ExportWeight(**model.Prepared(static_cast<int>(i), cpu_));
  };
  src.prepared.push_back(e);
  const std::string out = TempPath(absl::StrCat(GetParam().name, "_old.kpkg"));
  cleanup_.push_back(out);
  ASSERT_TRUE(runtime::WritePackage(out, src, nullptr).ok());
  const uint64_t repacked0 = *cpu_->Counter("weights_repacked");
  auto m = runtime::Model::Load(out, cpu_, {});
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ((*m)->n_weights_imported(), 0u);
  EXPECT_NE((*m)->prepared_skip_reason().find("0.0.0-older"), std::string::npos)
      << (*m)->prepared_skip_reason();
  bool any_quantized = false;
  for (const auto& w : model.weights().tensors) {
    any_quantized |= w.desc.dtype == KESTREL_DTYPE_Q4_0 || w.desc.dtype == KESTREL_DTYPE_Q8_0;
  }
  if (any_quantized) {
    EXPECT_GT(*cpu_->Counter("weights_repacked"), repacked0);
  }
  auto want = Greedy(model, ref_, GetParam().prompt, 8);
  auto got = Greedy(**m, ref_, GetParam().prompt, 8);
  ASSERT_TRUE(want.ok() && got.ok());
  EXPECT_EQ(*got, *want);
}

INSTANTIATE_TEST_SUITE_P(Models, KpkgModelTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<Case>& i) { return i.param.name; });

// Every model, runnable in this build or not (the real SmolLM2 BPE and Gemma 3 files included):
// the package holds the same metadata, tokenizer (tokens, merges, specials, pre-tokenizer, chat
// template), tensors and fingerprint as the GGUF it was packed from.
TEST(KpkgMetadataTest, EveryModelRoundTripsExactly) {
  for (const Case& c : Cases()) {
    const std::string gguf_path = c.path.empty() ? TinyLlamaShapeModel() : c.path;
    auto gguf = runtime::GgufFile::Open(gguf_path);
    if (!gguf.ok()) {
      std::printf("skipped %s: %s\n", c.name, std::string(gguf.status().message()).c_str());
      continue;
    }
    SCOPED_TRACE(c.name);
    const std::string out = TempPath(absl::StrCat(c.name, "_meta.kpkg"));
    ASSERT_TRUE(Pack(gguf_path, out, {}).ok());
    auto reader = runtime::PackageReader::Open(out);
    ASSERT_TRUE(reader.ok()) << reader.status();
    // Section and tensor alignment, and FlatBuffers' per-string overhead on big vocabularies
    // (0.2 % on Gemma 3's 262k tokens): within 1 % plus the alignment.
    EXPECT_LE((*reader)->file_size(), (*gguf)->file_size() * 101 / 100 +
                                          2 * runtime::kPackageSectionAlignment +
                                          64 * (*gguf)->tensors().size());
    auto view = (*reader)->ModelFile();
    ASSERT_TRUE(view.ok()) << view.status();
    ASSERT_EQ((*view)->metadata().size(), (*gguf)->metadata().size());
    for (const runtime::GgufKeyValue& kv : (*gguf)->metadata()) {
      const runtime::GgufValue* v = (*view)->Find(kv.key);
      ASSERT_NE(v, nullptr) << kv.key;
      EXPECT_EQ(v->type(), kv.value.type()) << kv.key;
      if (kv.value.AsStringArray() != nullptr) {
        ASSERT_NE(v->AsStringArray(), nullptr) << kv.key;
        EXPECT_TRUE(*v->AsStringArray() == *kv.value.AsStringArray()) << kv.key;
      } else if (kv.value.is_array() && kv.value.AsArrayOfArrays() == nullptr) {
        EXPECT_TRUE(std::equal(v->array_raw().begin(), v->array_raw().end(),
                               kv.value.array_raw().begin(), kv.value.array_raw().end()))
            << kv.key;
      } else {
        EXPECT_EQ(v->DebugString(), kv.value.DebugString()) << kv.key;
      }
    }
    EXPECT_EQ(runtime::ModelFingerprint(**view), runtime::ModelFingerprint(**gguf));
    EXPECT_EQ((*reader)->model().fingerprint, runtime::ModelFingerprint(**gguf));
    std::remove(out.c_str());
  }
}

TEST(KpkgDraftTest, TheDraftModelTravelsInThePackage) {
  auto registry = MakeRegistry();
  hal::Device* ref = registry->ReferenceDevice();
  const std::string out = TempPath("with_draft.kpkg");
  ASSERT_TRUE(Pack(SharedModel("stories260K.gguf"), out, {},
                   SharedModel("stories260K-first4L.gguf"))
                  .ok());
  auto reader = runtime::PackageReader::Open(out);
  ASSERT_TRUE(reader.ok()) << reader.status();
  ASSERT_TRUE((*reader)->has_draft());
  EXPECT_EQ((*reader)->draft().role, "draft");
  runtime::ModelLoadOptions o;
  o.package_draft = true;
  auto draft = runtime::Model::Load(out, ref, o);
  ASSERT_TRUE(draft.ok()) << draft.status();
  EXPECT_EQ((*draft)->config().n_layers, 4u);
  auto direct = runtime::Model::Load(SharedModel("stories260K-first4L.gguf"), ref, {});
  ASSERT_TRUE(direct.ok());
  EXPECT_EQ((*draft)->fingerprint(), (*direct)->fingerprint());
  auto a = Greedy(**draft, ref, {1, 403, 407}, 8);
  auto b = Greedy(**direct, ref, {1, 403, 407}, 8);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
  // A GGUF has no draft to load.
  auto none = runtime::Model::Load(SharedModel("stories260K.gguf"), ref, o);
  EXPECT_FALSE(none.ok());
  std::remove(out.c_str());
}

}  // namespace
}  // namespace kestrel::testing
