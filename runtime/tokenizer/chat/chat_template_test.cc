#include "runtime/tokenizer/chat/chat_template.h"
#include "runtime/tokenizer/chat/jinja_render.h"

#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace kestrel::runtime {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// The committed cases, or KESTREL_CHAT_TEMPLATE_CASES (a file the same script wrote with more
// templates, e.g. real ones checked locally; see scripts/gen_chat_template_cases.py).
nlohmann::json LoadCases() {
  const char* env = std::getenv("KESTREL_CHAT_TEMPLATE_CASES");
  std::ifstream in(env != nullptr && *env != '\0'
                       ? std::string(env)
                       : std::string(KESTREL_SOURCE_DIR) + "/runtime/tokenizer/chat/testdata/chat_template_cases.json");
  std::stringstream ss;
  ss << in.rdbuf();
  return nlohmann::json::parse(ss.str());
}

// Every case of the Jinja2-rendered expectations (scripts/gen_chat_template_cases.py).
TEST(ChatTemplateTest, RendersLikeJinja2) {
  const nlohmann::json data = LoadCases();
  std::map<std::string, std::vector<ChatMessage>> conversations;
  for (const auto& [name, messages] : data.at("conversations").items()) {
    for (const auto& m : messages) conversations[name].push_back({m.at("role"), m.at("content")});
  }
  int checked = 0;
  for (const auto& c : data.at("cases")) {
    const std::string name = c.at("template");
    const std::string where = name + " / " + c.at("conversation").get<std::string>() +
                              (c.at("add_generation_prompt").get<bool>() ? " / generation prompt" : "");
    ++checked;
    auto t = ChatTemplate::Create(data.at("templates").at(name), data.at("bos_token"), data.at("eos_token"));
    if (!t.ok()) {
      ADD_FAILURE() << where << ": " << t.status();
      continue;
    }
    absl::StatusOr<std::string> out = (*t)->Apply(conversations.at(c.at("conversation")),
                                                  c.at("add_generation_prompt").get<bool>(), data.at("now").get<int64_t>());
    if (c.contains("error")) {
      if (out.ok()) {
        ADD_FAILURE() << where << ": rendered, but Jinja2 raised: " << c.at("error");
        continue;
      }
      EXPECT_EQ(out.status().code(), absl::StatusCode::kFailedPrecondition) << where;
      EXPECT_THAT(std::string(out.status().message()), HasSubstr(c.at("error").get<std::string>())) << where;
      EXPECT_THAT(std::string(out.status().message()), StartsWith("tokenizer.chat_template: ")) << where;
    } else if (!out.ok()) {
      ADD_FAILURE() << where << ": " << out.status();
    } else {
      EXPECT_EQ(*out, c.at("expected").get<std::string>()) << where;
    }
  }
  EXPECT_GE(checked, 24);
}

TEST(ChatTemplateTest, RecognisesFamilies) {
  const nlohmann::json data = LoadCases();
  if (std::getenv("KESTREL_CHAT_TEMPLATE_CASES") != nullptr) GTEST_SKIP() << "other cases given";
  const std::map<std::string, std::string> want = {{"chatml_smollm2", "chatml"}, {"llama3", "llama3"},
                                                   {"gemma", "gemma"},           {"mistral", "mistral"},
                                                   {"phi3", "phi3"},             {"subset_edges", "other"}};
  for (const auto& [name, family] : want) {
    auto t = ChatTemplate::Create(data.at("templates").at(name), "<s>", "</s>");
    ASSERT_TRUE(t.ok()) << name;
    EXPECT_EQ((*t)->family(), family) << name;
  }
}

absl::Status ParseStatus(const std::string& source) { return ChatTemplate::Create(source, "", "").status(); }
absl::Status RenderStatus(const std::string& source) {
  auto t = ChatTemplate::Create(source, "", "");
  if (!t.ok()) return t.status();
  return (*t)->Apply({{"user", "hi"}}, true).status();
}

TEST(ChatTemplateTest, BadTemplatesAreRefusedNamingTheKey) {
  for (const std::string bad : {"{% if x %}never closed", "{{ 'unterminated }}", "{% for %}{% endfor %}",
                                "{% endif %}", "{{ a + }}", "{% set = 1 %}", "{{ x ]] }}", "{% if %}{% endif %}",
                                "{% for x in y %}{% else %}{% else %}{% endfor %}", "{% macro m( %}{% endmacro %}",
                                "{% macro m() %}never closed", "{% set x %}never closed", "{% break now %}"}) {
    const absl::Status s = ParseStatus(bad);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad << ": " << s;
    EXPECT_THAT(std::string(s.message()), StartsWith("tokenizer.chat_template: ")) << bad;
  }
  for (const std::string unsupported : {"{% call m() %}x{% endcall %}", "{% include 'x' %}", "{% raw %}{% endraw %}"}) {
    const absl::Status s = ParseStatus(unsupported);
    EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented) << unsupported << ": " << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr("tokenizer.chat_template")) << unsupported;
  }
  const absl::Status filter = RenderStatus("{{ messages | no_such_filter }}");
  EXPECT_EQ(filter.code(), absl::StatusCode::kUnimplemented) << filter;
  EXPECT_THAT(std::string(filter.message()), HasSubstr("filter 'no_such_filter'"));
  EXPECT_EQ(RenderStatus("{{ 'a' + messages }}").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RenderStatus("{{ nothing.here }}").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RenderStatus("{% for i in range(100000000) %}{% endfor %}").code(), absl::StatusCode::kResourceExhausted);
  {
    auto nodes = jinja::Parse("{% for i in range(100) %}{% for j in range(100) %}{{ j }}{% endfor %}{% endfor %}");
    ASSERT_TRUE(nodes.ok());
    jinja::RenderLimits limits;
    limits.max_iterations = 1000;
    EXPECT_EQ(jinja::Render(*nodes, {}, -1, limits).status().code(), absl::StatusCode::kResourceExhausted);
    limits.max_iterations = 100000;
    limits.max_output_bytes = 1000;
    EXPECT_EQ(jinja::Render(*nodes, {}, -1, limits).status().code(), absl::StatusCode::kResourceExhausted);
    EXPECT_TRUE(jinja::Render(*nodes, {}).ok());
  }
  EXPECT_EQ(RenderStatus("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}").code(),
            absl::StatusCode::kResourceExhausted);  // unbounded recursion stops
  EXPECT_EQ(RenderStatus("{% break %}").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RenderStatus("{{ messages[::0] }}").code(), absl::StatusCode::kInvalidArgument);
}

TEST(ChatTemplateTest, HostileNestingIsRefusedNotACrash) {
  for (const size_t depth : {150, 100000}) {  // past the nesting bound, and past the token bound
    const std::string parens = "{{ " + std::string(depth, '(') + "1" + std::string(depth, ')') + " }}";
    EXPECT_EQ(ParseStatus(parens).code(), absl::StatusCode::kInvalidArgument) << depth;
  }
  EXPECT_TRUE(ParseStatus("{{ " + std::string(50, '(') + "1" + std::string(50, ')') + " }}").ok());
  std::string chain = "{{ 1";
  for (int i = 0; i < 100000; ++i) chain += " + 1";
  EXPECT_EQ(ParseStatus(chain + " }}").code(), absl::StatusCode::kInvalidArgument);
  std::string nots = "{{ " ;
  for (int i = 0; i < 100000; ++i) nots += "not ";
  EXPECT_EQ(ParseStatus(nots + "x }}").code(), absl::StatusCode::kInvalidArgument);
  std::string ifs;
  for (int i = 0; i < 100000; ++i) ifs += "{% if x %}";
  EXPECT_EQ(ParseStatus(ifs).code(), absl::StatusCode::kInvalidArgument);
  std::string lists = "{{ " + std::string(100000, '[') + " }}";
  EXPECT_EQ(ParseStatus(lists).code(), absl::StatusCode::kInvalidArgument);
}

// Truncated and mutated templates never crash: each either renders or gives a status.
TEST(ChatTemplateTest, MangledTemplatesNeverCrash) {
  const nlohmann::json data = LoadCases();
  std::mt19937 rng(7);
  const std::string alphabet = "{}%#-+|.,:()[]'\"=<>!~ \nabcxyz0";
  for (const auto& [name, source_json] : data.at("templates").items()) {
    const std::string source = source_json.get<std::string>();
    for (int i = 0; i < 300; ++i) {
      std::string s = source.substr(0, rng() % (source.size() + 1));
      if (i % 2 == 1 && !s.empty()) s[rng() % s.size()] = alphabet[rng() % alphabet.size()];
      (void)RenderStatus(s);
    }
  }
}

}  // namespace
}  // namespace kestrel::runtime
