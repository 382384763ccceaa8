// Chat messages -> the prompt of /v1/chat/completions with the model's own chat template
// (kestrel::Model::ApplyChatTemplate, i.e. kestrel_model_apply_chat_template over the GGUF's
// tokenizer.chat_template). A model without a template gets the fallback format of chat_prompt.h.
#ifndef KESTREL_TOOLS_SERVE_TEMPLATE_PROMPT_H_
#define KESTREL_TOOLS_SERVE_TEMPLATE_PROMPT_H_

#include <vector>

#include "chat_prompt.h"
#include "kestrel/kestrel.hpp"

namespace kestrel::serve {

// The prompt for `messages`, ending with what opens the assistant's turn. With a template the
// text holds control tokens (parse_special) and may begin with the BOS token's text (then add_bos
// is false, so BOS is not doubled); the model's end-of-generation tokens end the turn. Throws
// kestrel::Error when the template refuses the conversation (FAILED_PRECONDITION, e.g. a role it
// does not know) or uses Jinja this build cannot render (UNIMPLEMENTED).
ChatPrompt BuildChatPrompt(const kestrel::Model& model, const std::vector<ChatMessage>& messages);

}  // namespace kestrel::serve

#endif  // KESTREL_TOOLS_SERVE_TEMPLATE_PROMPT_H_
