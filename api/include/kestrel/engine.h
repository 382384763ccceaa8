/* The serving engine: many concurrent requests over one model, sharing one paged KV cache.
 *
 * An engine owns a pool of fixed-size KV blocks on the model's device and schedules every
 * submitted request onto it: continuous batching (requests join and leave at any step), chunked
 * prefill under a per-step token budget with the decode tokens of running requests in the same
 * step, a prefix cache that reuses computed blocks across requests, copy-on-write forks (n samples
 * of one prompt share its blocks) and preemption when blocks run out (the victim's KV swapped to
 * host memory or recomputed, kv_swap_policy). Each step runs the model once over all scheduled
 * tokens of all sequences. See docs/ENGINE.md.
 *
 * Two ways to drive it:
 *   - caller-driven: kestrel_engine_step runs one scheduling step on the calling thread;
 *     kestrel_engine_wait also steps on the calling thread until its request is done.
 *   - engine thread: kestrel_engine_start runs steps on a thread the engine owns until
 *     kestrel_engine_stop; kestrel_engine_wait then only waits.
 *
 * Thread-safety: every engine function may be called from any thread at any time, except
 * kestrel_engine_destroy (no call may race with it). Streaming callbacks run on the thread that
 * runs the step (the engine thread after kestrel_engine_start); from inside a callback, do not
 * call kestrel_engine_step, kestrel_engine_wait or kestrel_engine_destroy on the same engine
 * (FAILED_PRECONDITION for the first two); submit, cancel, results and stats are fine.
 *
 * Sessions (session.h) are independent of engines and keep working unchanged. */
#ifndef KESTREL_ENGINE_H_
#define KESTREL_ENGINE_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kestrel/export.h"
#include "kestrel/model.h"
#include "kestrel/session.h"
#include "kestrel/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kestrel_engine kestrel_engine_t;

/* Request ids are > 0. KESTREL_ENGINE_ALL_REQUESTS in kestrel_engine_wait means "every request
 * submitted so far". */
typedef uint64_t kestrel_request_id_t;
#define KESTREL_ENGINE_ALL_REQUESTS ((kestrel_request_id_t)0)

typedef struct kestrel_engine_options {
  uint32_t struct_size; /* set by kestrel_engine_options_init */
  /* Bytes of KV cache (all layers, K and V) the engine may allocate on the model's device; the
   * pool holds floor(kv_cache_bytes / bytes per block) blocks. 0 (default): enough for
   * max_sequences full contexts. */
  uint64_t kv_cache_bytes;
  /* Tokens per KV block, a power of two in [1, 4096]. Default 2: the unfilled tail of each
   * sequence's last block is KV memory no one can use, so small blocks waste less (their cost is
   * host bookkeeping per block; see docs/ENGINE.md). Prefix sharing works in whole blocks. */
  uint32_t kv_block_size;
  /* Token budget of one step (decode tokens + prefill chunks). Default 512. Long prompts are
   * prefilled in chunks of at most this many tokens. */
  uint32_t max_batch_tokens;
  /* Sequences holding KV at once (a request with n samples counts n). Default 16. */
  uint32_t max_sequences;
  /* Reuse full KV blocks across requests with the same token prefix. Default true. */
  bool prefix_cache;
  /* Tokens of context per sequence (prompt + generated). 0 (default): the model's trained
   * context. */
  uint32_t context_length;
  /* Worker threads for plugins that use them; 0 (default): the plugin decides. */
  uint32_t n_threads;
  /* KESTREL_KV_F32 (default) or KESTREL_KV_F16 (half the bytes per block, so a kv_cache_bytes
   * budget holds twice the tokens). 64 bits wide like kestrel_session_options_t.kv_type.
   * \since 0.2 */
  uint64_t kv_type;
  /* Host memory (bytes) for the KV of preempted sequences: a preemption copies the victim's KV
   * there through the device's buffers and back when it resumes, instead of recomputing it, when
   * kv_swap_policy allows; when the space is full it recomputes. 0 (default): the host_swap_bytes
   * of the model's memory plan (kestrel_model_options_t.memory_budget "host=..."), none when the
   * model was loaded without a budget. \since 0.3 */
  uint64_t kv_swap_bytes;
  /* kestrel_kv_swap_policy_t. Default KESTREL_KV_SWAP_AUTO. \since 0.3 */
  uint32_t kv_swap_policy;
} kestrel_engine_options_t;

/* What a preemption does with the victim's KV when the engine has swap space. \since 0.3 */
typedef enum kestrel_kv_swap_policy {
  /* Swap when copying it out and back (measured copy bandwidth) is estimated faster than
   * recomputing its tokens (measured prefill rate); swap while nothing is measured yet. */
  KESTREL_KV_SWAP_AUTO = 0,
  KESTREL_KV_SWAP_ALWAYS = 1, /* swap whenever the swap space holds the victim */
  KESTREL_KV_SWAP_NEVER = 2   /* always recompute */
} kestrel_kv_swap_policy_t;

#define KESTREL_ENGINE_OPTIONS_MIN_SIZE \
  (offsetof(kestrel_engine_options_t, kv_cache_bytes) + sizeof(uint64_t))

/* Fills `options` with its struct_size and defaults. Accepts NULL. \since 0.1 */
KESTREL_API void kestrel_engine_options_init_sized(kestrel_engine_options_t* options, size_t struct_size);
static inline void kestrel_engine_options_init(kestrel_engine_options_t* options) { kestrel_engine_options_init_sized(options, sizeof(*options)); }

/* Creates an engine over `model` (retained until the engine is destroyed) and allocates its KV
 * pool on the model's device. `options` NULL: kestrel_engine_options_init defaults.
 * Errors: INVALID_ARGUMENT (NULL argument, too-small struct_size, a bad option named with its
 * value, a pool of 0 blocks), RESOURCE_EXHAUSTED (the device cannot hold the pool). \since 0.1 */
KESTREL_API kestrel_status_t* kestrel_engine_create(kestrel_model_t* model,
                                                    const kestrel_engine_options_t* options,
                                                    kestrel_engine_t** out_engine);

/* Stops the engine thread if running, drops every request (no further callbacks) and frees the
 * engine. Accepts NULL. Must not race with any other call on the engine. \since 0.1 */
KESTREL_API void kestrel_engine_destroy(kestrel_engine_t* engine);

/* Streaming callback of one sample of one request, called once per generated token, in order,
 * on the thread running the step. Same contract as kestrel_token_fn (session.h): `text` is the
 * text that became final with this token (may be empty: incomplete UTF-8 and possible stop-string
 * prefixes are held back), a final call with token KESTREL_TOKEN_NONE flushes held-back text when
 * the sample ends without a token to carry it, and `text` is valid only during the call. A
 * preempted and recomputed request continues its stream where it stopped: no token is repeated.
 * Return false to stop this sample (stop reason KESTREL_STOP_CALLBACK). */
typedef bool (*kestrel_engine_token_fn)(void* user_data, kestrel_request_id_t request_id,
                                        uint32_t sample_index, int32_t token, const char* text,
                                        size_t text_length);

/* Log-probability callback of a request (kestrel_engine_request_options_t.on_logprobs): once per
 * generated token of sample `sample_index`, just before on_token for it; the values are defined
 * as for kestrel_logprobs_fn (session.h). \since 0.2 */
typedef void (*kestrel_engine_logprobs_fn)(void* user_data, kestrel_request_id_t request_id,
                                           uint32_t sample_index, const kestrel_token_logprob_t* chosen,
                                           const kestrel_token_logprob_t* top, size_t n_top);

typedef struct kestrel_engine_request_options {
  uint32_t struct_size;    /* set by kestrel_engine_request_options_init */
  uint32_t max_new_tokens; /* per sample; default 128 */
  /* Sampling; NULL (default): kestrel_sampler_options_init defaults. Copied during submit. Sample
   * i of a request with n samples uses seed + i. */
  const kestrel_sampler_options_t* sampler;
  /* Stop strings: n_stop_strings NUL-terminated UTF-8 strings, copied during submit. */
  const char* const* stop_strings;
  size_t n_stop_strings;
  kestrel_engine_token_fn on_token; /* NULL: no streaming */
  void* user_data;
  /* Scheduling priority; higher runs first, equal priorities in arrival order. Default 0. */
  int32_t priority;
  /* Samples from the one prompt (fork): they share the prompt's KV blocks copy-on-write. Default
   * 1; at most the engine's max_sequences. */
  uint32_t n;
  bool add_bos; /* default true: prepend BOS when the model asks for it (text prompts only) */
  /* Default 0. Nonzero: control-token texts in a text prompt become those tokens (see
   * kestrel_generate_options_t.parse_special). 64 bits wide so that it starts after the tail
   * padding of 0.1's struct. \since 0.2 */
  uint64_t parse_special;
  /* Speculative decoding of every sample; NULL (default): off. Copied during submit (the draft
   * model is retained until the request is released). Each decode step of a sample then carries
   * its draft tree inside the engine's one varlen step. \since 0.2 */
  const kestrel_speculative_options_t* speculative;
  /* Top tokens reported to on_logprobs per generated token (default 0: only the chosen one).
   * \since 0.2 */
  uint32_t n_probs;
  /* NULL (default): no log-probabilities. Gets user_data. \since 0.2 */
  kestrel_engine_logprobs_fn on_logprobs;
  /* Constrained output of every sample (default NULL: none; at most one of the two), as
   * kestrel_generate_options_t.grammar / json_schema; read during submit. Errors at submit:
   * INVALID_ARGUMENT naming the field and the bad line/column or schema keyword. A sample that
   * no token can continue fails with FAILED_PRECONDITION. `speculative` is ignored for a
   * constrained request. \since 0.2 */
  const char* grammar;
  const char* json_schema;
} kestrel_engine_request_options_t;

#define KESTREL_ENGINE_REQUEST_OPTIONS_MIN_SIZE \
  (offsetof(kestrel_engine_request_options_t, max_new_tokens) + sizeof(uint32_t))

/* Fills `options` with its struct_size and defaults. Accepts NULL. \since 0.1 */
KESTREL_API void kestrel_engine_request_options_init_sized(kestrel_engine_request_options_t* options, size_t struct_size);
static inline void kestrel_engine_request_options_init(kestrel_engine_request_options_t* options) { kestrel_engine_request_options_init_sized(options, sizeof(*options)); }

/* Tokenizes `prompt` and queues a request; it runs during later steps. `options` NULL:
 * kestrel_engine_request_options_init defaults. The engine keeps the request's result until
 * kestrel_engine_release_request. Errors: INVALID_ARGUMENT (NULL argument, empty prompt, bad
 * option; a prompt that does not leave room for one generated token in context_length, with both
 * numbers), RESOURCE_EXHAUSTED (one sample of the request, prompt + max_new_tokens capped at
 * context_length, needs more blocks than the whole pool has; the message gives the tokens needed,
 * blocks needed, pool blocks and block size). \since 0.1 */
KESTREL_API kestrel_status_t* kestrel_engine_submit(kestrel_engine_t* engine, const char* prompt,
                                                    size_t prompt_length,
                                                    const kestrel_engine_request_options_t* options,
                                                    kestrel_request_id_t* out_request_id);

/* Same as kestrel_engine_submit with the prompt as token ids (used as given: no BOS is added).
 * Errors also: OUT_OF_RANGE for an id outside the vocab. \since 0.1 */
KESTREL_API kestrel_status_t* kestrel_engine_submit_tokens(
    kestrel_engine_t* engine, const int32_t* prompt_tokens, size_t n_prompt_tokens,
    const kestrel_engine_request_options_t* options, kestrel_request_id_t* out_request_id);

/* Runs one scheduling step on the calling thread: admits waiting requests, runs the model once
 * over the step's tokens, samples, streams (callbacks run on this thread) and retires finished
 * requests. out_n_active (may be NULL) receives the number of requests still waiting or running
 * after the step; 0 means idle. A step with nothing to do returns at once. If the model run itself
 * fails, the requests of that step fail with its status (see kestrel_engine_wait) and the step
 * returns it too. Errors: INVALID_ARGUMENT (NULL engine), FAILED_PRECONDITION (the engine thread
 * is running, or called from inside a streaming callback). \since 0.1 */
KESTREL_API kestrel_status_t* kestrel_engine_step(kestrel_engine_t* engine,
                                                  uint32_t* out_n_active);

/* Starts the engine thread, which runs steps while there is work and sleeps otherwise. Streaming
 * callbacks then run on that thread. Starting a running engine is OK (no-op). Errors:
 * INVALID_ARGUMENT, RESOURCE_EXHAUSTED (no thread). \since 0.1 */
KESTREL_API kestrel_status_t* kestrel_engine_start(kestrel_engine_t* engine);

/* Stops the engine thread after its current step and joins it. Queued and running requests stay
 * and continue with kestrel_engine_step or another kestrel_engine_start. Accepts NULL; a stopped
 * engine is a no-op. Must not be called from a streaming callback. \since 0.1 */
KESTREL_API void kestrel_engine_stop(kestrel_engine_t* engine);

/* Waits until request `request_id` is done (finished, failed or cancelled), or with
 * KESTREL_ENGINE_ALL_REQUESTS until no request is waiting or running. Without the engine thread,
 * runs steps on the calling thread while waiting. timeout_ms < 0: no limit.
 * Returns OK when the request finished (any stop reason but cancellation), the request's own
 * failure status (e.g. INTERNAL from the device), CANCELLED if it was cancelled,
 * DEADLINE_EXCEEDED on timeout, NOT_FOUND for an unknown or released id, FAILED_PRECONDITION
 * from inside a streaming callback. With KESTREL_ENGINE_ALL_REQUESTS it returns OK or
 * DEADLINE_EXCEEDED. \since 0.1 */
KESTREL_API kestrel_status_t* kestrel_engine_wait(kestrel_engine_t* engine,
                                                  kestrel_request_id_t request_id,
                                                  int64_t timeout_ms);

/* Cancels a request: it stops at the start of the next step (held-back text is flushed to its
 * callback), frees its KV blocks and ends with KESTREL_STOP_CANCELLED. Cancelling a request that
 * is already done is OK (no-op). Any thread. Errors: INVALID_ARGUMENT, NOT_FOUND (unknown id).
 * \since 0.1 */
KESTREL_API kestrel_status_t* kestrel_engine_cancel(kestrel_engine_t* engine,
                                                    kestrel_request_id_t request_id);

/* Forgets a request's result (cancelling it first if it is not done). The id is then unknown.
 * Errors: INVALID_ARGUMENT, NOT_FOUND. \since 0.1 */
KESTREL_API kestrel_status_t* kestrel_engine_release_request(kestrel_engine_t* engine,
                                                             kestrel_request_id_t request_id);

typedef enum kestrel_request_state {
  KESTREL_REQUEST_WAITING = 0,   /* queued (also after a preemption) */
  KESTREL_REQUEST_RUNNING = 1,   /* holds KV blocks and is being computed */
  KESTREL_REQUEST_FINISHED = 2,  /* every sample stopped (see stop_reason) */
  KESTREL_REQUEST_FAILED = 3,    /* see status_code and kestrel_engine_wait's status */
  KESTREL_REQUEST_CANCELLED = 4  /* kestrel_engine_cancel */
} kestrel_request_state_t;

typedef struct kestrel_engine_result {
  uint32_t struct_size; /* set by the caller to sizeof(kestrel_engine_result_t) */
  kestrel_request_state_t state;
  kestrel_status_code_t status_code; /* KESTREL_STATUS_OK unless FAILED or CANCELLED */
  kestrel_stop_reason_t stop_reason; /* of the sample asked for; NONE while not done */
  uint32_t n_samples;
  uint32_t n_prompt_tokens;
  uint32_t n_generated_tokens;    /* of the sample asked for, so far */
  uint32_t n_cached_prompt_tokens; /* prompt tokens whose KV came from the prefix cache */
  uint32_t n_preemptions;          /* times the request was preempted (swapped or recomputed) */
  double queue_ms;                 /* submit -> first step that computed it */
  double time_to_first_token_ms;   /* submit -> first generated token */
  double total_ms;                 /* submit -> done (so far, while not done) */
} kestrel_engine_result_t;

#define KESTREL_ENGINE_RESULT_MIN_SIZE \
  (offsetof(kestrel_engine_result_t, state) + sizeof(kestrel_request_state_t))

/* Describes sample `sample_index` (< n) of a request, done or not. Errors: INVALID_ARGUMENT,
 * NOT_FOUND (unknown id), OUT_OF_RANGE (sample_index). \since 0.1 */
KESTREL_API kestrel_status_t* kestrel_engine_request_result(const kestrel_engine_t* engine,
                                                            kestrel_request_id_t request_id,
                                                            uint32_t sample_index,
                                                            kestrel_engine_result_t* out_result);

/* The generated token ids of a sample (EOS excluded), so far. Buffer convention as in model.h.
 * Errors: as kestrel_engine_request_result. \since 0.1 */
KESTREL_API kestrel_status_t* kestrel_engine_request_tokens(const kestrel_engine_t* engine,
                                                            kestrel_request_id_t request_id,
                                                            uint32_t sample_index,
                                                            int32_t* out_tokens, size_t capacity,
                                                            size_t* out_required);

/* The text streamed for a sample so far (stop string excluded; held-back text is included once
 * the sample is done). Buffer convention as in model.h. \since 0.1 */
KESTREL_API kestrel_status_t* kestrel_engine_request_text(const kestrel_engine_t* engine,
                                                          kestrel_request_id_t request_id,
                                                          uint32_t sample_index, char* out_text,
                                                          size_t capacity, size_t* out_required);

typedef struct kestrel_engine_stats {
  uint32_t struct_size; /* set by the caller to sizeof(kestrel_engine_stats_t) */
  uint32_t n_running;   /* requests holding KV blocks */
  uint32_t n_waiting;   /* queued requests, preempted ones included */
  uint64_t n_finished;  /* requests done (finished, failed or cancelled) since create */
  uint32_t kv_blocks_total;
  uint32_t kv_blocks_used;   /* referenced by a sequence or the prefix cache */
  uint32_t kv_blocks_free;
  uint32_t kv_blocks_cached; /* held only by the prefix cache (evictable; counted in used) */
  uint32_t kv_block_size;
  uint64_t prefix_cache_lookups; /* full prompt blocks looked up at admission */
  uint64_t prefix_cache_hits;    /* of those, found in the cache */
  double prefix_cache_hit_rate;  /* hits / lookups; 0 with no lookups */
  uint64_t prefill_tokens_computed; /* prompt tokens run through the model (recompute included) */
  uint64_t prefill_tokens_reused;   /* prompt tokens taken from the prefix cache */
  uint64_t decode_tokens;           /* generated tokens run through the model */
  uint64_t generated_tokens;        /* tokens sampled */
  uint64_t steps;
  uint64_t preemptions;
  double busy_ms;       /* time spent in steps that did work */
  double tokens_per_s;  /* generated_tokens / busy time */
  double kv_waste_fraction; /* of the used blocks' slots, those holding no token (last step) */
  /* KV swap (kestrel_engine_options_t.kv_swap_bytes). \since 0.3 */
  uint64_t kv_swap_outs;      /* preemptions that copied the victim's KV to host memory */
  uint64_t kv_swap_ins;       /* resumptions that copied it back (the rest recomputed) */
  uint64_t kv_swap_fallbacks; /* preemptions that recomputed because the swap space was full */
  uint64_t kv_swap_out_bytes; /* KV bytes copied device -> host */
  uint64_t kv_swap_in_bytes;  /* KV bytes copied host -> device */
  double kv_swap_ms;          /* time the steps spent waiting on those copies */
  uint64_t kv_swap_held_bytes;   /* swap space in use now, by its own accounting */
  uint64_t kv_swap_peak_bytes;   /* the most ever in use: never above the budget */
  uint64_t kv_swap_budget_bytes; /* the swap space; 0: none (preemption recomputes) */
  /* Sliding-window KV pools: a model whose sliding-window layers' window is shorter than the
   * engine's context keeps their KV in pools of their own, per sequence at most a window and one
   * step; all zero otherwise. \since 0.3 */
  uint64_t kv_window_bytes;         /* the pools' memory: K and V of every window layer */
  uint32_t kv_window_groups;        /* window KV groups (layers sharing a window), a pool each */
  uint32_t kv_window_blocks_total;  /* the pools' blocks together, kv_block_size tokens each */
  uint32_t kv_window_blocks_used;   /* referenced by a sequence or the prefix cache */
  uint32_t kv_window_blocks_peak;   /* the most ever used at the end of a step */
  uint32_t kv_window_blocks_cached; /* held only by the prefix cache (given up first when a
                                     * sequence needs the room; counted in used) */
  uint32_t kv_window_step_tokens;   /* most tokens one step brings per sequence (the window) */
} kestrel_engine_stats_t;

#define KESTREL_ENGINE_STATS_MIN_SIZE \
  (offsetof(kestrel_engine_stats_t, n_running) + sizeof(uint32_t))

/* Speculative decoding statistics of a request so far, summed over its samples (all zero when it
 * does not speculate). Errors: INVALID_ARGUMENT, NOT_FOUND (unknown id). \since 0.2 */
KESTREL_API kestrel_status_t* kestrel_engine_request_speculative_stats(
    const kestrel_engine_t* engine, kestrel_request_id_t request_id,
    kestrel_speculative_stats_t* out_stats);

/* Fills the fields of out_stats that fit in its struct_size. Any thread; the numbers are those
 * at the end of the last step (request counts are current). Errors: INVALID_ARGUMENT.
 * \since 0.1 */
KESTREL_API kestrel_status_t* kestrel_engine_get_stats(const kestrel_engine_t* engine,
                                                       kestrel_engine_stats_t* out_stats);

/* ---- Persistent prompt cache --------------------------------------------------------------
 * Writes every full KV block of the prefix cache (with the token chain that names it) to `path`
 * (NUL-terminated; written to "<path>.tmp" and renamed when complete). Waits for the current
 * step. Errors: FAILED_PRECONDITION (prefix cache off, or a model whose sliding-window layers keep
 * their KV in window pools, which the file does not carry), the errno-mapped code of a failed
 * write.
 * \since 0.3 */
KESTREL_API kestrel_status_t* kestrel_engine_save_prefix_cache(kestrel_engine_t* engine,
                                                               const char* path);
/* Loads a file kestrel_engine_save_prefix_cache wrote (any process) into free KV blocks of this
 * engine's prefix cache, typically right after kestrel_engine_create: later requests sharing
 * those prefixes skip their prefill. Needs the same model (fingerprint), kv_type and block size
 * (FAILED_PRECONDITION naming the difference); a damaged or foreign file is DATA_LOSS /
 * INVALID_ARGUMENT and loads nothing. Blocks that do not fit are skipped. out_blocks_loaded may
 * be NULL. \since 0.3 */
KESTREL_API kestrel_status_t* kestrel_engine_load_prefix_cache(kestrel_engine_t* engine,
                                                               const char* path,
                                                               uint32_t* out_blocks_loaded);

#ifdef __cplusplus
}
#endif

#endif /* KESTREL_ENGINE_H_ */
