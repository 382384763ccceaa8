// LoadTokenizer and LoadChatTemplate on small GGUF vocabs written here: good ones load and
// tokenize; malformed or unknown keys are refused with a status naming the key, never a crash.
#include "runtime/tokenizer/tokenizer_loader.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/gguf/gguf_writer.h"
#include "runtime/tokenizer/bpe/byte_level.h"
#include "runtime/tokenizer/chat/chat_template.h"

namespace kestrel::runtime {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;


using Kvs = std::vector<std::pair<std::string, GgufValue>>;

// Replaces the value of `key` in `kvs`, or appends it.
void Set(Kvs& kvs, const std::string& key, GgufValue value) {
  for (auto& [k, v] : kvs) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  kvs.emplace_back(key, std::move(value));
}

// A vocab-only GGUF: byte-level BPE (the 256 byte symbols, "hi", "<|im_end|>") or, with bpe false,
// the same texts as an SPM vocab; `edit` changes the metadata before it is written.
absl::StatusOr<std::unique_ptr<GgufFile>> WriteVocab(const std::function<void(Kvs&)>& edit, bool bpe = true) {
  std::vector<std::string> tokens;
  for (int b = 0; b < 256; ++b) tokens.emplace_back(ByteLevelChar(static_cast<uint8_t>(b)));
  tokens.push_back("hi");
  tokens.push_back("<|im_end|>");
  std::vector<int32_t> types(tokens.size(), 1);
  types.back() = 3;
  Kvs kvs;
  Set(kvs, "general.architecture", GgufValue::String("llama"));
  Set(kvs, "tokenizer.ggml.model", GgufValue::String(bpe ? "gpt2" : "llama"));
  if (bpe) {
    Set(kvs, "tokenizer.ggml.pre", GgufValue::String("smollm"));
    Set(kvs, "tokenizer.ggml.merges", GgufValue::StringArray({"h i"}));
  }
  Set(kvs, "tokenizer.ggml.tokens", GgufValue::StringArray(tokens));
  Set(kvs, "tokenizer.ggml.token_type", GgufValue::I32Array(types));
  edit(kvs);
  GgufWriter w;
  for (auto& [k, v] : kvs) EXPECT_TRUE(w.AddKv(k, v).ok()) << k;
  char path[] = "/tmp/kestrel_vocab_XXXXXX";
  const int fd = mkstemp(path);
  EXPECT_GE(fd, 0);
  close(fd);
  absl::Status s = w.OpenFile(path);
  if (s.ok()) s = w.Close();
  EXPECT_TRUE(s.ok()) << s;
  auto file = GgufFile::Open(path);
  std::remove(path);
  return file;
}

absl::Status LoadStatus(const std::function<void(Kvs&)>& edit, bool bpe = true) {
  auto file = WriteVocab(edit, bpe);
  if (!file.ok()) return file.status();
  return LoadTokenizer(**file).status();
}

TEST(TokenizerLoaderTest, LoadsByteLevelBpe) {
  auto file = WriteVocab([](Kvs& kv) { Set(kv, "tokenizer.ggml.eos_token_id", GgufValue::U32(257)); });
  ASSERT_TRUE(file.ok()) << file.status();
  auto tok = LoadTokenizer(**file);
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->kind(), "bpe");
  EXPECT_EQ((*tok)->pre_tokenizer(), "smollm");
  EXPECT_THAT((*tok)->Encode("hi<|im_end|>", true, true), ElementsAre(256, 257));
  EXPECT_TRUE((*tok)->IsEndOfGeneration(257));
}

TEST(TokenizerLoaderTest, BadBpeKeysAreRefusedNamingTheKey) {
  struct Case {
    std::function<void(Kvs&)> edit;
    std::string key;
  };
  const std::vector<Case> cases = {
      {[](Kvs& kv) { Set(kv, "tokenizer.ggml.merges", GgufValue::StringArray({"h i", "broken"})); },
       "tokenizer.ggml.merges[1]"},
      {[](Kvs& kv) { Set(kv, "tokenizer.ggml.merges", GgufValue::I32Array(std::vector<int32_t>{1, 2})); },
       "tokenizer.ggml.merges"},
      {[](Kvs& kv) {
         kv.erase(std::remove_if(kv.begin(), kv.end(), [](const auto& p) { return p.first == "tokenizer.ggml.merges"; }),
                  kv.end());
       },
       "tokenizer.ggml.merges"},
      {[](Kvs& kv) { Set(kv, "tokenizer.ggml.pre", GgufValue::String("not-a-pre-tokenizer")); },
       "tokenizer.ggml.pre 'not-a-pre-tokenizer'"},
      {[](Kvs& kv) { Set(kv, "tokenizer.ggml.pre", GgufValue::U32(3)); }, "tokenizer.ggml.pre"},
      {[](Kvs& kv) { Set(kv, "tokenizer.ggml.bos_token_id", GgufValue::U32(99999)); }, "tokenizer.ggml.bos_token_id"},
      {[](Kvs& kv) { Set(kv, "tokenizer.ggml.add_bos_token", GgufValue::String("yes")); },
       "tokenizer.ggml.add_bos_token"},
      {[](Kvs& kv) { Set(kv, "tokenizer.ggml.token_type", GgufValue::I32Array(std::vector<int32_t>{1, 1})); },
       "tokenizer.ggml.token_type"},
  };
  for (const Case& c : cases) {
    const absl::Status s = LoadStatus(c.edit);
    EXPECT_FALSE(s.ok()) << c.key;
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.key)) << s;
  }
}

// SpmTokenizer::Create speaks of SpmVocab fields; from a file the message names the key (found by
// vocab_fuzzer: a token_type array shorter than the tokens was reported as "SpmVocab.token_types").
TEST(TokenizerLoaderTest, BadSpmKeysAreRefusedNamingTheKey) {
  struct Case {
    std::function<void(Kvs&)> edit;
    std::string key;
  };
  const std::vector<Case> cases = {
      {[](Kvs& kv) { Set(kv, "tokenizer.ggml.token_type", GgufValue::I32Array(std::vector<int32_t>{1, 1})); },
       "tokenizer.ggml.token_type has 2 entries"},
      {[](Kvs& kv) { Set(kv, "tokenizer.ggml.scores", GgufValue::F32Array(std::vector<float>{0.f})); },
       "tokenizer.ggml.scores has 1 entries"},
      {[](Kvs& kv) {
         std::vector<int32_t> types(258, 1);
         types[5] = 9;
         Set(kv, "tokenizer.ggml.token_type", GgufValue::I32Array(types));
       },
       "tokenizer.ggml.token_type[5] = 9"},
      {[](Kvs& kv) { Set(kv, "tokenizer.ggml.add_bos_token", GgufValue::Bool(true));
                     Set(kv, "tokenizer.ggml.bos_token_id", GgufValue::I32(-1)); },
       "tokenizer.ggml.add_bos_token"},
  };
  for (const Case& c : cases) {
    const absl::Status s = LoadStatus(c.edit, /*bpe=*/false);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.key << ": " << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.key)) << s;
    EXPECT_THAT(std::string(s.message()), Not(HasSubstr("SpmVocab"))) << s;
  }
}

TEST(TokenizerLoaderTest, UnknownModelIsUnimplemented) {
  const absl::Status s = LoadStatus([](Kvs& kv) { Set(kv, "tokenizer.ggml.model", GgufValue::String("bert")); }, false);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("tokenizer.ggml.model 'bert'"));
}

TEST(TokenizerLoaderTest, ChatTemplateFromTheFile) {
  auto file = WriteVocab([](Kvs& kv) {
    Set(kv, "tokenizer.chat_template",
        GgufValue::String("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"));
  });
  ASSERT_TRUE(file.ok());
  auto tok = LoadTokenizer(**file);
  ASSERT_TRUE(tok.ok());
  auto tmpl = LoadChatTemplate(**file, **tok);
  ASSERT_TRUE(tmpl.ok()) << tmpl.status();
  EXPECT_EQ((*tmpl)->family(), "chatml");
  EXPECT_EQ(*(*tmpl)->Apply({{"user", "hi"}}, false), "<|im_start|>user\nhi<|im_end|>\n");

  auto bad = WriteVocab([](Kvs& kv) { Set(kv, "tokenizer.chat_template", GgufValue::String("{% for %}")); });
  ASSERT_TRUE(bad.ok());
  auto bad_tok = LoadTokenizer(**bad);
  ASSERT_TRUE(bad_tok.ok());
  const absl::Status s = LoadChatTemplate(**bad, **bad_tok).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("tokenizer.chat_template"));

  auto none = WriteVocab([](Kvs&) {});
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(LoadChatTemplate(**none, **LoadTokenizer(**none)).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace kestrel::runtime
