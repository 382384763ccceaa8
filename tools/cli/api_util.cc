#include "api_util.h"

#include <cinttypes>
#include <cstdio>
#include <string_view>

#include "args.h"
#include "interrupt.h"
#include "progress_bar.h"

namespace kestrel::cli {
namespace {

const char* LevelName(kestrel_log_level_t level) {
  switch (level) {
    case KESTREL_LOG_DEBUG:
      return "debug";
    case KESTREL_LOG_INFO:
      return "info";
    case KESTREL_LOG_WARNING:
      return "warning";
    case KESTREL_LOG_ERROR:
      return "error";
    default:
      return "log";
  }
}

// May run on several library threads at once: build the whole line, then write it with one
// fwrite (stdio locks the stream per call).
void LogToStderr(void* /*user_data*/, kestrel_log_level_t level, const char* message,
                 size_t length) {
  std::string line = "kestrel: ";
  line += LevelName(level);
  line += ": ";
  if (message != nullptr) line.append(message, length);
  if (line.empty() || line.back() != '\n') line.push_back('\n');
  ProgressBar::ClearForLog();
  std::fwrite(line.data(), 1, line.size(), stderr);
}

bool OnLoadProgress(void* user_data, float progress) {
  static_cast<ProgressBar*>(user_data)->Update(progress);
  return !InterruptRequested();
}

std::string BaseName(const std::string& path) {
  size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

void PrintStatusError(const kestrel_status_t* status) {
  std::fprintf(stderr, "kestrel: error: %s: %s\n",
               kestrel_status_code_name(kestrel_status_code(status)),
               kestrel_status_message(status));
}

RuntimePtr CreateRuntime(int verbosity) {
  kestrel_runtime_options_t options;
  kestrel_runtime_options_init(&options);
  options.log_callback = LogToStderr;
  options.log_user_data = nullptr;
  options.log_level = verbosity >= 2   ? KESTREL_LOG_DEBUG
                      : verbosity == 1 ? KESTREL_LOG_INFO
                                       : KESTREL_LOG_WARNING;
  kestrel_runtime_t* runtime = nullptr;
  StatusPtr status(kestrel_runtime_create(&options, &runtime));
  if (status) {
    PrintStatusError(status.get());
    return nullptr;
  }
  return RuntimePtr(runtime);
}

LoadOptions LoadOptionsFrom(const Options& o) {
  LoadOptions l;
  l.path = o.model_path;
  l.device = o.device;
  l.use_mmap = o.use_mmap;
  l.mem = o.mem;
  l.expert_policy = o.expert_policy;
  l.expert_prefetch = o.expert_prefetch;
  l.plan_context = o.context_length;
  return l;
}

ModelPtr LoadModel(kestrel_runtime_t* runtime, const LoadOptions& load, int* exit_code) {
  ProgressBar bar("loading " + BaseName(load.path));
  kestrel_model_options_t options;
  kestrel_model_options_init(&options);
  options.device = load.device.empty() ? nullptr : load.device.c_str();
  options.use_mmap = load.use_mmap;
  options.metadata_only = load.metadata_only;
  std::string budget;
  for (const std::string& m : load.mem) budget += (budget.empty() ? "" : ",") + m;
  options.memory_budget = budget.empty() ? nullptr : budget.c_str();
  options.expert_cache_policy =
      load.expert_policy == "lfu" ? KESTREL_EXPERT_CACHE_LFU : KESTREL_EXPERT_CACHE_LRU;
  options.plan_context_length = load.plan_context;
  if (!load.expert_prefetch) options.offload_flags |= KESTREL_OFFLOAD_FLAG_NO_PREFETCH;
  options.progress_callback = OnLoadProgress;
  options.progress_user_data = &bar;
  kestrel_model_t* model = nullptr;
  StatusPtr status(
      kestrel_model_load(runtime, load.path.data(), load.path.size(), &options, &model));
  bar.Finish();
  if (status) {
    if (kestrel_status_code(status.get()) == KESTREL_STATUS_CANCELLED && InterruptRequested()) {
      std::fprintf(stderr, "kestrel: interrupted while loading the model\n");
      *exit_code = kExitInterrupted;
    } else {
      PrintStatusError(status.get());
      *exit_code = kExitError;
    }
    return nullptr;
  }
  return ModelPtr(model);
}

bool GetModelInfo(const kestrel_model_t* model, kestrel_model_info_t* info) {
  *info = kestrel_model_info_t{};
  info->struct_size = sizeof(*info);
  StatusPtr status(kestrel_model_get_info(model, info));
  if (status) {
    PrintStatusError(status.get());
    return false;
  }
  return true;
}

bool OpenModel(int verbosity, const LoadOptions& options, OpenedModel* out, int* exit_code) {
  *exit_code = kExitError;
  out->runtime = CreateRuntime(verbosity);
  if (!out->runtime) return false;
  out->model = LoadModel(out->runtime.get(), options, exit_code);
  if (!out->model) return false;
  *exit_code = kExitError;
  return GetModelInfo(out->model.get(), &out->info);
}

bool OpenModel(const Options& o, OpenedModel* out, int* exit_code) {
  return OpenModel(o.verbosity, LoadOptionsFrom(o), out, exit_code);
}

bool Tokenize(const kestrel_model_t* model, const std::string& text, bool add_special, bool parse_special,
              std::vector<int32_t>* ids) {
  kestrel_tokenize_options_t options;
  kestrel_tokenize_options_init(&options);
  options.add_special = add_special;
  options.parse_special = parse_special;
  size_t required = 0;
  StatusPtr status(
      kestrel_tokenize_with_options(model, text.data(), text.size(), &options, nullptr, 0, &required));
  if (!status) {
    ids->resize(required);
    status.reset(kestrel_tokenize_with_options(model, text.data(), text.size(), &options, ids->data(), ids->size(),
                                               &required));
  }
  if (status) {
    PrintStatusError(status.get());
    return false;
  }
  ids->resize(required);
  return true;
}

std::string TokenPiece(const kestrel_model_t* model, int32_t token, bool special) {
  size_t required = 0;
  StatusPtr status(kestrel_token_to_piece_special(model, token, special, nullptr, 0, &required));
  if (status) return "";
  std::string piece(required, '\0');
  status.reset(kestrel_token_to_piece_special(model, token, special, piece.data(), piece.size(), &required));
  return status ? "" : piece;
}

bool ApplyChatTemplate(const kestrel_model_t* model, const ChatMessages& messages, bool add_generation_prompt,
                       std::string* text) {
  std::vector<kestrel_chat_message_t> list;
  for (const auto& [role, content] : messages) {
    list.push_back({role.data(), role.size(), content.data(), content.size()});
  }
  kestrel_chat_template_options_t options;
  kestrel_chat_template_options_init(&options);
  options.add_generation_prompt = add_generation_prompt;
  size_t required = 0;
  StatusPtr status(
      kestrel_model_apply_chat_template(model, list.data(), list.size(), &options, nullptr, 0, &required));
  if (!status) {
    text->assign(required, '\0');
    status.reset(kestrel_model_apply_chat_template(model, list.data(), list.size(), &options, text->data(),
                                                   text->size(), &required));
  }
  if (status) {
    PrintStatusError(status.get());
    return false;
  }
  return true;
}

bool StartsWithBosText(const kestrel_model_t* model, const std::string& text) {
  kestrel_model_info_t info;
  if (!GetModelInfo(model, &info) || info.bos_id < 0) return false;
  const std::string bos = TokenPiece(model, info.bos_id, /*special=*/true);
  return !bos.empty() && text.compare(0, bos.size(), bos) == 0;
}

std::string DtypeMaskToString(uint64_t mask) {
  struct Named {
    uint64_t bit;
    const char* name;
  };
  static constexpr Named kNames[] = {
      {KESTREL_DTYPE_MASK_F32, "F32"},   {KESTREL_DTYPE_MASK_F16, "F16"},
      {KESTREL_DTYPE_MASK_BF16, "BF16"}, {KESTREL_DTYPE_MASK_I32, "I32"},
      {KESTREL_DTYPE_MASK_I8, "I8"},     {KESTREL_DTYPE_MASK_Q8_0, "Q8_0"},
      {KESTREL_DTYPE_MASK_Q4_0, "Q4_0"},
      {KESTREL_DTYPE_MASK_Q4_1, "Q4_1"}, {KESTREL_DTYPE_MASK_Q5_0, "Q5_0"},
      {KESTREL_DTYPE_MASK_Q5_1, "Q5_1"}, {KESTREL_DTYPE_MASK_Q2_K, "Q2_K"},
      {KESTREL_DTYPE_MASK_Q3_K, "Q3_K"}, {KESTREL_DTYPE_MASK_Q4_K, "Q4_K"},
      {KESTREL_DTYPE_MASK_Q5_K, "Q5_K"}, {KESTREL_DTYPE_MASK_Q6_K, "Q6_K"},
  };
  std::string out;
  uint64_t known = 0;
  for (const Named& n : kNames) {
    known |= n.bit;
    if (mask & n.bit) {
      if (!out.empty()) out.push_back(' ');
      out += n.name;
    }
  }
  for (int bit = 0; bit < 64; ++bit) {
    uint64_t b = UINT64_C(1) << bit;
    if ((mask & b) && !(known & b)) {
      if (!out.empty()) out.push_back(' ');
      out += "bit" + std::to_string(bit);
    }
  }
  return out.empty() ? "-" : out;
}

std::string DeviceKindName(int kind) {
  switch (kind) {
    case KESTREL_DEVICE_CPU:
      return "cpu";
    case KESTREL_DEVICE_GPU:
      return "gpu";
    case KESTREL_DEVICE_NPU:
      return "npu";
    case KESTREL_DEVICE_ACCELERATOR:
      return "accelerator";
    default:
      return "unknown(" + std::to_string(kind) + ")";
  }
}

std::string FormatBytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  size_t unit = 0;
  while (value >= 1024.0 && unit + 1 < sizeof(kUnits) / sizeof(kUnits[0])) {
    value /= 1024.0;
    ++unit;
  }
  char buf[32];
  if (unit == 0) {
    std::snprintf(buf, sizeof(buf), "%" PRIu64 " B", bytes);
  } else {
    std::snprintf(buf, sizeof(buf), "%.1f %s", value, kUnits[unit]);
  }
  return buf;
}

}  // namespace kestrel::cli
