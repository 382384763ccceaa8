// Helpers of the .kpkg tests: temporary paths, a plugin registry over the build's plugins, the
// models the tests use (shared tiny models, a TinyLlama-shaped synthetic Q4_0 model written once
// per process, the real models when fetched), packing and greedy generation through the runtime.
#ifndef KESTREL_TESTS_KPKG_KPKG_TEST_UTIL_H_
#define KESTREL_TESTS_KPKG_KPKG_TEST_UTIL_H_

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "hal/src/plugin_registry.h"
#include "runtime/model/model.h"
#include "runtime/model/model_packer.h"
#include "runtime/session/session.h"
#include "tests/temp_dir.h"
#include "tools/synth/synth_shape.h"
#include "tools/synth/synth_writer.h"

namespace kestrel::testing {

// Inside the process's temporary folder (tests/temp_dir.h), removed at exit.
inline std::string TempPath(const std::string& name) { return TestTempDir().File("kpkg_" + name); }

inline std::string SharedModel(const std::string& name) {
  const char* d = std::getenv("KESTREL_MODELS_DIR");
  return std::string(d != nullptr ? d : "../shared/models") + "/" + name;
}

inline std::string CachedModel(const std::string& name) {
  const char* c = std::getenv("KESTREL_MODEL_CACHE");
  const char* home = std::getenv("HOME");
  const std::string dir = c != nullptr ? c : std::string(home ? home : "") + "/.cache/kestrel/models";
  return dir + "/" + name;
}

inline std::unique_ptr<hal::PluginRegistry> MakeRegistry() {
  const char* d = std::getenv("KESTREL_PLUGIN_DIR");
  return hal::PluginRegistry::Create(d != nullptr ? d : "", nullptr);
}

// TinyLlama-1.1B's layer shape (n_embd 2048, 32 heads, 4 KV heads, FFN 5632) with one layer and a
// 4096-token vocab, Q4_0: the repacked layouts of the real model at a size a unit test can afford.
inline const std::string& TinyLlamaShapeModel() {
  static const std::string path = [] {
    const std::string p = TempPath("tinyllama_shape_q4_0.gguf");
    synth::SynthOptions o;
    o.shape = *synth::PresetShape("tinyllama-1.1b");
    o.shape.name = "tinyllama-shape-1layer";
    o.shape.layers = 1;
    o.shape.vocab = 4096;
    o.shape.context = 256;
    o.type = runtime::GgmlType::Q4_0;
    o.output_path = p;
    absl::Status s = synth::WriteSyntheticModel(o);
    if (!s.ok()) ADD_FAILURE() << s;
    std::atexit([] { std::remove(TempPath("tinyllama_shape_q4_0.gguf").c_str()); });
    return p;
  }();
  return path;
}

inline absl::Status Pack(const std::string& gguf, const std::string& out,
                         std::vector<hal::Device*> devices, const std::string& draft = "") {
  runtime::PackOptions o;
  o.model_path = gguf;
  o.output_path = out;
  o.devices = std::move(devices);
  o.draft_path = draft;
  return runtime::PackModel(o);
}

inline absl::StatusOr<std::vector<int32_t>> Greedy(const runtime::Model& model, hal::Device* ref,
                                                   std::vector<int32_t> prompt, uint32_t n) {
  runtime::SessionConfig config;
  config.context_length = 128;
  config.sampler.temperature = 0.0f;
  auto session = runtime::Session::Create(&model, ref, config);
  if (!session.ok()) return session.status();
  runtime::GenerateRequest req;
  req.prompt = std::move(prompt);
  req.max_new_tokens = n;
  auto r = (*session)->Generate(req);
  if (!r.ok()) return r.status();
  return r->tokens;
}

}  // namespace kestrel::testing

#endif  // KESTREL_TESTS_KPKG_KPKG_TEST_UTIL_H_
