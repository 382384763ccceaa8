// The OpenAI HTTP API as `kestrel serve` speaks it: request bodies of /v1/completions and
// /v1/chat/completions parsed and checked into a GenerationRequest, and the JSON of responses,
// streamed chunks and errors. Pure C++ over nlohmann::json: no sockets, no Kestrel calls, so every
// rule here is unit-tested alone (openai_protocol_test.cc).
//
// Supported request fields: model, prompt (completions: a string, or an array of one string or of
// token ids), messages (chat: role system/user/assistant, content a string or an array of
// {"type": "text", "text": ...} parts), max_tokens / max_completion_tokens (default 16 for
// completions, unlimited up to the context for chat), temperature [0, 2], top_p (0, 1], n [1, 8],
// stop (a string or up to 4), stream, stream_options.include_usage, seed, user (ignored), and
// the extensions top_k, min_p, repetition_penalty, ignore_eos; logprobs (completions: an integer
// in [0, 20], the top tokens per position; chat: true, with top_logprobs in [0, 20]) and
// logit_bias ({"token id": bias in [-100, 100]}; -100 bans the token, other values are added to
// its logit). presence_penalty / frequency_penalty are accepted when 0. response_format: text,
// json_object (any JSON object) or json_schema ({"json_schema": {"schema": ...}}, the subset of
// docs/CONSTRAINED_OUTPUT.md; an unsupported keyword is a 400 naming it); the extension grammar
// (GBNF text). Anything else that changes the output (echo, tools, best_of > 1, suffix) is refused
// with 400 naming the field.
#ifndef KESTREL_TOOLS_SERVE_OPENAI_PROTOCOL_H_
#define KESTREL_TOOLS_SERVE_OPENAI_PROTOCOL_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "chat_prompt.h"
#include "nlohmann/json.hpp"

namespace kestrel::serve {

// An error answered to the client: HTTP status and the OpenAI error object.
struct ApiError {
  int http_status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // "" -> null
  std::string code;   // "" -> null
};

// {"error": {"message", "type", "param", "code"}}
std::string ErrorBody(const ApiError& error);

enum class Endpoint { kCompletions, kChatCompletions };

struct GenerationRequest {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string model;                   // as the client named it ("" if absent)
  std::string prompt;                  // completions: the text; chat: the messages' prompt
  std::vector<int32_t> prompt_tokens;  // completions given token ids (then `prompt` is empty)
  std::vector<ChatMessage> messages;   // chat
  std::optional<uint32_t> max_tokens;  // unset: until EOS or a full context
  float temperature = 1.0f;            // OpenAI's default
  float top_p = 1.0f;
  int32_t top_k = 0;                   // extension; 0 = off
  float min_p = 0.0f;                  // extension; 0 = off
  float repetition_penalty = 1.0f;     // extension; 1 = off
  std::optional<uint64_t> seed;
  uint32_t n = 1;
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool logprobs = false;       // report log-probabilities
  uint32_t top_logprobs = 0;   // ... and this many top tokens per position
  std::vector<std::pair<int32_t, float>> logit_bias;  // -100 became -inf (a ban)
  bool ignore_eos = false;     // extension: never stop at an end-of-generation token
  std::string json_schema;     // response_format json_object / json_schema ("": none)
  std::string grammar;         // extension "grammar": GBNF ("": none)
};

// The log-probability of one generated token and of the top tokens at its position. `token` is
// the token's text (control tokens spelled out; may be part of a UTF-8 character).
struct LogprobEntry {
  std::string token;
  float logprob = 0.0f;  // -inf (a banned token) is written as -9999.0, as OpenAI does
  std::vector<std::pair<std::string, float>> top;
};

// Parses and checks a request body. On error returns an ApiError (400, naming the field in
// `param`); the chat prompt itself is built by the server (it needs the model).
std::optional<ApiError> ParseGenerationRequest(Endpoint endpoint, const std::string& body,
                                               GenerationRequest* out);

// "stop" (EOS or a stop string) or "length" (max_tokens or a full context), from the library's
// stop reason name ("eos", "stop_string", "max_tokens", "context_full", ...).
std::string FinishReason(const std::string& stop_reason);

struct Usage {
  uint32_t prompt_tokens = 0;
  uint32_t completion_tokens = 0;
};

struct Choice {
  uint32_t index = 0;
  std::string text;
  std::string finish_reason;  // "" -> null
  // Set when the request asked for logprobs: the entries of the tokens of `text` (completions:
  // {tokens, token_logprobs, top_logprobs, text_offset}; chat: {content: [{token, logprob, bytes,
  // top_logprobs}]}); unset -> "logprobs": null.
  std::optional<std::vector<LogprobEntry>> logprobs;
};

// Identity of one response: "cmpl-..."/"chatcmpl-..." id, creation time, model name.
struct ResponseHeader {
  std::string id;
  int64_t created = 0;
  std::string model;
};

// The whole (non-streamed) response.
std::string CompletionBody(Endpoint endpoint, const ResponseHeader& header,
                           const std::vector<Choice>& choices, const Usage& usage);

// One server-sent event "data: {...}\n\n" of a stream. Chat: `role_only` gives the first chunk
// of a choice ({"role": "assistant", "content": ""}); a choice with a finish_reason carries an
// empty delta. `usage` (include_usage) makes the usage chunk, whose choices are empty.
std::string StreamChunk(Endpoint endpoint, const ResponseHeader& header, const Choice& choice,
                        bool role_only = false);
std::string StreamUsageChunk(Endpoint endpoint, const ResponseHeader& header, const Usage& usage);
inline constexpr char kStreamDone[] = "data: [DONE]\n\n";

// POST /v1/embeddings: "input" a string or an array of strings (token-id input is refused),
// "encoding_format" "float" (default) or "base64" (little-endian float32, as the openai client asks
// for by default), "model", "user" (ignored); "dimensions" is refused.
struct EmbeddingRequest {
  std::string model;
  std::vector<std::string> inputs;
  bool base64 = false;
};
std::optional<ApiError> ParseEmbeddingRequest(const std::string& body, EmbeddingRequest* out);
// {"object": "list", "data": [{"object": "embedding", "index", "embedding"}], "model", "usage"}.
std::string EmbeddingsBody(const std::string& model, const std::vector<std::vector<float>>& embeddings,
                           bool base64, uint32_t prompt_tokens);

// GET /v1/models.
std::string ModelsBody(const std::string& model_id, int64_t created);

}  // namespace kestrel::serve

#endif  // KESTREL_TOOLS_SERVE_OPENAI_PROTOCOL_H_
