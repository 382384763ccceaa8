// kestrel-synth: writes a llama GGUF v3 with seeded random weights for benchmark shapes.
//
//   kestrel-synth --shape tinyllama-1.1b --type Q4_0 --seed 1 -o /tmp/tinyllama-q4_0.gguf
//
// Exit status: 0 success, 1 error (the status on stderr), 2 bad usage.
#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "absl/strings/str_format.h"
#include "tools/synth/synth_args.h"
#include "tools/synth/synth_writer.h"

namespace kestrel::synth {
namespace {

int Main(int argc, char** argv) {
  SynthArgs args;
  SynthParseResult parsed = ParseSynthArgs(argc, argv, &args);
  if (!parsed.ok) {
    std::fprintf(stderr, "kestrel-synth: %s\n%s", parsed.error.c_str(), kSynthUsage);
    return 2;
  }
  if (args.help) {
    std::fputs(kSynthUsage, stdout);
    return 0;
  }
  SynthOptions& o = args.options;
  const ModelShape& s = o.shape;
  const ShapeSize size = ComputeSize(s, o.type, o.mix);
  const auto start = std::chrono::steady_clock::now();
  if (!args.quiet) {
    std::fprintf(stderr,
                 "kestrel-synth: %s %s seed %llu: dim %u, %u layers, %u heads, %u KV heads, ffn %u, "
                 "vocab %u, experts %u/%u, ctx %u; %.3f G params, %.2f GiB of weights -> %s\n",
                 s.name.c_str(), TypeLabel(o.type, o.mix).c_str(),
                 static_cast<unsigned long long>(o.seed), s.dim, s.layers, s.heads, s.kv_heads,
                 s.ffn, s.vocab, s.experts_used, s.experts, s.context, size.n_params / 1e9,
                 size.n_bytes / 1073741824.0, o.output_path.c_str());
    const bool tty = isatty(STDERR_FILENO) != 0;
    o.on_tensor_written = [tty, start, last_percent = -1](const WriteProgress& p) mutable {
      const int percent =
          p.bytes_total == 0 ? 100 : static_cast<int>(100.0 * p.bytes_done / p.bytes_total);
      const bool last = p.tensor_index + 1 == p.n_tensors;
      // On a terminal: one line redrawn per tensor; otherwise a line every 10%.
      if (!tty && !last && percent / 10 == last_percent / 10) return;
      last_percent = percent;
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::fprintf(stderr, "%skestrel-synth: %3d%%  tensor %zu/%zu %-28s %8.1f MiB  %.1f s%s",
                   tty ? "\r" : "", percent, p.tensor_index + 1, p.n_tensors,
                   p.tensor_name->c_str(), p.bytes_done / 1048576.0, secs,
                   tty && !last ? "" : "\n");
    };
  }
  absl::Status status = WriteSyntheticModel(o);
  if (!status.ok()) {
    std::fprintf(stderr, "kestrel-synth: error: %s\n", status.ToString().c_str());
    return 1;
  }
  if (!args.quiet) {
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::fprintf(stderr, "kestrel-synth: wrote %s in %.1f s\n", o.output_path.c_str(), secs);
  }
  return 0;
}

}  // namespace
}  // namespace kestrel::synth

int main(int argc, char** argv) { return kestrel::synth::Main(argc, argv); }
