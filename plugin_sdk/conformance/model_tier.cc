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
#include <cmath>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "plugin_sdk/conformance/kit.h"
#include "runtime/model/model.h"
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
  auto model = runtime::Model::Load(base + ".gguf", t.dev, {});
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
  session->reset();
  model->reset();
  auto m = CompareTeacherForced(base + ".gguf", t.dev, t.ref, golden->prompt, golden->generated);
  if (!m.ok()) {
    r.Fail(kTier, name + "/int8_tier", std::string(m.status().message()));
    return;
  }
  const std::string msg = absl::StrFormat(
      "teacher-forced over %d positions: top-1 agreement %.3f (>= %.2f), relative logit error "
      "mean %.4f (<= %.2f), max %.4f",
      static_cast<int>(m->positions), m->top1_agreement, kInt8MinAgreement, m->mean_error,
      kInt8MaxMeanLogitError, m->max_error);
  CheckResult res{absl::StrCat(kTier, "/", name, "/int8_tier"), kTier,
                  m->top1_agreement >= kInt8MinAgreement && m->mean_error <= kInt8MaxMeanLogitError
                      ? Outcome::kPass
                      : Outcome::kFail,
                  msg};
  res.error = m->mean_error;
  res.tolerance = kInt8MaxMeanLogitError;
  r.Add(std::move(res));
  CheckOpsOnDevice(r, name + "/ops_on_device", t.dev->name(), m->ops_per_device);
}

}  // namespace

absl::StatusOr<LogitAgreement> CompareTeacherForced(const std::string& model_path,
                                                    hal::Device* dev, hal::Device* ref,
                                                    const std::vector<int32_t>& prompt,
                                                    const std::vector<int32_t>& forced) {
  const Golden g{prompt, forced};
  std::vector<std::vector<float>> logits[2];
  LogitAgreement out;
  hal::Device* on[2] = {dev, ref};
  for (int i = 0; i < 2; ++i) {
    auto model = runtime::Model::Load(model_path, on[i], {});
    if (!model.ok()) return model.status();
    auto session = runtime::Session::Create(model->get(), ref, Config());
    if (!session.ok()) return session.status();
    auto l = ForcedLogits(**session, g);
    if (!l.ok()) return l.status();
    logits[i] = std::move(*l);
    if (i == 0) out.ops_per_device = (*session)->executor().ops_per_device();
  }
  size_t agree = 0;
  double sum_err = 0;
  for (size_t p = 0; p < logits[1].size(); ++p) {
    const std::vector<float>& a = logits[0][p];
    const std::vector<float>& b = logits[1][p];
    double num = 0, den = 0;
    for (size_t k = 0; k < b.size(); ++k) {
      num += (double{a[k]} - b[k]) * (double{a[k]} - b[k]);
      den += double{b[k]} * b[k];
    }
    const double err = std::isfinite(num) ? std::sqrt(num / den) : INFINITY;
    sum_err += err;
    out.max_error = std::max(out.max_error, err);
    agree += Argmax(a) == Argmax(b) ? 1 : 0;
  }
  out.positions = logits[1].size();
  if (out.positions > 0) {
    out.top1_agreement = static_cast<double>(agree) / static_cast<double>(out.positions);
    out.mean_error = sum_err / static_cast<double>(out.positions);
  }
  return out;
}

void RunModelTier(const KitOptions& o, Target& t, Report& r) {
  RunModel(o, t, r, "stories260K", "stories260K");
  RunModel(o, t, r, "tiny-moe", "tiny-moe-f32");
}

}  // namespace kestrel::conformance
