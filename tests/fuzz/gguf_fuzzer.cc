// Fuzz target: the GGUF reader (runtime/gguf) on arbitrary bytes, then every typed metadata getter
// and the tokenizer loader (runtime/tokenizer/tokenizer_loader.h) on whatever it accepts.
// Invariants: a refused file gives one of the reader's documented codes with a message; an
// accepted one has every tensor inside the file (first and last byte read); a tokenizer the loader
// accepts encodes and decodes with ids inside its vocab.
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "runtime/gguf/gguf_file.h"
#include "runtime/tokenizer/tokenizer_loader.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using kestrel::runtime::GgufFile;

void TouchMetadata(const GgufFile& f) {
  for (const auto& kv : f.metadata()) {
    const absl::string_view k = kv.key;
    (void)f.GetString(k);
    (void)f.GetU32(k);
    (void)f.GetU64(k);
    (void)f.GetI64(k);
    (void)f.GetF32(k);
    (void)f.GetBool(k);
    auto strings = f.GetStringArray(k);
    if (strings.ok()) {
      for (const std::string& s : *strings) (void)s.size();
    }
    (void)f.GetF32Array(k);
    (void)f.GetI32Array(k);
    KESTREL_FUZZ_CHECK(f.Find(k) != nullptr, "key '%s' listed but not found", kv.key.c_str());
  }
}

void TouchTensors(const GgufFile& f) {
  for (const auto& t : f.tensors()) {
    KESTREL_FUZZ_CHECK(f.data_offset() + t.offset_in_data + t.size_bytes <= f.file_size(),
                       "tensor '%s' ends past the file", t.name.c_str());
    KESTREL_FUZZ_CHECK(f.FindTensor(t.name) == &t, "tensor '%s' not found by name",
                       t.name.c_str());
    if (t.size_bytes == 0) continue;
    volatile uint8_t first = f.TensorData(t)[0];
    volatile uint8_t last = f.TensorData(t)[t.size_bytes - 1];
    (void)first;
    (void)last;
  }
}

void TouchTokenizer(const GgufFile& f) {
  auto tok = kestrel::runtime::LoadTokenizer(f);
  if (!tok.ok()) {
    KESTREL_FUZZ_CHECK(!tok.status().message().empty(), "tokenizer refused without a message");
    return;
  }
  const int32_t n = (*tok)->vocab_size();
  for (bool special : {false, true}) {
    for (int32_t id : (*tok)->Encode("Hello world, <s> \xF0\x9F\x99\x82 \xFF!", special, special)) {
      KESTREL_FUZZ_CHECK(id >= 0 && id < n, "id %d outside the vocab of %d", id, n);
    }
  }
  const int32_t ids[] = {-1, 0, 1, n - 1, n, 1 << 30};
  (void)(*tok)->Decode(ids, true);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto f = GgufFile::OpenFromMemory(absl::string_view(reinterpret_cast<const char*>(data), size));
  if (!f.ok()) {
    const absl::StatusCode c = f.status().code();
    KESTREL_FUZZ_CHECK(c == absl::StatusCode::kDataLoss || c == absl::StatusCode::kInvalidArgument ||
                           c == absl::StatusCode::kUnimplemented ||
                           c == absl::StatusCode::kResourceExhausted,
                       "undocumented status %s", f.status().ToString().c_str());
    KESTREL_FUZZ_CHECK(!f.status().message().empty(), "refused without a message");
    return 0;
  }
  TouchMetadata(**f);
  TouchTensors(**f);
  TouchTokenizer(**f);
  return 0;
}
