// `kestrel bench --engine`: serving-engine throughput (see engine_bench.h and README.md).
//
// For each concurrency C: one engine (max_sequences = C, context = max(the model's, longest prompt
// + N), other options the library's defaults), C requests submitted at once (12 different short
// prompts, seeded sampling), steps driven on this thread until all are done; tokens/s = generated
// tokens / wall time. Each figure is the median of --reps runs, each after an untimed warm-up
// request. The single-sequence baseline is a session generating N tokens from the first prompt
// (warm-up + median of --reps). shared_prefix: 32 requests sharing a P-token prefix, once with
// and once without the prefix cache; the prompt tokens computed are the engine's
// prefill_tokens_computed statistic.
//
// stdout: one line per measurement; with --json one more line, a JSON object (the last line).
// stderr: one line per run, logs, errors.
#include "engine_bench.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "api_util.h"
#include "bench_util.h"
#include "interrupt.h"
#include "json_writer.h"

namespace kestrel::cli {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kPreferredPrefixTokens = 512;
constexpr uint32_t kSharedRequests = 32;
constexpr uint32_t kSharedMaxNew = 8;  // new tokens per shared-prefix request

// Short story openings (bench_util.h), the workload of every engine run.
const char* const* const kPrompts = kStoryPrompts;
constexpr size_t kNumPrompts = kNumStoryPrompts;

struct EngineDeleter {
  void operator()(kestrel_engine_t* e) const { kestrel_engine_destroy(e); }
};
using EnginePtr = std::unique_ptr<kestrel_engine_t, EngineDeleter>;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// Returns false (after printing the error) if `raw` is a failure.
bool Check(kestrel_status_t* raw) {
  StatusPtr status(raw);
  if (!status) return true;
  PrintStatusError(status.get());
  return false;
}

kestrel_engine_stats_t GetStats(kestrel_engine_t* engine) {
  kestrel_engine_stats_t st{};
  st.struct_size = sizeof(st);
  Check(kestrel_engine_get_stats(engine, &st));
  return st;
}

}  // namespace

EngineRunResult RunEngineOnce(kestrel_model_t* model, const kestrel_engine_options_t& options,
                              const std::vector<std::vector<int32_t>>& prompts, uint32_t max_new) {
  EngineRunResult r;
  kestrel_engine_t* raw = nullptr;
  if (prompts.empty() || !Check(kestrel_engine_create(model, &options, &raw))) return r;
  EnginePtr engine(raw);
  {
    // Warm-up (not timed): the first steps choose op placements and grow the step buffers.
    // Shorter than one block, so it leaves nothing in the prefix cache.
    kestrel_engine_request_options_t ro;
    kestrel_engine_request_options_init(&ro);
    ro.max_new_tokens = 2;
    kestrel_request_id_t id = 0;
    const size_t n = std::min<size_t>(prompts[0].size(), 8);
    if (!Check(kestrel_engine_submit_tokens(engine.get(), prompts[0].data(), n, &ro, &id)) ||
        !Check(kestrel_engine_wait(engine.get(), id, -1)) ||
        !Check(kestrel_engine_release_request(engine.get(), id))) {
      return r;
    }
  }
  const kestrel_engine_stats_t base = GetStats(engine.get());
  kestrel_sampler_options_t so;
  kestrel_sampler_options_init(&so);
  const Clock::time_point start = Clock::now();
  for (size_t i = 0; i < prompts.size(); ++i) {
    so.seed = 1000 + i;
    kestrel_engine_request_options_t ro;
    kestrel_engine_request_options_init(&ro);
    ro.max_new_tokens = max_new;
    ro.sampler = &so;
    kestrel_request_id_t id = 0;
    if (!Check(kestrel_engine_submit_tokens(engine.get(), prompts[i].data(), prompts[i].size(),
                                            &ro, &id))) {
      return r;
    }
  }
  uint32_t active = 1;
  double waste_sum = 0;
  uint64_t n_steps = 0;
  kestrel_engine_stats_t st = base;
  while (active > 0) {
    if (InterruptRequested()) {
      r.interrupted = true;
      return r;
    }
    if (!Check(kestrel_engine_step(engine.get(), &active))) return r;
    st = GetStats(engine.get());
    r.peak_blocks_used = std::max(r.peak_blocks_used, st.kv_blocks_used);
    r.window_blocks_peak = std::max(r.window_blocks_peak, st.kv_window_blocks_used);
    waste_sum += st.kv_waste_fraction;
    ++n_steps;
  }
  const double wall = Seconds(start);
  r.generated = st.generated_tokens - base.generated_tokens;
  r.tokens_per_s = wall > 0 ? static_cast<double>(r.generated) / wall : 0;
  r.blocks_total = st.kv_blocks_total;
  r.window_blocks_total = st.kv_window_blocks_total;
  r.window_bytes = st.kv_window_bytes;
  r.mean_waste = n_steps > 0 ? waste_sum / static_cast<double>(n_steps) : 0;
  r.prefill_computed = st.prefill_tokens_computed - base.prefill_tokens_computed;
  r.prefill_reused = st.prefill_tokens_reused - base.prefill_tokens_reused;
  r.preemptions = st.preemptions - base.preemptions;
  r.ok = true;
  return r;
}

EngineRunResult MedianEngineRun(kestrel_model_t* model, const kestrel_engine_options_t& options,
                                const std::vector<std::vector<int32_t>>& prompts, uint32_t max_new,
                                uint32_t reps) {
  std::vector<EngineRunResult> runs;
  for (uint32_t i = 0; i < std::max(reps, 1u); ++i) {
    runs.push_back(RunEngineOnce(model, options, prompts, max_new));
    const EngineRunResult& r = runs.back();
    if (!r.ok) return r;
    std::fprintf(stderr,
                 "kestrel: bench engine rep %u/%u: %zu requests, %.2f tokens/s, %llu tokens, "
                 "%llu prompt tokens computed\n",
                 i + 1, reps, prompts.size(), r.tokens_per_s,
                 static_cast<unsigned long long>(r.generated),
                 static_cast<unsigned long long>(r.prefill_computed));
  }
  std::sort(runs.begin(), runs.end(), [](const EngineRunResult& x, const EngineRunResult& y) {
    return x.tokens_per_s < y.tokens_per_s;
  });
  return runs[runs.size() / 2];
}

double SessionBaselineTokensPerS(kestrel_model_t* model, const std::vector<int32_t>& prompt,
                                 uint32_t max_new, uint32_t context_length, uint32_t n_threads,
                                 uint32_t kv_type, uint32_t reps) {
  kestrel_sampler_options_t so;
  kestrel_sampler_options_init(&so);
  so.seed = 1000;
  kestrel_session_options_t o;
  kestrel_session_options_init(&o);
  o.context_length = context_length;
  o.sampler = &so;
  o.n_threads = n_threads;
  o.kv_type = kv_type;
  kestrel_session_t* raw = nullptr;
  if (!Check(kestrel_session_create(model, &o, &raw))) return 0;
  SessionPtr session(raw);
  kestrel_generate_options_t g;
  kestrel_generate_options_init(&g);
  g.max_new_tokens = max_new;
  std::vector<double> tps;
  for (uint32_t rep = 0; rep <= reps; ++rep) {  // run 0 is the warm-up
    if (InterruptRequested()) return 0;
    kestrel_generate_stats_t gs{};
    gs.struct_size = sizeof(gs);
    const Clock::time_point start = Clock::now();
    if (!Check(kestrel_session_generate_tokens(session.get(), prompt.data(), prompt.size(), &g,
                                               &gs))) {
      return 0;
    }
    const double wall = Seconds(start);
    if (rep > 0 && wall > 0) tps.push_back(static_cast<double>(gs.n_generated_tokens) / wall);
  }
  if (tps.empty()) return 0;
  std::sort(tps.begin(), tps.end());
  return tps[tps.size() / 2];
}

int RunEngineBench(const Options& o) {
  const BenchOptions& b = o.bench;
  const uint32_t n = b.n_decode;
  InstallInterruptHandler();
  OpenedModel opened;
  int exit_code = kExitError;
  if (!OpenModel(o, &opened, &exit_code)) return exit_code;
  const ModelPtr& model = opened.model;
  const kestrel_model_info_t& info = opened.info;
  const char* device = info.device != nullptr ? info.device : "";
  const char* name = info.name != nullptr ? info.name : "";

  std::vector<std::vector<int32_t>> prompts(kNumPrompts);
  uint32_t longest = 0;
  for (size_t i = 0; i < kNumPrompts; ++i) {
    if (!Tokenize(model.get(), kPrompts[i], true, false, &prompts[i])) return kExitError;
    longest = std::max(longest, static_cast<uint32_t>(prompts[i].size()));
  }
  const uint32_t ctx = std::max<uint32_t>(info.context_length, longest + n);

  // Shared-prefix workload: each request is the prefix + a prompt without BOS + one distinct
  // token; decide its prefix length before measuring anything, so a bad --prefix-tokens fails fast.
  std::vector<std::vector<int32_t>> suffixes(kSharedRequests);
  uint32_t longest_suffix = 0;
  for (uint32_t i = 0; i < kSharedRequests; ++i) {
    if (!Tokenize(model.get(), kPrompts[i % kNumPrompts], false, false, &suffixes[i])) {
      return kExitError;
    }
    suffixes[i].push_back(static_cast<int32_t>(3 + i % 100));  // make every prompt distinct
    longest_suffix = std::max(longest_suffix, static_cast<uint32_t>(suffixes[i].size()));
  }
  const PrefixChoice prefix_choice = ChoosePrefixTokens(
      b.prefix_tokens, kPreferredPrefixTokens, info.context_length, longest_suffix + kSharedMaxNew);
  if (!prefix_choice.fits) {
    std::fprintf(stderr,
                 "kestrel: invalid value '%u' for --prefix-tokens: with up to %u more prompt tokens "
                 "and %u new tokens per request it exceeds the model's context of %u tokens; the "
                 "largest that fits is %u\n",
                 *b.prefix_tokens, longest_suffix, kSharedMaxNew, info.context_length,
                 prefix_choice.tokens);
    return kExitUsage;
  }
  const uint32_t prefix_tokens = prefix_choice.tokens;

  // The engines' KV block size: --kv-block-size, else the library's default.
  kestrel_engine_options_t defaults;
  kestrel_engine_options_init(&defaults);
  const uint32_t kv_block_size = b.kv_block_size ? *b.kv_block_size : defaults.kv_block_size;
  std::printf("model %s (%s), device %s, threads %u%s, %u new tokens per request, %u reps, "
              "KV block %u tokens\n",
              o.model_path.c_str(), name, device, o.n_threads,
              o.n_threads == 0 ? " (plugin default)" : "", n, b.reps, kv_block_size);
  const double baseline_tps =
      SessionBaselineTokensPerS(model.get(), prompts[0], n, ctx, o.n_threads, o.kv_type, b.reps);
  if (InterruptRequested()) {
    std::fprintf(stderr, "kestrel: interrupted\n");
    return kExitInterrupted;
  }
  bool ok = baseline_tps > 0;
  std::printf("session baseline: %.1f tokens/s\n", baseline_tps);

  JsonWriter w;
  w.BeginObject();
  w.Key("mode");
  w.String("engine");
  w.Key("model");
  w.String(o.model_path);
  w.Key("model_name");
  w.String(name);
  w.Key("device");
  w.String(device);
  w.Key("threads");
  w.Uint(o.n_threads);
  w.Key("n");
  w.Uint(n);
  w.Key("reps");
  w.Uint(b.reps);
  w.Key("context_length");
  w.Uint(ctx);
  w.Key("kv_block_size");
  w.Uint(kv_block_size);
  w.Key("kv_type");
  w.String(o.kv_type == 1 ? "f16" : "f32");
  w.Key("session_baseline");
  w.BeginObject();
  w.Key("tokens_per_s");
  w.Double(baseline_tps);
  w.EndObject();
  w.Key("engine");
  w.BeginArray();
  for (uint32_t c : b.concurrency) {
    std::vector<std::vector<int32_t>> batch;
    for (uint32_t i = 0; i < c; ++i) batch.push_back(prompts[i % prompts.size()]);
    kestrel_engine_options_t eo;
    kestrel_engine_options_init(&eo);
    eo.max_sequences = c;
    eo.context_length = ctx;
    eo.n_threads = o.n_threads;
    if (b.kv_block_size) eo.kv_block_size = *b.kv_block_size;
    eo.kv_type = o.kv_type;
    const EngineRunResult r = MedianEngineRun(model.get(), eo, batch, n, b.reps);
    if (r.interrupted) {
      std::fprintf(stderr, "kestrel: interrupted\n");
      return kExitInterrupted;
    }
    ok &= r.ok;
    const double util =
        r.blocks_total ? static_cast<double>(r.peak_blocks_used) / r.blocks_total : 0;
    const double speedup = baseline_tps > 0 ? r.tokens_per_s / baseline_tps : 0;
    std::printf("concurrency %3u: %9.1f tokens/s (%.2fx baseline), %llu tokens, peak KV blocks "
                "%u/%u (%.1f%%), mean waste %.3f%s\n",
                c, r.tokens_per_s, speedup, static_cast<unsigned long long>(r.generated),
                r.peak_blocks_used, r.blocks_total, 100 * util, r.mean_waste,
                r.ok ? "" : " (failed)");
    w.BeginObject();
    w.Key("concurrency");
    w.Uint(c);
    w.Key("tokens_per_s");
    w.Double(r.tokens_per_s);
    w.Key("generated_tokens");
    w.Uint(r.generated);
    w.Key("kv_blocks_used");
    w.Uint(r.peak_blocks_used);
    w.Key("kv_blocks_total");
    w.Uint(r.blocks_total);
    w.Key("kv_utilisation");
    w.Double(util);
    w.Key("kv_waste_fraction");
    w.Double(r.mean_waste);
    w.Key("speedup_vs_session");
    w.Double(speedup);
    w.Key("preemptions");
    w.Uint(r.preemptions);
    w.Key("kv_window_blocks_used");
    w.Uint(r.window_blocks_peak);
    w.Key("kv_window_blocks_total");
    w.Uint(r.window_blocks_total);
    w.Key("kv_window_bytes");
    w.Uint(r.window_bytes);
    w.Key("ok");
    w.Bool(r.ok);
    w.EndObject();
  }
  w.EndArray();

  if (prefix_tokens > 0) {
    std::vector<int32_t> prefix;
    std::vector<int32_t> filler;
    if (!Tokenize(model.get(), kPrompts[0], true, false, &prefix) ||
        !Tokenize(model.get(), " and then they played in the park with the big red ball", false, false,
                  &filler) ||
        filler.empty()) {
      return kExitError;
    }
    while (prefix.size() < prefix_tokens) prefix.insert(prefix.end(), filler.begin(), filler.end());
    prefix.resize(prefix_tokens);
    std::vector<std::vector<int32_t>> batch;
    uint32_t longest_req = 0;
    uint64_t total_prompt = 0;
    for (uint32_t i = 0; i < kSharedRequests; ++i) {
      std::vector<int32_t> p = prefix;
      p.insert(p.end(), suffixes[i].begin(), suffixes[i].end());
      longest_req = std::max(longest_req, static_cast<uint32_t>(p.size()));
      total_prompt += p.size();
      batch.push_back(std::move(p));
    }
    kestrel_engine_options_t eo;
    kestrel_engine_options_init(&eo);
    eo.max_sequences = kSharedRequests;
    eo.context_length = longest_req + kSharedMaxNew;
    eo.n_threads = o.n_threads;
    if (b.kv_block_size) eo.kv_block_size = *b.kv_block_size;
    eo.kv_type = o.kv_type;
    const EngineRunResult with = MedianEngineRun(model.get(), eo, batch, kSharedMaxNew, b.reps);
    EngineRunResult without;
    if (with.ok) {
      eo.prefix_cache = false;
      without = MedianEngineRun(model.get(), eo, batch, kSharedMaxNew, b.reps);
    }
    if (with.interrupted || without.interrupted) {
      std::fprintf(stderr, "kestrel: interrupted\n");
      return kExitInterrupted;
    }
    ok &= with.ok && without.ok;
    std::printf("shared prefix: %u requests x %u-token prefix: %llu prompt tokens computed with "
                "the prefix cache, %llu without (%llu prompt tokens in all); %.1f vs %.1f "
                "tokens/s\n",
                kSharedRequests, prefix_tokens,
                static_cast<unsigned long long>(with.prefill_computed),
                static_cast<unsigned long long>(without.prefill_computed),
                static_cast<unsigned long long>(total_prompt), with.tokens_per_s,
                without.tokens_per_s);
    w.Key("shared_prefix");
    w.BeginObject();
    w.Key("requests");
    w.Uint(kSharedRequests);
    w.Key("prefix_tokens");
    w.Uint(prefix_tokens);
    w.Key("new_tokens");
    w.Uint(kSharedMaxNew);
    w.Key("context_length");
    w.Uint(eo.context_length);
    w.Key("prompt_tokens");
    w.Uint(total_prompt);
    w.Key("prefill_tokens_computed");
    w.Uint(with.prefill_computed);
    w.Key("prefill_tokens_reused");
    w.Uint(with.prefill_reused);
    w.Key("prefill_tokens_without_cache");
    w.Uint(without.prefill_computed);
    w.Key("tokens_per_s");
    w.Double(with.tokens_per_s);
    w.Key("tokens_per_s_without_cache");
    w.Double(without.tokens_per_s);
    w.EndObject();
  } else {
    std::printf("shared prefix: skipped (%s)\n",
                b.prefix_tokens ? "--prefix-tokens 0" : "the model's context is too short");
  }
  w.Key("ok");
  w.Bool(ok);
  w.Key("peak_rss_bytes");
  w.Uint(PeakRssBytes());
  w.EndObject();
  if (o.json) std::printf("%s\n", w.str().c_str());
  return ok ? kExitOk : kExitError;
}

}  // namespace kestrel::cli
