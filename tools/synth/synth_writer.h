// tools/synth/synth_writer.h: writes a synthetic llama GGUF v3, streaming tensor by tensor.
//
// Memory: only the header (metadata, vocab, tensor table) and one chunk of 256 Ki elements (1 MiB
// of floats plus its encoding) live in memory at any time, so an 8B model is written in a few MiB
// of RSS. Each tensor's values come from its own generator, seeded from (seed, tensor name), so the
// bytes of a tensor do not depend on the order or number of the others, and the same arguments
// always give a byte-identical file.
//
// Values: norms exactly 1; every other tensor approximately N(0, stddev^2) (TensorPlan gives the
// stddev): the Irwin-Hall sum of four uniforms from one SplitMix64 draw, rescaled to unit variance
// (bounded at +-3.46 sigma; cheap, portable and bit-reproducible, which is what a benchmark model
// needs), then encoded as F32, F16, Q8_0, Q4_0 or one of quantize_kquants.h's formats.
#ifndef KESTREL_TOOLS_SYNTH_SYNTH_WRITER_H_
#define KESTREL_TOOLS_SYNTH_SYNTH_WRITER_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "runtime/gguf/ggml_type.h"
#include "tools/synth/synth_shape.h"

namespace kestrel::synth {

struct WriteProgress {
  size_t tensor_index = 0;  // the tensor just finished (0-based)
  size_t n_tensors = 0;
  const std::string* tensor_name = nullptr;
  uint64_t bytes_done = 0;   // tensor data written so far
  uint64_t bytes_total = 0;  // all tensor data
};

struct SynthOptions {
  ModelShape shape;
  runtime::GgmlType type = runtime::GgmlType::Q4_0;  // F16, Q8_0, Q4_0, Q4_1..Q6_K (F32 also works)
  TypeMix mix = TypeMix::kUniform;  // kQ4_K_M / kQ5_K_M: per-tensor types (type = Q4_K / Q5_K)
  uint64_t seed = 1;
  std::string output_path;
  std::string model_name;  // general.name; empty: "kestrel-synth <shape> <type> seed <seed>"
  std::function<void(const WriteProgress&)> on_tensor_written;  // may be empty
};

// Validates the shape (ValidateShape) and writes the file. The data goes to
// "<output_path>.partial", renamed to output_path only when complete, so a failed or interrupted
// run never leaves a file that looks whole. Errors: INVALID_ARGUMENT (shape, type, an output path
// that exists and is not a regular file, such as /dev/null), the errno-mapped code of an I/O
// failure.
absl::Status WriteSyntheticModel(const SynthOptions& options);

// GGUF general.file_type (llama_ftype) for a matrix type: F32 0, F16 1, Q4_0 2, Q4_1 3, Q8_0 7,
// Q5_0 8, Q5_1 9, Q2_K 10, Q3_K 11 (Q3_K_S), Q4_K 14 (Q4_K_S), Q5_K 16 (Q5_K_S), Q6_K 18;
// the mixes Q4_K_M 15, Q5_K_M 17.
uint32_t FileTypeOf(runtime::GgmlType type, TypeMix mix = TypeMix::kUniform);

// "Q4_K_M" / "Q5_K_M" for a mix, else the type's name.
std::string TypeLabel(runtime::GgmlType type, TypeMix mix);

// The value generator, exposed for tests: fills out[0..n) with the next n values of a stream of
// approximately N(0, stddev^2) values whose state is *state.
void FillNormal(uint64_t* state, float stddev, float* out, size_t n);
// Seed of a tensor's stream.
uint64_t TensorSeed(uint64_t seed, const std::string& tensor_name);

}  // namespace kestrel::synth

#endif  // KESTREL_TOOLS_SYNTH_SYNTH_WRITER_H_
