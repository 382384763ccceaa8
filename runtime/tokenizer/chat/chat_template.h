// runtime/tokenizer/chat/: chat templates. A ChatTemplate turns a conversation (role, content
// messages) into the prompt text a model was trained on, by rendering the Jinja template its GGUF
// carries (`tokenizer.chat_template`) with a Jinja subset (jinja_parser.h, jinja_render.h) in
// Hugging Face's environment, with the variables transformers' apply_chat_template passes
// (messages, add_generation_prompt, bos_token, eos_token). It knows nothing about models,
// sessions or devices; it reads runtime/gguf only in LoadChatTemplate.
//
// Thread-safety: immutable after Create; Apply is const and safe to call concurrently.
#ifndef KESTREL_RUNTIME_TOKENIZER_CHAT_CHAT_TEMPLATE_H_
#define KESTREL_RUNTIME_TOKENIZER_CHAT_CHAT_TEMPLATE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "runtime/gguf/gguf_file.h"
#include "runtime/tokenizer/chat/jinja_parser.h"
#include "runtime/tokenizer/tokenizer.h"

namespace kestrel::runtime {

struct ChatMessage {
  std::string role;     // "system", "user", "assistant", ... (the template decides which it takes)
  std::string content;
};

class ChatTemplate {
 public:
  // Parses `source`. INVALID_ARGUMENT (syntax error) or UNIMPLEMENTED (a construct outside the
  // subset), the message starting with `key` (e.g. "tokenizer.chat_template: line 3: ...").
  static absl::StatusOr<std::unique_ptr<ChatTemplate>> Create(std::string source, std::string bos_token,
                                                              std::string eos_token,
                                                              absl::string_view key = "tokenizer.chat_template");

  // The prompt text for `messages`; with add_generation_prompt, ending with what opens the
  // assistant's turn. Errors name the key: FAILED_PRECONDITION when the template refuses the
  // conversation (raise_exception, e.g. roles that do not alternate), UNIMPLEMENTED for a filter,
  // test or function outside the subset, INVALID_ARGUMENT for a type error.
  // `now` (seconds since the epoch, UTC) is the date strftime_now() gives templates that print
  // one (Llama 3.x, Mistral Small, ...); -1: the current time.
  absl::StatusOr<std::string> Apply(absl::Span<const ChatMessage> messages, bool add_generation_prompt,
                                    int64_t now = -1) const;

  // The family the template belongs to, recognised by its markers: "chatml", "llama3", "gemma",
  // "mistral" ([INST]), "phi3", or "other". Informational (kestrel info); rendering always runs the
  // template itself.
  const std::string& family() const { return family_; }
  const std::string& source() const { return source_; }

 private:
  ChatTemplate() = default;

  std::string source_, bos_token_, eos_token_, key_, family_;
  std::vector<jinja::Node> nodes_;
};

// The template of a GGUF (`tokenizer.chat_template`), with the vocab's BOS/EOS texts. NOT_FOUND
// naming the key when the file has none; the errors of ChatTemplate::Create otherwise.
absl::StatusOr<std::unique_ptr<ChatTemplate>> LoadChatTemplate(const GgufFile& file, const Tokenizer& tokenizer);

}  // namespace kestrel::runtime

#endif  // KESTREL_RUNTIME_TOKENIZER_CHAT_CHAT_TEMPLATE_H_
