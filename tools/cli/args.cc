#include "args.h"

#include <charconv>
#include <cmath>
#include <limits>
#include <system_error>

namespace kestrel::cli {
namespace {

// Which subcommands a flag belongs to.
constexpr unsigned kForGenerate = 1u << 0;
constexpr unsigned kForInfo = 1u << 1;
constexpr unsigned kForDevices = 1u << 2;
constexpr unsigned kForBench = 1u << 3;
constexpr unsigned kForServe = 1u << 4;
constexpr unsigned kForTokenize = 1u << 5;
constexpr unsigned kForChat = 1u << 6;
constexpr unsigned kForEmbed = 1u << 7;
constexpr unsigned kForPlan = 1u << 8;
constexpr unsigned kForPack = 1u << 9;
constexpr unsigned kForAll = kForGenerate | kForInfo | kForDevices | kForBench | kForServe |
                             kForTokenize | kForChat | kForEmbed | kForPlan | kForPack;
constexpr unsigned kForSampling = kForGenerate | kForChat;

constexpr uint32_t kMaxConcurrency = 4096;
constexpr uint32_t kMaxNProbs = 100;
constexpr uint32_t kMaxPrefixTokens = 1u << 20;

enum class FlagId {
  kModel,
  kPrompt,
  kMaxTokens,
  kTemp,
  kTopK,
  kTopP,
  kMinP,
  kRepeatPenalty,
  kRepeatLastN,
  kSeed,
  kCtx,
  kDevice,
  kStop,
  kThreads,
  kJson,
  kNoMmap,
  kNoEcho,
  kVerbose,
  kHelp,
  kReps,
  kWarmup,
  kMembw,
  kSizeMb,
  kEngine,
  kConcurrency,
  kPrefixTokens,
  kKvBlockSize,
  kKvType,
  kPromptFile,
  kHost,
  kPort,
  kMaxConcurrency,
  kSaveState,
  kLoadState,
  kVerify,
  kOutput,
  kDraft,
  kSoak,
  kKvSwap,
  kVerifyCost,
  kRequests,
  kWatchdogS,
  kMaxRssGrowth,
  kSpec,
  kDraftModel,
  kSpecMax,
  kHeads,
  kSpecPromptFile,
  kSpecial,
  kChat,
  kSystem,
  kMem,
  kExpertPolicy,
  kNoExpertPrefetch,
  kNProbs,
  kLogitBias,
  kIgnoreEos,
  kPooling,
  kGrammar,
  kJsonSchema,
  kJsonObject,
};

struct FlagSpec {
  FlagId id;
  const char* long_name;  // without "--"
  char short_name;        // 0: none
  bool takes_value;
  unsigned commands;
};

constexpr FlagSpec kFlags[] = {
    {FlagId::kModel, "model", 'm', true,
     kForGenerate | kForInfo | kForBench | kForServe | kForTokenize | kForChat | kForEmbed | kForPlan |
         kForPack},
    {FlagId::kPrompt, "prompt", 'p', true, kForGenerate | kForBench | kForTokenize | kForEmbed},
    {FlagId::kMaxTokens, "n-predict", 'n', true, kForSampling | kForBench},
    {FlagId::kTemp, "temp", 0, true, kForSampling},
    {FlagId::kTopK, "top-k", 0, true, kForSampling},
    {FlagId::kTopP, "top-p", 0, true, kForSampling},
    {FlagId::kMinP, "min-p", 0, true, kForSampling},
    {FlagId::kRepeatPenalty, "repeat-penalty", 0, true, kForSampling},
    {FlagId::kRepeatLastN, "repeat-last-n", 0, true, kForSampling},
    {FlagId::kSeed, "seed", 0, true, kForSampling | kForBench},
    {FlagId::kCtx, "ctx", 0, true, kForSampling | kForServe | kForEmbed | kForPlan},
    {FlagId::kDevice, "device", 0, true,
     kForSampling | kForInfo | kForBench | kForServe | kForEmbed | kForPlan | kForPack},
    {FlagId::kStop, "stop", 0, true, kForSampling},
    {FlagId::kThreads, "threads", 't', true, kForSampling | kForBench | kForServe | kForEmbed},
    {FlagId::kJson, "json", 0, false,
     kForGenerate | kForInfo | kForDevices | kForBench | kForTokenize | kForEmbed | kForPlan | kForPack},
    {FlagId::kNoMmap, "no-mmap", 0, false,
     kForSampling | kForInfo | kForBench | kForTokenize | kForServe | kForEmbed},
    {FlagId::kNoEcho, "no-echo", 0, false, kForGenerate},
    {FlagId::kVerbose, "verbose", 'v', false, kForAll},
    {FlagId::kHelp, "help", 'h', false, kForAll},
    {FlagId::kReps, "reps", 0, true, kForBench},
    {FlagId::kWarmup, "warmup", 0, true, kForBench},
    {FlagId::kMembw, "membw", 0, false, kForBench},
    {FlagId::kSizeMb, "size-mb", 0, true, kForBench},
    {FlagId::kPrompt, "n-prompt", 0, true, kForBench},  // bench's long name for -p
    {FlagId::kEngine, "engine", 0, false, kForBench},
    {FlagId::kConcurrency, "concurrency", 0, true, kForBench},
    {FlagId::kPrefixTokens, "prefix-tokens", 0, true, kForBench},
    {FlagId::kKvBlockSize, "kv-block-size", 0, true, kForBench},
    {FlagId::kSoak, "soak", 0, false, kForBench},
    {FlagId::kKvSwap, "kv-swap", 0, false, kForBench},
    {FlagId::kVerifyCost, "verify-cost", 0, true, kForBench},
    {FlagId::kRequests, "requests", 0, true, kForBench},
    {FlagId::kWatchdogS, "watchdog-s", 0, true, kForBench},
    {FlagId::kMaxRssGrowth, "max-rss-growth", 0, true, kForBench},
    {FlagId::kKvType, "kv-type", 0, true, kForSampling | kForBench | kForServe},
    {FlagId::kPromptFile, "file", 'f', true, kForGenerate | kForEmbed},
    {FlagId::kHost, "host", 0, true, kForServe},
    {FlagId::kPort, "port", 0, true, kForServe},
    {FlagId::kMaxConcurrency, "max-concurrency", 0, true, kForServe},
    {FlagId::kSpec, "spec", 0, true, kForGenerate | kForBench},
    {FlagId::kDraftModel, "draft-model", 0, true, kForGenerate | kForBench},
    {FlagId::kSpecMax, "spec-max", 0, true, kForGenerate | kForBench},
    {FlagId::kHeads, "heads", 0, true, kForGenerate | kForBench},
    {FlagId::kSpecPromptFile, "prompt-file", 0, true, kForBench},
    {FlagId::kSpecial, "special", 0, false, kForGenerate | kForTokenize | kForBench},
    {FlagId::kChat, "chat", 0, false, kForGenerate},
    {FlagId::kSystem, "system", 0, true, kForGenerate | kForChat},
    {FlagId::kMem, "mem", 0, true, kForSampling | kForBench | kForPlan},
    {FlagId::kExpertPolicy, "expert-policy", 0, true, kForSampling | kForBench | kForPlan},
    {FlagId::kNoExpertPrefetch, "no-expert-prefetch", 0, false, kForSampling | kForBench},
    {FlagId::kNProbs, "n-probs", 0, true, kForGenerate},
    {FlagId::kLogitBias, "logit-bias", 0, true, kForSampling},
    {FlagId::kIgnoreEos, "ignore-eos", 0, false, kForSampling},
    {FlagId::kPooling, "pooling", 0, true, kForEmbed},
    {FlagId::kGrammar, "grammar", 0, true, kForGenerate},
    {FlagId::kJsonSchema, "json-schema", 0, true, kForGenerate},
    {FlagId::kJsonObject, "json-object", 0, false, kForGenerate},
    {FlagId::kSaveState, "save-state", 0, true, kForGenerate},
    {FlagId::kLoadState, "load-state", 0, true, kForGenerate},
    {FlagId::kVerify, "verify", 0, false, kForInfo},
    {FlagId::kOutput, "output", 'o', true, kForPack},
    {FlagId::kDraft, "draft", 0, true, kForPack},
};

unsigned CommandBit(Command command) {
  switch (command) {
    case Command::kGenerate:
      return kForGenerate;
    case Command::kInfo:
      return kForInfo;
    case Command::kDevices:
      return kForDevices;
    case Command::kBench:
      return kForBench;
    case Command::kServe:
      return kForServe;
    case Command::kPack:
      return kForPack;
    case Command::kTokenize:
      return kForTokenize;
    case Command::kChat:
      return kForChat;
    case Command::kPlan:
      return kForPlan;
    case Command::kEmbed:
      return kForEmbed;
    default:
      return 0;
  }
}

std::optional<Command> CommandFromName(std::string_view name) {
  if (name == "generate") return Command::kGenerate;
  if (name == "info") return Command::kInfo;
  if (name == "devices") return Command::kDevices;
  if (name == "bench") return Command::kBench;
  if (name == "serve") return Command::kServe;
  if (name == "pack") return Command::kPack;
  if (name == "tokenize") return Command::kTokenize;
  if (name == "chat") return Command::kChat;
  if (name == "plan") return Command::kPlan;
  if (name == "embed") return Command::kEmbed;
  if (name == "help") return Command::kHelp;
  if (name == "version") return Command::kVersion;
  return std::nullopt;
}

const FlagSpec* FindLong(std::string_view name) {
  for (const FlagSpec& f : kFlags) {
    if (name == f.long_name) return &f;
  }
  return nullptr;
}

const FlagSpec* FindShort(char c) {
  for (const FlagSpec& f : kFlags) {
    if (f.short_name != 0 && f.short_name == c) return &f;
  }
  return nullptr;
}

ParseResult Fail(std::string message) {
  ParseResult r;
  r.ok = false;
  r.error = std::move(message);
  return r;
}

std::string BadValue(std::string_view flag, std::string_view value, std::string_view expected) {
  std::string m = "invalid value '";
  m.append(value);
  m += "' for ";
  m.append(flag);
  m += ": expected ";
  m.append(expected);
  return m;
}

// Applies one flag with its value (empty for boolean flags). `spelled` is the flag as the user
// wrote it ("-n", "--n-predict"), used in messages.
ParseResult Apply(const FlagSpec& spec, std::string_view spelled, std::string_view value,
                  Options* o) {
  switch (spec.id) {
    case FlagId::kModel:
      if (value.empty()) return Fail(BadValue(spelled, value, "a model file path"));
      o->model_path = std::string(value);
      break;
    case FlagId::kPrompt:
      if (o->command == Command::kBench && o->spec.empty()) {
        if (!ParseUint32(value, &o->bench.n_prompt) || o->bench.n_prompt == 0) {
          return Fail(BadValue(spelled, value, "a prompt length in tokens >= 1"));
        }
        break;
      }
      if (o->prompt || o->prompt_file) return Fail("give the prompt once: -p TEXT, -p - or -f FILE");
      if (value == "-") {
        o->prompt_file = "-";
      } else {
        o->prompt = std::string(value);
      }
      break;
    case FlagId::kPromptFile:
      if (value.empty()) return Fail(BadValue(spelled, value, "a file path, or - for stdin"));
      if (o->prompt || o->prompt_file) return Fail("give the prompt once: -p TEXT, -p - or -f FILE");
      o->prompt_file = std::string(value);
      break;
    case FlagId::kMaxTokens:
      if (o->command == Command::kBench) {
        if (!ParseUint32(value, &o->bench.n_decode) || o->bench.n_decode == 0) {
          return Fail(BadValue(spelled, value, "a number of decoded tokens >= 1"));
        }
        break;
      }
      if (value == "-1") {  // until EOS or a full context
        o->max_new_tokens = std::numeric_limits<uint32_t>::max();
      } else if (!ParseUint32(value, &o->max_new_tokens)) {
        return Fail(BadValue(spelled, value,
                             "an integer in [0, 4294967295], or -1 (until EOS or a full context)"));
      }
      break;
    case FlagId::kTemp: {
      float v;
      if (!ParseFloat(value, &v) || v < 0.0f) {
        return Fail(BadValue(spelled, value, "a number >= 0 (0 = greedy)"));
      }
      o->temperature = v;
      break;
    }
    case FlagId::kTopK: {
      int32_t v;
      if (!ParseInt32(value, &v) || v < 0) {
        return Fail(BadValue(spelled, value, "an integer >= 0 (0 = off)"));
      }
      o->top_k = v;
      break;
    }
    case FlagId::kTopP: {
      float v;
      if (!ParseFloat(value, &v) || !(v > 0.0f && v <= 1.0f)) {
        return Fail(BadValue(spelled, value, "a number in (0, 1] (1 = off)"));
      }
      o->top_p = v;
      break;
    }
    case FlagId::kMinP: {
      float v;
      if (!ParseFloat(value, &v) || !(v >= 0.0f && v <= 1.0f)) {
        return Fail(BadValue(spelled, value, "a number in [0, 1] (0 = off)"));
      }
      o->min_p = v;
      break;
    }
    case FlagId::kRepeatPenalty: {
      float v;
      if (!ParseFloat(value, &v) || !(v > 0.0f)) {
        return Fail(BadValue(spelled, value, "a number > 0 (1 = off)"));
      }
      o->repeat_penalty = v;
      break;
    }
    case FlagId::kRepeatLastN: {
      int32_t v;
      if (!ParseInt32(value, &v) || v < 0) {
        return Fail(BadValue(spelled, value, "an integer >= 0 (0 = off)"));
      }
      o->repeat_last_n = v;
      break;
    }
    case FlagId::kSeed: {
      uint64_t v;
      if (!ParseUint64(value, &v)) {
        return Fail(BadValue(spelled, value, "an integer in [0, 18446744073709551615]"));
      }
      o->seed = v;
      break;
    }
    case FlagId::kCtx:
      if (!ParseUint32(value, &o->context_length)) {
        return Fail(BadValue(spelled, value, "an integer in [0, 4294967295] (0 = the model's)"));
      }
      break;
    case FlagId::kDevice:
      if (value.empty()) return Fail(BadValue(spelled, value, "a device name (see `kestrel devices`)"));
      if (o->command == Command::kPack) {
        o->pack_devices.emplace_back(value);
      } else {
        o->device = std::string(value);
      }
      break;
    case FlagId::kStop:
      if (value.empty()) return Fail(BadValue(spelled, value, "a non-empty stop string"));
      o->stop_strings.emplace_back(value);
      break;
    case FlagId::kThreads:
      if (!ParseUint32(value, &o->n_threads)) {
        return Fail(BadValue(spelled, value, "an integer in [0, 4294967295] (0 = automatic)"));
      }
      break;
    case FlagId::kJson:
      o->json = true;
      break;
    case FlagId::kNoMmap:
      o->use_mmap = false;
      break;
    case FlagId::kNoEcho:
      o->echo_prompt = false;
      break;
    case FlagId::kNProbs:
      if (!ParseUint32(value, &o->n_probs) || o->n_probs > kMaxNProbs) {
        return Fail(BadValue(spelled, value, "a number of top tokens in [0, 100]"));
      }
      break;
    case FlagId::kLogitBias: {
      std::pair<int32_t, float> bias;
      if (!ParseLogitBias(value, &bias)) {
        return Fail(BadValue(spelled, value,
                             "TOKEN_ID+BIAS, TOKEN_ID-BIAS or TOKEN_ID=BIAS (e.g. 15043+1, 2-inf)"));
      }
      o->logit_bias.push_back(bias);
      break;
    }
    case FlagId::kIgnoreEos:
      o->ignore_eos = true;
      break;
    case FlagId::kGrammar:
      if (value.empty()) return Fail(BadValue(spelled, value, "a GBNF grammar file"));
      o->grammar_file = std::string(value);
      break;
    case FlagId::kJsonSchema:
      if (value.empty()) return Fail(BadValue(spelled, value, "a JSON schema file"));
      o->json_schema_file = std::string(value);
      break;
    case FlagId::kJsonObject:
      o->json_object = true;
      break;
    case FlagId::kPooling:
      if (value != "mean" && value != "last") return Fail(BadValue(spelled, value, "mean or last"));
      o->pooling_last = value == "last";
      break;
    case FlagId::kVerbose:
      ++o->verbosity;
      break;
    case FlagId::kHelp:
      o->help = true;
      break;
    case FlagId::kReps:
      if (!ParseUint32(value, &o->bench.reps) || o->bench.reps == 0) {
        return Fail(BadValue(spelled, value, "an integer >= 1"));
      }
      break;
    case FlagId::kWarmup:
      if (!ParseUint32(value, &o->bench.warmup)) {
        return Fail(BadValue(spelled, value, "an integer >= 0"));
      }
      break;
    case FlagId::kMembw:
      o->bench.membw = true;
      break;
    case FlagId::kSizeMb:
      if (!ParseUint32(value, &o->bench.size_mb) || o->bench.size_mb == 0 ||
          o->bench.size_mb > (1u << 20)) {
        return Fail(BadValue(spelled, value, "a buffer size in MiB in [1, 1048576]"));
      }
      break;
    case FlagId::kEngine:
      o->bench.engine = true;
      break;
    case FlagId::kSoak:
      o->bench.soak = true;
      break;
    case FlagId::kKvSwap:
      o->bench.kv_swap = true;
      break;
    case FlagId::kVerifyCost:
      if (!ParseUint32(value, &o->bench.verify_cost) || o->bench.verify_cost < 2 ||
          o->bench.verify_cost > 4096) {
        return Fail(BadValue(spelled, value, "a number of tokens in [2, 4096]"));
      }
      break;
    case FlagId::kRequests:
      if (!ParseUint32(value, &o->bench.soak_requests) || o->bench.soak_requests == 0) {
        return Fail(BadValue(spelled, value, "a number of requests >= 1"));
      }
      break;
    case FlagId::kWatchdogS:
      if (!ParseUint32(value, &o->bench.watchdog_s) || o->bench.watchdog_s == 0) {
        return Fail(BadValue(spelled, value, "a number of seconds >= 1"));
      }
      break;
    case FlagId::kMaxRssGrowth: {
      float v;
      if (!ParseFloat(value, &v) || !(v >= 0.0f)) {
        return Fail(BadValue(spelled, value, "a fraction >= 0 (0.01 = 1 %)"));
      }
      o->bench.max_rss_growth = v;
      break;
    }
    case FlagId::kConcurrency:
      if (!ParseConcurrencyList(value, &o->bench.concurrency)) {
        return Fail(BadValue(spelled, value,
                             "a comma-separated list of concurrencies in [1, 4096], e.g. 1,8,32"));
      }
      break;
    case FlagId::kPrefixTokens: {
      uint32_t v;
      if (!ParseUint32(value, &v) || v > kMaxPrefixTokens) {
        return Fail(BadValue(spelled, value, "a prefix length in tokens in [0, 1048576] (0 = skip)"));
      }
      o->bench.prefix_tokens = v;
      break;
    }
    case FlagId::kKvBlockSize: {
      uint32_t v;
      if (!ParseUint32(value, &v) || v == 0 || v > 4096 || (v & (v - 1)) != 0) {
        return Fail(BadValue(spelled, value, "a power of two in [1, 4096]"));
      }
      o->bench.kv_block_size = v;
      break;
    }
    case FlagId::kHost:
      if (value.empty()) return Fail(BadValue(spelled, value, "a host name or address"));
      o->serve.host = std::string(value);
      break;
    case FlagId::kPort:
      if (!ParseUint32(value, &o->serve.port) || o->serve.port > 65535) {
        return Fail(BadValue(spelled, value, "a TCP port in [0, 65535] (0 = any free port)"));
      }
      break;
    case FlagId::kMaxConcurrency:
      if (!ParseUint32(value, &o->serve.max_concurrency) || o->serve.max_concurrency == 0 ||
          o->serve.max_concurrency > kMaxConcurrency) {
        return Fail(BadValue(spelled, value, "an integer in [1, 4096]"));
      }
      break;
    case FlagId::kSaveState:
    case FlagId::kLoadState:
    case FlagId::kOutput:
    case FlagId::kDraft:
      if (value.empty()) return Fail(BadValue(spelled, value, "a file path"));
      (spec.id == FlagId::kSaveState  ? o->save_state
       : spec.id == FlagId::kLoadState ? o->load_state
       : spec.id == FlagId::kOutput    ? o->output_path
                                       : o->draft_path) = std::string(value);
      break;
    case FlagId::kVerify:
      o->verify = true;
      break;
    case FlagId::kSpec: {
      static constexpr const char* kMethods[] = {"auto", "off",       "draft",  "self",
                                                 "ngram", "lookahead", "medusa", "eagle"};
      // bench compares several methods in one run: a comma-separated list (auto,ngram).
      const bool list_ok = o->command == Command::kBench;
      std::vector<std::string_view> parts;
      for (size_t start = 0;;) {
        const size_t comma = value.find(',', start);
        parts.push_back(value.substr(start, comma == std::string_view::npos ? comma : comma - start));
        if (comma == std::string_view::npos) break;
        start = comma + 1;
      }
      bool known = list_ok || parts.size() == 1;
      for (std::string_view part : parts) {
        bool one = false;
        for (const char* m : kMethods) one |= part == m && (parts.size() == 1 || part != std::string_view("off"));
        known &= one;
      }
      if (!known) {
        return Fail(BadValue(spelled, value,
                             list_ok ? "auto, off, draft, self, ngram, lookahead, medusa or eagle, or a "
                                       "comma-separated list of them (not off)"
                                     : "auto, off, draft, self, ngram, lookahead, medusa or eagle"));
      }
      o->spec = std::string(value);
      break;
    }
    case FlagId::kDraftModel:
      if (value.empty()) return Fail(BadValue(spelled, value, "a draft model file path"));
      o->draft_model = std::string(value);
      break;
    case FlagId::kSpecMax: {
      uint32_t v = 0;
      if (!ParseUint32(value, &v) || v == 0 || v > 64) {
        return Fail(BadValue(spelled, value, "a number of draft tokens in [1, 64]"));
      }
      o->spec_max = v;
      break;
    }
    case FlagId::kHeads:
      if (value.empty()) return Fail(BadValue(spelled, value, "a heads file path"));
      o->heads = std::string(value);
      break;
    case FlagId::kSpecPromptFile:
      if (value.empty()) return Fail(BadValue(spelled, value, "a prompt file path"));
      o->spec_prompt_file = std::string(value);
      break;
    case FlagId::kKvType:
      if (value == "f32") {
        o->kv_type = 0;  // KESTREL_KV_F32
      } else if (value == "f16") {
        o->kv_type = 1;  // KESTREL_KV_F16
      } else {
        return Fail(BadValue(spelled, value, "f32 or f16"));
      }
      break;
    case FlagId::kSpecial:
      o->special = true;
      break;
    case FlagId::kChat:
      o->chat = true;
      break;
    case FlagId::kSystem:
      o->system_prompt = std::string(value);
      break;
    case FlagId::kMem:
      if (value.find('=') == std::string_view::npos) {
        return Fail(BadValue(spelled, value, "DEVICE=SIZE, e.g. cpu=512M or host=60%"));
      }
      o->mem.emplace_back(value);
      break;
    case FlagId::kExpertPolicy:
      if (value != "lru" && value != "lfu") return Fail(BadValue(spelled, value, "lru or lfu"));
      o->expert_policy = std::string(value);
      break;
    case FlagId::kNoExpertPrefetch:
      o->expert_prefetch = false;
      break;
  }
  return ParseResult{};
}

}  // namespace

const char* CommandName(Command command) {
  switch (command) {
    case Command::kGenerate:
      return "generate";
    case Command::kInfo:
      return "info";
    case Command::kDevices:
      return "devices";
    case Command::kBench:
      return "bench";
    case Command::kPack:
      return "pack";
    case Command::kTokenize:
      return "tokenize";
    case Command::kChat:
      return "chat";
    case Command::kPlan:
      return "plan";
    case Command::kEmbed:
      return "embed";
    case Command::kHelp:
      return "help";
    case Command::kVersion:
      return "version";
    case Command::kServe:
      return "serve";
    case Command::kNone:
      break;
  }
  return "";
}

bool ParseUint32(std::string_view text, uint32_t* out) {
  uint64_t v;
  if (!ParseUint64(text, &v) || v > std::numeric_limits<uint32_t>::max()) return false;
  *out = static_cast<uint32_t>(v);
  return true;
}

bool ParseInt32(std::string_view text, int32_t* out) {
  int32_t v = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc() || ptr != end) return false;
  *out = v;
  return true;
}

bool ParseUint64(std::string_view text, uint64_t* out) {
  // from_chars for an unsigned type rejects '-', '+' and leading whitespace.
  uint64_t v = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc() || ptr != end) return false;
  *out = v;
  return true;
}

bool ParseLogitBias(std::string_view text, std::pair<int32_t, float>* out) {
  const size_t sign = text.find_first_of("+-=", 1);  // not a leading '-' of the id
  if (sign == std::string_view::npos) return false;
  int32_t token;
  if (!ParseInt32(text.substr(0, sign), &token) || token < 0) return false;
  const std::string_view magnitude = text.substr(sign + 1);
  const char op = text[sign];
  if (op == '-' && magnitude == "inf") {
    *out = {token, -std::numeric_limits<float>::infinity()};
    return true;
  }
  if (magnitude.empty() || magnitude[0] == '+' || (op != '=' && magnitude[0] == '-')) return false;
  float v;
  if (!ParseFloat(magnitude, &v)) return false;
  *out = {token, op == '-' ? -v : v};
  return true;
}

bool ParseConcurrencyList(std::string_view text, std::vector<uint32_t>* out) {
  std::vector<uint32_t> values;
  while (true) {
    const size_t comma = text.find(',');
    uint32_t v;
    if (!ParseUint32(text.substr(0, comma), &v) || v == 0 || v > kMaxConcurrency) return false;
    values.push_back(v);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  *out = std::move(values);
  return true;
}

bool ParseFloat(std::string_view text, float* out) {
  float v = 0.0f;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, v, std::chars_format::general);
  if (text.empty() || ec != std::errc() || ptr != end || !std::isfinite(v)) return false;
  *out = v;
  return true;
}

ParseResult ParseArgs(int argc, const char* const* argv, Options* out) {
  Options o;
  int i = 1;
  if (argc < 2) return Fail("no command given");

  std::string_view first = argv[1];
  if (first == "--version" || first == "-V") {
    o.command = Command::kVersion;
    ++i;
  } else if (first == "-h" || first == "--help") {
    o.command = Command::kHelp;
    ++i;
  } else if (!first.empty() && first[0] == '-') {
    return Fail("expected a command before '" + std::string(first) +
                "' (generate, chat, embed, tokenize, info, devices, bench, plan, pack, serve, help)");
  } else if (auto c = CommandFromName(first)) {
    o.command = *c;
    ++i;
  } else {
    return Fail("unknown command '" + std::string(first) + "'");
  }

  if (o.command == Command::kHelp || o.command == Command::kVersion) {
    if (o.command == Command::kHelp && i < argc) {
      std::string_view topic = argv[i++];
      auto c = CommandFromName(topic);
      if (!c) return Fail("unknown help topic '" + std::string(topic) + "'");
      o.help_topic = std::string(topic);
    }
    if (i < argc) return Fail("unexpected argument '" + std::string(argv[i]) + "'");
    *out = std::move(o);
    return ParseResult{};
  }

  const unsigned command_bit = CommandBit(o.command);
  // bench --spec takes -p as prompt text: know it before -p is read.
  for (int j = i; j < argc; ++j) {
    std::string_view a = argv[j];
    if (a == "--spec" && j + 1 < argc) {
      o.spec = argv[j + 1];
    } else if (a.substr(0, 7) == "--spec=") {
      o.spec = std::string(a.substr(7));
    }
  }
  std::vector<std::string> model_flags_seen;  // bench: flags that make no sense with --membw
  std::string size_mb_spelled;
  std::string not_engine_spelled;  // bench: -p or --warmup, which --engine does not use
  std::string engine_only_spelled;  // bench: --concurrency, --prefix-tokens or --kv-block-size
  std::string not_soak_spelled;     // bench: -p, --warmup, --reps, --prefix-tokens
  std::string soak_only_spelled;    // bench: --requests, --watchdog-s, --max-rss-growth, --seed
  std::string spec_only_spelled;    // --draft-model, --spec-max, --heads, --prompt-file
  bool n_decode_given = false, reps_given = false, concurrency_given = false;
  bool n_prompt_given = false;
  for (; i < argc; ++i) {
    std::string_view arg = argv[i];
    const FlagSpec* spec = nullptr;
    std::string_view spelled = arg;
    std::optional<std::string_view> inline_value;
    if (arg.size() > 2 && arg.substr(0, 2) == "--") {
      std::string_view name = arg.substr(2);
      size_t eq = name.find('=');
      if (eq != std::string_view::npos) {
        inline_value = name.substr(eq + 1);
        name = name.substr(0, eq);
        spelled = arg.substr(0, 2 + eq);
      }
      spec = FindLong(name);
    } else if (arg.size() >= 2 && arg[0] == '-' && arg != "--") {
      // -v, -vv, -vvv: repeated verbosity.
      if (arg.find_first_not_of('v', 1) == std::string_view::npos) {
        o.verbosity += static_cast<int>(arg.size() - 1);
        continue;
      }
      if (arg.size() == 2) spec = FindShort(arg[1]);
    } else {
      return Fail("unexpected argument '" + std::string(arg) + "' for '" +
                  CommandName(o.command) + "'");
    }
    if (spec == nullptr) return Fail("unknown option '" + std::string(spelled) + "'");
    if ((spec->commands & command_bit) == 0) {
      return Fail("option '" + std::string(spelled) + "' does not apply to '" +
                  CommandName(o.command) + "'");
    }
    std::string_view value;
    if (spec->takes_value) {
      if (inline_value) {
        value = *inline_value;
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        return Fail("option '" + std::string(spelled) + "' needs a value");
      }
    } else if (inline_value) {
      return Fail("option '" + std::string(spelled) + "' takes no value");
    }
    ParseResult r = Apply(*spec, spelled, value, &o);
    if (!r.ok) return r;
    switch (spec->id) {
      case FlagId::kModel:
      case FlagId::kPrompt:
      case FlagId::kMaxTokens:
      case FlagId::kDevice:
      case FlagId::kNoMmap:
      case FlagId::kWarmup:
        model_flags_seen.emplace_back(spelled);
        break;
      case FlagId::kSizeMb:
        size_mb_spelled = std::string(spelled);
        break;
      default:
        break;
    }
    if (spec->id == FlagId::kPrompt || spec->id == FlagId::kWarmup) {
      not_engine_spelled = std::string(spelled);
    }
    if (spec->id == FlagId::kConcurrency || spec->id == FlagId::kPrefixTokens ||
        spec->id == FlagId::kKvBlockSize) {
      engine_only_spelled = std::string(spelled);
    }
    if (spec->id == FlagId::kPrompt || spec->id == FlagId::kWarmup ||
        spec->id == FlagId::kReps || spec->id == FlagId::kPrefixTokens) {
      not_soak_spelled = std::string(spelled);
    }
    if (spec->id == FlagId::kRequests || spec->id == FlagId::kWatchdogS ||
        spec->id == FlagId::kMaxRssGrowth || spec->id == FlagId::kSeed) {
      soak_only_spelled = std::string(spelled);
    }
    if (spec->id == FlagId::kDraftModel || spec->id == FlagId::kSpecMax ||
        spec->id == FlagId::kHeads || spec->id == FlagId::kSpecPromptFile) {
      spec_only_spelled = std::string(spelled);
    }
    if (spec->id == FlagId::kMaxTokens) n_decode_given = true;
    if (spec->id == FlagId::kPrompt) n_prompt_given = true;
    if (spec->id == FlagId::kReps) reps_given = true;
    if (spec->id == FlagId::kConcurrency) concurrency_given = true;
  }

  if (!o.help) {
    if ((o.command == Command::kGenerate || o.command == Command::kInfo || o.command == Command::kTokenize ||
         o.command == Command::kChat || o.command == Command::kServe || o.command == Command::kEmbed ||
         o.command == Command::kPlan || o.command == Command::kPack) &&
        o.model_path.empty()) {
      return Fail(std::string("'") + CommandName(o.command) + "' needs -m/--model MODEL");
    }
    if (o.command == Command::kGenerate && !o.prompt && !o.prompt_file && o.load_state.empty()) {
      return Fail("'generate' needs -p/--prompt PROMPT (or -p - / -f FILE, or --load-state FILE)");
    }
    if (o.command == Command::kEmbed && !o.prompt && !o.prompt_file) {
      return Fail("'embed' needs -p/--prompt PROMPT (or -p - / -f FILE)");
    }
    if (o.command == Command::kTokenize && !o.prompt) {
      return Fail("'tokenize' needs -p/--prompt PROMPT");
    }
    if (o.command == Command::kGenerate && o.n_probs > 0 && !o.json) {
      return Fail("option '--n-probs' needs --json (the log-probabilities are in the JSON line)");
    }
    if (int(o.grammar_file.has_value()) + int(o.json_schema_file.has_value()) + int(o.json_object) > 1) {
      return Fail("options '--grammar', '--json-schema' and '--json-object' exclude each other (give one)");
    }
    if (o.command == Command::kGenerate && o.system_prompt && !o.chat) {
      return Fail("option '--system' needs --chat");
    }
    if (o.command == Command::kPack && o.output_path.empty()) {
      return Fail("'pack' needs -o/--output PACKAGE");
    }
    if (o.spec.empty() && !spec_only_spelled.empty()) {
      return Fail("option '" + spec_only_spelled + "' needs --spec");
    }
    if (o.command == Command::kBench && !o.spec.empty()) {
      if (o.bench.membw) return Fail("--spec excludes --membw");
      if (o.prompt && !o.spec_prompt_file.empty()) return Fail("-p and --prompt-file exclude each other");
      if (!o.prompt && o.spec_prompt_file.empty()) {
        return Fail("'bench --spec' needs -p/--prompt TEXT or --prompt-file F");
      }
      if (!n_decode_given) o.bench.n_decode = 128;
      if (!reps_given) o.bench.reps = 3;
    } else if (o.command == Command::kBench && (o.special || !o.spec_prompt_file.empty())) {
      return Fail(std::string("option '") + (o.special ? "--special" : "--prompt-file") +
                  "' needs --spec");
    }
    if (o.command == Command::kBench && o.bench.verify_cost != 0) {
      if (!o.spec.empty() || o.bench.engine || o.bench.membw || o.bench.soak || o.bench.kv_swap ||
          !o.mem.empty()) {
        return Fail("--verify-cost excludes --spec, --engine, --membw, --soak, --kv-swap and --mem");
      }
      if (!engine_only_spelled.empty()) {
        return Fail("option '" + engine_only_spelled + "' needs --engine");
      }
      if (!soak_only_spelled.empty()) return Fail("option '" + soak_only_spelled + "' needs --soak");
      if (n_decode_given) return Fail("option '-n' does not apply to 'bench --verify-cost'");
      if (o.model_path.empty()) return Fail("'bench --verify-cost' needs -m/--model MODEL");
      if (!reps_given) o.bench.reps = 20;
    } else if (o.command == Command::kBench && o.bench.kv_swap) {
      if (!o.spec.empty() || o.bench.engine || o.bench.membw || o.bench.soak) {
        return Fail("--kv-swap excludes --spec, --engine, --membw and --soak");
      }
      if (!engine_only_spelled.empty()) {
        return Fail("option '" + engine_only_spelled + "' needs --engine");
      }
      if (!soak_only_spelled.empty()) return Fail("option '" + soak_only_spelled + "' needs --soak");
      if (o.model_path.empty()) return Fail("'bench --kv-swap' needs -m/--model MODEL");
      if (!n_prompt_given) o.bench.n_prompt = 2048;
      if (!n_decode_given) o.bench.n_decode = 16;
      if (!reps_given) o.bench.reps = 3;
    } else if (o.command == Command::kBench && o.bench.soak) {
      if (!o.spec.empty()) return Fail("--soak and --spec exclude each other");
      if (o.bench.engine) return Fail("--soak and --engine exclude each other");
      if (o.bench.membw) return Fail("--soak and --membw exclude each other");
      if (!not_soak_spelled.empty()) {
        return Fail("option '" + not_soak_spelled + "' does not apply to 'bench --soak'");
      }
      if (!concurrency_given) o.bench.concurrency = {64};
      if (o.bench.concurrency.size() != 1) {
        return Fail("--soak takes one --concurrency value (requests in flight), not a list");
      }
      if (!n_decode_given) o.bench.n_decode = 32;
      if (o.model_path.empty()) return Fail("'bench --soak' needs -m/--model MODEL");
    } else if (o.command == Command::kBench) {
      if (!soak_only_spelled.empty()) {
        return Fail("option '" + soak_only_spelled + "' needs --soak");
      }
      if (o.bench.engine && o.bench.membw) return Fail("--engine and --membw exclude each other");
      if (o.bench.engine && !not_engine_spelled.empty() && o.spec.empty()) {
        return Fail("option '" + not_engine_spelled + "' does not apply to 'bench --engine'");
      }
      if (!o.bench.engine && !engine_only_spelled.empty()) {
        return Fail("option '" + engine_only_spelled + "' needs --engine");
      }
      if (o.bench.engine) {  // the engine bench's own defaults
        if (!n_decode_given) o.bench.n_decode = 128;
        if (!reps_given) o.bench.reps = 3;
      }
      if (o.bench.membw && !model_flags_seen.empty()) {
        return Fail("option '" + model_flags_seen.front() +
                    "' does not apply to 'bench --membw' (it measures memory, not a model)");
      }
      if (!o.bench.membw && !size_mb_spelled.empty()) {
        return Fail("option '" + size_mb_spelled + "' needs --membw");
      }
      if (!o.bench.membw && o.model_path.empty()) {
        return Fail("'bench' needs -m/--model MODEL (or --membw)");
      }
      if (!o.bench.membw &&
          uint64_t{o.bench.n_prompt} + o.bench.n_decode > std::numeric_limits<uint32_t>::max()) {
        return Fail("-p plus -n exceeds 4294967295 tokens");
      }
    }
  }
  *out = std::move(o);
  return ParseResult{};
}

}  // namespace kestrel::cli
