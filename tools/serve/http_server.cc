#include "http_server.h"

#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <ctime>
#include <limits>
#include <mutex>
#include <optional>
#include <random>
#include <vector>

#include "chat_prompt.h"
#include "httplib.h"
#include "metrics.h"
#include "openai_protocol.h"
#include "request_stream.h"
#include "template_prompt.h"

namespace kestrel::serve {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kMaxBodyBytes = 8u << 20;
constexpr auto kPollInterval = std::chrono::milliseconds(50);
constexpr auto kHeartbeatAfter = std::chrono::milliseconds(1000);
constexpr auto kHeartbeatEvery = std::chrono::milliseconds(250);

void SendError(httplib::Response& res, const ApiError& e) {
  res.status = e.http_status;
  res.set_content(ErrorBody(e), "application/json");
}

ApiError FromKestrelError(const kestrel::Error& e) {
  ApiError a;
  a.message = e.message();
  switch (e.code()) {
    case kestrel::StatusCode::kInvalidArgument:
    case kestrel::StatusCode::kOutOfRange:
    case kestrel::StatusCode::kResourceExhausted:
      a.http_status = 400;
      if (e.message().find("context") != std::string::npos) a.code = "context_length_exceeded";
      break;
    default:
      a.http_status = 500;
      a.type = "server_error";
      a.code = e.code_name();
  }
  return a;
}

const char* StopReasonName(kestrel::StopReason r) {
  switch (r) {
    case kestrel::StopReason::kEos: return "eos";
    case kestrel::StopReason::kMaxTokens: return "max_tokens";
    case kestrel::StopReason::kStopString: return "stop_string";
    case kestrel::StopReason::kCallback: return "callback";
    case kestrel::StopReason::kContextFull: return "context_full";
    case kestrel::StopReason::kCancelled: return "cancelled";
    case kestrel::StopReason::kNone: break;
  }
  return "none";
}

// One chunked response (streamed, or a long non-streamed one): the request in the engine and
// how far the answer has got.
struct StreamState {
  kestrel::RequestId id = 0;
  Endpoint endpoint = Endpoint::kCompletions;
  uint32_t n = 1;
  bool include_usage = false;
  bool logprobs = false;  // the request asked for logprobs
  ResponseHeader header;
  std::shared_ptr<RequestStream> pieces;
  bool started = false;   // the role chunks (chat) are out
  bool finished = false;  // [DONE] (or the whole JSON) is out
};

}  // namespace

struct Server::Impl {
  kestrel::Engine* engine;
  ServerOptions options;
  httplib::Server http;
  Metrics metrics;
  std::atomic<uint64_t> next_id{1};
  std::mt19937_64 seeds{std::random_device{}()};
  std::mutex seeds_mu;
  int bound_port = 0;
  int listen_fd = -1;  // the listening socket, seen through the socket-options hook

  std::mutex embed_mu;
  std::unique_ptr<kestrel::Session> embed_session;  // created by the first /v1/embeddings

  void Routes();
  void HandleEmbeddings(const httplib::Request& req, httplib::Response& res);
  void HandleGeneration(Endpoint endpoint, const httplib::Request& req, httplib::Response& res);
  std::optional<ApiError> Submit(GenerationRequest& r, std::shared_ptr<RequestStream> pieces,
                                 Clock::time_point received, kestrel::RequestId* id);
  void Respond(const GenerationRequest& r, const ResponseHeader& header, kestrel::RequestId id,
               std::shared_ptr<RequestStream> pieces, httplib::Response& res);
  void Stream(const GenerationRequest& r, const ResponseHeader& header, kestrel::RequestId id,
              std::shared_ptr<RequestStream> pieces, httplib::Response& res);
  bool WriteStream(StreamState& s, httplib::DataSink& sink);
  struct Answer {
    int status;
    std::string body;
  };
  Answer Finish(Endpoint endpoint, uint32_t n, bool logprobs, const ResponseHeader& header,
                kestrel::RequestId id, RequestStream* pieces);
  bool DoneAfter(kestrel::RequestId id, int64_t ms);
  void FinishStream(StreamState& s, bool completed);
  uint64_t FreshSeed() {
    std::lock_guard<std::mutex> lock(seeds_mu);
    return seeds();
  }
};

void Server::Impl::Routes() {
  http.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("{\"status\":\"ok\"}", "application/json");
  });
  http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(ModelsBody(options.model_id, std::time(nullptr)), "application/json");
  });
  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics.Render(engine->Stats()), "text/plain; version=0.0.4");
  });
  http.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
    HandleGeneration(Endpoint::kCompletions, req, res);
  });
  http.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
    HandleGeneration(Endpoint::kChatCompletions, req, res);
  });
  http.Post("/v1/embeddings", [this](const httplib::Request& req, httplib::Response& res) {
    HandleEmbeddings(req, res);
  });
  http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;  // a handler's own error body
    ApiError e;
    e.http_status = res.status;
    e.message = res.status == 404 ? "no route " + req.method + " " + req.path
                                  : "HTTP " + std::to_string(res.status);
    if (res.status == 404) e.code = "not_found";
    SendError(res, e);
  });
  http.set_exception_handler([](const httplib::Request&, httplib::Response& res,
                                std::exception_ptr ep) {
    ApiError e;
    e.http_status = 500;
    e.type = "server_error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& ex) {
      e.message = ex.what();
    } catch (...) {
      e.message = "unknown error";
    }
    SendError(res, e);
  });
  http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    static const char* const kKnown[] = {"/v1/completions", "/v1/chat/completions", "/v1/embeddings",
                                         "/v1/models", "/health", "/metrics"};
    std::string endpoint = "other";
    for (const char* k : kKnown) {
      if (req.path == k) endpoint = k;
    }
    metrics.CountResponse(endpoint, res.status);
  });
}

void Server::Impl::HandleEmbeddings(const httplib::Request& req, httplib::Response& res) {
  EmbeddingRequest r;
  if (auto e = ParseEmbeddingRequest(req.body, &r)) return SendError(res, *e);
  if (!r.model.empty() && r.model != options.model_id) {
    ApiError e;
    e.http_status = 404;
    e.param = "model";
    e.code = "model_not_found";
    e.message = "the model '" + r.model + "' does not exist; this server serves '" + options.model_id + "'";
    return SendError(res, e);
  }
  std::vector<std::vector<float>> embeddings;
  uint32_t prompt_tokens = 0;
  try {
    std::lock_guard<std::mutex> lock(embed_mu);
    if (!embed_session) {
      kestrel::SessionOptions so;
      so.context_length = options.context_length;
      embed_session = std::make_unique<kestrel::Session>(engine->model(), so);
    }
    for (const std::string& text : r.inputs) {
      prompt_tokens += static_cast<uint32_t>(engine->model().Tokenize(text).size());
      embeddings.push_back(embed_session->Embed(text));
    }
  } catch (const kestrel::Error& e) {
    ApiError a = FromKestrelError(e);
    if (a.http_status == 400) a.param = "input";
    return SendError(res, a);
  }
  metrics.CountGeneration(prompt_tokens, 0);
  res.set_content(EmbeddingsBody(options.model_id, embeddings, r.base64, prompt_tokens), "application/json");
}

void Server::Impl::HandleGeneration(Endpoint endpoint, const httplib::Request& req,
                                    httplib::Response& res) {
  const Clock::time_point received = Clock::now();
  GenerationRequest r;
  if (auto e = ParseGenerationRequest(endpoint, req.body, &r)) return SendError(res, *e);
  if (!r.model.empty() && r.model != options.model_id) {
    ApiError e;
    e.http_status = 404;
    e.param = "model";
    e.code = "model_not_found";
    e.message = "the model '" + r.model + "' does not exist; this server serves '" +
                options.model_id + "' (GET /v1/models)";
    return SendError(res, e);
  }
  if (r.n > options.max_concurrency) {
    ApiError e;
    e.param = "n";
    e.message = "'n' is " + std::to_string(r.n) + ", above the server's --max-concurrency " +
                std::to_string(options.max_concurrency);
    return SendError(res, e);
  }
  auto pieces = std::make_shared<RequestStream>();
  kestrel::RequestId id = 0;
  if (auto e = Submit(r, pieces, received, &id)) return SendError(res, *e);
  ResponseHeader header;
  char hex[32];
  std::snprintf(hex, sizeof(hex), "%016" PRIx64, next_id.fetch_add(1));
  header.id = std::string(endpoint == Endpoint::kChatCompletions ? "chatcmpl-" : "cmpl-") + hex;
  header.created = std::time(nullptr);
  header.model = options.model_id;
  if (r.stream) {
    Stream(r, header, id, std::move(pieces), res);
  } else {
    Respond(r, header, id, std::move(pieces), res);
  }
}

std::optional<ApiError> Server::Impl::Submit(GenerationRequest& r,
                                             std::shared_ptr<RequestStream> pieces,
                                             Clock::time_point received, kestrel::RequestId* id) {
  kestrel::RequestOptions ro;
  ro.max_new_tokens = r.max_tokens.value_or(std::numeric_limits<uint32_t>::max());
  ro.sampler.temperature = r.temperature;
  ro.sampler.top_p = r.top_p;
  ro.sampler.top_k = r.top_k;
  ro.sampler.min_p = r.min_p;
  ro.sampler.repetition_penalty = r.repetition_penalty;
  ro.sampler.seed = r.seed ? *r.seed : FreshSeed();
  ro.n = r.n;
  ro.stop_strings = r.stop;
  for (const auto& [token, bias] : r.logit_bias) ro.sampler.logit_bias.push_back({token, bias});
  ro.sampler.ignore_eos = r.ignore_eos;
  ro.json_schema = r.json_schema;
  ro.grammar = r.grammar;
  std::string prompt = r.prompt;
  if (r.endpoint == Endpoint::kChatCompletions) {
    ChatPrompt chat;
    try {
      chat = BuildChatPrompt(engine->model(), r.messages);
    } catch (const kestrel::Error& e) {
      ApiError a = FromKestrelError(e);
      if (e.code() == kestrel::StatusCode::kFailedPrecondition) a.http_status = 400;
      if (a.http_status == 400) a.param = "messages";
      a.message = "the model's chat template: " + a.message;
      return a;
    }
    prompt = std::move(chat.text);
    ro.parse_special = chat.parse_special;
    ro.add_bos = chat.add_bos;
    for (std::string& s : chat.stop_strings) ro.stop_strings.push_back(std::move(s));
  }
  Metrics* m = &metrics;
  // The engine calls on_logprobs just before on_token for the same token of a sample, both on its
  // thread: the entry waits in `pending` for its piece.
  auto pending = std::make_shared<std::vector<std::optional<LogprobEntry>>>(r.n);
  if (r.logprobs) {
    ro.n_probs = r.top_logprobs;
    const kestrel::Model* model = &engine->model();
    ro.on_logprobs = [pending, model](uint32_t sample, const kestrel::TokenLogprob& chosen,
                                      const std::vector<kestrel::TokenLogprob>& top) {
      LogprobEntry e{model->TokenToPiece(chosen.token, /*special=*/true), chosen.logprob, {}};
      for (const kestrel::TokenLogprob& t : top) {
        e.top.emplace_back(model->TokenToPiece(t.token, /*special=*/true), t.logprob);
      }
      (*pending)[sample] = std::move(e);
    };
  }
  auto on_token = [pieces, pending, m, received](uint32_t sample, int32_t token, std::string_view text) {
    Piece piece{sample, token, std::string(text), std::nullopt};
    if (sample < pending->size()) piece.logprob.swap((*pending)[sample]);
    if (pieces->Push(std::move(piece))) {
      m->ObserveTimeToFirstToken(std::chrono::duration<double>(Clock::now() - received).count());
    }
    return true;
  };
  try {
    *id = r.prompt_tokens.empty() ? engine->Submit(prompt, ro, on_token)
                                  : engine->SubmitTokens(r.prompt_tokens, ro, on_token);
  } catch (const kestrel::Error& e) {
    ApiError a = FromKestrelError(e);
    a.param = a.http_status == 400 ? (r.endpoint == Endpoint::kChatCompletions ? "messages"
                                                                                : "prompt")
                                   : "";
    if (a.http_status == 400 && e.message().find("logit_bias") != std::string::npos) {
      a.param = "logit_bias";
    }
    if (a.http_status == 400 && e.message().find("options->json_schema") != std::string::npos) {
      a.param = "response_format";
    }
    if (a.http_status == 400 && e.message().find("options->grammar") != std::string::npos) {
      a.param = "grammar";
    }
    return a;
  }
  return std::nullopt;
}

// The JSON answer of a done, non-streamed request (or its error), after which it is released.
Server::Impl::Answer Server::Impl::Finish(Endpoint endpoint, uint32_t n, bool logprobs,
                                         const ResponseHeader& header, kestrel::RequestId id,
                                         RequestStream* pieces) {
  std::vector<Choice> choices;
  Usage usage;
  try {
    engine->Wait(id, 0);  // throws the request's failure (or CANCELLED)
    // Every callback ran before the request was done: the queue holds all its pieces.
    std::vector<std::vector<LogprobEntry>> entries(n);
    for (Piece& p : pieces->Take(std::chrono::milliseconds(0))) {
      if (p.logprob && p.sample < n) entries[p.sample].push_back(std::move(*p.logprob));
    }
    for (uint32_t s = 0; s < n; ++s) {
      const kestrel::RequestResult result = engine->Result(id, s);
      choices.push_back(
          Choice{s, engine->Text(id, s), FinishReason(StopReasonName(result.stop_reason)),
                 logprobs ? std::optional<std::vector<LogprobEntry>>(std::move(entries[s]))
                          : std::nullopt});
      usage.prompt_tokens = result.n_prompt_tokens;
      usage.completion_tokens += result.n_generated_tokens;
    }
  } catch (const kestrel::Error& e) {
    try {
      engine->Release(id);
    } catch (const kestrel::Error&) {
    }
    const ApiError a = FromKestrelError(e);
    return Answer{a.http_status, ErrorBody(a)};
  }
  engine->Release(id);
  metrics.CountGeneration(usage.prompt_tokens, usage.completion_tokens);
  return Answer{200, CompletionBody(endpoint, header, choices, usage)};
}

// Whether request `id` is done after waiting up to `ms` (a failed or cancelled one is done).
bool Server::Impl::DoneAfter(kestrel::RequestId id, int64_t ms) {
  try {
    return engine->Wait(id, ms);
  } catch (const kestrel::Error&) {
    return true;
  }
}

// A request that is done within kHeartbeatAfter gets a plain response. A longer one is answered
// chunked: one space (JSON allows leading whitespace) every kHeartbeatEvery while it runs, so that
// a client that left is noticed (a write fails, the second after it left) and its request
// cancelled, then the JSON. Its status is then 200 whatever happens later (a failure comes as the
// error object).
void Server::Impl::Respond(const GenerationRequest& r, const ResponseHeader& header,
                           kestrel::RequestId id, std::shared_ptr<RequestStream> pieces,
                           httplib::Response& res) {
  if (DoneAfter(id, kHeartbeatAfter.count())) {
    const Answer a = Finish(r.endpoint, r.n, r.logprobs, header, id, pieces.get());
    res.status = a.status;
    res.set_content(a.body, "application/json");
    return;
  }
  auto state = std::make_shared<StreamState>();
  state->id = id;
  state->endpoint = r.endpoint;
  state->n = r.n;
  state->logprobs = r.logprobs;
  state->header = header;
  state->pieces = std::move(pieces);
  res.set_chunked_content_provider(
      "application/json",
      [this, state](size_t, httplib::DataSink& sink) {
        try {
          if (!DoneAfter(state->id, kHeartbeatEvery.count())) return sink.write(" ", 1);
          state->finished = true;
          const Answer a = Finish(state->endpoint, state->n, state->logprobs, state->header,
                                  state->id, state->pieces.get());
          sink.write(a.body.data(), a.body.size());
          sink.done();
          return true;
        } catch (const std::exception&) {
          return false;
        }
      },
      [this, state](bool) {
        if (!state->finished) FinishStream(*state, /*completed=*/false);  // the client left
      });
}

void Server::Impl::Stream(const GenerationRequest& r, const ResponseHeader& header,
                          kestrel::RequestId id, std::shared_ptr<RequestStream> pieces,
                          httplib::Response& res) {
  auto state = std::make_shared<StreamState>();
  state->id = id;
  state->endpoint = r.endpoint;
  state->n = r.n;
  state->include_usage = r.include_usage;
  state->logprobs = r.logprobs;
  state->header = header;
  state->pieces = std::move(pieces);
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, state](size_t, httplib::DataSink& sink) {
        try {
          return WriteStream(*state, sink);
        } catch (const std::exception&) {
          return false;  // nothing may escape into httplib's writer (it would terminate)
        }
      },
      [this, state](bool success) { FinishStream(*state, success && state->finished); });
}

// One turn of the chunked provider: waits a little for pieces and writes them as events; after
// the request is done, the finish chunks, usage and [DONE]. A failed write (the client left)
// makes httplib stop and call FinishStream with success = false.
bool Server::Impl::WriteStream(StreamState& s, httplib::DataSink& sink) {
  auto write = [&sink](const std::string& event) { return sink.write(event.data(), event.size()); };
  if (!s.started) {
    s.started = true;
    if (s.endpoint == Endpoint::kChatCompletions) {
      for (uint32_t i = 0; i < s.n; ++i) {
        if (!write(StreamChunk(s.endpoint, s.header, Choice{i, "", "", std::nullopt}, /*role_only=*/true))) {
          return false;
        }
      }
    }
  }
  // Callbacks run before their request is done, so "done" seen with an empty queue means every
  // piece was taken; the wait happens only while the request is still going.
  std::vector<Piece> pieces = s.pieces->Take(std::chrono::milliseconds(0));
  bool done = false;
  if (pieces.empty()) {
    done = engine->Result(s.id, 0).done();
    pieces = s.pieces->Take(done ? std::chrono::milliseconds(0) : kPollInterval);
  }
  for (Piece& p : pieces) {
    if (p.text.empty() && !p.logprob) continue;  // a token's logprob goes out even if its text waits
    Choice c{p.sample, p.text, "", std::nullopt};
    if (s.logprobs) {
      c.logprobs.emplace();
      if (p.logprob) c.logprobs->push_back(std::move(*p.logprob));
    }
    if (!write(StreamChunk(s.endpoint, s.header, c))) return false;
  }
  if (!done) return true;
  Usage usage;
  for (uint32_t i = 0; i < s.n; ++i) {
    const kestrel::RequestResult result = engine->Result(s.id, i);
    usage.prompt_tokens = result.n_prompt_tokens;
    usage.completion_tokens += result.n_generated_tokens;
    if (result.state != kestrel::RequestState::kFinished) {
      // Failed or cancelled in the engine: end the stream with an error event.
      ApiError e;
      e.http_status = 500;
      e.type = "server_error";
      e.message = std::string("the request ended in the engine: ") +
                  kestrel::StatusCodeName(result.status_code);
      write("data: " + ErrorBody(e) + "\n\n");
      sink.done();
      return true;
    }
    const std::string finish = FinishReason(StopReasonName(result.stop_reason));
    if (!write(StreamChunk(s.endpoint, s.header, Choice{i, "", finish, std::nullopt}))) return false;
  }
  if (s.include_usage && !write(StreamUsageChunk(s.endpoint, s.header, usage))) return false;
  if (!write(kStreamDone)) return false;
  metrics.CountGeneration(usage.prompt_tokens, usage.completion_tokens);
  s.finished = true;
  sink.done();
  return true;
}

void Server::Impl::FinishStream(StreamState& s, bool completed) {
  try {
    if (!completed && !engine->Result(s.id, 0).done()) {
      engine->Cancel(s.id);
      metrics.CountClientDisconnect();
    }
    engine->Release(s.id);
  } catch (const kestrel::Error&) {
    // Already released (e.g. the server is shutting down); nothing left to free.
  }
}

Server::Server(kestrel::Engine* engine, ServerOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->engine = engine;
  impl_->options = std::move(options);
  // A streamed request holds its connection's thread until it ends: room for every running
  // request, as many queued behind them, and the short ones (/metrics, /health), up to a limit.
  const size_t threads =
      std::min<size_t>(static_cast<size_t>(impl_->options.max_concurrency) * 2 + 8, 1024);
  impl_->http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  impl_->http.set_payload_max_length(kMaxBodyBytes);
  // Streamed events are small writes: without TCP_NODELAY, Nagle's algorithm and the client's
  // delayed ACKs hold tokens back by tens of milliseconds.
  impl_->http.set_tcp_nodelay(true);
  Impl* impl = impl_.get();
  impl_->http.set_socket_options([impl](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    impl->listen_fd = sock;
  });
  impl_->http.set_keep_alive_max_count(1000);
  impl_->Routes();
}

Server::~Server() = default;

bool Server::Bind(std::string* error) {
  Impl& s = *impl_;
  if (s.options.port == 0) {
    s.bound_port = s.http.bind_to_any_port(s.options.host);
  } else if (s.http.bind_to_port(s.options.host, s.options.port)) {
    s.bound_port = s.options.port;
  } else {
    s.bound_port = -1;
  }
  if (s.bound_port <= 0) {
    *error = "cannot listen on " + s.options.host + ":" + std::to_string(s.options.port) +
             " (address in use, or not an address of this machine)";
    return false;
  }
  // Debian's cpp-httplib 0.11 listens with a backlog of 5: a burst of clients (32 streams
  // opening at once) would see dropped SYNs and a 1 s retransmit. listen() again raises it.
  if (s.listen_fd >= 0) ::listen(s.listen_fd, SOMAXCONN);
  return true;
}

int Server::port() const { return impl_->bound_port; }

void Server::Run() { impl_->http.listen_after_bind(); }

void Server::Stop() { impl_->http.stop(); }

}  // namespace kestrel::serve
