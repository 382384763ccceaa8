// kestrel_chat: a line-based chat REPL on the C++ wrapper (kestrel/kestrel.hpp).
//
//   kestrel_chat -m MODEL [-n N] [--temp T] [--device D] [--ctx N]
//
// Reads one message per line from stdin and streams the model's reply to stdout. The whole
// conversation stays in the session's KV cache (generate with keep_context), so each turn only
// prefills the new line. When the context is full the user is told and the conversation starts
// over. Commands: /reset (forget the conversation), /quit (or end of input) to leave.
// Exit status: 0 success, 1 runtime error, 2 bad usage.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "kestrel/kestrel.hpp"

namespace {

struct Flags {
  std::string model;
  uint32_t max_new_tokens = 64;
  float temperature = 0.8f;
  std::string device;
  uint32_t context_length = 0;  // 0: the model's trained context
};

void PrintUsage(std::FILE* to) {
  std::fprintf(to,
               "usage: kestrel_chat -m MODEL [-n N] [--temp T] [--device D] [--ctx N]\n"
               "  -m, --model MODEL   GGUF model file\n"
               "  -n N                tokens per reply (default 64)\n"
               "  --temp T            sampling temperature, 0 = greedy (default 0.8)\n"
               "  --device D          device name as listed by `kestrel devices`\n"
               "  --ctx N             context length in tokens (default: the model's)\n"
               "Type a message and press enter. Commands: /reset, /quit.\n");
}

bool ParseUnsigned(const char* s, uint32_t* out) {
  char* end = nullptr;
  errno = 0;
  unsigned long v = std::strtoul(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v > 0xFFFFFFFFul) return false;
  *out = static_cast<uint32_t>(v);
  return true;
}

// Returns the flags, or nullopt after printing why (exit status 2).
std::optional<Flags> ParseFlags(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      PrintUsage(stdout);
      std::exit(0);
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "kestrel_chat: %s needs a value\n", arg.c_str());
      return std::nullopt;
    }
    const char* value = argv[++i];
    if (arg == "-m" || arg == "--model") {
      f.model = value;
    } else if (arg == "-n") {
      if (!ParseUnsigned(value, &f.max_new_tokens) || f.max_new_tokens == 0) {
        std::fprintf(stderr, "kestrel_chat: -n wants a positive integer, got '%s'\n", value);
        return std::nullopt;
      }
    } else if (arg == "--temp") {
      char* end = nullptr;
      f.temperature = std::strtof(value, &end);
      if (end == value || *end != '\0' || !(f.temperature >= 0.0f)) {
        std::fprintf(stderr, "kestrel_chat: --temp wants a number >= 0, got '%s'\n", value);
        return std::nullopt;
      }
    } else if (arg == "--device") {
      f.device = value;
    } else if (arg == "--ctx") {
      if (!ParseUnsigned(value, &f.context_length)) {
        std::fprintf(stderr, "kestrel_chat: --ctx wants an integer, got '%s'\n", value);
        return std::nullopt;
      }
    } else {
      std::fprintf(stderr, "kestrel_chat: unknown flag '%s'\n", arg.c_str());
      return std::nullopt;
    }
  }
  if (f.model.empty()) {
    std::fprintf(stderr, "kestrel_chat: -m MODEL is required\n");
    return std::nullopt;
  }
  return f;
}

// The conversation: the session's KV cache holds every turn so far, except the last token of the
// last reply, which generate samples but does not decode; it leads the next turn's prompt.
class Chat {
 public:
  Chat(const kestrel::Model& model, const kestrel::SessionOptions& options, uint32_t max_new_tokens)
      : session_(model, options),
        context_length_(options.context_length != 0 ? options.context_length
                                                    : model.Info().context_length) {
    options_.max_new_tokens = max_new_tokens;
    options_.keep_context = true;
  }

  void Reset() {
    session_.Truncate(0);
    pending_.reset();
  }

  // Streams the reply to `line` to stdout.
  void Turn(const std::string& line) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      const bool fresh = session_.TokenCount() == 0 && !pending_;
      std::vector<int32_t> prompt;
      if (pending_) prompt.push_back(*pending_);
      // Later turns start on a new line, so the model sees a conversation, not one run-on text.
      const std::string text = fresh ? line : "\n" + line;
      const std::vector<int32_t> ids = session_.model().Tokenize(text, /*add_bos=*/fresh);
      prompt.insert(prompt.end(), ids.begin(), ids.end());
      if (session_.TokenCount() + prompt.size() + 1 > context_length_) {
        if (fresh) {
          std::cout << "[this message is longer than the context (" << context_length_
                    << " tokens); try a shorter one]" << std::endl;
          return;
        }
        std::cout << "[context full: starting a new conversation]" << std::endl;
        Reset();
        continue;
      }
      std::optional<int32_t> last;
      kestrel::GenerateStats stats =
          session_.GenerateTokens(prompt, options_, [&last](int32_t token, std::string_view t) {
            if (token != kestrel::kTokenNone) last = token;
            std::cout.write(t.data(), static_cast<std::streamsize>(t.size()));
            std::cout.flush();
          });
      std::cout << std::endl;
      // EOS is neither reported nor decoded: nothing is pending after it.
      pending_ = stats.stop_reason == kestrel::StopReason::kEos ? std::nullopt : last;
      if (stats.stop_reason == kestrel::StopReason::kContextFull) {
        std::cout << "[context full: starting a new conversation]" << std::endl;
        Reset();
      }
      return;
    }
  }

 private:
  kestrel::Session session_;
  kestrel::GenerateOptions options_;
  std::optional<int32_t> pending_;
  size_t context_length_;  // tokens the session holds at most
};

}  // namespace

int main(int argc, char** argv) {
  std::optional<Flags> flags = ParseFlags(argc, argv);
  if (!flags) {
    PrintUsage(stderr);
    return 2;
  }
  const bool interactive = isatty(STDIN_FILENO) != 0;
  try {
    kestrel::RuntimeOptions ro;
    ro.log = [](kestrel::LogLevel, std::string_view message) {
      std::cerr << "kestrel_chat: " << message << std::endl;
    };
    kestrel::Runtime runtime(ro);
    kestrel::ModelOptions mo;
    mo.device = flags->device;
    kestrel::Model model = runtime.LoadModel(flags->model, mo);

    kestrel::SessionOptions so;
    so.context_length = flags->context_length;
    so.sampler.temperature = flags->temperature;
    Chat chat(model, so, flags->max_new_tokens);
    if (interactive) {
      std::cout << "kestrel_chat: " << model.Info().name << " on " << model.Info().device
                << ". /reset starts over, /quit leaves." << std::endl;
    }

    std::string line;
    while (true) {
      if (interactive) std::cout << "> " << std::flush;
      if (!std::getline(std::cin, line)) break;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line == "/quit" || line == "/exit") break;
      if (line == "/reset") {
        chat.Reset();
        std::cout << "[conversation reset]" << std::endl;
        continue;
      }
      if (line.empty()) continue;
      if (line[0] == '/') {
        std::cout << "[unknown command " << line << "; /reset and /quit are known]" << std::endl;
        continue;
      }
      chat.Turn(line);
    }
  } catch (const kestrel::Error& e) {
    std::cerr << "kestrel_chat: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
