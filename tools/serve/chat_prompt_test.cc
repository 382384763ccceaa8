#include "chat_prompt.h"

#include <gtest/gtest.h>

namespace kestrel::serve {
namespace {

TEST(FallbackChatPromptTest, TurnsInOrderEndingWithTheAssistantsTurn) {
  const ChatPrompt p = BuildFallbackChatPrompt({{"system", "Be brief."},
                                                {"user", "Hi"},
                                                {"assistant", "Hello."},
                                                {"user", "Tell a story"}});
  EXPECT_EQ(p.text, "Be brief.\n\nUser: Hi\nAssistant: Hello.\nUser: Tell a story\nAssistant:");
  ASSERT_EQ(p.stop_strings.size(), 1u);
  EXPECT_EQ(p.stop_strings[0], "\nUser:");
}

TEST(FallbackChatPromptTest, OneUserMessage) {
  EXPECT_EQ(BuildFallbackChatPrompt({{"user", "Once upon a time"}}).text,
            "User: Once upon a time\nAssistant:");
}

}  // namespace
}  // namespace kestrel::serve
