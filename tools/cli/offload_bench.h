// `kestrel bench -m MODEL --mem ...`: decode speed under a memory budget against the fully
// resident model and the disk read bandwidth, all measured in one process (offload_bench.cc).
#ifndef KESTREL_TOOLS_CLI_OFFLOAD_BENCH_H_
#define KESTREL_TOOLS_CLI_OFFLOAD_BENCH_H_

#include <cstdint>
#include <string>

#include "args.h"

namespace kestrel::cli {

int RunOffloadBench(const Options& o);

// Reads `total_bytes` in ranges of `chunk_bytes` at seeded random aligned offsets of `path`, with
// O_DIRECT where the filesystem allows it (else pread after dropping the file's cached pages).
// Returns bytes per second, or a negative value if the file cannot be read; *direct says which.
double MeasureDiskReadBandwidth(const std::string& path, uint64_t chunk_bytes,
                                uint64_t total_bytes, bool* direct);

}  // namespace kestrel::cli

#endif  // KESTREL_TOOLS_CLI_OFFLOAD_BENCH_H_
