/* Speculative decoding: a cheap proposer guesses several next tokens (a tree of them), the model
 * checks them all in one forward step, and the tokens it agrees with are kept. Greedy output is
 * token-identical to plain decoding and sampled output has exactly the model's distribution
 * (rejection sampling); only the speed changes. Used by sessions (kestrel_session_options_t.
 * speculative) and by engine requests (kestrel_engine_request_options_t.speculative).
 * \since 0.2 */
#ifndef KESTREL_SPECULATIVE_H_
#define KESTREL_SPECULATIVE_H_

#include <stddef.h>
#include <stdint.h>

#include "kestrel/export.h"
#include "kestrel/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kestrel_spec_method {
  KESTREL_SPEC_OFF = 0,       /* plain decoding (default) */
  KESTREL_SPEC_AUTO = 1,      /* the controller picks among n-gram, (with a
                               * draft_model) the draft model and (with heads_path) the heads, and
                               * the draft size, from what it measures; it turns speculation off
                               * when it does not pay */
  KESTREL_SPEC_DRAFT = 2,     /* a smaller model with the same vocab (draft_model) */
  KESTREL_SPEC_SELF = 3,      /* the model's own first layers plus its output head */
  KESTREL_SPEC_NGRAM = 4,     /* n-gram / prompt lookup over the prompt and generated text */
  KESTREL_SPEC_LOOKAHEAD = 5, /* lookahead decoding (Jacobi iterations + n-gram pool) */
  KESTREL_SPEC_MEDUSA = 6,    /* Medusa-1 heads from heads_path (tools/train_medusa.py) */
  KESTREL_SPEC_EAGLE = 7      /* an EAGLE-style draft layer from heads_path (tools/train_eagle.py) */
} kestrel_spec_method_t;

typedef struct kestrel_speculative_options {
  uint32_t struct_size;      /* set by kestrel_speculative_options_init */
  uint32_t method;           /* kestrel_spec_method_t; default KESTREL_SPEC_OFF */
  uint32_t max_draft_tokens; /* longest draft path per step; 0 (default): 5; at most 64 */
  uint32_t tree_budget;      /* most draft tokens per step over all branches; 0 (default): the
                              * method's own (2 * max_draft_tokens + 4); at most 256 */
  /* KESTREL_SPEC_DRAFT (and AUTO, optionally): the draft model. It must share the model's vocab
   * (INVALID_ARGUMENT naming the first difference otherwise). Retained by the session or
   * request that uses it. */
  kestrel_model_t* draft_model;
  /* KESTREL_SPEC_MEDUSA / EAGLE: path of the heads' sidecar GGUF (NUL-terminated, copied). */
  const char* heads_path;
  /* KESTREL_SPEC_SELF: layers the self-draft runs (0, default: half the model's layers). */
  uint32_t self_draft_layers;
} kestrel_speculative_options_t;

#define KESTREL_SPECULATIVE_OPTIONS_MIN_SIZE \
  (offsetof(kestrel_speculative_options_t, method) + sizeof(uint32_t))

/* Fills `options` with its struct_size and defaults. Accepts NULL. \since 0.2 */
KESTREL_API void kestrel_speculative_options_init_sized(kestrel_speculative_options_t* options,
                                                        size_t struct_size);
static inline void kestrel_speculative_options_init(kestrel_speculative_options_t* options) {
  kestrel_speculative_options_init_sized(options, sizeof(*options));
}

/* What speculation did (a session's last generate, or an engine request so far). */
typedef struct kestrel_speculative_stats {
  uint32_t struct_size;   /* set by the caller to sizeof(kestrel_speculative_stats_t) */
  uint32_t method;        /* the controller's current choice (kestrel_spec_method_t; OFF: plain) */
  uint32_t draft_tokens;  /* its current draft size */
  uint32_t reserved;
  uint64_t steps;         /* verify steps that carried draft tokens */
  uint64_t plain_steps;   /* decode steps without a draft */
  uint64_t drafted;       /* draft tokens verified */
  uint64_t accepted;      /* draft tokens accepted */
  double mean_accepted;   /* accepted / steps: draft tokens gained per verify step */
  double propose_ms;      /* time in proposers */
  double verify_ms;       /* time in verify steps (forward over pending token + drafts) */
  uint64_t steps_by_method[8];    /* indexed by kestrel_spec_method_t */
  uint64_t drafted_by_method[8];
  uint64_t accepted_by_method[8];
  /* Since 0.3: what the `auto` controller measured behind its choice, as of the last step. */
  uint64_t probes;                  /* speculative steps run to warm up or re-probe while off */
  double plain_step_ms;             /* its measured wall time of a plain decode step (EMA) */
  double verify_cost_ratio;         /* measured cost of a step of verify_tokens / a plain step
                                     * (0: none measured yet) */
  double expected_speedup;          /* predicted tokens/s of the current choice / plain (1: off) */
  double acceptance_by_method[8];   /* per-token acceptance estimate, by kestrel_spec_method_t */
  uint32_t verify_tokens;           /* size of the last speculative step: 1 + draft tokens */
  uint32_t probe_interval;          /* steps between re-probes while off (doubles, 32 to 1024) */
} kestrel_speculative_stats_t;

#define KESTREL_SPECULATIVE_STATS_MIN_SIZE \
  (offsetof(kestrel_speculative_stats_t, method) + sizeof(uint32_t))

/* "off", "auto", "draft", "self", "ngram", "lookahead", "medusa", "eagle"; "unknown" otherwise.
 * \since 0.2 */
KESTREL_API const char* kestrel_spec_method_name(uint32_t method);

#ifdef __cplusplus
}
#endif

#endif /* KESTREL_SPECULATIVE_H_ */
