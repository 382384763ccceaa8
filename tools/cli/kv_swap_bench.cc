// `kestrel bench --kv-swap`: how fast the serving engine resumes a preempted request of -p prompt
// tokens when its KV was swapped to host memory (policy ALWAYS) against when it is recomputed
// (policy NEVER). Per run: one engine whose KV pool holds request A (-p synthetic prompt tokens,
// -n new tokens) plus one block, prefix cache off (so recompute really recomputes); A is
// prefilled and decodes its first token, then a higher-priority request B arrives whose growth
// the pool cannot hold, so the engine preempts A; when B is done, the time from there to A's next
// token is the resume time (swap: copy back + one decode step; recompute: the prefill of all of
// A's tokens again + that step). Runs alternate swap, recompute, swap, ... (W warm-up pairs
// first); the figures are medians of R pairs, so both ways see the same machine load. Greedy with
// EOS ignored, so A's tokens must be the same both ways (`identical`).
//
// Last stdout line (--json): mode, model, device, prompt_tokens, reps, resume_swap_ms,
// resume_recompute_ms (medians, with _all), swap_speedup (recompute / swap), kv_bytes_swapped,
// kv_swap_ms (copy time of one swap out + in), swap_bytes_per_s, kv_swap_budget_bytes,
// preempted, identical, ok.
#include "kv_swap_bench.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <vector>

#include "api_util.h"
#include "bench_util.h"
#include "interrupt.h"
#include "json_writer.h"
#include "kestrel/kestrel.h"

namespace kestrel::cli {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kBlock = 16;

struct EngineDeleter {
  void operator()(kestrel_engine_t* e) const { kestrel_engine_destroy(e); }
};
using EnginePtr = std::unique_ptr<kestrel_engine_t, EngineDeleter>;

bool Check(kestrel_status_t* raw) {
  StatusPtr status(raw);
  if (!status) return true;
  PrintStatusError(status.get());
  return false;
}

struct ResumeRun {
  bool ok = false;
  double resume_ms = 0;
  uint32_t preemptions = 0;  // of request A
  std::vector<int32_t> tokens;  // A's
  kestrel_engine_stats_t stats{};
};

size_t TokenCount(kestrel_engine_t* e, kestrel_request_id_t id) {
  size_t n = 0;
  return Check(kestrel_engine_request_tokens(e, id, 0, nullptr, 0, &n)) ? n : 0;
}

bool Done(kestrel_engine_t* e, kestrel_request_id_t id) {
  kestrel_engine_result_t r{};
  r.struct_size = sizeof(r);
  if (!Check(kestrel_engine_request_result(e, id, 0, &r))) return true;
  return r.state != KESTREL_REQUEST_WAITING && r.state != KESTREL_REQUEST_RUNNING;
}

struct Setup {
  kestrel_model_t* model = nullptr;
  std::vector<int32_t> prompt_a, prompt_b;
  uint32_t new_a = 0, new_b = 0;
  uint32_t ctx = 0, n_threads = 0, kv_type = 0;
  uint64_t pool_bytes = 0;
  uint64_t swap_bytes = 0;  // 0: the model's memory plan
};

ResumeRun RunOnce(const Setup& s, uint32_t policy) {
  ResumeRun run;
  kestrel_engine_options_t eo;
  kestrel_engine_options_init(&eo);
  eo.kv_cache_bytes = s.pool_bytes;
  eo.kv_block_size = kBlock;
  eo.prefix_cache = false;
  eo.max_sequences = 2;
  eo.context_length = s.ctx;
  eo.n_threads = s.n_threads;
  eo.kv_type = s.kv_type;
  eo.kv_swap_bytes = s.swap_bytes;
  eo.kv_swap_policy = policy;
  kestrel_engine_t* raw = nullptr;
  if (!Check(kestrel_engine_create(s.model, &eo, &raw))) return run;
  EnginePtr e(raw);
  kestrel_sampler_options_t so;
  kestrel_sampler_options_init(&so);
  so.temperature = 0;
  so.ignore_eos = 1;
  auto submit = [&](const std::vector<int32_t>& prompt, uint32_t max_new, int32_t priority,
                    kestrel_request_id_t* id) {
    kestrel_engine_request_options_t ro;
    kestrel_engine_request_options_init(&ro);
    ro.max_new_tokens = max_new;
    ro.sampler = &so;
    ro.priority = priority;
    return Check(kestrel_engine_submit_tokens(e.get(), prompt.data(), prompt.size(), &ro, id));
  };
  auto step = [&]() {
    uint32_t active = 0;
    return !InterruptRequested() && Check(kestrel_engine_step(e.get(), &active));
  };
  kestrel_request_id_t a = 0, b = 0;
  if (!submit(s.prompt_a, s.new_a, 0, &a)) return run;
  while (TokenCount(e.get(), a) == 0) {
    if (!step()) return run;
  }
  if (!submit(s.prompt_b, s.new_b, 1, &b)) return run;
  while (!Done(e.get(), b)) {
    if (!step()) return run;
  }
  const size_t before = TokenCount(e.get(), a);
  const Clock::time_point t0 = Clock::now();
  while (TokenCount(e.get(), a) == before && !Done(e.get(), a)) {
    if (!step()) return run;
  }
  run.resume_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  while (!Done(e.get(), a)) {
    if (!step()) return run;
  }
  kestrel_engine_result_t r{};
  r.struct_size = sizeof(r);
  if (!Check(kestrel_engine_request_result(e.get(), a, 0, &r))) return run;
  run.preemptions = r.n_preemptions;
  run.tokens.resize(TokenCount(e.get(), a));
  size_t n = 0;
  if (!Check(kestrel_engine_request_tokens(e.get(), a, 0, run.tokens.data(), run.tokens.size(), &n))) {
    return run;
  }
  run.stats.struct_size = sizeof(run.stats);
  run.ok = Check(kestrel_engine_get_stats(e.get(), &run.stats));
  return run;
}

}  // namespace

int RunKvSwapBench(const Options& o) {
  const BenchOptions& bo = o.bench;
  InstallInterruptHandler();
  OpenedModel opened;
  int exit_code = kExitError;
  if (!OpenModel(o, &opened, &exit_code)) return exit_code;
  const kestrel_model_info_t& info = opened.info;
  const char* device = info.device != nullptr ? info.device : "";
  Setup s;
  s.model = opened.model.get();
  const int32_t bos = info.add_bos ? info.bos_id : -1;
  s.prompt_a = SyntheticPromptIds(bo.n_prompt, info.vocab_size, bos);
  s.prompt_b = SyntheticPromptIds(kBlock, info.vocab_size, bos);
  s.new_a = std::max<uint32_t>(bo.n_decode, 2);
  // B outgrows whatever A leaves free (at most ceil(new_a / block) + 2 blocks), so A is preempted.
  s.new_b = ((s.new_a + kBlock - 1) / kBlock + 3) * kBlock;
  const uint32_t a_tokens = bo.n_prompt + s.new_a;
  s.ctx = o.context_length != 0 ? o.context_length : std::max(a_tokens, kBlock + s.new_b);
  s.n_threads = o.n_threads;
  s.kv_type = o.kv_type;
  const uint64_t elem = o.kv_type == KESTREL_KV_F16 ? 2 : 4;
  const uint64_t token_bytes = uint64_t{info.n_layers} * 2 * info.n_kv_heads * info.head_dim * elem;
  const uint32_t pool_blocks = (a_tokens + kBlock - 1) / kBlock + 1;
  s.pool_bytes = uint64_t{pool_blocks} * kBlock * token_bytes;
  // Without --mem, room for A's whole KV; with it, the plan's host_swap_bytes (0 here).
  s.swap_bytes = o.mem.empty() ? 2 * uint64_t{a_tokens} * token_bytes : 0;
  if (bo.n_prompt < 4 * kBlock || kBlock + s.new_b > s.ctx || a_tokens > s.ctx) {
    std::fprintf(stderr,
                 "kestrel: error: INVALID_ARGUMENT: --kv-swap needs -p >= %u and a context (--ctx "
                 "%u) holding -p + -n = %u tokens and the preempting request's %u\n",
                 4 * kBlock, s.ctx, a_tokens, kBlock + s.new_b);
    return kExitUsage;
  }
  std::printf("model %s, device %s, request of %u prompt + %u new tokens preempted and resumed, "
              "pool %u blocks of %u tokens, %u reps after %u warm-up (alternated)\n",
              o.model_path.c_str(), device, bo.n_prompt, s.new_a, pool_blocks, kBlock, bo.reps,
              bo.warmup);
  std::vector<double> swap_ms, recompute_ms;
  ResumeRun last_swap, last_recompute;
  bool ok = true, identical = true, preempted = true;
  for (uint32_t i = 0; i < bo.warmup + bo.reps && ok; ++i) {
    for (uint32_t policy : {KESTREL_KV_SWAP_ALWAYS, KESTREL_KV_SWAP_NEVER}) {
      ResumeRun r = RunOnce(s, policy);
      if (!r.ok) {
        ok = false;
        break;
      }
      const bool swap = policy == KESTREL_KV_SWAP_ALWAYS;
      preempted = preempted && r.preemptions >= 1 && (!swap || r.stats.kv_swap_ins >= 1);
      std::fprintf(stderr, "%s %s: resume %.2f ms, preemptions %u, swapped in %llu bytes\n",
                   i < bo.warmup ? "warm-up" : "rep", swap ? "swap" : "recompute", r.resume_ms,
                   r.preemptions, static_cast<unsigned long long>(r.stats.kv_swap_in_bytes));
      if (i >= bo.warmup) (swap ? swap_ms : recompute_ms).push_back(r.resume_ms);
      ResumeRun& last = swap ? last_swap : last_recompute;
      last = std::move(r);
    }
    identical = identical && ok && last_swap.tokens == last_recompute.tokens;
  }
  if (InterruptRequested()) {
    std::fprintf(stderr, "kestrel: interrupted\n");
    return kExitInterrupted;
  }
  if (!ok) return kExitError;
  const Summary sw = Summarize(swap_ms), re = Summarize(recompute_ms);
  const double speedup = sw.median > 0 ? re.median / sw.median : 0;
  const kestrel_engine_stats_t& st = last_swap.stats;
  const double bytes_per_s = st.kv_swap_ms > 0
      ? static_cast<double>(st.kv_swap_out_bytes + st.kv_swap_in_bytes) / (st.kv_swap_ms / 1000.0)
      : 0;
  std::printf("resume by swap:      %.2f ms (median; min %.2f, max %.2f)\n", sw.median, sw.min, sw.max);
  std::printf("resume by recompute: %.2f ms (median; min %.2f, max %.2f)\n", re.median, re.min, re.max);
  std::printf("swap speedup: %.1fx; %s KV swapped each way, copies %.2f ms (%s/s); tokens %s\n",
              speedup, FormatBytes(st.kv_swap_in_bytes).c_str(), st.kv_swap_ms,
              FormatBytes(static_cast<uint64_t>(bytes_per_s)).c_str(),
              identical ? "identical" : "DIFFER");
  if (!preempted) std::printf("warning: a run did not preempt (or swap) as planned\n");
  if (o.json) {
    JsonWriter w;
    w.BeginObject();
    w.Key("mode");
    w.String("kv_swap");
    w.Key("model");
    w.String(o.model_path);
    w.Key("device");
    w.String(device);
    w.Key("prompt_tokens");
    w.Uint(bo.n_prompt);
    w.Key("new_tokens");
    w.Uint(s.new_a);
    w.Key("reps");
    w.Uint(bo.reps);
    w.Key("resume_swap_ms");
    w.Double(sw.median);
    w.Key("resume_swap_ms_all");
    w.DoubleArray(swap_ms);
    w.Key("resume_recompute_ms");
    w.Double(re.median);
    w.Key("resume_recompute_ms_all");
    w.DoubleArray(recompute_ms);
    w.Key("swap_speedup");
    w.Double(speedup);
    w.Key("kv_bytes_swapped");
    w.Uint(st.kv_swap_in_bytes);
    w.Key("kv_swap_ms");
    w.Double(st.kv_swap_ms);
    w.Key("swap_bytes_per_s");
    w.Double(bytes_per_s);
    w.Key("kv_swap_budget_bytes");
    w.Uint(st.kv_swap_budget_bytes);
    w.Key("kv_swap_peak_bytes");
    w.Uint(st.kv_swap_peak_bytes);
    w.Key("preempted");
    w.Bool(preempted);
    w.Key("identical");
    w.Bool(identical);
    w.Key("ok");
    w.Bool(preempted && identical);
    w.EndObject();
    std::printf("%s\n", w.str().c_str());
  }
  return preempted ? 0 : kExitError;
}

}  // namespace kestrel::cli
