// Fuzz target: the tokenizer loader (runtime/tokenizer/tokenizer_loader.h) on arbitrary
// `tokenizer.ggml.*` metadata, which the input describes field by field (mutating a whole GGUF,
// as gguf_fuzzer does, rarely reaches a vocab the loader accepts), then the SPM or BPE tokenizer
// it builds on arbitrary text.
//
// Input: an 8-byte header, then sections separated by 0x01 bytes: tokens ('\n'-separated),
// merges ('\n'-separated, "left right"), token types (one per byte: the byte minus '0', so
// "1" is NORMAL and "3" CONTROL, any other byte an out-of-range type), text to encode.
//   h[0] & 7  tokenizer.ggml.model: llama, gpt2, llama, gpt2, "", t5, bert, (absent)
//   h[1]      tokenizer.ggml.pre: (absent), "", an unknown name, then every known name (modulo)
//   h[2]      bit 0 scores (-id), bit 1 token_type (the types section), bit 2 merges (the merges
//             section), bit 3 add_bos_token present (value bit 4), bit 5 add_eos_token = true,
//             bit 6 add_space_prefix present (value bit 7)
//   h[3..5]   bos, eos, unknown token ids (0xFF: absent)
//   h[6]      bit 0 add_special, bit 1 parse_special for the Encode
//   h[7]      eot token id (0xFF: absent)
// Invariants: the metadata written is a valid GGUF; a refusal is NOT_FOUND, INVALID_ARGUMENT or
// UNIMPLEMENTED with a message naming a tokenizer key; an accepted vocab encodes the text to ids
// inside the vocab and decodes any ids without crashing.
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "runtime/gguf/gguf_file.h"
#include "runtime/gguf/gguf_writer.h"
#include "runtime/tokenizer/bpe/pre_tokenizer.h"
#include "runtime/tokenizer/tokenizer_loader.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using kestrel::runtime::GgufFile;
using kestrel::runtime::GgufWriter;

constexpr size_t kHeader = 8;

std::vector<std::string> Lines(absl::string_view section) {
  std::vector<std::string> out;
  if (section.empty()) return out;
  for (absl::string_view l : absl::StrSplit(section, '\n')) out.emplace_back(l);
  return out;
}

void Check(const absl::Status& s) {
  KESTREL_FUZZ_CHECK(s.ok(), "writing the metadata: %s", s.ToString().c_str());
}

const std::vector<std::string>& PreNames() {
  static auto* names = [] {
    auto* v = new std::vector<std::string>{"", "fuzz-unknown-pre"};
    for (std::string& n : kestrel::runtime::PreTokenizer::KnownNames()) v->push_back(std::move(n));
    return v;
  }();
  return *names;
}

// The GGUF bytes the header and sections describe.
std::string Metadata(const uint8_t* h, absl::string_view body, std::string* text) {
  std::vector<absl::string_view> sections = absl::StrSplit(body, '\x01');
  sections.resize(4);
  const std::vector<std::string> tokens = Lines(sections[0]);
  *text = std::string(sections[3]);

  GgufWriter w(32);
  static const char* const kModels[] = {"llama", "gpt2", "llama", "gpt2", "", "t5", "bert"};
  if ((h[0] & 7) < 7) Check(w.AddString("tokenizer.ggml.model", kModels[h[0] & 7]));
  // h[1] == 0: no pre key; otherwise the (h[1] - 1)-th name, unknown and "" included.
  if (h[1] != 0) Check(w.AddString("tokenizer.ggml.pre", PreNames()[(h[1] - 1) % PreNames().size()]));
  Check(w.AddStringArray("tokenizer.ggml.tokens", tokens));
  if (h[2] & 1) {
    std::vector<float> scores(tokens.size());
    for (size_t i = 0; i < scores.size(); ++i) scores[i] = -static_cast<float>(i);
    Check(w.AddF32Array("tokenizer.ggml.scores", scores));
  }
  if (h[2] & 2) {
    std::vector<int32_t> types;
    for (char c : sections[2]) types.push_back(static_cast<uint8_t>(c) - '0');
    Check(w.AddI32Array("tokenizer.ggml.token_type", types));
  }
  if (h[2] & 4) Check(w.AddStringArray("tokenizer.ggml.merges", Lines(sections[1])));
  if (h[2] & 8) Check(w.AddBool("tokenizer.ggml.add_bos_token", (h[2] & 16) != 0));
  if (h[2] & 32) Check(w.AddBool("tokenizer.ggml.add_eos_token", true));
  if (h[2] & 64) Check(w.AddBool("tokenizer.ggml.add_space_prefix", (h[2] & 128) != 0));
  static const char* const kIds[] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                                     "tokenizer.ggml.unknown_token_id"};
  for (int i = 0; i < 3; ++i) {
    if (h[3 + i] != 0xFF) Check(w.AddU32(kIds[i], h[3 + i]));
  }
  if (h[7] != 0xFF) Check(w.AddU32("tokenizer.ggml.eot_token_id", h[7]));
  std::string out;
  Check(w.OpenString(&out));
  Check(w.Close());
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < kHeader) return 0;
  std::string text;
  const std::string bytes =
      Metadata(data, absl::string_view(reinterpret_cast<const char*>(data + kHeader), size - kHeader), &text);
  auto f = GgufFile::OpenFromMemory(bytes);
  KESTREL_FUZZ_CHECK(f.ok(), "the written metadata does not read back: %s", f.status().ToString().c_str());
  auto tok = kestrel::runtime::LoadTokenizer(**f);
  if (!tok.ok()) {
    const absl::StatusCode c = tok.status().code();
    KESTREL_FUZZ_CHECK(c == absl::StatusCode::kNotFound || c == absl::StatusCode::kInvalidArgument ||
                           c == absl::StatusCode::kUnimplemented,
                       "undocumented status %s", tok.status().ToString().c_str());
    KESTREL_FUZZ_CHECK(absl::StrContains(tok.status().message(), "tokenizer."),
                       "refusal without the key: %s", tok.status().ToString().c_str());
    return 0;
  }
  const auto& t = **tok;
  const int32_t n = t.vocab_size();
  const std::vector<int32_t> ids = t.Encode(text, (data[6] & 1) != 0, (data[6] & 2) != 0);
  for (int32_t id : ids) KESTREL_FUZZ_CHECK(id >= 0 && id < n, "id %d outside the vocab of %d", id, n);
  (void)t.Decode(ids, true);
  (void)t.Decode(ids, false);
  const int32_t odd[] = {-1, 0, n - 1, n, 1 << 30};
  (void)t.Decode(odd, false);
  for (int32_t id : odd) {
    (void)t.PieceView(id);
    (void)t.PieceView(id, /*special=*/true);
    (void)t.TokenType(id);
    (void)t.IsEndOfGeneration(id);
  }
  return 0;
}
