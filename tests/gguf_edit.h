// Test helper: copies a GGUF with some metadata keys replaced or added (tensors unchanged), to
// make variants of the shared test models (a chat template, a broken vocab key, ...).
#ifndef KESTREL_TESTS_GGUF_EDIT_H_
#define KESTREL_TESTS_GGUF_EDIT_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "runtime/gguf/gguf_file.h"
#include "runtime/gguf/gguf_writer.h"

namespace kestrel::testing {

using GgufOverrides = std::vector<std::pair<std::string, runtime::GgufValue>>;

inline absl::Status CopyGgufWith(const std::string& in_path, const std::string& out_path,
                                 const GgufOverrides& overrides) {
  auto in = runtime::GgufFile::Open(in_path);
  if (!in.ok()) return in.status();
  const runtime::GgufFile& f = **in;
  runtime::GgufWriter w(f.alignment());
  absl::Status s;
  auto overridden = [&](const std::string& key) {
    for (const auto& [k, v] : overrides) {
      if (k == key) return true;
    }
    return false;
  };
  for (const auto& kv : f.metadata()) {
    if (kv.key == "general.alignment" || overridden(kv.key)) continue;
    if (s.ok()) s = w.AddKv(kv.key, kv.value);
  }
  for (const auto& [k, v] : overrides) {
    if (s.ok()) s = w.AddKv(k, v);
  }
  for (const auto& t : f.tensors()) {
    if (s.ok()) s = w.AddTensor(t.name, t.type, t.dims);
  }
  if (s.ok()) s = w.OpenFile(out_path);
  for (const auto& t : f.tensors()) {
    if (s.ok()) s = w.WriteTensor(t.name, f.TensorData(t), t.size_bytes);
  }
  if (s.ok()) s = w.Close();
  return s;
}

}  // namespace kestrel::testing

#endif  // KESTREL_TESTS_GGUF_EDIT_H_
