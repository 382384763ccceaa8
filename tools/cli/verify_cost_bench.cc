// `kestrel bench --verify-cost N` (verify_cost_bench.h). One session holds a synthetic context of
// -p tokens (default 128); each repetition runs a plain step (kestrel_session_decode of 1 token)
// and a verify step (kestrel_session_decode of N tokens), each followed by
// kestrel_session_truncate back to the context, in alternating order (so drift in the machine's
// load hits both), --warmup pairs first. Reported: the medians of both step times and the median
// of the per-pair ratios (verify_cost_ratio), the figure the speculative controller weighs
// (docs/SPECULATIVE.md). A real verify step also computes the logits of all N positions; the
// public decode call computes the last one only, so the ratio leaves out N - 1 rows of the output
// projection (about 6 % of a TinyLlama step's weights, streamed once either way).
#include "verify_cost_bench.h"

#include <chrono>
#include <cstdio>
#include <vector>

#include "api_util.h"
#include "bench_util.h"
#include "interrupt.h"
#include "json_writer.h"
#include "kestrel/kestrel.h"

namespace kestrel::cli {
namespace {

using Clock = std::chrono::steady_clock;

// Decodes `tokens` after the context and truncates back to `context`; the decode's time in ms,
// or a negative value after printing the error.
double TimedStep(kestrel_session_t* session, const std::vector<int32_t>& tokens, size_t context) {
  const Clock::time_point start = Clock::now();
  StatusPtr status(kestrel_session_decode(session, tokens.data(), tokens.size()));
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  if (!status) status.reset(kestrel_session_truncate(session, context));
  if (status) {
    PrintStatusError(status.get());
    return -1.0;
  }
  return ms;
}

void PrintJson(const Options& o, const kestrel_model_info_t& info, const Summary& plain,
               const Summary& verify, const Summary& ratio) {
  JsonWriter w;
  w.BeginObject();
  w.Key("mode");
  w.String("verify_cost");
  w.Key("model");
  w.String(o.model_path);
  w.Key("device");
  w.String(info.device != nullptr ? info.device : "");
  w.Key("threads");
  w.Uint(o.n_threads);
  w.Key("context_tokens");
  w.Uint(o.bench.n_prompt);
  w.Key("verify_tokens");
  w.Uint(o.bench.verify_cost);
  w.Key("reps");
  w.Uint(o.bench.reps);
  w.Key("plain_step_ms");
  w.Double(plain.median);
  w.Key("verify_step_ms");
  w.Double(verify.median);
  w.Key("verify_cost_ratio");
  w.Double(ratio.median);
  w.Key("verify_cost_ratio_min");
  w.Double(ratio.min);
  w.Key("verify_cost_ratio_max");
  w.Double(ratio.max);
  w.EndObject();
  std::printf("%s\n", w.str().c_str());
}

}  // namespace

int RunVerifyCostBench(const Options& o) {
  const BenchOptions& b = o.bench;
  InstallInterruptHandler();
  RuntimePtr runtime = CreateRuntime(o.verbosity);
  if (!runtime) return kExitError;
  int exit_code = kExitError;
  ModelPtr model = LoadModel(runtime.get(), LoadOptionsFrom(o), &exit_code);
  if (!model) return exit_code;
  kestrel_model_info_t info;
  if (!GetModelInfo(model.get(), &info)) return kExitError;

  kestrel_session_options_t session_options;
  kestrel_session_options_init(&session_options);
  session_options.context_length = b.n_prompt + b.verify_cost;
  session_options.n_threads = o.n_threads;
  session_options.kv_type = o.kv_type;
  kestrel_session_t* raw_session = nullptr;
  StatusPtr status(kestrel_session_create(model.get(), &session_options, &raw_session));
  if (status) {
    PrintStatusError(status.get());
    return kExitError;
  }
  SessionPtr session(raw_session);
  const int32_t bos = info.add_bos ? info.bos_id : -1;
  const std::vector<int32_t> context = SyntheticPromptIds(b.n_prompt, info.vocab_size, bos);
  // The step's tokens continue the synthetic id cycle (any ids do: the speed is what counts).
  std::vector<int32_t> all = SyntheticPromptIds(b.n_prompt + b.verify_cost, info.vocab_size, bos);
  const std::vector<int32_t> plain_tokens(all.begin() + b.n_prompt, all.begin() + b.n_prompt + 1);
  const std::vector<int32_t> verify_tokens(all.begin() + b.n_prompt, all.end());
  status.reset(kestrel_session_decode(session.get(), context.data(), context.size()));
  if (status) {
    PrintStatusError(status.get());
    return kExitError;
  }
  std::vector<double> plain_ms, verify_ms, ratios;
  for (uint32_t run = 0; run < b.warmup + b.reps; ++run) {
    const bool verify_first = run % 2 == 1;
    double p = 0, v = 0;
    for (int i = 0; i < 2; ++i) {
      const bool verify = (i == 0) == verify_first;
      const double ms = TimedStep(session.get(), verify ? verify_tokens : plain_tokens, context.size());
      if (ms < 0) return kExitError;
      (verify ? v : p) = ms;
    }
    if (InterruptRequested()) {
      std::fprintf(stderr, "kestrel: interrupted\n");
      return kExitInterrupted;
    }
    const bool warmup = run < b.warmup;
    std::fprintf(stderr, "kestrel: verify-cost %s %u: plain %.2f ms, %u tokens %.2f ms (%.2fx)\n",
                 warmup ? "warm-up" : "rep", warmup ? run + 1 : run - b.warmup + 1, p, b.verify_cost,
                 v, v / p);
    if (warmup) continue;
    plain_ms.push_back(p);
    verify_ms.push_back(v);
    ratios.push_back(v / p);
  }
  const Summary plain = Summarize(plain_ms), verify = Summarize(verify_ms), ratio = Summarize(ratios);
  std::printf("model    %s, device %s, threads %u, context %u tokens\n", o.model_path.c_str(),
              info.device != nullptr ? info.device : "", o.n_threads, b.n_prompt);
  std::printf("plain step (1 token)   %10.2f ms median\n", plain.median);
  std::printf("verify step (%u tokens) %10.2f ms median\n", b.verify_cost, verify.median);
  std::printf("verify / plain         %10.2fx median of %u alternated pairs (min %.2f, max %.2f)\n",
              ratio.median, b.reps, ratio.min, ratio.max);
  if (o.json) PrintJson(o, info, plain, verify, ratio);
  return kExitOk;
}

}  // namespace kestrel::cli
