// `kestrel serve`: loads the model, starts an engine on its own thread and runs the
// OpenAI-compatible HTTP server (tools/serve) until SIGINT or SIGTERM.
//
// Built into the separate executable kestrel-serve (serve_main.cc), which `kestrel serve` runs:
// the HTTP library and what it links (OpenSSL, zlib, brotli) then cost nothing to the other
// commands' start-up time and memory.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <string>
#include <thread>

#include "api_util.h"
#include "commands.h"
#include "http_server.h"
#include "interrupt.h"
#include "kestrel/kestrel.hpp"

namespace kestrel::cli {
namespace {

std::string ModelId(const std::string& path) {
  std::string name = path.substr(path.find_last_of('/') + 1);
  const std::string ext = ".gguf";
  if (name.size() > ext.size() && name.compare(name.size() - ext.size(), ext.size(), ext) == 0) {
    name.resize(name.size() - ext.size());
  }
  return name;
}

}  // namespace

int RunServe(const Options& o) {
  // SIGINT/SIGTERM are taken by one waiting thread (blocked in every other thread, which inherit
  // the mask); a client that disconnects must not kill the process with SIGPIPE.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  RuntimePtr runtime = CreateRuntime(o.verbosity);
  if (!runtime) return kExitError;
  int exit_code = kExitError;
  ModelPtr raw_model = LoadModel(runtime.get(), LoadOptionsFrom(o),
                                 &exit_code);
  if (!raw_model) return exit_code;
  kestrel::Model model = kestrel::Model::Adopt(raw_model.release());

  kestrel::EngineOptions eo;
  eo.max_sequences = o.serve.max_concurrency;
  eo.context_length = o.context_length;
  eo.n_threads = o.n_threads;
  eo.kv_type = o.kv_type;
  try {
    kestrel::Engine engine(model, eo);
    engine.Start();
    serve::ServerOptions so;
    so.host = o.serve.host;
    so.port = static_cast<int>(o.serve.port);
    so.max_concurrency = o.serve.max_concurrency;
    so.model_id = ModelId(o.model_path);
    so.context_length = o.context_length;
    serve::Server server(&engine, so);
    std::string error;
    if (!server.Bind(&error)) {
      std::fprintf(stderr, "kestrel: error: %s\n", error.c_str());
      return kExitError;
    }
    std::printf("kestrel serve: listening on http://%s:%d (model '%s', device %s)\n",
                so.host.c_str(), server.port(), so.model_id.c_str(),
                model.Info().device.c_str());
    std::fflush(stdout);
    std::thread stopper([&server, stop_signals] {
      int sig = 0;
      sigwait(&stop_signals, &sig);
      server.Stop();
    });
    server.Run();
    // Run also ends without a signal if the listening socket fails: wake the stopper.
    pthread_kill(stopper.native_handle(), SIGTERM);
    stopper.join();
    engine.Stop();
    std::fprintf(stderr, "kestrel serve: stopped\n");
  } catch (const kestrel::Error& e) {
    std::fprintf(stderr, "kestrel: error: %s\n", e.what());
    return kExitError;
  }
  return kExitOk;
}

}  // namespace kestrel::cli
