// Speculative decoding options and statistics at the C boundary (sessions and engine requests).
#include "api/src/c_api_internal.h"

using kestrel::api::Guard;
using kestrel::api::NullArgument;

namespace kestrel::api {

absl::Status ReadSpeculative(const char* fn, const kestrel_speculative_options_t* in,
                             kestrel::runtime::SpecConfig* config, kestrel_model_t** draft) {
  *draft = nullptr;
  kestrel_speculative_options_t o;
  kestrel_speculative_options_init(&o);
  if (auto s = ReadOptions(fn, "options->speculative", in, KESTREL_SPECULATIVE_OPTIONS_MIN_SIZE, &o);
      !s.ok()) {
    return s;
  }
  if (o.method >= kestrel::runtime::kNumSpecMethods) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: options->speculative->method = %u is not a kestrel_spec_method_t (0..7)", fn, o.method));
  }
  config->method = static_cast<kestrel::runtime::SpecMethod>(o.method);
  config->max_draft = o.max_draft_tokens;
  config->tree_budget = o.tree_budget;
  config->self_layers = o.self_draft_layers;
  config->heads_path = o.heads_path ? o.heads_path : "";
  config->draft_model = o.draft_model ? o.draft_model->model.get() : nullptr;
  *draft = o.draft_model;
  return absl::OkStatus();
}

absl::Status WriteSpecStats(const char* fn, const kestrel::runtime::SpecStats& st,
                            kestrel_speculative_stats_t* out) {
  kestrel_speculative_stats_t c{};
  c.struct_size = sizeof(c);
  c.method = static_cast<uint32_t>(st.current);
  c.draft_tokens = st.current_draft;
  c.steps = st.steps;
  c.plain_steps = st.plain_steps;
  c.drafted = st.drafted;
  c.accepted = st.accepted;
  c.mean_accepted = st.mean_accepted();
  c.propose_ms = st.propose_ms;
  c.verify_ms = st.verify_ms;
  for (uint32_t i = 0; i < kestrel::runtime::kNumSpecMethods; ++i) {
    c.steps_by_method[i] = st.steps_by_method[i];
    c.drafted_by_method[i] = st.drafted_by_method[i];
    c.accepted_by_method[i] = st.accepted_by_method[i];
    c.acceptance_by_method[i] = st.acceptance[i];
  }
  c.probes = st.probes;
  c.plain_step_ms = st.plain_step_ms;
  c.verify_cost_ratio = st.verify_cost_ratio;
  c.expected_speedup = st.expected_speedup;
  c.verify_tokens = st.verify_tokens;
  c.probe_interval = st.probe_interval;
  return WriteInfo(fn, "out_stats", c, out, KESTREL_SPECULATIVE_STATS_MIN_SIZE);
}

}  // namespace kestrel::api

extern "C" {

KESTREL_API void kestrel_speculative_options_init_sized(kestrel_speculative_options_t* out,
                                                        size_t struct_size) {
  kestrel::api::InitOptions(out, struct_size, [](kestrel_speculative_options_t& o) {
    o.method = KESTREL_SPEC_OFF;
  });
}

KESTREL_API const char* kestrel_spec_method_name(uint32_t method) {
  return kestrel::runtime::SpecMethodName(static_cast<kestrel::runtime::SpecMethod>(method));
}

KESTREL_API kestrel_status_t* kestrel_session_speculative_stats(
    const kestrel_session_t* session, kestrel_speculative_stats_t* out_stats) {
  return Guard("kestrel_session_speculative_stats", [&]() -> absl::Status {
    constexpr const char* fn = "kestrel_session_speculative_stats";
    if (session == nullptr) return NullArgument(fn, "session");
    return kestrel::api::WriteSpecStats(fn, session->session->last_spec_stats(), out_stats);
  });
}

KESTREL_API kestrel_status_t* kestrel_session_get_hidden(const kestrel_session_t* session,
                                                         size_t n_positions, float* out_hidden,
                                                         size_t capacity, size_t* out_required) {
  return Guard("kestrel_session_get_hidden", [&]() -> absl::Status {
    constexpr const char* fn = "kestrel_session_get_hidden";
    if (session == nullptr) return NullArgument(fn, "session");
    if (n_positions > UINT32_MAX) {
      return absl::OutOfRangeError(absl::StrFormat("%s: n_positions %u is too large", fn, n_positions));
    }
    std::vector<float> h;
    absl::Status s = session->session->Hidden(static_cast<uint32_t>(n_positions), &h);
    if (!s.ok()) return absl::Status(s.code(), absl::StrCat(fn, ": ", s.message()));
    return kestrel::api::CopyOut(fn, "out_hidden", h.data(), h.size(), out_hidden, capacity,
                                 out_required);
  });
}

}  // extern "C"
