// `kestrel bench`: model speed (load, prefill, decode) through the public C API, with --membw
// the machine's memory read bandwidth (the roofline for decode), and with --engine the serving
// engine's throughput (engine_bench.cc).
//
// Model bench. One load (timed: load_ms), one session whose context is n_prompt + n_decode tokens,
// sampler greedy. Each repetition empties the KV cache (kestrel_session_truncate to 0), prefills a
// synthetic prompt of n_prompt ids in one kestrel_session_decode call (prefill tok/s =
// n_prompt / its time), then runs n_decode steps of kestrel_session_sample + a one-token
// kestrel_session_decode (decode tok/s = n_decode / their time; the greedy sample is counted, as in
// a real generation). --warmup repetitions (default 1) run first and are not counted: they absorb
// first-touch page faults of the mapped weights and lazy weight preparation on a fallback device.
// The report gives median, min and max over the --reps counted repetitions (default 5).
//
// stdout: a table; with --json one more line, a JSON object (the last line). stderr: one line per
// repetition, logs, errors.
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "api_util.h"
#include "bench_util.h"
#include "commands.h"
#include "engine_bench.h"
#include "kv_swap_bench.h"
#include "soak_bench.h"
#include "verify_cost_bench.h"
#include "interrupt.h"
#include "json_writer.h"
#include "kestrel/kestrel.h"
#include "membw.h"
#include "offload_bench.h"

namespace kestrel::cli {
namespace {

using Clock = std::chrono::steady_clock;

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

int RunMembw(const Options& o) {
  unsigned threads = o.n_threads;
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  const uint64_t llc = LastLevelCacheBytes();
  uint64_t bytes = uint64_t{o.bench.size_mb} << 20;
  if (bytes == 0) {
    bytes = std::max<uint64_t>(4 * llc, uint64_t{1} << 30);
    const uint64_t phys = PhysicalMemoryBytes();
    if (phys != 0 && bytes > phys / 4) bytes = std::max<uint64_t>(phys / 4, uint64_t{64} << 20);
  }
  if (llc != 0 && bytes < 4 * llc) {
    std::fprintf(stderr,
                 "kestrel: warning: the %s buffer is smaller than 4 x the last-level cache (%s); "
                 "part of it may be read from cache\n",
                 FormatBytes(bytes).c_str(), FormatBytes(llc).c_str());
  }
  MembwOptions mo;
  mo.bytes = bytes;
  mo.threads = threads;
  mo.reps = o.bench.reps;
  MembwResult r;
  try {
    r = MeasureReadBandwidth(mo);
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "kestrel: error: RESOURCE_EXHAUSTED: cannot allocate a %s buffer\n",
                 FormatBytes(bytes).c_str());
    return kExitError;
  }
  if (!r.checksum_ok) {
    std::fprintf(stderr, "kestrel: error: INTERNAL: membw checksum mismatch\n");
    return kExitError;
  }
  const char* isa = Vec64Isa();
  std::printf("memory read bandwidth: %s buffer (last-level cache %s), %u thread%s, %u reps\n",
              FormatBytes(r.bytes).c_str(), llc ? FormatBytes(llc).c_str() : "unknown", r.threads,
              r.threads == 1 ? "" : "s", o.bench.reps);
  std::printf("%-9s %12s %12s %12s\n", "kernel", "median GB/s", "min GB/s", "max GB/s");
  for (const MembwKernelResult& k : r.kernels) {
    std::printf("%-9s %12.2f %12.2f %12.2f  %s\n", k.name.c_str(), k.summary.median, k.summary.min,
                k.summary.max, k.name == "scalar" ? "" : isa);
  }
  std::printf("read bandwidth (best median): %.2f GB/s (%s, %s pages)\n", r.best_gb_per_s,
              r.best_kernel.c_str(), r.huge_pages ? "2 MiB huge" : "4 KiB");
  if (o.json) {
    JsonWriter w;
    w.BeginObject();
    w.Key("mode");
    w.String("membw");
    w.Key("read_gb_per_s");
    w.Double(r.best_gb_per_s);
    w.Key("threads");
    w.Uint(r.threads);
    w.Key("buffer_bytes");
    w.Uint(r.bytes);
    w.Key("llc_bytes");
    w.Uint(llc);
    w.Key("reps");
    w.Uint(o.bench.reps);
    w.Key("vec64_isa");
    w.String(isa);
    w.Key("best_kernel");
    w.String(r.best_kernel);
    w.Key("huge_pages");
    w.Bool(r.huge_pages);
    for (const MembwKernelResult& k : r.kernels) {
      w.Key("read_gb_per_s_" + k.name);
      w.Double(k.summary.median);
      w.Key("read_gb_per_s_" + k.name + "_min");
      w.Double(k.summary.min);
      w.Key("read_gb_per_s_" + k.name + "_max");
      w.Double(k.summary.max);
      w.Key("read_gb_per_s_" + k.name + "_all");
      w.DoubleArray(k.gb_per_s);
    }
    w.Key("peak_rss_bytes");
    w.Uint(PeakRssBytes());
    w.EndObject();
    std::printf("%s\n", w.str().c_str());
  }
  return kExitOk;
}

}  // namespace

int RunBench(const Options& o) {
  if (o.bench.membw) return RunMembw(o);
  if (!o.spec.empty()) return RunSpecBench(o);   // spec_bench.cc (also --engine)
  if (o.bench.kv_swap) return RunKvSwapBench(o);  // kv_swap_bench.cc
  if (o.bench.verify_cost != 0) return RunVerifyCostBench(o);  // verify_cost_bench.cc
  if (o.bench.engine) return RunEngineBench(o);  // engine_bench.cc
  if (!o.mem.empty()) return RunOffloadBench(o);  // offload_bench.cc
  if (o.bench.soak) return RunSoakBench(o);      // soak_bench.cc
  const BenchOptions& b = o.bench;
  InstallInterruptHandler();
  RuntimePtr runtime = CreateRuntime(o.verbosity);
  if (!runtime) return kExitError;

  int exit_code = kExitError;
  const Clock::time_point load_start = Clock::now();
  ModelPtr model = LoadModel(runtime.get(), LoadOptionsFrom(o),
                             &exit_code);
  if (!model) return exit_code;
  const double load_ms = Seconds(load_start) * 1e3;
  kestrel_model_info_t info;
  if (!GetModelInfo(model.get(), &info)) return kExitError;

  kestrel_sampler_options_t sampler;
  kestrel_sampler_options_init(&sampler);
  sampler.temperature = 0.0f;  // greedy: the sampler costs one argmax per step
  kestrel_session_options_t session_options;
  kestrel_session_options_init(&session_options);
  session_options.context_length = b.n_prompt + b.n_decode;
  session_options.sampler = &sampler;
  session_options.n_threads = o.n_threads;
  session_options.kv_type = o.kv_type;
  kestrel_session_t* raw_session = nullptr;
  if (!Check(kestrel_session_create(model.get(), &session_options, &raw_session))) {
    return kExitError;
  }
  SessionPtr session(raw_session);

  const std::vector<int32_t> prompt =
      SyntheticPromptIds(b.n_prompt, info.vocab_size, info.add_bos ? info.bos_id : -1);
  std::vector<double> prefill_tps, decode_tps, prefill_ms, decode_ms;
  const uint32_t total_runs = b.warmup + b.reps;
  for (uint32_t run = 0; run < total_runs; ++run) {
    if (!Check(kestrel_session_truncate(session.get(), 0))) return kExitError;
    const Clock::time_point prefill_start = Clock::now();
    if (!Check(kestrel_session_decode(session.get(), prompt.data(), prompt.size()))) {
      return kExitError;
    }
    const double prefill_s = Seconds(prefill_start);
    const Clock::time_point decode_start = Clock::now();
    for (uint32_t step = 0; step < b.n_decode; ++step) {
      int32_t token = 0;
      if (!Check(kestrel_session_sample(session.get(), &token))) return kExitError;
      if (!Check(kestrel_session_decode(session.get(), &token, 1))) return kExitError;
      if (InterruptRequested()) break;
    }
    const double decode_s = Seconds(decode_start);
    if (InterruptRequested()) {
      std::fprintf(stderr, "kestrel: interrupted\n");
      return kExitInterrupted;
    }
    const bool warmup = run < b.warmup;
    const double ptps = b.n_prompt / prefill_s, dtps = b.n_decode / decode_s;
    std::fprintf(stderr,
                 "kestrel: bench %s %u/%u: prefill %u tokens %.1f ms (%.2f tok/s), decode %u "
                 "tokens %.1f ms (%.2f tok/s)\n",
                 warmup ? "warm-up" : "rep", warmup ? run + 1 : run - b.warmup + 1,
                 warmup ? b.warmup : b.reps, b.n_prompt, prefill_s * 1e3, ptps, b.n_decode,
                 decode_s * 1e3, dtps);
    if (warmup) continue;
    prefill_tps.push_back(ptps);
    decode_tps.push_back(dtps);
    prefill_ms.push_back(prefill_s * 1e3);
    decode_ms.push_back(decode_s * 1e3);
  }
  const Summary prefill = Summarize(prefill_tps), decode = Summarize(decode_tps);
  const uint64_t peak_rss = PeakRssBytes();
  const char* device = info.device != nullptr ? info.device : "";
  const char* name = info.name != nullptr ? info.name : "";

  std::printf("model    %s (%s)\n", o.model_path.c_str(), name);
  std::printf("         %.3f G params, %s of weights, device %s, threads %u%s\n",
              info.n_params / 1e9, FormatBytes(info.weight_bytes).c_str(), device, o.n_threads,
              o.n_threads == 0 ? " (plugin default)" : "");
  std::printf("load     %.1f ms, peak RSS %s\n", load_ms, FormatBytes(peak_rss).c_str());
  std::printf("%-8s %7s %5s %14s %12s %12s\n", "test", "tokens", "reps", "median tok/s",
              "min tok/s", "max tok/s");
  std::printf("%-8s %7u %5u %14.2f %12.2f %12.2f\n", "prefill", b.n_prompt, b.reps, prefill.median,
              prefill.min, prefill.max);
  std::printf("%-8s %7u %5u %14.2f %12.2f %12.2f\n", "decode", b.n_decode, b.reps, decode.median,
              decode.min, decode.max);
  if (o.json) {
    JsonWriter w;
    w.BeginObject();
    w.Key("mode");
    w.String("model");
    w.Key("model");
    w.String(o.model_path);
    w.Key("model_name");
    w.String(name);
    w.Key("device");
    w.String(device);
    w.Key("threads");
    w.Uint(o.n_threads);
    w.Key("kv_type");
    w.String(o.kv_type == 1 ? "f16" : "f32");
    w.Key("n_prompt");
    w.Uint(b.n_prompt);
    w.Key("n_decode");
    w.Uint(b.n_decode);
    w.Key("reps");
    w.Uint(b.reps);
    w.Key("warmup");
    w.Uint(b.warmup);
    w.Key("load_ms");
    w.Double(load_ms);
    w.Key("prefill_tokens_per_s");
    w.Double(prefill.median);
    w.Key("prefill_tokens_per_s_min");
    w.Double(prefill.min);
    w.Key("prefill_tokens_per_s_max");
    w.Double(prefill.max);
    w.Key("prefill_tokens_per_s_all");
    w.DoubleArray(prefill_tps);
    w.Key("prefill_ms_all");
    w.DoubleArray(prefill_ms);
    w.Key("decode_tokens_per_s");
    w.Double(decode.median);
    w.Key("decode_tokens_per_s_min");
    w.Double(decode.min);
    w.Key("decode_tokens_per_s_max");
    w.Double(decode.max);
    w.Key("decode_tokens_per_s_all");
    w.DoubleArray(decode_tps);
    w.Key("decode_ms_all");
    w.DoubleArray(decode_ms);
    w.Key("peak_rss_bytes");
    w.Uint(peak_rss);
    w.Key("n_params");
    w.Uint(info.n_params);
    w.Key("weight_bytes");
    w.Uint(info.weight_bytes);
    w.Key("n_layers");
    w.Uint(info.n_layers);
    w.Key("n_embd");
    w.Uint(info.n_embd);
    w.Key("vocab_size");
    w.Uint(info.vocab_size);
    w.EndObject();
    std::printf("%s\n", w.str().c_str());
  }
  return kExitOk;
}

}  // namespace kestrel::cli
