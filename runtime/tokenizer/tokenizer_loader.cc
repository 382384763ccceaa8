// runtime/tokenizer/tokenizer_loader.cc
#include "runtime/tokenizer/tokenizer_loader.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "runtime/tokenizer/bpe/bpe_tokenizer.h"
#include "runtime/tokenizer/spm/spm_tokenizer.h"

namespace kestrel::runtime {
namespace {

// The keys both vocab kinds share.
struct CommonVocab {
  std::vector<std::string> tokens;
  std::vector<int32_t> token_types;
  int32_t bos_id = -1, eos_id = -1, unk_id = -1, pad_id = -1, eot_id = -1, eom_id = -1;
  bool phi3_rstrip = false;
};

// Reads an optional id key into *out (unchanged when absent). Absent ids are often written as -1
// stored in a uint32 (4294967295): both mean "none".
absl::Status ReadId(const GgufFile& f, const char* key, size_t n_tokens, int32_t* out) {
  if (f.Find(key) == nullptr) return absl::OkStatus();
  absl::StatusOr<int64_t> value = f.GetI64(key);
  if (!value.ok()) return value.status();
  if (*value == -1 || *value == 0xFFFFFFFFll) {
    *out = -1;
    return absl::OkStatus();
  }
  if (*value < 0 || *value >= static_cast<int64_t>(n_tokens)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("metadata '%s' = %d is outside the vocab of %u tokens", key, *value, n_tokens));
  }
  *out = static_cast<int32_t>(*value);
  return absl::OkStatus();
}

// Reads an optional bool key; *present tells whether it was there.
absl::Status ReadBool(const GgufFile& f, const char* key, bool* out, bool* present = nullptr) {
  if (present != nullptr) *present = false;
  if (f.Find(key) == nullptr) return absl::OkStatus();
  absl::StatusOr<bool> b = f.GetBool(key);
  if (!b.ok()) return b.status();
  *out = *b;
  if (present != nullptr) *present = true;
  return absl::OkStatus();
}

absl::StatusOr<CommonVocab> ReadCommon(const GgufFile& f, CommonVocab defaults) {
  CommonVocab v = std::move(defaults);
  absl::StatusOr<absl::Span<const std::string>> tokens = f.GetStringArray("tokenizer.ggml.tokens");
  if (!tokens.ok()) return tokens.status();
  v.tokens.assign(tokens->begin(), tokens->end());
  if (f.Find("tokenizer.ggml.token_type") != nullptr) {
    absl::StatusOr<std::vector<int32_t>> types = f.GetI32Array("tokenizer.ggml.token_type");
    if (!types.ok()) return types.status();
    v.token_types = std::move(*types);
  }
  const size_t n = v.tokens.size();
  for (auto [key, out] : {std::pair{"tokenizer.ggml.bos_token_id", &v.bos_id},
                          std::pair{"tokenizer.ggml.eos_token_id", &v.eos_id},
                          std::pair{"tokenizer.ggml.unknown_token_id", &v.unk_id},
                          std::pair{"tokenizer.ggml.padding_token_id", &v.pad_id},
                          std::pair{"tokenizer.ggml.eot_token_id", &v.eot_id},
                          std::pair{"tokenizer.ggml.eom_token_id", &v.eom_id}}) {
    if (auto s = ReadId(f, key, n, out); !s.ok()) return s;
  }
  // llama.cpp gives the special tokens of Phi-3 models RSTRIP, by model name.
  if (f.Find("general.name") != nullptr) {
    absl::StatusOr<std::string> name = f.GetString("general.name");
    if (name.ok()) {
      const std::string lower = absl::AsciiStrToLower(*name);
      v.phi3_rstrip = absl::StrContains(lower, "phi-3") || absl::StrContains(lower, "phi3");
    }
  }
  return v;
}

// SpmVocab and BpeVocab name the shared keys alike.
template <typename Vocab>
void MoveCommon(CommonVocab&& c, Vocab* v) {
  v->tokens = std::move(c.tokens);
  v->token_types = std::move(c.token_types);
  v->bos_id = c.bos_id;
  v->eos_id = c.eos_id;
  v->unk_id = c.unk_id;
  v->pad_id = c.pad_id;
  v->eot_id = c.eot_id;
  v->eom_id = c.eom_id;
  v->phi3_rstrip = c.phi3_rstrip;
}

// SpmTokenizer::Create names the SpmVocab fields it refuses (it also serves callers without a
// GGUF); from a file, the message names the key the bad value came from instead.
absl::Status WithSpmKeys(const absl::Status& s) {
  const std::string message = absl::StrReplaceAll(
      s.message(), {{"SpmVocab.tokens", "tokenizer.ggml.tokens"},
                    {"SpmVocab.scores", "tokenizer.ggml.scores"},
                    {"SpmVocab.token_types", "tokenizer.ggml.token_type"},
                    {"SpmVocab.bos_id", "tokenizer.ggml.bos_token_id"},
                    {"SpmVocab.eos_id", "tokenizer.ggml.eos_token_id"},
                    {"SpmVocab.unk_id", "tokenizer.ggml.unknown_token_id"},
                    {"SpmVocab.pad_id", "tokenizer.ggml.padding_token_id"},
                    {"SpmVocab.eot_id", "tokenizer.ggml.eot_token_id"},
                    {"SpmVocab.eom_id", "tokenizer.ggml.eom_token_id"},
                    {"SpmVocab.add_bos", "tokenizer.ggml.add_bos_token"},
                    {"SpmVocab.add_eos", "tokenizer.ggml.add_eos_token"}});
  return absl::Status(s.code(), message);
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadSpm(const GgufFile& f) {
  CommonVocab defaults;  // llama.cpp's SPM defaults: BOS 1, EOS 2, UNK 0
  defaults.bos_id = 1;
  defaults.eos_id = 2;
  defaults.unk_id = 0;
  absl::StatusOr<CommonVocab> common = ReadCommon(f, std::move(defaults));
  if (!common.ok()) return common.status();
  SpmVocab v;
  MoveCommon(std::move(*common), &v);
  if (f.Find("tokenizer.ggml.scores") != nullptr) {
    absl::StatusOr<std::vector<float>> scores = f.GetF32Array("tokenizer.ggml.scores");
    if (!scores.ok()) return scores.status();
    v.scores = std::move(*scores);
  }
  for (auto [key, out] : {std::pair{"tokenizer.ggml.add_bos_token", &v.add_bos},
                          std::pair{"tokenizer.ggml.add_eos_token", &v.add_eos},
                          std::pair{"tokenizer.ggml.add_space_prefix", &v.add_space_prefix}}) {
    if (auto s = ReadBool(f, key, out); !s.ok()) return s;
  }
  absl::StatusOr<std::unique_ptr<SpmTokenizer>> spm = SpmTokenizer::Create(std::move(v));
  if (!spm.ok()) return WithSpmKeys(spm.status());
  return std::unique_ptr<Tokenizer>(std::move(*spm));
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadBpe(const GgufFile& f) {
  absl::StatusOr<CommonVocab> common = ReadCommon(f, CommonVocab{});
  if (!common.ok()) return common.status();
  BpeVocab v;
  MoveCommon(std::move(*common), &v);
  absl::StatusOr<absl::Span<const std::string>> merges = f.GetStringArray("tokenizer.ggml.merges");
  if (!merges.ok()) return merges.status();
  v.merges.assign(merges->begin(), merges->end());
  if (f.Find("tokenizer.ggml.pre") != nullptr) {
    absl::StatusOr<std::string> pre = f.GetString("tokenizer.ggml.pre");
    if (!pre.ok()) return pre.status();
    v.pre = std::move(*pre);
  }
  bool add_bos = false, present = false;
  if (auto s = ReadBool(f, "tokenizer.ggml.add_bos_token", &add_bos, &present); !s.ok()) return s;
  if (present) v.add_bos = add_bos;
  if (auto s = ReadBool(f, "tokenizer.ggml.add_eos_token", &v.add_eos); !s.ok()) return s;
  absl::StatusOr<std::unique_ptr<BpeTokenizer>> bpe = BpeTokenizer::Create(std::move(v));
  if (!bpe.ok()) return bpe.status();
  return std::unique_ptr<Tokenizer>(std::move(*bpe));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const GgufFile& f) {
  absl::StatusOr<std::string> model = f.GetString("tokenizer.ggml.model");
  if (!model.ok()) return model.status();
  if (*model == "llama") return LoadSpm(f);
  if (*model == "gpt2") return LoadBpe(f);
  return absl::UnimplementedError(absl::StrCat("tokenizer.ggml.model '", *model,
                                               "' is not supported (supported: llama = SPM, gpt2 = byte-level BPE)"));
}

}  // namespace kestrel::runtime
