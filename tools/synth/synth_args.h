// tools/synth/synth_args.h: the command line of kestrel-synth. Pure C++, unit-tested.
#ifndef KESTREL_TOOLS_SYNTH_SYNTH_ARGS_H_
#define KESTREL_TOOLS_SYNTH_SYNTH_ARGS_H_

#include <string>

#include "tools/synth/synth_writer.h"

namespace kestrel::synth {

struct SynthArgs {
  SynthOptions options;  // shape, type, seed, output path, model name
  bool help = false;
  bool quiet = false;  // no progress on stderr
};

struct SynthParseResult {
  bool ok = true;
  std::string error;  // one line naming the flag and value
};

// kestrel-synth --shape NAME|custom [--type F16|Q8_0|Q4_0|Q4_1|Q5_0|Q5_1|Q2_K..Q6_K|Q4_K_M|Q5_K_M]
//               [--seed S] -o OUT.gguf
//               [--dim N --layers N --heads N --kv-heads N --ffn N --vocab N --experts N
//                --experts-used N --ctx N] [--name TEXT] [--quiet] [-h]
// Flags take "--flag VALUE" or "--flag=VALUE". With --shape custom, --dim, --layers, --heads and
// --ffn are required (--kv-heads defaults to --heads, --vocab to 32000, --ctx to 2048); with a
// preset the shape flags override its fields. The shape itself is checked by ValidateShape.
SynthParseResult ParseSynthArgs(int argc, const char* const* argv, SynthArgs* out);

extern const char kSynthUsage[];

}  // namespace kestrel::synth

#endif  // KESTREL_TOOLS_SYNTH_SYNTH_ARGS_H_
