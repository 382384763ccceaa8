/* An application that uses OpenMP itself keeps its thread count after Kestrel ran on its thread.
 * The cpu plugin runs oneDNN's OpenMP GEMM with one thread during its prefill of F32 weights
 * (>= 32 prompt tokens here), on the caller's thread among others; the caller's own setting must
 * be restored afterwards. The host asks for 3 threads (not the machine's count, so the check also
 * means something on a 1-core machine), runs a generation on the cpu device, then checks
 * omp_get_max_threads() and a real parallel region.
 *
 *   openmp_host_test MODEL   (exit 0 pass, 1 fail, 77 skip: model or cpu device missing) */
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "kestrel/kestrel.h"

static int Failed(kestrel_status_t* st, const char* what) {
  if (st == NULL) return 0;
  fprintf(stderr, "FAIL: %s: %s\n", what, kestrel_status_message(st));
  kestrel_status_free(st);
  return 1;
}

static int TeamSize(void) {
  int n = 0;
#pragma omp parallel
  {
#pragma omp single
    n = omp_get_num_threads();
  }
  return n;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: openmp_host_test MODEL\n");
    return 2;
  }
  FILE* f = fopen(argv[1], "rb");
  if (f == NULL) {
    printf("SKIP: model not found: %s\n", argv[1]);
    return 77;
  }
  fclose(f);
  omp_set_dynamic(0);
  omp_set_num_threads(3);
  if (omp_get_max_threads() != 3 || TeamSize() != 3) {
    fprintf(stderr, "FAIL: the OpenMP runtime does not give 3 threads before Kestrel runs\n");
    return 1;
  }

  kestrel_runtime_t* rt = NULL;
  if (Failed(kestrel_runtime_create(NULL, &rt), "runtime_create")) return 1;
  kestrel_model_options_t mo;
  kestrel_model_options_init(&mo);
  mo.device = "cpu";
  kestrel_model_t* model = NULL;
  kestrel_status_t* st = kestrel_model_load(rt, argv[1], strlen(argv[1]), &mo, &model);
  if (st != NULL && kestrel_status_code(st) == KESTREL_STATUS_NOT_FOUND) {
    printf("SKIP: no cpu device: %s\n", kestrel_status_message(st));
    kestrel_status_free(st);
    kestrel_runtime_destroy(rt);
    return 77;
  }
  if (Failed(st, "model_load")) return 1;
  kestrel_session_t* session = NULL;
  if (Failed(kestrel_session_create(model, NULL, &session), "session_create")) return 1;
  /* About 60 tokens: a prefill above the plugin's oneDNN threshold (32). */
  const char* prompt =
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
      "park with her friends. One day, she saw a big red ball under a tree.";
  kestrel_generate_options_t gen;
  kestrel_generate_options_init(&gen);
  gen.max_new_tokens = 8;
  kestrel_generate_stats_t stats;
  memset(&stats, 0, sizeof(stats));
  stats.struct_size = sizeof(stats);
  if (Failed(kestrel_session_generate(session, prompt, strlen(prompt), &gen, &stats), "generate")) {
    return 1;
  }
  int rc = 0;
  if (stats.n_prompt_tokens < 32) {
    fprintf(stderr, "FAIL: the prompt has %u tokens, below the oneDNN prefill threshold\n",
            stats.n_prompt_tokens);
    rc = 1;
  }
  const int max_threads = omp_get_max_threads(), team = TeamSize();
  printf("after generate: omp_get_max_threads() = %d, parallel team = %d (want 3)\n", max_threads,
         team);
  if (max_threads != 3 || team != 3) {
    fprintf(stderr, "FAIL: Kestrel changed the calling thread's OpenMP thread count\n");
    rc = 1;
  }
  kestrel_session_destroy(session);
  kestrel_model_release(model);
  kestrel_runtime_destroy(rt);
  return rc;
}
