/*
 * FROZEN COPY of the plugin ABI header as released in version 1.1 (tests/abi/old_plugin_headers):
 * never edit it. tests/abi builds an old plugin and an old host against it to check that a 1.1
 * plugin runs on today's host and today's plugins run on a 1.1 host (see CMakeLists.txt there).
 *
 * Kestrel plugin ABI, version 1.
 *
 * A plugin is a shared library that exports exactly one symbol, kestrel_plugin_get_api. The host
 * (the Kestrel runtime) dlopen()s it, hands it a host table (logging, allocation, status creation)
 * and receives a table of function slots. A plugin never sees a model, a tokenizer, a sequence or a
 * scheduler: it sees devices, buffers, streams, prepared weights and sized op descriptors.
 *
 * Stability rules (see docs/PLUGIN_ABI.md):
 *  - Every table and every args/descriptor struct starts with a size field. Fields and slots are
 *    append-only. A reader touches a field or calls a slot only if it lies inside the producer's
 *    struct_size (KESTREL_PLUGIN_HAS_SLOT) and, for slots, is non-NULL.
 *  - The major version must match (KESTREL_PLUGIN_API_MAJOR); any minor works in both directions.
 *  - Memory is never assumed host-addressable: buffers are opaque handles on the plugin's device and
 *    data moves only through buffer_write / buffer_read / buffer_copy (buffer_map is optional and
 *    only for host-visible devices). Work may be asynchronous on a stream; a NULL stream means
 *    "synchronous: complete before returning".
 *
 * This header is self-contained C11 (stdint/stddef only) and is the whole contract a vendor needs.
 */
#ifndef KESTREL_PLUGIN_API_H_
#define KESTREL_PLUGIN_API_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KESTREL_PLUGIN_API_MAJOR 1
#define KESTREL_PLUGIN_API_MINOR 1

/* True if the struct pointed to by `ptr` (whose first member is a size field holding the producer's
 * sizeof) is large enough to contain `member`. Use before reading any field added after v1.0. */
#define KESTREL_PLUGIN_HAS_SLOT(ptr, type, member) \
  ((size_t)(ptr)->struct_size >= offsetof(type, member) + sizeof(((type*)0)->member))

/* ---------------------------------------------------------------------------------------------
 * Status. Created only through the host table (host->status_create); a plugin never frees one it
 * returns. NULL means OK. Codes are the canonical ones of the public API (kestrel.h). */
typedef struct kestrel_plugin_status kestrel_plugin_status_t;

typedef enum kestrel_plugin_status_code {
  KESTREL_PLUGIN_OK = 0,
  KESTREL_PLUGIN_CANCELLED = 1,
  KESTREL_PLUGIN_UNKNOWN = 2,
  KESTREL_PLUGIN_INVALID_ARGUMENT = 3,
  KESTREL_PLUGIN_NOT_FOUND = 5,
  KESTREL_PLUGIN_RESOURCE_EXHAUSTED = 8,
  KESTREL_PLUGIN_FAILED_PRECONDITION = 9,
  KESTREL_PLUGIN_OUT_OF_RANGE = 11,
  KESTREL_PLUGIN_UNIMPLEMENTED = 12,
  KESTREL_PLUGIN_INTERNAL = 13,
  KESTREL_PLUGIN_UNAVAILABLE = 14,
  KESTREL_PLUGIN_DATA_LOSS = 15
} kestrel_plugin_status_code_t;

typedef enum kestrel_plugin_log_level {
  KESTREL_PLUGIN_LOG_DEBUG = 0,
  KESTREL_PLUGIN_LOG_INFO = 1,
  KESTREL_PLUGIN_LOG_WARNING = 2,
  KESTREL_PLUGIN_LOG_ERROR = 3
} kestrel_plugin_log_level_t;

/* ---------------------------------------------------------------------------------------------
 * Host table: what the host gives a plugin. Valid from kestrel_plugin_get_api until the plugin's
 * shutdown slot returns. All functions are thread-safe. */
typedef struct kestrel_host_api {
  uint16_t struct_size; /* sizeof(kestrel_host_api_t) as the host compiled it */
  uint16_t major;       /* KESTREL_PLUGIN_API_MAJOR of the host */
  uint16_t minor;       /* KESTREL_PLUGIN_API_MINOR of the host */
  uint16_t reserved;
  void* host_ctx; /* passed back as the first argument of every slot below */
  void (*log)(void* host_ctx, kestrel_plugin_log_level_t level, const char* message, size_t length);
  /* Host memory for the plugin's own bookkeeping; alignment is a power of two. NULL on failure. */
  void* (*alloc)(void* host_ctx, size_t size, size_t alignment);
  void (*free)(void* host_ctx, void* ptr);
  /* A status to return from a plugin slot. `message` need not be NUL-terminated. */
  kestrel_plugin_status_t* (*status_create)(void* host_ctx, kestrel_plugin_status_code_t code,
                                            const char* message, size_t length);
} kestrel_host_api_t;

/* ---------------------------------------------------------------------------------------------
 * Data types. Plain types and GGUF block-quantized formats share one numbering. */
typedef enum kestrel_dtype {
  KESTREL_DTYPE_INVALID = 0,
  KESTREL_DTYPE_F32 = 1,
  KESTREL_DTYPE_F16 = 2,
  KESTREL_DTYPE_BF16 = 3,
  KESTREL_DTYPE_I32 = 4,
  KESTREL_DTYPE_I8 = 5,
  KESTREL_DTYPE_Q8_0 = 16, /* GGUF Q8_0: blocks of 32: f16 scale + 32 x int8 (34 bytes) */
  KESTREL_DTYPE_Q4_0 = 17  /* GGUF Q4_0: blocks of 32: f16 scale + 16 bytes of nibbles (18 bytes),
                              element j in low nibble of byte j, element j+16 in the high nibble,
                              value = (nibble - 8) * scale */
} kestrel_dtype_t;

#define KESTREL_DTYPE_BIT(dt) (UINT64_C(1) << (dt))

#define KESTREL_MAX_DIMS 4

/* Shape and layout of one tensor. dims[0] is the OUTERMOST dimension, dims[rank-1] the innermost
 * (row-major). strides are in bytes per step of each dimension; a stride of 0 means "packed" for
 * that dimension (all zeros: fully packed). For block-quantized dtypes the innermost dimension must
 * be a multiple of the block size and its stride must be 0. A plugin may report a layout it does not
 * handle (e.g. non-packed strides) as UNSUPPORTED.
 *
 * kestrel_tensor_desc_t and kestrel_tensor_arg_t are FROZEN for ABI major 1 (they are passed in
 * arrays, so they cannot grow): struct_size must equal sizeof(kestrel_tensor_desc_t). Anything an op
 * needs beyond them goes into its sized params struct or a new op_version. */
typedef struct kestrel_tensor_desc {
  uint32_t struct_size;
  uint32_t dtype; /* kestrel_dtype_t */
  uint32_t rank;  /* 1..KESTREL_MAX_DIMS */
  uint32_t reserved;
  int64_t dims[KESTREL_MAX_DIMS];
  int64_t strides[KESTREL_MAX_DIMS];
} kestrel_tensor_desc_t;

/* ---------------------------------------------------------------------------------------------
 * Opaque plugin objects. */
typedef struct kestrel_plugin_device kestrel_plugin_device_t;
typedef struct kestrel_plugin_buffer kestrel_plugin_buffer_t;
typedef struct kestrel_plugin_stream kestrel_plugin_stream_t;
typedef struct kestrel_plugin_event kestrel_plugin_event_t;
typedef struct kestrel_plugin_weight kestrel_plugin_weight_t;

typedef enum kestrel_plugin_device_kind {
  KESTREL_DEVICE_KIND_CPU = 1,
  KESTREL_DEVICE_KIND_GPU = 2,
  KESTREL_DEVICE_KIND_NPU = 3,
  KESTREL_DEVICE_KIND_ACCELERATOR = 4
} kestrel_plugin_device_kind_t;

/* Capabilities of one device. The host sets struct_size to its sizeof; the plugin fills only the
 * fields that fit in both its own and the host's struct (an older host gets the older prefix). */
typedef struct kestrel_device_caps {
  uint32_t struct_size;
  uint32_t kind; /* kestrel_plugin_device_kind_t */
  char name[64];         /* device name as users select it: "ref", "cpu", "cuda:0", ... */
  char description[128]; /* human-readable, e.g. the GPU model */
  uint64_t memory_bytes; /* usable device memory (host RAM for CPU devices) */
  uint8_t host_visible;  /* 1: buffer_map works and buffers are host memory */
  uint8_t async;         /* 1: streams/events are real; work may complete after a call returns */
  uint8_t reserved[6];
  uint64_t dtype_mask;   /* KESTREL_DTYPE_BIT of every dtype the device can hold and compute with */
  uint64_t weight_dtype_mask; /* dtypes accepted as matmul/embedding weights */
} kestrel_device_caps_t;

/* ---------------------------------------------------------------------------------------------
 * Ops. Rules common to every kind:
 *  - Activations are F32 unless a kind says otherwise; other activation dtypes are legal
 *    descriptors that a plugin may report UNSUPPORTED.
 *  - op_query on a known kind with a malformed descriptor (wrong input count, inconsistent dims)
 *    returns INVALID_ARGUMENT naming the field; a well-formed op the plugin cannot run is
 *    UNSUPPORTED. Unknown kinds are always UNSUPPORTED.
 *  - Outputs never alias inputs unless the kind says "may alias". Indices read from I32 inputs
 *    (token ids, slots, block ids, rows, parents) must be checked: an out-of-range index is an
 *    OUT_OF_RANGE / INVALID_ARGUMENT status, never an out-of-bounds access.
 *  - KV caches are F32 or F16 (the device's dtype_mask says which); K and V may differ.
 *  - A prepared weight passed as an argument must be described by the same dtype and dims it was
 *    prepared with (offset 0).
 * A vendor's own kinds live at or above KESTREL_OP_VENDOR_BASE. Each kind has a params
 * struct (struct_size first) and a fixed order of inputs and outputs, documented below. Shapes use
 * T = tokens in the step, D = model dim, H = query heads, Hkv = KV heads, Dh = head dim,
 * V = vocab, S = sequences in the step, B = KV block size (tokens), NB = KV blocks in the pool,
 * MB = max blocks per sequence. Unless stated, activations are F32. */
typedef enum kestrel_op_kind {
  KESTREL_OP_INVALID = 0,
  /* in: table [V, D] (any weight dtype), ids I32 [T]. out: [T, D] */
  KESTREL_OP_EMBEDDING_GATHER = 1,
  /* in: x [T, D], weight F32 [D]. out: [T, D] = x / sqrt(mean(x^2) + eps) * weight */
  KESTREL_OP_RMSNORM = 2,
  /* in: x [T, H, Dh], positions I32 [T]. out: [T, H, Dh] (may alias x). */
  KESTREL_OP_ROPE = 3,
  /* in: x [T, K], w [N, K] (F32/F16/BF16/Q8_0/Q4_0; a buffer or a prepared weight). out: [T, N] = x w^T */
  KESTREL_OP_MATMUL = 4,
  /* in: gate [T, F], up [T, F]. out: [T, F] = silu(gate) * up */
  KESTREL_OP_SWIGLU = 5,
  /* in: a [T, D], b [T, D]. out: [T, D] = a + b (may alias a or b) */
  KESTREL_OP_ADD = 6,
  /* in: k [T, Hkv, Dh], v [T, Hkv, Dh], slots I32 [T] (slot = block * B + offset in block, each
   * in [0, NB * B); there is no padding slot in v1). out: k_cache [NB, B, Hkv, Dh],
   * v_cache [NB, B, Hkv, Dh], updated in place. */
  KESTREL_OP_KV_WRITE = 7,
  /* in: pairs I32 [P, 2] (source block, destination block), applied in order.
   * out: k_cache, v_cache, in place. */
  KESTREL_OP_KV_BLOCK_COPY = 8,
  /* Varlen paged attention over S sequences.
   * in: q [T, H, Dh], k_cache [NB, B, Hkv, Dh], v_cache [NB, B, Hkv, Dh],
   *     block_tables I32 [S, MB], query_start I32 [S + 1] (prefix sums of query tokens per sequence),
   *     kv_lens I32 [S] (KV tokens of each sequence including this step's),
   *     [optional 7th input, tree mask: parents I32 [T]; see kestrel_op_attention_params_t].
   * out: [T, H, Dh]. query_start[0] = 0, query_start[S] = T, non-decreasing; q_len(s) =
   * query_start[s+1] - query_start[s] <= kv_lens[s]. Query j of sequence s sits at position
   * kv_lens[s] - q_len(s) + j; with causal it attends KV positions 0..that position. Query head h
   * reads KV head h / (H / Hkv). Only the first ceil(kv_lens[s] / B) entries of a block-table row
   * are read (the rest may hold -1). params.block_size must equal the caches' dims[1]. */
  KESTREL_OP_PAGED_ATTENTION = 9,
  /* in: x [T, D], w [V, D] (weight), rows I32 [R] (which of the T rows to project). out: [R, V] */
  KESTREL_OP_LOGITS = 10,
  /* Mixture of experts: router, top-k routing and the SwiGLU expert FFNs of one layer, fused.
   * Params: kestrel_op_moe_params_t (E = n_experts, K = top_k, El = n_local_experts).
   * in:  x [T, D] (F32),
   *      router [E, D] (weight, any weight dtype),
   *      gate_exps [El, F, D], up_exps [El, F, D], down_exps [El, D, F] (weights: F32/F16/BF16/
   *      Q8_0/Q4_0; the three may differ). A rank-3 weight is a stack of per-expert matrices:
   *      slice i (bytes [i * F * row_bytes, (i + 1) * F * row_bytes)) is the matrix of expert
   *      first_expert + i, laid out as a MATMUL weight. Like MATMUL weights, these may be prepared
   *      weights or buffers.
   * out: out [T, D] (F32) [required], then optionally stats I32 [E] (n_outputs 1 or 2).
   * Per token t:
   *   logits[e] = x[t] . router[e]                      (all E experts, every device)
   *   routing (params.routing):
   *     SOFTMAX_TOPK_RENORM (Mixtral): p = softmax(logits) over all E; S = the K experts with the
   *       largest p; w_e = p_e / sum_{j in S} p_j.
   *     SOFTMAX_TOPK: as above without the renormalisation (w_e = p_e).
   *     SIGMOID_TOPK: p_e = 1 / (1 + exp(-logits[e])); S = top K by p; w_e = p_e (no renorm).
   *   Top-k ties: of two equal scores the LOWER expert id ranks first, so selection is
   *   deterministic (e.g. equal router rows select the lowest ids).
   *   out[t] = sum_{e in S, first_expert <= e < first_expert + El}
   *              w_e * down_e( silu(gate_e x[t]) * up_e x[t] ),  silu(g) = g / (1 + exp(-g)),
   *   where gate_e x = x gate_e^T ([F]) as in MATMUL. A token none of whose K experts is local
   *   gets out[t] = 0: every row of `out` is written.
   * Expert-parallel split: each device gets the full router and its own expert range; every
   * device computes the same routing, the host sums the devices' partial `out` (and adds the
   * residual once). Weights w_e are always normalised over all K selected experts, never over the
   * local ones, so the partial outputs add up to the single-device result.
   * stats[e] (if requested) = number of tokens of this step whose S contains e, for ALL E experts
   * (not only the local ones): identical on every device of a split. sum(stats) = T * K. The
   * runtime uses it for the per-expert load statistics; it always asks for it, so a plugin that
   * claims MOE should support n_outputs = 2.
   * Shared experts (always-on FFNs, e.g. DeepSeek/Qwen-MoE) are not part of op_version 1: the
   * host runs them as a dense FFN (params.n_shared_experts is reserved and must be 0).
   * A plugin that does not implement MOE reports it UNSUPPORTED; the runtime then runs it on the
   * reference plugin (op-by-op fallback), moving x and out between the devices. */
  KESTREL_OP_MOE = 11,
  KESTREL_OP_VENDOR_BASE = 0x10000
} kestrel_op_kind_t;

typedef struct kestrel_op_rmsnorm_params {
  uint32_t struct_size;
  float eps;
} kestrel_op_rmsnorm_params_t;

typedef enum kestrel_rope_style {
  KESTREL_ROPE_STYLE_NORM = 0, /* rotate adjacent pairs (2i, 2i+1) — llama.cpp "NORM" */
  KESTREL_ROPE_STYLE_NEOX = 2  /* rotate (i, i + n_rot/2) */
} kestrel_rope_style_t;

typedef struct kestrel_op_rope_params {
  uint32_t struct_size;
  uint32_t style;  /* kestrel_rope_style_t */
  uint32_t n_rot;  /* rotated dims per head (<= Dh, even); the rest pass through */
  float freq_base; /* theta_i = pos * freq_scale * freq_base^(-2i/n_rot) */
  float freq_scale;
} kestrel_op_rope_params_t;

typedef struct kestrel_op_attention_params {
  uint32_t struct_size;
  uint32_t n_heads;
  uint32_t n_kv_heads;
  uint32_t head_dim;
  uint32_t block_size; /* B */
  uint32_t causal;     /* 1: causal mask */
  float scale;         /* usually 1/sqrt(head_dim) */
  /* 1: a 7th input parents I32 [T] gives, per query token, the index (within its sequence's
   * query tokens) of its parent in a speculative tree, -1 for a root. The query attends the
   * committed prefix (KV positions before the sequence's first query token) plus its ancestors
   * and itself; `causal` is then ignored. Parents must form a forest (no cycles); they need not
   * precede their children. Plugins may report tree masks UNSUPPORTED. */
  uint32_t tree_mask;
} kestrel_op_attention_params_t;

/* How KESTREL_OP_MOE turns router logits into expert weights (see the kind's comment). */
typedef enum kestrel_moe_routing {
  KESTREL_MOE_ROUTING_SOFTMAX_TOPK_RENORM = 0, /* Mixtral: softmax over E, top-k, renormalise */
  KESTREL_MOE_ROUTING_SOFTMAX_TOPK = 1,        /* softmax over E, top-k, weights as they are */
  KESTREL_MOE_ROUTING_SIGMOID_TOPK = 2         /* sigmoid per expert, top-k, no renormalisation */
} kestrel_moe_routing_t;

/* The expert FFN's activation. */
typedef enum kestrel_moe_activation {
  KESTREL_MOE_ACTIVATION_SWIGLU = 0 /* down( silu(gate x) * up x ) */
} kestrel_moe_activation_t;

typedef struct kestrel_op_moe_params {
  uint32_t struct_size;
  uint32_t n_experts;       /* E >= 1: experts of the layer = router rows = stats length */
  uint32_t top_k;           /* K in [1, E]: experts per token */
  uint32_t routing;         /* kestrel_moe_routing_t */
  uint32_t activation;      /* kestrel_moe_activation_t */
  uint32_t first_expert;    /* the expert weights hold experts [first_expert, first_expert + El) */
  uint32_t n_local_experts; /* El >= 1, first_expert + El <= E; El = E, first_expert = 0: all */
  uint32_t flags;           /* reserved for later routing options: must be 0 */
  uint32_t n_shared_experts; /* reserved for fused shared experts: must be 0 in op_version 1 */
} kestrel_op_moe_params_t;

/* One tensor argument of an op: a descriptor plus where the data lives. Exactly one of `buffer`
 * and `weight` is set at execute time; at query time both may be NULL (only shapes matter). */
typedef struct kestrel_tensor_arg {
  kestrel_tensor_desc_t desc;
  kestrel_plugin_buffer_t* buffer;
  uint64_t offset; /* bytes into buffer */
  kestrel_plugin_weight_t* weight;
} kestrel_tensor_arg_t;

typedef struct kestrel_op_desc {
  uint32_t struct_size;
  uint32_t kind;       /* kestrel_op_kind_t */
  uint32_t op_version; /* 1 for every kind in this header */
  uint32_t n_inputs;
  uint32_t n_outputs;
  uint32_t reserved;
  const kestrel_tensor_arg_t* inputs;
  const kestrel_tensor_arg_t* outputs;
  const void* params; /* per-kind params struct (struct_size first) or NULL if the kind has none */
  size_t params_size;
} kestrel_op_desc_t;

typedef enum kestrel_op_support_level {
  KESTREL_OP_UNSUPPORTED = 0,
  KESTREL_OP_SUPPORTED = 1,
  KESTREL_OP_PREFERRED = 2 /* the device is a good place for this op (the host may prefer it) */
} kestrel_op_support_level_t;

typedef struct kestrel_op_support {
  uint32_t struct_size;
  uint32_t level;           /* kestrel_op_support_level_t */
  uint64_t workspace_bytes; /* device scratch the op needs at execute time (0: none) */
} kestrel_op_support_t;

/* Buffer allocation flags. */
#define KESTREL_BUFFER_FLAG_NONE 0u
#define KESTREL_BUFFER_FLAG_HOST_STAGING 1u /* a hint: used for host<->device transfers */

typedef struct kestrel_plugin_option {
  const char* key;   /* NUL-terminated, e.g. "cache_dir", "threads" */
  const char* value; /* NUL-terminated */
} kestrel_plugin_option_t;

/* ---------------------------------------------------------------------------------------------
 * The plugin table. Required slots are marked [required]; the host skips a plugin whose required
 * slot is NULL. Every device-bound slot takes the device as its first argument. Unless a slot says
 * otherwise, a plugin's slots may be called from any thread but not concurrently for the same
 * device (the host serialises per device); a plugin must make its global state thread-safe. */
typedef struct kestrel_plugin_api {
  uint16_t struct_size; /* sizeof(kestrel_plugin_api_t) as the plugin compiled it */
  uint16_t major;       /* KESTREL_PLUGIN_API_MAJOR the plugin was built against */
  uint16_t minor;
  uint16_t reserved;
  const char* name;    /* [required] plugin name, e.g. "ref"; NUL-terminated, static */
  const char* version; /* plugin's own version string, static */

  /* [required] Called once after get_api; options are plugin-specific key/value strings. */
  kestrel_plugin_status_t* (*init)(const kestrel_plugin_option_t* options, size_t n_options);
  /* Called once before dlclose; all devices are closed by then. */
  void (*shutdown)(void);

  /* [required] Number of devices. When 0, the plugin writes a NUL-terminated reason (e.g. "no
   * CUDA driver: cudaGetDeviceCount returned 35") into reason[0..reason_capacity). */
  uint32_t (*device_count)(char* reason, size_t reason_capacity);
  /* [required] */
  kestrel_plugin_status_t* (*device_get_caps)(uint32_t index, kestrel_device_caps_t* caps);
  /* [required] */
  kestrel_plugin_status_t* (*device_open)(uint32_t index, kestrel_plugin_device_t** out_device);
  /* [required] Accepts NULL. */
  void (*device_close)(kestrel_plugin_device_t* device);

  /* [required] Buffers: device memory. Contents are undefined after alloc. */
  kestrel_plugin_status_t* (*buffer_alloc)(kestrel_plugin_device_t* device, uint64_t size,
                                           uint32_t flags, kestrel_plugin_buffer_t** out_buffer);
  /* [required] Accepts NULL. The host synchronises every stream using the buffer first. */
  void (*buffer_free)(kestrel_plugin_device_t* device, kestrel_plugin_buffer_t* buffer);
  /* [required] Host -> device. With a stream the call may return before the copy completes; the
   * host keeps `src` alive until the stream is synchronised. */
  kestrel_plugin_status_t* (*buffer_write)(kestrel_plugin_device_t* device,
                                           kestrel_plugin_stream_t* stream,
                                           kestrel_plugin_buffer_t* dst, uint64_t dst_offset,
                                           const void* src, uint64_t size);
  /* [required] Device -> host, same stream rules. */
  kestrel_plugin_status_t* (*buffer_read)(kestrel_plugin_device_t* device,
                                          kestrel_plugin_stream_t* stream,
                                          kestrel_plugin_buffer_t* src, uint64_t src_offset,
                                          void* dst, uint64_t size);
  /* [required] Device -> device on the same device. Regions may not overlap. */
  kestrel_plugin_status_t* (*buffer_copy)(kestrel_plugin_device_t* device,
                                          kestrel_plugin_stream_t* stream,
                                          kestrel_plugin_buffer_t* src, uint64_t src_offset,
                                          kestrel_plugin_buffer_t* dst, uint64_t dst_offset,
                                          uint64_t size);
  /* Optional, host-visible devices only: a host pointer to the buffer's first byte. */
  kestrel_plugin_status_t* (*buffer_map)(kestrel_plugin_device_t* device,
                                         kestrel_plugin_buffer_t* buffer, void** out_ptr);

  /* Optional (a synchronous plugin leaves these NULL and the host passes stream NULL). */
  kestrel_plugin_status_t* (*stream_create)(kestrel_plugin_device_t* device,
                                            kestrel_plugin_stream_t** out_stream);
  void (*stream_destroy)(kestrel_plugin_device_t* device, kestrel_plugin_stream_t* stream);
  kestrel_plugin_status_t* (*stream_synchronize)(kestrel_plugin_device_t* device,
                                                 kestrel_plugin_stream_t* stream);
  kestrel_plugin_status_t* (*event_record)(kestrel_plugin_device_t* device,
                                           kestrel_plugin_stream_t* stream,
                                           kestrel_plugin_event_t** out_event);
  /* Makes `stream` wait for `event` (which may come from another stream of the same device). */
  kestrel_plugin_status_t* (*stream_wait_event)(kestrel_plugin_device_t* device,
                                                kestrel_plugin_stream_t* stream,
                                                kestrel_plugin_event_t* event);
  kestrel_plugin_status_t* (*event_synchronize)(kestrel_plugin_device_t* device,
                                                kestrel_plugin_event_t* event);
  void (*event_destroy)(kestrel_plugin_device_t* device, kestrel_plugin_event_t* event);

  /* [required] Prepared weights: the plugin copies/repacks a host tensor (GGUF layout described by
   * `desc`) into its own layout once, at model load. `host_data` is only read during the call. */
  kestrel_plugin_status_t* (*weight_prepare)(kestrel_plugin_device_t* device,
                                             const kestrel_tensor_desc_t* desc,
                                             const void* host_data, uint64_t size,
                                             kestrel_plugin_weight_t** out_weight);
  /* [required] Accepts NULL. */
  void (*weight_release)(kestrel_plugin_device_t* device, kestrel_plugin_weight_t* weight);

  /* [required] Whether the device runs `op` (buffers may be NULL: only shapes, dtypes and params
   * are looked at). Never fails for an unknown kind: reports UNSUPPORTED. */
  kestrel_plugin_status_t* (*op_query)(kestrel_plugin_device_t* device, const kestrel_op_desc_t* op,
                                       kestrel_op_support_t* out_support);
  /* [required] Runs `op` on `stream` (NULL: synchronously). `workspace` holds at least the
   * workspace_bytes op_query reported (NULL if 0). */
  kestrel_plugin_status_t* (*op_execute)(kestrel_plugin_device_t* device,
                                         kestrel_plugin_stream_t* stream,
                                         const kestrel_op_desc_t* op,
                                         kestrel_plugin_buffer_t* workspace);
  /* Slots added after 1.0 go below this line. */

  /* Optional (since 1.1): per-device settings as key/value strings, applied to later calls.
   * Known keys: "threads" (worker threads for this device's ops, a positive integer). A plugin
   * ignores keys it does not know; a bad value for a known key is INVALID_ARGUMENT naming the key
   * and the value. The host calls it when a session asks for a thread count; the last call wins
   * for the whole device. */
  kestrel_plugin_status_t* (*device_set_options)(kestrel_plugin_device_t* device,
                                                 const kestrel_plugin_option_t* options,
                                                 size_t n_options);
} kestrel_plugin_api_t;

/* The one exported symbol. `host` stays valid until shutdown. The plugin checks host_major against
 * its own major and, if it cannot serve that host, sets *out to NULL and returns a
 * FAILED_PRECONDITION status naming both versions. With a NULL or too-small host table no status
 * can be created: it returns NULL with *out = NULL (the host treats that as "no table").
 * One loaded library serves one plugin instance: slots without a device argument (init,
 * device_count, ...) act on that instance's global state. The Kestrel host loads each library
 * once per process and shares it between runtimes: get_api and init run once, shutdown after the
 * last runtime using it is gone, and the host table stays valid for the whole process. */
typedef kestrel_plugin_status_t* (*kestrel_plugin_get_api_fn)(const kestrel_host_api_t* host,
                                                              uint16_t host_major,
                                                              uint16_t host_minor,
                                                              const kestrel_plugin_api_t** out);

#define KESTREL_PLUGIN_ENTRY_SYMBOL "kestrel_plugin_get_api"

#if defined(_WIN32)
#define KESTREL_PLUGIN_EXPORT __declspec(dllexport)
#else
#define KESTREL_PLUGIN_EXPORT __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* KESTREL_PLUGIN_API_H_ */
