// `kestrel bench --engine`: throughput of the serving engine (kestrel_engine_*) at several
// concurrencies against a single-sequence session, KV utilisation, and the prefill work the prefix
// cache saves on a shared-system-prompt workload. Public C API only (kestrel/kestrel.h).
#ifndef KESTREL_TOOLS_CLI_ENGINE_BENCH_H_
#define KESTREL_TOOLS_CLI_ENGINE_BENCH_H_

#include <cstdint>
#include <vector>

#include "args.h"
#include "kestrel/kestrel.h"

namespace kestrel::cli {

// One engine run: every prompt submitted at once, steps driven on the calling thread until all
// are done.
struct EngineRunResult {
  bool ok = false;           // false: an error (printed) or an interrupt
  bool interrupted = false;  // Ctrl-C during the run
  double tokens_per_s = 0;   // generated tokens / wall time from the first submit to the end
  uint64_t generated = 0;
  uint32_t peak_blocks_used = 0;  // max over the steps of kv_blocks_used
  uint32_t blocks_total = 0;
  double mean_waste = 0;  // mean over the steps of kv_waste_fraction
  uint64_t prefill_computed = 0;
  uint64_t prefill_reused = 0;
  uint64_t preemptions = 0;
  // Sliding-window KV pools (all zero without them): peak blocks used over the steps, the
  // pools' blocks and bytes.
  uint32_t window_blocks_peak = 0;
  uint32_t window_blocks_total = 0;
  uint64_t window_bytes = 0;
};

// Creates an engine with `options`, runs one untimed warm-up request (up to 8 tokens of
// prompts[0], 2 new tokens: shorter than a KV block, so nothing enters the prefix cache), then
// submits every prompt (sampler seed 1000 + index, library default temperature, max_new new
// tokens) and steps until all are done. Statistics are the difference from after the warm-up.
EngineRunResult RunEngineOnce(kestrel_model_t* model, const kestrel_engine_options_t& options,
                              const std::vector<std::vector<int32_t>>& prompts, uint32_t max_new);

// RunEngineOnce `reps` times (>= 1); returns the run with the median tokens/s (of an odd count the
// middle one, of an even count the upper middle). Stops at the first failed run and returns it.
EngineRunResult MedianEngineRun(kestrel_model_t* model, const kestrel_engine_options_t& options,
                                const std::vector<std::vector<int32_t>>& prompts, uint32_t max_new,
                                uint32_t reps);

// The single-sequence baseline: one session (context_length, n_threads, sampler seed 1000)
// generating max_new tokens from `prompt`, one warm-up + `reps` runs; the median tokens/s, 0 on
// error (printed).
double SessionBaselineTokensPerS(kestrel_model_t* model, const std::vector<int32_t>& prompt,
                                 uint32_t max_new, uint32_t context_length, uint32_t n_threads,
                                 uint32_t reps);

// The whole `kestrel bench --engine` command (bench_command.cc dispatches here). Returns the exit
// status.
int RunEngineBench(const Options& options);

}  // namespace kestrel::cli

#endif  // KESTREL_TOOLS_CLI_ENGINE_BENCH_H_
