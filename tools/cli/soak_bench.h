// `kestrel bench --soak`: the serving engine under sustained, hostile load, through the public C
// API only. C client threads keep C requests in flight (one each) until N requests have been
// submitted; each request has a random story prompt, up to -n new tokens and seeded sampling,
// and one in six is cancelled from another thread after a random delay, one in six has a
// deadline (its client waits a random few milliseconds, then cancels it). The engine runs on its
// own thread (kestrel_engine_start).
//
// Checked: every request ends with a result or a status (wait returns OK with state FINISHED,
// or CANCELLED with state CANCELLED; anything else counts as failed, a request in no end state
// as unaccounted); no deadlock (a watchdog thread ends the run, exit 1, when no request
// completes for --watchdog-s seconds); resident memory after warm-up grows by at most
// --max-rss-growth by the end. Warm-up ends when a tenth of the requests are done and 99 % of the
// KV blocks have been in use at once (the engine allocates its pool up front, and the pages of a
// block are resident only once it is written: a pool still filling is not a leak), or at half of
// the requests if the pool never fills that far.
//
// stdout: a summary line and, with --json, one JSON object (the last line): mode "soak",
// requests, concurrency, n, seed, finished, cancelled, deadline_cancelled, failed, rejected,
// unaccounted, generated_tokens, wall_s, requests_per_s, tokens_per_s, warm_up_requests,
// rss_warm_bytes, rss_end_bytes, rss_peak_bytes, rss_bytes_by_tenth (RSS as each tenth of the
// requests completed), kv_blocks_total, kv_blocks_peak_used, rss_growth, max_rss_growth,
// watchdog_s, deadlock, ok.
// Exit status 0 when ok, 1 otherwise (130 on Ctrl-C).
#ifndef KESTREL_TOOLS_CLI_SOAK_BENCH_H_
#define KESTREL_TOOLS_CLI_SOAK_BENCH_H_

#include "args.h"

namespace kestrel::cli {

int RunSoakBench(const Options& o);

}  // namespace kestrel::cli

#endif  // KESTREL_TOOLS_CLI_SOAK_BENCH_H_
