/* Package-test consumer in C11: generates greedily and prints exactly the generated text.
 *   consumer_c MODEL.gguf PROMPT N_TOKENS [DEVICE]
 * Exit status: 0 success, 1 library error (printed), 2 bad usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kestrel/kestrel.h>

static bool on_token(void* user_data, int32_t token, const char* text, size_t length) {
  (void)user_data;
  (void)token;
  fwrite(text, 1, length, stdout);
  return true;
}

static int failed(const char* what, kestrel_status_t* status) {
  if (status == NULL) return 0;
  fprintf(stderr, "consumer_c: %s: %s: %s\n", what,
          kestrel_status_code_name(kestrel_status_code(status)), kestrel_status_message(status));
  kestrel_status_free(status);
  return 1;
}

int main(int argc, char** argv) {
  if (argc < 4 || argc > 5) {
    fprintf(stderr, "usage: consumer_c MODEL.gguf PROMPT N_TOKENS [DEVICE]\n");
    return 2;
  }
  const char* path = argv[1];
  const char* prompt = argv[2];
  kestrel_runtime_t* runtime = NULL;
  kestrel_model_t* model = NULL;
  kestrel_session_t* session = NULL;
  int status = 1;

  kestrel_model_options_t model_options;
  kestrel_model_options_init(&model_options);
  if (argc == 5) model_options.device = argv[4];
  kestrel_sampler_options_t sampler;
  kestrel_sampler_options_init(&sampler);
  sampler.temperature = 0.0f;
  kestrel_session_options_t session_options;
  kestrel_session_options_init(&session_options);
  session_options.sampler = &sampler;
  kestrel_generate_options_t gen;
  kestrel_generate_options_init(&gen);
  gen.max_new_tokens = (uint32_t)strtoul(argv[3], NULL, 10);
  gen.on_token = on_token;

  if (failed("kestrel_runtime_create", kestrel_runtime_create(NULL, &runtime)) ||
      failed("kestrel_model_load",
             kestrel_model_load(runtime, path, strlen(path), &model_options, &model)) ||
      failed("kestrel_session_create", kestrel_session_create(model, &session_options, &session)) ||
      failed("kestrel_session_generate",
             kestrel_session_generate(session, prompt, strlen(prompt), &gen, NULL))) {
    goto done;
  }
  status = 0;
done:
  fflush(stdout);
  kestrel_session_destroy(session);
  kestrel_model_release(model);
  kestrel_runtime_destroy(runtime);
  return status;
}
