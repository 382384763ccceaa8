// `kestrel`: the command-line front end of the Kestrel SDK, written against the public C API only.
//
//   kestrel generate -m MODEL -p PROMPT [options]   stream a completion (--chat: as a chat turn)
//   kestrel chat -m MODEL [options]                 interactive chat in one session
//   kestrel tokenize -m MODEL -p TEXT [--special] [--json]   token ids and pieces
//   kestrel info -m MODEL [--json]                  model metadata and tensor types
//   kestrel devices [--json]                        plugins and devices
//   kestrel bench -m MODEL [-p N] [-n N] [--json]   prefill/decode speed; --membw: memory bandwidth;
//                                                   --engine: serving-engine throughput
//   kestrel serve -m MODEL [--port N]               OpenAI-compatible HTTP server (runs the
//                                                   kestrel-serve executable next to this one)
//   kestrel pack -m MODEL.gguf [--device D] [--draft DRAFT.gguf] -o MODEL.kpkg   write a package
//   kestrel help [COMMAND] | --version
//
// Exit status: 0 success, 1 runtime error ("kestrel: error: <CODE_NAME>: <message>" on stderr),
// 2 bad usage (message and short usage on stderr), 130 interrupted by Ctrl-C.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "api_util.h"
#include "args.h"
#include "commands.h"
#include "kestrel/kestrel.h"

namespace kestrel::cli {
namespace {

constexpr char kShortUsage[] =
    "usage: kestrel generate -m MODEL (-p PROMPT | -f FILE) [--chat [--system TEXT]] [--special] [options]\n"
    "       kestrel chat -m MODEL [--system TEXT] [options]\n"
    "       kestrel tokenize -m MODEL -p TEXT [--special] [--json]\n"
    "       kestrel embed -m MODEL (-p TEXT | -f FILE) [--pooling mean|last] [--json]\n"
    "       kestrel info -m MODEL [--json]\n"
    "       kestrel devices [--json]\n"
    "       kestrel bench -m MODEL [-p N] [-n N] [-t N] [--reps R] [--json]\n"
    "       kestrel bench --membw [-t N] [--size-mb M] [--reps R] [--json]\n"
    "       kestrel bench -m MODEL --engine [--concurrency 1,8,32] [-n N] [-t N] [--reps R]\n"
    "                     [--prefix-tokens P] [--kv-block-size B] [--json]\n"
    "       kestrel serve -m MODEL [--host H] [--port N] [--device D] [--max-concurrency N]\n"
    "       kestrel pack -m MODEL.gguf [--device D]... [--draft DRAFT.gguf] -o MODEL.kpkg\n"
    "       kestrel plan -m MODEL [--device D] [--mem DEVICE=SIZE ...] [--ctx N] [--json]\n"
    "       kestrel bench -m MODEL --soak [--requests N] [--concurrency C] [-n N] [--seed S]\n"
    "                     [--watchdog-s W] [--max-rss-growth F] [--json]\n"
    "       kestrel help [COMMAND] | kestrel --version\n";

constexpr char kGenerateHelp[] =
    "usage: kestrel generate -m MODEL (-p PROMPT | -f FILE) [options]\n"
    "\n"
    "Streams a completion of PROMPT to stdout as it is generated. stdout receives the prompt\n"
    "itself first (like llama.cpp; --no-echo leaves it out; nothing if the run fails before\n"
    "generating), then the generated text, then a newline if the text did not end with one. Timings go to stderr, or with --json into one JSON\n"
    "object printed as the last line of stdout.\n"
    "\n"
    "options:\n"
    "  -m, --model PATH        GGUF or .kpkg model file (required)\n"
    "  -p, --prompt TEXT       prompt text (required unless -f or --load-state; - reads it from\n"
    "                          stdin)\n"
    "  -f, --file FILE         read the prompt from FILE (- = stdin); one trailing newline is\n"
    "                          dropped\n"
    "  -n, --n-predict N       maximum new tokens (default 128; -1 = until EOS or a full context)\n"
    "      --temp T            temperature (default 0.8; 0 = greedy)\n"
    "      --top-k K           top-k cutoff (0 = off; default: library's, 40)\n"
    "      --top-p P           nucleus cutoff in (0, 1] (1 = off; default 0.95)\n"
    "      --min-p P           min-p cutoff in [0, 1] (0 = off; default 0.05)\n"
    "      --repeat-penalty R  repetition penalty > 0 (1 = off; default 1)\n"
    "      --repeat-last-n N   tokens the penalty looks back on (0 = off; default 64)\n"
    "      --seed S            sampling seed (default: library's, 12648430)\n"
    "      --ctx N             context length in tokens (0 = the model's; default 0)\n"
    "      --device NAME       device to run on, see `kestrel devices` (default: library's choice)\n"
    "      --stop STR          stop when STR appears (not printed); repeatable\n"
    "  -t, --threads N         worker threads for plugins that use them (0 = automatic)\n"
    "      --kv-type T         KV cache element type: f32 (default) or f16 (half the memory)\n"
    "      --chat              PROMPT is a user message: render it with the model's chat template\n"
    "                          (tokenizer.chat_template) and parse special tokens in the result\n"
    "      --system TEXT       with --chat: a system message before the user message\n"
    "      --special           texts of control tokens in the prompt (<|im_start|>, ...) become\n"
    "                          those tokens\n"
    "      --n-probs N         with --json: log-probabilities of each generated token and of the\n"
    "                          N most likely ones (N <= 100) in the JSON field logprobs\n"
    "      --logit-bias ID+B   add B to token ID's logit (ID-B subtracts, ID-inf bans it);\n"
    "                          repeatable\n"
    "      --ignore-eos        never stop at an end-of-generation token (they are banned): run\n"
    "                          to -n, a stop string or a full context\n"
    "      --grammar FILE      constrained output: only text the GBNF grammar in FILE allows\n"
    "                          (llama.cpp's format, from its root rule; docs/CONSTRAINED_OUTPUT.md)\n"
    "      --json-schema FILE  constrained output: JSON that the schema in FILE describes (a\n"
    "                          subset of JSON Schema; unsupported keywords are refused)\n"
    "      --json-object       constrained output: one JSON object (OpenAI's json_object mode)\n"
    "      --spec METHOD       speculative decoding: auto, off, draft, self, ngram, lookahead,\n"
    "                          medusa, eagle (greedy output unchanged; only the speed changes)\n"
    "      --draft-model PATH  --spec draft (or auto): a draft model with the same vocab\n"
    "      --spec-max N        --spec: longest draft per step in [1, 64] (default 5)\n"
    "      --heads PATH        --spec medusa / eagle: heads GGUF (tools/train_medusa.py,\n"
    "                          tools/train_eagle.py)\n"
    "      --json              print a JSON summary as the last line of stdout\n"
    "      --no-mmap           read the model into memory instead of mapping it\n"
    "      --no-echo           do not print the prompt before the generated text\n"
    "  -v, --verbose           log INFO lines to stderr (-vv: DEBUG)\n"
    "      --save-state FILE   after generating, save the session state (model fingerprint,\n"
    "                          tokens, sampler and RNG state, KV cache) to FILE\n"
    "      --load-state FILE   continue the conversation saved in FILE (same model): -p, if\n"
    "                          given, is appended to it; -n new tokens follow. The sampler\n"
    "                          settings and seed come from the state; token_ids are the new\n"
    "                          tokens only\n"
    "  -h, --help              this help\n"
    "\n"
    "Ctrl-C stops the generation after the current step; the text so far and the statistics are\n"
    "printed and the exit status is 130. A second Ctrl-C terminates at once.\n"
    "\n"
    "JSON fields: model, model_name, device, prompt, prompt_token_ids (with BOS), token_ids, text,\n"
    "n_prompt, n_generated, prefill_ms, decode_ms, prefill_tokens_per_s, decode_tokens_per_s,\n"
    "stop_reason (eos, max_tokens, stop_string, callback, context_full, cancelled), seed,\n"
    "temperature, top_k, top_p, min_p, repeat_penalty, repeat_last_n, logprobs (with --n-probs:\n"
    "per generated token {token, piece, logprob, top_logprobs: [{token, piece, logprob}]}, the\n"
    "distribution before top-k/top-p/min-p and temperature; else []), n_probs, logit_bias\n"
    "([[id, bias]], a ban as null), ignore_eos, max_new_tokens, context_length; with --spec also\n"
    "speculative {method, draft_tokens, steps, plain_steps, drafted, accepted, mean_accepted,\n"
    "propose_ms, verify_ms, by_method}.\n";

constexpr char kChatHelp[] =
    "usage: kestrel chat -m MODEL [--system TEXT] [options]\n"
    "\n"
    "An interactive conversation: each line of stdin is a user message; the reply streams to\n"
    "stdout. The conversation is rendered with the model's chat template and kept in one session,\n"
    "so each turn computes only its new tokens. /reset clears the conversation, /exit or end of\n"
    "input quits; Ctrl-C stops the reply and ends the chat (exit status 130).\n"
    "\n"
    "options: --system TEXT (a system message first), and generate's -n (per reply), --temp,\n"
    "--top-k, --top-p, --min-p, --repeat-penalty, --repeat-last-n, --seed, --ctx, --device,\n"
    "--stop, -t, --kv-type, --logit-bias, --ignore-eos, --no-mmap, -v.\n";

constexpr char kTokenizeHelp[] =
    "usage: kestrel tokenize -m MODEL -p TEXT [--special] [--json] [--no-mmap] [-v]\n"
    "\n"
    "Prints the token ids of TEXT with the model's tokenizer (BOS/EOS added as the model asks),\n"
    "one line per token: ID -> 'PIECE'. Only the vocab is read, so any GGUF whose tokenizer this\n"
    "build knows works, whatever its architecture. --special: texts of control tokens in TEXT\n"
    "become those tokens. --json: one line {\"ids\": [...], \"pieces\": [...]} instead; pieces\n"
    "spell control tokens out, and a piece that is part of a UTF-8 sequence shows as U+FFFD.\n";

constexpr char kEmbedHelp[] =
    "usage: kestrel embed -m MODEL (-p TEXT | -f FILE) [--pooling mean|last] [--device NAME] [--ctx N]\n"
    "                     [-t N] [--no-mmap] [--json] [-v]\n"
    "\n"
    "Prints the embedding of TEXT (kestrel_session_embed): the model's final hidden state (after\n"
    "the output norm) of every token, averaged (--pooling mean, the default) or the last token's\n"
    "(--pooling last), L2-normalised: n_embd numbers on one line. -p - or -f - read stdin.\n"
    "\n"
    "options:\n"
    "  -m, --model PATH        GGUF model file (required)\n"
    "  -p, --prompt TEXT       the text (- reads stdin)\n"
    "  -f, --file FILE         read the text from FILE (- = stdin)\n"
    "      --pooling P         mean (default) or last\n"
    "      --device NAME       device to run on (default: library's choice)\n"
    "      --ctx N             context length: the longest text (0 = the model's; default 0)\n"
    "  -t, --threads N         worker threads for plugins that use them (0 = automatic)\n"
    "      --no-mmap           read the model into memory instead of mapping it\n"
    "      --json              one JSON object: model, device, n_tokens, n_embd, pooling, embedding\n"
    "  -v, --verbose           log INFO lines to stderr (-vv: DEBUG)\n"
    "  -h, --help              this help\n";

constexpr char kInfoHelp[] =
    "usage: kestrel info -m MODEL [--device NAME] [--no-mmap] [--verify] [--json] [-v]\n"
    "\n"
    "Loads MODEL (GGUF or .kpkg) and prints its metadata and a summary of its tensor types\n"
    "(count, elements, bytes per type). --json prints one JSON object instead. For a package it\n"
    "also prints the package description (JSON field `package`: format_version, producer,\n"
    "file_size, model and draft with role, architecture, fingerprint, source, data section and\n"
    "prepared-weight sets); --verify checks every section checksum first.\n";

constexpr char kPackHelp[] =
    "usage: kestrel pack -m MODEL.gguf [--device NAME]... [--draft DRAFT.gguf] -o MODEL.kpkg\n"
    "                    [--json] [-v]\n"
    "\n"
    "Writes a .kpkg package: the model's metadata, tokenizer and tensors (sections aligned to\n"
    "64 KiB, mapped and used in place), and for each --device the weights prepared in that\n"
    "device's plugin layout, so a load on a matching device skips repacking (another device or\n"
    "plugin version repacks as from the GGUF). --draft adds a speculative draft model. The\n"
    "package is written to MODEL.kpkg.tmp and renamed when complete. Prints the package\n"
    "description (with --json: {model, output, package}).\n";

constexpr char kDevicesHelp[] =
    "usage: kestrel devices [--json] [-v]\n"
    "\n"
    "Lists the plugins found on the plugin path (loaded, or skipped with the reason; path,\n"
    "version, plugin API version) and the devices they provide with their capabilities.\n"
    "The plugin path is KESTREL_PLUGIN_PATH if set, else the plugin folder next to the library.\n";

constexpr char kBenchHelp[] =
    "usage: kestrel bench -m MODEL [-p N] [-n N] [-t N] [--device NAME] [--reps R] [--warmup W]\n"
    "                     [--no-mmap] [--json] [-v]\n"
    "       kestrel bench --membw [-t N] [--size-mb M] [--reps R] [--json]\n"
    "       kestrel bench -m MODEL --engine [--concurrency LIST] [-n N] [-t N] [--device NAME]\n"
    "                     [--reps R] [--prefix-tokens P] [--kv-block-size B] [--no-mmap]\n"
    "                     [--json] [-v]\n"
    "       kestrel bench -m MODEL --soak [--requests N] [--concurrency C] [-n N] [--seed S]\n"
    "                     [--watchdog-s W] [--max-rss-growth F] [--kv-block-size B] [--json]\n"
    "       kestrel bench -m MODEL --spec METHOD [-p TEXT | --prompt-file F] [--special] [-n N]\n"
    "                     [--draft-model PATH] [--spec-max N] [--heads PATH] --json\n"
    "       kestrel bench -m MODEL --mem DEVICE=SIZE... [--expert-policy lru|lfu] [--json]\n"
    "       kestrel bench -m MODEL --kv-swap [-p N] [-n N] [--reps R] [--warmup W] [--mem ...]\n"
    "       kestrel bench -m MODEL --verify-cost N [-p N] [--reps R] [--warmup W]\n"
    "                     [--json]\n"
    "\n"
    "Model speed: loads MODEL once (load_ms), then per repetition empties the KV cache, prefills a\n"
    "synthetic prompt of N token ids in one step (BOS, then ids cycling over the vocab) and decodes\n"
    "N tokens one step at a time with greedy sampling. W warm-up repetitions run first and are not\n"
    "counted; the table gives the median, min and max tokens/s of the R counted ones.\n"
    "\n"
    "options:\n"
    "  -m, --model PATH     GGUF model file (required without --membw)\n"
    "  -p, --n-prompt N     prompt tokens prefilled in one step (default 128)\n"
    "  -n, --n-predict N    tokens decoded after the prefill (default 64)\n"
    "  -t, --threads N      worker threads for plugins that use them (0 = plugin default;\n"
    "                       with --membw: reader threads, 0 = all hardware threads)\n"
    "      --device NAME    device to run on (default: library's choice)\n"
    "      --kv-type T      KV cache element type of the session / every engine: f32 (default)\n"
    "                       or f16\n"
    "      --reps R         counted repetitions (default 5)\n"
    "      --warmup W       uncounted repetitions run first (default 1)\n"
    "      --no-mmap        read the model into memory instead of mapping it\n"
    "      --membw          measure memory read bandwidth instead: T threads each sum their slice\n"
    "                       of a buffer of max(4 x last-level cache, 1 GiB), with 8-byte scalar\n"
    "                       and 64-byte vector loads; median GB/s (1e9 bytes/s) over R passes\n"
    "      --size-mb M      --membw buffer size in MiB\n"
    "      --engine         serving-engine throughput instead: per concurrency C of LIST, one\n"
    "                       engine (-t as its n_threads), C requests of -n N new tokens (default\n"
    "                       128) submitted at once, tokens/s = generated tokens / wall time, median\n"
    "                       of R runs (default 3), vs a one-sequence session; KV utilisation; and\n"
    "                       32 requests sharing a P-token prefix with and without the prefix cache\n"
    "      --concurrency L  --engine: comma-separated concurrencies in [1, 4096] (default 1,8,32)\n"
    "      --prefix-tokens P  --engine: shared prefix length (default 512, or the largest that\n"
    "                       fits the model's context; 0 = skip the shared-prefix workload)\n"
    "      --kv-block-size B  --engine: tokens per KV cache block of every engine, a power of two\n"
    "                       in [1, 4096] (default: the library's, kestrel_engine_options_init)\n"
    "      --soak           the engine under sustained load instead: C requests in flight (one\n"
    "                       --concurrency value, default 64), N in all (--requests, default\n"
    "                       10000), each up to -n new tokens (default 32); 1 in 6 cancelled from\n"
    "                       another thread, 1 in 6 with a deadline; every request must end with a\n"
    "                       result or a status, no deadlock (watchdog: W s without a completion,\n"
    "                       default 60), RSS after warm-up growing at most F (default 0.01);\n"
    "                       exit 1 otherwise\n"
    "      --seed S         --soak: the seed of every random choice (default: drawn, printed)\n"
    "      --mem DEVICE=SIZE  decode under a memory budget (repeatable; see `kestrel help plan`),\n"
    "                       against the fully resident model and the disk read bandwidth measured\n"
    "                       in the same process; JSON adds decode_tokens_per_s,\n"
    "                       resident_decode_tokens_per_s, disk_read_bytes_per_s,\n"
    "                       missed_bytes_per_token, io_roofline_fraction, expert_hit_rate\n"
    "      --expert-policy P  --mem: lru (default) or lfu\n"
    "      --no-expert-prefetch  --mem: do not read the next layer's likely experts ahead\n"
    "      --kv-swap        engine preemption instead: a request of -p N prompt tokens (default\n"
    "                       2048) and -n new ones (default 16) is preempted by a higher-priority\n"
    "                       request and resumed, by KV swap to host memory and by recompute,\n"
    "                       alternated, median of R pairs (default 3); swap space: room for the\n"
    "                       request, or with --mem the plan's host_swap_bytes. JSON: resume_swap_ms,\n"
    "                       resume_recompute_ms, swap_speedup, kv_bytes_swapped, kv_swap_ms,\n"
    "                       swap_bytes_per_s, preempted, identical, ok\n"
    "      --verify-cost N  one step over N tokens (a verify or batched step, N in [2, 4096])\n"
    "                       against a one-token step, both after a context of -p tokens (default\n"
    "                       128), alternated, median of R pairs (default 20); JSON: plain_step_ms,\n"
    "                       verify_step_ms, verify_cost_ratio (+ _min, _max), verify_tokens\n"
    "      --spec METHOD    speculative decoding instead: the prompt -p TEXT (or --prompt-file F)\n"
    "                       decoded greedily by a plain and a speculative session, alternated,\n"
    "                       -n N new tokens (default 128), median of R pairs (default 3); JSON:\n"
    "                       spec_method, decode_tokens_per_s, plain_decode_tokens_per_s, speedup,\n"
    "                       mean_accepted, identical. A list (--spec auto,ngram) measures\n"
    "                       each method in the same alternation: the fields describe the first,\n"
    "                       \"methods\" has each, \"auto_over_ngram\" the first's speed over the\n"
    "                       other's (--engine: the first method only)\n"
    "      --json           print a JSON object as the last line of stdout\n"
    "  -v, --verbose        log INFO lines to stderr (-vv: DEBUG)\n"
    "\n"
    "JSON fields (model): model, model_name, device, threads, kv_type, n_prompt, n_decode, reps, warmup,\n"
    "load_ms, prefill_tokens_per_s (median) with _min, _max, _all, prefill_ms_all,\n"
    "decode_tokens_per_s (median) with _min, _max, _all, decode_ms_all, peak_rss_bytes, n_params,\n"
    "weight_bytes, n_layers, n_embd, vocab_size.\n"
    "JSON fields (--membw): read_gb_per_s (best kernel median), threads, buffer_bytes, llc_bytes,\n"
    "reps, vec64_isa, read_gb_per_s_{scalar,vec64} with _min, _max, _all, peak_rss_bytes.\n"
    "JSON fields (--engine): mode, model, model_name, device, threads, n, reps, context_length,\n"
    "kv_block_size, kv_type, session_baseline {tokens_per_s}, engine [{concurrency, tokens_per_s, generated_tokens,\n"
    "kv_blocks_used (peak), kv_blocks_total, kv_utilisation, kv_waste_fraction,\n"
    "speedup_vs_session, preemptions, ok}], shared_prefix {requests, prefix_tokens, new_tokens,\n"
    "context_length, prompt_tokens, prefill_tokens_computed, prefill_tokens_reused,\n"
    "prefill_tokens_without_cache, tokens_per_s, tokens_per_s_without_cache}, ok, peak_rss_bytes.\n"
    "JSON fields (--soak): mode, model, device, requests, concurrency, n, seed, finished,\n"
    "cancelled, deadline_cancelled, failed, rejected, unaccounted, generated_tokens, wall_s,\n"
    "requests_per_s, tokens_per_s, warm_up_requests, rss_warm_bytes, rss_end_bytes, rss_peak_bytes,\n"
    "rss_bytes_by_tenth, kv_blocks_total, kv_blocks_peak_used, rss_growth, max_rss_growth,\n"
    "watchdog_s, deadlock, ok.\n";

constexpr char kPlanHelp[] =
    "usage: kestrel plan -m MODEL [--device D] [--mem DEVICE=SIZE ...] [--ctx N] [--json]\n"
    "\n"
    "Prints the memory plan for MODEL under the budgets before any weight is loaded: the weights\n"
    "resident on the device, the expert stacks left in the file with the expert-cache slots, and\n"
    "the KV pool for --ctx tokens (default: the trained context). A budget that cannot work fails\n"
    "with the numbers (exit 1).\n"
    "  --mem DEVICE=SIZE   budget of DEVICE (the model's device, or 'host' for host RAM); SIZE is\n"
    "                      bytes with a K/M/G/T suffix or a percentage of the weight bytes (60%).\n"
    "                      Repeatable; also on generate, chat and bench\n"
    "  --expert-policy P   lru (default) or lfu: which cached expert a miss replaces\n"
    "  --json              one JSON object\n";

constexpr char kOverviewHelp[] =
    "kestrel: command-line front end of the Kestrel LLM inference SDK\n"
    "\n"
    "usage: kestrel COMMAND [options]\n"
    "\n"
    "commands:\n"
    "  generate   stream a completion of a prompt\n"
    "  chat       interactive chat with the model's chat template\n"
    "  tokenize   token ids and pieces of a text\n"
    "  embed      the embedding of a text (pooled final hidden state)\n"
    "  info       show a model's metadata and tensor types\n"
    "  devices    list plugins and devices\n"
    "  pack       write a .kpkg package (prepared weights, draft model) from a GGUF\n"
    "  plan       print the memory plan of a model under budgets (--mem) before loading it\n"
    "  bench      measure prefill/decode speed of a model, memory bandwidth (--membw),\n"
    "             serving-engine throughput (--engine) or a soak of the engine (--soak)\n"
    "  serve      serve a model over an OpenAI-compatible HTTP API\n"
    "  help       show help for a command (kestrel help generate)\n"
    "\n"
    "  --version  print the library version\n"
    "\n"
    "exit status: 0 success, 1 runtime error, 2 bad usage, 130 interrupted (Ctrl-C)\n";

void PrintHelp(const std::string& topic) {
  const char* text = kOverviewHelp;
  if (topic == "generate") text = kGenerateHelp;
  if (topic == "info") text = kInfoHelp;
  if (topic == "devices") text = kDevicesHelp;
  if (topic == "bench") text = kBenchHelp;
  if (topic == "serve") text = kServeHelp;
  if (topic == "pack") text = kPackHelp;
  if (topic == "chat") text = kChatHelp;
  if (topic == "tokenize") text = kTokenizeHelp;
  if (topic == "plan") text = kPlanHelp;
  if (topic == "embed") text = kEmbedHelp;
  std::fputs(text, stdout);
}

int PrintVersion() {
  const char* library = kestrel_version();
  std::printf("kestrel %s\n", library);
  if (kestrel_version_number() != KESTREL_VERSION_NUMBER) {
    std::printf("(built against headers %d.%d.%d)\n", KESTREL_VERSION_MAJOR,
                KESTREL_VERSION_MINOR, KESTREL_VERSION_PATCH);
  }
  return kExitOk;
}

// `kestrel serve ...` becomes `<dir of this executable>/kestrel-serve serve ...` (same arguments).
int ExecServe(char** argv) {
  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  std::string path = n > 0 ? std::string(self, static_cast<size_t>(n)) : std::string(argv[0]);
  path = path.substr(0, path.find_last_of('/') + 1) + "kestrel-serve";
  argv[0] = const_cast<char*>(path.c_str());
  execv(path.c_str(), argv);
  std::fprintf(stderr, "kestrel: error: cannot run %s: %s (kestrel serve needs the kestrel-serve "
               "executable beside kestrel; it is built when cpp-httplib is found)\n",
               path.c_str(), std::strerror(errno));
  return kExitError;
}

int Main(int argc, char** argv) {
  Options options;
  ParseResult parsed = ParseArgs(argc, argv, &options);
  if (!parsed.ok) {
    std::fprintf(stderr, "kestrel: %s\n%s", parsed.error.c_str(), kShortUsage);
    return kExitUsage;
  }
  if (options.help) {
    PrintHelp(CommandName(options.command));
    return kExitOk;
  }
  switch (options.command) {
    case Command::kGenerate:
      return RunGenerate(options);
    case Command::kInfo:
      return RunInfo(options);
    case Command::kDevices:
      return RunDevices(options);
    case Command::kBench:
      return RunBench(options);
    case Command::kPack:
      return RunPack(options);
    case Command::kTokenize:
      return RunTokenize(options);
    case Command::kChat:
      return RunChat(options);
    case Command::kPlan:
      return RunPlan(options);
    case Command::kEmbed:
      return RunEmbed(options);
    case Command::kHelp:
      PrintHelp(options.help_topic);
      return kExitOk;
    case Command::kVersion:
      return PrintVersion();
    case Command::kServe:
      return ExecServe(argv);
    case Command::kNone:
      break;
  }
  std::fputs(kShortUsage, stderr);
  return kExitUsage;
}

}  // namespace
}  // namespace kestrel::cli

int main(int argc, char** argv) { return kestrel::cli::Main(argc, argv); }
