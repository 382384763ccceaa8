#include "openai_protocol.h"

#include <cmath>
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
      {"logprobs", [](const json& v) { return v.is_null() || v == false; }},
      {"top_logprobs", [](const json& v) { return v.is_null(); }},
      {"echo", [](const json& v) { return v.is_null() || v == false; }},
      {"logit_bias", [](const json& v) { return v.is_null() || (v.is_object() && v.empty()); }},
      {"best_of", [](const json& v) { return v.is_null() || v == 1; }},
      {"suffix", [](const json& v) { return v.is_null(); }},
      {"tools", [](const json& v) { return v.is_null() || (v.is_array() && v.empty()); }},
      {"tool_choice", [](const json& v) { return v.is_null() || v == "none"; }},
      {"functions", [](const json& v) { return v.is_null(); }},
      {"response_format",
       [](const json& v) { return v.is_null() || (v.is_object() && v.value("type", "") == "text"); }},
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

json ChoiceJson(Endpoint endpoint, const Choice& c) {
  json j = {{"index", c.index}, {"logprobs", nullptr}};
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
  json c = {{"index", choice.index}, {"logprobs", nullptr}};
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

std::string ModelsBody(const std::string& model_id, int64_t created) {
  json m = {{"id", model_id}, {"object", "model"}, {"created", created}, {"owned_by", "kestrel"}};
  return Dump(json{{"object", "list"}, {"data", json::array({m})}});
}

}  // namespace kestrel::serve
