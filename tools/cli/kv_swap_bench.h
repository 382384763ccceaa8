// `kestrel bench --kv-swap`: the engine resuming a preempted long request by KV swap against by
// recompute, alternated in one process (kv_swap_bench.cc). Public C API only.
#ifndef KESTREL_TOOLS_CLI_KV_SWAP_BENCH_H_
#define KESTREL_TOOLS_CLI_KV_SWAP_BENCH_H_

#include "args.h"

namespace kestrel::cli {

int RunKvSwapBench(const Options& o);

}  // namespace kestrel::cli

#endif  // KESTREL_TOOLS_CLI_KV_SWAP_BENCH_H_
