#include "openai_protocol.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include <string>

namespace kestrel::serve {
namespace {

using nlohmann::json;

GenerationRequest ParseOk(Endpoint e, const std::string& body) {
  GenerationRequest r;
  auto err = ParseGenerationRequest(e, body, &r);
  EXPECT_FALSE(err.has_value()) << body << " -> " << (err ? err->message : "");
  return r;
}

ApiError ParseBad(Endpoint e, const std::string& body) {
  GenerationRequest r;
  auto err = ParseGenerationRequest(e, body, &r);
  EXPECT_TRUE(err.has_value()) << body << " was accepted";
  return err.value_or(ApiError{});
}

TEST(OpenAiProtocolTest, CompletionWithEveryField) {
  const GenerationRequest r = ParseOk(
      Endpoint::kCompletions,
      R"({"model": "m", "prompt": "Once", "max_tokens": 5, "temperature": 0, "top_p": 0.5,
          "n": 2, "stop": ["\n", "The end"], "stream": true,
          "stream_options": {"include_usage": true}, "seed": 7, "user": "u", "top_k": 3,
          "min_p": 0.1, "repetition_penalty": 1.1, "presence_penalty": 0, "logprobs": null})");
  EXPECT_EQ(r.model, "m");
  EXPECT_EQ(r.prompt, "Once");
  EXPECT_EQ(r.max_tokens, 5u);
  EXPECT_EQ(r.temperature, 0.0f);
  EXPECT_EQ(r.top_p, 0.5f);
  EXPECT_EQ(r.n, 2u);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"\n", "The end"}));
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_EQ(r.seed, 7u);
  EXPECT_EQ(r.top_k, 3);
  EXPECT_FLOAT_EQ(r.min_p, 0.1f);
  EXPECT_FLOAT_EQ(r.repetition_penalty, 1.1f);
}

TEST(OpenAiProtocolTest, CompletionDefaultsAndPromptForms) {
  GenerationRequest r = ParseOk(Endpoint::kCompletions, R"({"prompt": ["Once"]})");
  EXPECT_EQ(r.prompt, "Once");
  EXPECT_EQ(r.max_tokens, 16u);  // OpenAI's completions default
  EXPECT_EQ(r.temperature, 1.0f);
  EXPECT_EQ(r.n, 1u);
  EXPECT_FALSE(r.stream);
  EXPECT_FALSE(r.seed.has_value());
  r = ParseOk(Endpoint::kCompletions, R"({"prompt": [1, 403, 407], "max_tokens": null})");
  EXPECT_EQ(r.prompt_tokens, (std::vector<int32_t>{1, 403, 407}));
  EXPECT_FALSE(r.max_tokens.has_value());  // null: until EOS or a full context
  r = ParseOk(Endpoint::kCompletions, R"({"prompt": "x", "stop": "END"})");
  EXPECT_EQ(r.stop, std::vector<std::string>{"END"});
}

TEST(OpenAiProtocolTest, ChatMessagesAndTextParts) {
  const GenerationRequest r = ParseOk(
      Endpoint::kChatCompletions,
      R"({"model": "m", "messages": [{"role": "system", "content": "Be brief."},
          {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]}],
          "max_completion_tokens": 9})");
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[1].content, "Hi there");
  EXPECT_EQ(r.max_tokens, 9u);
  EXPECT_FALSE(ParseOk(Endpoint::kChatCompletions, R"({"messages": [{"role": "user", "content": "x"}]})")
                   .max_tokens.has_value());  // chat: no default limit
}

TEST(OpenAiProtocolTest, BadRequestsNameTheField) {
  struct Case {
    Endpoint e;
    const char* body;
    const char* param;
    const char* needle;
  } cases[] = {
      {Endpoint::kCompletions, "{not json", "", "not valid JSON"},
      {Endpoint::kCompletions, "[1]", "", "JSON object"},
      {Endpoint::kCompletions, "{}", "prompt", "'prompt' is required"},
      {Endpoint::kCompletions, R"({"prompt": ""})", "prompt", "empty"},
      {Endpoint::kCompletions, R"({"prompt": ["a", "b"]})", "prompt", "several prompts"},
      {Endpoint::kCompletions, R"({"prompt": "x", "temperature": 3})", "temperature", "[0, 2]"},
      {Endpoint::kCompletions, R"({"prompt": "x", "temperature": "hot"})", "temperature", "number"},
      {Endpoint::kCompletions, R"({"prompt": "x", "top_p": 0})", "top_p", "(0, 1]"},
      {Endpoint::kCompletions, R"({"prompt": "x", "max_tokens": 0})", "max_tokens", "[1,"},
      {Endpoint::kCompletions, R"({"prompt": "x", "max_tokens": -1})", "max_tokens", "integer"},
      {Endpoint::kCompletions, R"({"prompt": "x", "n": 9})", "n", "[1, 8]"},
      {Endpoint::kCompletions, R"({"prompt": "x", "stop": [1]})", "stop", "strings"},
      {Endpoint::kCompletions, R"({"prompt": "x", "stop": ["a","b","c","d","e"]})", "stop", "at most 4"},
      {Endpoint::kCompletions, R"({"prompt": "x", "stream": "yes"})", "stream", "true or false"},
      {Endpoint::kCompletions, R"({"prompt": "x", "stream_options": {"include_usage": true}})",
       "stream_options", "needs \"stream\": true"},
      {Endpoint::kCompletions, R"({"prompt": "x", "logprobs": 21})", "logprobs", "[0, 20]"},
      {Endpoint::kCompletions, R"({"prompt": "x", "logprobs": true})", "logprobs", "integer"},
      {Endpoint::kCompletions, R"({"prompt": "x", "top_logprobs": 2})", "top_logprobs", "chat field"},
      {Endpoint::kChatCompletions, R"({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2})",
       "top_logprobs", "needs \"logprobs\": true"},
      {Endpoint::kChatCompletions, R"({"messages": [{"role": "user", "content": "x"}], "logprobs": 2})",
       "logprobs", "true or false"},
      {Endpoint::kCompletions, R"({"prompt": "x", "logit_bias": {"abc": 1}})", "logit_bias", "token ids"},
      {Endpoint::kCompletions, R"({"prompt": "x", "logit_bias": {"5": 101}})", "logit_bias", "[-100, 100]"},
      {Endpoint::kCompletions, R"({"prompt": "x", "logit_bias": [1]})", "logit_bias", "object"},
      {Endpoint::kCompletions, R"({"prompt": "x", "ignore_eos": 1})", "ignore_eos", "true or false"},
      {Endpoint::kCompletions, R"({"prompt": "x", "echo": true})", "echo", "not supported"},
      {Endpoint::kCompletions, R"({"prompt": "x", "presence_penalty": 0.5})", "presence_penalty",
       "not supported"},
      {Endpoint::kCompletions, R"({"prompt": "x", "model": 3})", "model", "string"},
      {Endpoint::kChatCompletions, R"({"messages": []})", "messages", "non-empty"},
      {Endpoint::kChatCompletions, R"({"messages": [{"role": "robot", "content": "x"}]})",
       "messages[0].role", "system, user or assistant"},
      {Endpoint::kChatCompletions, R"({"messages": [{"role": "user"}]})", "messages[0].content",
       "required"},
      {Endpoint::kChatCompletions,
       R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})",
       "messages[0].content", "parts"},
      {Endpoint::kChatCompletions,
       R"({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "xml"}})",
       "response_format", "not supported"},
      {Endpoint::kChatCompletions,
       R"({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_schema"}})",
       "response_format.json_schema", "must be an object"},
      {Endpoint::kChatCompletions,
       R"({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_schema", "json_schema": {"name": "a"}}})",
       "response_format.json_schema.schema", "JSON schema object"},
      {Endpoint::kCompletions, R"({"prompt": "x", "grammar": 3})", "grammar", "GBNF"},
  };
  for (const Case& c : cases) {
    const ApiError e = ParseBad(c.e, c.body);
    EXPECT_EQ(e.http_status, 400) << c.body;
    EXPECT_EQ(e.param, c.param) << c.body;
    EXPECT_NE(e.message.find(c.needle), std::string::npos) << c.body << " -> " << e.message;
    const json body = json::parse(ErrorBody(e));
    EXPECT_EQ(body["error"]["type"], "invalid_request_error");
    EXPECT_EQ(body["error"]["message"], e.message);
  }
}

TEST(OpenAiProtocolTest, LogprobsAndLogitBiasParse) {
  GenerationRequest r;
  ASSERT_FALSE(ParseGenerationRequest(Endpoint::kCompletions,
                                      R"({"prompt": "x", "logprobs": 3, "logit_bias": {"7": -100, "9": 2.5},
                                          "ignore_eos": true})",
                                      &r));
  EXPECT_TRUE(r.logprobs);
  EXPECT_EQ(r.top_logprobs, 3u);
  ASSERT_EQ(r.logit_bias.size(), 2u);
  EXPECT_EQ(r.logit_bias[0].first, 7);
  EXPECT_TRUE(std::isinf(r.logit_bias[0].second) && r.logit_bias[0].second < 0);  // -100 bans
  EXPECT_EQ(r.logit_bias[1].first, 9);
  EXPECT_FLOAT_EQ(r.logit_bias[1].second, 2.5f);
  EXPECT_TRUE(r.ignore_eos);
  ASSERT_FALSE(ParseGenerationRequest(Endpoint::kCompletions, R"({"prompt": "x", "logprobs": 0})", &r));
  EXPECT_TRUE(r.logprobs);  // 0: the chosen tokens only
  EXPECT_EQ(r.top_logprobs, 0u);
  ASSERT_FALSE(ParseGenerationRequest(
      Endpoint::kChatCompletions,
      R"({"messages": [{"role": "user", "content": "x"}], "logprobs": true, "top_logprobs": 5})", &r));
  EXPECT_TRUE(r.logprobs);
  EXPECT_EQ(r.top_logprobs, 5u);
  ASSERT_FALSE(ParseGenerationRequest(Endpoint::kChatCompletions,
                                      R"({"messages": [{"role": "user", "content": "x"}]})", &r));
  EXPECT_FALSE(r.logprobs);
}

TEST(OpenAiProtocolTest, ResponseFormatAndGrammar) {
  GenerationRequest r = ParseOk(Endpoint::kChatCompletions,
                                R"({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}})");
  EXPECT_EQ(json::parse(r.json_schema), json::parse(R"({"type": "object"})"));
  r = ParseOk(Endpoint::kCompletions,
              R"({"prompt": "x", "response_format": {"type": "json_schema", "json_schema": {"name": "p",
                  "schema": {"type": "object", "properties": {"a": {"type": "integer"}}}, "strict": true}}})");
  EXPECT_EQ(json::parse(r.json_schema),
            json::parse(R"({"type": "object", "properties": {"a": {"type": "integer"}}})"));
  EXPECT_TRUE(r.grammar.empty());
  r = ParseOk(Endpoint::kCompletions, R"({"prompt": "x", "response_format": {"type": "text"}})");
  EXPECT_TRUE(r.json_schema.empty());
  r = ParseOk(Endpoint::kCompletions, R"({"prompt": "x", "grammar": "root ::= \"a\""})");
  EXPECT_EQ(r.grammar, "root ::= \"a\"");
  const ApiError e = ParseBad(Endpoint::kCompletions,
                              R"({"prompt": "x", "grammar": "root ::= \"a\"", "response_format": {"type": "json_object"}})");
  EXPECT_EQ(e.param, "response_format");
}

TEST(OpenAiProtocolTest, LogprobsInResponses) {
  ResponseHeader h{"id", 1, "m"};
  std::vector<LogprobEntry> entries = {
      {"Once", -0.5f, {{"Once", -0.5f}, {"The", -1.5f}}},
      {" upon", -std::numeric_limits<float>::infinity(), {}}};
  Choice c{0, "Once upon", "length", entries};
  json j = json::parse(CompletionBody(Endpoint::kCompletions, h, {c}, {}));
  const json& lp = j["choices"][0]["logprobs"];
  EXPECT_EQ(lp["tokens"], json({"Once", " upon"}));
  EXPECT_EQ(lp["token_logprobs"][0], -0.5);
  EXPECT_EQ(lp["token_logprobs"][1], -9999.0);  // -inf as OpenAI writes it
  EXPECT_EQ(lp["top_logprobs"][0]["The"], -1.5);
  EXPECT_EQ(lp["text_offset"], json({0, 4}));
  j = json::parse(CompletionBody(Endpoint::kChatCompletions, h, {c}, {}));
  const json& content = j["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 2u);
  EXPECT_EQ(content[0]["token"], "Once");
  EXPECT_EQ(content[0]["bytes"], json({79, 110, 99, 101}));
  EXPECT_EQ(content[0]["top_logprobs"][1]["token"], "The");
  EXPECT_EQ(content[0]["top_logprobs"][1]["logprob"], -1.5);
  // Without logprobs asked: null.
  j = json::parse(CompletionBody(Endpoint::kChatCompletions, h, {Choice{0, "x", "stop", std::nullopt}}, {}));
  EXPECT_TRUE(j["choices"][0]["logprobs"].is_null());
  const std::string event = StreamChunk(Endpoint::kChatCompletions, h, c);
  j = json::parse(event.substr(6));
  EXPECT_EQ(j["choices"][0]["logprobs"]["content"][1]["token"], " upon");
}

TEST(OpenAiProtocolTest, ResponsesAndStreamChunks) {
  const ResponseHeader h{"cmpl-1", 1700000000, "stories260K"};
  json j = json::parse(CompletionBody(Endpoint::kCompletions, h, {Choice{0, "text", "length", std::nullopt}},
                                      Usage{5, 3}));
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["choices"][0]["text"], "text");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["total_tokens"], 8);
  j = json::parse(CompletionBody(Endpoint::kChatCompletions, h, {Choice{0, "hi", "stop", std::nullopt}}, {}));
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(j["choices"][0]["message"]["content"], "hi");

  auto event = [](const std::string& e) {
    EXPECT_EQ(e.substr(0, 6), "data: ");
    EXPECT_EQ(e.substr(e.size() - 2), "\n\n");
    return json::parse(e.substr(6));
  };
  j = event(StreamChunk(Endpoint::kChatCompletions, h, Choice{0, "", "", std::nullopt}, true));
  EXPECT_EQ(j["object"], "chat.completion.chunk");
  EXPECT_EQ(j["choices"][0]["delta"]["role"], "assistant");
  EXPECT_TRUE(j["choices"][0]["finish_reason"].is_null());
  j = event(StreamChunk(Endpoint::kChatCompletions, h, Choice{0, "Once", "", std::nullopt}));
  EXPECT_EQ(j["choices"][0]["delta"]["content"], "Once");
  j = event(StreamChunk(Endpoint::kChatCompletions, h, Choice{1, "", "stop", std::nullopt}));
  EXPECT_TRUE(j["choices"][0]["delta"].empty());
  EXPECT_EQ(j["choices"][0]["index"], 1);
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  j = event(StreamChunk(Endpoint::kCompletions, h, Choice{0, "x", "", std::nullopt}));
  EXPECT_EQ(j["choices"][0]["text"], "x");
  j = event(StreamUsageChunk(Endpoint::kCompletions, h, Usage{2, 4}));
  EXPECT_TRUE(j["choices"].empty());
  EXPECT_EQ(j["usage"]["completion_tokens"], 4);
  EXPECT_EQ(std::string(kStreamDone), "data: [DONE]\n\n");
  j = json::parse(ModelsBody("stories260K", 1));
  EXPECT_EQ(j["object"], "list");
  EXPECT_EQ(j["data"][0]["id"], "stories260K");
  EXPECT_EQ(FinishReason("eos"), "stop");
  EXPECT_EQ(FinishReason("stop_string"), "stop");
  EXPECT_EQ(FinishReason("max_tokens"), "length");
  EXPECT_EQ(FinishReason("context_full"), "length");
}

TEST(OpenAiProtocolTest, BytesThatAreNotUtf8BecomeReplacementCharacters) {
  // A byte token of a model may start no character; the JSON must still be written.
  const ResponseHeader h{"cmpl-1", 1, "m"};
  const std::string event = StreamChunk(Endpoint::kCompletions, h, Choice{0, "a\xff b\xc3", "", std::nullopt});
  const json j = json::parse(event.substr(6));
  EXPECT_EQ(j["choices"][0]["text"], "a\xef\xbf\xbd b\xef\xbf\xbd");
  const json body = json::parse(
      CompletionBody(Endpoint::kChatCompletions, h, {Choice{0, "\x80", "stop", std::nullopt}}, Usage{}));
  EXPECT_EQ(body["choices"][0]["message"]["content"], "\xef\xbf\xbd");
}

}  // namespace
TEST(OpenAiProtocolTest, Embeddings) {
  EmbeddingRequest r;
  ASSERT_FALSE(ParseEmbeddingRequest(R"({"input": "hi", "model": "m"})", &r));
  EXPECT_EQ(r.inputs, std::vector<std::string>{"hi"});
  EXPECT_FALSE(r.base64);
  ASSERT_FALSE(ParseEmbeddingRequest(R"({"input": ["a", "b"], "encoding_format": "base64"})", &r));
  EXPECT_EQ(r.inputs.size(), 2u);
  EXPECT_TRUE(r.base64);
  struct Case {
    const char* body;
    const char* param;
  };
  for (const Case& c : {Case{R"({})", "input"}, Case{R"({"input": [1, 2]})", "input"},
                        Case{R"({"input": ""})", "input"}, Case{R"({"input": "x", "dimensions": 8})", "dimensions"},
                        Case{R"({"input": "x", "encoding_format": "hex"})", "encoding_format"}}) {
    EmbeddingRequest bad;
    auto e = ParseEmbeddingRequest(c.body, &bad);
    ASSERT_TRUE(e) << c.body;
    EXPECT_EQ(e->param, c.param) << c.body;
  }
  json j = json::parse(EmbeddingsBody("m", {{1.0f, 0.5f}}, false, 3));
  EXPECT_EQ(j["data"][0]["embedding"], json({1.0, 0.5}));
  EXPECT_EQ(j["usage"]["prompt_tokens"], 3);
  // 1.0f = 00 00 80 3F, 0.5f = 00 00 00 3F (little-endian) -> base64 of those 8 bytes.
  j = json::parse(EmbeddingsBody("m", {{1.0f, 0.5f}}, true, 3));
  EXPECT_EQ(j["data"][0]["embedding"], "AACAPwAAAD8=");
}

}  // namespace kestrel::serve
