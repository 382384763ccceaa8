// The model tier: stories260K (dense llama) and tiny-moe-f32 (Mixtral-style MoE) end to end with
// the device under test as the model's device and the reference plugin as the fallback for the
// ops it does not claim. Per model:
//   model/<m>/golden             REFERENCE tier: greedy decoding reproduces llama.cpp's token ids
//                                (the shared golden files) exactly.
//   model/<m>/int8_tier          INT8 tier: teacher-forced on the golden sequence, the device's
//                                logits against the reference plugin's: top-1 agreement >= 90 %
//                                and mean relative logit error <= 0.1 (both in the message).
//   model/<m>/ops_on_device      some op of every step ran on the device (ops counted per device):
//                                a plugin that loads but leaves everything to ref fails here.
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "plugin_sdk/conformance/kit.h"
#include "runtime/model/llama_model.h"
#include "runtime/session/session.h"

namespace kestrel::conformance {
namespace {

constexpr const char* kTier = "model";
constexpr double kInt8MinAgreement = 0.90;
constexpr double kInt8MaxMeanLogitError = 0.10;
constexpr size_t kMaxTokens = 24;  // generated tokens compared per case (keeps the tier fast)

struct Golden {
  std::vector<int32_t> prompt, generated;
};

absl::StatusOr<Golden> ReadGolden(const std::string& path) {
  std::ifstream f(path);
  if (!f) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  const nlohmann::json j = nlohmann::json::parse(f, nullptr, false);
  if (j.is_discarded() || !j.contains("cases") || j["cases"].empty()) {
    return absl::DataLossError(absl::StrCat(path, ": not a golden file"));
  }
  Golden g;
  g.prompt = j["cases"][0]["prompt_ids"].get<std::vector<int32_t>>();
  g.generated = j["cases"][0]["generated_ids"].get<std::vector<int32_t>>();
  if (g.generated.size() > kMaxTokens) g.generated.resize(kMaxTokens);
  return g;
}

runtime::SessionConfig Config() {
  runtime::SessionConfig c;
  c.context_length = 128;
  c.block_size = 16;
  c.sampler.temperature = 0.0f;
  return c;
}

std::string OpsMessage(const std::map<std::string, uint64_t>& counts) {
  std::string m = "ops per device:";
  for (const auto& [name, n] : counts) absl::StrAppend(&m, " ", name, "=", n);
  return m;
}

void CheckOpsOnDevice(Report& r, const std::string& id, const std::string& device,
                      const std::map<std::string, uint64_t>& counts) {
  auto it = counts.find(device);
  if (it == counts.end() || it->second == 0) {
    r.Fail(kTier, id, absl::StrCat("no op ran on '", device, "': the model ran entirely on the "
                                   "fallback; ", OpsMessage(counts)));
  } else {
    r.Pass(kTier, id, OpsMessage(counts));
  }
}

// Teacher-forced logits of `tokens` after `prompt`: one vector per generated position.
absl::StatusOr<std::vector<std::vector<float>>> ForcedLogits(runtime::Session& s, const Golden& g) {
  std::vector<std::vector<float>> out;
  if (auto st = s.Decode(g.prompt); !st.ok()) return st;
  out.push_back(s.logits());
  for (size_t i = 0; i + 1 < g.generated.size(); ++i) {
    if (auto st = s.Decode({&g.generated[i], 1}); !st.ok()) return st;
    out.push_back(s.logits());
  }
  return out;
}

size_t Argmax(const std::vector<float>& v) {
  return static_cast<size_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

void RunModel(const KitOptions& o, Target& t, Report& r, const std::string& name,
              const std::string& file) {
  const std::string base = absl::StrCat(o.models_dir, "/", file);
  auto golden = ReadGolden(base + ".golden.json");
  if (!golden.ok()) {
    r.Skip(kTier, name + "/golden", absl::StrCat("model not found (set KESTREL_MODELS_DIR): ",
                                                 golden.status().message()));
    return;
  }
  auto model = runtime::LlamaModel::Load(base + ".gguf", t.dev, {});
  if (!model.ok()) {
    r.Fail(kTier, name + "/load", std::string(model.status().message()));
    return;
  }
  auto session = runtime::Session::Create(model->get(), t.ref, Config());
  if (!session.ok()) {
    r.Fail(kTier, name + "/session", std::string(session.status().message()));
    return;
  }
  if (t.tier != KESTREL_ACCURACY_INT8) {
    runtime::GenerateRequest req;
    req.prompt = golden->prompt;
    req.max_new_tokens = static_cast<uint32_t>(golden->generated.size());
    auto result = (*session)->Generate(req);
    if (!result.ok()) {
      r.Fail(kTier, name + "/golden", std::string(result.status().message()));
    } else {
      size_t same = 0;
      while (same < result->tokens.size() && same < golden->generated.size() &&
             result->tokens[same] == golden->generated[same]) {
        ++same;
      }
      if (same == golden->generated.size() && result->tokens.size() == same) {
        r.Pass(kTier, name + "/golden", absl::StrCat(same, " greedy tokens equal llama.cpp's"));
      } else {
        r.Fail(kTier, name + "/golden", absl::StrCat("greedy tokens differ from llama.cpp's at position ",
                                                     same, " of ", golden->generated.size()));
      }
    }
    CheckOpsOnDevice(r, name + "/ops_on_device", t.dev->name(), (*session)->executor().ops_per_device());
    return;
  }
  // INT8 tier: the device's logits against the reference plugin's on the same forced sequence.
  auto got = ForcedLogits(**session, *golden);
  auto ref_model = runtime::LlamaModel::Load(base + ".gguf", t.ref, {});
  if (!got.ok() || !ref_model.ok()) {
    r.Fail(kTier, name + "/int8_tier",
           std::string(!got.ok() ? got.status().message() : ref_model.status().message()));
    return;
  }
  auto ref_session = runtime::Session::Create(ref_model->get(), t.ref, Config());
  auto want = ref_session.ok() ? ForcedLogits(**ref_session, *golden)
                               : absl::StatusOr<std::vector<std::vector<float>>>(ref_session.status());
  if (!want.ok()) {
    r.Fail(kTier, name + "/int8_tier", absl::StrCat("reference: ", want.status().message()));
    return;
  }
  size_t agree = 0;
  double sum_err = 0, max_err = 0;
  for (size_t i = 0; i < want->size(); ++i) {
    const std::vector<float>& a = (*got)[i];
    const std::vector<float>& b = (*want)[i];
    double num = 0, den = 0;
    for (size_t k = 0; k < b.size(); ++k) {
      num += (double{a[k]} - b[k]) * (double{a[k]} - b[k]);
      den += double{b[k]} * b[k];
    }
    const double err = std::isfinite(num) ? std::sqrt(num / den) : INFINITY;
    sum_err += err;
    max_err = std::max(max_err, err);
    agree += Argmax(a) == Argmax(b) ? 1 : 0;
  }
  const double agreement = static_cast<double>(agree) / static_cast<double>(want->size());
  const double mean_err = sum_err / static_cast<double>(want->size());
  const std::string msg = absl::StrFormat(
      "teacher-forced over %d positions: top-1 agreement %.3f (>= %.2f), relative logit error "
      "mean %.4f (<= %.2f), max %.4f",
      static_cast<int>(want->size()), agreement, kInt8MinAgreement, mean_err,
      kInt8MaxMeanLogitError, max_err);
  CheckResult res{absl::StrCat(kTier, "/", name, "/int8_tier"), kTier,
                  agreement >= kInt8MinAgreement && mean_err <= kInt8MaxMeanLogitError
                      ? Outcome::kPass
                      : Outcome::kFail,
                  msg};
  res.error = mean_err;
  res.tolerance = kInt8MaxMeanLogitError;
  r.Add(std::move(res));
  CheckOpsOnDevice(r, name + "/ops_on_device", t.dev->name(), (*session)->executor().ops_per_device());
}

}  // namespace

void RunModelTier(const KitOptions& o, Target& t, Report& r) {
  RunModel(o, t, r, "stories260K", "stories260K");
  RunModel(o, t, r, "tiny-moe", "tiny-moe-f32");
}

}  // namespace kestrel::conformance
