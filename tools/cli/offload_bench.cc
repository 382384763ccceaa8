// Offload bench. Two models in one process: MODEL loaded under the --mem budgets (expert cache,
// streamed layers) and MODEL fully resident (the baseline), each with one greedy session.
// Repetitions alternate between them (offloaded, resident, offloaded, ...) so both see the same
// machine load; each prefills a synthetic prompt of -p tokens and decodes -n tokens one step at a time (timed). The
// expert cache's counters are reset before each offloaded decode, so hit rates and bytes read
// cover decode only. Then the disk read bandwidth is measured on the model file with reads of one
// expert's size at random offsets (direct I/O where allowed, as the cache reads).
//
// The resident model lives in a runtime of its own, so the budgeted model's device counters
// (kestrel_model_get_memory_stats: peak bytes, bytes written) are its alone.
//
// Last stdout line (--json): decode_tokens_per_s, resident_decode_tokens_per_s (medians),
// disk_read_bytes_per_s, missed_bytes_per_token, io_roofline_fraction = (resident time per token
// + missed bytes per token / disk bandwidth) / measured time per token, expert_hit_rate,
// bytes_moved_per_token {weights, experts, kv}, device_write_bytes_per_token,
// copy_wait_ms_per_token, device_peak_bytes, expert_hit_rate_per_layer, and more.
#include "offload_bench.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "api_util.h"
#include "bench_util.h"
#include "interrupt.h"
#include "json_writer.h"
#include "kestrel/kestrel.h"

namespace kestrel::cli {
namespace {

using Clock = std::chrono::steady_clock;

bool Check(kestrel_status_t* raw) {
  StatusPtr status(raw);
  if (!status) return true;
  PrintStatusError(status.get());
  return false;
}

SessionPtr MakeSession(kestrel_model_t* model, const Options& o) {
  kestrel_sampler_options_t sampler;
  kestrel_sampler_options_init(&sampler);
  sampler.temperature = 0.0f;
  kestrel_session_options_t so;
  kestrel_session_options_init(&so);
  so.context_length = o.bench.n_prompt + o.bench.n_decode;
  so.sampler = &sampler;
  so.n_threads = o.n_threads;
  so.kv_type = o.kv_type;
  kestrel_session_t* s = nullptr;
  if (!Check(kestrel_session_create(model, &so, &s))) return nullptr;
  return SessionPtr(s);
}

// Decode seconds of one repetition, negative on failure.
bool Stats(kestrel_model_t* m, kestrel_offload_stats_t* st) {
  *st = kestrel_offload_stats_t{};
  st->struct_size = sizeof(*st);
  return Check(kestrel_model_get_offload_stats(m, st));
}

bool MemoryStats(kestrel_model_t* m, kestrel_memory_stats_t* st) {
  *st = kestrel_memory_stats_t{};
  st->struct_size = sizeof(*st);
  return Check(kestrel_model_get_memory_stats(m, st));
}

// Decode seconds of one repetition, negative on failure. For the offloaded model the hit counts
// are reset after the prefill (when it has an expert cache) and *read_at_start gets the bytes
// read so far, *mem_at_start its device counters.
double DecodeSeconds(kestrel_session_t* s, const std::vector<int32_t>& prompt, uint32_t n_decode,
                     kestrel_model_t* offloaded, bool has_cache, uint64_t* read_at_start,
                     kestrel_memory_stats_t* mem_at_start) {
  if (!Check(kestrel_session_truncate(s, 0))) return -1;
  if (!Check(kestrel_session_decode(s, prompt.data(), prompt.size()))) return -1;
  if (offloaded != nullptr) {
    if (has_cache) {
      kestrel_offload_stats_t st;
      if (!Check(kestrel_model_reset_offload_stats(offloaded)) || !Stats(offloaded, &st)) return -1;
      *read_at_start = st.disk_bytes_read;
    }
    if (!MemoryStats(offloaded, mem_at_start)) return -1;
  }
  const Clock::time_point t0 = Clock::now();
  for (uint32_t i = 0; i < n_decode; ++i) {
    int32_t token = 0;
    if (!Check(kestrel_session_sample(s, &token))) return -1;
    if (!Check(kestrel_session_decode(s, &token, 1))) return -1;
  }
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

double MeasureDiskReadBandwidth(const std::string& path, uint64_t chunk_bytes,
                                uint64_t total_bytes, bool* direct) {
  constexpr uint64_t kAlign = 4096;
  chunk_bytes = std::max<uint64_t>(kAlign, (chunk_bytes + kAlign - 1) / kAlign * kAlign);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT);
  *direct = fd >= 0;
  void* buf = std::aligned_alloc(kAlign, chunk_bytes);
  if (buf == nullptr) return -1;
  if (fd >= 0 && ::pread(fd, buf, kAlign, 0) < 0) {
    ::close(fd);
    fd = -1;
    *direct = false;
  }
  if (fd < 0) {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  }
  if (fd < 0) {
    std::free(buf);
    return -1;
  }
  const off_t size = ::lseek(fd, 0, SEEK_END);
  const uint64_t blocks = size > static_cast<off_t>(chunk_bytes)
                              ? (static_cast<uint64_t>(size) - chunk_bytes) / kAlign
                              : 0;
  std::mt19937_64 rng(42);
  uint64_t done = 0;
  const Clock::time_point t0 = Clock::now();
  while (done < total_bytes) {
    const uint64_t off = blocks ? (rng() % blocks) * kAlign : 0;
    const ssize_t n = ::pread(fd, buf, chunk_bytes, static_cast<off_t>(off));
    if (n <= 0) break;
    done += static_cast<uint64_t>(n);
  }
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  if (!*direct) ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
  std::free(buf);
  return done > 0 && s > 0 ? static_cast<double>(done) / s : -1;
}

int RunOffloadBench(const Options& o) {
  const BenchOptions& b = o.bench;
  InstallInterruptHandler();
  RuntimePtr runtime = CreateRuntime(o.verbosity);
  if (!runtime) return kExitError;
  int exit_code = kExitError;
  LoadOptions load = LoadOptionsFrom(o);
  load.plan_context = b.n_prompt + b.n_decode;  // the KV the bench's sessions use
  ModelPtr offloaded = LoadModel(runtime.get(), load, &exit_code);
  if (!offloaded) return exit_code;
  LoadOptions resident_load = LoadOptionsFrom(o);
  resident_load.mem.clear();
  RuntimePtr resident_runtime = CreateRuntime(o.verbosity);
  if (!resident_runtime) return kExitError;
  ModelPtr resident = LoadModel(resident_runtime.get(), resident_load, &exit_code);
  if (!resident) return exit_code;
  kestrel_model_info_t info;
  if (!GetModelInfo(offloaded.get(), &info)) return kExitError;
  kestrel_memory_plan_info_t plan{};
  plan.struct_size = sizeof(plan);
  if (!Check(kestrel_model_get_memory_plan(offloaded.get(), &plan))) return kExitError;
  SessionPtr s_off = MakeSession(offloaded.get(), o), s_res = MakeSession(resident.get(), o);
  if (!s_off || !s_res) return kExitError;
  const std::vector<int32_t> prompt =
      SyntheticPromptIds(b.n_prompt, info.vocab_size, info.add_bos ? info.bos_id : -1);

  std::vector<double> off_tps, res_tps, missed_per_token, hit_rates, written_per_token, wait_ms,
      streamed_per_token, prefetch_accuracy, prefetched_per_token;
  kestrel_offload_stats_t st{};
  kestrel_memory_stats_t mem{};
  for (uint32_t run = 0; run < b.warmup + b.reps; ++run) {
    uint64_t read0 = 0;
    kestrel_memory_stats_t mem0{};
    const double t_off = DecodeSeconds(s_off.get(), prompt, b.n_decode, offloaded.get(),
                                       plan.experts_offloaded, &read0, &mem0);
    if (t_off < 0) return kExitError;
    if (!MemoryStats(offloaded.get(), &mem)) return kExitError;
    uint64_t hits = 0, misses = 0, read = 0;
    if (plan.experts_offloaded) {
      if (!Stats(offloaded.get(), &st)) return kExitError;
      hits = st.expert_hits;
      misses = st.expert_misses;
      read = st.disk_bytes_read - read0;
    }
    const double t_res =
        DecodeSeconds(s_res.get(), prompt, b.n_decode, nullptr, false, nullptr, nullptr);
    if (t_res < 0) return kExitError;
    if (InterruptRequested()) return kExitInterrupted;
    std::fprintf(stderr, "kestrel: offload bench %s %u: decode %.2f tok/s (budget), %.2f tok/s (resident)\n",
                 run < b.warmup ? "warm-up" : "rep", run + 1, b.n_decode / t_off,
                 b.n_decode / t_res);
    if (run < b.warmup) continue;
    off_tps.push_back(b.n_decode / t_off);
    res_tps.push_back(b.n_decode / t_res);
    if (plan.experts_offloaded) {
      hit_rates.push_back(hits + misses ? static_cast<double>(hits) / (hits + misses) : 1.0);
      missed_per_token.push_back(static_cast<double>(read) / b.n_decode);
      // Of the experts read ahead in decode, the share a step then used (the reset before decode
      // zeroed the counts).
      prefetch_accuracy.push_back(st.expert_prefetches ? static_cast<double>(st.expert_prefetch_hits) /
                                                             st.expert_prefetches
                                                       : 0.0);
      prefetched_per_token.push_back(static_cast<double>(st.expert_prefetches) / b.n_decode);
    }
    written_per_token.push_back(
        static_cast<double>(mem.host_to_device_bytes - mem0.host_to_device_bytes) / b.n_decode);
    streamed_per_token.push_back(
        static_cast<double>(mem.streamed_bytes_copied - mem0.streamed_bytes_copied) / b.n_decode);
    wait_ms.push_back((mem.expert_read_seconds - mem0.expert_read_seconds +
                       mem.stream_copy_wait_seconds - mem0.stream_copy_wait_seconds) *
                      1000.0 / b.n_decode);
  }
  // Per-layer hit rates of the last repetition's decode (the counts are reset before each).
  std::vector<double> layer_hit_rates;
  if (plan.experts_offloaded) {
    if (!Stats(offloaded.get(), &st)) return kExitError;
    for (uint32_t l = 0; l < st.n_layers; ++l) {
      uint64_t h = 0, m = 0;
      if (!Check(kestrel_model_get_expert_layer_stats(offloaded.get(), l, &h, &m))) return kExitError;
      layer_hit_rates.push_back(h + m ? static_cast<double>(h) / static_cast<double>(h + m) : 1.0);
    }
  }
  if (!MemoryStats(offloaded.get(), &mem)) return kExitError;
  bool direct = false;
  const double disk_bw = MeasureDiskReadBandwidth(
      o.model_path, plan.expert_slot_bytes ? plan.expert_slot_bytes / 3 : (1u << 20),
      uint64_t{256} << 20, &direct);
  const Summary off = Summarize(off_tps), res = Summarize(res_tps);
  const double missed = missed_per_token.empty() ? 0.0 : Summarize(missed_per_token).median;
  const double hit = hit_rates.empty() ? 1.0 : Summarize(hit_rates).median;
  const double roofline_s = 1.0 / res.median + (disk_bw > 0 ? missed / disk_bw : 0.0);
  const double fraction = roofline_s * off.median;
  std::printf("model    %s, device %s\n", o.model_path.c_str(), info.device);
  std::printf("plan     resident %s, expert cache %u of %u experts (%s), KV %s\n",
              FormatBytes(plan.resident_bytes).c_str(), plan.expert_slots, plan.experts_total,
              FormatBytes(plan.expert_cache_bytes).c_str(), FormatBytes(plan.kv_bytes).c_str());
  std::printf("decode   %.2f tok/s under the budget, %.2f tok/s resident (medians of %u)\n",
              off.median, res.median, b.reps);
  std::printf("experts  hit rate %.3f, %.0f missed bytes per token, disk %.1f MB/s (%s)\n", hit,
              missed, disk_bw / 1e6, direct ? "direct I/O" : "pread");
  std::printf("I/O roofline fraction %.3f\n", fraction);
  const double pf_accuracy = prefetch_accuracy.empty() ? 0.0 : Summarize(prefetch_accuracy).median;
  const double pf_per_token =
      prefetched_per_token.empty() ? 0.0 : Summarize(prefetched_per_token).median;
  if (st.expert_prefetch_buffers > 0) {
    std::printf("prefetch %u buffers (cache keeps %u slots), %.1f experts read ahead per token, "
                "%.3f of them used\n",
                st.expert_prefetch_buffers, st.expert_slots, pf_per_token, pf_accuracy);
  }
  const double written = written_per_token.empty() ? 0.0 : Summarize(written_per_token).median;
  const double wait = wait_ms.empty() ? 0.0 : Summarize(wait_ms).median;
  const double streamed = streamed_per_token.empty() ? 0.0 : Summarize(streamed_per_token).median;
  if (plan.n_streamed_layers > 0) {
    std::printf("streamed %u layers, %s per step through a ring of %u slots (prefetch %u)\n",
                plan.n_streamed_layers, FormatBytes(plan.streamed_bytes).c_str(),
                plan.stream_slots, plan.stream_prefetch_distance);
  }
  std::printf("moved    %.0f bytes per token to the device (experts %.0f, weights %.0f, KV 0), "
              "%.3f ms per token waiting on expert reads and synchronous weight copies; device "
              "peak %s\n",
              written, missed, streamed, wait, FormatBytes(mem.device_peak_bytes).c_str());
  if (o.json) {
    JsonWriter w;
    w.BeginObject();
    w.Key("mode");
    w.String("offload");
    w.Key("model");
    w.String(o.model_path);
    w.Key("device");
    w.String(info.device);
    w.Key("expert_policy");
    w.String(o.expert_policy);
    w.Key("n_prompt");
    w.Uint(b.n_prompt);
    w.Key("n_decode");
    w.Uint(b.n_decode);
    w.Key("reps");
    w.Uint(b.reps);
    w.Key("decode_tokens_per_s");
    w.Double(off.median);
    w.Key("decode_tokens_per_s_all");
    w.DoubleArray(off_tps);
    w.Key("resident_decode_tokens_per_s");
    w.Double(res.median);
    w.Key("resident_decode_tokens_per_s_all");
    w.DoubleArray(res_tps);
    w.Key("disk_read_bytes_per_s");
    w.Double(disk_bw);
    w.Key("disk_read_direct_io");
    w.Bool(direct);
    w.Key("missed_bytes_per_token");
    w.Double(missed);
    w.Key("io_roofline_fraction");
    w.Double(fraction);
    w.Key("expert_hit_rate");
    w.Double(hit);
    w.Key("expert_slots");
    w.Uint(plan.expert_slots);
    // Read-ahead by the next layer's router (0 buffers: off, or a budget too small for it).
    w.Key("expert_prefetch");
    w.Bool(st.expert_prefetch_buffers > 0);
    w.Key("expert_prefetch_buffers");
    w.Uint(st.expert_prefetch_buffers);
    w.Key("expert_cache_slots_used");
    w.Uint(st.expert_slots);
    w.Key("expert_prefetches_per_token");
    w.Double(pf_per_token);
    w.Key("expert_prefetch_accuracy");
    w.Double(pf_accuracy);
    w.Key("experts_total");
    w.Uint(plan.experts_total);
    w.Key("expert_cache_bytes");
    w.Uint(plan.expert_cache_bytes);
    w.Key("expert_cache_peak_bytes");
    w.Uint(st.expert_cache_peak_bytes);
    w.Key("expert_io_mode");
    w.String(plan.experts_offloaded && st.io_mode ? st.io_mode : "");
    w.Key("device_budget_bytes");
    w.Uint(plan.device_budget_bytes);
    // By kind: streamed layers' weights copied to the device, experts read into the cache; a
    // session never swaps KV, so that is 0 here (`--kv-swap` measures KV).
    w.Key("streamed_layers");
    w.Uint(plan.n_streamed_layers);
    w.Key("stream_prefetch_distance");
    w.Uint(plan.stream_prefetch_distance);
    w.Key("bytes_moved_per_token");
    w.BeginObject();
    w.Key("weights");
    w.Double(streamed);
    w.Key("experts");
    w.Double(missed);
    w.Key("kv");
    w.Double(0.0);
    w.EndObject();
    w.Key("device_write_bytes_per_token");
    w.Double(written);
    w.Key("copy_wait_ms_per_token");
    w.Double(wait);
    w.Key("device_peak_bytes");
    w.Uint(mem.device_peak_bytes);
    w.Key("expert_hit_rate_per_layer");
    w.DoubleArray(layer_hit_rates);
    w.Key("peak_rss_bytes");
    w.Uint(PeakRssBytes());
    w.EndObject();
    std::printf("%s\n", w.str().c_str());
  }
  return kExitOk;
}

}  // namespace kestrel::cli
