#include "chat_prompt.h"

namespace kestrel::serve {

ChatPrompt BuildFallbackChatPrompt(const std::vector<ChatMessage>& messages) {
  ChatPrompt p;
  for (const ChatMessage& m : messages) {
    if (m.role == "system") {
      p.text += m.content;
      p.text += "\n\n";
    } else if (m.role == "assistant") {
      p.text += "Assistant: " + m.content + "\n";
    } else {
      p.text += "User: " + m.content + "\n";
    }
  }
  p.text += "Assistant:";
  p.stop_strings = {"\nUser:"};
  return p;
}

}  // namespace kestrel::serve
