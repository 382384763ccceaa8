// Command-line parsing for the `kestrel` tool: the subcommand, its flags and strict number parsing.
// Pure C++ (no Kestrel API calls), so it is unit-tested without the library.
#ifndef KESTREL_TOOLS_CLI_ARGS_H_
#define KESTREL_TOOLS_CLI_ARGS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kestrel::cli {

enum class Command {
  kNone, kGenerate, kInfo, kDevices, kBench, kHelp, kVersion, kServe, kTokenize, kChat, kEmbed, kPlan,
  kPack
};

// "generate", "info", ...; "" for kNone.
const char* CommandName(Command command);

// `kestrel bench`: what to measure. -p and -n mean token counts here (prompt text and max new
// tokens for `generate`).
struct BenchOptions {
  uint32_t n_prompt = 128;  // -p: prompt tokens prefilled in one step
  uint32_t n_decode = 64;   // -n: tokens decoded one step at a time after the prefill
                            //     (--engine: new tokens per request, default 128)
  uint32_t reps = 5;        // --reps: measured repetitions (>= 1; --engine: default 3)
  uint32_t warmup = 1;      // --warmup: unmeasured repetitions run first
  bool membw = false;       // --membw: measure memory read bandwidth instead of a model
  uint32_t size_mb = 0;     // --size-mb: membw buffer in MiB (0: max(4 x LLC, 1024 MiB))
  bool engine = false;      // --engine: serving-engine throughput at several concurrencies
  std::vector<uint32_t> concurrency = {1, 8, 32};  // --concurrency 1,8,32: each in [1, 4096]
  // --prefix-tokens: shared-prefix length of the --engine prefix-cache workload. Unset: 512, or
  // the largest that fits the model's context; 0: skip that workload.
  std::optional<uint32_t> prefix_tokens;
  // --kv-block-size: tokens per KV block of every --engine engine (a power of two in [1, 4096]).
  // Unset: the library's default (kestrel_engine_options_init).
  std::optional<uint32_t> kv_block_size;
  // --soak: the engine under sustained load (soak_bench.h): --concurrency C requests in flight
  // (one value, default 64), --requests N in all (default 10000), each with up to -n new tokens
  // (default 32), random cancels and deadlines (--seed S reproduces), a watchdog (--watchdog-s,
  // default 60) and resident memory after warm-up that may grow at most --max-rss-growth
  // (default 0.01 = 1 %).
  bool soak = false;
  // --kv-swap: the engine resuming a preempted request of -p prompt tokens (default 2048, -n new
  // tokens, default 16) by KV swap against by recompute, alternated (kv_swap_bench.h); --reps
  // default 3.
  bool kv_swap = false;
  // --verify-cost N: one forward step over N tokens (N in [2, 4096]) against a one-token step
  // after a context of -p tokens, alternated (verify_cost_bench.h); 0: off.
  uint32_t verify_cost = 0;
  uint32_t soak_requests = 10000;
  uint32_t watchdog_s = 60;
  double max_rss_growth = 0.01;
};

// `kestrel serve`: where to listen and how many requests run at once.
struct ServeOptions {
  std::string host = "127.0.0.1";  // --host
  uint32_t port = 8080;            // --port (0: any free port, printed at start)
  uint32_t max_concurrency = 16;   // --max-concurrency: requests generating at once, in [1, 4096]
};

// Everything the command line can say. Optional sampler fields stay unset when the flag is absent,
// so the library's defaults (kestrel_sampler_options_init) apply.
struct Options {
  Command command = Command::kNone;
  bool help = false;       // -h/--help: print the command's usage and exit 0
  std::string help_topic;  // `kestrel help generate` -> "generate"
  int verbosity = 0;       // -v: INFO log lines, -vv: DEBUG

  std::string model_path;             // -m/--model
  std::optional<std::string> prompt;  // -p/--prompt (unset with -p - or -f)
  // -f/--file FILE: the prompt is the file's bytes; "-" (also `-p -`): standard input. Read by
  // ReadPrompt (prompt_input.h), not here.
  std::optional<std::string> prompt_file;
  uint32_t max_new_tokens = 128;      // -n (-n -1: 4294967295, until EOS or a full context)
  float temperature = 0.8f;           // --temp (0: greedy)
  std::optional<int32_t> top_k;
  std::optional<float> top_p;
  std::optional<float> min_p;
  std::optional<float> repeat_penalty;
  std::optional<int32_t> repeat_last_n;
  std::optional<uint64_t> seed;
  uint32_t context_length = 0;  // --ctx (0: the model's trained context)
  std::string device;           // --device ("" = the library's default)
  std::vector<std::string> stop_strings;  // --stop, repeatable
  uint32_t n_threads = 0;                 // -t/--threads (0: the plugin decides)
  uint32_t kv_type = 0;                   // --kv-type f32|f16 (KESTREL_KV_F32 / _F16)
  bool json = false;                      // --json
  bool use_mmap = true;                   // --no-mmap clears it
  bool echo_prompt = true;                // --no-echo clears it
  bool special = false;                   // --special: control-token texts in -p become tokens
  // Speculative decoding (generate, bench): --spec auto|off|draft|self|ngram|lookahead|medusa|
  // eagle ("" when not given), --draft-model PATH, --spec-max N, --heads PATH. With --spec, bench's
  // -p is the prompt TEXT (or --prompt-file F), not a token count. bench also takes a
  // comma-separated list (--spec auto,ngram): every method measured in the same run.
  std::string spec;
  std::string draft_model;
  std::optional<uint32_t> spec_max;
  std::string heads;
  std::string spec_prompt_file;           // bench --spec: --prompt-file F
  bool chat = false;                      // generate --chat: -p is a user message, templated
  std::optional<std::string> system_prompt;  // --system: a system message (chat, generate --chat)
  uint32_t n_probs = 0;                   // --n-probs N: top-N log-probabilities per token (JSON)
  std::vector<std::pair<int32_t, float>> logit_bias;  // --logit-bias ID(+|-)BIAS, repeatable
  bool ignore_eos = false;                // --ignore-eos: end-of-generation tokens are banned
  std::optional<std::string> grammar_file;      // --grammar FILE: GBNF constraint
  std::optional<std::string> json_schema_file;  // --json-schema FILE: JSON-schema constraint
  bool json_object = false;                     // --json-object: the output is one JSON object
  bool pooling_last = false;              // embed --pooling last (default mean)
  BenchOptions bench;                     // `bench` only
  // --mem DEVICE=SIZE, repeatable (generate, chat, bench, plan): memory budgets, passed to the
  // library as kestrel_model_options_t.memory_budget (joined by commas); checked there.
  std::vector<std::string> mem;
  std::string expert_policy = "lru";  // --expert-policy lru|lfu
  bool expert_prefetch = true;        // --no-expert-prefetch clears it
  ServeOptions serve;                     // `serve` only
  // `generate`: --save-state FILE writes the session state after generating; --load-state FILE
  // continues from one (then -p is optional: more prompt text appended to the restored context).
  std::string save_state;
  std::string load_state;
  // `info`: --verify checks every section checksum of a .kpkg package.
  bool verify = false;
  // `pack`: -o/--output, --draft, and --device (repeatable: prepared weights of each device).
  std::string output_path;
  std::string draft_path;
  std::vector<std::string> pack_devices;
};

struct ParseResult {
  bool ok = true;
  // Why parsing failed, one line without the "kestrel: " prefix, e.g.
  // "invalid value '1.5x' for -n: expected an integer in [0, 4294967295]".
  std::string error;
};

// Parses argv (argv[0] is the program name). The subcommand must come first (`kestrel generate
// ...`); `--version`, `-h/--help` and `help [COMMAND]` also work alone. Flags accept
// `--flag VALUE` and `--flag=VALUE`; short ones `-n VALUE`. A flag that the chosen subcommand does
// not use is an error. Missing required flags (-m, -p) are reported here too, unless help was asked.
// `tokenize` needs -m and -p; `chat` needs -m; --system needs `chat` or `generate --chat`.
// `--soak` excludes --engine, --membw, -p, --warmup, --reps and --prefix-tokens, and takes one
// --concurrency value; --requests, --watchdog-s, --max-rss-growth and `bench --seed` need --soak.
// `bench` needs -m unless --membw is given; with --membw the model flags (-m -p -n --device
// --no-mmap --warmup) are errors, and --size-mb needs --membw. --engine excludes --membw, -p and
// --warmup; --concurrency and --prefix-tokens need --engine.
ParseResult ParseArgs(int argc, const char* const* argv, Options* out);

// Strict number parsing: the whole text must be the number (no spaces, no sign on unsigned, no
// trailing characters, in range; floats finite). On failure *out is untouched.
bool ParseUint32(std::string_view text, uint32_t* out);
bool ParseInt32(std::string_view text, int32_t* out);
bool ParseUint64(std::string_view text, uint64_t* out);
bool ParseFloat(std::string_view text, float* out);
// --logit-bias's value: TOKEN_ID followed by +BIAS, -BIAS or =BIAS (llama.cpp's spelling,
// "15043+1", "2-inf"); BIAS is finite or "inf" after '-' (a ban).
bool ParseLogitBias(std::string_view text, std::pair<int32_t, float>* out);

// "1,8,32" -> {1, 8, 32}: one or more comma-separated integers, each strictly parsed and in
// [1, 4096]; no empty items, spaces or signs. On failure *out is untouched.
bool ParseConcurrencyList(std::string_view text, std::vector<uint32_t>* out);

}  // namespace kestrel::cli

#endif  // KESTREL_TOOLS_CLI_ARGS_H_
