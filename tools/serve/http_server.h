// `kestrel serve`: an OpenAI-compatible HTTP server over one kestrel::Engine (the public C API
// through kestrel.hpp; continuous batching and the prefix cache come from the engine).
//
// Routes: POST /v1/completions, POST /v1/chat/completions (both streamed as server-sent events
// with "stream": true), POST /v1/embeddings (a session with embeddings, created at the first
// request; requests take turns on it), GET /v1/models, GET /health, GET /metrics (Prometheus text). Bad requests
// get 4xx with an OpenAI error body (openai_protocol.h); unknown routes 404.
//
// Threads: cpp-httplib runs each connection on a pool thread; the engine runs its own thread and
// calls each request's streaming callback there, which only queues the piece for the handler
// (RequestStream). A request whose client disconnects is cancelled in the engine and counted in
// kestrel_client_disconnects_total: a streamed one when a write of its events fails; a
// non-streamed one that runs longer than a second is answered chunked with a space (leading JSON
// whitespace) every 250 ms until its JSON is ready, so its disconnect is noticed the same way.
#ifndef KESTREL_TOOLS_SERVE_HTTP_SERVER_H_
#define KESTREL_TOOLS_SERVE_HTTP_SERVER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "kestrel/kestrel.hpp"

namespace kestrel::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                   // 0: any free port (see Server::port())
  uint32_t max_concurrency = 16;     // requests generating at once (the engine's max_sequences)
  std::string model_id;              // the name /v1/models reports and requests may use
  uint32_t context_length = 0;       // of the embeddings session (0: the model's), the longest input
};

class Server {
 public:
  // `engine` must be started (Engine::Start) and outlive the server.
  Server(kestrel::Engine* engine, ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the listening socket; false (with `error`) if the address is unusable.
  bool Bind(std::string* error);
  int port() const;
  // Serves until Stop() (from any thread). Bind first.
  void Run();
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kestrel::serve

#endif  // KESTREL_TOOLS_SERVE_HTTP_SERVER_H_
