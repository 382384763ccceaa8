// Shared helpers for the integration tests: paths to the shared models, RAII over the C API's
// handles, and status assertions that print the library's message.
#ifndef KESTREL_TESTS_TEST_UTIL_H_
#define KESTREL_TESTS_TEST_UTIL_H_

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kestrel/kestrel.h"

namespace kestrel::testing {

inline std::string ModelsDir() {
  const char* d = std::getenv("KESTREL_MODELS_DIR");
  return d ? d : "../shared/models";
}
inline std::string ModelPath(const std::string& name) { return ModelsDir() + "/" + name; }
// Device under test: KESTREL_TEST_DEVICE, default the reference plugin.
inline std::string TestDevice() {
  const char* d = std::getenv("KESTREL_TEST_DEVICE");
  return d && *d ? d : "ref";
}
inline std::string PluginDir() {
  const char* d = std::getenv("KESTREL_PLUGIN_DIR");
  return d ? d : "";
}

struct StatusDeleter {
  void operator()(kestrel_status_t* s) const { kestrel_status_free(s); }
};
using StatusPtr = std::unique_ptr<kestrel_status_t, StatusDeleter>;

#define KESTREL_ASSERT_OK(expr)                                                        \
  do {                                                                                 \
    ::kestrel::testing::StatusPtr _s(expr);                                            \
    ASSERT_EQ(kestrel_status_code(_s.get()), KESTREL_STATUS_OK)                        \
        << #expr << ": " << kestrel_status_code_name(kestrel_status_code(_s.get())) \
        << ": " << kestrel_status_message(_s.get());                                   \
  } while (0)

// For helpers that return a value (ASSERT_* needs a void function).
#define KESTREL_EXPECT_OK(expr)                                                        \
  do {                                                                                 \
    ::kestrel::testing::StatusPtr _s(expr);                                            \
    EXPECT_EQ(kestrel_status_code(_s.get()), KESTREL_STATUS_OK)                        \
        << #expr << ": " << kestrel_status_message(_s.get());                          \
  } while (0)

struct RuntimeDeleter {
  void operator()(kestrel_runtime_t* r) const { kestrel_runtime_destroy(r); }
};
struct ModelDeleter {
  void operator()(kestrel_model_t* m) const { kestrel_model_release(m); }
};
struct SessionDeleter {
  void operator()(kestrel_session_t* s) const { kestrel_session_destroy(s); }
};
using RuntimePtr = std::unique_ptr<kestrel_runtime_t, RuntimeDeleter>;
using ModelPtr = std::unique_ptr<kestrel_model_t, ModelDeleter>;
using SessionPtr = std::unique_ptr<kestrel_session_t, SessionDeleter>;

// A runtime over `plugin_path` (default: the build's plugin folder).
inline RuntimePtr MakeRuntime(const std::string& plugin_path = PluginDir()) {
  kestrel_runtime_options_t o;
  kestrel_runtime_options_init(&o);
  o.plugin_path = plugin_path.c_str();
  kestrel_runtime_t* rt = nullptr;
  StatusPtr s(kestrel_runtime_create(&o, &rt));
  EXPECT_EQ(s, nullptr) << kestrel_status_message(s.get());
  return RuntimePtr(rt);
}

// Loads `path` on `device`; returns the status (caller owns) and the model.
inline StatusPtr LoadModel(kestrel_runtime_t* rt, const std::string& path, const std::string& device,
                           ModelPtr* out, bool use_mmap = true) {
  kestrel_model_options_t o;
  kestrel_model_options_init(&o);
  o.device = device.c_str();
  o.use_mmap = use_mmap;
  kestrel_model_t* m = nullptr;
  StatusPtr s(kestrel_model_load(rt, path.data(), path.size(), &o, &m));
  out->reset(m);
  return s;
}

inline SessionPtr MakeGreedySession(kestrel_model_t* model, uint32_t ctx = 0) {
  kestrel_sampler_options_t so;
  kestrel_sampler_options_init(&so);
  so.temperature = 0.0f;
  kestrel_session_options_t o;
  kestrel_session_options_init(&o);
  o.sampler = &so;
  o.context_length = ctx;
  kestrel_session_t* s = nullptr;
  StatusPtr st(kestrel_session_create(model, &o, &s));
  EXPECT_EQ(st, nullptr) << kestrel_status_message(st.get());
  return SessionPtr(s);
}

// Collects the streamed tokens and text of a generation.
struct Collected {
  std::vector<int32_t> tokens;
  std::string text;
  static bool OnToken(void* user, int32_t token, const char* text, size_t len) {
    auto* c = static_cast<Collected*>(user);
    if (token != KESTREL_TOKEN_NONE) c->tokens.push_back(token);
    c->text.append(text, len);
    return true;
  }
};

inline std::string FromHex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

// ---- missing model files ---------------------------------------------------------------------
// KESTREL_REQUIRE_MODELS=1 (CI: scripts/test.sh exports it): a missing model fails the test;
// otherwise it is skipped with a message saying so (tests/require_models.sh for scripts).
inline bool ModelsRequired() {
  const char* v = std::getenv("KESTREL_REQUIRE_MODELS");
  return v != nullptr && std::string(v) == "1";
}
// The real models' cache that scripts/fetch_models.sh fills ($KESTREL_MODEL_CACHE, default
// ~/.cache/kestrel/models).
inline std::string RealModelPath(const std::string& name) {
  const char* cache = std::getenv("KESTREL_MODEL_CACHE");
  if (cache != nullptr && *cache != '\0') return std::string(cache) + "/" + name;
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr ? home : ".") + "/.cache/kestrel/models/" + name;
}
inline bool FileExists(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f != nullptr) std::fclose(f);
  return f != nullptr;
}
// In a TEST body or SetUp: returns from it, skipped or failed, when `path` does not exist.
#define KESTREL_REQUIRE_MODEL_FILE(path)                                                       \
  do {                                                                                         \
    const std::string _p = (path);                                                             \
    if (!::kestrel::testing::FileExists(_p)) {                                                 \
      if (::kestrel::testing::ModelsRequired()) {                                              \
        FAIL() << "model file not found: " << _p << " (KESTREL_REQUIRE_MODELS=1)";            \
      }                                                                                        \
      GTEST_SKIP() << "model file not found: " << _p                                          \
                   << " (set KESTREL_REQUIRE_MODELS=1 to make this a failure)";               \
    }                                                                                          \
  } while (0)

}  // namespace kestrel::testing

#endif  // KESTREL_TESTS_TEST_UTIL_H_
