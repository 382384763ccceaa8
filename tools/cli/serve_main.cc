// kestrel-serve: the executable behind `kestrel serve` (see serve_command.cc). It takes the same
// command line (`kestrel-serve serve -m MODEL ...`, as `kestrel serve` passes it on, or without
// the word serve).
#include <cstdio>
#include <string_view>
#include <vector>

#include "api_util.h"
#include "args.h"
#include "commands.h"

int main(int argc, char** argv) {
  using namespace kestrel::cli;
  std::vector<const char*> args = {"kestrel", "serve"};
  for (int i = 1; i < argc; ++i) {
    if (i == 1 && std::string_view(argv[i]) == "serve") continue;
    args.push_back(argv[i]);
  }
  Options options;
  ParseResult parsed = ParseArgs(static_cast<int>(args.size()), args.data(), &options);
  if (!parsed.ok) {
    std::fprintf(stderr, "kestrel: %s\nusage: kestrel serve -m MODEL [options] (kestrel help serve)\n",
                 parsed.error.c_str());
    return kExitUsage;
  }
  if (options.help) {
    std::fputs(kServeHelp, stdout);
    return kExitOk;
  }
  return RunServe(options);
}
