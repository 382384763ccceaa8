// `kestrel bench --spec METHOD`: the same prompt decoded greedily with and without speculative
// decoding in one process, runs alternated (plain, speculative, plain, ...) so both see the same
// machine state; medians over --reps runs after --warmup unmeasured pairs.
//
// stdout: a short table, then (last line) one JSON object with exactly spec_method,
// decode_tokens_per_s (speculative, median), plain_decode_tokens_per_s (median), speedup (their
// ratio), mean_accepted (accepted draft tokens per verify step, over the measured speculative
// runs) and identical (every speculative run produced the plain run's token ids). Scripts depend
// on these names.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "api_util.h"
#include "bench_util.h"
#include "commands.h"
#include "interrupt.h"
#include "json_writer.h"
#include "kestrel/kestrel.h"
#include "spec_util.h"

namespace kestrel::cli {
namespace {

struct RunOut {
  std::vector<int32_t> tokens;
  double decode_tps = 0;
  kestrel_speculative_stats_t spec{};
};

bool Collect(void* user, int32_t token, const char*, size_t) {
  if (token != KESTREL_TOKEN_NONE) static_cast<std::vector<int32_t>*>(user)->push_back(token);
  return true;
}

bool RunOnce(kestrel_session_t* s, const std::vector<int32_t>& prompt, uint32_t n, RunOut* out) {
  out->tokens.clear();
  kestrel_generate_options_t g;
  kestrel_generate_options_init(&g);
  g.max_new_tokens = n;
  g.on_token = Collect;
  g.user_data = &out->tokens;
  kestrel_generate_stats_t st{};
  st.struct_size = sizeof(st);
  StatusPtr status(kestrel_session_generate_tokens(s, prompt.data(), prompt.size(), &g, &st));
  if (status) {
    PrintStatusError(status.get());
    return false;
  }
  out->decode_tps = st.decode_tokens_per_s;
  out->spec.struct_size = sizeof(out->spec);
  status.reset(kestrel_session_speculative_stats(s, &out->spec));
  if (status) {
    PrintStatusError(status.get());
    return false;
  }
  return true;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

}  // namespace

int RunSpecBench(const Options& o) {
  InstallInterruptHandler();
  RuntimePtr runtime = CreateRuntime(o.verbosity);
  if (!runtime) return kExitError;
  int exit_code = kExitError;
  ModelPtr model = LoadModel(runtime.get(), LoadOptions{o.model_path, o.device, o.use_mmap},
                             &exit_code);
  if (!model) return exit_code;
  kestrel_model_info_t info;
  if (!GetModelInfo(model.get(), &info)) return kExitError;

  std::string text;
  if (o.prompt) {
    text = *o.prompt;
  } else {
    std::ifstream f(o.prompt_file, std::ios::binary);
    if (!f) {
      std::fprintf(stderr, "kestrel: cannot read --prompt-file '%s'\n", o.prompt_file.c_str());
      return kExitError;
    }
    std::stringstream ss;
    ss << f.rdbuf();
    text = ss.str();
  }
  std::vector<int32_t> prompt;
  if (!TokenizeText(model.get(), text, o.special, &prompt)) return kExitError;
  if (prompt.empty()) {
    std::fprintf(stderr, "kestrel: the prompt is empty\n");
    return kExitError;
  }

  ModelPtr draft;
  kestrel_speculative_options_t spec;
  if (!MakeSpecOptions(o, runtime.get(), &draft, &spec, &exit_code)) return exit_code;
  kestrel_sampler_options_t sampler;
  kestrel_sampler_options_init(&sampler);
  sampler.temperature = 0.0f;  // greedy: both runs must give the same ids
  kestrel_session_options_t so;
  kestrel_session_options_init(&so);
  so.sampler = &sampler;
  so.n_threads = o.n_threads;
  so.kv_type = o.kv_type;
  const uint64_t want = prompt.size() + uint64_t{o.bench.n_decode} + 1;
  so.context_length = o.context_length ? o.context_length
                                       : static_cast<uint32_t>(std::min<uint64_t>(want, info.context_length));
  kestrel_session_t* raw = nullptr;
  StatusPtr status(kestrel_session_create(model.get(), &so, &raw));
  if (status) {
    PrintStatusError(status.get());
    return kExitError;
  }
  SessionPtr plain(raw);
  so.speculative = &spec;
  status.reset(kestrel_session_create(model.get(), &so, &raw));
  if (status) {
    PrintStatusError(status.get());
    return kExitError;
  }
  SessionPtr specd(raw);

  std::vector<double> plain_tps, spec_tps;
  double accepted = 0, steps = 0;
  bool identical = true;
  const uint32_t total = o.bench.warmup + o.bench.reps;
  for (uint32_t rep = 0; rep < total; ++rep) {
    if (InterruptRequested()) return kExitInterrupted;
    RunOut a, b;
    if (!RunOnce(plain.get(), prompt, o.bench.n_decode, &a)) return kExitError;
    if (!RunOnce(specd.get(), prompt, o.bench.n_decode, &b)) return kExitError;
    identical &= a.tokens == b.tokens;
    const bool measured = rep >= o.bench.warmup;
    std::fprintf(stderr, "kestrel: %s rep %u: plain %.1f tok/s, %s %.1f tok/s (%zu tokens)\n",
                 measured ? "measured" : "warmup", rep, a.decode_tps, o.spec.c_str(),
                 b.decode_tps, b.tokens.size());
    if (!measured) continue;
    plain_tps.push_back(a.decode_tps);
    spec_tps.push_back(b.decode_tps);
    accepted += static_cast<double>(b.spec.accepted);
    steps += static_cast<double>(b.spec.steps);
    if (rep + 1 == total && o.verbosity >= 0) PrintSpecStats(b.spec);
  }
  const double p = Median(plain_tps), s = Median(spec_tps);
  const double speedup = p > 0 ? s / p : 0.0;
  const double mean_accepted = steps > 0 ? accepted / steps : 0.0;
  std::printf("model       %s (%s)\n", o.model_path.c_str(), info.device ? info.device : "");
  std::printf("prompt      %zu tokens, %u generated, %u reps (median)\n", prompt.size(),
              o.bench.n_decode, o.bench.reps);
  std::printf("plain       %.1f tok/s\n", p);
  std::printf("%-11s %.1f tok/s  speedup %.3fx  mean accepted %.2f  identical %s\n",
              o.spec.c_str(), s, speedup, mean_accepted, identical ? "yes" : "NO");
  JsonWriter w;
  w.BeginObject();
  w.Key("spec_method");
  w.String(o.spec);
  w.Key("decode_tokens_per_s");
  w.Double(s);
  w.Key("plain_decode_tokens_per_s");
  w.Double(p);
  w.Key("speedup");
  w.Double(speedup);
  w.Key("mean_accepted");
  w.Double(mean_accepted);
  w.Key("identical");
  w.Bool(identical);
  w.EndObject();
  std::printf("%s\n", w.str().c_str());
  return kExitOk;  // `identical` reports a mismatch; the measurement itself succeeded
}

}  // namespace kestrel::cli
