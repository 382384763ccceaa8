#include "commands.h"

namespace kestrel::cli {

const char kServeHelp[] =
    "usage: kestrel serve -m MODEL [--host 127.0.0.1] [--port N] [--device NAME]\n"
    "                     [--max-concurrency N] [-t N] [--ctx N] [--kv-type T] [--no-mmap] [-v]\n"
    "\n"
    "Serves MODEL over an OpenAI-compatible HTTP API on one serving engine (continuous\n"
    "batching, prefix cache): POST /v1/completions and /v1/chat/completions (\"stream\": true\n"
    "sends server-sent events; logprobs, logit_bias, ignore_eos), POST /v1/embeddings (pooled\n"
    "final hidden state, one request at a time), GET /v1/models, /health and /metrics\n"
    "(Prometheus text). Prints\n"
    "\"kestrel serve: listening on http://HOST:PORT ...\" on stdout once it accepts requests;\n"
    "SIGINT or SIGTERM stops it. A streaming client that disconnects cancels its request.\n"
    "Chat messages are rendered with the model's chat template (tokenizer.chat_template); a\n"
    "model without one gets a plain fallback (User:/Assistant: turns, tools/serve/chat_prompt.h).\n"
    "\n"
    "options:\n"
    "  -m, --model PATH         GGUF model file (required); its file name without .gguf is the\n"
    "                           model id of /v1/models\n"
    "      --host HOST          address to listen on (default 127.0.0.1)\n"
    "      --port N             TCP port (default 8080; 0 = any free port, printed at start)\n"
    "      --device NAME        device to run on (default: library's choice)\n"
    "      --max-concurrency N  requests generating at once (default 16); more wait in the queue\n"
    "  -t, --threads N          worker threads for plugins that use them (0 = automatic)\n"
    "      --ctx N              context length per request (0 = the model's; default 0)\n"
    "      --kv-type T          KV cache element type: f32 (default) or f16\n"
    "      --no-mmap            read the model into memory instead of mapping it\n"
    "  -v, --verbose            log INFO lines to stderr (-vv: DEBUG)\n"
    "  -h, --help               this help\n";

}  // namespace kestrel::cli
