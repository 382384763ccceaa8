// `kestrel info`: a model's metadata (kestrel_model_get_info) and its tensor type summary. The
// model is opened metadata-only, so this works on every readable GGUF, including files this build
// cannot run: those are reported (runnable: no, with the reasons) and the exit status is still 0.
#include <cinttypes>
#include <cstdio>
#include <string>
#include <vector>

#include "api_util.h"
#include "commands.h"
#include "json_writer.h"
#include "kestrel/kestrel.h"

namespace kestrel::cli {
namespace {

const char* OrEmpty(const char* s) { return s != nullptr ? s : ""; }

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

// What the tokenizer calls add (kestrel_model_get_tokenizer_info): the chat template's family and
// whether it renders, and the end-of-generation ids. `ok` is false when this build has no
// tokenizer for the file.
struct TokenizerExtras {
  bool ok = false;
  std::string family, error;
  std::vector<int32_t> eog;
};

TokenizerExtras GetTokenizerExtras(const kestrel_model_t* model) {
  TokenizerExtras x;
  kestrel_tokenizer_info_t t = {};
  t.struct_size = sizeof(t);
  StatusPtr status(kestrel_model_get_tokenizer_info(model, &t));
  if (status) return x;
  x.ok = true;
  x.family = OrEmpty(t.chat_template_family);
  x.error = OrEmpty(t.chat_template_error);
  x.eog.resize(t.n_end_of_generation);
  size_t n = 0;
  status.reset(kestrel_model_end_of_generation_tokens(model, x.eog.data(), x.eog.size(), &n));
  x.eog.resize(status ? 0 : n);
  return x;
}

bool GetTensorTypes(const kestrel_model_t* model,
                    std::vector<kestrel_tensor_type_summary_t>* out) {
  size_t count = kestrel_model_tensor_type_count(model);
  for (size_t i = 0; i < count; ++i) {
    kestrel_tensor_type_summary_t s = {};
    s.struct_size = sizeof(s);
    StatusPtr status(kestrel_model_tensor_type_summary(model, i, &s));
    if (status) {
      PrintStatusError(status.get());
      return false;
    }
    out->push_back(s);
  }
  return true;
}

void PrintJson(const Options& o, const kestrel_model_info_t& info, const TokenizerExtras& tok,
               const std::vector<kestrel_tensor_type_summary_t>& types) {
  JsonWriter w;
  w.BeginObject();
  w.Key("model");
  w.String(o.model_path);
  w.Key("architecture");
  w.String(OrEmpty(info.architecture));
  w.Key("name");
  w.String(OrEmpty(info.name));
  w.Key("device");
  w.String(OrEmpty(info.device));
  w.Key("n_params");
  w.Uint(info.n_params);
  w.Key("weight_bytes");
  w.Uint(info.weight_bytes);
  w.Key("n_layers");
  w.Uint(info.n_layers);
  w.Key("n_heads");
  w.Uint(info.n_heads);
  w.Key("n_kv_heads");
  w.Uint(info.n_kv_heads);
  w.Key("n_embd");
  w.Uint(info.n_embd);
  w.Key("n_ff");
  w.Uint(info.n_ff);
  w.Key("head_dim");
  w.Uint(info.head_dim);
  w.Key("context_length");
  w.Uint(info.context_length);
  w.Key("vocab_size");
  w.Uint(info.vocab_size);
  w.Key("bos_id");
  w.Int(info.bos_id);
  w.Key("eos_id");
  w.Int(info.eos_id);
  w.Key("unk_id");
  w.Int(info.unk_id);
  w.Key("pad_id");
  w.Int(info.pad_id);
  w.Key("add_bos");
  w.Bool(info.add_bos);
  w.Key("rope_freq_base");
  w.Float(info.rope_freq_base);
  w.Key("rms_norm_eps");
  w.Float(info.rms_norm_eps);
  w.Key("n_tensors");
  w.Uint(info.n_tensors);
  w.Key("n_experts");
  w.Uint(info.n_experts);
  w.Key("n_experts_used");
  w.Uint(info.n_experts_used);
  w.Key("tokenizer");
  w.String(OrEmpty(info.tokenizer_model));
  w.Key("tokenizer_pre");
  w.String(OrEmpty(info.tokenizer_pre));
  w.Key("chat_template");
  w.Bool(info.has_chat_template);
  w.Key("chat_template_family");
  w.String(tok.family);
  w.Key("chat_template_error");
  w.String(info.has_chat_template ? tok.error : "");
  w.Key("end_of_generation_ids");
  w.BeginArray();
  for (const int32_t id : tok.eog) w.Int(id);
  w.EndArray();
  w.Key("runnable");
  w.Bool(info.runnable);
  w.Key("unsupported");
  w.BeginArray();
  for (const std::string& line : Lines(OrEmpty(info.unsupported))) w.String(line);
  w.EndArray();
  w.Key("tensor_types");
  w.BeginArray();
  for (const kestrel_tensor_type_summary_t& t : types) {
    w.BeginObject();
    w.Key("type");
    w.String(OrEmpty(t.type_name));
    w.Key("n_tensors");
    w.Uint(t.n_tensors);
    w.Key("n_elements");
    w.Uint(t.n_elements);
    w.Key("n_bytes");
    w.Uint(t.n_bytes);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  std::printf("%s\n", w.str().c_str());
}

void PrintText(const Options& o, const kestrel_model_info_t& info, const TokenizerExtras& tok,
               const std::vector<kestrel_tensor_type_summary_t>& types) {
  std::printf("model:           %s\n", o.model_path.c_str());
  std::printf("name:            %s\n", OrEmpty(info.name));
  std::printf("architecture:    %s\n", OrEmpty(info.architecture));
  std::printf("device:          %s\n", OrEmpty(info.device));
  std::printf("parameters:      %" PRIu64 "\n", info.n_params);
  std::printf("weights:         %s (%" PRIu64 " bytes)\n", FormatBytes(info.weight_bytes).c_str(),
              info.weight_bytes);
  std::printf("layers:          %" PRIu32 "\n", info.n_layers);
  std::printf("heads:           %" PRIu32 " (kv %" PRIu32 ", head dim %" PRIu32 ")\n",
              info.n_heads, info.n_kv_heads, info.head_dim);
  std::printf("embedding:       %" PRIu32 " (feed-forward %" PRIu32 ")\n", info.n_embd,
              info.n_ff);
  std::printf("context length:  %" PRIu32 "\n", info.context_length);
  std::printf("vocab:           %" PRIu32 " (bos %" PRId32 ", eos %" PRId32 ", unk %" PRId32
              ", pad %" PRId32 ", add bos: %s)\n",
              info.vocab_size, info.bos_id, info.eos_id, info.unk_id, info.pad_id,
              info.add_bos ? "yes" : "no");
  std::printf("rope freq base:  %g\n", static_cast<double>(info.rope_freq_base));
  std::printf("rms norm eps:    %g\n", static_cast<double>(info.rms_norm_eps));
  std::printf("tensors:         %" PRIu32 "\n", info.n_tensors);
  if (info.n_experts > 0) {
    std::printf("experts:         %" PRIu32 " (%" PRIu32 " per token)\n", info.n_experts,
                info.n_experts_used);
  }
  std::printf("tokenizer:       %s (pre-tokenizer %s)\n",
              *OrEmpty(info.tokenizer_model) ? info.tokenizer_model : "(none)",
              *OrEmpty(info.tokenizer_pre) ? info.tokenizer_pre : "(none)");
  if (!info.has_chat_template) {
    std::printf("chat template:   no\n");
  } else if (!tok.ok) {
    std::printf("chat template:   yes\n");
  } else if (tok.error.empty()) {
    std::printf("chat template:   yes (%s family; renders)\n", tok.family.c_str());
  } else {
    std::printf("chat template:   yes (%s family; cannot render: %s)\n", tok.family.c_str(), tok.error.c_str());
  }
  if (!tok.eog.empty()) {
    std::printf("end of generation:");
    for (const int32_t id : tok.eog) std::printf(" %d", id);
    std::printf("\n");
  }
  const std::vector<std::string> reasons = Lines(OrEmpty(info.unsupported));
  std::printf("runnable:        %s\n", info.runnable ? "yes" : "no, this build cannot run it:");
  for (const std::string& r : reasons) std::printf("  - %s\n", r.c_str());
  std::printf("\n%-8s %8s %14s %14s\n", "type", "tensors", "elements", "bytes");
  uint64_t tensors = 0, elements = 0, bytes = 0;
  for (const kestrel_tensor_type_summary_t& t : types) {
    std::printf("%-8s %8" PRIu32 " %14" PRIu64 " %14" PRIu64 "\n", OrEmpty(t.type_name),
                t.n_tensors, t.n_elements, t.n_bytes);
    tensors += t.n_tensors;
    elements += t.n_elements;
    bytes += t.n_bytes;
  }
  std::printf("%-8s %8" PRIu64 " %14" PRIu64 " %14" PRIu64 "\n", "total", tensors, elements,
              bytes);
}

}  // namespace

int RunInfo(const Options& o) {
  RuntimePtr runtime = CreateRuntime(o.verbosity);
  if (!runtime) return kExitError;
  int exit_code = kExitError;
  ModelPtr model = LoadModel(runtime.get(), LoadOptions{o.model_path, o.device, o.use_mmap, /*metadata_only=*/true},
                             &exit_code);
  if (!model) return exit_code;
  kestrel_model_info_t info;
  if (!GetModelInfo(model.get(), &info)) return kExitError;
  std::vector<kestrel_tensor_type_summary_t> types;
  if (!GetTensorTypes(model.get(), &types)) return kExitError;
  const TokenizerExtras tok = GetTokenizerExtras(model.get());
  if (o.json) {
    PrintJson(o, info, tok, types);
  } else {
    PrintText(o, info, tok, types);
  }
  return kExitOk;
}

}  // namespace kestrel::cli
