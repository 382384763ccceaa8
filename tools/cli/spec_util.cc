#include "spec_util.h"

#include <cstdio>

namespace kestrel::cli {

uint32_t SpecMethodFromName(const std::string& name) {
  static constexpr const char* kNames[] = {"off",  "auto",      "draft",  "self",
                                           "ngram", "lookahead", "medusa", "eagle"};
  for (uint32_t i = 0; i < 8; ++i) {
    if (name == kNames[i]) return i;
  }
  return KESTREL_SPEC_OFF;
}

std::vector<std::string> SpecMethodList(const std::string& spec) {
  std::vector<std::string> out;
  for (size_t start = 0;;) {
    const size_t comma = spec.find(',', start);
    out.push_back(spec.substr(start, comma == std::string::npos ? comma : comma - start));
    if (comma == std::string::npos) return out;
    start = comma + 1;
  }
}

bool MakeSpecOptions(const Options& o, kestrel_runtime_t* runtime, ModelPtr* draft,
                     kestrel_speculative_options_t* spec, int* exit_code) {
  kestrel_speculative_options_init(spec);
  if (o.spec.empty()) return true;
  spec->method = SpecMethodFromName(o.spec.substr(0, o.spec.find(',')));
  if (o.spec_max) spec->max_draft_tokens = *o.spec_max;
  if (!o.heads.empty()) spec->heads_path = o.heads.c_str();
  if (!o.draft_model.empty()) {
    LoadOptions d;  // --mem and --ctx budget the target model, not its draft
    d.path = o.draft_model;
    d.device = o.device;
    d.use_mmap = o.use_mmap;
    *draft = LoadModel(runtime, d, exit_code);
    if (!*draft) return false;
    spec->draft_model = draft->get();
  }
  return true;
}

void PrintSpecStats(const kestrel_speculative_stats_t& st) {
  std::fprintf(stderr,
               "kestrel: speculative: %s (draft %u); %llu verify steps, %llu plain; drafted %llu, "
               "accepted %llu (%.2f per step); propose %.1f ms, verify %.1f ms\n",
               kestrel_spec_method_name(st.method), st.draft_tokens,
               static_cast<unsigned long long>(st.steps),
               static_cast<unsigned long long>(st.plain_steps),
               static_cast<unsigned long long>(st.drafted),
               static_cast<unsigned long long>(st.accepted), st.mean_accepted, st.propose_ms,
               st.verify_ms);
  std::fprintf(stderr,
               "kestrel: controller: plain step %.2f ms; last verify step %u tokens at %.2fx a "
               "plain step; expected speedup %.2fx; %llu probe steps, re-probe every %u steps\n",
               st.plain_step_ms, st.verify_tokens, st.verify_cost_ratio, st.expected_speedup,
               static_cast<unsigned long long>(st.probes), st.probe_interval);
}

void WriteSpecStatsJson(JsonWriter* w, const kestrel_speculative_stats_t& st) {
  w->BeginObject();
  w->Key("method");
  w->String(kestrel_spec_method_name(st.method));
  w->Key("draft_tokens");
  w->Uint(st.draft_tokens);
  w->Key("steps");
  w->Uint(st.steps);
  w->Key("plain_steps");
  w->Uint(st.plain_steps);
  w->Key("drafted");
  w->Uint(st.drafted);
  w->Key("accepted");
  w->Uint(st.accepted);
  w->Key("mean_accepted");
  w->Double(st.mean_accepted);
  w->Key("propose_ms");
  w->Double(st.propose_ms);
  w->Key("verify_ms");
  w->Double(st.verify_ms);
  w->Key("controller");
  w->BeginObject();
  w->Key("plain_step_ms");
  w->Double(st.plain_step_ms);
  w->Key("verify_tokens");
  w->Uint(st.verify_tokens);
  w->Key("verify_cost_ratio");
  w->Double(st.verify_cost_ratio);
  w->Key("expected_speedup");
  w->Double(st.expected_speedup);
  w->Key("probes");
  w->Uint(st.probes);
  w->Key("probe_interval");
  w->Uint(st.probe_interval);
  w->EndObject();
  w->Key("by_method");
  w->BeginObject();
  for (uint32_t i = 2; i < 8; ++i) {
    if (st.steps_by_method[i] == 0) continue;
    w->Key(kestrel_spec_method_name(i));
    w->BeginObject();
    w->Key("steps");
    w->Uint(st.steps_by_method[i]);
    w->Key("drafted");
    w->Uint(st.drafted_by_method[i]);
    w->Key("accepted");
    w->Uint(st.accepted_by_method[i]);
    w->Key("acceptance");
    w->Double(st.acceptance_by_method[i]);
    w->EndObject();
  }
  w->EndObject();
  w->EndObject();
}


}  // namespace kestrel::cli
