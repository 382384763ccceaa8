#include "runtime/package/fingerprint.h"

#include <algorithm>
#include <string>
#include <vector>

#include "runtime/package/checksum.h"

namespace kestrel {
namespace runtime {
namespace {

void HashU64(Xxh64& h, uint64_t v) { h.Update(&v, sizeof v); }
void HashString(Xxh64& h, const std::string& s) {
  HashU64(h, s.size());
  h.Update(s.data(), s.size());
}

void HashValue(Xxh64& h, const GgufValue& v) {
  HashU64(h, static_cast<uint64_t>(v.type()));
  if (const std::string* s = v.AsString()) {
    HashString(h, *s);
  } else if (v.is_array()) {
    HashU64(h, static_cast<uint64_t>(v.array_type()));
    HashU64(h, v.array_size());
    if (const std::vector<std::string>* a = v.AsStringArray()) {
      for (const std::string& s : *a) HashString(h, s);
    } else if (const std::vector<GgufValue>* aa = v.AsArrayOfArrays()) {
      for (const GgufValue& e : *aa) HashValue(h, e);
    } else {
      absl::Span<const uint8_t> raw = v.array_raw();
      h.Update(raw.data(), raw.size());
    }
  } else {
    HashU64(h, GgufValueBuilder::ScalarBits(v));
  }
}

}  // namespace

uint64_t ModelFingerprint(const GgufFile& file) {
  Xxh64 h;
  std::vector<const GgufKeyValue*> kvs;
  for (const GgufKeyValue& kv : file.metadata()) {
    // general.alignment describes the GGUF layout, not the model.
    if (kv.key != "general.alignment") kvs.push_back(&kv);
  }
  std::sort(kvs.begin(), kvs.end(),
            [](const GgufKeyValue* a, const GgufKeyValue* b) { return a->key < b->key; });
  HashU64(h, kvs.size());
  for (const GgufKeyValue* kv : kvs) {
    HashString(h, kv->key);
    HashValue(h, kv->value);
  }
  HashU64(h, file.tensors().size());
  for (const GgufTensorInfo& t : file.tensors()) {
    HashString(h, t.name);
    HashU64(h, static_cast<uint64_t>(t.type));
    HashU64(h, t.dims.size());
    for (uint64_t d : t.dims) HashU64(h, d);
  }
  for (const GgufTensorInfo& t : file.tensors()) {
    h.Update(file.TensorData(t), static_cast<size_t>(t.size_bytes));
  }
  return h.Digest();
}

}  // namespace runtime
}  // namespace kestrel
