// The tokenizer and chat-template entry points of the C API: metadata-only models, parse_special,
// tokenizer info, kestrel_model_apply_chat_template (SmolLM2's real ChatML template must give the
// very prompt whose llama.cpp ids the tokenizer corpus holds), and bad vocabs refused by name.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kestrel/kestrel.h"
#include "nlohmann/json.hpp"
#include "tests/gguf_edit.h"
#include "tests/temp_dir.h"
#include "tests/test_util.h"

namespace kestrel::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string ModelCache() {
  if (const char* d = std::getenv("KESTREL_MODEL_CACHE"); d != nullptr && *d != '\0') return d;
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr ? home : "") + "/.cache/kestrel/models";
}
bool Exists(const std::string& p) { return std::ifstream(p).good(); }
bool Required() {
  const char* r = std::getenv("KESTREL_REQUIRE_MODELS");
  return r != nullptr && std::string(r) == "1";
}

class TokenizerApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kestrel_runtime_options_t o;
    kestrel_runtime_options_init(&o);
    const std::string plugins = PluginDir();
    if (!plugins.empty()) o.plugin_path = plugins.c_str();
    KESTREL_ASSERT_OK(kestrel_runtime_create(&o, &runtime_));
  }
  void TearDown() override { kestrel_runtime_destroy(runtime_); }

  kestrel_status_t* Load(const std::string& path, bool metadata_only, kestrel_model_t** out) {
    kestrel_model_options_t o;
    kestrel_model_options_init(&o);
    o.metadata_only = metadata_only;
    o.device = metadata_only ? nullptr : "ref";
    return kestrel_model_load(runtime_, path.data(), path.size(), &o, out);
  }

  static std::vector<int32_t> Tokenize(kestrel_model_t* m, const std::string& text, bool add, bool parse) {
    kestrel_tokenize_options_t o;
    kestrel_tokenize_options_init(&o);
    o.add_special = add;
    o.parse_special = parse;
    std::vector<int32_t> ids(text.size() + 8);
    size_t n = 0;
    StatusPtr s(kestrel_tokenize_with_options(m, text.data(), text.size(), &o, ids.data(), ids.size(), &n));
    EXPECT_EQ(s, nullptr) << kestrel_status_message(s.get());
    ids.resize(n);
    return ids;
  }

  static kestrel_status_t* Apply(kestrel_model_t* m, const std::vector<std::pair<std::string, std::string>>& msgs,
                                 const char* tmpl, std::string* out) {
    std::vector<kestrel_chat_message_t> list;
    for (const auto& [r, c] : msgs) list.push_back({r.data(), r.size(), c.data(), c.size()});
    kestrel_chat_template_options_t o;
    kestrel_chat_template_options_init(&o);
    if (tmpl != nullptr) {
      o.template_text = tmpl;
      o.template_length = std::strlen(tmpl);
    }
    size_t n = 0;
    kestrel_status_t* s = kestrel_model_apply_chat_template(m, list.data(), list.size(), &o, nullptr, 0, &n);
    if (s != nullptr) return s;
    out->assign(n, '\0');
    return kestrel_model_apply_chat_template(m, list.data(), list.size(), &o, out->data(), out->size(), &n);
  }

  kestrel_runtime_t* runtime_ = nullptr;
};

#define REAL_MODEL_OR_SKIP(var, file)                                                                     \
  const std::string var = ModelCache() + "/" + file;                                                       \
  if (!Exists(var)) {                                                                                      \
    if (Required()) FAIL() << "real model missing: " << var << " (KESTREL_REQUIRE_MODELS=1)";              \
    GTEST_SKIP() << "real model " << var << " missing (run scripts/fetch_models.sh or set KESTREL_MODEL_CACHE)"; \
  }

TEST_F(TokenizerApiTest, SmolLM2ChatTemplateGivesTheCorpusPrompt) {
  REAL_MODEL_OR_SKIP(path, "SmolLM2-135M-Instruct.Q4_1.gguf");
  kestrel_model_t* m = nullptr;
  KESTREL_ASSERT_OK(Load(path, /*metadata_only=*/true, &m));
  ModelPtr model(m);

  kestrel_tokenizer_info_t info{};
  info.struct_size = sizeof(info);
  KESTREL_ASSERT_OK(kestrel_model_get_tokenizer_info(m, &info));
  EXPECT_STREQ(info.kind, "bpe");
  EXPECT_STREQ(info.pre_tokenizer, "smollm");
  EXPECT_EQ(info.vocab_size, 49152u);
  EXPECT_STREQ(info.chat_template_family, "chatml");
  EXPECT_STREQ(info.chat_template_error, "");
  EXPECT_FALSE(info.add_bos);
  int32_t eog[8];
  size_t n_eog = 0;
  KESTREL_ASSERT_OK(kestrel_model_end_of_generation_tokens(m, eog, 8, &n_eog));
  EXPECT_THAT(std::vector<int32_t>(eog, eog + n_eog), ElementsAre(0, 2));

  // The corpus's chat-formatted case is exactly this conversation in SmolLM2's template.
  std::ifstream in(ModelPath("tokenizer-smollm2.json"));
  std::stringstream ss;
  ss << in.rdbuf();
  const nlohmann::json corpus = nlohmann::json::parse(ss.str());
  const nlohmann::json* chat_case = nullptr;
  for (const auto& c : corpus.at("cases")) {
    if (c.at("parse_special").get<bool>() && c.at("prompt").get<std::string>().rfind("<|im_start|>system", 0) == 0) {
      chat_case = &c;
    }
  }
  ASSERT_NE(chat_case, nullptr);
  std::string prompt;
  KESTREL_ASSERT_OK(Apply(m, {{"system", "You are helpful."}, {"user", "Hi"}}, nullptr, &prompt));
  EXPECT_EQ(prompt, chat_case->at("prompt").get<std::string>());
  EXPECT_EQ(Tokenize(m, prompt, true, true), chat_case->at("prompt_ids").get<std::vector<int32_t>>());

  // Without a system message the template adds SmolLM's own.
  KESTREL_ASSERT_OK(Apply(m, {{"user", "Hi"}}, nullptr, &prompt));
  EXPECT_EQ(prompt,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");

  // A vocab-only model has no weights to run.
  kestrel_session_t* session = nullptr;
  StatusPtr s(kestrel_session_create(m, nullptr, &session));
  EXPECT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_FAILED_PRECONDITION);
  EXPECT_THAT(kestrel_status_message(s.get()), HasSubstr("metadata-only"));
  kestrel_model_info_t mi{};
  mi.struct_size = sizeof(mi);
  KESTREL_ASSERT_OK(kestrel_model_get_info(m, &mi));
  EXPECT_STREQ(mi.architecture, "llama");
  EXPECT_EQ(mi.vocab_size, 49152u);
}

TEST_F(TokenizerApiTest, GemmaWithoutTemplateAndWithAnExplicitOne) {
  REAL_MODEL_OR_SKIP(path, "gemma-3-270m-q4_k_m.gguf");
  kestrel_model_t* m = nullptr;
  KESTREL_ASSERT_OK(Load(path, /*metadata_only=*/true, &m));
  ModelPtr model(m);
  std::string prompt;
  StatusPtr s(Apply(m, {{"user", "Hi"}}, nullptr, &prompt));
  EXPECT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_NOT_FOUND);
  EXPECT_THAT(kestrel_status_message(s.get()), HasSubstr("tokenizer.chat_template"));
  const char* gemma =
      "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m.role == 'assistant' else m.role }}\n"
      "{{ m.content | trim }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}";
  KESTREL_ASSERT_OK(Apply(m, {{"user", " Hi "}}, gemma, &prompt));
  EXPECT_EQ(prompt, "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n");
  const std::vector<int32_t> ids = Tokenize(m, prompt, /*add=*/false, /*parse=*/true);
  ASSERT_GE(ids.size(), 4u);
  EXPECT_EQ(ids[0], 2);    // <bos>, written by the template
  EXPECT_EQ(ids[1], 105);  // <start_of_turn>
  StatusPtr bad(Apply(m, {{"user", "Hi"}}, "{% if %}", &prompt));
  EXPECT_EQ(kestrel_status_code(bad.get()), KESTREL_STATUS_INVALID_ARGUMENT);
  EXPECT_THAT(kestrel_status_message(bad.get()), HasSubstr("options->template_text"));
}

TEST_F(TokenizerApiTest, ParseSpecialAndOldOptionSizes) {
  kestrel_model_t* m = nullptr;
  KESTREL_ASSERT_OK(Load(ModelPath("stories260K.gguf"), /*metadata_only=*/false, &m));
  ModelPtr model(m);
  const std::string text = "a</s>";
  const std::vector<int32_t> special = Tokenize(m, text, false, true);
  ASSERT_FALSE(special.empty());
  EXPECT_EQ(special.back(), 2);  // </s>, EOS
  const std::vector<int32_t> plain = Tokenize(m, text, false, false);
  EXPECT_THAT(plain, ::testing::Not(::testing::Contains(2)));
  // NULL options: the defaults (add_special, no parse_special) = kestrel_tokenize(add_bos=true).
  std::vector<int32_t> a(16), b(16);
  size_t na = 0, nb = 0;
  KESTREL_ASSERT_OK(kestrel_tokenize_with_options(m, text.data(), text.size(), nullptr, a.data(), a.size(), &na));
  KESTREL_ASSERT_OK(kestrel_tokenize(m, text.data(), text.size(), true, b.data(), b.size(), &nb));
  a.resize(na);
  b.resize(nb);
  EXPECT_EQ(a, b);
  // The smallest released size: parse_special keeps its default.
  kestrel_tokenize_options_t o;
  kestrel_tokenize_options_init(&o);
  o.parse_special = true;
  o.struct_size = KESTREL_TOKENIZE_OPTIONS_MIN_SIZE;
  KESTREL_ASSERT_OK(kestrel_tokenize_with_options(m, text.data(), text.size(), &o, a.data(), 16, &na));
  EXPECT_EQ(std::vector<int32_t>(a.begin(), a.begin() + na), b);
  o.struct_size = 2;
  StatusPtr small(kestrel_tokenize_with_options(m, text.data(), text.size(), &o, a.data(), 16, &na));
  EXPECT_EQ(kestrel_status_code(small.get()), KESTREL_STATUS_INVALID_ARGUMENT);

  char piece[16];
  size_t n = 0;
  KESTREL_ASSERT_OK(kestrel_token_to_piece_special(m, 2, true, piece, sizeof(piece), &n));
  EXPECT_EQ(std::string(piece, n), "</s>");
  KESTREL_ASSERT_OK(kestrel_token_to_piece_special(m, 2, false, piece, sizeof(piece), &n));
  EXPECT_EQ(n, 0u);
}

// stories260K with its vocab turned into a byte-level BPE one whose merges or pre-tokenizer is bad.
TEST_F(TokenizerApiTest, BadVocabsAreRefusedNamingTheKey) {
  struct Case {
    std::string merge, pre, key;
  };
  for (const Case& c : {Case{"nospace", "gpt-2", "tokenizer.ggml.merges[1]"},
                        Case{"a b", "no-such-pre", "tokenizer.ggml.pre 'no-such-pre'"}}) {
    const ScopedTempDir tmp("badvocab");
    const std::string file = tmp.File("model.gguf");
    const char* path = file.c_str();
    const absl::Status written = CopyGgufWith(
        ModelPath("stories260K.gguf"), path,
        {{"tokenizer.ggml.model", runtime::GgufValue::String("gpt2")},
         {"tokenizer.ggml.pre", runtime::GgufValue::String(c.pre)},
         {"tokenizer.ggml.merges", runtime::GgufValue::StringArray({"a b", c.merge})}});
    ASSERT_TRUE(written.ok()) << written;
    // A full load refuses the file naming the key.
    kestrel_model_t* m = nullptr;
    StatusPtr s(Load(path, /*metadata_only=*/false, &m));
    EXPECT_NE(s, nullptr) << c.key;
    EXPECT_EQ(m, nullptr);
    EXPECT_THAT(kestrel_status_message(s.get()), HasSubstr(c.key));
    // A metadata-only load succeeds, says why it cannot run, and the tokenizer calls refuse.
    KESTREL_ASSERT_OK(Load(path, /*metadata_only=*/true, &m));
    ModelPtr model(m);
    kestrel_model_info_t info{};
    info.struct_size = sizeof(info);
    KESTREL_ASSERT_OK(kestrel_model_get_info(m, &info));
    EXPECT_FALSE(info.runnable);
    EXPECT_THAT(info.unsupported, HasSubstr(c.key));
    int32_t ids[8];
    size_t n = 0;
    StatusPtr t(kestrel_tokenize_with_options(m, "ab", 2, nullptr, ids, 8, &n));
    EXPECT_EQ(kestrel_status_code(t.get()), KESTREL_STATUS_FAILED_PRECONDITION);
    EXPECT_THAT(kestrel_status_message(t.get()), HasSubstr(c.key));
    std::string prompt;
    StatusPtr chat(Apply(m, {{"user", "hi"}}, nullptr, &prompt));
    EXPECT_EQ(kestrel_status_code(chat.get()), KESTREL_STATUS_FAILED_PRECONDITION);
    std::remove(path);
  }
}

// A model whose chat template is broken still loads and runs; the template call names the key.
TEST_F(TokenizerApiTest, BrokenChatTemplateIsReportedNotFatal) {
  const ScopedTempDir tmp("badtemplate");
  const std::string file = tmp.File("model.gguf");
  const char* path = file.c_str();
  const absl::Status written = CopyGgufWith(
      ModelPath("stories260K.gguf"), path,
      {{"tokenizer.chat_template", runtime::GgufValue::String("{% for m in messages %}{{ m.content }")}});
  ASSERT_TRUE(written.ok()) << written;
  kestrel_model_t* m = nullptr;
  KESTREL_ASSERT_OK(Load(path, /*metadata_only=*/false, &m));
  ModelPtr model(m);
  std::remove(path);
  std::string prompt;
  StatusPtr s(Apply(m, {{"user", "hi"}}, nullptr, &prompt));
  EXPECT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_INVALID_ARGUMENT);
  EXPECT_THAT(kestrel_status_message(s.get()), HasSubstr("tokenizer.chat_template"));
  kestrel_tokenizer_info_t info{};
  info.struct_size = sizeof(info);
  KESTREL_ASSERT_OK(kestrel_model_get_tokenizer_info(m, &info));
  EXPECT_THAT(info.chat_template_error, HasSubstr("tokenizer.chat_template"));
  EXPECT_STREQ(info.chat_template_family, "");
  // Tokenizing and generating are unaffected.
  EXPECT_EQ(Tokenize(m, "Once upon a time", true, false).size(), 5u);
}

}  // namespace
}  // namespace kestrel::testing
