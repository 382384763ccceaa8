#include "bench_util.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>

namespace kestrel::cli {

const char* const kStoryPrompts[kNumStoryPrompts] = {
    "Once upon a time",       "Lily wanted to",      "The little dog",  "One day, a girl named",
    "Tom and his mom",        "The sun was",         "There was a big", "A cat sat on",
    "Ben liked to play with", "In the park, a bird", "Mom said that",   "The red ball",
};


Summary Summarize(std::vector<double> values) {
  Summary s;
  if (values.empty()) return s;
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  s.median = n % 2 == 1 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
  s.min = values.front();
  s.max = values.back();
  return s;
}

std::vector<int32_t> SyntheticPromptIds(uint32_t n, uint32_t vocab_size, int32_t bos_id) {
  std::vector<int32_t> ids;
  ids.reserve(n);
  if (n > 0 && bos_id >= 0) ids.push_back(bos_id);
  const uint32_t first = vocab_size > 3 ? 3 : 0;
  const uint32_t range = vocab_size > first ? vocab_size - first : 1;
  for (uint32_t i = 0; ids.size() < n; ++i) {
    ids.push_back(static_cast<int32_t>(first + (uint64_t{i} * 7) % range));
  }
  return ids;
}

PrefixChoice ChoosePrefixTokens(std::optional<uint32_t> requested, uint32_t preferred,
                                uint32_t context_length, uint32_t per_request_extra) {
  uint64_t largest = UINT32_MAX;
  if (context_length != 0) {
    largest = context_length > per_request_extra ? context_length - per_request_extra : 0;
  }
  PrefixChoice c;
  if (!requested) {
    c.tokens = static_cast<uint32_t>(std::min<uint64_t>(preferred, largest));
  } else if (*requested <= largest) {
    c.tokens = *requested;
  } else {
    c.tokens = static_cast<uint32_t>(largest);
    c.fits = false;
  }
  return c;
}

uint64_t PeakRssBytes() {
  struct rusage usage;
  if (getrusage(RUSAGE_SELF, &usage) != 0) return 0;
  return static_cast<uint64_t>(usage.ru_maxrss) * 1024;  // Linux: KiB
}

uint64_t LastLevelCacheBytes() {
  uint64_t best = 0;
#ifdef _SC_LEVEL3_CACHE_SIZE
  for (int name : {_SC_LEVEL2_CACHE_SIZE, _SC_LEVEL3_CACHE_SIZE, _SC_LEVEL4_CACHE_SIZE}) {
    const long v = sysconf(name);
    if (v > 0) best = std::max<uint64_t>(best, static_cast<uint64_t>(v));
  }
#endif
  if (best != 0) return best;
  // sysfs: /sys/devices/system/cpu/cpu0/cache/indexN/size, e.g. "260M" or "4096K".
  for (int index = 0; index < 8; ++index) {
    std::ifstream in("/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index) + "/size");
    std::string text;
    if (!(in >> text) || text.empty()) continue;
    uint64_t value = 0;
    size_t i = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') value = value * 10 + (text[i++] - '0');
    if (i < text.size() && (text[i] == 'K' || text[i] == 'k')) value <<= 10;
    if (i < text.size() && (text[i] == 'M' || text[i] == 'm')) value <<= 20;
    if (i < text.size() && (text[i] == 'G' || text[i] == 'g')) value <<= 30;
    best = std::max(best, value);
  }
  return best;
}

uint64_t PhysicalMemoryBytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return 0;
  return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page);
}

}  // namespace kestrel::cli
