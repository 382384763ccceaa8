// runtime/tokenizer/tokenizer_loader.h: reads the vocab a GGUF file carries (`tokenizer.ggml.*`)
// and creates the Tokenizer implementation `tokenizer.ggml.model` names. The only file of this
// folder that knows GGUF (through runtime/gguf, never runtime/model).
#ifndef KESTREL_RUNTIME_TOKENIZER_TOKENIZER_LOADER_H_
#define KESTREL_RUNTIME_TOKENIZER_TOKENIZER_LOADER_H_

#include <memory>

#include "absl/status/statusor.h"
#include "runtime/gguf/gguf_file.h"
#include "runtime/tokenizer/tokenizer.h"

namespace kestrel::runtime {

// UNIMPLEMENTED naming `tokenizer.ggml.model` for a vocab kind this build lacks; NOT_FOUND /
// INVALID_ARGUMENT naming the key for missing or malformed metadata.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const GgufFile& file);

}  // namespace kestrel::runtime

#endif  // KESTREL_RUNTIME_TOKENIZER_TOKENIZER_LOADER_H_
