// Fuzz target: the GGUF reader (runtime/gguf) on arbitrary bytes, then every typed metadata getter
// and the tokenizer loader (runtime/tokenizer/tokenizer_loader.h) on whatever it accepts.
// Invariants: a refused file gives one of the reader's documented codes with a message; an
// accepted one has every tensor inside the file (first and last byte read); a tokenizer the loader
// accepts encodes and decodes with ids inside its vocab.
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "runtime/gguf/gguf_file.h"
#include "tests/fuzz/gguf_checks.h"

using kestrel::runtime::GgufFile;

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
  kestrel::fuzz::TouchMetadata(**f);
  kestrel::fuzz::TouchTensors(**f);
  kestrel::fuzz::TouchTokenizer(**f);
  return 0;
}
