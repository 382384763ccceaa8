// kestrel-engine-bench: throughput of the serving engine at several concurrencies, and the prefill
// work the prefix cache saves. Uses only the public C API (kestrel/kestrel.h), so that
// `kestrel bench --engine` in tools/cli can call the same code.
//
//   kestrel-engine-bench -m MODEL --engine [--concurrency 1,8,32] [-n N] [-t T] [--device D]
//                        [--prefix-tokens P (0: skip)] [--reps R] [--json]
//
// For each concurrency C: one engine, C requests submitted at once (different prompts, seeded
// sampling), steps driven on this thread until all are done; tokens/s = generated tokens / wall
// time. Each figure is the median of --reps runs (default 3), each after an untimed warm-up
// request. The single-sequence baseline is a session generating N tokens from the first prompt in
// the same run (warm-up + median of --reps). shared_prefix: 32 requests sharing a P-token prefix, once with and once without the
// prefix cache; the prompt tokens computed are the engine's prefill_tokens_computed statistic.
// The last line of stdout is one JSON object.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kestrel/kestrel.h"

namespace {

struct Args {
  std::string model;
  std::string device;
  std::vector<uint32_t> concurrency = {1, 8, 32};
  uint32_t n = 128;
  uint32_t threads = 0;
  uint32_t prefix_tokens = 512;
  uint32_t shared_requests = 32;
  uint32_t reps = 3;
  bool json = false;
};

const char* const kPrompts[] = {
    "Once upon a time",       "Lily wanted to",      "The little dog",  "One day, a girl named",
    "Tom and his mom",        "The sun was",         "There was a big", "A cat sat on",
    "Ben liked to play with", "In the park, a bird", "Mom said that",   "The red ball",
};
constexpr size_t kNumPrompts = sizeof(kPrompts) / sizeof(kPrompts[0]);

bool Check(kestrel_status_t* s, const char* what) {
  if (s == nullptr) return true;
  std::fprintf(stderr, "kestrel-engine-bench: %s: %s: %s\n", what,
               kestrel_status_code_name(kestrel_status_code(s)), kestrel_status_message(s));
  kestrel_status_free(s);
  return false;
}

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

bool ParseList(const char* s, std::vector<uint32_t>* out) {
  out->clear();
  while (*s != '\0') {
    char* end = nullptr;
    unsigned long v = std::strtoul(s, &end, 10);
    if (end == s || v == 0 || v > 4096) return false;
    out->push_back(static_cast<uint32_t>(v));
    s = end;
    if (*s == ',') ++s;
  }
  return !out->empty();
}

bool ParseArgs(int argc, char** argv, Args* a) {
  for (int i = 1; i < argc; ++i) {
    std::string f = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (f == "--engine") continue;  // the only mode; accepted for `kestrel bench` parity
    if (f == "--json") {
      a->json = true;
      continue;
    }
    if ((f == "-m" || f == "--model") && (v = value())) {
      a->model = v;
    } else if (f == "--device" && (v = value())) {
      a->device = v;
    } else if (f == "--concurrency" && (v = value())) {
      if (!ParseList(v, &a->concurrency)) return false;
    } else if (f == "-n" && (v = value())) {
      a->n = static_cast<uint32_t>(std::strtoul(v, nullptr, 10));
      if (a->n == 0) return false;
    } else if (f == "-t" && (v = value())) {
      a->threads = static_cast<uint32_t>(std::strtoul(v, nullptr, 10));
    } else if (f == "--reps" && (v = value())) {
      a->reps = static_cast<uint32_t>(std::strtoul(v, nullptr, 10));
      if (a->reps == 0) return false;
    } else if (f == "--prefix-tokens" && (v = value())) {
      a->prefix_tokens = static_cast<uint32_t>(std::strtoul(v, nullptr, 10));  // 0: skip
    } else {
      return false;
    }
  }
  return !a->model.empty();
}

std::vector<int32_t> Tokenize(kestrel_model_t* m, const std::string& text, bool bos) {
  size_t n = 0;
  Check(kestrel_tokenize(m, text.data(), text.size(), bos, nullptr, 0, &n), "tokenize");
  std::vector<int32_t> ids(n);
  Check(kestrel_tokenize(m, text.data(), text.size(), bos, ids.data(), ids.size(), &n), "tokenize");
  return ids;
}

struct RunResult {
  bool ok = false;
  double tokens_per_s = 0;
  uint64_t generated = 0;
  uint32_t peak_blocks_used = 0;
  uint32_t blocks_total = 0;
  double mean_waste = 0;
  uint64_t prefill_computed = 0;
  uint64_t prefill_reused = 0;
  uint64_t preemptions = 0;
};

// Submits every prompt at once and steps until all are done.
RunResult RunEngine(kestrel_model_t* model, const Args& a, const kestrel_engine_options_t& eo,
                    const std::vector<std::vector<int32_t>>& prompts, uint32_t max_new) {
  RunResult r;
  kestrel_engine_t* engine = nullptr;
  if (!Check(kestrel_engine_create(model, &eo, &engine), "engine_create")) return r;
  kestrel_sampler_options_t so;
  kestrel_sampler_options_init(&so);
  {
    // Warm-up (not timed): the first steps choose op placements and grow the step buffers.
    kestrel_engine_request_options_t ro;
    kestrel_engine_request_options_init(&ro);
    ro.max_new_tokens = 2;
    kestrel_request_id_t id = 0;
    // Shorter than one block, so it leaves nothing in the prefix cache.
    const size_t n = std::min<size_t>(prompts[0].size(), 8);
    if (!Check(kestrel_engine_submit_tokens(engine, prompts[0].data(), n, &ro, &id),
               "submit") ||
        !Check(kestrel_engine_wait(engine, id, -1), "warm-up") ||
        !Check(kestrel_engine_release_request(engine, id), "release")) {
      kestrel_engine_destroy(engine);
      return r;
    }
  }
  kestrel_engine_stats_t base{};
  base.struct_size = sizeof(base);
  Check(kestrel_engine_get_stats(engine, &base), "get_stats");
  std::vector<kestrel_request_id_t> ids(prompts.size());
  const double t0 = Now();
  for (size_t i = 0; i < prompts.size(); ++i) {
    so.seed = 1000 + i;
    kestrel_engine_request_options_t ro;
    kestrel_engine_request_options_init(&ro);
    ro.max_new_tokens = max_new;
    ro.sampler = &so;
    if (!Check(kestrel_engine_submit_tokens(engine, prompts[i].data(), prompts[i].size(), &ro,
                                            &ids[i]),
               "submit")) {
      kestrel_engine_destroy(engine);
      return r;
    }
  }
  uint32_t active = 1;
  double waste_sum = 0;
  uint64_t n_steps = 0;
  kestrel_engine_stats_t st{};
  st.struct_size = sizeof(st);
  while (active > 0) {
    if (!Check(kestrel_engine_step(engine, &active), "step")) break;
    Check(kestrel_engine_get_stats(engine, &st), "get_stats");
    if (st.kv_blocks_used > r.peak_blocks_used) r.peak_blocks_used = st.kv_blocks_used;
    waste_sum += st.kv_waste_fraction;
    ++n_steps;
  }
  const double wall = Now() - t0;
  r.generated = st.generated_tokens - base.generated_tokens;
  r.tokens_per_s = wall > 0 ? static_cast<double>(r.generated) / wall : 0;
  r.blocks_total = st.kv_blocks_total;
  r.mean_waste = n_steps > 0 ? waste_sum / static_cast<double>(n_steps) : 0;
  r.prefill_computed = st.prefill_tokens_computed - base.prefill_tokens_computed;
  r.prefill_reused = st.prefill_tokens_reused - base.prefill_tokens_reused;
  r.preemptions = st.preemptions - base.preemptions;
  r.ok = active == 0;
  (void)a;
  kestrel_engine_destroy(engine);
  return r;
}

// Runs `reps` times; returns the run with the median tokens/s (a failed run counts as failed).
RunResult MedianRun(kestrel_model_t* model, const Args& a, const kestrel_engine_options_t& eo,
                    const std::vector<std::vector<int32_t>>& prompts, uint32_t max_new) {
  std::vector<RunResult> runs;
  for (uint32_t i = 0; i < a.reps; ++i) {
    runs.push_back(RunEngine(model, a, eo, prompts, max_new));
    if (!runs.back().ok) return runs.back();
  }
  std::sort(runs.begin(), runs.end(), [](const RunResult& x, const RunResult& y) {
    return x.tokens_per_s < y.tokens_per_s;
  });
  return runs[runs.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (!ParseArgs(argc, argv, &a)) {
    std::fprintf(stderr,
                 "usage: kestrel-engine-bench -m MODEL [--engine] [--concurrency 1,8,32] [-n N] "
                 "[-t T] [--device D] [--prefix-tokens P] [--reps R] [--json]\n");
    return 2;
  }
  kestrel_runtime_t* rt = nullptr;
  if (!Check(kestrel_runtime_create(nullptr, &rt), "runtime_create")) return 1;
  kestrel_model_options_t mo;
  kestrel_model_options_init(&mo);
  if (!a.device.empty()) mo.device = a.device.c_str();
  kestrel_model_t* model = nullptr;
  if (!Check(kestrel_model_load(rt, a.model.data(), a.model.size(), &mo, &model), "model_load")) {
    kestrel_runtime_destroy(rt);
    return 1;
  }
  kestrel_model_info_t info{};
  info.struct_size = sizeof(info);
  Check(kestrel_model_get_info(model, &info), "model_get_info");

  std::vector<std::vector<int32_t>> prompts;
  uint32_t longest = 0;
  for (size_t i = 0; i < kNumPrompts; ++i) {
    prompts.push_back(Tokenize(model, kPrompts[i], true));
    if (prompts.back().size() > longest) longest = static_cast<uint32_t>(prompts.back().size());
  }
  const uint32_t ctx = std::max<uint32_t>(info.context_length, longest + a.n);

  // Single-sequence baseline: a session, same prompt and length.
  double baseline_tps = 0;
  {
    kestrel_sampler_options_t so;
    kestrel_sampler_options_init(&so);
    so.seed = 1000;
    kestrel_session_options_t o;
    kestrel_session_options_init(&o);
    o.context_length = ctx;
    o.sampler = &so;
    o.n_threads = a.threads;
    kestrel_session_t* s = nullptr;
    if (Check(kestrel_session_create(model, &o, &s), "session_create")) {
      kestrel_generate_options_t g;
      kestrel_generate_options_init(&g);
      g.max_new_tokens = a.n;
      kestrel_generate_stats_t gs{};
      gs.struct_size = sizeof(gs);
      std::vector<double> tps;
      for (uint32_t rep = 0; rep <= a.reps; ++rep) {  // run 0 is the warm-up
        const double t0 = Now();
        if (!Check(kestrel_session_generate_tokens(s, prompts[0].data(), prompts[0].size(), &g,
                                                   &gs),
                   "session_generate")) {
          break;
        }
        const double wall = Now() - t0;
        if (rep > 0 && wall > 0) tps.push_back(gs.n_generated_tokens / wall);
      }
      if (!tps.empty()) {
        std::sort(tps.begin(), tps.end());
        baseline_tps = tps[tps.size() / 2];
      }
      kestrel_session_destroy(s);
    }
  }

  std::string json = "{\"model\":\"" + std::string(info.name) + "\",\"device\":\"" +
                     std::string(info.device) + "\",\"n\":" + std::to_string(a.n) +
                     ",\"session_baseline\":{\"tokens_per_s\":" + std::to_string(baseline_tps) +
                     "},\"engine\":[";
  if (!a.json) std::printf("session baseline: %.1f tokens/s\n", baseline_tps);
  bool ok = true;
  for (size_t ci = 0; ci < a.concurrency.size(); ++ci) {
    const uint32_t c = a.concurrency[ci];
    std::vector<std::vector<int32_t>> batch;
    for (uint32_t i = 0; i < c; ++i) batch.push_back(prompts[i % prompts.size()]);
    kestrel_engine_options_t eo;
    kestrel_engine_options_init(&eo);
    eo.max_sequences = c;
    eo.context_length = ctx;
    eo.n_threads = a.threads;
    RunResult r = MedianRun(model, a, eo, batch, a.n);
    ok &= r.ok;
    const double util = r.blocks_total ? static_cast<double>(r.peak_blocks_used) / r.blocks_total : 0;
    if (!a.json) {
      std::printf("concurrency %3u: %9.1f tokens/s (%.2fx baseline), %llu tokens, peak KV blocks "
                  "%u/%u, mean waste %.3f\n",
                  c, r.tokens_per_s, baseline_tps > 0 ? r.tokens_per_s / baseline_tps : 0.0,
                  static_cast<unsigned long long>(r.generated), r.peak_blocks_used, r.blocks_total,
                  r.mean_waste);
    }
    char buf[512];
    std::snprintf(buf, sizeof(buf),
                  "%s{\"concurrency\":%u,\"tokens_per_s\":%.2f,\"generated_tokens\":%llu,"
                  "\"kv_blocks_used\":%u,\"kv_blocks_total\":%u,\"kv_utilisation\":%.4f,"
                  "\"kv_waste_fraction\":%.4f,\"speedup_vs_session\":%.3f}",
                  ci ? "," : "", c, r.tokens_per_s, static_cast<unsigned long long>(r.generated),
                  r.peak_blocks_used, r.blocks_total, util, r.mean_waste,
                  baseline_tps > 0 ? r.tokens_per_s / baseline_tps : 0.0);
    json += buf;
  }
  json += "]";

  // Shared prefix: 32 requests = one P-token prefix + a different short suffix each.
  if (a.prefix_tokens > 0) {
    std::vector<int32_t> prefix = Tokenize(model, kPrompts[0], true);
    std::string filler = " and then they played in the park with the big red ball";
    while (prefix.size() < a.prefix_tokens) {
      std::vector<int32_t> more = Tokenize(model, filler, false);
      prefix.insert(prefix.end(), more.begin(), more.end());
    }
    prefix.resize(a.prefix_tokens);
    std::vector<std::vector<int32_t>> batch;
    uint32_t longest_req = 0;
    uint64_t total_prompt = 0;
    for (uint32_t i = 0; i < a.shared_requests; ++i) {
      std::vector<int32_t> p = prefix;
      std::vector<int32_t> suffix = Tokenize(model, kPrompts[i % kNumPrompts], false);
      p.insert(p.end(), suffix.begin(), suffix.end());
      p.push_back(static_cast<int32_t>(3 + i % 100));  // make every prompt distinct
      longest_req = std::max<uint32_t>(longest_req, static_cast<uint32_t>(p.size()));
      total_prompt += p.size();
      batch.push_back(std::move(p));
    }
    const uint32_t max_new = 8;
    kestrel_engine_options_t eo;
    kestrel_engine_options_init(&eo);
    eo.max_sequences = a.shared_requests;
    eo.context_length = longest_req + max_new;
    eo.n_threads = a.threads;
    RunResult with = MedianRun(model, a, eo, batch, max_new);
    eo.prefix_cache = false;
    RunResult without = MedianRun(model, a, eo, batch, max_new);
    ok &= with.ok && without.ok;
    if (!a.json) {
      std::printf("shared prefix: %u requests x %u-token prefix: %llu prompt tokens computed with "
                  "the prefix cache, %llu without (%llu prompt tokens in all)\n",
                  a.shared_requests, a.prefix_tokens,
                  static_cast<unsigned long long>(with.prefill_computed),
                  static_cast<unsigned long long>(without.prefill_computed),
                  static_cast<unsigned long long>(total_prompt));
    }
    char buf[512];
    std::snprintf(buf, sizeof(buf),
                  ",\"shared_prefix\":{\"requests\":%u,\"prefix_tokens\":%u,\"prompt_tokens\":%llu,"
                  "\"prefill_tokens_computed\":%llu,\"prefill_tokens_reused\":%llu,"
                  "\"prefill_tokens_without_cache\":%llu,\"tokens_per_s\":%.2f,"
                  "\"tokens_per_s_without_cache\":%.2f}",
                  a.shared_requests, a.prefix_tokens, static_cast<unsigned long long>(total_prompt),
                  static_cast<unsigned long long>(with.prefill_computed),
                  static_cast<unsigned long long>(with.prefill_reused),
                  static_cast<unsigned long long>(without.prefill_computed), with.tokens_per_s,
                  without.tokens_per_s);
    json += buf;
  }
  json += "}";
  std::printf("%s\n", json.c_str());
  kestrel_model_release(model);
  kestrel_runtime_destroy(rt);
  return ok ? 0 : 1;
}
