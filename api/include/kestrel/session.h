/* Sessions: one conversation (one sequence) with its own paged KV cache and sampler.
 *
 * Thread-safety: a session is single-user — call its functions from one thread at a time — except
 * kestrel_session_cancel, which may be called from any thread at any time. */
#ifndef KESTREL_SESSION_H_
#define KESTREL_SESSION_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kestrel/export.h"
#include "kestrel/model.h"
#include "kestrel/speculative.h"
#include "kestrel/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kestrel_session kestrel_session_t;

/* One logit bias entry (kestrel_sampler_options_t.logit_bias). \since 0.2 */
typedef struct kestrel_logit_bias {
  int32_t token; /* a token id of the model's vocabulary */
  float bias;    /* added to the token's logit before sampling; finite, or -INFINITY to ban it */
} kestrel_logit_bias_t;

typedef struct kestrel_sampler_options {
  uint32_t struct_size;       /* set by kestrel_sampler_options_init */
  float temperature;          /* default 0.8; 0 = greedy (argmax, ties to the lowest id) */
  int32_t top_k;              /* default 40; 0 = off */
  float top_p;                /* default 0.95; 1 = off; in (0, 1] */
  float min_p;                /* default 0.05; 0 = off; in [0, 1] */
  float repetition_penalty;   /* default 1.0 (off); > 0 */
  int32_t repetition_window;  /* default 64 last tokens; 0 = off */
  uint64_t seed;              /* default 0xC0FFEE; same seed, same prompt -> same output */
  /* Logit bias: n_logit_bias entries (default none), added before every other sampling stage,
   * also before greedy's argmax; copied when the session is created or the request submitted.
   * Errors: INVALID_ARGUMENT for an id outside the vocabulary or a NaN/+inf bias, naming the
   * entry. A later entry for the same token adds to the earlier one. \since 0.2 */
  const kestrel_logit_bias_t* logit_bias;
  size_t n_logit_bias;
  /* Default 0. Nonzero: the model's end-of-generation tokens (EOS, <|im_end|>, ...) are banned
   * (bias -inf), so generation runs to max_new_tokens, a stop string or a full context.
   * \since 0.2 */
  uint64_t ignore_eos;
} kestrel_sampler_options_t;

#define KESTREL_SAMPLER_OPTIONS_MIN_SIZE \
  (offsetof(kestrel_sampler_options_t, temperature) + sizeof(float))

/* Fills `options` with its struct_size and defaults. Accepts NULL. \since 0.1 */
KESTREL_API void kestrel_sampler_options_init_sized(kestrel_sampler_options_t* options, size_t struct_size);
static inline void kestrel_sampler_options_init(kestrel_sampler_options_t* options) { kestrel_sampler_options_init_sized(options, sizeof(*options)); }

/* Element type of the KV cache (kestrel_session_options_t.kv_type, kestrel_engine_options_t.kv_type). */
#define KESTREL_KV_F32 0u /* 4 bytes per element: the reference numerics (default) */
#define KESTREL_KV_F16 1u /* 2 bytes per element (IEEE binary16): half the KV memory; attention
                           * still accumulates in f32. Logits differ from F32 by rounding only
                           * (stories260K: within 2^-11 relative of llama.cpp's F16-KV logits),
                           * so greedy outputs can differ after many tokens. */

typedef struct kestrel_session_options {
  uint32_t struct_size; /* set by kestrel_session_options_init */
  /* Tokens of context (prompt + generated). 0 (default): the model's trained context. */
  uint32_t context_length;
  /* Tokens per KV block. Default 16. */
  uint32_t kv_block_size;
  /* Sampling; NULL (default): kestrel_sampler_options_init defaults. Copied during create. */
  const kestrel_sampler_options_t* sampler;
  /* Worker threads for plugins that use them; 0 (default): the plugin decides. */
  uint32_t n_threads;
  /* KESTREL_KV_F32 (default) or KESTREL_KV_F16. 64 bits wide so that it starts after the 4
   * bytes of tail padding of 0.1's struct (which a client built then may leave uninitialised
   * inside its struct_size). \since 0.2 */
  uint64_t kv_type;
  /* Speculative decoding of generate; NULL (default): off. Copied during create (the draft model
   * is retained by the session). \since 0.2 */
  const kestrel_speculative_options_t* speculative;
} kestrel_session_options_t;

#define KESTREL_SESSION_OPTIONS_MIN_SIZE \
  (offsetof(kestrel_session_options_t, context_length) + sizeof(uint32_t))

/* Fills `options` with its struct_size and defaults. Accepts NULL. \since 0.1 */
KESTREL_API void kestrel_session_options_init_sized(kestrel_session_options_t* options, size_t struct_size);
static inline void kestrel_session_options_init(kestrel_session_options_t* options) { kestrel_session_options_init_sized(options, sizeof(*options)); }

/* Creates a session over `model` (retained until the session is destroyed) and reserves its KV
 * cache. `options` NULL: kestrel_session_options_init defaults. Errors: INVALID_ARGUMENT (a bad option, named with its value), RESOURCE_EXHAUSTED.
 * \since 0.1 */
KESTREL_API kestrel_status_t* kestrel_session_create(kestrel_model_t* model,
                                                     const kestrel_session_options_t* options,
                                                     kestrel_session_t** out_session);

/* Accepts NULL. Must not race with other calls on the session. \since 0.1 */
KESTREL_API void kestrel_session_destroy(kestrel_session_t* session);

/* Streaming callback, called on the generating thread once per generated token, in order. `text`
 * is the text that became final with this token. It may be empty: the bytes of an incomplete
 * UTF-8 character and text that might begin a stop string are held back and delivered with a later
 * token. A stop string and anything after it are never delivered; the token that completed the
 * stop string is still reported (with the text before the stop string). The end-of-generation
 * token (EOS) is not reported and not counted. When generation ends for any reason other than the
 * callback returning false, held-back text is flushed: with the last token if it is known to be
 * the last (max_new_tokens, context full), otherwise in one final call with token
 * KESTREL_TOKEN_NONE. `text` is not NUL-terminated and is valid only during the call. Return false
 * to stop generating (stop reason KESTREL_STOP_CALLBACK). */
#define KESTREL_TOKEN_NONE (-1)
typedef bool (*kestrel_token_fn)(void* user_data, int32_t token, const char* text,
                                 size_t text_length);

/* A token id and its log-probability (natural log). \since 0.2 */
typedef struct kestrel_token_logprob {
  int32_t token;
  float logprob;
} kestrel_token_logprob_t;

/* Log-probability callback (kestrel_generate_options_t.on_logprobs), called once per generated
 * token on the generating thread, just before on_token for the same token: `chosen` is the token
 * the sampler drew, `top` the n_top most likely tokens, most likely first (ties towards the lower
 * id; n_top = min(n_probs, vocabulary size)). The probabilities are those of the distribution the
 * token was drawn from before truncation: softmax at temperature 1 of the logits after the logit
 * bias and the repetition penalty, before top-k, top-p, min-p and temperature (what OpenAI's and
 * vLLM's "logprobs" report). A banned token has -INFINITY. The end-of-generation token that ends
 * the run is not reported (as in on_token). With speculative decoding the values are the same:
 * each accepted token's come from the row of the verification step it was chosen at. Pointers
 * are valid only during the call. \since 0.2 */
typedef void (*kestrel_logprobs_fn)(void* user_data, const kestrel_token_logprob_t* chosen,
                                    const kestrel_token_logprob_t* top, size_t n_top);

typedef enum kestrel_stop_reason {
  KESTREL_STOP_NONE = 0,
  KESTREL_STOP_EOS = 1,          /* the model produced an end-of-generation token */
  KESTREL_STOP_MAX_TOKENS = 2,   /* max_new_tokens reached */
  KESTREL_STOP_STOP_STRING = 3,  /* a stop string appeared */
  KESTREL_STOP_CALLBACK = 4,     /* the callback returned false */
  KESTREL_STOP_CONTEXT_FULL = 5, /* the context length was reached */
  KESTREL_STOP_CANCELLED = 6     /* kestrel_session_cancel */
} kestrel_stop_reason_t;

typedef struct kestrel_generate_options {
  uint32_t struct_size;   /* set by kestrel_generate_options_init */
  uint32_t max_new_tokens; /* default 128 */
  /* Stop strings: n_stop_strings NUL-terminated UTF-8 strings, copied during the call. */
  const char* const* stop_strings;
  size_t n_stop_strings;
  kestrel_token_fn on_token; /* NULL: no streaming */
  void* user_data;
  bool add_bos; /* default true: prepend BOS when the model asks for it (text prompts only) */
  /* default false: start from an empty KV cache. true: continue after what the session holds. */
  bool keep_context;
  /* Default 0. Nonzero: the texts of control tokens in a text prompt (<|im_start|>, ...) become
   * those tokens (kestrel_tokenize_options_t.parse_special), as a chat-formatted prompt needs. 64
   * bits wide so that it starts after the tail padding of 0.1's struct. \since 0.2 */
  uint64_t parse_special;
  /* Top tokens reported to on_logprobs per generated token (default 0: only the chosen one).
   * \since 0.2 */
  uint32_t n_probs;
  /* NULL (default): no log-probabilities (they cost O(vocabulary) per token). Gets user_data.
   * \since 0.2 */
  kestrel_logprobs_fn on_logprobs;
  /* Constrained output (default NULL: none; at most one of the two). `grammar`: a GBNF grammar
   * (llama.cpp's format; generation starts at its `root` rule). `json_schema`: a JSON schema of
   * the supported subset (docs/CONSTRAINED_OUTPUT.md), compiled to a grammar; "{\"type\":
   * \"object\"}" is any JSON object. NUL-terminated UTF-8, read during the call. Only tokens the
   * grammar allows next are sampled (the others get probability 0, also in on_logprobs), and an
   * end-of-generation token only where the output is a complete sentence of it, so a run that
   * stops with KESTREL_STOP_EOS produced a complete sentence (max_new_tokens or a stop string
   * may cut it short). Speculative decoding is off for a constrained run. Errors:
   * INVALID_ARGUMENT naming the field and the bad line/column or schema keyword and where it is;
   * FAILED_PRECONDITION when no token of the vocabulary can continue the output. \since 0.2 */
  const char* grammar;
  const char* json_schema;
} kestrel_generate_options_t;

#define KESTREL_GENERATE_OPTIONS_MIN_SIZE \
  (offsetof(kestrel_generate_options_t, max_new_tokens) + sizeof(uint32_t))

/* Fills `options` with its struct_size and defaults. Accepts NULL. \since 0.1 */
KESTREL_API void kestrel_generate_options_init_sized(kestrel_generate_options_t* options, size_t struct_size);
static inline void kestrel_generate_options_init(kestrel_generate_options_t* options) { kestrel_generate_options_init_sized(options, sizeof(*options)); }

typedef struct kestrel_generate_stats {
  uint32_t struct_size; /* set by the caller to sizeof(kestrel_generate_stats_t) */
  uint32_t n_prompt_tokens;
  uint32_t n_generated_tokens;
  double prefill_ms;
  double decode_ms;
  double prefill_tokens_per_s;
  double decode_tokens_per_s;
  kestrel_stop_reason_t stop_reason;
} kestrel_generate_stats_t;

#define KESTREL_GENERATE_STATS_MIN_SIZE \
  (offsetof(kestrel_generate_stats_t, n_prompt_tokens) + sizeof(uint32_t))

/* Tokenizes `prompt` and generates. The prompt is prefilled in one step, then one token per step.
 * `options` NULL: kestrel_generate_options_init defaults. out_stats may be NULL; if set, its
 * struct_size must be at least KESTREL_GENERATE_STATS_MIN_SIZE. Errors: INVALID_ARGUMENT (empty prompt, prompt plus one token longer than
 * the context — the message gives both numbers), CANCELLED (kestrel_session_cancel; out_stats is
 * still filled). \since 0.1 */
KESTREL_API kestrel_status_t* kestrel_session_generate(kestrel_session_t* session,
                                                       const char* prompt, size_t prompt_length,
                                                       const kestrel_generate_options_t* options,
                                                       kestrel_generate_stats_t* out_stats);

/* Same as kestrel_session_generate with the prompt given as token ids (used as given: no BOS is
 * added). With keep_context, n_prompt_tokens may be 0 to continue what the session holds (since
 * 0.3): after a generate that stopped on a token (max tokens, stop string, callback, cancel),
 * that token is decoded first; else the session's logits (after kestrel_session_decode or
 * kestrel_session_load_state) are sampled. Errors also: OUT_OF_RANGE for an id outside the
 * vocab. \since 0.1 */
KESTREL_API kestrel_status_t* kestrel_session_generate_tokens(
    kestrel_session_t* session, const int32_t* prompt_tokens, size_t n_prompt_tokens,
    const kestrel_generate_options_t* options, kestrel_generate_stats_t* out_stats);

/* Asks a running generate to stop as soon as the current step ends. Any thread, any time; a
 * cancel with no generate running is remembered by nothing (it does not affect the next one).
 * Accepts NULL. \since 0.1 */
KESTREL_API void kestrel_session_cancel(kestrel_session_t* session);

/* ---- Embeddings ------------------------------------------------------------------------------- */

#define KESTREL_POOLING_MEAN 0u /* the mean of every token's hidden state */
#define KESTREL_POOLING_LAST 1u /* the last token's hidden state */

typedef struct kestrel_embed_options {
  uint32_t struct_size; /* set by kestrel_embed_options_init */
  uint32_t pooling;     /* KESTREL_POOLING_MEAN (default) or KESTREL_POOLING_LAST */
  bool add_bos;         /* default true: prepend BOS when the model asks for it */
  bool parse_special;   /* default false: control-token texts in the text become those tokens */
} kestrel_embed_options_t;

#define KESTREL_EMBED_OPTIONS_MIN_SIZE \
  (offsetof(kestrel_embed_options_t, pooling) + sizeof(uint32_t))

/* Fills `options` with its struct_size and defaults. Accepts NULL. \since 0.2 */
KESTREL_API void kestrel_embed_options_init_sized(kestrel_embed_options_t* options, size_t struct_size);
static inline void kestrel_embed_options_init(kestrel_embed_options_t* options) { kestrel_embed_options_init_sized(options, sizeof(*options)); }

/* The embedding of `text`: the final hidden state of its tokens (after the output norm, the
 * vector the output head multiplies), mean-pooled or the last token's, L2-normalised to length 1:
 * kestrel_model_info_t.n_embd floats, with the buffer convention of model.h (*out_required =
 * n_embd). The text runs from an empty context in one forward pass (sliding-window models: in
 * steps of one window) and the session is left empty (its previous context is dropped). Any
 * session can embed: it reads the same hidden state as kestrel_session_get_hidden. `options`
 * NULL: kestrel_embed_options_init defaults. Errors: INVALID_ARGUMENT (empty text, more tokens
 * than the context, bad pooling), OUT_OF_RANGE (buffer too small). \since 0.2 */
KESTREL_API kestrel_status_t* kestrel_session_embed(kestrel_session_t* session, const char* text,
                                                    size_t text_length,
                                                    const kestrel_embed_options_t* options,
                                                    float* out_embedding, size_t capacity,
                                                    size_t* out_required);

/* ---- Low level: direct control of the KV cache and logits ------------------------------------ */

/* Appends `tokens` to the session's context (one forward step) and computes the logits of the
 * last position. Errors: INVALID_ARGUMENT (n_tokens 0, context overflow), OUT_OF_RANGE (id).
 * \since 0.1 */
KESTREL_API kestrel_status_t* kestrel_session_decode(kestrel_session_t* session,
                                                     const int32_t* tokens, size_t n_tokens);

/* Copies the last decoded position's logits (vocab_size floats). Buffer convention as in model.h.
 * Errors: FAILED_PRECONDITION if nothing was decoded since the session was created or truncated.
 * \since 0.1 */
KESTREL_API kestrel_status_t* kestrel_session_get_logits(const kestrel_session_t* session,
                                                         float* out_logits, size_t capacity,
                                                         size_t* out_required);

/* Tokens held in the session's KV cache. NULL session: 0. \since 0.1 */
KESTREL_API size_t kestrel_session_token_count(const kestrel_session_t* session);

/* Keeps only the first n_tokens tokens of the KV cache (frees the blocks past them), e.g. to roll
 * back rejected speculative tokens. Errors: OUT_OF_RANGE if n_tokens > token count. \since 0.1 */
KESTREL_API kestrel_status_t* kestrel_session_truncate(kestrel_session_t* session,
                                                       size_t n_tokens);

/* Samples one token from the last logits with the session's sampler (updates its repetition
 * window). Errors: FAILED_PRECONDITION if there are no logits. \since 0.1 */
KESTREL_API kestrel_status_t* kestrel_session_sample(kestrel_session_t* session,
                                                     int32_t* out_token);

/* ---- Session state: a conversation that survives the process ------------------------------
 * A state holds the model's fingerprint, the tokens in the KV cache, a token sampled but not yet
 * decoded (the one generation stopped on), the last logits, the sampler settings with its RNG
 * state and repetition window, and the KV cache in its element type (F32 or F16). Loading it
 * into a session of the same model (any process; GGUF or its .kpkg: same fingerprint) with the
 * same kv_type continues token for token where the saved session was: after
 * kestrel_session_load_state, kestrel_session_generate_tokens with no tokens and keep_context
 * samples the next token as the saved session would have, greedy or with the same seed (the
 * sampler settings come from the state, replacing the session's). Format: docs/PACKAGE.md. */

/* Writes the session's state into `out_state` (buffer convention of model.h, in bytes: NULL and 0
 * measure; too small: OUT_OF_RANGE, nothing written). \since 0.3 */
KESTREL_API kestrel_status_t* kestrel_session_save_state(kestrel_session_t* session,
                                                         void* out_state, size_t capacity,
                                                         size_t* out_required);
/* Restores a state kestrel_session_save_state wrote (`state` may have any alignment). Refused
 * with the session unchanged (and a message naming what is wrong): a damaged, truncated or
 * foreign buffer (DATA_LOSS /
 * INVALID_ARGUMENT), another format major version (UNIMPLEMENTED), another model or KV type
 * (FAILED_PRECONDITION), more tokens than the session's context (INVALID_ARGUMENT). \since 0.3 */
KESTREL_API kestrel_status_t* kestrel_session_load_state(kestrel_session_t* session,
                                                         const void* state, size_t size);
/* The same to and from a file (`path` NUL-terminated). The file is written to "<path>.tmp" and
 * renamed when complete, so a failed save never replaces a good state. \since 0.3 */
KESTREL_API kestrel_status_t* kestrel_session_save_state_file(kestrel_session_t* session,
                                                              const char* path);
KESTREL_API kestrel_status_t* kestrel_session_load_state_file(kestrel_session_t* session,
                                                              const char* path);
/* The model's final hidden state (after the output norm: what the output head multiplies) at the
 * last `n_positions` positions of the session's last forward step (kestrel_session_decode: its
 * tokens; generate: its last step), n_positions * n_embd floats, row-major, oldest position
 * first. n_positions 0: every position of that step. Useful as embeddings and for training
 * speculative heads (tools/train_medusa.py). Buffer convention as in model.h. Errors:
 * FAILED_PRECONDITION (nothing decoded since create/truncate/load_state), OUT_OF_RANGE (more
 * positions than the step had; the message gives both). \since 0.2 */
KESTREL_API kestrel_status_t* kestrel_session_get_hidden(const kestrel_session_t* session,
                                                         size_t n_positions, float* out_hidden,
                                                         size_t capacity, size_t* out_required);

/* Speculative decoding statistics of the session's last generate (all zero when speculation is
 * off or nothing was generated yet). out_stats->struct_size must be at least
 * KESTREL_SPECULATIVE_STATS_MIN_SIZE; only the fields inside it are written. Errors:
 * INVALID_ARGUMENT (NULL argument, struct_size too small). \since 0.2 */
KESTREL_API kestrel_status_t* kestrel_session_speculative_stats(
    const kestrel_session_t* session, kestrel_speculative_stats_t* out_stats);

/* ---- Mixture-of-experts statistics ----------------------------------------------------------- */

/* Expert load of one layer of a mixture-of-experts model: out_counts[e] = the number of tokens
 * routed to expert e (kestrel_model_info_t.n_experts values, in expert id order), summed over
 * every successful decode step of this session (kestrel_session_decode and generate) since it
 * was created or since kestrel_session_reset_expert_stats. Tokens count when they are computed,
 * so tokens later removed by kestrel_session_truncate stay counted. Each token counts once for
 * each of the n_experts_used experts it is routed to, so a layer's counts sum to
 * tokens computed * n_experts_used. Buffer convention as in model.h; a dense model has no
 * experts (*out_required = 0, OK). Errors: OUT_OF_RANGE for layer >= n_layers (the message gives
 * both). \since 0.1 */
KESTREL_API kestrel_status_t* kestrel_session_expert_stats(const kestrel_session_t* session,
                                                           size_t layer, uint64_t* out_counts,
                                                           size_t capacity,
                                                           size_t* out_required);

/* Sets every layer's expert counts back to 0. Accepts NULL. \since 0.1 */
KESTREL_API void kestrel_session_reset_expert_stats(kestrel_session_t* session);

#ifdef __cplusplus
}
#endif

#endif /* KESTREL_SESSION_H_ */
