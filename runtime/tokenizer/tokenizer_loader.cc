// runtime/tokenizer/tokenizer_loader.cc
#include "runtime/tokenizer/tokenizer_loader.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/tokenizer/spm_tokenizer.h"

namespace kestrel::runtime {
namespace {

absl::StatusOr<std::unique_ptr<SpmTokenizer>> LoadSpm(const GgufFile& f) {
  SpmVocab v;
  absl::StatusOr<absl::Span<const std::string>> tokens = f.GetStringArray("tokenizer.ggml.tokens");
  if (!tokens.ok()) return tokens.status();
  v.tokens.assign(tokens->begin(), tokens->end());
  if (f.Find("tokenizer.ggml.scores") != nullptr) {
    absl::StatusOr<std::vector<float>> scores = f.GetF32Array("tokenizer.ggml.scores");
    if (!scores.ok()) return scores.status();
    v.scores = std::move(*scores);
  }
  if (f.Find("tokenizer.ggml.token_type") != nullptr) {
    absl::StatusOr<std::vector<int32_t>> types = f.GetI32Array("tokenizer.ggml.token_type");
    if (!types.ok()) return types.status();
    v.token_types = std::move(*types);
  }
  auto id = [&](const char* key, int32_t* out) -> absl::Status {
    if (f.Find(key) == nullptr) return absl::OkStatus();
    absl::StatusOr<int64_t> value = f.GetI64(key);
    if (!value.ok()) return value.status();
    // Absent ids are often written as -1 stored in a uint32 (4294967295): treat both as "none".
    if (*value == -1 || *value == 0xFFFFFFFFll) {
      *out = -1;
      return absl::OkStatus();
    }
    *out = static_cast<int32_t>(*value);
    if (*value < 0 || *value >= static_cast<int64_t>(v.tokens.size())) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "metadata '%s' = %d is outside the vocab of %u tokens", key, *value, v.tokens.size()));
    }
    return absl::OkStatus();
  };
  for (auto [key, out] : {std::pair{"tokenizer.ggml.bos_token_id", &v.bos_id},
                          std::pair{"tokenizer.ggml.eos_token_id", &v.eos_id},
                          std::pair{"tokenizer.ggml.unknown_token_id", &v.unk_id},
                          std::pair{"tokenizer.ggml.padding_token_id", &v.pad_id},
                          std::pair{"tokenizer.ggml.eot_token_id", &v.eot_id}}) {
    if (auto s = id(key, out); !s.ok()) return s;
  }
  for (auto [key, out] : {std::pair{"tokenizer.ggml.add_bos_token", &v.add_bos},
                          std::pair{"tokenizer.ggml.add_eos_token", &v.add_eos},
                          std::pair{"tokenizer.ggml.add_space_prefix", &v.add_space_prefix}}) {
    if (f.Find(key) == nullptr) continue;
    absl::StatusOr<bool> b = f.GetBool(key);
    if (!b.ok()) return b.status();
    *out = *b;
  }
  return SpmTokenizer::Create(std::move(v));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const GgufFile& f) {
  absl::StatusOr<std::string> model = f.GetString("tokenizer.ggml.model");
  if (!model.ok()) return model.status();
  if (*model == "llama") {
    absl::StatusOr<std::unique_ptr<SpmTokenizer>> spm = LoadSpm(f);
    if (!spm.ok()) return spm.status();
    return std::unique_ptr<Tokenizer>(std::move(*spm));
  }
  return absl::UnimplementedError(absl::StrCat("tokenizer.ggml.model '", *model,
                                               "' is not supported (supported: llama / SPM)"));
}

}  // namespace kestrel::runtime
