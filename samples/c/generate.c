/* Kestrel C sample: load a model and stream a greedy generation of 32 tokens.
 *
 *   kestrel_sample_c MODEL.gguf [PROMPT]
 *
 * Written in strict C99 against the public C API only (kestrel/kestrel.h). Every fallible call is
 * checked; on failure the status code name and message are printed and everything created so far
 * is freed. Exit status: 0 success, 1 runtime error, 2 bad usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kestrel/kestrel.h"

/* Prints a failed status as "<what>: <CODE_NAME>: <message>" and frees it. Returns 1 if `status`
 * was an error, 0 if it was NULL (success). */
static int report(const char* what, kestrel_status_t* status) {
  if (status == NULL) return 0;
  fprintf(stderr, "kestrel_sample_c: %s failed: %s: %s\n", what,
          kestrel_status_code_name(kestrel_status_code(status)), kestrel_status_message(status));
  kestrel_status_free(status);
  return 1;
}

/* Library log lines (WARNING and above) go to stderr. `message` is not NUL-terminated. */
static void on_log(void* user_data, kestrel_log_level_t level, const char* message,
                   size_t length) {
  (void)user_data;
  fprintf(stderr, "kestrel_sample_c: [%s] %.*s\n",
          level >= KESTREL_LOG_ERROR ? "error" : level == KESTREL_LOG_WARNING ? "warning" : "info",
          (int)length, message);
}

/* Streams each token's text to stdout as soon as it is final. */
static bool on_token(void* user_data, int32_t token, const char* text, size_t text_length) {
  unsigned* n_tokens = (unsigned*)user_data;
  (void)token;
  ++*n_tokens;
  if (text_length > 0) {
    fwrite(text, 1, text_length, stdout);
    fflush(stdout);
  }
  return true; /* keep going */
}

static const char* stop_reason_name(kestrel_stop_reason_t reason) {
  switch (reason) {
    case KESTREL_STOP_EOS: return "eos";
    case KESTREL_STOP_MAX_TOKENS: return "max_tokens";
    case KESTREL_STOP_STOP_STRING: return "stop_string";
    case KESTREL_STOP_CALLBACK: return "callback";
    case KESTREL_STOP_CONTEXT_FULL: return "context_full";
    case KESTREL_STOP_CANCELLED: return "cancelled";
    case KESTREL_STOP_NONE: break;
  }
  return "none";
}

int main(int argc, char** argv) {
  const char* model_path;
  const char* prompt = "Once upon a time";
  kestrel_runtime_options_t runtime_options;
  kestrel_model_options_t model_options;
  kestrel_sampler_options_t sampler_options;
  kestrel_session_options_t session_options;
  kestrel_generate_options_t generate_options;
  kestrel_generate_stats_t stats;
  kestrel_model_info_t info;
  kestrel_runtime_t* runtime = NULL;
  kestrel_model_t* model = NULL;
  kestrel_session_t* session = NULL;
  unsigned n_streamed = 0;
  int exit_code = 1;

  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: %s MODEL.gguf [PROMPT]\n", argc > 0 ? argv[0] : "kestrel_sample_c");
    return 2;
  }
  model_path = argv[1];
  if (argc == 3) prompt = argv[2];

  /* The ABI is stable within a major version; a different library version is worth a note. */
  if (kestrel_version_number() != KESTREL_VERSION_NUMBER) {
    fprintf(stderr, "kestrel_sample_c: warning: library %s, headers %d.%d.%d\n", kestrel_version(),
            KESTREL_VERSION_MAJOR, KESTREL_VERSION_MINOR, KESTREL_VERSION_PATCH);
  }

  /* 1. The runtime: finds and loads the device plugins (KESTREL_PLUGIN_PATH or the default). */
  kestrel_runtime_options_init(&runtime_options);
  runtime_options.log_callback = on_log;
  if (report("kestrel_runtime_create", kestrel_runtime_create(&runtime_options, &runtime))) {
    goto done;
  }

  /* 2. The model, on the library's default device. */
  kestrel_model_options_init(&model_options);
  if (report("kestrel_model_load",
             kestrel_model_load(runtime, model_path, strlen(model_path), &model_options, &model))) {
    goto done;
  }
  memset(&info, 0, sizeof(info));
  info.struct_size = sizeof(info);
  if (report("kestrel_model_get_info", kestrel_model_get_info(model, &info))) goto done;
  fprintf(stderr, "kestrel_sample_c: model '%s' (%s, %u layers, vocab %u) on device %s\n",
          info.name, info.architecture, (unsigned)info.n_layers, (unsigned)info.vocab_size,
          info.device);

  /* 3. A session with a greedy sampler (temperature 0: argmax). */
  kestrel_sampler_options_init(&sampler_options);
  sampler_options.temperature = 0.0f;
  kestrel_session_options_init(&session_options);
  session_options.sampler = &sampler_options;
  if (report("kestrel_session_create", kestrel_session_create(model, &session_options, &session))) {
    goto done;
  }

  /* 4. Generate 32 tokens, streaming them through on_token. */
  kestrel_generate_options_init(&generate_options);
  generate_options.max_new_tokens = 32;
  generate_options.on_token = on_token;
  generate_options.user_data = &n_streamed;
  memset(&stats, 0, sizeof(stats));
  stats.struct_size = sizeof(stats);
  fputs(prompt, stdout);
  if (report("kestrel_session_generate",
             kestrel_session_generate(session, prompt, strlen(prompt), &generate_options,
                                      &stats))) {
    fputc('\n', stdout);
    goto done;
  }
  fputc('\n', stdout);
  fprintf(stderr,
          "kestrel_sample_c: %u prompt tokens (%.1f tok/s), %u generated (%.1f tok/s), "
          "%u streamed, stop: %s\n",
          (unsigned)stats.n_prompt_tokens, stats.prefill_tokens_per_s,
          (unsigned)stats.n_generated_tokens, stats.decode_tokens_per_s, n_streamed,
          stop_reason_name(stats.stop_reason));
  exit_code = 0;

done:
  /* Every destroy/release accepts NULL; the session holds its own model reference. */
  kestrel_session_destroy(session);
  kestrel_model_release(model);
  kestrel_runtime_destroy(runtime);
  return exit_code;
}
