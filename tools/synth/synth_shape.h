// tools/synth: the synthetic-model generator `kestrel-synth` (GGUF v3, seeded random weights).
//
// This folder owns the generator only: model shapes, the synthetic SentencePiece vocab, the
// block encoders (Q8_0/Q4_0: quantize.h; Q4_1..Q6_K: quantize_kquants.h), the per-tensor type
// rule of the _M mixes, and the streaming writer loop. It uses runtime/gguf's GgufWriter and
// half.h, and nothing else of the runtime; the files it writes are ordinary llama GGUFs that any
// reader (Kestrel, llama.cpp) loads.
//
// synth_shape.h: the hyperparameters of a synthetic model and the named presets.
#ifndef KESTREL_TOOLS_SYNTH_SYNTH_SHAPE_H_
#define KESTREL_TOOLS_SYNTH_SYNTH_SHAPE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/gguf/ggml_type.h"

namespace kestrel::synth {

struct ModelShape {
  std::string name = "custom";  // preset name, or "custom"
  uint32_t dim = 0;             // llama.embedding_length
  uint32_t layers = 0;          // llama.block_count
  uint32_t heads = 0;           // llama.attention.head_count
  uint32_t kv_heads = 0;        // llama.attention.head_count_kv
  uint32_t ffn = 0;             // llama.feed_forward_length (per expert for MoE)
  uint32_t vocab = 32000;       // tokens in the synthetic vocab
  uint32_t experts = 0;         // llama.expert_count (0: dense FFN)
  uint32_t experts_used = 0;    // llama.expert_used_count
  uint32_t context = 2048;      // llama.context_length

  uint32_t head_dim() const { return heads == 0 ? 0 : dim / heads; }
};

// The presets: tinyllama-1.1b, llama-8b, mixtral-small. NOT_FOUND names the known ones.
absl::StatusOr<ModelShape> PresetShape(const std::string& name);
// Names of the presets, in the order --help lists them.
std::vector<std::string> PresetNames();

// How the matrices get their types: all in `type`, or as llama.cpp's llama-quantize assigns them
// for its Q4_K_M / Q5_K_M file types (with `type` Q4_K / Q5_K the base; see MixedType).
enum class TypeMix { kUniform, kQ4_K_M, kQ5_K_M };

// Checks a shape for `type` (the matrix type): a type kestrel-synth writes (F32, F16, Q8_0, Q4_0,
// Q4_1, Q5_0, Q5_1, Q2_K..Q6_K), every count positive, dim divisible by heads, heads by kv_heads,
// an even head_dim, experts_used in [1, experts] for MoE, vocab >= 259 (3 special + 256 byte
// tokens), and dim and ffn multiples of the type's block (32, or 256 for the K-quants) along
// each row. INVALID_ARGUMENT names the field and value.
absl::Status ValidateShape(const ModelShape& shape, runtime::GgmlType type);

// The type llama-quantize gives a tensor under `mix` (base = the mix's default, Q4_K or Q5_K), for
// llama with dense or MoE FFNs: output.weight Q6_K; attn_v.weight and ffn_down(_exps).weight of
// the layers where use_more_bits(layer, n_layers) (the first and last eighth and every third in
// between) Q6_K; with exactly 8 experts attn_v and attn_k Q8_0 and (Q4_K_M) attn_output Q5_K;
// every other matrix (token_embd included) the base. kUniform: `base` for every matrix.
runtime::GgmlType MixedType(TypeMix mix, runtime::GgmlType base, const std::string& tensor_name,
                            uint32_t layer, const ModelShape& shape);

// One tensor of the file, in write order.
enum class Init {
  kOnes,    // norm weights: exactly 1
  kNormal,  // seeded, approximately N(0, stddev^2)
};
struct TensorSpec {
  std::string name;
  runtime::GgmlType type;
  std::vector<uint64_t> dims;  // ggml ne order (dims[0] = row length = fan_in)
  Init init;
  float stddev;
  uint64_t n_elements() const;
};

// Every tensor of the model in the order llama.cpp's converter writes them: token_embd, then per
// block attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm and the FFN (ffn_gate, ffn_up,
// ffn_down; or for MoE ffn_gate_inp, ffn_gate_exps, ffn_down_exps, ffn_up_exps), then output_norm,
// output. Matrices (token_embd and output included) are in `type` (or MixedType's under a mix);
// norms and the MoE router (ffn_gate_inp, which llama-quantize never quantizes either) are F32.
// Standard deviations: token_embd 1 (RMSNorm follows), every matrix 1/sqrt(fan_in) so activations
// keep unit scale through each layer, norms exactly 1.
std::vector<TensorSpec> TensorPlan(const ModelShape& shape, runtime::GgmlType type,
                                   TypeMix mix = TypeMix::kUniform);

// Parameters (elements) and tensor-data bytes (without alignment padding) of the whole plan.
struct ShapeSize {
  uint64_t n_params = 0;
  uint64_t n_bytes = 0;
};
ShapeSize ComputeSize(const ModelShape& shape, runtime::GgmlType type,
                      TypeMix mix = TypeMix::kUniform);

}  // namespace kestrel::synth

#endif  // KESTREL_TOOLS_SYNTH_SYNTH_SHAPE_H_
