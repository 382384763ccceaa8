#include "runtime/tokenizer/chat/chat_template.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "runtime/tokenizer/chat/jinja_render.h"

namespace kestrel::runtime {
namespace {

std::string Family(absl::string_view source) {
  if (absl::StrContains(source, "<|im_start|>")) return "chatml";
  if (absl::StrContains(source, "<|start_header_id|>")) return "llama3";
  if (absl::StrContains(source, "<start_of_turn>")) return "gemma";
  if (absl::StrContains(source, "<|user|>") && absl::StrContains(source, "<|end|>")) return "phi3";
  if (absl::StrContains(source, "[INST]")) return "mistral";
  return "other";
}

absl::Status Prefixed(absl::string_view key, const absl::Status& s) {
  return absl::Status(s.code(), absl::StrCat(key, ": ", s.message()));
}

}  // namespace

absl::StatusOr<std::unique_ptr<ChatTemplate>> ChatTemplate::Create(std::string source, std::string bos_token,
                                                                   std::string eos_token, absl::string_view key) {
  absl::StatusOr<std::vector<jinja::Node>> nodes = jinja::Parse(source);
  if (!nodes.ok()) return Prefixed(key, nodes.status());
  std::unique_ptr<ChatTemplate> t(new ChatTemplate());
  t->family_ = Family(source);
  t->source_ = std::move(source);
  t->bos_token_ = std::move(bos_token);
  t->eos_token_ = std::move(eos_token);
  t->key_ = std::string(key);
  t->nodes_ = std::move(*nodes);
  return t;
}

absl::StatusOr<std::string> ChatTemplate::Apply(absl::Span<const ChatMessage> messages,
                                                bool add_generation_prompt, int64_t now) const {
  jinja::List list;
  for (const ChatMessage& m : messages) {
    list.push_back(jinja::Value::MakeDict({{"role", jinja::Value::Str(m.role)}, {"content", jinja::Value::Str(m.content)}}));
  }
  const jinja::Dict globals = {
      {"messages", jinja::Value::MakeList(std::move(list))},
      {"add_generation_prompt", jinja::Value::Bool(add_generation_prompt)},
      {"bos_token", jinja::Value::Str(bos_token_)},
      {"eos_token", jinja::Value::Str(eos_token_)},
      // The functions transformers passes; defined, so `strftime_now is defined` holds (calls
      // resolve by name in the renderer).
      {"raise_exception", jinja::Value::Str("<built-in function raise_exception>")},
      {"strftime_now", jinja::Value::Str("<built-in function strftime_now>")},
  };
  absl::StatusOr<std::string> out = jinja::Render(nodes_, globals, now);
  if (!out.ok()) return Prefixed(key_, out.status());
  return out;
}

absl::StatusOr<std::unique_ptr<ChatTemplate>> LoadChatTemplate(const GgufFile& file, const Tokenizer& tokenizer) {
  constexpr absl::string_view kKey = "tokenizer.chat_template";
  if (file.Find(kKey) == nullptr) {
    return absl::NotFoundError(absl::StrCat("the model has no ", kKey, " (pass a template explicitly)"));
  }
  absl::StatusOr<std::string> source = file.GetString(kKey);
  if (!source.ok()) return source.status();
  return ChatTemplate::Create(std::move(*source), tokenizer.TokenText(tokenizer.bos_id()),
                              tokenizer.TokenText(tokenizer.eos_id()), kKey);
}

}  // namespace kestrel::runtime
