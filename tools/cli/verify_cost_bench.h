// `kestrel bench --verify-cost N`: the whole-model cost of one forward step over N tokens (a
// speculative verify step, a batched step) relative to a one-token decode step at the same
// context depth, alternated in one process (verify_cost_bench.cc). Public C API only.
#ifndef KESTREL_TOOLS_CLI_VERIFY_COST_BENCH_H_
#define KESTREL_TOOLS_CLI_VERIFY_COST_BENCH_H_

#include "args.h"

namespace kestrel::cli {

int RunVerifyCostBench(const Options& o);

}  // namespace kestrel::cli

#endif  // KESTREL_TOOLS_CLI_VERIFY_COST_BENCH_H_
