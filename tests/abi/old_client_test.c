/* An old client: compiled against tests/abi/old_headers (a frozen "0.0" edition of the public
 * headers whose options and info structs lack their last field(s)), linked to today's libkestrel.
 *
 *   abi_old_client_test generate   runtime, model, session and a greedy generation with the old
 *                                  structs; the token ids must equal the golden ids of
 *                                  stories260K (ctest abi_old_client)
 *   abi_old_client_test init       the kestrel_*_options_init functions must not write past the
 *                                  old struct (ctest abi_old_client_init, see CMakeLists.txt)
 *
 * Needs KESTREL_MODELS_DIR (stories260K.gguf) and KESTREL_PLUGIN_PATH, both set by ctest.
 * The golden ids come from stories260K.golden.json through the generated old_client_golden.h. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kestrel/kestrel.h"
#include "old_client_golden.h"

/* Proof that the old headers, not today's, were included. */
#if KESTREL_VERSION_NUMBER != 0
#error "old_client_test.c must be compiled against tests/abi/old_headers (version 0.0)"
#endif

static int g_failures = 0;

#define CHECK(cond)                                                               \
  do {                                                                            \
    if (!(cond)) {                                                                \
      ++g_failures;                                                               \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);    \
    }                                                                             \
  } while (0)

static int Ok(kestrel_status_t* status, const char* what) {
  if (status == NULL) return 1;
  ++g_failures;
  fprintf(stderr, "old_client_test: %s failed: %s: %s\n", what,
          kestrel_status_code_name(kestrel_status_code(status)), kestrel_status_message(status));
  kestrel_status_free(status);
  return 0;
}

/* Room past an old struct: today's library may know a bigger struct. */
enum { kGuardBytes = 256, kGuard = 0x5A };

/* Calls init(&old) the way a size-aware init would behave for this old client: the library fills
 * its defaults in scratch storage that is big enough for any newer struct, and the client keeps
 * the first sizeof(old) bytes with struct_size = sizeof(old). (What the plain init call does to an
 * old struct is the subject of the `init` mode.) */
#define OLD_INIT(init_fn, type, var)                          \
  do {                                                        \
    unsigned char scratch_[sizeof(type) + kGuardBytes];       \
    memset(scratch_, 0, sizeof(scratch_));                    \
    init_fn((type*)(void*)scratch_);                          \
    memcpy(&(var), scratch_, sizeof(type));                   \
    (var).struct_size = (uint32_t)sizeof(type);               \
  } while (0)

typedef struct {
  int32_t ids[KESTREL_GOLDEN_N_TOKENS + 8];
  size_t n;
} token_record;

static bool RecordToken(void* user_data, int32_t token, const char* text, size_t length) {
  token_record* r = (token_record*)user_data;
  (void)text;
  (void)length;
  if (token != KESTREL_TOKEN_NONE && r->n < sizeof(r->ids) / sizeof(r->ids[0])) {
    r->ids[r->n++] = token;
  }
  return true;
}

static int Generate(const char* model_path) {
  kestrel_runtime_options_t runtime_options;
  OLD_INIT(kestrel_runtime_options_init, kestrel_runtime_options_t, runtime_options);
  runtime_options.plugin_path = getenv("KESTREL_PLUGIN_PATH");
  kestrel_runtime_t* runtime = NULL;
  if (!Ok(kestrel_runtime_create(&runtime_options, &runtime), "kestrel_runtime_create")) return 1;

  /* Out-structs with the old (smaller) struct_size, followed by guard bytes the library must not
   * touch. */
  struct {
    kestrel_device_info_t info;
    unsigned char guard[kGuardBytes];
  } device;
  memset(&device, kGuard, sizeof(device));
  device.info.struct_size = (uint32_t)sizeof(device.info);
  CHECK(kestrel_runtime_device_count(runtime) > 0);
  if (Ok(kestrel_runtime_device_info(runtime, 0, &device.info), "kestrel_runtime_device_info")) {
    CHECK(device.info.name != NULL && device.info.name[0] != '\0');
    for (size_t i = 0; i < sizeof(device.guard); ++i) CHECK(device.guard[i] == kGuard);
  }

  kestrel_model_options_t model_options;
  OLD_INIT(kestrel_model_options_init, kestrel_model_options_t, model_options);
  CHECK(model_options.use_mmap);
  model_options.device = "ref";
  kestrel_model_t* model = NULL;
  kestrel_session_t* session = NULL;
  if (!Ok(kestrel_model_load(runtime, model_path, strlen(model_path), &model_options, &model),
          "kestrel_model_load")) {
    goto done;
  }

  struct {
    kestrel_model_info_t info;
    unsigned char guard[kGuardBytes];
  } info;
  memset(&info, kGuard, sizeof(info));
  info.info.struct_size = (uint32_t)sizeof(info.info);
  if (Ok(kestrel_model_get_info(model, &info.info), "kestrel_model_get_info")) {
    CHECK(strcmp(info.info.architecture, "llama") == 0);
    CHECK(strcmp(info.info.device, "ref") == 0);
    CHECK(info.info.vocab_size > 0);
    for (size_t i = 0; i < sizeof(info.guard); ++i) CHECK(info.guard[i] == kGuard);
  }

  kestrel_sampler_options_t sampler;
  OLD_INIT(kestrel_sampler_options_init, kestrel_sampler_options_t, sampler);
  sampler.temperature = 0.0f;
  kestrel_session_options_t session_options;
  OLD_INIT(kestrel_session_options_init, kestrel_session_options_t, session_options);
  session_options.sampler = &sampler;
  if (!Ok(kestrel_session_create(model, &session_options, &session), "kestrel_session_create")) {
    goto done;
  }

  kestrel_generate_options_t gen;
  OLD_INIT(kestrel_generate_options_init, kestrel_generate_options_t, gen);
  CHECK(gen.add_bos);
  gen.max_new_tokens = KESTREL_GOLDEN_N_TOKENS;
  token_record record;
  memset(&record, 0, sizeof(record));
  gen.on_token = RecordToken;
  gen.user_data = &record;
  struct {
    kestrel_generate_stats_t stats;
    unsigned char guard[kGuardBytes];
  } stats;
  memset(&stats, kGuard, sizeof(stats));
  stats.stats.struct_size = (uint32_t)sizeof(stats.stats);
  static const char kPrompt[] = KESTREL_GOLDEN_PROMPT;
  /* Twice: the second run must start from an empty cache again (keep_context is past the old
   * struct, so it keeps its default, false). */
  for (int run = 0; run < 2; ++run) {
    record.n = 0;
    if (!Ok(kestrel_session_generate(session, kPrompt, sizeof(kPrompt) - 1, &gen, &stats.stats),
            "kestrel_session_generate")) {
      goto done;
    }
    static const int32_t kGolden[] = {KESTREL_GOLDEN_IDS};
    CHECK(record.n == KESTREL_GOLDEN_N_TOKENS);
    CHECK(memcmp(record.ids, kGolden, sizeof(kGolden)) == 0);
    if (record.n != KESTREL_GOLDEN_N_TOKENS || memcmp(record.ids, kGolden, sizeof(kGolden)) != 0) {
      fprintf(stderr, "old_client_test: run %d: got", run);
      for (size_t i = 0; i < record.n; ++i) fprintf(stderr, " %d", (int)record.ids[i]);
      fprintf(stderr, "\n");
    }
    CHECK(stats.stats.n_generated_tokens == KESTREL_GOLDEN_N_TOKENS);
    for (size_t i = 0; i < sizeof(stats.guard); ++i) CHECK(stats.guard[i] == kGuard);
  }
  CHECK(kestrel_session_token_count(session) < 2 * KESTREL_GOLDEN_N_TOKENS);
  printf("old_client_test: headers %d.%d, library %s: %u golden tokens\n", KESTREL_VERSION_MAJOR,
         KESTREL_VERSION_MINOR, kestrel_version(), (unsigned)record.n);

done:
  kestrel_session_destroy(session);
  kestrel_model_release(model);
  kestrel_runtime_destroy(runtime);
  return g_failures == 0 ? 0 : 1;
}

/* The plain init call of an old client: the struct is followed by guard bytes; anything the
 * library writes past sizeof(old struct) is a buffer overflow in a real old client. */
#define CHECK_INIT(init_fn, type)                                                          \
  do {                                                                                     \
    struct {                                                                               \
      type options;                                                                        \
      unsigned char guard[kGuardBytes];                                                    \
    } s_;                                                                                  \
    memset(&s_, kGuard, sizeof(s_));                                                       \
    init_fn(&s_.options);                                                                  \
    size_t written_ = 0;                                                                   \
    for (size_t i_ = 0; i_ < sizeof(s_.guard); ++i_) {                                     \
      if (s_.guard[i_] != kGuard) written_ = i_ + 1;                                       \
    }                                                                                      \
    if (written_ > 0 || s_.options.struct_size != sizeof(type)) {                          \
      ++g_failures;                                                                        \
      fprintf(stderr,                                                                      \
              "old_client_test: " #init_fn " on a %u-byte old struct wrote %u byte(s) "   \
              "past it and set struct_size = %u\n",                                        \
              (unsigned)sizeof(type), (unsigned)written_, (unsigned)s_.options.struct_size); \
    }                                                                                      \
  } while (0)

static int Init(void) {
  CHECK_INIT(kestrel_runtime_options_init, kestrel_runtime_options_t);
  CHECK_INIT(kestrel_model_options_init, kestrel_model_options_t);
  CHECK_INIT(kestrel_sampler_options_init, kestrel_sampler_options_t);
  CHECK_INIT(kestrel_session_options_init, kestrel_session_options_t);
  CHECK_INIT(kestrel_generate_options_init, kestrel_generate_options_t);
  if (g_failures == 0) printf("old_client_test: init functions respect the old struct sizes\n");
  return g_failures == 0 ? 0 : 1;
}

int main(int argc, char** argv) {
  if (argc == 2 && strcmp(argv[1], "init") == 0) return Init();
  if (argc != 2 || strcmp(argv[1], "generate") != 0) {
    fprintf(stderr, "usage: abi_old_client_test generate|init\n");
    return 2;
  }
  const char* models_dir = getenv("KESTREL_MODELS_DIR");
  if (models_dir == NULL || models_dir[0] == '\0') {
    fprintf(stderr, "old_client_test: KESTREL_MODELS_DIR is not set\n");
    return 1;
  }
  char model_path[4096];
  snprintf(model_path, sizeof(model_path), "%s/stories260K.gguf", models_dir);
  return Generate(model_path);
}
