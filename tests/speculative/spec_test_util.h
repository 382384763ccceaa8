// Shared set-up of the speculative suites: a plugin registry, the shared models on a device, the
// golden cases, and a greedy session with a speculative method.
#ifndef KESTREL_TESTS_SPECULATIVE_SPEC_TEST_UTIL_H_
#define KESTREL_TESTS_SPECULATIVE_SPEC_TEST_UTIL_H_

#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "hal/src/plugin_registry.h"
#include "nlohmann/json.hpp"
#include "runtime/model/model.h"
#include "runtime/session/session.h"
#include "runtime/speculative/spec_config.h"
#include "tests/test_util.h"

namespace kestrel::testing {

struct GoldenCase {
  std::vector<int32_t> prompt, generated;
};

inline std::vector<GoldenCase> ReadGolden(const std::string& file) {
  std::ifstream f(ModelPath(file));
  nlohmann::json j = nlohmann::json::parse(f);
  std::vector<GoldenCase> out;
  for (const auto& c : j["cases"]) {
    out.push_back({c["prompt_ids"].get<std::vector<int32_t>>(),
                   c["generated_ids"].get<std::vector<int32_t>>()});
  }
  return out;
}

// One registry and the loaded models per device for the whole test binary.
class SpecEnv {
 public:
  static SpecEnv& Get() {
    static SpecEnv* env = new SpecEnv();
    return *env;
  }
  // nullptr (and a reason) when the device is not here.
  hal::Device* Device(const std::string& name, std::string* why) {
    absl::StatusOr<hal::Device*> d = registry_->FindDevice(name);
    if (!d.ok()) {
      *why = std::string(d.status().message());
      return nullptr;
    }
    return *d;
  }
  hal::Device* Ref() { return registry_->ReferenceDevice(); }
  const runtime::Model* Model(const std::string& file, const std::string& device) {
    auto key = file + "@" + device;
    auto it = models_.find(key);
    if (it != models_.end()) return it->second.get();
    std::string why;
    hal::Device* d = Device(device, &why);
    if (d == nullptr) return nullptr;
    auto m = runtime::Model::Load(ModelPath(file), d, {});
    EXPECT_TRUE(m.ok()) << m.status();
    if (!m.ok()) return nullptr;
    return (models_[key] = std::move(*m)).get();
  }

 private:
  SpecEnv() { registry_ = hal::PluginRegistry::Create(PluginDir(), nullptr); }
  std::unique_ptr<hal::PluginRegistry> registry_;
  std::map<std::string, std::unique_ptr<runtime::Model>> models_;
};

// A (device, method) test parameter and its test-name suffix, e.g. "cpu_ngram".
struct SpecParam {
  std::string device;
  runtime::SpecMethod method;
};
inline std::string SpecParamName(const ::testing::TestParamInfo<SpecParam>& p) {
  return p.param.device + "_" + runtime::SpecMethodName(p.param.method);
}

#define KESTREL_SPEC_DEVICE_OR_SKIP(name)                                     \
  do {                                                                        \
    std::string _why;                                                         \
    if (SpecEnv::Get().Device(name, &_why) == nullptr) {                      \
      GTEST_SKIP() << "no '" << name << "' device here: " << _why;            \
    }                                                                         \
  } while (0)

}  // namespace kestrel::testing

#endif  // KESTREL_TESTS_SPECULATIVE_SPEC_TEST_UTIL_H_
