// Chat messages -> the prompt text the model continues, for /v1/chat/completions.
//
// The fixed, documented fallback format for models whose GGUF carries no chat template (models
// with one use it: template_prompt.h):
//
//   <system content>\n\n            (each system message, if any, in order)
//   User: <content>\n               (user messages)
//   Assistant: <content>\n          (assistant messages)
//   Assistant:                      (the turn the model writes; no trailing space)
//
// and the stop string "\nUser:" ends the model's turn. Pure C++; no Kestrel calls.
#ifndef KESTREL_TOOLS_SERVE_CHAT_PROMPT_H_
#define KESTREL_TOOLS_SERVE_CHAT_PROMPT_H_

#include <string>
#include <vector>

namespace kestrel::serve {

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant" (checked by the protocol layer)
  std::string content;
};

struct ChatPrompt {
  std::string text;                       // the prompt
  std::vector<std::string> stop_strings;  // end of the assistant's turn
  bool parse_special = false;             // control-token texts in `text` become those tokens
  bool add_bos = true;                    // false when `text` already starts with BOS's text
};

ChatPrompt BuildFallbackChatPrompt(const std::vector<ChatMessage>& messages);

}  // namespace kestrel::serve

#endif  // KESTREL_TOOLS_SERVE_CHAT_PROMPT_H_
