#include "tools/synth/synth_writer.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/gguf/gguf_writer.h"
#include "runtime/gguf/half.h"
#include "tools/synth/quantize.h"
#include "tools/synth/quantize_kquants.h"
#include "tools/synth/synth_vocab.h"

namespace kestrel::synth {

using runtime::GgmlType;
using runtime::GgufWriter;

namespace {

#define SYNTH_RETURN_IF_ERROR(expr)               \
  do {                                            \
    absl::Status synth_status_ = (expr);          \
    if (!synth_status_.ok()) return synth_status_; \
  } while (0)

constexpr size_t kChunkElems = size_t{1} << 18;  // a multiple of the 32-element block

uint64_t SplitMix64(uint64_t* state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Encodes n floats (n a multiple of 32 for quantized types) into dst; returns the byte count.
size_t Encode(GgmlType type, const float* src, size_t n, uint8_t* dst) {
  switch (type) {
    case GgmlType::F32:
      std::memcpy(dst, src, n * sizeof(float));
      return n * sizeof(float);
    case GgmlType::F16:
      for (size_t i = 0; i < n; ++i) {
        const uint16_t h = runtime::F32ToF16(src[i]);
        std::memcpy(dst + 2 * i, &h, 2);
      }
      return n * 2;
    case GgmlType::Q8_0:
      QuantizeQ8_0(src, n, dst);
      return n / kQuantBlockElems * kQ8_0BlockBytes;
    case GgmlType::Q4_0:
      QuantizeQ4_0(src, n, dst);
      return n / kQuantBlockElems * kQ4_0BlockBytes;
    default:
      return QuantizeExtra(type, src, n, dst);  // 0 for a type ValidateShape excludes
  }
}

absl::Status DeclareMetadata(const SynthOptions& o, GgufWriter* w) {
  const ModelShape& s = o.shape;
  const std::string a = s.arch + ".";
  std::string name = o.model_name;
  if (name.empty()) {
    name = absl::StrCat("kestrel-synth ", s.name, " ", TypeLabel(o.type, o.mix), " seed ", o.seed);
  }
  SYNTH_RETURN_IF_ERROR(w->AddString("general.architecture", s.arch));
  SYNTH_RETURN_IF_ERROR(w->AddString("general.name", name));
  SYNTH_RETURN_IF_ERROR(w->AddU32("general.file_type", FileTypeOf(o.type, o.mix)));
  if (runtime::GgmlTypeTraitsOf(o.type).is_quantized) {
    SYNTH_RETURN_IF_ERROR(w->AddU32("general.quantization_version", 2));
  }
  SYNTH_RETURN_IF_ERROR(w->AddU32(a + "context_length", s.context));
  SYNTH_RETURN_IF_ERROR(w->AddU32(a + "embedding_length", s.dim));
  SYNTH_RETURN_IF_ERROR(w->AddU32(a + "block_count", s.layers));
  SYNTH_RETURN_IF_ERROR(w->AddU32(a + "feed_forward_length", s.ffn));
  SYNTH_RETURN_IF_ERROR(w->AddU32(a + "attention.head_count", s.heads));
  SYNTH_RETURN_IF_ERROR(w->AddU32(a + "attention.head_count_kv", s.kv_heads));
  SYNTH_RETURN_IF_ERROR(w->AddU32(a + "rope.dimension_count", s.head_dim()));
  SYNTH_RETURN_IF_ERROR(w->AddF32(a + "rope.freq_base", s.rope_base));
  if (s.key_length != 0) {
    SYNTH_RETURN_IF_ERROR(w->AddU32(a + "attention.key_length", s.key_length));
    SYNTH_RETURN_IF_ERROR(w->AddU32(a + "attention.value_length", s.key_length));
  }
  if (s.original_context > 0) {
    SYNTH_RETURN_IF_ERROR(w->AddString(a + "rope.scaling.type", "longrope"));
    SYNTH_RETURN_IF_ERROR(w->AddU32(a + "rope.scaling.original_context_length", s.original_context));
  }
  if (s.sliding_window > 0) {
    SYNTH_RETURN_IF_ERROR(w->AddU32(a + "attention.sliding_window", s.sliding_window));
    SYNTH_RETURN_IF_ERROR(w->AddU32(a + "attention.sliding_window_pattern", s.swa_pattern));
  }
  if (s.rope_attn_factor > 0.0f) {
    SYNTH_RETURN_IF_ERROR(w->AddF32(a + "rope.scaling.attn_factor", s.rope_attn_factor));
  }
  SYNTH_RETURN_IF_ERROR(w->AddF32(a + "attention.layer_norm_rms_epsilon", 1e-5f));
  SYNTH_RETURN_IF_ERROR(w->AddU32(a + "vocab_size", s.vocab));
  if (s.experts > 0) {
    SYNTH_RETURN_IF_ERROR(w->AddU32(a + "expert_count", s.experts));
    SYNTH_RETURN_IF_ERROR(w->AddU32(a + "expert_used_count", s.experts_used));
  }
  SynthVocab vocab = BuildSynthVocab(s.vocab);
  SYNTH_RETURN_IF_ERROR(w->AddString("tokenizer.ggml.model", "llama"));
  SYNTH_RETURN_IF_ERROR(w->AddStringArray("tokenizer.ggml.tokens", std::move(vocab.tokens)));
  SYNTH_RETURN_IF_ERROR(w->AddF32Array("tokenizer.ggml.scores", vocab.scores));
  SYNTH_RETURN_IF_ERROR(w->AddI32Array("tokenizer.ggml.token_type", vocab.token_types));
  SYNTH_RETURN_IF_ERROR(w->AddU32("tokenizer.ggml.bos_token_id", kBosId));
  SYNTH_RETURN_IF_ERROR(w->AddU32("tokenizer.ggml.eos_token_id", kEosId));
  SYNTH_RETURN_IF_ERROR(w->AddU32("tokenizer.ggml.unknown_token_id", kUnkId));
  SYNTH_RETURN_IF_ERROR(w->AddBool("tokenizer.ggml.add_bos_token", true));
  SYNTH_RETURN_IF_ERROR(w->AddBool("tokenizer.ggml.add_eos_token", false));
  // Provenance, so a file says how to make it again.
  SYNTH_RETURN_IF_ERROR(w->AddString("kestrel.synth.shape", s.name));
  SYNTH_RETURN_IF_ERROR(w->AddU64("kestrel.synth.seed", o.seed));
  return absl::OkStatus();
}

absl::Status WriteTensors(const SynthOptions& o, const std::vector<TensorSpec>& plan,
                          uint64_t bytes_total, GgufWriter* writer) {
  std::vector<float> values(kChunkElems);
  std::vector<uint8_t> encoded(kChunkElems * sizeof(float));
  uint64_t bytes_done = 0;
  for (size_t i = 0; i < plan.size(); ++i) {
    const TensorSpec& t = plan[i];
    uint64_t state = TensorSeed(o.seed, t.name);
    const uint64_t n = t.n_elements();
    for (uint64_t done = 0; done < n;) {
      const size_t chunk = static_cast<size_t>(std::min<uint64_t>(kChunkElems, n - done));
      if (t.init == Init::kOnes) {
        std::fill(values.begin(), values.begin() + chunk, 1.0f);
      } else {
        FillNormal(&state, t.stddev, values.data(), chunk);
        if (t.init == Init::kAroundOne) {
          for (size_t j = 0; j < chunk; ++j) values[j] += 1.0f;
        }
      }
      const size_t size = Encode(t.type, values.data(), chunk, encoded.data());
      SYNTH_RETURN_IF_ERROR(writer->WriteTensorData(encoded.data(), size));
      bytes_done += size;
      done += chunk;
    }
    if (o.on_tensor_written) {
      WriteProgress p;
      p.tensor_index = i;
      p.n_tensors = plan.size();
      p.tensor_name = &t.name;
      p.bytes_done = bytes_done;
      p.bytes_total = bytes_total;
      o.on_tensor_written(p);
    }
  }
  return absl::OkStatus();
}

}  // namespace

uint32_t FileTypeOf(GgmlType type, TypeMix mix) {
  if (mix == TypeMix::kQ4_K_M) return 15;
  if (mix == TypeMix::kQ5_K_M) return 17;
  switch (type) {
    case GgmlType::F32: return 0;
    case GgmlType::F16: return 1;
    case GgmlType::Q4_0: return 2;
    case GgmlType::Q4_1: return 3;
    case GgmlType::Q8_0: return 7;
    case GgmlType::Q5_0: return 8;
    case GgmlType::Q5_1: return 9;
    case GgmlType::Q2_K: return 10;
    case GgmlType::Q3_K: return 11;
    case GgmlType::Q4_K: return 14;
    case GgmlType::Q5_K: return 16;
    case GgmlType::Q6_K: return 18;
    default: return 0;
  }
}

std::string TypeLabel(GgmlType type, TypeMix mix) {
  if (mix == TypeMix::kQ4_K_M) return "Q4_K_M";
  if (mix == TypeMix::kQ5_K_M) return "Q5_K_M";
  return runtime::GgmlTypeName(type);
}

uint64_t TensorSeed(uint64_t seed, const std::string& tensor_name) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a of the name
  for (unsigned char c : tensor_name) h = (h ^ c) * 0x100000001b3ull;
  uint64_t state = seed ^ (h * 0x9e3779b97f4a7c15ull);
  return SplitMix64(&state);
}

void FillNormal(uint64_t* state, float stddev, float* out, size_t n) {
  // Sum of four U(0,1) has mean 2 and variance 4/12; scale to unit variance, then to stddev.
  const float scale = stddev * std::sqrt(3.0f) / 65536.0f;
  for (size_t i = 0; i < n; ++i) {
    const uint64_t r = SplitMix64(state);
    const uint32_t sum = static_cast<uint32_t>(r & 0xffff) + static_cast<uint32_t>((r >> 16) & 0xffff) +
                         static_cast<uint32_t>((r >> 32) & 0xffff) + static_cast<uint32_t>(r >> 48);
    // (sum + 2) / 65536 is the sum of four uniforms on the midpoints of 65536 cells; minus 2.
    out[i] = (static_cast<float>(static_cast<int32_t>(sum) - 131070)) * scale;
  }
}

absl::Status WriteSyntheticModel(const SynthOptions& o) {
  SYNTH_RETURN_IF_ERROR(ValidateShape(o.shape, o.type));
  if (o.output_path.empty()) return absl::InvalidArgumentError("no output path");
  // The file is renamed into place at the end: never over a device, pipe or directory.
  struct stat st;
  if (stat(o.output_path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat("output '", o.output_path, "' exists and is not a regular file"));
  }
  const std::vector<TensorSpec> plan = TensorPlan(o.shape, o.type, o.mix);

  GgufWriter writer;
  SYNTH_RETURN_IF_ERROR(DeclareMetadata(o, &writer));
  for (const TensorSpec& t : plan) SYNTH_RETURN_IF_ERROR(writer.AddTensor(t.name, t.type, t.dims));
  uint64_t bytes_total = 0;
  for (const runtime::GgufTensorInfo& t : writer.tensors()) bytes_total += t.size_bytes;

  const std::string partial = o.output_path + ".partial";
  SYNTH_RETURN_IF_ERROR(writer.OpenFile(partial));
  absl::Status status = WriteTensors(o, plan, bytes_total, &writer);
  if (status.ok()) status = writer.Close();
  if (!status.ok()) {
    std::remove(partial.c_str());
    return status;
  }
  if (std::rename(partial.c_str(), o.output_path.c_str()) != 0) {
    const int err = errno;
    std::remove(partial.c_str());
    return absl::ErrnoToStatus(err, absl::StrCat("renaming '", partial, "' to '", o.output_path, "'"));
  }
  return absl::OkStatus();
}

}  // namespace kestrel::synth
