// The INT8 accuracy tier, measured (docs/NPU_STUB.md): a model on an INT8-tier device (default:
// the stub NPU) against the reference plugin. Per case, teacher-forced on one token sequence: the
// relative L2 error of the logits and the top-1 agreement at every position; and free-running
// greedy decoding on both devices: the tokens generated before the first difference. One JSON
// line per case. Not a test (no pass/fail); the conformance kit's model tier checks the tier.
//
//   int8_tier_bench MODEL.gguf [--golden FILE.golden.json | --prompt-ids 1,2,3] [--tokens N]
//                   [--device npu]
// Plugins from $KESTREL_PLUGIN_DIR (ref and the device's plugin, libkestrel_plugin_npu_stub.so
// unless --plugin NAME); the stub's options from its KESTREL_NPU_* environment variables.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "plugin_sdk/conformance/kit.h"
#include "runtime/model/model.h"
#include "runtime/session/session.h"

namespace {

using kestrel::conformance::CompareTeacherForced;

// Greedy tokens on `dev` (fallback ref) after `prompt`.
std::vector<int32_t> Greedy(const std::string& path, kestrel::hal::Device* dev,
                            kestrel::hal::Device* ref, const std::vector<int32_t>& prompt, int n) {
  auto model = kestrel::runtime::Model::Load(path, dev, {});
  if (!model.ok()) return {};
  kestrel::runtime::SessionConfig c;
  c.context_length = static_cast<uint32_t>(prompt.size() + n + 8);
  c.sampler.temperature = 0.0f;
  auto session = kestrel::runtime::Session::Create(model->get(), ref, c);
  if (!session.ok()) return {};
  kestrel::runtime::GenerateRequest req;
  req.prompt = prompt;
  req.max_new_tokens = static_cast<uint32_t>(n);
  auto r = (*session)->Generate(req);
  return r.ok() ? r->tokens : std::vector<int32_t>{};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: int8_tier_bench MODEL.gguf [--golden FILE | --prompt-ids 1,2,3] "
                 "[--tokens N] [--plugin NAME] [--device NAME]\n";
    return 2;
  }
  const std::string model = argv[1];
  std::string golden, plugin = "npu_stub", device = "npu";
  std::vector<std::vector<int32_t>> prompts;
  int tokens = 32;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string f = argv[i], v = argv[i + 1];
    if (f == "--golden") golden = v;
    if (f == "--tokens") tokens = std::atoi(v.c_str());
    if (f == "--plugin") plugin = v;
    if (f == "--device") device = v;
    if (f == "--prompt-ids") {
      std::vector<int32_t> ids;
      for (absl::string_view s : absl::StrSplit(v, ',')) {
        int32_t id = 0;
        if (absl::SimpleAtoi(s, &id)) ids.push_back(id);
      }
      prompts.push_back(ids);
    }
  }
  if (!golden.empty()) {
    std::ifstream f(golden);
    const nlohmann::json j = nlohmann::json::parse(f);
    for (const auto& c : j["cases"]) prompts.push_back(c["prompt_ids"].get<std::vector<int32_t>>());
  }
  if (prompts.empty()) prompts.push_back({1});
  const char* dir = std::getenv("KESTREL_PLUGIN_DIR");
  const std::string d = dir != nullptr ? dir : ".";
  auto reg = kestrel::hal::PluginRegistry::Create(
      d + "/libkestrel_plugin_ref.so:" + d + "/libkestrel_plugin_" + plugin + ".so", nullptr);
  auto dev = reg->FindDevice(device);
  kestrel::hal::Device* ref = reg->ReferenceDevice();
  if (!dev.ok() || ref == nullptr) {
    std::cerr << "no device: " << dev.status() << "\n";
    return 1;
  }
  for (size_t c = 0; c < prompts.size(); ++c) {
    const std::vector<int32_t> want = Greedy(model, ref, ref, prompts[c], tokens);
    const std::vector<int32_t> got = Greedy(model, *dev, ref, prompts[c], tokens);
    size_t same = 0;
    while (same < want.size() && same < got.size() && want[same] == got[same]) ++same;
    auto m = CompareTeacherForced(model, *dev, ref, prompts[c], want);
    if (!m.ok()) {
      std::cerr << m.status() << "\n";
      return 1;
    }
    nlohmann::json line = {{"model", model},
                           {"case", c},
                           {"forced_positions", m->positions},
                           {"top1_agreement", m->top1_agreement},
                           {"logit_rel_error_mean", m->mean_error},
                           {"logit_rel_error_max", m->max_error},
                           {"greedy_tokens", want.size()},
                           {"greedy_equal_prefix", same},
                           {"ops_per_device", m->ops_per_device}};
    std::cout << line.dump() << std::endl;
  }
  return 0;
}
