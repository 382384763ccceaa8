/* Kestrel model packages (.kpkg): a model in a FlatBuffers container whose tensor sections are
 * aligned to 64 KiB (mapped and used in place), with its tokenizer, optionally a draft model, and
 * optionally the prepared weights of plugins (loaded without repacking on a device whose plugin
 * name, version and layout id match). kestrel_model_load reads a package like a GGUF (it tells
 * them apart by the magic). Format: docs/PACKAGE.md. */
#ifndef KESTREL_PACKAGE_H_
#define KESTREL_PACKAGE_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kestrel/export.h"
#include "kestrel/model.h"
#include "kestrel/runtime.h"
#include "kestrel/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kestrel_pack_options {
  uint32_t struct_size; /* set by kestrel_pack_options_init */
  /* Devices ("cpu", ...) whose prepared weights the package carries: the model is loaded on each
   * and its plugin exports every weight in its own layout. NULL / 0: none (the package then holds
   * the tensors only and every device prepares them at load, as from a GGUF). */
  const char* const* devices;
  size_t n_devices;
  /* Optional GGUF of a speculative draft model carried in the package (NULL: none). */
  const char* draft_path;
  kestrel_progress_fn progress_callback; /* NULL: none; returning false cancels */
  void* progress_user_data;
} kestrel_pack_options_t;

#define KESTREL_PACK_OPTIONS_MIN_SIZE \
  (offsetof(kestrel_pack_options_t, progress_user_data) + sizeof(void*))

/* Fills `options` with its struct_size and defaults. Accepts NULL. \since 0.3 */
KESTREL_API void kestrel_pack_options_init_sized(kestrel_pack_options_t* options, size_t struct_size);
static inline void kestrel_pack_options_init(kestrel_pack_options_t* options) { kestrel_pack_options_init_sized(options, sizeof(*options)); }

/* Writes the package `output_path` from the GGUF `model_path` (both NUL-terminated). The file is
 * written under "<output_path>.tmp" and renamed when complete: a failure or cancel leaves no
 * package behind. Errors: INVALID_ARGUMENT / DATA_LOSS / UNIMPLEMENTED for a bad GGUF (naming the
 * field), NOT_FOUND for a device, FAILED_PRECONDITION for a device whose plugin cannot export
 * prepared weights, CANCELLED, and the errno-mapped code of a failed write. \since 0.3 */
KESTREL_API kestrel_status_t* kestrel_package_write(kestrel_runtime_t* runtime, const char* model_path,
                                                    const char* output_path,
                                                    const kestrel_pack_options_t* options);

/* A JSON description of the package at `path` (NUL-terminated): format version, producer, file
 * size, and per model (main, draft) its role, architecture, fingerprint, source file, data
 * section and prepared-weight sets (plugin, version, layout id, size, weights). With
 * verify_checksums every section's checksum is checked first (reads the whole file; DATA_LOSS
 * naming the damaged section). Buffer convention of model.h (bytes, not NUL-terminated).
 * \since 0.3 */
KESTREL_API kestrel_status_t* kestrel_package_describe(const char* path, bool verify_checksums,
                                                       char* out_json, size_t capacity,
                                                       size_t* out_required);

/* How the model's weights were prepared at load: `imported` taken from a package's prepared
 * weights (no repacking), `prepared` by the plugin from the tensors. \since 0.3 */
KESTREL_API kestrel_status_t* kestrel_model_weight_sources(const kestrel_model_t* model,
                                                           uint32_t* out_imported,
                                                           uint32_t* out_prepared);

#ifdef __cplusplus
}
#endif

#endif /* KESTREL_PACKAGE_H_ */
