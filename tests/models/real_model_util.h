// Helpers of the tests on the real models fetched by scripts/fetch_models.sh (issue 12): where the
// cache is, whether a missing model fails or skips, and a greedy driver over the C API.
#ifndef KESTREL_TESTS_MODELS_REAL_MODEL_UTIL_H_
#define KESTREL_TESTS_MODELS_REAL_MODEL_UTIL_H_

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "tests/test_util.h"

namespace kestrel::testing {

// $KESTREL_MODEL_CACHE, default ~/.cache/kestrel/models (scripts/fetch_models.sh).
inline std::string ModelCache() {
  if (const char* d = std::getenv("KESTREL_MODEL_CACHE"); d != nullptr && *d != '\0') return d;
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr ? home : "") + "/.cache/kestrel/models";
}

// KESTREL_REQUIRE_MODELS=1 (CI): a missing real model is a failure, not a skip.
inline bool RequireModels() {
  const char* r = std::getenv("KESTREL_REQUIRE_MODELS");
  return r != nullptr && std::string(r) == "1";
}

inline int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::atoi(v) : fallback;
}

// Skips the test (or fails it under KESTREL_REQUIRE_MODELS=1) when `path` is not readable.
#define KESTREL_REAL_MODEL_OR_SKIP(path)                                                        \
  if (access((path).c_str(), R_OK) != 0) {                                                      \
    if (::kestrel::testing::RequireModels())                                                    \
      FAIL() << "KESTREL_REQUIRE_MODELS=1 and " << (path) << " is missing";                     \
    GTEST_SKIP() << (path) << " is missing (run scripts/fetch_models.sh or set KESTREL_MODEL_CACHE)"; \
  }

// Greedy ids: the prompt decoded in one step, then exactly `n` argmax tokens, one per step (no
// stop at end-of-generation: the references list the ids they produced, EOG included).
inline std::vector<int32_t> GreedyIds(kestrel_model_t* model, const std::vector<int32_t>& prompt, size_t n,
                                      uint32_t ctx = 128) {
  SessionPtr session = MakeGreedySession(model, ctx);
  std::vector<int32_t> out;
  if (session == nullptr) return out;
  KESTREL_EXPECT_OK(kestrel_session_decode(session.get(), prompt.data(), prompt.size()));
  std::vector<float> logits;
  for (size_t i = 0; i < n; ++i) {
    size_t got = 0;
    KESTREL_EXPECT_OK(kestrel_session_get_logits(session.get(), nullptr, 0, &got));
    logits.resize(got);
    KESTREL_EXPECT_OK(kestrel_session_get_logits(session.get(), logits.data(), logits.size(), &got));
    if (got == 0) break;
    const int32_t best = static_cast<int32_t>(std::max_element(logits.begin(), logits.begin() + got) - logits.begin());
    out.push_back(best);
    KESTREL_EXPECT_OK(kestrel_session_decode(session.get(), &best, 1));
  }
  return out;
}

// kestrel_tokenize_with_options, measured then filled.
inline std::vector<int32_t> Tokenize(const kestrel_model_t* model, const std::string& text, bool add_special,
                              bool parse_special) {
  kestrel_tokenize_options_t o;
  kestrel_tokenize_options_init(&o);
  o.add_special = add_special;
  o.parse_special = parse_special;
  size_t n = 0;
  KESTREL_EXPECT_OK(kestrel_tokenize_with_options(model, text.data(), text.size(), &o, nullptr, 0, &n));
  std::vector<int32_t> ids(n);
  KESTREL_EXPECT_OK(kestrel_tokenize_with_options(model, text.data(), text.size(), &o, ids.data(), ids.size(), &n));
  return ids;
}

// How many leading ids of `got` equal `want`.
inline int LeadingAgreement(const std::vector<int32_t>& got, const std::vector<int32_t>& want) {
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
  return static_cast<int>(i);
}

}  // namespace kestrel::testing

#endif  // KESTREL_TESTS_MODELS_REAL_MODEL_UTIL_H_
