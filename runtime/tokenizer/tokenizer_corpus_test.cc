// The tokenizers against llama.cpp on real vocabs: the three corpora of ../shared/models
// (tokenizer-{smollm2,gemma3,llama-spm}.json: llama_tokenize(add_special=true, parse_special per
// case) of 182 strings) and, when llama.cpp's source tree is on this machine, its own tokenizer
// test vocabs (models/ggml-vocab-*.gguf with .inp/.out: add_special=false, parse_special=false),
// which cover the pre-tokenizers the corpora do not (Llama 3, Qwen 2, DeepSeek, GPT-2, ...); and
// the prompts of the generation golden files (SmolLM2's chat ones rendered by its own template).
//
// The SmolLM2 and Gemma 3 vocabs come from the real GGUFs in $KESTREL_MODEL_CACHE (default
// ~/.cache/kestrel/models, filled by scripts/fetch_models.sh): missing, the case fails when
// KESTREL_REQUIRE_MODELS=1 and is skipped with a message otherwise.
#include <cstdlib>
#include <fstream>
#include <cstdio>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "runtime/gguf/gguf_file.h"
#include "runtime/tokenizer/bpe/byte_level.h"
#include "runtime/tokenizer/chat/chat_template.h"
#include "runtime/tokenizer/tokenizer_loader.h"

namespace kestrel::runtime {
namespace {

std::string SharedModelsDir() {
  const char* d = std::getenv("KESTREL_MODELS_DIR");
  return d != nullptr ? d : "../shared/models";
}

std::string ModelCacheDir() {
  if (const char* d = std::getenv("KESTREL_MODEL_CACHE"); d != nullptr && *d != '\0') return d;
  const char* home = std::getenv("HOME");
  return absl::StrCat(home != nullptr ? home : "", "/.cache/kestrel/models");
}

bool Exists(const std::string& path) { return std::ifstream(path).good(); }

bool ModelsRequired() {
  const char* r = std::getenv("KESTREL_REQUIRE_MODELS");
  return r != nullptr && std::string(r) == "1";
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::unique_ptr<Tokenizer> LoadVocab(const std::string& path) {
  GgufOpenOptions options;
  absl::StatusOr<std::unique_ptr<GgufFile>> file = GgufFile::Open(path, options);
  EXPECT_TRUE(file.ok()) << path << ": " << file.status();
  if (!file.ok()) return nullptr;
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = LoadTokenizer(**file);
  EXPECT_TRUE(tok.ok()) << path << ": " << tok.status();
  return tok.ok() ? std::move(*tok) : nullptr;
}

// Checks every case of a corpus: ids equal llama.cpp's, and decoding gives the text back.
void CheckCorpus(const std::string& corpus_file, const std::string& model_path) {
  const std::string corpus_path = SharedModelsDir() + "/" + corpus_file;
  ASSERT_TRUE(Exists(corpus_path)) << "missing " << corpus_path;
  std::unique_ptr<Tokenizer> tok = LoadVocab(model_path);
  ASSERT_NE(tok, nullptr);
  const nlohmann::json corpus = nlohmann::json::parse(ReadFile(corpus_path));
  int checked = 0, mismatches = 0;
  for (const auto& c : corpus.at("cases")) {
    const std::string prompt = c.at("prompt").get<std::string>();
    const bool parse_special = c.at("parse_special").get<bool>();
    const std::vector<int32_t> want = c.at("prompt_ids").get<std::vector<int32_t>>();
    const std::vector<int32_t> got = tok->Encode(prompt, /*add_special=*/true, parse_special);
    if (got != want && ++mismatches <= 10) {
      ADD_FAILURE() << corpus_file << ": \"" << absl::CHexEscape(prompt) << "\" (parse_special " << parse_special
                    << ")\n  want " << absl::StrJoin(want, ",") << "\n  got  " << absl::StrJoin(got, ",");
    }
    if (!parse_special) {
      // Round trip: without the BOS the vocab adds.
      const std::vector<int32_t> ids = tok->Encode(prompt, /*add_special=*/false, false);
      EXPECT_EQ(tok->Decode(ids, /*remove_leading_space=*/true), prompt)
          << corpus_file << ": \"" << absl::CHexEscape(prompt) << "\"";
    }
    ++checked;
  }
  EXPECT_EQ(mismatches, 0) << corpus_file << ": " << mismatches << " of " << checked << " cases differ";
  EXPECT_GT(checked, 100);
}

// The real model's path, or "" after failing (KESTREL_REQUIRE_MODELS=1) or skipping the test.
std::string RealModel(const std::string& file) {
  const std::string path = ModelCacheDir() + "/" + file;
  if (Exists(path)) return path;
  if (ModelsRequired()) {
    ADD_FAILURE() << "real model missing: " << path
                  << " (KESTREL_REQUIRE_MODELS=1; run scripts/fetch_models.sh)";
  }
  return "";
}

#define KESTREL_REAL_MODEL_OR_SKIP(var, file)                                                  \
  const std::string var = RealModel(file);                                                    \
  if (var.empty()) {                                                                          \
    if (ModelsRequired()) return;                                                             \
    GTEST_SKIP() << "real model " << file << " not in " << ModelCacheDir()                    \
                 << " (run scripts/fetch_models.sh, or set KESTREL_MODEL_CACHE)";             \
  }

TEST(TokenizerCorpusTest, SmolLM2BytelevelBpe) {
  KESTREL_REAL_MODEL_OR_SKIP(path, "SmolLM2-135M-Instruct.Q4_1.gguf");
  CheckCorpus("tokenizer-smollm2.json", path);
}

TEST(TokenizerCorpusTest, Gemma3Spm262k) {
  KESTREL_REAL_MODEL_OR_SKIP(path, "gemma-3-270m-q4_k_m.gguf");
  CheckCorpus("tokenizer-gemma3.json", path);
}

TEST(TokenizerCorpusTest, Llama2Spm) {
  CheckCorpus("tokenizer-llama-spm.json", SharedModelsDir() + "/llama-2-tiny-random.gguf");
}

// The prompts of the generation golden files tokenize to their prompt_ids; SmolLM2's chat-formatted
// cases are its own template (from the GGUF) applied to one user message.
TEST(TokenizerCorpusTest, GoldenFilePrompts) {
  for (const auto& [golden, model] : {std::pair{"smollm2-135m-instruct.golden.json", "SmolLM2-135M-Instruct.Q4_1.gguf"},
                                      std::pair{"gemma-3-270m.golden.json", "gemma-3-270m-q4_k_m.gguf"}}) {
    KESTREL_REAL_MODEL_OR_SKIP(path, model);
    GgufOpenOptions options;
    auto file = GgufFile::Open(path, options);
    ASSERT_TRUE(file.ok()) << file.status();
    auto tok = LoadTokenizer(**file);
    ASSERT_TRUE(tok.ok()) << tok.status();
    auto tmpl = LoadChatTemplate(**file, **tok);
    const nlohmann::json data = nlohmann::json::parse(ReadFile(SharedModelsDir() + "/" + golden));
    int chat_cases = 0;
    for (const auto& c : data.at("cases")) {
      const std::string prompt = c.at("prompt");
      const bool parse_special = c.value("parse_special", false);
      EXPECT_EQ((*tok)->Encode(prompt, true, parse_special), c.at("prompt_ids").get<std::vector<int32_t>>())
          << golden << ": " << absl::CHexEscape(prompt);
      if (!parse_special) continue;
      ASSERT_TRUE(tmpl.ok()) << tmpl.status();
      const std::string user = prompt.substr(prompt.find("<|im_start|>user\n") + 17);
      const std::vector<ChatMessage> messages = {{"user", user.substr(0, user.find("<|im_end|>"))}};
      EXPECT_EQ(*(*tmpl)->Apply(messages, /*add_generation_prompt=*/true), prompt);
      ++chat_cases;
    }
    if (std::string(golden).rfind("smollm2", 0) == 0) {
      EXPECT_EQ(chat_cases, 2);
    }
  }
}

TEST(TokenizerCorpusTest, EndOfGenerationTokens) {
  KESTREL_REAL_MODEL_OR_SKIP(smol, "SmolLM2-135M-Instruct.Q4_1.gguf");
  std::unique_ptr<Tokenizer> s = LoadVocab(smol);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->kind(), "bpe");
  EXPECT_THAT(s->EndOfGenerationIds(), ::testing::ElementsAre(0, 2));  // <|endoftext|>, <|im_end|>
  KESTREL_REAL_MODEL_OR_SKIP(gemma, "gemma-3-270m-q4_k_m.gguf");
  std::unique_ptr<Tokenizer> g = LoadVocab(gemma);
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->kind(), "spm");
  EXPECT_TRUE(g->IsEndOfGeneration(1));    // <eos>
  EXPECT_TRUE(g->IsEndOfGeneration(106));  // <end_of_turn>
  EXPECT_FALSE(g->IsEndOfGeneration(105));
  EXPECT_EQ(g->Encode("<start_of_turn>user\n", false, true).front(), 105);
}

// Random texts round-trip (Decode(Encode(s)) == s, special tokens not parsed) and tokenize with
// special tokens parsed too (and random bytes at least tokenize). The texts mix pieces of
// special-token texts, runs of spaces and newlines, and random code points from U+0020 to
// U+2FFFF: valid UTF-8, as a round trip needs. For SPM a U+2581 in the text decodes as a space
// (it is the vocab's space) and an invalid lead byte swallows the U+2581 of a following space into
// one byte-fallback symbol; BPE reads invalid bytes as U+FFFD and a vocab may lack the symbols of
// some bytes (SmolLM2: a few control bytes, see bpe_tokenizer.h); all as in llama.cpp.
void CheckRandomTexts(Tokenizer& tok, uint32_t seed) {
  std::mt19937 rng(seed);
  const std::string alphabet[] = {"<|im_start|>", "<|im_end|>", "<start_of_turn>", "</s>", "<s>", "\n\n", "  ",
                                  "a", "1", "'s", " ", "\t"};
  for (int i = 0; i < 300; ++i) {
    std::string s;
    const int parts = static_cast<int>(rng() % 12);
    for (int k = 0; k < parts; ++k) {
      if (rng() % 2 == 0) {
        s += alphabet[rng() % (sizeof(alphabet) / sizeof(alphabet[0]))];
      } else {
        uint32_t cp = 0x20 + rng() % (rng() % 4 == 0 ? 0x30000 : 0x3000);
        if ((cp >= 0xD800 && cp < 0xE000) || cp == 0x2581) cp = 'x';
        AppendUtf8(cp, &s);
      }
    }
    EXPECT_EQ(absl::CHexEscape(tok.Decode(tok.Encode(s, false, false), true)), absl::CHexEscape(s))
        << tok.kind() << ", seed " << seed;
    (void)tok.Encode(s, true, true);
    std::string bytes(rng() % 40, '\0');
    for (char& c : bytes) c = static_cast<char>(rng() % 256);
    (void)tok.Decode(tok.Encode(bytes, true, true), false);
  }
}

TEST(TokenizerCorpusTest, RandomTextsRoundTrip) {
  const uint32_t seed = std::random_device()();
  std::printf("seed %u\n", seed);
  auto llama = LoadVocab(SharedModelsDir() + "/llama-2-tiny-random.gguf");
  ASSERT_NE(llama, nullptr);
  CheckRandomTexts(*llama, seed);
  KESTREL_REAL_MODEL_OR_SKIP(smol, "SmolLM2-135M-Instruct.Q4_1.gguf");
  auto s = LoadVocab(smol);
  ASSERT_NE(s, nullptr);
  CheckRandomTexts(*s, seed);
  KESTREL_REAL_MODEL_OR_SKIP(gemma, "gemma-3-270m-q4_k_m.gguf");
  auto g = LoadVocab(gemma);
  ASSERT_NE(g, nullptr);
  CheckRandomTexts(*g, seed);
}

// llama.cpp's tokenizer test vocabs: $KESTREL_LLAMACPP_VOCABS, default /opt/llamacpp/src/models.
class LlamaCppVocabTest : public ::testing::TestWithParam<std::string> {};

TEST_P(LlamaCppVocabTest, MatchesLlamaCpp) {
  const char* env = std::getenv("KESTREL_LLAMACPP_VOCABS");
  const std::string dir = env != nullptr && *env != '\0' ? env : "/opt/llamacpp/src/models";
  const std::string base = dir + "/ggml-vocab-" + GetParam() + ".gguf";
  if (!Exists(base) || !Exists(base + ".inp") || !Exists(base + ".out")) {
    GTEST_SKIP() << "llama.cpp's test vocab " << base
                 << "(.inp/.out) is not on this machine (set KESTREL_LLAMACPP_VOCABS to its models/ folder)";
  }
  std::unique_ptr<Tokenizer> tok = LoadVocab(base);
  ASSERT_NE(tok, nullptr);
  const std::string raw = ReadFile(base + ".inp");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> inputs;
  for (size_t pos = 0; pos < raw.size();) {
    const size_t next = raw.find(sep, pos);
    if (next == std::string::npos) {
      inputs.push_back(raw.substr(pos));
      break;
    }
    inputs.push_back(raw.substr(pos, next - pos));
    pos = next + sep.size();
  }
  std::ifstream out(base + ".out");
  std::vector<std::vector<int32_t>> outputs;
  for (std::string line; std::getline(out, line);) {
    std::istringstream ls(line);
    std::vector<int32_t> ids;
    for (int32_t id; ls >> id;) ids.push_back(id);
    outputs.push_back(ids);
  }
  ASSERT_EQ(inputs.size(), outputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    EXPECT_EQ(absl::StrJoin(tok->Encode(inputs[i], false, false), " "), absl::StrJoin(outputs[i], " "))
        << GetParam() << ": \"" << absl::CHexEscape(inputs[i]) << "\"";
    EXPECT_EQ(tok->Decode(tok->Encode(inputs[i], false, false), true), inputs[i]) << GetParam();
  }
}

INSTANTIATE_TEST_SUITE_P(Vocabs, LlamaCppVocabTest,
                         ::testing::Values("gpt-2", "llama-bpe", "qwen2", "deepseek-llm", "deepseek-coder",
                                           "falcon", "starcoder", "refact", "command-r", "mpt", "llama-spm",
                                           "phi-3"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name) {
                             if (c == '-') c = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace kestrel::runtime
