// Chat messages -> the prompt text the model continues, for /v1/chat/completions.
//
// Today this is a fixed, documented fallback format (the C API has no chat-template call yet):
//
//   <system content>\n\n            (each system message, if any, in order)
//   User: <content>\n               (user messages)
//   Assistant: <content>\n          (assistant messages)
//   Assistant:                      (the turn the model writes; no trailing space)
//
// and the stop string "\nUser:" ends the model's turn. When kestrel_model_apply_chat_template
// lands (the tokenizer work), BuildChatPrompt uses the model's own template and this format
// remains only for models without one. Pure C++; no Kestrel calls.
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
};

ChatPrompt BuildFallbackChatPrompt(const std::vector<ChatMessage>& messages);

}  // namespace kestrel::serve

#endif  // KESTREL_TOOLS_SERVE_CHAT_PROMPT_H_
