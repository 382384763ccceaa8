/* The runtime: the root object. It discovers and loads device plugins and owns them.
 *
 * Thread-safety: a runtime may be used from any number of threads at once. Ownership: the caller
 * owns the runtime and destroys it with kestrel_runtime_destroy; models and sessions created from it
 * keep what they need of it alive, so the runtime may be destroyed before them. */
#ifndef KESTREL_RUNTIME_H_
#define KESTREL_RUNTIME_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kestrel/export.h"
#include "kestrel/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kestrel_runtime kestrel_runtime_t;

typedef enum kestrel_log_level {
  KESTREL_LOG_DEBUG = 0,
  KESTREL_LOG_INFO = 1,
  KESTREL_LOG_WARNING = 2,
  KESTREL_LOG_ERROR = 3,
  KESTREL_LOG_OFF = 4
} kestrel_log_level_t;

/* Receives every log line at or above the runtime's level. Called on whichever thread produced
 * the line (possibly several at once); `message` is not NUL-terminated and is valid only during the
 * call. The library never writes to stdout/stderr itself. */
typedef void (*kestrel_log_fn)(void* user_data, kestrel_log_level_t level, const char* message,
                               size_t length);

typedef struct kestrel_runtime_options {
  uint32_t struct_size; /* sizeof(kestrel_runtime_options_t); set by kestrel_runtime_options_init */
  /* Where to look for plugins: a ':'-separated list of folders and/or plugin files, NUL-terminated,
   * copied during create. NULL (the default): the KESTREL_PLUGIN_PATH environment variable if set,
   * else the plugin folder next to the library (build tree: build/lib/kestrel/plugins; install:
   * <prefix>/lib/kestrel/plugins). */
  const char* plugin_path;
  kestrel_log_fn log_callback; /* NULL: no logging */
  void* log_user_data;
  kestrel_log_level_t log_level; /* default KESTREL_LOG_WARNING */
} kestrel_runtime_options_t;

/* Options structs are filled by kestrel_X_options_init(&o), a static inline wrapper that passes
 * sizeof(o) as the client was compiled to kestrel_X_options_init_sized: the library writes only
 * that many bytes, so a client built against an older (smaller) header is never overrun.
 * Options structs: the library accepts any struct_size from the struct's *_MIN_SIZE (the
 * struct_size field plus the first field) up to its own sizeof; fields past the caller's
 * struct_size keep their defaults. A client compiled against an older header (a prefix of today's
 * fields) therefore keeps working. Smaller sizes are INVALID_ARGUMENT. Output structs
 * (kestrel_*_info_t, stats) follow the same rule: the library writes only the fields that fit. */
#define KESTREL_RUNTIME_OPTIONS_MIN_SIZE \
  (offsetof(kestrel_runtime_options_t, plugin_path) + sizeof(const char*))

/* Fills `options` with its struct_size and defaults. Accepts NULL (does nothing). \since 0.1 */
KESTREL_API void kestrel_runtime_options_init_sized(kestrel_runtime_options_t* options, size_t struct_size);
static inline void kestrel_runtime_options_init(kestrel_runtime_options_t* options) { kestrel_runtime_options_init_sized(options, sizeof(*options)); }

/* Creates a runtime and loads every plugin found on the plugin path. A plugin that cannot be used
 * (missing entry symbol, other major ABI version, NULL required slot, failing init, no devices) is
 * skipped and listed with the reason; it never fails the call. `options` may be NULL (defaults).
 * Errors: INVALID_ARGUMENT (NULL out_runtime, struct_size smaller than the first released size).
 * \since 0.1 */
KESTREL_API kestrel_status_t* kestrel_runtime_create(const kestrel_runtime_options_t* options,
                                                     kestrel_runtime_t** out_runtime);

/* Releases the caller's reference. Accepts NULL. \since 0.1 */
KESTREL_API void kestrel_runtime_destroy(kestrel_runtime_t* runtime);

/* ---- Plugins and devices ------------------------------------------------------------------- */

typedef struct kestrel_plugin_info {
  uint32_t struct_size; /* set by the caller to sizeof(kestrel_plugin_info_t) */
  /* All strings are NUL-terminated and valid as long as the runtime exists. */
  const char* name;    /* the plugin's name ("ref"), or the file name if it was skipped early */
  const char* path;    /* the file it was loaded from */
  const char* version; /* the plugin's own version string; "" if unknown */
  bool loaded;         /* false: skipped, see skip_reason */
  const char* skip_reason; /* "" when loaded */
  uint16_t api_major;  /* plugin ABI version the plugin reports (0 if unknown) */
  uint16_t api_minor;
  uint32_t device_count;
} kestrel_plugin_info_t;

#define KESTREL_PLUGIN_INFO_MIN_SIZE (offsetof(kestrel_plugin_info_t, name) + sizeof(const char*))

/* Number of plugins found, loaded or skipped. NULL runtime: 0. \since 0.1 */
KESTREL_API size_t kestrel_runtime_plugin_count(const kestrel_runtime_t* runtime);

/* Describes plugin `index`. The library fills the fields that fit in out_info->struct_size.
 * Errors: INVALID_ARGUMENT (NULLs, struct_size too small), OUT_OF_RANGE (index). \since 0.1 */
KESTREL_API kestrel_status_t* kestrel_runtime_plugin_info(const kestrel_runtime_t* runtime,
                                                          size_t index,
                                                          kestrel_plugin_info_t* out_info);

typedef enum kestrel_device_kind {
  KESTREL_DEVICE_CPU = 1,
  KESTREL_DEVICE_GPU = 2,
  KESTREL_DEVICE_NPU = 3,
  KESTREL_DEVICE_ACCELERATOR = 4
} kestrel_device_kind_t;

/* Bits of kestrel_device_info_t.dtype_mask / weight_dtype_mask. */
#define KESTREL_DTYPE_MASK_F32 (UINT64_C(1) << 1)
#define KESTREL_DTYPE_MASK_F16 (UINT64_C(1) << 2)
#define KESTREL_DTYPE_MASK_BF16 (UINT64_C(1) << 3)
#define KESTREL_DTYPE_MASK_I32 (UINT64_C(1) << 4)
#define KESTREL_DTYPE_MASK_I8 (UINT64_C(1) << 5)
#define KESTREL_DTYPE_MASK_Q8_0 (UINT64_C(1) << 16)
#define KESTREL_DTYPE_MASK_Q4_0 (UINT64_C(1) << 17)
/* \since 0.2: the GGUF formats Q4_1 .. Q6_K (layouts: kestrel_dtype_t in plugin_api.h). */
#define KESTREL_DTYPE_MASK_Q4_1 (UINT64_C(1) << 18)
#define KESTREL_DTYPE_MASK_Q5_0 (UINT64_C(1) << 19)
#define KESTREL_DTYPE_MASK_Q5_1 (UINT64_C(1) << 20)
#define KESTREL_DTYPE_MASK_Q2_K (UINT64_C(1) << 21)
#define KESTREL_DTYPE_MASK_Q3_K (UINT64_C(1) << 22)
#define KESTREL_DTYPE_MASK_Q4_K (UINT64_C(1) << 23)
#define KESTREL_DTYPE_MASK_Q5_K (UINT64_C(1) << 24)
#define KESTREL_DTYPE_MASK_Q6_K (UINT64_C(1) << 25)

typedef struct kestrel_device_info {
  uint32_t struct_size; /* set by the caller to sizeof(kestrel_device_info_t) */
  const char* name;     /* as used in kestrel_model_options_t.device, e.g. "ref", "cuda:0" */
  const char* plugin;   /* name of the plugin that provides it */
  const char* description;
  kestrel_device_kind_t kind;
  uint64_t memory_bytes;
  bool host_visible;
  bool async;
  uint64_t dtype_mask;        /* KESTREL_DTYPE_MASK_* it computes with */
  uint64_t weight_dtype_mask; /* KESTREL_DTYPE_MASK_* it accepts as weights */
} kestrel_device_info_t;

#define KESTREL_DEVICE_INFO_MIN_SIZE (offsetof(kestrel_device_info_t, name) + sizeof(const char*))

/* Number of usable devices over all loaded plugins. NULL runtime: 0. \since 0.1 */
KESTREL_API size_t kestrel_runtime_device_count(const kestrel_runtime_t* runtime);

/* Describes device `index` (strings valid as long as the runtime exists).
 * Errors: INVALID_ARGUMENT, OUT_OF_RANGE. \since 0.1 */
KESTREL_API kestrel_status_t* kestrel_runtime_device_info(const kestrel_runtime_t* runtime,
                                                          size_t index,
                                                          kestrel_device_info_t* out_info);

#ifdef __cplusplus
}
#endif

#endif /* KESTREL_RUNTIME_H_ */
