// kestrel_fuzz_seeds OUT_DIR MODELS_DIR: writes the seed corpora of the fuzz targets at build time
// (nothing large is committed):
//   OUT_DIR/gguf_fuzzer/       a small GGUF with every value type, nested arrays and tensors of
//                              several ggml types; vocab-only copies (all metadata, no tensors) of
//                              the shared GGUFs with small vocabs; each file also cut after its
//                              metadata and in the middle of its tensor table
//   OUT_DIR/model_fuzzer/      two whole llama models at toy size (dense and MoE) with
//                              stories260K's metadata and vocab, and kestrel-synth's *-tiny shape
//                              of every architecture it knows (llama3, qwen2, qwen3, phi3), Q4_0
//   OUT_DIR/tokenizer_fuzzer/  byte 0 (vocab, mode) + text: every string of the shared
//                              tokenizer-*.json and golden files, spread over vocabs and modes,
//                              and a few id sequences
// A missing shared file is left out (and said on stderr); the written count is printed.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "runtime/gguf/gguf_file.h"
#include "runtime/gguf/gguf_writer.h"
#include "tools/synth/synth_shape.h"
#include "tools/synth/synth_writer.h"

namespace {

using kestrel::runtime::GgmlType;
using kestrel::runtime::GgufFile;
using kestrel::runtime::GgufValue;
using kestrel::runtime::GgufWriter;

int written = 0;

void Write(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    std::fprintf(stderr, "kestrel_fuzz_seeds: cannot write %s\n", path.c_str());
    std::exit(1);
  }
  ++written;
}

void Check(const absl::Status& s) {
  if (!s.ok()) {
    std::fprintf(stderr, "kestrel_fuzz_seeds: %s\n", s.ToString().c_str());
    std::exit(1);
  }
}

std::string RichFile() {
  GgufWriter w(32);
  Check(w.AddString("general.architecture", "llama"));
  Check(w.AddU32("llama.block_count", 2));
  Check(w.AddKv("k.i8", GgufValue::I8(-3)));
  Check(w.AddKv("k.u16", GgufValue::U16(65535)));
  Check(w.AddKv("k.i64", GgufValue::I64(-1)));
  Check(w.AddKv("k.f64", GgufValue::F64(0.25)));
  Check(w.AddBool("k.bool", true));
  Check(w.AddString("tokenizer.ggml.model", "llama"));
  Check(w.AddStringArray("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "\xE2\x96\x81hello", "a"}));
  const std::vector<float> scores = {0.f, -1.f, -2.f, 3.5f, 1.f};
  Check(w.AddF32Array("tokenizer.ggml.scores", scores));
  const std::vector<int32_t> types = {2, 3, 3, 1, 1};
  Check(w.AddI32Array("tokenizer.ggml.token_type", types));
  Check(w.AddKv("k.nested", GgufValue::ArrayOfArrays(
                                {GgufValue::StringArray({"a", "b"}),
                                 GgufValue::U32Array(std::vector<uint32_t>{1, 2, 3})})));
  Check(w.AddTensor("a", GgmlType::F32, {4, 3}));
  Check(w.AddTensor("b", GgmlType::Q8_0, {64, 2}));
  Check(w.AddTensor("c", GgmlType::F16, {16}));
  Check(w.AddTensor("d", GgmlType::Q4_0, {32, 1}));
  std::string out;
  Check(w.OpenString(&out));
  for (const auto& t : w.tensors()) {
    std::vector<uint8_t> data(t.size_bytes);
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7 + t.name[0]);
    Check(w.WriteTensorData(data.data(), data.size()));
  }
  Check(w.Close());
  return out;
}

// All metadata of `path`, no tensors (what llama.cpp calls a vocab-only file).
bool VocabOnly(const std::string& path, std::string* out) {
  auto f = GgufFile::Open(path);
  if (!f.ok()) {
    std::fprintf(stderr, "kestrel_fuzz_seeds: leaving out %s: %s\n", path.c_str(),
                 f.status().ToString().c_str());
    return false;
  }
  GgufWriter w((*f)->alignment());
  for (const auto& kv : (*f)->metadata()) {
    if (kv.key == "general.alignment") continue;
    Check(w.AddKv(kv.key, kv.value));
  }
  Check(w.OpenString(out));
  Check(w.Close());
  return true;
}

void GgufSeeds(const std::string& dir, const std::string& models) {
  std::vector<std::pair<std::string, std::string>> files = {{"rich", RichFile()}};
  for (const char* name : {"stories260K", "tiny-moe-f32"}) {
    std::string bytes;
    if (VocabOnly(models + "/" + name + ".gguf", &bytes)) files.push_back({name, bytes});
  }
  for (const auto& [name, bytes] : files) {
    Write(dir + "/" + name + ".gguf", bytes);
    Write(dir + "/" + name + ".cut-half.gguf", bytes.substr(0, bytes.size() / 2));
    Write(dir + "/" + name + ".cut-end.gguf", bytes.substr(0, bytes.size() - 1));
  }
}

// A whole model at toy size: stories260K's metadata (vocab included) with block_count 1,
// embedding 8, 2 heads (1 KV head), FFN 16, and (with `experts`) 2 experts, 1 used; every tensor
// the llama plan declares, in F32. What the model fuzzer mutates.
bool TinyModel(const std::string& models, bool experts, std::string* out) {
  auto f = GgufFile::Open(models + "/stories260K.gguf");
  if (!f.ok()) {
    std::fprintf(stderr, "kestrel_fuzz_seeds: leaving out the tiny models: %s\n",
                 f.status().ToString().c_str());
    return false;
  }
  const uint64_t D = 8, F = 16, V = 512, kv = 4, E = 2;
  GgufWriter w(32);
  for (const auto& kv_pair : (*f)->metadata()) {
    const std::string& k = kv_pair.key;
    if (k == "general.alignment" || k.rfind("llama.", 0) == 0) continue;
    Check(w.AddKv(k, kv_pair.value));
  }
  Check(w.AddU32("llama.block_count", 1));
  Check(w.AddU32("llama.embedding_length", D));
  Check(w.AddU32("llama.feed_forward_length", F));
  Check(w.AddU32("llama.attention.head_count", 2));
  Check(w.AddU32("llama.attention.head_count_kv", 1));
  Check(w.AddU32("llama.rope.dimension_count", 4));
  Check(w.AddU32("llama.context_length", 32));
  Check(w.AddF32("llama.attention.layer_norm_rms_epsilon", 1e-5f));
  if (experts) {
    Check(w.AddU32("llama.expert_count", E));
    Check(w.AddU32("llama.expert_used_count", 1));
  }
  std::vector<std::pair<std::string, std::vector<uint64_t>>> tensors = {
      {"token_embd.weight", {D, V}},          {"output_norm.weight", {D}},
      {"output.weight", {D, V}},              {"blk.0.attn_norm.weight", {D}},
      {"blk.0.attn_q.weight", {D, D}},        {"blk.0.attn_k.weight", {D, kv}},
      {"blk.0.attn_v.weight", {D, kv}},       {"blk.0.attn_output.weight", {D, D}},
      {"blk.0.ffn_norm.weight", {D}}};
  if (experts) {
    tensors.push_back({"blk.0.ffn_gate_inp.weight", {D, E}});
    tensors.push_back({"blk.0.ffn_gate_exps.weight", {D, F, E}});
    tensors.push_back({"blk.0.ffn_up_exps.weight", {D, F, E}});
    tensors.push_back({"blk.0.ffn_down_exps.weight", {F, D, E}});
  } else {
    tensors.push_back({"blk.0.ffn_gate.weight", {D, F}});
    tensors.push_back({"blk.0.ffn_up.weight", {D, F}});
    tensors.push_back({"blk.0.ffn_down.weight", {F, D}});
  }
  for (const auto& [name, dims] : tensors) Check(w.AddTensor(name, GgmlType::F32, dims));
  Check(w.OpenString(out));
  for (const auto& t : w.tensors()) {
    std::vector<float> v(t.size_bytes / 4);
    for (size_t i = 0; i < v.size(); ++i) v[i] = 0.01f * static_cast<float>(i % 97) - 0.4f;
    Check(w.WriteTensorData(v.data(), t.size_bytes));
  }
  Check(w.Close());
  return true;
}

void ModelSeeds(const std::string& dir, const std::string& models) {
  for (bool experts : {false, true}) {
    std::string bytes;
    if (!TinyModel(models, experts, &bytes)) break;
    Write(dir + (experts ? "/tiny-moe.gguf" : "/tiny-dense.gguf"), bytes);
  }
  // kestrel-synth's tiny shape of every other architecture (Q4_0: the smallest files).
  for (const std::string& name : kestrel::synth::PresetNames()) {
    if (name.size() < 5 || name.compare(name.size() - 5, 5, "-tiny") != 0) continue;
    auto shape = kestrel::synth::PresetShape(name);
    Check(shape.status());
    kestrel::synth::SynthOptions o;
    o.shape = *shape;
    o.type = GgmlType::Q4_0;
    o.output_path = dir + "/" + name + ".gguf";
    Check(kestrel::synth::WriteSyntheticModel(o));
    ++written;
  }
}

void TokenizerSeeds(const std::string& dir, const std::string& models) {
  std::vector<std::string> texts = {"", " ", "  ", "Hello world", "\n\n\t x", "<s></s><unk>",
                                    "<|im_start|>user\nhi<|im_end|>", "<start_of_turn>user\n"};
  for (const char* name : {"tokenizer-llama-spm.json", "tokenizer-smollm2.json",
                           "tokenizer-gemma3.json", "stories260K.golden.json"}) {
    std::ifstream in(models + "/" + name);
    if (!in) {
      std::fprintf(stderr, "kestrel_fuzz_seeds: leaving out %s/%s\n", models.c_str(), name);
      continue;
    }
    const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
    if (j.is_discarded() || !j.contains("cases")) continue;
    for (const auto& c : j["cases"]) {
      if (c.contains("prompt") && c["prompt"].is_string()) texts.push_back(c["prompt"]);
    }
  }
  // Modes 0-3 (plain, add_special, parse_special, both) over 5 vocab slots, round robin.
  for (size_t i = 0; i < texts.size(); ++i) {
    const uint8_t selector = static_cast<uint8_t>(((i % 4) << 4) | (i % 5));
    Write(dir + "/text-" + std::to_string(i), std::string(1, static_cast<char>(selector)) + texts[i]);
  }
  // Id sequences (mode 4): in range, negative, past the vocab.
  const std::vector<int32_t> ids = {1, 2, 0, 3, 259, 511, 512, -1, 31999, 32000, 49151, 262143,
                                    2147483647};
  for (uint8_t vocab = 0; vocab < 5; ++vocab) {
    std::string bytes(1, static_cast<char>((4 << 4) | vocab));
    bytes.append(reinterpret_cast<const char*>(ids.data()), ids.size() * sizeof(int32_t));
    Write(dir + "/ids-" + std::to_string(vocab), bytes);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: kestrel_fuzz_seeds OUT_DIR MODELS_DIR\n");
    return 2;
  }
  const std::string out = argv[1], models = argv[2];
  std::error_code ec;
  for (const std::string& d :
       {out + "/gguf_fuzzer", out + "/tokenizer_fuzzer", out + "/model_fuzzer"}) {
    std::filesystem::create_directories(d, ec);
  }
  GgufSeeds(out + "/gguf_fuzzer", models);
  TokenizerSeeds(out + "/tokenizer_fuzzer", models);
  ModelSeeds(out + "/model_fuzzer", models);
  std::printf("kestrel_fuzz_seeds: %d seed files in %s\n", written, out.c_str());
  return 0;
}
