// What session_state_fuzzer loads states into and what its seeds (fuzz_seeds.cc) are saved from,
// so that the two agree: stories260K sessions and engines of a 64-token context, F32 or F16 KV,
// an engine with the prefix cache and 2 sequences (KV blocks of the default 2 tokens).
#ifndef KESTREL_TESTS_FUZZ_STATE_TARGETS_H_
#define KESTREL_TESTS_FUZZ_STATE_TARGETS_H_

#include <cstdint>

#include "kestrel/kestrel.h"

namespace kestrel::fuzz {

constexpr uint32_t kStateContext = 64;

inline kestrel_engine_options_t StateEngineOptions(uint64_t kv_type) {
  kestrel_engine_options_t o;
  kestrel_engine_options_init(&o);
  o.context_length = kStateContext;
  o.max_sequences = 2;
  o.prefix_cache = true;
  o.kv_type = kv_type;
  return o;
}

// `sampler` must outlive the session's creation.
inline kestrel_session_options_t StateSessionOptions(uint64_t kv_type,
                                                     const kestrel_sampler_options_t* sampler) {
  kestrel_session_options_t o;
  kestrel_session_options_init(&o);
  o.context_length = kStateContext;
  o.sampler = sampler;
  o.kv_type = kv_type;
  return o;
}

}  // namespace kestrel::fuzz

#endif  // KESTREL_TESTS_FUZZ_STATE_TARGETS_H_
