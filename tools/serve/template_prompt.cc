#include "template_prompt.h"

namespace kestrel::serve {

ChatPrompt BuildChatPrompt(const kestrel::Model& model, const std::vector<ChatMessage>& messages) {
  const kestrel::TokenizerInfo tokenizer = model.Tokenizer();
  if (tokenizer.chat_template.empty()) return BuildFallbackChatPrompt(messages);
  std::vector<kestrel::ChatMessage> list;
  list.reserve(messages.size());
  for (const ChatMessage& m : messages) list.push_back({m.role, m.content});
  ChatPrompt p;
  p.text = model.ApplyChatTemplate(list);
  p.parse_special = true;
  if (tokenizer.bos_id >= 0) {
    const std::string bos = model.TokenToPiece(tokenizer.bos_id, /*special=*/true);
    p.add_bos = bos.empty() || p.text.compare(0, bos.size(), bos) != 0;
  }
  return p;
}

}  // namespace kestrel::serve
