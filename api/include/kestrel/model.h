/* Models: weights loaded onto a device, with their tokenizer.
 *
 * A model is immutable after load and shared: kestrel_model_retain / kestrel_model_release count
 * references, and sessions retain their model. Every model function is thread-safe. */
#ifndef KESTREL_MODEL_H_
#define KESTREL_MODEL_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kestrel/export.h"
#include "kestrel/runtime.h"
#include "kestrel/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kestrel_model kestrel_model_t;

/* Load progress in [0, 1], called on the loading thread, monotonically, ending with 1.0 on
 * success. Returning false cancels the load (kestrel_model_load returns CANCELLED). */
typedef bool (*kestrel_progress_fn)(void* user_data, float progress);

typedef struct kestrel_model_options {
  uint32_t struct_size; /* set by kestrel_model_options_init */
  /* Device name ("ref", "cpu", "opencl:1", ...), NUL-terminated. NULL (default): the first device
   * of the preferred plugin order cpu, ref. */
  const char* device;
  bool use_mmap; /* default true: map the file instead of reading it into memory */
  kestrel_progress_fn progress_callback; /* NULL: none */
  void* progress_user_data;
  /* Appended in 0.2. true: read the file's metadata and judge whether this build can run it, but
   * prepare no weight (fast, little memory). The load then succeeds for every readable GGUF, even
   * of an unknown architecture, tensor type or tokenizer; kestrel_model_get_info reports what the
   * file holds and, in `runnable` / `unsupported`, what this build cannot run and why. Sessions
   * and engines refuse such a model (FAILED_PRECONDITION); the tokenizer and chat-template calls
   * work when its tokenizer is supported (`kestrel tokenize` loads this way). Without a device
   * named, it needs none (kestrel_model_info_t.device is then "" when no plugin has a device).
   * Default false. */
  bool metadata_only;
} kestrel_model_options_t;

#define KESTREL_MODEL_OPTIONS_MIN_SIZE \
  (offsetof(kestrel_model_options_t, device) + sizeof(const char*))

/* Fills `options` with its struct_size and defaults. Accepts NULL. \since 0.1 */
KESTREL_API void kestrel_model_options_init_sized(kestrel_model_options_t* options, size_t struct_size);
static inline void kestrel_model_options_init(kestrel_model_options_t* options) { kestrel_model_options_init_sized(options, sizeof(*options)); }

/* Loads a GGUF model (v2 or v3, of an architecture this build runs: see docs/ADDING_A_MODEL.md) from `path` (path_length bytes, no NUL
 * needed) onto a device. `options` NULL: kestrel_model_options_init defaults. The file is validated in full before any weight is used; a bad file gives
 * INVALID_ARGUMENT / DATA_LOSS / UNIMPLEMENTED with a message naming the field and value.
 * Other errors: NOT_FOUND (file, device), RESOURCE_EXHAUSTED, CANCELLED (progress callback).
 * The returned model holds one reference owned by the caller. \since 0.1 */
KESTREL_API kestrel_status_t* kestrel_model_load(kestrel_runtime_t* runtime, const char* path,
                                                 size_t path_length,
                                                 const kestrel_model_options_t* options,
                                                 kestrel_model_t** out_model);

/* Reference counting. Both accept NULL and are thread-safe. The model is freed when the last
 * reference goes. \since 0.1 */
KESTREL_API void kestrel_model_retain(kestrel_model_t* model);
KESTREL_API void kestrel_model_release(kestrel_model_t* model);

typedef struct kestrel_model_info {
  uint32_t struct_size; /* set by the caller to sizeof(kestrel_model_info_t) */
  /* Strings are NUL-terminated, valid while the model lives. */
  const char* architecture; /* general.architecture: "llama", "qwen2", ... */
  const char* name;         /* general.name, "" if absent */
  const char* device;       /* the device the model runs on */
  uint64_t n_params;
  uint64_t weight_bytes;
  uint32_t n_layers;
  uint32_t n_heads;
  uint32_t n_kv_heads;
  uint32_t n_embd;
  uint32_t n_ff;
  uint32_t head_dim;
  uint32_t context_length; /* trained context */
  uint32_t vocab_size;
  int32_t bos_id;
  int32_t eos_id;
  int32_t unk_id;
  int32_t pad_id; /* -1 if none */
  bool add_bos;
  float rope_freq_base;
  float rms_norm_eps;
  uint32_t n_tensors;
  /* Mixture of experts (appended in 0.2): experts per layer and experts used per token; both 0
   * for a dense model. For an expert model n_ff is the FFN width of one expert. */
  uint32_t n_experts;
  uint32_t n_experts_used;
  /* Appended in 0.2: the tokenizer and chat template the file carries, and whether this build
   * can run the file. */
  const char* tokenizer_model; /* tokenizer.ggml.model: "llama" (SentencePiece), "gpt2" (BPE), ...; "" if absent */
  const char* tokenizer_pre;   /* tokenizer.ggml.pre, "" if absent */
  bool has_chat_template;      /* tokenizer.chat_template present */
  /* false only for a model loaded with metadata_only that this build cannot run; then
   * `unsupported` names every reason (unknown architecture, unsupported tensor type or
   * tokenizer, missing tensor or key), one per line. "" when runnable. */
  bool runnable;
  const char* unsupported;
} kestrel_model_info_t;

#define KESTREL_MODEL_INFO_MIN_SIZE \
  (offsetof(kestrel_model_info_t, architecture) + sizeof(const char*))

/* Fills the fields of out_info that fit in its struct_size. Errors: INVALID_ARGUMENT. \since 0.1 */
KESTREL_API kestrel_status_t* kestrel_model_get_info(const kestrel_model_t* model,
                                                     kestrel_model_info_t* out_info);

typedef struct kestrel_tensor_type_summary {
  uint32_t struct_size; /* set by the caller */
  const char* type_name; /* "F32", "F16", "Q4_0", ... valid while the model lives */
  uint32_t n_tensors;
  uint64_t n_elements;
  uint64_t n_bytes;
} kestrel_tensor_type_summary_t;

#define KESTREL_TENSOR_TYPE_SUMMARY_MIN_SIZE \
  (offsetof(kestrel_tensor_type_summary_t, type_name) + sizeof(const char*))

/* Number of distinct tensor types in the model file. NULL model: 0. \since 0.1 */
KESTREL_API size_t kestrel_model_tensor_type_count(const kestrel_model_t* model);
/* Describes tensor type `index` (type name valid while the model lives).
 * Errors: INVALID_ARGUMENT, OUT_OF_RANGE. \since 0.1 */
KESTREL_API kestrel_status_t* kestrel_model_tensor_type_summary(
    const kestrel_model_t* model, size_t index, kestrel_tensor_type_summary_t* out_summary);

/* ---- Tokenizer ------------------------------------------------------------------------------
 * Buffer convention: the caller passes a buffer and its capacity; *out_required always receives the
 * number of elements (tokens or bytes) the full result needs. With buffer NULL and capacity 0 the
 * call only measures (OK). A NULL buffer with capacity > 0 is INVALID_ARGUMENT. If the buffer is
 * too small the call returns OUT_OF_RANGE and writes nothing into the buffer. Text is UTF-8 and is not NUL-terminated on output. */

/* Tokenizes `text` (text_length bytes) with the model's tokenizer; add_bos prepends BOS when the
 * model's metadata asks for it. \since 0.1 */
KESTREL_API kestrel_status_t* kestrel_tokenize(const kestrel_model_t* model, const char* text,
                                               size_t text_length, bool add_bos,
                                               int32_t* out_tokens, size_t capacity,
                                               size_t* out_required);

/* Text of a token sequence; control tokens (BOS/EOS) produce no text. With remove_leading_space
 * the one space the tokenizer adds in front of the text is dropped again, so
 * detokenize(tokenize(s)) == s. Errors: OUT_OF_RANGE for a token id outside the vocab. \since 0.1 */
KESTREL_API kestrel_status_t* kestrel_detokenize(const kestrel_model_t* model,
                                                 const int32_t* tokens, size_t n_tokens,
                                                 bool remove_leading_space, char* out_text,
                                                 size_t capacity, size_t* out_required);

/* Bytes one token contributes to the text (may be a partial UTF-8 sequence for byte tokens).
 * \since 0.1 */
KESTREL_API kestrel_status_t* kestrel_token_to_piece(const kestrel_model_t* model, int32_t token,
                                                     char* out_piece, size_t capacity,
                                                     size_t* out_required);

typedef struct kestrel_tokenize_options {
  uint32_t struct_size; /* set by kestrel_tokenize_options_init */
  /* Default true: add BOS (and EOS) where the model's vocab asks for them. */
  bool add_special;
  /* Default false. true: the texts of the vocab's control tokens (<|im_start|>, <end_of_turn>, ...)
   * in the text become those tokens, as in a chat-formatted prompt. false: they are ordinary text.
   * User-defined tokens are always matched. */
  bool parse_special;
} kestrel_tokenize_options_t;

#define KESTREL_TOKENIZE_OPTIONS_MIN_SIZE \
  (offsetof(kestrel_tokenize_options_t, add_special) + sizeof(bool))

/* Fills `options` with its struct_size and defaults. Accepts NULL. \since 0.2 */
KESTREL_API void kestrel_tokenize_options_init_sized(kestrel_tokenize_options_t* options, size_t struct_size);
static inline void kestrel_tokenize_options_init(kestrel_tokenize_options_t* options) { kestrel_tokenize_options_init_sized(options, sizeof(*options)); }

/* kestrel_tokenize with options (NULL: kestrel_tokenize_options_init defaults), same buffer
 * convention. Thread-safe. \since 0.2 */
KESTREL_API kestrel_status_t* kestrel_tokenize_with_options(const kestrel_model_t* model, const char* text,
                                                            size_t text_length,
                                                            const kestrel_tokenize_options_t* options,
                                                            int32_t* out_tokens, size_t capacity,
                                                            size_t* out_required);

/* Like kestrel_token_to_piece; with `special`, control tokens give their vocab text
 * ("<|im_end|>") instead of nothing: how a prompt with special tokens reads. \since 0.2 */
KESTREL_API kestrel_status_t* kestrel_token_to_piece_special(const kestrel_model_t* model, int32_t token,
                                                             bool special, char* out_piece,
                                                             size_t capacity, size_t* out_required);

typedef struct kestrel_tokenizer_info {
  uint32_t struct_size; /* set by the caller to sizeof(kestrel_tokenizer_info_t) */
  /* Strings are NUL-terminated, valid while the model lives. */
  const char* kind;          /* "spm" (tokenizer.ggml.model llama) or "bpe" (gpt2) */
  const char* pre_tokenizer; /* BPE: tokenizer.ggml.pre as used ("default" if absent); SPM: "" */
  uint32_t vocab_size;
  int32_t bos_id;            /* -1 if none */
  int32_t eos_id;            /* -1 if none */
  bool add_bos;
  bool add_eos;
  uint32_t n_end_of_generation; /* ids that end a generation (EOS, <|im_end|>, <end_of_turn>, ...) */
  /* tokenizer.chat_template as stored, "" if absent. */
  const char* chat_template;
  /* Its family: "chatml", "llama3", "gemma", "mistral", "phi3", "other"; "" if absent. */
  const char* chat_template_family;
  /* "" if kestrel_model_apply_chat_template can render the template, else why not (the error
   * that call returns without an explicit template). */
  const char* chat_template_error;
} kestrel_tokenizer_info_t;

#define KESTREL_TOKENIZER_INFO_MIN_SIZE \
  (offsetof(kestrel_tokenizer_info_t, kind) + sizeof(const char*))

/* Describes the model's tokenizer and chat template; fills the fields that fit in
 * out_info->struct_size. Errors: INVALID_ARGUMENT. \since 0.2 */
KESTREL_API kestrel_status_t* kestrel_model_get_tokenizer_info(const kestrel_model_t* model,
                                                               kestrel_tokenizer_info_t* out_info);

/* Writes the ids that end a generation (ascending) with the buffer convention above. \since 0.2 */
KESTREL_API kestrel_status_t* kestrel_model_end_of_generation_tokens(const kestrel_model_t* model,
                                                                     int32_t* out_tokens, size_t capacity,
                                                                     size_t* out_required);

/* ---- Chat templates ----------------------------------------------------------------------- */

typedef struct kestrel_chat_message {
  const char* role; /* "system", "user", "assistant", ... role_length bytes, no NUL needed */
  size_t role_length;
  const char* content; /* content_length bytes of UTF-8 */
  size_t content_length;
} kestrel_chat_message_t;

typedef struct kestrel_chat_template_options {
  uint32_t struct_size; /* set by kestrel_chat_template_options_init */
  /* Default true: end the prompt with what opens the assistant's turn. */
  bool add_generation_prompt;
  /* NULL (default): the model's tokenizer.chat_template. Otherwise a Jinja template of
   * template_length bytes rendered instead (with the model's BOS/EOS texts). */
  const char* template_text;
  size_t template_length;
} kestrel_chat_template_options_t;

#define KESTREL_CHAT_TEMPLATE_OPTIONS_MIN_SIZE \
  (offsetof(kestrel_chat_template_options_t, add_generation_prompt) + sizeof(bool))

/* Fills `options` with its struct_size and defaults. Accepts NULL. \since 0.2 */
KESTREL_API void kestrel_chat_template_options_init_sized(kestrel_chat_template_options_t* options,
                                                          size_t struct_size);
static inline void kestrel_chat_template_options_init(kestrel_chat_template_options_t* options) { kestrel_chat_template_options_init_sized(options, sizeof(*options)); }

/* Renders `messages` (n_messages of them, in order) into the prompt text the model was trained on,
 * with the model's chat template (a GGUF's tokenizer.chat_template, rendered by a Jinja subset the
 * way transformers' apply_chat_template does: ChatML, Llama 3, Gemma, Mistral/Llama 2 [INST],
 * Phi-3 and most others). Output in the caller's buffer (bytes, no NUL) with the buffer convention
 * above. Tokenize the result with parse_special = true, and with add_special = false when the text
 * already starts with the BOS token's text (templates such as Llama 3's write it themselves), so
 * BOS is not doubled.
 * Errors, naming the key tokenizer.chat_template: NOT_FOUND (the model has none and no
 * template_text is given), INVALID_ARGUMENT (a syntax error in the template; a NULL role/content
 * with a nonzero length), UNIMPLEMENTED (a Jinja construct, filter or function outside the subset),
 * FAILED_PRECONDITION (the template refuses the conversation, e.g. roles that do not alternate,
 * its message quoted). Thread-safe. \since 0.2 */
KESTREL_API kestrel_status_t* kestrel_model_apply_chat_template(const kestrel_model_t* model,
                                                                const kestrel_chat_message_t* messages,
                                                                size_t n_messages,
                                                                const kestrel_chat_template_options_t* options,
                                                                char* out_text, size_t capacity,
                                                                size_t* out_required);

#ifdef __cplusplus
}
#endif

#endif /* KESTREL_MODEL_H_ */
