// Helpers the fuzz targets share (tests/fuzz, and any target kestrel_add_fuzzer registers):
// invariant checks that end the process like a crash (so libFuzzer records the input), and the
// folders of the test models the targets read their vocabularies from.
#ifndef KESTREL_TESTS_FUZZ_FUZZ_UTIL_H_
#define KESTREL_TESTS_FUZZ_FUZZ_UTIL_H_

#include <cstdio>
#include <cstdlib>
#include <string>

// A violated invariant is a finding: print it and abort (libFuzzer saves the crashing input).
#define KESTREL_FUZZ_CHECK(cond, ...)                                      \
  do {                                                                     \
    if (!(cond)) {                                                         \
      std::fprintf(stderr, "fuzz invariant failed: %s: ", #cond);         \
      std::fprintf(stderr, __VA_ARGS__);                                   \
      std::fprintf(stderr, "\n");                                         \
      std::abort();                                                        \
    }                                                                      \
  } while (0)

namespace kestrel::fuzz {

// ../shared/models: $KESTREL_MODELS_DIR, else the folder the build was configured with.
inline std::string ModelsDir() {
  const char* d = std::getenv("KESTREL_MODELS_DIR");
  if (d != nullptr && *d != '\0') return d;
#ifdef KESTREL_FUZZ_MODELS_DIR
  return KESTREL_FUZZ_MODELS_DIR;
#else
  return "../shared/models";
#endif
}

// The real models' cache (scripts/fetch_models.sh): $KESTREL_MODEL_CACHE or ~/.cache/kestrel/models.
inline std::string ModelCacheDir() {
  const char* d = std::getenv("KESTREL_MODEL_CACHE");
  if (d != nullptr && *d != '\0') return d;
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr ? home : ".") + "/.cache/kestrel/models";
}

}  // namespace kestrel::fuzz

#endif  // KESTREL_TESTS_FUZZ_FUZZ_UTIL_H_
