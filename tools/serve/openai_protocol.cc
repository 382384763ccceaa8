#include "openai_protocol.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <limits>

namespace kestrel::serve {
namespace {

using nlohmann::json;

constexpr uint32_t kMaxSamples = 8;
constexpr size_t kMaxStops = 4;

ApiError Bad(const std::string& param, const std::string& message) {
  ApiError e;
  e.param = param;
  e.message = message;
  return e;
}

const char* TypeName(const json& v) { return v.type_name(); }

// Model output may hold bytes that are not UTF-8 (a byte token that starts no character): they
// become U+FFFD instead of an exception from the JSON writer.
std::string Dump(const json& v) { return v.dump(-1, ' ', false, json::error_handler_t::replace); }

// A number field in [lo, hi] (`lo_open`: lo excluded).
std::optional<ApiError> ReadNumber(const json& body, const char* name, double lo, bool lo_open,
                                   double hi, float* out) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_number()) {
    return Bad(name, std::string("'") + name + "' must be a number, not " + TypeName(*it));
  }
  const double v = it->get<double>();
  if (!std::isfinite(v) || v > hi || (lo_open ? v <= lo : v < lo)) {
    char range[64];
    std::snprintf(range, sizeof(range), "%s%g, %g]", lo_open ? "(" : "[", lo, hi);
    return Bad(name, std::string("'") + name + "' is " + Dump(*it) + "; it must be in " + range);
  }
  *out = static_cast<float>(v);
  return std::nullopt;
}

// A non-negative integer field up to `hi`.
std::optional<ApiError> ReadCount(const json& body, const char* name, uint64_t lo, uint64_t hi,
                                  std::optional<uint64_t>* out) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_number_integer() || (it->is_number_integer() && !it->is_number_unsigned() &&
                                   it->get<int64_t>() < 0)) {
    return Bad(name, std::string("'") + name + "' must be an integer >= " + std::to_string(lo) +
                         ", not " + Dump(*it));
  }
  const uint64_t v = it->get<uint64_t>();
  if (v < lo || v > hi) {
    return Bad(name, std::string("'") + name + "' is " + std::to_string(v) + "; it must be in [" +
                         std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  *out = v;
  return std::nullopt;
}

// Fields the server cannot honour yet: refusing beats silently ignoring them.
std::optional<ApiError> RefuseUnsupported(const json& body) {
  struct Field {
    const char* name;
    bool (*harmless)(const json&);  // a value that changes nothing
  };
  static const Field kFields[] = {
      {"echo", [](const json& v) { return v.is_null() || v == false; }},
      {"best_of", [](const json& v) { return v.is_null() || v == 1; }},
      {"suffix", [](const json& v) { return v.is_null(); }},
      {"tools", [](const json& v) { return v.is_null() || (v.is_array() && v.empty()); }},
      {"tool_choice", [](const json& v) { return v.is_null() || v == "none"; }},
      {"functions", [](const json& v) { return v.is_null(); }},
      {"presence_penalty", [](const json& v) { return v.is_null() || (v.is_number() && v == 0); }},
      {"frequency_penalty", [](const json& v) { return v.is_null() || (v.is_number() && v == 0); }},
  };
  for (const Field& f : kFields) {
    auto it = body.find(f.name);
    if (it != body.end() && !f.harmless(*it)) {
      return Bad(f.name, std::string("'") + f.name + "' = " + Dump(*it) +
                             " is not supported by this server");
    }
  }
  return std::nullopt;
}

std::optional<ApiError> ReadStop(const json& body, std::vector<std::string>* out) {
  auto it = body.find("stop");
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) {
    if (!it->get<std::string>().empty()) out->push_back(it->get<std::string>());
    return std::nullopt;
  }
  if (!it->is_array() || it->size() > kMaxStops) {
    return Bad("stop", "'stop' must be a string or an array of at most 4 strings");
  }
  for (const json& s : *it) {
    if (!s.is_string()) return Bad("stop", "'stop' must hold strings, not " + Dump(s));
    if (!s.get<std::string>().empty()) out->push_back(s.get<std::string>());
  }
  return std::nullopt;
}

std::optional<ApiError> ReadPrompt(const json& body, GenerationRequest* out) {
  auto it = body.find("prompt");
  if (it == body.end() || it->is_null()) return Bad("prompt", "'prompt' is required");
  if (it->is_string()) {
    out->prompt = it->get<std::string>();
  } else if (it->is_array() && it->size() == 1 && (*it)[0].is_string()) {
    out->prompt = (*it)[0].get<std::string>();
  } else if (it->is_array() && !it->empty() && (*it)[0].is_number_integer()) {
    for (const json& t : *it) {
      if (!t.is_number_integer() || t.get<int64_t>() < 0 ||
          t.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
        return Bad("prompt", "'prompt' token ids must be integers >= 0, not " + Dump(t));
      }
      out->prompt_tokens.push_back(static_cast<int32_t>(t.get<int64_t>()));
    }
  } else {
    return Bad("prompt",
               "'prompt' must be a string, an array of one string, or an array of token ids "
               "(several prompts per request are not supported)");
  }
  if (out->prompt.empty() && out->prompt_tokens.empty()) {
    return Bad("prompt", "'prompt' is empty");
  }
  return std::nullopt;
}

std::optional<ApiError> ReadMessages(const json& body, GenerationRequest* out) {
  auto it = body.find("messages");
  if (it == body.end() || !it->is_array() || it->empty()) {
    return Bad("messages", "'messages' must be a non-empty array of {role, content} objects");
  }
  for (size_t i = 0; i < it->size(); ++i) {
    const json& m = (*it)[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) return Bad(where, "'" + where + "' must be an object");
    const std::string role = m.value("role", "");
    if (role != "system" && role != "user" && role != "assistant" && role != "developer") {
      return Bad(where + ".role", "'" + where + ".role' must be system, user or assistant, not " +
                                      (m.contains("role") ? Dump(m["role"]) : "missing"));
    }
    ChatMessage msg;
    msg.role = role == "developer" ? "system" : role;
    auto c = m.find("content");
    if (c == m.end() || c->is_null()) {
      return Bad(where + ".content", "'" + where + ".content' is required");
    }
    if (c->is_string()) {
      msg.content = c->get<std::string>();
    } else if (c->is_array()) {
      for (const json& part : *c) {
        if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
            !part["text"].is_string()) {
          return Bad(where + ".content",
                     "'" + where + ".content' parts must be {\"type\": \"text\", \"text\": ...}");
        }
        msg.content += part["text"].get<std::string>();
      }
    } else {
      return Bad(where + ".content", "'" + where + ".content' must be a string or text parts");
    }
    out->messages.push_back(std::move(msg));
  }
  return std::nullopt;
}

std::optional<ApiError> ReadSampling(const json& body, GenerationRequest* out) {
  if (auto e = ReadNumber(body, "temperature", 0.0, false, 2.0, &out->temperature)) return e;
  if (auto e = ReadNumber(body, "top_p", 0.0, true, 1.0, &out->top_p)) return e;
  if (auto e = ReadNumber(body, "min_p", 0.0, false, 1.0, &out->min_p)) return e;
  if (auto e = ReadNumber(body, "repetition_penalty", 0.0, true, 10.0, &out->repetition_penalty)) {
    return e;
  }
  std::optional<uint64_t> v;
  if (auto e = ReadCount(body, "top_k", 0, 1u << 20, &v)) return e;
  if (v) out->top_k = static_cast<int32_t>(*v);
  v.reset();
  if (auto e = ReadCount(body, "n", 1, kMaxSamples, &v)) return e;
  if (v) out->n = static_cast<uint32_t>(*v);
  v.reset();
  if (auto e = ReadCount(body, "seed", 0, std::numeric_limits<uint64_t>::max(), &v)) return e;
  out->seed = v;
  v.reset();
  const char* max_name =
      body.contains("max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  if (auto e = ReadCount(body, max_name, 1, std::numeric_limits<uint32_t>::max(), &v)) return e;
  if (v) out->max_tokens = static_cast<uint32_t>(*v);
  return std::nullopt;
}

constexpr uint64_t kMaxTopLogprobs = 20;

// completions: "logprobs": N; chat: "logprobs": true with "top_logprobs": N.
std::optional<ApiError> ReadLogprobs(Endpoint endpoint, const json& body, GenerationRequest* out) {
  std::optional<uint64_t> v;
  if (endpoint == Endpoint::kCompletions) {
    if (body.contains("top_logprobs") && !body["top_logprobs"].is_null()) {
      return Bad("top_logprobs", "'top_logprobs' is a chat field; completions take \"logprobs\": N");
    }
    if (auto it = body.find("logprobs"); it != body.end() && it->is_boolean()) {
      return Bad("logprobs", "completions take \"logprobs\": N (an integer in [0, 20]), not " + Dump(*it));
    }
    if (auto e = ReadCount(body, "logprobs", 0, kMaxTopLogprobs, &v)) return e;
    out->logprobs = v.has_value();
    out->top_logprobs = static_cast<uint32_t>(v.value_or(0));
    return std::nullopt;
  }
  if (auto it = body.find("logprobs"); it != body.end() && !it->is_null()) {
    if (!it->is_boolean()) return Bad("logprobs", "'logprobs' must be true or false, not " + Dump(*it));
    out->logprobs = it->get<bool>();
  }
  if (auto e = ReadCount(body, "top_logprobs", 0, kMaxTopLogprobs, &v)) return e;
  if (v && !out->logprobs) return Bad("top_logprobs", "'top_logprobs' needs \"logprobs\": true");
  out->top_logprobs = static_cast<uint32_t>(v.value_or(0));
  return std::nullopt;
}

// "logit_bias": {"token id": bias in [-100, 100]}; "ignore_eos": bool (extension).
std::optional<ApiError> ReadBias(const json& body, GenerationRequest* out) {
  if (auto it = body.find("ignore_eos"); it != body.end() && !it->is_null()) {
    if (!it->is_boolean()) return Bad("ignore_eos", "'ignore_eos' must be true or false, not " + Dump(*it));
    out->ignore_eos = it->get<bool>();
  }
  auto it = body.find("logit_bias");
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_object()) return Bad("logit_bias", "'logit_bias' must be an object {\"token id\": bias}");
  for (auto& [key, value] : it->items()) {
    int64_t id = -1;
    size_t used = 0;
    try {
      id = std::stoll(key, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != key.size() || id < 0 || id > std::numeric_limits<int32_t>::max()) {
      return Bad("logit_bias", "'logit_bias' keys must be token ids (\"15043\"), not \"" + key + "\"");
    }
    if (!value.is_number() || !std::isfinite(value.get<double>()) || value.get<double>() < -100 ||
        value.get<double>() > 100) {
      return Bad("logit_bias", "'logit_bias' for token " + key + " is " + Dump(value) +
                                   "; it must be a number in [-100, 100]");
    }
    const double b = value.get<double>();
    out->logit_bias.emplace_back(static_cast<int32_t>(id),
                                 b <= -100 ? -std::numeric_limits<float>::infinity()
                                           : static_cast<float>(b));
  }
  return std::nullopt;
}

// "response_format": {"type": "text" | "json_object" | "json_schema", "json_schema": {"name",
// "schema", "strict", "description"}}; "grammar": GBNF text (extension, as llama.cpp's server).
// The schema is compiled (and its unsupported keywords refused) by the library at submit.
std::optional<ApiError> ReadResponseFormat(const json& body, GenerationRequest* out) {
  if (auto g = body.find("grammar"); g != body.end() && !g->is_null()) {
    if (!g->is_string()) return Bad("grammar", "'grammar' must be a string of GBNF rules");
    out->grammar = g->get<std::string>();
  }
  auto it = body.find("response_format");
  if (it == body.end() || it->is_null()) return std::nullopt;
  const std::string type = it->is_object() ? it->value("type", "") : "";
  if (!out->grammar.empty() && type != "text") {
    return Bad("response_format", "'response_format' and 'grammar' exclude each other");
  }
  if (type == "text") return std::nullopt;
  if (type == "json_object") {
    out->json_schema = R"({"type": "object"})";
    return std::nullopt;
  }
  if (type == "json_schema") {
    auto js = it->find("json_schema");
    if (js == it->end() || !js->is_object()) {
      return Bad("response_format.json_schema",
                 "'response_format.json_schema' must be an object {\"name\", \"schema\"}");
    }
    auto schema = js->find("schema");
    if (schema == js->end() || !(schema->is_object() || schema->is_boolean())) {
      return Bad("response_format.json_schema.schema",
                 "'response_format.json_schema.schema' must be a JSON schema object");
    }
    out->json_schema = schema->dump();
    return std::nullopt;
  }
  return Bad("response_format", "'response_format' = " + Dump(*it) +
                                    " is not supported (type must be text, json_object or json_schema)");
}

std::optional<ApiError> ReadStreaming(const json& body, GenerationRequest* out) {
  if (auto it = body.find("stream"); it != body.end() && !it->is_null()) {
    if (!it->is_boolean()) return Bad("stream", "'stream' must be true or false, not " + Dump(*it));
    out->stream = it->get<bool>();
  }
  if (auto it = body.find("stream_options"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) return Bad("stream_options", "'stream_options' must be an object");
    if (!out->stream) return Bad("stream_options", "'stream_options' needs \"stream\": true");
    auto u = it->find("include_usage");
    if (u != it->end() && !u->is_boolean()) {
      return Bad("stream_options.include_usage", "'include_usage' must be true or false");
    }
    out->include_usage = u != it->end() && u->get<bool>();
  }
  return std::nullopt;
}

double FiniteLogprob(float v) { return std::isfinite(v) ? v : -9999.0; }

json Bytes(const std::string& s) {
  json b = json::array();
  for (unsigned char c : s) b.push_back(static_cast<int>(c));
  return b;
}

// Chat: {"content": [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]}.
// Completions: {tokens, token_logprobs, top_logprobs: [{text: logprob}], text_offset}.
json LogprobsJson(Endpoint endpoint, const std::optional<std::vector<LogprobEntry>>& entries) {
  if (!entries) return nullptr;
  if (endpoint == Endpoint::kChatCompletions) {
    json content = json::array();
    for (const LogprobEntry& e : *entries) {
      json top = json::array();
      for (const auto& [t, lp] : e.top) {
        top.push_back({{"token", t}, {"logprob", FiniteLogprob(lp)}, {"bytes", Bytes(t)}});
      }
      content.push_back({{"token", e.token}, {"logprob", FiniteLogprob(e.logprob)},
                         {"bytes", Bytes(e.token)}, {"top_logprobs", top}});
    }
    return {{"content", content}};
  }
  json tokens = json::array(), token_logprobs = json::array(), top = json::array(),
       offsets = json::array();
  size_t offset = 0;
  for (const LogprobEntry& e : *entries) {
    tokens.push_back(e.token);
    token_logprobs.push_back(FiniteLogprob(e.logprob));
    json t = json::object();
    for (const auto& [text, lp] : e.top) {
      if (!t.contains(text)) t[text] = FiniteLogprob(lp);  // two ids may share a text
    }
    top.push_back(t);
    offsets.push_back(offset);
    offset += e.token.size();
  }
  return {{"tokens", tokens}, {"token_logprobs", token_logprobs}, {"top_logprobs", top},
          {"text_offset", offsets}};
}

json ChoiceJson(Endpoint endpoint, const Choice& c) {
  json j = {{"index", c.index}, {"logprobs", LogprobsJson(endpoint, c.logprobs)}};
  if (endpoint == Endpoint::kChatCompletions) {
    j["message"] = {{"role", "assistant"}, {"content", c.text}};
  } else {
    j["text"] = c.text;
  }
  j["finish_reason"] = c.finish_reason.empty() ? json(nullptr) : json(c.finish_reason);
  return j;
}

json UsageJson(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

json HeaderJson(const ResponseHeader& h, const char* object) {
  return {{"id", h.id}, {"object", object}, {"created", h.created}, {"model", h.model}};
}

std::string Event(const json& j) { return "data: " + Dump(j) + "\n\n"; }

}  // namespace

std::string ErrorBody(const ApiError& e) {
  json err = {{"message", e.message},
              {"type", e.type},
              {"param", e.param.empty() ? json(nullptr) : json(e.param)},
              {"code", e.code.empty() ? json(nullptr) : json(e.code)}};
  return Dump(json{{"error", err}});
}

std::optional<ApiError> ParseGenerationRequest(Endpoint endpoint, const std::string& body,
                                               GenerationRequest* out) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Bad("", "the request body is not valid JSON");
  if (!j.is_object()) return Bad("", "the request body must be a JSON object");
  GenerationRequest r;
  r.endpoint = endpoint;
  if (auto it = j.find("model"); it != j.end() && !it->is_null()) {
    if (!it->is_string()) return Bad("model", "'model' must be a string");
    r.model = it->get<std::string>();
  }
  if (auto e = RefuseUnsupported(j)) return e;
  if (endpoint == Endpoint::kCompletions) {
    if (auto e = ReadPrompt(j, &r)) return e;
  } else {
    if (auto e = ReadMessages(j, &r)) return e;
  }
  if (auto e = ReadSampling(j, &r)) return e;
  if (auto e = ReadStop(j, &r.stop)) return e;
  if (auto e = ReadStreaming(j, &r)) return e;
  if (auto e = ReadLogprobs(endpoint, j, &r)) return e;
  if (auto e = ReadBias(j, &r)) return e;
  if (auto e = ReadResponseFormat(j, &r)) return e;
  if (endpoint == Endpoint::kCompletions && !r.max_tokens && !j.contains("max_tokens")) {
    r.max_tokens = 16;  // the OpenAI default for completions
  }
  *out = std::move(r);
  return std::nullopt;
}

std::string FinishReason(const std::string& stop_reason) {
  if (stop_reason == "max_tokens" || stop_reason == "context_full") return "length";
  return "stop";
}

std::string CompletionBody(Endpoint endpoint, const ResponseHeader& header,
                           const std::vector<Choice>& choices, const Usage& usage) {
  json j = HeaderJson(header, endpoint == Endpoint::kChatCompletions ? "chat.completion"
                                                                     : "text_completion");
  j["choices"] = json::array();
  for (const Choice& c : choices) j["choices"].push_back(ChoiceJson(endpoint, c));
  j["usage"] = UsageJson(usage);
  return Dump(j);
}

std::string StreamChunk(Endpoint endpoint, const ResponseHeader& header, const Choice& choice,
                        bool role_only) {
  const bool chat = endpoint == Endpoint::kChatCompletions;
  json j = HeaderJson(header, chat ? "chat.completion.chunk" : "text_completion");
  json c = {{"index", choice.index}, {"logprobs", LogprobsJson(endpoint, choice.logprobs)}};
  if (chat) {
    if (role_only) {
      c["delta"] = {{"role", "assistant"}, {"content", ""}};
    } else if (!choice.finish_reason.empty() && choice.text.empty()) {
      c["delta"] = json::object();
    } else {
      c["delta"] = {{"content", choice.text}};
    }
  } else {
    c["text"] = choice.text;
  }
  c["finish_reason"] = choice.finish_reason.empty() ? json(nullptr) : json(choice.finish_reason);
  j["choices"] = json::array({c});
  return Event(j);
}

std::string StreamUsageChunk(Endpoint endpoint, const ResponseHeader& header, const Usage& usage) {
  json j = HeaderJson(header, endpoint == Endpoint::kChatCompletions ? "chat.completion.chunk"
                                                                     : "text_completion");
  j["choices"] = json::array();
  j["usage"] = UsageJson(usage);
  return Event(j);
}

std::optional<ApiError> ParseEmbeddingRequest(const std::string& body, EmbeddingRequest* out) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Bad("", "the request body is not valid JSON");
  if (!j.is_object()) return Bad("", "the request body must be a JSON object");
  EmbeddingRequest r;
  if (auto it = j.find("model"); it != j.end() && !it->is_null()) {
    if (!it->is_string()) return Bad("model", "'model' must be a string");
    r.model = it->get<std::string>();
  }
  if (auto it = j.find("dimensions"); it != j.end() && !it->is_null()) {
    return Bad("dimensions", "'dimensions' is not supported: the embedding has the model's n_embd values");
  }
  if (auto it = j.find("encoding_format"); it != j.end() && !it->is_null()) {
    if (*it != "float" && *it != "base64") {
      return Bad("encoding_format", "'encoding_format' must be \"float\" or \"base64\", not " + Dump(*it));
    }
    r.base64 = *it == "base64";
  }
  auto it = j.find("input");
  if (it == j.end() || it->is_null()) return Bad("input", "'input' is required");
  if (it->is_string()) {
    r.inputs.push_back(it->get<std::string>());
  } else if (it->is_array() && !it->empty() && std::all_of(it->begin(), it->end(), [](const json& v) {
               return v.is_string();
             })) {
    if (it->size() > 2048) return Bad("input", "'input' holds more than 2048 texts");
    for (const json& v : *it) r.inputs.push_back(v.get<std::string>());
  } else {
    return Bad("input", "'input' must be a string or a non-empty array of strings (token-id input is not supported)");
  }
  for (size_t i = 0; i < r.inputs.size(); ++i) {
    if (r.inputs[i].empty()) {
      return Bad("input", "'input' text " + std::to_string(i) + " is empty");
    }
  }
  *out = std::move(r);
  return std::nullopt;
}

namespace {

std::string Base64(const std::vector<float>& v) {
  static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string bytes(v.size() * 4, '\0');
  for (size_t i = 0; i < v.size(); ++i) {
    uint32_t u;
    std::memcpy(&u, &v[i], 4);
    for (int b = 0; b < 4; ++b) bytes[i * 4 + b] = static_cast<char>((u >> (8 * b)) & 0xFF);  // little-endian
  }
  std::string out;
  for (size_t i = 0; i < bytes.size(); i += 3) {
    uint32_t n = static_cast<uint32_t>(static_cast<unsigned char>(bytes[i])) << 16;
    if (i + 1 < bytes.size()) n |= static_cast<uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8;
    if (i + 2 < bytes.size()) n |= static_cast<unsigned char>(bytes[i + 2]);
    out.push_back(kAlphabet[(n >> 18) & 63]);
    out.push_back(kAlphabet[(n >> 12) & 63]);
    out.push_back(i + 1 < bytes.size() ? kAlphabet[(n >> 6) & 63] : '=');
    out.push_back(i + 2 < bytes.size() ? kAlphabet[n & 63] : '=');
  }
  return out;
}

}  // namespace

std::string EmbeddingsBody(const std::string& model, const std::vector<std::vector<float>>& embeddings,
                           bool base64, uint32_t prompt_tokens) {
  json data = json::array();
  for (size_t i = 0; i < embeddings.size(); ++i) {
    data.push_back({{"object", "embedding"},
                    {"index", i},
                    {"embedding", base64 ? json(Base64(embeddings[i])) : json(embeddings[i])}});
  }
  return Dump(json{{"object", "list"},
                   {"data", data},
                   {"model", model},
                   {"usage", {{"prompt_tokens", prompt_tokens}, {"total_tokens", prompt_tokens}}}});
}

std::string ModelsBody(const std::string& model_id, int64_t created) {
  json m = {{"id", model_id}, {"object", "model"}, {"created", created}, {"owned_by", "kestrel"}};
  return Dump(json{{"object", "list"}, {"data", json::array({m})}});
}

}  // namespace kestrel::serve
