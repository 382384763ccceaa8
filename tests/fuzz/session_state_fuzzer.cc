// Fuzz target: the session-state loader (kestrel_session_load_state: the .kstate container, the
// FlatBuffers Verifier, the data checksum, then the session's own checks of model, KV geometry,
// tokens, logits, sampler and layer ranges) and the engine's prefix-cache loader
// (kestrel_engine_load_prefix_cache: the .kprefix container and its entries), through the public
// C API against stories260K on the reference plugin, F32 and F16 KV caches.
//
// Input: a flags byte, then the state. Flags bit 0: reseal (after the unsealed bytes were tried:
// the data checksum in the manifest, the manifest checksum, total size and header checksum, so
// mutations reach the checks behind them; tests/fuzz/container_reseal.h); bit 1: the F16-KV
// session or engine instead of the F32 one; bit 2: pass the state at an odd address (a caller's
// buffer need not be aligned). Bytes starting with "KPFX" go to the engine (through a memfd, so no
// file is written), anything else to the session. Seeds (fuzz_seeds.cc): states that real
// sessions saved (F32 and F16, with a pending token, after a plain decode, empty, sampled with a
// repetition window) and a prefix cache an engine saved.
//
// Invariants: a refusal has a documented code and a message starting with the function's name;
// it leaves the session exactly as it was (its saved state is byte-identical to the one before),
// unless the message says the session is now empty and it is; an accepted state continues (one
// token generated, inside the vocab, or a status), and the baseline state loads back. A prefix
// cache loads at most the engine's free blocks.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "kestrel/kestrel.h"
#include "runtime/package/kprefix_generated.h"
#include "runtime/package/prefix_cache_format.h"
#include "runtime/package/kstate_generated.h"
#include "tests/fuzz/container_reseal.h"
#include "tests/fuzz/fuzz_util.h"
#include "tests/fuzz/state_targets.h"

namespace {

struct Target {
  kestrel_session_t* session = nullptr;
  kestrel_engine_t* engine = nullptr;
  uint64_t kv_type = KESTREL_KV_F32;
  std::vector<uint8_t> baseline;  // what the session saved after generating (a pending token)
  std::vector<uint8_t> expected;  // what it saves after loading `baseline`: its state before every input
};

kestrel_runtime_t* g_runtime = nullptr;
kestrel_model_t* g_model = nullptr;
Target g_targets[2];
int32_t g_vocab = 0;
int g_memfd = -1;
std::string g_memfd_path;

void Must(kestrel_status_t* s, const char* what) {
  if (s == nullptr) return;
  std::fprintf(stderr, "session_state_fuzzer: %s: %s\n", what, kestrel_status_message(s));
  std::abort();
}

std::vector<uint8_t> Save(kestrel_session_t* session) {
  size_t need = 0;
  Must(kestrel_session_save_state(session, nullptr, 0, &need), "measuring the state");
  std::vector<uint8_t> bytes(need);
  Must(kestrel_session_save_state(session, bytes.data(), bytes.size(), &need), "saving the state");
  return bytes;
}

kestrel_engine_t* MakeEngine(uint64_t kv_type) {
  const kestrel_engine_options_t o = kestrel::fuzz::StateEngineOptions(kv_type);
  kestrel_engine_t* e = nullptr;
  Must(kestrel_engine_create(g_model, &o, &e), "creating the engine");
  return e;
}

// The session holds a prompt and three sampled tokens (the last one pending when saved), with a
// repetition window: a refusal must leave all of that as it was.
void MakeTarget(Target* t, uint64_t kv_type) {
  t->kv_type = kv_type;
  kestrel_sampler_options_t so;
  kestrel_sampler_options_init(&so);
  so.temperature = 0.8f;
  so.seed = 7;
  so.repetition_penalty = 1.1f;
  const kestrel_session_options_t o = kestrel::fuzz::StateSessionOptions(kv_type, &so);
  Must(kestrel_session_create(g_model, &o, &t->session), "creating the session");
  const int32_t prompt[] = {1, 403, 407, 261, 378};
  kestrel_generate_options_t g;
  kestrel_generate_options_init(&g);
  g.max_new_tokens = 3;
  Must(kestrel_session_generate_tokens(t->session, prompt, 5, &g, nullptr), "generating");
  t->baseline = Save(t->session);
  // Loading decodes the pending token, so the state to compare with is the one after a load.
  Must(kestrel_session_load_state(t->session, t->baseline.data(), t->baseline.size()), "loading");
  t->expected = Save(t->session);
  t->engine = MakeEngine(kv_type);
}

bool OnToken(void* user, int32_t token, const char*, size_t) {
  if (token != KESTREL_TOKEN_NONE) {
    KESTREL_FUZZ_CHECK(token >= 0 && token < g_vocab, "generated token %d outside the vocab of %d",
                       token, g_vocab);
    ++*static_cast<int*>(user);
  }
  return true;
}

void CheckRefusal(kestrel_status_t* s, const char* fn) {
  const kestrel_status_code_t c = kestrel_status_code(s);
  KESTREL_FUZZ_CHECK(c == KESTREL_STATUS_INVALID_ARGUMENT || c == KESTREL_STATUS_DATA_LOSS ||
                         c == KESTREL_STATUS_UNIMPLEMENTED || c == KESTREL_STATUS_FAILED_PRECONDITION ||
                         c == KESTREL_STATUS_OUT_OF_RANGE || c == KESTREL_STATUS_RESOURCE_EXHAUSTED,
                     "%s: undocumented status %s: %s", fn, kestrel_status_code_name(c),
                     kestrel_status_message(s));
  const std::string m = kestrel_status_message(s);
  KESTREL_FUZZ_CHECK(m.rfind(fn, 0) == 0 && m.size() > std::strlen(fn) + 2,
                     "refusal without the function or a reason: %s", m.c_str());
}

void LoadState(Target& t, const uint8_t* data, size_t size) {
  kestrel_status_t* s = kestrel_session_load_state(t.session, data, size);
  if (s != nullptr) {
    CheckRefusal(s, "kestrel_session_load_state");
    const bool emptied = std::strstr(kestrel_status_message(s), "the session is now empty") != nullptr;
    kestrel_status_free(s);
    if (emptied) {
      KESTREL_FUZZ_CHECK(kestrel_session_token_count(t.session) == 0,
                         "the message says the session is empty, it holds %zu tokens",
                         kestrel_session_token_count(t.session));
      Must(kestrel_session_load_state(t.session, t.baseline.data(), t.baseline.size()),
           "loading the baseline back");
      return;
    }
    KESTREL_FUZZ_CHECK(Save(t.session) == t.expected, "a refused state changed the session");
    return;
  }
  KESTREL_FUZZ_CHECK(kestrel_session_token_count(t.session) <= kestrel::fuzz::kStateContext,
                     "%zu tokens in a %u-token context", kestrel_session_token_count(t.session),
                     kestrel::fuzz::kStateContext);
  // Continue one token: the restored logits, sampler and KV cache are used for real.
  kestrel_generate_options_t g;
  kestrel_generate_options_init(&g);
  g.max_new_tokens = 1;
  g.keep_context = true;
  int generated = 0;
  g.on_token = OnToken;
  g.user_data = &generated;
  if (kestrel_status_t* gs = kestrel_session_generate_tokens(t.session, nullptr, 0, &g, nullptr)) {
    KESTREL_FUZZ_CHECK(std::strlen(kestrel_status_message(gs)) > 0, "generate failed without a message");
    kestrel_status_free(gs);
  }
  KESTREL_FUZZ_CHECK(generated <= 1, "%d tokens generated, asked for 1", generated);
  Must(kestrel_session_load_state(t.session, t.baseline.data(), t.baseline.size()),
       "loading the baseline back");
}

void LoadPrefix(Target& t, const uint8_t* data, size_t size) {
  KESTREL_FUZZ_CHECK(ftruncate(g_memfd, 0) == 0, "truncating the memfd");
  KESTREL_FUZZ_CHECK(size == 0 || pwrite(g_memfd, data, size, 0) == static_cast<ssize_t>(size),
                     "writing the memfd");
  uint32_t loaded = 0;
  kestrel_status_t* s = kestrel_engine_load_prefix_cache(t.engine, g_memfd_path.c_str(), &loaded);
  if (s != nullptr) {
    CheckRefusal(s, "kestrel_engine_load_prefix_cache");
    kestrel_status_free(s);
    return;
  }
  kestrel_engine_stats_t st;
  st.struct_size = sizeof st;
  Must(kestrel_engine_get_stats(t.engine, &st), "engine stats");
  KESTREL_FUZZ_CHECK(loaded <= st.kv_blocks_total, "%u blocks loaded into a pool of %u", loaded,
                     st.kv_blocks_total);
  if (loaded > 0) {  // start the next input from an empty cache
    kestrel_engine_destroy(t.engine);
    t.engine = MakeEngine(t.kv_type);
  }
}

void RunOne(const std::string& bytes, uint8_t flags) {
  Target& t = g_targets[(flags >> 1) & 1];
  // An odd address when asked: the caller's buffer need not be aligned.
  std::vector<uint8_t> buf(bytes.size() + 1);
  uint8_t* p = buf.data() + ((flags & 4) ? 1 : 0);
  if (!bytes.empty()) std::memcpy(p, bytes.data(), bytes.size());
  if (bytes.compare(0, 4, kestrel::runtime::kPrefixMagic) == 0) {
    LoadPrefix(t, p, bytes.size());
  } else {
    LoadState(t, p, bytes.size());
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  kestrel_runtime_options_t ro;
  kestrel_runtime_options_init(&ro);
  ro.plugin_path = KESTREL_FUZZ_REF_PLUGIN;
  Must(kestrel_runtime_create(&ro, &g_runtime), "creating the runtime");
  const std::string path = kestrel::fuzz::ModelsDir() + "/stories260K.gguf";
  kestrel_model_options_t mo;
  kestrel_model_options_init(&mo);
  mo.device = "ref";
  Must(kestrel_model_load(g_runtime, path.data(), path.size(), &mo, &g_model), path.c_str());
  kestrel_model_info_t info;
  info.struct_size = sizeof info;
  Must(kestrel_model_get_info(g_model, &info), "model info");
  g_vocab = static_cast<int32_t>(info.vocab_size);
  MakeTarget(&g_targets[0], KESTREL_KV_F32);
  MakeTarget(&g_targets[1], KESTREL_KV_F16);
  g_memfd = memfd_create("session_state_fuzzer.kprefix", MFD_CLOEXEC);
  KESTREL_FUZZ_CHECK(g_memfd >= 0, "memfd_create failed");
  g_memfd_path = "/proc/self/fd/" + std::to_string(g_memfd);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t flags = data[0];
  std::string bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  RunOne(bytes, flags);
  if (flags & 1) {
    const std::string unsealed = bytes;
    if (bytes.compare(0, 4, kestrel::runtime::kPrefixMagic) == 0) {
      kestrel::fuzz::ResealDataChecksum<kestrel::kprefix::PrefixCache>(
          &bytes, [](flatbuffers::Verifier& v) { return kestrel::kprefix::VerifyPrefixCacheBuffer(v); });
    } else {
      kestrel::fuzz::ResealDataChecksum<kestrel::kstate::SessionState>(
          &bytes, [](flatbuffers::Verifier& v) { return kestrel::kstate::VerifySessionStateBuffer(v); });
    }
    kestrel::fuzz::ResealContainer(&bytes);
    if (bytes != unsealed) RunOne(bytes, flags);
  }
  return 0;
}
