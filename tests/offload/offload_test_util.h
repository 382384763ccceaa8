// tests/offload/offload_test_util.h: what the offload tests share through the public C API:
// an owning engine pointer, loading a test model under a memory budget, reading its plan and
// memory statistics, greedy ids from a fresh session, and the prompts of a golden file.
#ifndef KESTREL_TESTS_OFFLOAD_OFFLOAD_TEST_UTIL_H_
#define KESTREL_TESTS_OFFLOAD_OFFLOAD_TEST_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kestrel/kestrel.h"
#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace kestrel::testing {

struct EngineDeleter {
  void operator()(kestrel_engine_t* e) const { kestrel_engine_destroy(e); }
};
using EnginePtr = std::unique_ptr<kestrel_engine_t, EngineDeleter>;

struct BudgetedLoad {
  std::string model_file;  // in ../shared/models
  std::string device;
  std::string budget;  // kestrel_model_options_t.memory_budget; "" = none
  uint32_t expert_policy = 0;
  bool metadata_only = false;
  uint32_t plan_context = 0;
  uint32_t offload_flags = 0;  // KESTREL_OFFLOAD_FLAG_*
};

inline StatusPtr LoadBudgeted(kestrel_runtime_t* rt, const BudgetedLoad& l, ModelPtr* out) {
  const std::string path = ModelPath(l.model_file);
  kestrel_model_options_t o;
  kestrel_model_options_init(&o);
  o.device = l.device.c_str();
  o.metadata_only = l.metadata_only;
  o.memory_budget = l.budget.empty() ? nullptr : l.budget.c_str();
  o.expert_cache_policy = l.expert_policy;
  o.plan_context_length = l.plan_context;
  o.offload_flags = l.offload_flags;
  kestrel_model_t* m = nullptr;
  StatusPtr s(kestrel_model_load(rt, path.data(), path.size(), &o, &m));
  out->reset(m);
  return s;
}

inline kestrel_memory_plan_info_t Plan(const kestrel_model_t* m) {
  kestrel_memory_plan_info_t p{};
  p.struct_size = sizeof(p);
  StatusPtr s(kestrel_model_get_memory_plan(m, &p));
  EXPECT_EQ(s, nullptr) << kestrel_status_message(s.get());
  return p;
}

inline kestrel_memory_stats_t MemoryStats(const kestrel_model_t* m) {
  kestrel_memory_stats_t st{};
  st.struct_size = sizeof(st);
  StatusPtr s(kestrel_model_get_memory_stats(m, &st));
  EXPECT_EQ(s, nullptr) << kestrel_status_message(s.get());
  return st;
}

// `n` greedy ids after `prompt` from a fresh session of `ctx` tokens (fewer after a failure,
// which is reported).
inline std::vector<int32_t> GreedyIds(kestrel_model_t* m, uint32_t ctx, const std::vector<int32_t>& prompt,
                                      int n) {
  SessionPtr s = MakeGreedySession(m, ctx);
  std::vector<int32_t> out;
  if (!s) return out;
  StatusPtr st(kestrel_session_decode(s.get(), prompt.data(), prompt.size()));
  EXPECT_EQ(st, nullptr) << kestrel_status_message(st.get());
  for (int i = 0; i < n && st == nullptr; ++i) {
    int32_t t = -1;
    st.reset(kestrel_session_sample(s.get(), &t));
    EXPECT_EQ(st, nullptr) << kestrel_status_message(st.get());
    out.push_back(t);
    if (st == nullptr) st.reset(kestrel_session_decode(s.get(), &t, 1));
    EXPECT_EQ(st, nullptr) << kestrel_status_message(st.get());
  }
  return out;
}

// The prompt ids of the first `max` cases of a golden file in ../shared/models.
inline std::vector<std::vector<int32_t>> GoldenPrompts(const std::string& golden_file,
                                                       size_t max = SIZE_MAX) {
  std::ifstream f(ModelPath(golden_file));
  nlohmann::json golden = nlohmann::json::parse(f);
  std::vector<std::vector<int32_t>> p;
  for (const auto& c : golden["cases"]) {
    if (p.size() == max) break;
    p.push_back(c["prompt_ids"].get<std::vector<int32_t>>());
  }
  return p;
}

}  // namespace kestrel::testing

#endif  // KESTREL_TESTS_OFFLOAD_OFFLOAD_TEST_UTIL_H_
