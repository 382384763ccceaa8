// Pure C++ helpers of `kestrel bench` (no Kestrel API calls, unit-tested without the library):
// statistics over repetitions, the synthetic prompt, peak RSS, last-level cache size.
#ifndef KESTREL_TOOLS_CLI_BENCH_UTIL_H_
#define KESTREL_TOOLS_CLI_BENCH_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace kestrel::cli {

// Twelve short story openings (the engine benchmarks' prompts; any vocab tokenizes them).
extern const char* const kStoryPrompts[];
inline constexpr size_t kNumStoryPrompts = 12;

struct Summary {
  double median = 0;  // the middle value; the mean of the two middle values for an even count
  double min = 0;
  double max = 0;
};

// Summary of `values` (all zero when empty).
Summary Summarize(std::vector<double> values);

// A benchmark prompt of n ids for a vocab of vocab_size ids: bos_id first when bos_id >= 0, then
// ids cycling with stride 7 over [3, vocab_size) (past <unk>, <s>, </s> of llama vocabs), so
// consecutive tokens differ. Deterministic; the ids' meaning does not matter to the speed.
std::vector<int32_t> SyntheticPromptIds(uint32_t n, uint32_t vocab_size, int32_t bos_id);

// `kestrel bench --engine`, shared-prefix workload: how many prefix tokens to use. Each request is
// the prefix plus `per_request_extra` more tokens of context (its longest suffix + generated
// tokens), and must fit in `context_length` (the model's; 0 = unknown, no limit).
struct PrefixChoice {
  uint32_t tokens = 0;  // 0: skip the workload
  bool fits = true;     // false: `requested` was given and does not fit (tokens = largest that does)
};
// requested unset: min(preferred, the largest that fits), 0 when nothing fits. requested = 0:
// skip. requested > 0: it, if it fits; else fits = false.
PrefixChoice ChoosePrefixTokens(std::optional<uint32_t> requested, uint32_t preferred,
                                uint32_t context_length, uint32_t per_request_extra);

// The process's peak resident set size in bytes (getrusage ru_maxrss; 0 if unavailable).
uint64_t PeakRssBytes();

// Size of the largest CPU data/unified cache in bytes (sysconf, else sysfs); 0 if unknown.
uint64_t LastLevelCacheBytes();

// Physical memory in bytes (sysconf); 0 if unknown.
uint64_t PhysicalMemoryBytes();

}  // namespace kestrel::cli

#endif  // KESTREL_TOOLS_CLI_BENCH_UTIL_H_
