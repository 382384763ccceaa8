// runtime/package/value_codec.h: GGUF metadata values <-> the package manifest's Value tables
// (kpkg.fbs), and the split of a GGUF's tokenizer.* keys into the manifest's Tokenizer table and
// back. The round trip is exact: every key comes back with its GGUF type and value (a key whose
// type is not the one the Tokenizer field stores travels in Tokenizer.extra as it is).
#ifndef KESTREL_RUNTIME_PACKAGE_VALUE_CODEC_H_
#define KESTREL_RUNTIME_PACKAGE_VALUE_CODEC_H_

#include <vector>

#include "absl/status/statusor.h"
#include "runtime/gguf/gguf_file.h"
#include "runtime/gguf/gguf_value.h"
#include "runtime/package/kpkg_generated.h"

namespace kestrel {
namespace runtime {

flatbuffers::Offset<kpkg::Value> EncodeValue(flatbuffers::FlatBufferBuilder& fbb, const GgufValue& v);
// INVALID_ARGUMENT naming `key` when the value is malformed (unknown type, raw bytes that are not
// a whole number of elements, nesting deeper than `depth_left`).
absl::StatusOr<GgufValue> DecodeValue(const kpkg::Value& v, const std::string& key, int depth_left = 8);

// Encodes the metadata of `file`: the tokenizer keys into *tokenizer, the rest into *metadata.
void EncodeMetadata(flatbuffers::FlatBufferBuilder& fbb, const std::vector<GgufKeyValue>& kvs,
                    flatbuffers::Offset<flatbuffers::Vector<flatbuffers::Offset<kpkg::KeyValue>>>* metadata,
                    flatbuffers::Offset<kpkg::Tokenizer>* tokenizer);
// The GGUF key/value list back: `metadata` then the tokenizer's keys.
absl::StatusOr<std::vector<GgufKeyValue>> DecodeMetadata(
    const flatbuffers::Vector<flatbuffers::Offset<kpkg::KeyValue>>* metadata,
    const kpkg::Tokenizer* tokenizer);

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_PACKAGE_VALUE_CODEC_H_
