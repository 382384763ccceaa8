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
#include <chrono>
#include <memory>
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

// One engine run: every prompt submitted at once (greedy), steps on this thread until all are
// done. Generated tokens / wall time; the ids per request; accepted/steps summed.
struct EngineOut {
  double tps = 0;
  std::vector<std::vector<int32_t>> ids;
  double accepted = 0, steps = 0;
};

bool RunEngine(kestrel_model_t* model, const Options& o, uint32_t ctx,
               const std::vector<std::vector<int32_t>>& prompts,
               const kestrel_speculative_options_t* spec, EngineOut* out) {
  kestrel_engine_options_t eo;
  kestrel_engine_options_init(&eo);
  eo.context_length = ctx;
  eo.n_threads = o.n_threads;
  eo.kv_type = o.kv_type;
  eo.max_sequences = std::max<uint32_t>(eo.max_sequences, static_cast<uint32_t>(prompts.size()));
  kestrel_engine_t* raw = nullptr;
  StatusPtr st(kestrel_engine_create(model, &eo, &raw));
  if (st) {
    PrintStatusError(st.get());
    return false;
  }
  std::unique_ptr<kestrel_engine_t, void (*)(kestrel_engine_t*)> engine(raw, kestrel_engine_destroy);
  kestrel_sampler_options_t so;
  kestrel_sampler_options_init(&so);
  so.temperature = 0.0f;
  std::vector<kestrel_request_id_t> ids(prompts.size());
  const auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < prompts.size(); ++i) {
    kestrel_engine_request_options_t ro;
    kestrel_engine_request_options_init(&ro);
    ro.max_new_tokens = o.bench.n_decode;
    ro.sampler = &so;
    ro.speculative = spec;
    st.reset(kestrel_engine_submit_tokens(engine.get(), prompts[i].data(), prompts[i].size(), &ro, &ids[i]));
    if (st) {
      PrintStatusError(st.get());
      return false;
    }
  }
  st.reset(kestrel_engine_wait(engine.get(), KESTREL_ENGINE_ALL_REQUESTS, -1));
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  out->ids.assign(prompts.size(), {});
  size_t generated = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    size_t n = 0;
    st.reset(kestrel_engine_request_tokens(engine.get(), ids[i], 0, nullptr, 0, &n));
    out->ids[i].resize(n);
    st.reset(kestrel_engine_request_tokens(engine.get(), ids[i], 0, out->ids[i].data(), n, &n));
    generated += n;
    kestrel_speculative_stats_t ss{};
    ss.struct_size = sizeof(ss);
    st.reset(kestrel_engine_request_speculative_stats(engine.get(), ids[i], &ss));
    out->accepted += static_cast<double>(ss.accepted);
    out->steps += static_cast<double>(ss.steps);
  }
  out->tps = wall > 0 ? generated / wall : 0;
  return true;
}

// The measured runs of one method in the session bench.
struct MethodRuns {
  std::vector<double> tps;
  double accepted = 0, steps = 0;
  bool identical = true;
  double MeanAccepted() const { return steps > 0 ? accepted / steps : 0.0; }
};

void WriteMethodFields(JsonWriter* w, const std::string& name, const MethodRuns& r, double plain) {
  const double s = Median(r.tps);
  w->Key("spec_method");
  w->String(name);
  w->Key("decode_tokens_per_s");
  w->Double(s);
  w->Key("plain_decode_tokens_per_s");
  w->Double(plain);
  w->Key("speedup");
  w->Double(plain > 0 ? s / plain : 0.0);
  w->Key("mean_accepted");
  w->Double(r.MeanAccepted());
  w->Key("identical");
  w->Bool(r.identical);
}

}  // namespace

// `bench --spec METHOD --engine [--concurrency C,...]` (the first method of a list): per concurrency, C greedy requests (the
// prompt with one distinct token appended each) through an engine without and with speculation,
// alternated, medians over --reps. JSON (last line): the same six fields as the session bench,
// for the largest concurrency, plus "concurrency" and a "runs" array with every concurrency.
int RunSpecEngineBench(const Options& o, kestrel_model_t* model, const kestrel_model_info_t& info,
                       const std::vector<int32_t>& prompt, const kestrel_speculative_options_t& spec) {
  struct Row {
    uint32_t c;
    double s, p, acc;
  };
  std::vector<Row> rows;
  const std::string name = SpecMethodList(o.spec)[0];  // the engine bench measures one method
  bool identical = true;
  double last_s = 0, last_p = 0, last_acc = 0;
  uint32_t last_c = 0;
  for (uint32_t c : o.bench.concurrency) {
    std::vector<std::vector<int32_t>> prompts(c, prompt);
    for (uint32_t i = 0; i < c; ++i) prompts[i].push_back(static_cast<int32_t>(3 + i % 200));
    const uint32_t ctx = static_cast<uint32_t>(
        std::min<uint64_t>(prompt.size() + 1 + o.bench.n_decode + 1, info.context_length));
    std::vector<double> s_tps, p_tps;
    double accepted = 0, steps = 0;
    for (uint32_t rep = 0; rep < o.bench.warmup + o.bench.reps; ++rep) {
      if (InterruptRequested()) return kExitInterrupted;
      EngineOut a, b;
      if (!RunEngine(model, o, ctx, prompts, nullptr, &a)) return kExitError;
      if (!RunEngine(model, o, ctx, prompts, &spec, &b)) return kExitError;
      identical &= a.ids == b.ids;
      std::fprintf(stderr, "kestrel: concurrency %u rep %u: plain %.1f tok/s, %s %.1f tok/s\n", c, rep,
                   a.tps, name.c_str(), b.tps);
      if (rep < o.bench.warmup) continue;
      p_tps.push_back(a.tps);
      s_tps.push_back(b.tps);
      accepted += b.accepted;
      steps += b.steps;
    }
    last_c = c;
    last_p = Median(p_tps);
    last_s = Median(s_tps);
    last_acc = steps > 0 ? accepted / steps : 0;
    std::printf("concurrency %-4u plain %.1f tok/s  %s %.1f tok/s  speedup %.3fx  mean accepted %.2f\n",
                c, last_p, name.c_str(), last_s, last_p > 0 ? last_s / last_p : 0.0, last_acc);
    rows.push_back({c, last_s, last_p, last_acc});
  }
  JsonWriter w;
  w.BeginObject();
  w.Key("spec_method");
  w.String(name);
  w.Key("decode_tokens_per_s");
  w.Double(last_s);
  w.Key("plain_decode_tokens_per_s");
  w.Double(last_p);
  w.Key("speedup");
  w.Double(last_p > 0 ? last_s / last_p : 0.0);
  w.Key("mean_accepted");
  w.Double(last_acc);
  w.Key("identical");
  w.Bool(identical);
  w.Key("concurrency");
  w.Uint(last_c);
  w.Key("runs");
  w.BeginArray();
  for (const Row& r : rows) {
    w.BeginObject();
    w.Key("concurrency");
    w.Uint(r.c);
    w.Key("decode_tokens_per_s");
    w.Double(r.s);
    w.Key("plain_decode_tokens_per_s");
    w.Double(r.p);
    w.Key("speedup");
    w.Double(r.p > 0 ? r.s / r.p : 0.0);
    w.Key("mean_accepted");
    w.Double(r.acc);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  std::printf("%s\n", w.str().c_str());
  return kExitOk;
}

int RunSpecBench(const Options& o) {
  InstallInterruptHandler();
  RuntimePtr runtime = CreateRuntime(o.verbosity);
  if (!runtime) return kExitError;
  int exit_code = kExitError;
  ModelPtr model = LoadModel(runtime.get(), LoadOptionsFrom(o),
                             &exit_code);
  if (!model) return exit_code;
  kestrel_model_info_t info;
  if (!GetModelInfo(model.get(), &info)) return kExitError;

  std::string text;
  if (o.prompt) {
    text = *o.prompt;
  } else {
    std::ifstream f(o.spec_prompt_file, std::ios::binary);
    if (!f) {
      std::fprintf(stderr, "kestrel: cannot read --prompt-file '%s'\n", o.spec_prompt_file.c_str());
      return kExitError;
    }
    std::stringstream ss;
    ss << f.rdbuf();
    text = ss.str();
  }
  std::vector<int32_t> prompt;
  if (!Tokenize(model.get(), text, /*add_special=*/true, o.special, &prompt)) return kExitError;
  if (prompt.empty()) {
    std::fprintf(stderr, "kestrel: the prompt is empty\n");
    return kExitError;
  }

  ModelPtr draft;
  kestrel_speculative_options_t spec;
  if (!MakeSpecOptions(o, runtime.get(), &draft, &spec, &exit_code)) return exit_code;
  if (o.bench.engine) return RunSpecEngineBench(o, model.get(), info, prompt, spec);
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
  // One session per method of the --spec list, all measured in the same alternation.
  const std::vector<std::string> names = SpecMethodList(o.spec);
  std::vector<kestrel_speculative_options_t> specs(names.size(), spec);
  std::vector<SessionPtr> specd;
  for (size_t m = 0; m < names.size(); ++m) {
    specs[m].method = SpecMethodFromName(names[m]);
    so.speculative = &specs[m];
    status.reset(kestrel_session_create(model.get(), &so, &raw));
    if (status) {
      PrintStatusError(status.get());
      return kExitError;
    }
    specd.emplace_back(raw);
  }

  std::vector<double> plain_tps;
  std::vector<MethodRuns> runs(names.size());
  const uint32_t total = o.bench.warmup + o.bench.reps;
  for (uint32_t rep = 0; rep < total; ++rep) {
    if (InterruptRequested()) return kExitInterrupted;
    const bool measured = rep >= o.bench.warmup;
    RunOut a;
    if (!RunOnce(plain.get(), prompt, o.bench.n_decode, &a)) return kExitError;
    if (measured) plain_tps.push_back(a.decode_tps);
    for (size_t m = 0; m < names.size(); ++m) {
      RunOut b;
      if (!RunOnce(specd[m].get(), prompt, o.bench.n_decode, &b)) return kExitError;
      runs[m].identical &= a.tokens == b.tokens;
      std::fprintf(stderr, "kestrel: %s rep %u: plain %.1f tok/s, %s %.1f tok/s (%zu tokens)\n",
                   measured ? "measured" : "warmup", rep, a.decode_tps, names[m].c_str(),
                   b.decode_tps, b.tokens.size());
      if (!measured) continue;
      runs[m].tps.push_back(b.decode_tps);
      runs[m].accepted += static_cast<double>(b.spec.accepted);
      runs[m].steps += static_cast<double>(b.spec.steps);
      if (rep + 1 == total && o.verbosity >= 0) PrintSpecStats(b.spec);
    }
  }
  const double p = Median(plain_tps);
  std::printf("model       %s (%s)\n", o.model_path.c_str(), info.device ? info.device : "");
  std::printf("prompt      %zu tokens, %u generated, %u reps (median)\n", prompt.size(),
              o.bench.n_decode, o.bench.reps);
  std::printf("plain       %.1f tok/s\n", p);
  for (size_t m = 0; m < names.size(); ++m) {
    const MethodRuns& r = runs[m];
    std::printf("%-11s %.1f tok/s  speedup %.3fx  mean accepted %.2f  identical %s\n",
                names[m].c_str(), Median(r.tps), p > 0 ? Median(r.tps) / p : 0.0, r.MeanAccepted(),
                r.identical ? "yes" : "NO");
  }
  // The contract fields describe the first method; a list adds every method under "methods" and
  // the first one's speed over each other's ("<first>_over_<other>", same run).
  JsonWriter w;
  w.BeginObject();
  WriteMethodFields(&w, names[0], runs[0], p);
  if (names.size() > 1) {
    for (size_t m = 1; m < names.size(); ++m) {
      const double other = Median(runs[m].tps);
      w.Key(names[0] + "_over_" + names[m]);
      w.Double(other > 0 ? Median(runs[0].tps) / other : 0.0);
    }
    w.Key("methods");
    w.BeginArray();
    for (size_t m = 0; m < names.size(); ++m) {
      w.BeginObject();
      WriteMethodFields(&w, names[m], runs[m], p);
      w.EndObject();
    }
    w.EndArray();
  }
  w.EndObject();
  std::printf("%s\n", w.str().c_str());
  return kExitOk;  // `identical` reports a mismatch; the measurement itself succeeded
}

}  // namespace kestrel::cli
