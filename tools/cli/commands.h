// The subcommands of the `kestrel` tool. Each returns the process exit status (api_util.h,
// interrupt.h) and prints its own errors.
#ifndef KESTREL_TOOLS_CLI_COMMANDS_H_
#define KESTREL_TOOLS_CLI_COMMANDS_H_

#include "args.h"

namespace kestrel::cli {

int RunGenerate(const Options& options);
int RunInfo(const Options& options);
int RunDevices(const Options& options);
int RunBench(const Options& options);  // bench_command.cc (also --membw)
int RunSpecBench(const Options& options);  // spec_bench.cc: bench --spec
int RunTokenize(const Options& options);
int RunChat(const Options& options);

}  // namespace kestrel::cli

#endif  // KESTREL_TOOLS_CLI_COMMANDS_H_
