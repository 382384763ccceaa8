/* ABI behaviour of the public C API as an older or careless client sees it.
 *
 *  1. An older client: options structs that are only a prefix of today's ("v0": struct_size and the
 *     first field) are accepted with their smaller struct_size, the missing tail gets its default,
 *     and out-structs with a smaller struct_size are filled only up to that size.
 *  2. struct_size 0 or 3 (smaller than any released layout) is INVALID_ARGUMENT with a message,
 *     and the out-parameter is left untouched.
 *  3. NULL for every pointer argument of every entry point: INVALID_ARGUMENT whose message names
 *     the argument (as spelled in the header); nothing crashes. Functions without a status accept
 *     NULL as documented.
 *
 * Needs KESTREL_MODELS_DIR (stories260K.gguf) and finds plugins through KESTREL_PLUGIN_PATH, both
 * set by ctest. Plain C11 with its own tiny check macros, so it runs wherever a C compiler does. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kestrel/kestrel.h"

static int g_failures = 0;
static int g_checks = 0;

#define CHECK(cond)                                                         \
  do {                                                                      \
    ++g_checks;                                                             \
    if (!(cond)) {                                                          \
      ++g_failures;                                                         \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                       \
  } while (0)

/* Checks that `status` is OK; prints it otherwise. Frees it. Returns 1 on OK. */
#define EXPECT_OK(expr) ExpectOk((expr), #expr, __LINE__)
static int ExpectOk(kestrel_status_t* status, const char* what, int line) {
  ++g_checks;
  if (status == NULL) return 1;
  ++g_failures;
  fprintf(stderr, "%s:%d: %s failed: %s: %s\n", __FILE__, line, what,
          kestrel_status_code_name(kestrel_status_code(status)), kestrel_status_message(status));
  kestrel_status_free(status);
  return 0;
}

/* Checks that `status` has `code` and that its message contains `needle` (NULL: any non-empty
 * message). Frees it. */
#define EXPECT_ERROR(expr, code, needle) ExpectError((expr), (code), (needle), #expr, __LINE__)
static void ExpectError(kestrel_status_t* status, kestrel_status_code_t code, const char* needle,
                        const char* what, int line) {
  ++g_checks;
  if (status == NULL) {
    ++g_failures;
    fprintf(stderr, "%s:%d: %s succeeded; expected %s\n", __FILE__, line, what,
            kestrel_status_code_name(code));
    return;
  }
  const char* message = kestrel_status_message(status);
  if (kestrel_status_code(status) != code) {
    ++g_failures;
    fprintf(stderr, "%s:%d: %s gave %s (%s); expected %s\n", __FILE__, line, what,
            kestrel_status_code_name(kestrel_status_code(status)), message,
            kestrel_status_code_name(code));
  } else if (message == NULL || message[0] == '\0') {
    ++g_failures;
    fprintf(stderr, "%s:%d: %s gave %s with an empty message\n", __FILE__, line, what,
            kestrel_status_code_name(code));
  } else if (needle != NULL && strstr(message, needle) == NULL) {
    ++g_failures;
    fprintf(stderr, "%s:%d: %s: message \"%s\" does not name '%s'\n", __FILE__, line, what,
            message, needle);
  }
  kestrel_status_free(status);
}

/* ---- "v0" prefixes of today's structs, as a client compiled against an older header has them. */

typedef struct {
  uint32_t struct_size;
  const char* plugin_path;
} runtime_options_v0;

typedef struct {
  uint32_t struct_size;
  const char* device;
} model_options_v0;

typedef struct {
  uint32_t struct_size;
  uint32_t context_length;
} session_options_v0;

typedef struct {
  uint32_t struct_size;
  float temperature;
} sampler_options_v0;

typedef struct {
  uint32_t struct_size;
  uint32_t max_new_tokens;
} generate_options_v0;

/* An out-struct with a small struct_size followed by poison: the library must not write past
 * struct_size. */
enum { kPoison = 0xA5 };
typedef union {
  kestrel_model_info_t info;
  unsigned char bytes[sizeof(kestrel_model_info_t) + 64];
} model_info_buffer;

static int IsPoisonedFrom(const unsigned char* bytes, size_t from, size_t to) {
  for (size_t i = from; i < to; ++i) {
    if (bytes[i] != kPoison) return 0;
  }
  return 1;
}

static char g_model_path[4096];

/* Generates greedily from `prompt` and records the token ids. */
typedef struct {
  int32_t ids[64];
  size_t n;
} token_record;

static bool RecordToken(void* user_data, int32_t token, const char* text, size_t text_length) {
  token_record* r = (token_record*)user_data;
  (void)text;
  (void)text_length;
  if (r->n < sizeof(r->ids) / sizeof(r->ids[0])) r->ids[r->n++] = token;
  return true;
}

/* ---- 1. Older (smaller) structs are accepted and defaulted ------------------------------------ */

static void TestOldStructsAccepted(void) {
  const char* plugin_path = getenv("KESTREL_PLUGIN_PATH");

  runtime_options_v0 rt_v0;
  memset(&rt_v0, 0, sizeof(rt_v0));
  rt_v0.struct_size = (uint32_t)sizeof(rt_v0);
  rt_v0.plugin_path = plugin_path;
  kestrel_runtime_t* runtime = NULL;
  if (!EXPECT_OK(kestrel_runtime_create((const kestrel_runtime_options_t*)&rt_v0, &runtime))) {
    return;
  }
  CHECK(runtime != NULL);
  CHECK(kestrel_runtime_device_count(runtime) > 0);

  model_options_v0 model_v0;
  memset(&model_v0, 0, sizeof(model_v0));
  model_v0.struct_size = (uint32_t)sizeof(model_v0);
  model_v0.device = NULL;
  kestrel_model_t* model = NULL;
  if (!EXPECT_OK(kestrel_model_load(runtime, g_model_path, strlen(g_model_path),
                                    (const kestrel_model_options_t*)&model_v0, &model))) {
    kestrel_runtime_destroy(runtime);
    return;
  }
  CHECK(model != NULL);

  /* Out-struct filled only up to its struct_size. */
  model_info_buffer buffer;
  memset(&buffer, kPoison, sizeof(buffer));
  const size_t info_v0_size = offsetof(kestrel_model_info_t, device) + sizeof(const char*);
  buffer.info.struct_size = (uint32_t)info_v0_size;
  if (EXPECT_OK(kestrel_model_get_info(model, &buffer.info))) {
    CHECK(buffer.info.architecture != NULL && strcmp(buffer.info.architecture, "llama") == 0);
    CHECK(buffer.info.device != NULL && buffer.info.device[0] != '\0');
    CHECK(IsPoisonedFrom(buffer.bytes, info_v0_size, sizeof(buffer.bytes)));
  }
  kestrel_model_info_t full_info;
  memset(&full_info, 0, sizeof(full_info));
  full_info.struct_size = sizeof(full_info);
  EXPECT_OK(kestrel_model_get_info(model, &full_info));

  /* Reference run with today's structs: greedy, 8 tokens. */
  token_record reference = {{0}, 0};
  {
    kestrel_sampler_options_t sampler;
    kestrel_sampler_options_init(&sampler);
    sampler.temperature = 0.0f;
    kestrel_session_options_t options;
    kestrel_session_options_init(&options);
    options.sampler = &sampler;
    kestrel_session_t* session = NULL;
    if (EXPECT_OK(kestrel_session_create(model, &options, &session))) {
      kestrel_generate_options_t gen;
      kestrel_generate_options_init(&gen);
      gen.max_new_tokens = 8;
      gen.on_token = RecordToken;
      gen.user_data = &reference;
      EXPECT_OK(kestrel_session_generate(session, "Once upon a time", 16, &gen, NULL));
      kestrel_session_destroy(session);
    }
  }

  /* The same run with v0 session, sampler and generate options (greedy, 8 tokens) gives the same
   * tokens, so the defaults of the missing fields were filled in (add_bos true and so on). */
  {
    sampler_options_v0 sampler_v0;
    memset(&sampler_v0, 0, sizeof(sampler_v0));
    sampler_v0.struct_size = (uint32_t)sizeof(sampler_v0);
    sampler_v0.temperature = 0.0f;
    kestrel_session_options_t options; /* today's struct pointing at an old sampler struct */
    kestrel_session_options_init(&options);
    options.sampler = (const kestrel_sampler_options_t*)&sampler_v0;
    kestrel_session_t* session = NULL;
    if (EXPECT_OK(kestrel_session_create(model, &options, &session))) {
      /* Today's generate options: the streamed ids must match the reference exactly. */
      token_record streamed = {{0}, 0};
      kestrel_generate_options_t gen;
      kestrel_generate_options_init(&gen);
      gen.max_new_tokens = 8;
      gen.on_token = RecordToken;
      gen.user_data = &streamed;
      if (EXPECT_OK(kestrel_session_generate(session, "Once upon a time", 16, &gen, NULL))) {
        CHECK(streamed.n == reference.n);
        CHECK(memcmp(streamed.ids, reference.ids, reference.n * sizeof(int32_t)) == 0);
      }

      /* v0 generate options (no on_token, add_bos, keep_context): defaults apply, so the run
       * starts from an empty cache with BOS and generates the same number of tokens. */
      generate_options_v0 gen_v0;
      memset(&gen_v0, 0, sizeof(gen_v0));
      gen_v0.struct_size = (uint32_t)sizeof(gen_v0);
      gen_v0.max_new_tokens = 8;
      kestrel_generate_stats_t stats;
      memset(&stats, 0, sizeof(stats));
      stats.struct_size = sizeof(stats);
      if (EXPECT_OK(kestrel_session_generate(session, "Once upon a time", 16,
                                             (const kestrel_generate_options_t*)&gen_v0,
                                             &stats))) {
        CHECK(stats.n_generated_tokens == reference.n);
        CHECK(stats.n_generated_tokens >= 1 && stats.n_generated_tokens <= 8);
        size_t with_bos = 0;
        if (EXPECT_OK(kestrel_tokenize(model, "Once upon a time", 16, true, NULL, 0,
                                       &with_bos))) {
          CHECK(stats.n_prompt_tokens == with_bos); /* add_bos defaulted to true */
        }
      }
      kestrel_session_destroy(session);
    }

    /* v0 session options: only context_length. Sampler defaults (not greedy) still work. */
    session_options_v0 session_v0;
    memset(&session_v0, 0, sizeof(session_v0));
    session_v0.struct_size = (uint32_t)sizeof(session_v0);
    session_v0.context_length = 0; /* the model's */
    session = NULL;
    if (EXPECT_OK(kestrel_session_create(
            model, (const kestrel_session_options_t*)&session_v0, &session))) {
      kestrel_generate_options_t gen;
      kestrel_generate_options_init(&gen);
      gen.max_new_tokens = 4;
      token_record record = {{0}, 0};
      gen.on_token = RecordToken;
      gen.user_data = &record;
      EXPECT_OK(kestrel_session_generate(session, "Once upon a time", 16, &gen, NULL));
      CHECK(record.n >= 1 && record.n <= 4);
      for (size_t i = 0; i < record.n; ++i) {
        CHECK(record.ids[i] >= 0 && (uint32_t)record.ids[i] < full_info.vocab_size);
      }
      kestrel_session_destroy(session);
    }
  }

  /* Generate stats with an old (smaller) struct_size: filled up to it, nothing beyond. */
  {
    kestrel_session_t* session = NULL;
    if (EXPECT_OK(kestrel_session_create(model, NULL, &session))) {
      union {
        kestrel_generate_stats_t stats;
        unsigned char bytes[sizeof(kestrel_generate_stats_t) + 32];
      } out;
      const size_t stats_v0_size = offsetof(kestrel_generate_stats_t, n_generated_tokens) +
                                   sizeof(uint32_t);
      memset(&out, kPoison, sizeof(out));
      out.stats.struct_size = (uint32_t)stats_v0_size;
      kestrel_generate_options_t gen;
      kestrel_generate_options_init(&gen);
      gen.max_new_tokens = 2;
      if (EXPECT_OK(kestrel_session_generate(session, "Once", 4, &gen, &out.stats))) {
        CHECK(out.stats.n_generated_tokens >= 1 && out.stats.n_generated_tokens <= 2);
        CHECK(IsPoisonedFrom(out.bytes, stats_v0_size, sizeof(out.bytes)));
      }
      kestrel_session_destroy(session);
    }
  }

  /* Plugin and device info with the smallest useful struct_size (struct_size + name). */
  {
    union {
      kestrel_device_info_t info;
      unsigned char bytes[sizeof(kestrel_device_info_t) + 32];
    } out;
    const size_t v0_size = offsetof(kestrel_device_info_t, name) + sizeof(const char*);
    memset(&out, kPoison, sizeof(out));
    out.info.struct_size = (uint32_t)v0_size;
    if (EXPECT_OK(kestrel_runtime_device_info(runtime, 0, &out.info))) {
      CHECK(out.info.name != NULL && out.info.name[0] != '\0');
      CHECK(IsPoisonedFrom(out.bytes, v0_size, sizeof(out.bytes)));
    }
  }
  if (kestrel_runtime_plugin_count(runtime) > 0) {
    union {
      kestrel_plugin_info_t info;
      unsigned char bytes[sizeof(kestrel_plugin_info_t) + 32];
    } out;
    const size_t v0_size = offsetof(kestrel_plugin_info_t, name) + sizeof(const char*);
    memset(&out, kPoison, sizeof(out));
    out.info.struct_size = (uint32_t)v0_size;
    if (EXPECT_OK(kestrel_runtime_plugin_info(runtime, 0, &out.info))) {
      CHECK(out.info.name != NULL && out.info.name[0] != '\0');
      CHECK(IsPoisonedFrom(out.bytes, v0_size, sizeof(out.bytes)));
    }
  }

  kestrel_model_release(model);
  kestrel_runtime_destroy(runtime);
}

/* ---- 2. struct_size below any released layout ------------------------------------------------ */

static void TestTooSmallStructSize(kestrel_runtime_t* runtime, kestrel_model_t* model,
                                   kestrel_session_t* session) {
  static const uint32_t kBadSizes[] = {0, 3};
  for (size_t k = 0; k < sizeof(kBadSizes) / sizeof(kBadSizes[0]); ++k) {
    const uint32_t bad = kBadSizes[k];
    /* Out-params must be left as they were on failure. */
    void* const sentinel = (void*)&g_checks;

    kestrel_runtime_options_t rt_options;
    kestrel_runtime_options_init(&rt_options);
    rt_options.struct_size = bad;
    kestrel_runtime_t* out_runtime = (kestrel_runtime_t*)sentinel;
    EXPECT_ERROR(kestrel_runtime_create(&rt_options, &out_runtime),
                 KESTREL_STATUS_INVALID_ARGUMENT, "struct_size");
    CHECK(out_runtime == (kestrel_runtime_t*)sentinel);

    kestrel_model_options_t model_options;
    kestrel_model_options_init(&model_options);
    model_options.struct_size = bad;
    kestrel_model_t* out_model = (kestrel_model_t*)sentinel;
    EXPECT_ERROR(kestrel_model_load(runtime, g_model_path, strlen(g_model_path), &model_options,
                                    &out_model),
                 KESTREL_STATUS_INVALID_ARGUMENT, "struct_size");
    CHECK(out_model == (kestrel_model_t*)sentinel);

    kestrel_session_options_t session_options;
    kestrel_session_options_init(&session_options);
    session_options.struct_size = bad;
    kestrel_session_t* out_session = (kestrel_session_t*)sentinel;
    EXPECT_ERROR(kestrel_session_create(model, &session_options, &out_session),
                 KESTREL_STATUS_INVALID_ARGUMENT, "struct_size");
    CHECK(out_session == (kestrel_session_t*)sentinel);

    kestrel_sampler_options_t sampler;
    kestrel_sampler_options_init(&sampler);
    sampler.struct_size = bad;
    kestrel_session_options_init(&session_options);
    session_options.sampler = &sampler;
    EXPECT_ERROR(kestrel_session_create(model, &session_options, &out_session),
                 KESTREL_STATUS_INVALID_ARGUMENT, "struct_size");
    CHECK(out_session == (kestrel_session_t*)sentinel);

    kestrel_generate_options_t gen;
    kestrel_generate_options_init(&gen);
    gen.struct_size = bad;
    gen.max_new_tokens = 1;
    EXPECT_ERROR(kestrel_session_generate(session, "Once", 4, &gen, NULL),
                 KESTREL_STATUS_INVALID_ARGUMENT, "struct_size");

    kestrel_generate_options_init(&gen);
    gen.max_new_tokens = 1;
    kestrel_generate_stats_t stats;
    memset(&stats, 0, sizeof(stats));
    stats.struct_size = bad;
    EXPECT_ERROR(kestrel_session_generate(session, "Once", 4, &gen, &stats),
                 KESTREL_STATUS_INVALID_ARGUMENT, "struct_size");

    kestrel_model_info_t info;
    memset(&info, 0, sizeof(info));
    info.struct_size = bad;
    EXPECT_ERROR(kestrel_model_get_info(model, &info), KESTREL_STATUS_INVALID_ARGUMENT,
                 "struct_size");

    kestrel_tensor_type_summary_t summary;
    memset(&summary, 0, sizeof(summary));
    summary.struct_size = bad;
    EXPECT_ERROR(kestrel_model_tensor_type_summary(model, 0, &summary),
                 KESTREL_STATUS_INVALID_ARGUMENT, "struct_size");

    kestrel_device_info_t device;
    memset(&device, 0, sizeof(device));
    device.struct_size = bad;
    EXPECT_ERROR(kestrel_runtime_device_info(runtime, 0, &device),
                 KESTREL_STATUS_INVALID_ARGUMENT, "struct_size");

    if (kestrel_runtime_plugin_count(runtime) > 0) {
      kestrel_plugin_info_t plugin;
      memset(&plugin, 0, sizeof(plugin));
      plugin.struct_size = bad;
      EXPECT_ERROR(kestrel_runtime_plugin_info(runtime, 0, &plugin),
                   KESTREL_STATUS_INVALID_ARGUMENT, "struct_size");
    }
  }
}

/* ---- 3. NULL arguments ------------------------------------------------------------------------ */

static void TestNullArguments(kestrel_runtime_t* runtime, kestrel_model_t* model,
                              kestrel_session_t* session) {
  const kestrel_status_code_t kInvalid = KESTREL_STATUS_INVALID_ARGUMENT;

  /* status.h and version.h */
  CHECK(kestrel_status_code(NULL) == KESTREL_STATUS_OK);
  CHECK(kestrel_status_message(NULL) != NULL && kestrel_status_message(NULL)[0] == '\0');
  kestrel_status_free(NULL);
  CHECK(strcmp(kestrel_status_code_name(KESTREL_STATUS_INVALID_ARGUMENT), "INVALID_ARGUMENT") ==
        0);
  CHECK(strcmp(kestrel_status_code_name((kestrel_status_code_t)12345), "UNKNOWN_CODE") == 0);
  CHECK(kestrel_version() != NULL);
  CHECK(kestrel_version_number() / 10000 == KESTREL_VERSION_MAJOR);

  /* The *_options_init functions accept NULL. */
  kestrel_runtime_options_init(NULL);
  kestrel_model_options_init(NULL);
  kestrel_sampler_options_init(NULL);
  kestrel_session_options_init(NULL);
  kestrel_generate_options_init(NULL);

  /* runtime.h */
  EXPECT_ERROR(kestrel_runtime_create(NULL, NULL), kInvalid, "out_runtime");
  kestrel_runtime_destroy(NULL);
  CHECK(kestrel_runtime_plugin_count(NULL) == 0);
  CHECK(kestrel_runtime_device_count(NULL) == 0);
  kestrel_plugin_info_t plugin;
  memset(&plugin, 0, sizeof(plugin));
  plugin.struct_size = sizeof(plugin);
  EXPECT_ERROR(kestrel_runtime_plugin_info(NULL, 0, &plugin), kInvalid, "runtime");
  EXPECT_ERROR(kestrel_runtime_plugin_info(runtime, 0, NULL), kInvalid, "out_info");
  EXPECT_ERROR(kestrel_runtime_plugin_info(runtime, (size_t)-1, &plugin),
               KESTREL_STATUS_OUT_OF_RANGE, NULL);
  kestrel_device_info_t device;
  memset(&device, 0, sizeof(device));
  device.struct_size = sizeof(device);
  EXPECT_ERROR(kestrel_runtime_device_info(NULL, 0, &device), kInvalid, "runtime");
  EXPECT_ERROR(kestrel_runtime_device_info(runtime, 0, NULL), kInvalid, "out_info");
  EXPECT_ERROR(kestrel_runtime_device_info(runtime, (size_t)-1, &device),
               KESTREL_STATUS_OUT_OF_RANGE, NULL);

  /* model.h */
  kestrel_model_t* out_model = NULL;
  EXPECT_ERROR(kestrel_model_load(NULL, g_model_path, strlen(g_model_path), NULL, &out_model),
               kInvalid, "runtime");
  EXPECT_ERROR(kestrel_model_load(runtime, NULL, 5, NULL, &out_model), kInvalid, "path");
  EXPECT_ERROR(kestrel_model_load(runtime, g_model_path, strlen(g_model_path), NULL, NULL),
               kInvalid, "out_model");
  CHECK(out_model == NULL);
  static const char kMissing[] = "/nonexistent/kestrel/no_such_model.gguf";
  EXPECT_ERROR(kestrel_model_load(runtime, kMissing, strlen(kMissing), NULL, &out_model),
               KESTREL_STATUS_NOT_FOUND, "no_such_model.gguf");
  CHECK(out_model == NULL);
  kestrel_model_retain(NULL);
  kestrel_model_release(NULL);

  kestrel_model_info_t info;
  memset(&info, 0, sizeof(info));
  info.struct_size = sizeof(info);
  EXPECT_ERROR(kestrel_model_get_info(NULL, &info), kInvalid, "model");
  EXPECT_ERROR(kestrel_model_get_info(model, NULL), kInvalid, "out_info");

  CHECK(kestrel_model_tensor_type_count(NULL) == 0);
  kestrel_tensor_type_summary_t summary;
  memset(&summary, 0, sizeof(summary));
  summary.struct_size = sizeof(summary);
  EXPECT_ERROR(kestrel_model_tensor_type_summary(NULL, 0, &summary), kInvalid, "model");
  EXPECT_ERROR(kestrel_model_tensor_type_summary(model, 0, NULL), kInvalid, "out_summary");
  EXPECT_ERROR(kestrel_model_tensor_type_summary(model, (size_t)-1, &summary),
               KESTREL_STATUS_OUT_OF_RANGE, NULL);

  int32_t tokens[8];
  size_t required = 0;
  EXPECT_ERROR(kestrel_tokenize(NULL, "hi", 2, true, tokens, 8, &required), kInvalid, "model");
  EXPECT_ERROR(kestrel_tokenize(model, NULL, 2, true, tokens, 8, &required), kInvalid, "text");
  EXPECT_ERROR(kestrel_tokenize(model, "hi", 2, true, tokens, 8, NULL), kInvalid, "out_required");
  EXPECT_ERROR(kestrel_tokenize(model, "hi", 2, true, NULL, 8, &required), kInvalid, "out_tokens");

  char text[16];
  const int32_t some_tokens[2] = {1, 2};
  EXPECT_ERROR(kestrel_detokenize(NULL, some_tokens, 2, false, text, sizeof(text), &required),
               kInvalid, "model");
  EXPECT_ERROR(kestrel_detokenize(model, NULL, 2, false, text, sizeof(text), &required), kInvalid,
               "tokens");
  EXPECT_ERROR(kestrel_detokenize(model, some_tokens, 2, false, text, sizeof(text), NULL),
               kInvalid, "out_required");
  EXPECT_ERROR(kestrel_detokenize(model, some_tokens, 2, false, NULL, sizeof(text), &required),
               kInvalid, "out_text");

  EXPECT_ERROR(kestrel_token_to_piece(NULL, 1, text, sizeof(text), &required), kInvalid, "model");
  EXPECT_ERROR(kestrel_token_to_piece(model, 1, text, sizeof(text), NULL), kInvalid,
               "out_required");
  EXPECT_ERROR(kestrel_token_to_piece(model, 1, NULL, sizeof(text), &required), kInvalid,
               "out_piece");

  /* session.h */
  kestrel_session_t* out_session = NULL;
  EXPECT_ERROR(kestrel_session_create(NULL, NULL, &out_session), kInvalid, "model");
  EXPECT_ERROR(kestrel_session_create(model, NULL, NULL), kInvalid, "out_session");
  CHECK(out_session == NULL);
  kestrel_session_destroy(NULL);
  kestrel_session_cancel(NULL);

  kestrel_generate_options_t gen;
  kestrel_generate_options_init(&gen);
  gen.max_new_tokens = 1;
  EXPECT_ERROR(kestrel_session_generate(NULL, "Once", 4, &gen, NULL), kInvalid, "session");
  EXPECT_ERROR(kestrel_session_generate(session, NULL, 4, &gen, NULL), kInvalid, "prompt");
  EXPECT_ERROR(kestrel_session_generate(session, "", 0, &gen, NULL), kInvalid, "prompt");
  EXPECT_ERROR(kestrel_session_generate_tokens(NULL, some_tokens, 2, &gen, NULL), kInvalid,
               "session");
  EXPECT_ERROR(kestrel_session_generate_tokens(session, NULL, 2, &gen, NULL), kInvalid,
               "prompt_tokens");

  EXPECT_ERROR(kestrel_session_decode(NULL, some_tokens, 1), kInvalid, "session");
  EXPECT_ERROR(kestrel_session_decode(session, NULL, 1), kInvalid, "tokens");
  float logits[4];
  EXPECT_ERROR(kestrel_session_get_logits(NULL, logits, 4, &required), kInvalid, "session");
  EXPECT_ERROR(kestrel_session_get_logits(session, logits, 4, NULL), kInvalid, "out_required");
  CHECK(kestrel_session_token_count(NULL) == 0);
  EXPECT_ERROR(kestrel_session_truncate(NULL, 0), kInvalid, "session");
  int32_t token = -1;
  EXPECT_ERROR(kestrel_session_sample(NULL, &token), kInvalid, "session");
  EXPECT_ERROR(kestrel_session_sample(session, NULL), kInvalid, "out_token");
  CHECK(token == -1);
}

int main(void) {
  const char* models_dir = getenv("KESTREL_MODELS_DIR");
  if (models_dir == NULL || models_dir[0] == '\0') {
    fprintf(stderr, "old_struct_size_test: KESTREL_MODELS_DIR is not set\n");
    return 1;
  }
  snprintf(g_model_path, sizeof(g_model_path), "%s/stories260K.gguf", models_dir);

  TestOldStructsAccepted();

  kestrel_runtime_t* runtime = NULL;
  kestrel_model_t* model = NULL;
  kestrel_session_t* session = NULL;
  if (EXPECT_OK(kestrel_runtime_create(NULL, &runtime)) &&
      EXPECT_OK(kestrel_model_load(runtime, g_model_path, strlen(g_model_path), NULL, &model)) &&
      EXPECT_OK(kestrel_session_create(model, NULL, &session))) {
    TestTooSmallStructSize(runtime, model, session);
    TestNullArguments(runtime, model, session);
  }
  kestrel_session_destroy(session);
  kestrel_model_release(model);
  kestrel_runtime_destroy(runtime);

  printf("old_struct_size_test: %d checks, %d failed\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
