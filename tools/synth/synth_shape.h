// tools/synth: the synthetic-model generator `kestrel-synth` (GGUF v3, seeded random weights).
//
// This folder owns the generator only: model shapes, the synthetic SentencePiece vocab, the
// block encoders (Q8_0/Q4_0: quantize.h; Q4_1..Q6_K: quantize_kquants.h), the per-tensor type
// rule of the _M mixes, and the streaming writer loop. It uses runtime/gguf's GgufWriter and
// half.h, and nothing else of the runtime; the files it writes are ordinary GGUFs (llama, and the
// *-tiny shapes of qwen2, qwen3, phi3, gemma3 and Llama 3) that any reader (Kestrel, llama.cpp)
// loads.
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

  // Architecture variations (the *-tiny shapes; the llama presets keep the defaults).
  std::string arch = "llama";    // general.architecture and the metadata key prefix
  uint32_t key_length = 0;       // <arch>.attention.key_length (0: dim / heads, key not written)
  float rope_base = 10000.0f;    // <arch>.rope.freq_base
  bool qkv_bias = false;         // blk.N.attn_{q,k,v}.bias (qwen2)
  bool qk_norm = false;          // blk.N.attn_{q,k}_norm.weight [head_dim] (qwen3)
  bool fused = false;            // blk.N.attn_qkv and a gate+up ffn_up [D, 2F], no ffn_gate (phi3)
  bool rope_freqs = false;       // rope_freqs.weight [head_dim / 2] (Llama 3)
  uint32_t original_context = 0;  // >0: rope_factors_short/long + rope.scaling.* keys (phi3)
  float rope_attn_factor = 0.0f;  // >0: <arch>.rope.scaling.attn_factor
  bool random_norms = false;     // norms 1 + N(0, 0.2^2) instead of exactly 1
  // Gemma 3: post_attention_norm / post_ffw_norm per block, no output.weight (tied embeddings),
  // <arch>.attention.sliding_window and .sliding_window_pattern (0: keys not written).
  bool post_norms = false;
  bool tied_output = false;
  uint32_t sliding_window = 0;
  uint32_t swa_pattern = 0;

  uint32_t head_dim() const {
    if (key_length != 0) return key_length;
    return heads == 0 ? 0 : dim / heads;
  }
};

// The presets: tinyllama-1.1b, llama-8b, mixtral-small, and the small test models of each
// architecture: llama3-tiny (rope_freqs), qwen2-tiny (QKV bias), qwen3-tiny (Q/K norm, head dim
// 32 with dim 64 and 4 heads), phi3-tiny (fused QKV and gate/up, short/long RoPE factors),
// gemma3-tiny (Q/K norm, post-norms, tied output, MQA, 3 layers of which 0 and 1 are local with an
// 8-token window). NOT_FOUND names the known ones.
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
  kOnes,       // norm weights: exactly 1
  kNormal,     // seeded, approximately N(0, stddev^2)
  kAroundOne,  // 1 + kNormal (random norm weights; RoPE factors, kept > 0 by stddev <= 0.25)
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
