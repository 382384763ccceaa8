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
//   OUT_DIR/pre_tokenizer_fuzzer/  byte 0 (pre-tokenizer) + the same texts, over every name
//   OUT_DIR/vocab_fuzzer/      vocab metadata in vocab_fuzzer's encoding: stories260K's whole SPM
//                              vocab, the first 640 tokens of llama-2-tiny-random, SmolLM2 (BPE,
//                              with the merges among them) and Gemma 3 (the last two from
//                              scripts/fetch_models.sh's cache when present)
//   OUT_DIR/chat_template_fuzzer/  flags + template + NUL-separated messages: every template of
//                              CHAT_CASES_JSON (runtime/tokenizer/chat/testdata) and the real
//                              models' tokenizer.chat_template, each with a few conversations
//   OUT_DIR/package_fuzzer/    flags + squeezed .kpkg (tests/fuzz/container_reseal.h) that the
//                              package writer packed: the toy models above with tied embeddings
//                              alone, with a prepared-weight set, with the MoE one as a draft, and
//                              kestrel-synth's *-tiny models
//   OUT_DIR/session_state_fuzzer/  flags + a state that a real session of stories260K on the
//                              REF_PLUGIN saved (F32 and F16 KV: a pending token, plain logits,
//                              empty, greedy) and a prefix cache that an engine saved (F32, F16)
// Usage: kestrel_fuzz_seeds OUT_DIR MODELS_DIR CHAT_CASES_JSON REF_PLUGIN
// A missing shared file is left out (and said on stderr); the written count is printed.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_replace.h"
#include "kestrel/kestrel.h"
#include "nlohmann/json.hpp"
#include "runtime/gguf/gguf_file.h"
#include "runtime/gguf/gguf_writer.h"
#include "runtime/package/fingerprint.h"
#include "runtime/package/package_writer.h"
#include "runtime/tokenizer/bpe/pre_tokenizer.h"
#include "tests/fuzz/container_reseal.h"
#include "tests/fuzz/fuzz_util.h"
#include "tests/fuzz/state_targets.h"
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
// the llama plan declares, in F32 (with `tied`, no output.weight: the output reuses token_embd).
// What the model fuzzer mutates.
bool TinyModel(const std::string& models, bool experts, std::string* out, bool tied = false) {
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
      {"blk.0.attn_norm.weight", {D}},
      {"blk.0.attn_q.weight", {D, D}},        {"blk.0.attn_k.weight", {D, kv}},
      {"blk.0.attn_v.weight", {D, kv}},       {"blk.0.attn_output.weight", {D, D}},
      {"blk.0.ffn_norm.weight", {D}}};
  if (!tied) tensors.push_back({"output.weight", {D, V}});
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

// kestrel-synth's presets of toy size (*-tiny: one per architecture it knows).
std::vector<std::string> TinyPresets() {
  std::vector<std::string> out;
  for (const std::string& name : kestrel::synth::PresetNames()) {
    if (name.size() >= 5 && name.compare(name.size() - 5, 5, "-tiny") == 0) out.push_back(name);
  }
  return out;
}

// Preset `name` as a Q4_0 model (the smallest files) at `path`.
void WriteTinyPreset(const std::string& name, const std::string& path) {
  auto shape = kestrel::synth::PresetShape(name);
  Check(shape.status());
  kestrel::synth::SynthOptions o;
  o.shape = *shape;
  o.type = GgmlType::Q4_0;
  o.output_path = path;
  Check(kestrel::synth::WriteSyntheticModel(o));
}

void ModelSeeds(const std::string& dir, const std::string& models) {
  for (bool experts : {false, true}) {
    std::string bytes;
    if (!TinyModel(models, experts, &bytes)) break;
    Write(dir + (experts ? "/tiny-moe.gguf" : "/tiny-dense.gguf"), bytes);
  }
  // kestrel-synth's tiny shape of every other architecture.
  for (const std::string& name : TinyPresets()) {
    WriteTinyPreset(name, dir + "/" + name + ".gguf");
    ++written;
  }
}

// Every prompt of the shared tokenizer and golden files, and a few edge cases.
std::vector<std::string> SeedTexts(const std::string& models) {
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
  return texts;
}

void TokenizerSeeds(const std::string& dir, const std::string& models) {
  const std::vector<std::string> texts = SeedTexts(models);
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

void PreTokenizerSeeds(const std::string& dir, const std::string& models) {
  const std::vector<std::string> texts = SeedTexts(models);
  const size_t names = kestrel::runtime::PreTokenizer::KnownNames().size() + 1;
  for (size_t i = 0; i < texts.size(); ++i) {
    Write(dir + "/text-" + std::to_string(i), std::string(1, static_cast<char>(i % names)) + texts[i]);
  }
}

// One vocab in vocab_fuzzer's encoding (see its header comment): the first `limit` tokens of
// `path`'s vocab, their types, the merges among them, and `text`.
void VocabSeed(const std::string& out, const std::string& path, size_t limit, const std::string& text) {
  auto f = GgufFile::Open(path);
  if (!f.ok()) {
    std::fprintf(stderr, "kestrel_fuzz_seeds: leaving out %s: %s\n", path.c_str(),
                 f.status().ToString().c_str());
    return;
  }
  auto tokens = (*f)->GetStringArray("tokenizer.ggml.tokens");
  auto model = (*f)->GetString("tokenizer.ggml.model");
  if (!tokens.ok() || !model.ok()) return;
  const size_t n = std::min(limit, tokens->size());
  std::vector<std::string> kept(tokens->begin(), tokens->begin() + n);
  // The encoding separates tokens by '\n' and sections by 0x01: spell those bytes out.
  for (std::string& t : kept) {
    t = absl::StrReplaceAll(t, {{"\n", "\\n"}, {"\x01", "\\x01"}});
  }
  const bool bpe = *model == "gpt2";
  std::string header(8, '\0');
  header[0] = bpe ? 1 : 0;
  header[1] = 0;
  if (auto pre = (*f)->GetString("tokenizer.ggml.pre"); pre.ok()) {
    std::vector<std::string> names = {"", "fuzz-unknown-pre"};
    for (std::string& name : kestrel::runtime::PreTokenizer::KnownNames()) names.push_back(name);
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] == *pre) header[1] = static_cast<char>(i + 1);
    }
  }
  header[2] = static_cast<char>((bpe ? 4 : 1) | 2);
  auto id = [&](const char* key) {
    auto v = (*f)->GetU32(key);
    return static_cast<char>(v.ok() && *v < 0xFF ? *v : 0xFF);
  };
  header[3] = id("tokenizer.ggml.bos_token_id");
  header[4] = id("tokenizer.ggml.eos_token_id");
  header[5] = id("tokenizer.ggml.unknown_token_id");
  header[6] = 3;
  header[7] = static_cast<char>(0xFF);
  std::string body;
  for (size_t i = 0; i < n; ++i) body += (i ? "\n" : "") + kept[i];
  body += '\x01';
  if (auto merges = (*f)->GetStringArray("tokenizer.ggml.merges"); bpe && merges.ok()) {
    std::set<std::string> have(kept.begin(), kept.end());
    bool first = true;
    for (const std::string& m : *merges) {
      const size_t sp = m.find(' ');
      if (sp == std::string::npos) continue;
      const std::string l = m.substr(0, sp), r = m.substr(sp + 1);
      if (!have.count(l) || !have.count(r) || !have.count(l + r)) continue;
      body += (first ? "" : "\n") + m;
      first = false;
    }
  }
  body += '\x01';
  auto types = (*f)->GetI32Array("tokenizer.ggml.token_type");
  for (size_t i = 0; i < n; ++i) {
    body += static_cast<char>('0' + (types.ok() && i < types->size() ? (*types)[i] : 1));
  }
  body += '\x01' + text;
  const std::string name = std::filesystem::path(path).stem().string();
  Write(out + "/" + name, header + body);
}

void VocabSeeds(const std::string& dir, const std::string& models) {
  const std::string cache = kestrel::fuzz::ModelCacheDir();
  const std::string text = "Hello world! <s> It's 2026, \xC3\xA9t\xC3\xA9 \xF0\x9F\x99\x82\n\t  x";
  VocabSeed(dir, models + "/stories260K.gguf", 512, text);
  VocabSeed(dir, models + "/llama-2-tiny-random.gguf", 640, text);
  VocabSeed(dir, cache + "/SmolLM2-135M-Instruct.Q4_1.gguf", 640, text);
  VocabSeed(dir, cache + "/gemma-3-270m-q4_k_m.gguf", 640, text);
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A package the writer packs from `main` (and `draft`), squeezed, behind the flags byte 3
// (reseal, squeezed): see package_fuzzer.cc.
void PackageSeed(const std::string& dir, const std::string& name, const std::string& main,
                 const std::string* draft, bool prepared) {
  using kestrel::runtime::PackageModelSource;
  auto source = [](const std::string& bytes, const std::string& role,
                   std::unique_ptr<GgufFile>* file) {
    auto f = GgufFile::OpenFromMemory(bytes);
    Check(f.status());
    *file = std::move(*f);
    PackageModelSource s;
    s.file = file->get();
    s.role = role;
    s.source_name = role + ".gguf";
    s.source_size = bytes.size();
    s.fingerprint = kestrel::runtime::ModelFingerprint(**file);
    return s;
  };
  std::unique_ptr<GgufFile> main_file, draft_file;
  PackageModelSource m = source(main, "main", &main_file), d;
  if (draft != nullptr) d = source(*draft, "draft", &draft_file);
  if (prepared) {
    kestrel::runtime::PreparedExport e;
    e.plugin = "fuzz";
    e.plugin_version = "1.0";
    e.device_fingerprint = "fuzz-layout-1";
    e.weight_names = {"token_embd.weight", "blk.0.attn_q.weight", "blk.0.ffn_up.weight[rows 0:8]"};
    e.export_weight = [](size_t i) -> absl::StatusOr<std::vector<uint8_t>> {
      return std::vector<uint8_t>(64 * (i + 1), static_cast<uint8_t>(0x40 + i));
    };
    m.prepared.push_back(std::move(e));
  }
  const std::string path = dir + "/" + name + ".kpkg.whole";
  Check(kestrel::runtime::WritePackage(path, m, draft != nullptr ? &d : nullptr));
  const std::string whole = ReadAll(path);
  std::remove(path.c_str());
  std::string squeezed;
  if (!kestrel::fuzz::SqueezePackage(whole, &squeezed)) {
    std::fprintf(stderr, "kestrel_fuzz_seeds: %s does not squeeze\n", name.c_str());
    std::exit(1);
  }
  Write(dir + "/" + name, std::string(1, '\x03') + squeezed);
}

void PackageSeeds(const std::string& dir, const std::string& models) {
  std::string dense, moe;
  if (!TinyModel(models, false, &dense, /*tied=*/true) || !TinyModel(models, true, &moe, true)) return;
  PackageSeed(dir, "dense", dense, nullptr, false);
  PackageSeed(dir, "dense-prepared", dense, nullptr, true);
  PackageSeed(dir, "dense-moe-draft", dense, &moe, false);
  for (const std::string& name : TinyPresets()) {
    const std::string path = dir + "/" + name + ".gguf.whole";
    WriteTinyPreset(name, path);
    const std::string bytes = ReadAll(path);
    std::remove(path.c_str());
    // Only what stays within the fuzz runs' -max_len once packed.
    if (bytes.size() <= 48 * 1024) PackageSeed(dir, name, bytes, nullptr, false);
  }
}

void MustOk(kestrel_status_t* s, const char* what) {
  if (s == nullptr) return;
  std::fprintf(stderr, "kestrel_fuzz_seeds: %s: %s\n", what, kestrel_status_message(s));
  std::exit(1);
}

// The session's state behind `flags` (session_state_fuzzer.cc).
void StateSeed(const std::string& path, kestrel_session_t* session, char flags) {
  size_t need = 0;
  MustOk(kestrel_session_save_state(session, nullptr, 0, &need), "measuring a state");
  std::string bytes(need, '\0');
  MustOk(kestrel_session_save_state(session, &bytes[0], need, &need), "saving a state");
  Write(path, std::string(1, flags) + bytes);
}

kestrel_session_t* StateSession(kestrel_model_t* model, uint64_t kv_type, float temperature) {
  kestrel_sampler_options_t so;
  kestrel_sampler_options_init(&so);
  so.temperature = temperature;
  so.seed = 11;
  so.repetition_penalty = temperature > 0 ? 1.1f : 1.0f;
  const kestrel_session_options_t o = kestrel::fuzz::StateSessionOptions(kv_type, &so);
  kestrel_session_t* s = nullptr;
  MustOk(kestrel_session_create(model, &o, &s), "creating a session");
  return s;
}

// A prefix cache an engine saved after one request, behind `flags`.
void PrefixSeed(const std::string& path, kestrel_model_t* model, uint64_t kv_type, char flags) {
  const kestrel_engine_options_t o = kestrel::fuzz::StateEngineOptions(kv_type);
  kestrel_engine_t* e = nullptr;
  MustOk(kestrel_engine_create(model, &o, &e), "creating an engine");
  kestrel_engine_request_options_t r;
  kestrel_engine_request_options_init(&r);
  r.max_new_tokens = 3;
  const int32_t prompt[] = {1, 403, 407, 261, 378, 300, 290, 281, 270};
  kestrel_request_id_t id = 0;
  MustOk(kestrel_engine_submit_tokens(e, prompt, 9, &r, &id), "submitting");
  uint32_t active = 1;
  while (active > 0) MustOk(kestrel_engine_step(e, &active), "stepping");
  const std::string whole = path + ".whole";
  MustOk(kestrel_engine_save_prefix_cache(e, whole.c_str()), "saving the prefix cache");
  kestrel_engine_destroy(e);
  const std::string bytes = ReadAll(whole);
  std::remove(whole.c_str());
  Write(path, std::string(1, flags) + bytes);
}

void SessionStateSeeds(const std::string& dir, const std::string& models, const std::string& plugin) {
  kestrel_runtime_options_t ro;
  kestrel_runtime_options_init(&ro);
  ro.plugin_path = plugin.c_str();
  kestrel_runtime_t* rt = nullptr;
  MustOk(kestrel_runtime_create(&ro, &rt), "creating a runtime");
  const std::string path = models + "/stories260K.gguf";
  kestrel_model_options_t mo;
  kestrel_model_options_init(&mo);
  mo.device = "ref";
  kestrel_model_t* model = nullptr;
  kestrel_status_t* st = kestrel_model_load(rt, path.data(), path.size(), &mo, &model);
  if (st != nullptr) {
    std::fprintf(stderr, "kestrel_fuzz_seeds: leaving out the session states: %s\n",
                 kestrel_status_message(st));
    kestrel_status_free(st);
    kestrel_runtime_destroy(rt);
    return;
  }
  const int32_t prompt[] = {1, 403, 407, 261, 378};
  const int32_t more[] = {300, 290};
  for (uint64_t kv : {uint64_t{KESTREL_KV_F32}, uint64_t{KESTREL_KV_F16}}) {
    // Flags: reseal, and bit 1 picks the fuzzer's F16 session.
    const char flags = static_cast<char>(kv == KESTREL_KV_F16 ? 3 : 1);
    const std::string kv_name = kv == KESTREL_KV_F16 ? "f16" : "f32";
    kestrel_session_t* s = StateSession(model, kv, 0.8f);
    kestrel_generate_options_t g;
    kestrel_generate_options_init(&g);
    g.max_new_tokens = 4;
    MustOk(kestrel_session_generate_tokens(s, prompt, 5, &g, nullptr), "generating");
    StateSeed(dir + "/state-" + kv_name + "-pending", s, flags);
    MustOk(kestrel_session_truncate(s, 5), "truncating");
    MustOk(kestrel_session_decode(s, more, 2), "decoding");
    StateSeed(dir + "/state-" + kv_name + "-logits", s, flags);
    MustOk(kestrel_session_truncate(s, 0), "truncating");
    StateSeed(dir + "/state-" + kv_name + "-empty", s, flags);
    kestrel_session_destroy(s);
    PrefixSeed(dir + "/prefix-" + kv_name, model, kv, flags);
  }
  kestrel_session_t* greedy = StateSession(model, KESTREL_KV_F32, 0.0f);
  MustOk(kestrel_session_decode(greedy, prompt, 5), "decoding");
  StateSeed(dir + "/state-f32-greedy-unaligned", greedy, 5);  // bit 2: at an odd address
  kestrel_session_destroy(greedy);
  kestrel_model_release(model);
  kestrel_runtime_destroy(rt);
}

// A template with conversations: flags byte, source, then NUL-separated (role, content) pairs.
void ChatSeed(const std::string& dir, const std::string& name, const std::string& source) {
  const std::vector<std::vector<std::string>> conversations = {
      {"user", "Hello!"},
      {"system", "Be brief.", "user", "Hi", "assistant", "Hello.", "user", "What is 2+2?"},
      {"user", "a", "user", "b"},
      {}};
  for (size_t c = 0; c < conversations.size(); ++c) {
    std::string bytes(1, static_cast<char>(c % 2 == 0 ? 1 : 0));
    bytes += source;
    for (const std::string& field : conversations[c]) bytes += std::string(1, '\0') + field;
    Write(dir + "/" + name + "-" + std::to_string(c), bytes);
  }
}

void ChatTemplateSeeds(const std::string& dir, const std::string& cases_json) {
  std::ifstream in(cases_json);
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.contains("templates")) {
    std::fprintf(stderr, "kestrel_fuzz_seeds: leaving out the templates of %s\n", cases_json.c_str());
  } else {
    for (const auto& [name, source] : j["templates"].items()) {
      if (source.is_string()) ChatSeed(dir, name, source.get<std::string>());
    }
  }
  const std::string cache = kestrel::fuzz::ModelCacheDir();
  for (const char* file : {"SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-q4_k_m.gguf"}) {
    auto f = GgufFile::Open(cache + "/" + file);
    if (!f.ok()) {
      std::fprintf(stderr, "kestrel_fuzz_seeds: leaving out %s/%s's template\n", cache.c_str(), file);
      continue;
    }
    if (auto t = (*f)->GetString("tokenizer.chat_template"); t.ok()) ChatSeed(dir, file, *t);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: kestrel_fuzz_seeds OUT_DIR MODELS_DIR CHAT_CASES_JSON REF_PLUGIN\n");
    return 2;
  }
  const std::string out = argv[1], models = argv[2], chat_cases = argv[3], ref_plugin = argv[4];
  std::error_code ec;
  for (const std::string& d :
       {out + "/gguf_fuzzer", out + "/tokenizer_fuzzer", out + "/model_fuzzer",
        out + "/pre_tokenizer_fuzzer", out + "/vocab_fuzzer", out + "/chat_template_fuzzer",
        out + "/package_fuzzer", out + "/session_state_fuzzer"}) {
    std::filesystem::create_directories(d, ec);
  }
  GgufSeeds(out + "/gguf_fuzzer", models);
  TokenizerSeeds(out + "/tokenizer_fuzzer", models);
  ModelSeeds(out + "/model_fuzzer", models);
  PreTokenizerSeeds(out + "/pre_tokenizer_fuzzer", models);
  VocabSeeds(out + "/vocab_fuzzer", models);
  ChatTemplateSeeds(out + "/chat_template_fuzzer", chat_cases);
  PackageSeeds(out + "/package_fuzzer", models);
  SessionStateSeeds(out + "/session_state_fuzzer", models, ref_plugin);
  std::printf("kestrel_fuzz_seeds: %d seed files in %s\n", written, out.c_str());
  return 0;
}
