// `kestrel embed`: the embedding of a text (kestrel_session_embed: the final hidden state, mean-
// or last-token-pooled, L2-normalised). stdout: the n_embd values on one line, separated by
// spaces, or with --json one object {model, device, n_tokens, n_embd, pooling, embedding}.
#include <cstdio>
#include <string>
#include <vector>

#include "api_util.h"
#include "commands.h"
#include "json_writer.h"
#include "kestrel/kestrel.h"
#include "prompt_input.h"

namespace kestrel::cli {

int RunEmbed(const Options& o) {
  std::string text, error;
  if (!ReadPrompt(o, stdin, &text, &error)) {
    std::fprintf(stderr, "kestrel: error: %s\n", error.c_str());
    return kExitError;
  }
  RuntimePtr runtime = CreateRuntime(o.verbosity);
  if (!runtime) return kExitError;
  int exit_code = kExitError;
  ModelPtr model = LoadModel(runtime.get(), LoadOptionsFrom(o), &exit_code);
  if (!model) return exit_code;
  kestrel_model_info_t info;
  if (!GetModelInfo(model.get(), &info)) return kExitError;

  kestrel_session_options_t so;
  kestrel_session_options_init(&so);
  so.context_length = o.context_length;
  so.n_threads = o.n_threads;
  kestrel_session_t* raw = nullptr;
  StatusPtr status(kestrel_session_create(model.get(), &so, &raw));
  if (status) {
    PrintStatusError(status.get());
    return kExitError;
  }
  SessionPtr session(raw);
  std::vector<int32_t> ids;
  if (!Tokenize(model.get(), text, /*add_special=*/true, /*parse_special=*/false, &ids)) return kExitError;
  kestrel_embed_options_t eo;
  kestrel_embed_options_init(&eo);
  eo.pooling = o.pooling_last ? KESTREL_POOLING_LAST : KESTREL_POOLING_MEAN;
  std::vector<float> embedding(info.n_embd);
  size_t n = 0;
  status.reset(kestrel_session_embed(session.get(), text.data(), text.size(), &eo, embedding.data(),
                                     embedding.size(), &n));
  if (status) {
    PrintStatusError(status.get());
    return kExitError;
  }
  embedding.resize(n);
  if (o.json) {
    JsonWriter w;
    w.BeginObject();
    w.Key("model");
    w.String(o.model_path);
    w.Key("device");
    w.String(info.device != nullptr ? info.device : "");
    w.Key("n_tokens");
    w.Uint(static_cast<uint32_t>(ids.size()));
    w.Key("n_embd");
    w.Uint(static_cast<uint32_t>(embedding.size()));
    w.Key("pooling");
    w.String(o.pooling_last ? "last" : "mean");
    w.Key("embedding");
    w.BeginArray();
    for (float v : embedding) w.Float(v);
    w.EndArray();
    w.EndObject();
    std::printf("%s\n", w.str().c_str());
  } else {
    for (size_t i = 0; i < embedding.size(); ++i) std::printf(i == 0 ? "%.9g" : " %.9g", embedding[i]);
    std::printf("\n");
  }
  return kExitOk;
}

}  // namespace kestrel::cli
