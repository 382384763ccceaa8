// runtime/package/fingerprint.h: the identity of a model's content, what a session state names so
// it is never restored into another model. XXH64 over the metadata (sorted by key, each with its
// GGUF type and value), the tensor table (name, type, dims, in file order) and every tensor's
// bytes. A GGUF and the .kpkg packed from it have the same fingerprint (the package stores it; the
// metadata round trip is exact), so a state saved with one restores with the other.
#ifndef KESTREL_RUNTIME_PACKAGE_FINGERPRINT_H_
#define KESTREL_RUNTIME_PACKAGE_FINGERPRINT_H_

#include <cstdint>

#include "runtime/gguf/gguf_file.h"

namespace kestrel {
namespace runtime {

// Reads every tensor byte (about 10 GB/s): computed once per model, when first needed.
uint64_t ModelFingerprint(const GgufFile& file);

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_PACKAGE_FINGERPRINT_H_
