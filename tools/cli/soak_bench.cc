// `kestrel bench --soak`: see soak_bench.h.
#include "soak_bench.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <queue>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "api_util.h"
#include "bench_util.h"
#include "interrupt.h"
#include "json_writer.h"

namespace kestrel::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct EngineDeleter {
  void operator()(kestrel_engine_t* e) const { kestrel_engine_destroy(e); }
};
using EnginePtr = std::unique_ptr<kestrel_engine_t, EngineDeleter>;

// Resident set size now (/proc/self/statm), 0 if unknown.
uint64_t RssBytes() {
  std::ifstream f("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  if (!(f >> size >> resident)) return 0;
  return resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

enum class Action { kPlain, kCancel, kDeadline };

// What request `i` does: drawn from (seed, i) alone, so a run is reproducible per request.
struct Plan {
  size_t prompt;
  uint32_t max_new;
  Action action;
  uint32_t delay_us;  // kCancel: after submit; kDeadline: the wait's timeout (ms = delay / 1000)
  uint64_t sampler_seed;
};

Plan PlanFor(uint64_t seed, uint64_t i, uint32_t max_new) {
  std::mt19937_64 rng(seed ^ (0x9E3779B97F4A7C15ull * (i + 1)));
  Plan p;
  p.prompt = rng() % kNumStoryPrompts;
  p.max_new = 1 + static_cast<uint32_t>(rng() % max_new);
  const uint64_t r = rng() % 6;
  p.action = r == 0 ? Action::kCancel : r == 1 ? Action::kDeadline : Action::kPlain;
  p.delay_us = 100 + static_cast<uint32_t>(rng() % 20000);
  p.sampler_seed = rng();
  return p;
}

struct Counters {
  std::atomic<uint64_t> next{0}, completed{0};
  std::atomic<uint64_t> finished{0}, cancelled{0}, deadline_cancelled{0}, failed{0}, rejected{0},
      unaccounted{0}, generated{0};
};

// Cancels requests at their due time, from its own thread.
class Canceller {
 public:
  explicit Canceller(kestrel_engine_t* engine) : engine_(engine), thread_([this] { Main(); }) {}
  ~Canceller() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void At(Clock::time_point due, kestrel_request_id_t id) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push({due, id});
    }
    cv_.notify_all();
  }

 private:
  using Item = std::pair<Clock::time_point, kestrel_request_id_t>;
  void Main() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      if (queue_.empty()) {
        cv_.wait(lock);
        continue;
      }
      const Item next = queue_.top();
      if (Clock::now() < next.first) {
        cv_.wait_until(lock, next.first);
        continue;
      }
      queue_.pop();
      lock.unlock();
      // NOT_FOUND is fine: the client may have released the request already.
      kestrel_status_free(kestrel_engine_cancel(engine_, next.second));
      lock.lock();
    }
  }
  kestrel_engine_t* engine_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::priority_queue<Item, std::vector<Item>, std::greater<Item>> queue_;
  bool stop_ = false;
  std::thread thread_;
};

// One client: submits requests one after another until `total` were submitted.
void Client(kestrel_engine_t* engine, const std::vector<std::vector<int32_t>>& prompts,
            const BenchOptions& b, uint64_t seed, Canceller* canceller, Counters* c) {
  while (!InterruptRequested()) {
    const uint64_t i = c->next.fetch_add(1);
    if (i >= b.soak_requests) return;
    const Plan p = PlanFor(seed, i, b.n_decode);
    kestrel_sampler_options_t so;
    kestrel_sampler_options_init(&so);
    so.seed = p.sampler_seed;
    kestrel_engine_request_options_t ro;
    kestrel_engine_request_options_init(&ro);
    ro.max_new_tokens = p.max_new;
    ro.sampler = &so;
    kestrel_request_id_t id = 0;
    StatusPtr submitted(kestrel_engine_submit_tokens(engine, prompts[p.prompt].data(),
                                                     prompts[p.prompt].size(), &ro, &id));
    if (submitted) {  // a status is an end too, but none is expected here
      ++c->rejected;
      ++c->completed;
      continue;
    }
    if (p.action == Action::kCancel) {
      canceller->At(Clock::now() + std::chrono::microseconds(p.delay_us), id);
    }
    bool deadline_hit = false;
    StatusPtr waited;
    if (p.action == Action::kDeadline) {
      waited.reset(kestrel_engine_wait(engine, id, p.delay_us / 1000));
      if (kestrel_status_code(waited.get()) == KESTREL_STATUS_DEADLINE_EXCEEDED) {
        deadline_hit = true;
        kestrel_status_free(kestrel_engine_cancel(engine, id));
        waited.reset(kestrel_engine_wait(engine, id, -1));
      }
    } else {
      waited.reset(kestrel_engine_wait(engine, id, -1));
    }
    kestrel_engine_result_t r{};
    r.struct_size = sizeof(r);
    StatusPtr got(kestrel_engine_request_result(engine, id, 0, &r));
    const kestrel_status_code_t code = kestrel_status_code(waited.get());
    if (got) {
      ++c->unaccounted;
    } else if (code == KESTREL_STATUS_OK && r.state == KESTREL_REQUEST_FINISHED) {
      ++c->finished;
    } else if (code == KESTREL_STATUS_CANCELLED && r.state == KESTREL_REQUEST_CANCELLED) {
      ++(deadline_hit ? c->deadline_cancelled : c->cancelled);
    } else if (r.state == KESTREL_REQUEST_FAILED && code != KESTREL_STATUS_OK) {
      ++c->failed;
      std::fprintf(stderr, "kestrel: soak: request %llu failed: %s\n",
                   static_cast<unsigned long long>(id), kestrel_status_message(waited.get()));
    } else {
      ++c->unaccounted;
    }
    if (!got) c->generated += r.n_generated_tokens;
    kestrel_status_free(kestrel_engine_release_request(engine, id));
    ++c->completed;
  }
}

}  // namespace

int RunSoakBench(const Options& o) {
  const BenchOptions& b = o.bench;
  const uint32_t concurrency = b.concurrency.front();
  InstallInterruptHandler();
  OpenedModel opened;
  int exit_code = kExitError;
  if (!OpenModel(o, &opened, &exit_code)) return exit_code;
  const ModelPtr& model = opened.model;
  const kestrel_model_info_t& info = opened.info;

  std::vector<std::vector<int32_t>> prompts(kNumStoryPrompts);
  for (size_t i = 0; i < kNumStoryPrompts; ++i) {
    if (!Tokenize(model.get(), kStoryPrompts[i], true, false, &prompts[i])) return kExitError;
  }
  kestrel_engine_options_t eo;
  kestrel_engine_options_init(&eo);
  eo.max_sequences = concurrency;
  eo.n_threads = o.n_threads;
  eo.kv_type = o.kv_type;
  if (b.kv_block_size) eo.kv_block_size = *b.kv_block_size;
  kestrel_engine_t* raw = nullptr;
  if (StatusPtr s{kestrel_engine_create(model.get(), &eo, &raw)}) {
    PrintStatusError(s.get());
    return kExitError;
  }
  EnginePtr engine(raw);
  if (StatusPtr s{kestrel_engine_start(engine.get())}) {
    PrintStatusError(s.get());
    return kExitError;
  }
  const uint64_t seed = o.seed ? *o.seed : std::random_device{}();
  std::printf("soak: %u requests, %u in flight, up to %u new tokens each, seed %llu, device %s\n",
              b.soak_requests, concurrency, b.n_decode, static_cast<unsigned long long>(seed),
              info.device != nullptr ? info.device : "");
  std::fflush(stdout);

  Counters c;
  const uint64_t warm_after = std::max<uint64_t>(1, b.soak_requests / 10);
  uint64_t rss_warm = 0, rss_peak = 0;
  // RSS when each tenth of the requests has completed, and the KV blocks' high-water mark: what
  // tells a leak (growth that goes on) from memory the engine allocated up front and touches
  // only as its KV pool fills (growth that stops once every block was used).
  std::vector<uint64_t> rss_by_tenth;
  uint32_t kv_peak = 0, kv_total = 0;
  uint64_t warm_requests = 0;
  bool deadlock = false;
  const Clock::time_point start = Clock::now();
  {
    Canceller canceller(engine.get());
    std::vector<std::thread> clients;
    for (uint32_t t = 0; t < concurrency; ++t) {
      clients.emplace_back(Client, engine.get(), std::cref(prompts), std::cref(b), seed,
                           &canceller, &c);
    }
    // Watchdog (this thread): progress means a request completed.
    uint64_t last = 0;
    Clock::time_point last_change = Clock::now();
    while (c.completed.load() < b.soak_requests && !InterruptRequested()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      const uint64_t done = c.completed.load();
      const uint64_t rss = RssBytes();
      rss_peak = std::max(rss_peak, rss);
      while (rss_by_tenth.size() < 10 &&
             done >= (rss_by_tenth.size() + 1) * uint64_t{b.soak_requests} / 10) {
        rss_by_tenth.push_back(rss);
      }
      kestrel_engine_stats_t st{};
      st.struct_size = sizeof(st);
      if (StatusPtr s{kestrel_engine_get_stats(engine.get(), &st)}; !s) {
        kv_peak = std::max(kv_peak, st.kv_blocks_used);
        kv_total = st.kv_blocks_total;
      }
      // Warm: a tenth of the requests done and 99 % of the KV blocks in use at once (so their
      // pages are resident; the pool is full only for moments, between a step's allocations and
      // its retirements), or half of the requests done when the pool never fills.
      const bool pool_used = kv_total > 0 && uint64_t{kv_peak} * 100 >= uint64_t{kv_total} * 99;
      if (rss_warm == 0 && done >= warm_after &&
          (pool_used || done >= uint64_t{b.soak_requests} / 2)) {
        rss_warm = rss;
        warm_requests = done;
      }
      if (done != last) {
        last = done;
        last_change = Clock::now();
      } else if (Clock::now() - last_change > std::chrono::seconds(b.watchdog_s)) {
        deadlock = true;
        break;
      }
      // Every request already submitted has completed: no client is left to submit more.
      if (c.next.load() >= b.soak_requests && done >= b.soak_requests) break;
    }
    if (deadlock) {
      std::printf("soak: no request completed for %u s (%llu of %u done): deadlock\n",
                  b.watchdog_s, static_cast<unsigned long long>(c.completed.load()),
                  b.soak_requests);
      if (o.json) {
        std::printf("{\"mode\":\"soak\",\"deadlock\":true,\"ok\":false,\"completed\":%llu}\n",
                    static_cast<unsigned long long>(c.completed.load()));
      }
      std::fflush(stdout);
      std::_Exit(kExitError);  // the stuck threads cannot be joined
    }
    for (auto& t : clients) t.join();
  }
  const double wall = std::chrono::duration<double>(Clock::now() - start).count();
  if (InterruptRequested()) {
    std::fprintf(stderr, "kestrel: interrupted\n");
    return kExitInterrupted;
  }
  const uint64_t rss_end = RssBytes();
  rss_peak = std::max(rss_peak, rss_end);
  if (rss_warm == 0) {
    rss_warm = rss_end;
    warm_requests = c.completed;
  }
  const double growth =
      rss_warm > 0 ? (static_cast<double>(rss_end) - static_cast<double>(rss_warm)) / rss_warm : 0;
  const uint64_t accounted = c.finished + c.cancelled + c.deadline_cancelled + c.failed + c.rejected;
  const bool ok = !deadlock && c.unaccounted == 0 && c.failed == 0 && c.rejected == 0 &&
                  accounted == b.soak_requests && growth <= b.max_rss_growth;
  std::printf(
      "soak: %llu finished, %llu cancelled, %llu cancelled at their deadline, %llu failed, "
      "%llu rejected, %llu unaccounted; %.1f requests/s; RSS %.1f MiB after warm-up -> %.1f MiB "
      "(%+.2f %%, limit %.2f %%): %s\n",
      static_cast<unsigned long long>(c.finished.load()),
      static_cast<unsigned long long>(c.cancelled.load()),
      static_cast<unsigned long long>(c.deadline_cancelled.load()),
      static_cast<unsigned long long>(c.failed.load()),
      static_cast<unsigned long long>(c.rejected.load()),
      static_cast<unsigned long long>(c.unaccounted.load()), b.soak_requests / wall,
      rss_warm / 1048576.0, rss_end / 1048576.0, growth * 100, b.max_rss_growth * 100,
      ok ? "ok" : "FAILED");
  if (o.json) {
    JsonWriter w;
    w.BeginObject();
    w.Key("mode");
    w.String("soak");
    w.Key("model");
    w.String(o.model_path);
    w.Key("device");
    w.String(info.device != nullptr ? info.device : "");
    w.Key("requests");
    w.Uint(b.soak_requests);
    w.Key("concurrency");
    w.Uint(concurrency);
    w.Key("n");
    w.Uint(b.n_decode);
    w.Key("seed");
    w.Uint(seed);
    for (auto [key, value] : {std::pair<const char*, uint64_t>{"finished", c.finished},
                              {"cancelled", c.cancelled},
                              {"deadline_cancelled", c.deadline_cancelled},
                              {"failed", c.failed},
                              {"rejected", c.rejected},
                              {"unaccounted", c.unaccounted},
                              {"generated_tokens", c.generated}}) {
      w.Key(key);
      w.Uint(value);
    }
    w.Key("wall_s");
    w.Double(wall);
    w.Key("requests_per_s");
    w.Double(b.soak_requests / wall);
    w.Key("tokens_per_s");
    w.Double(c.generated / wall);
    w.Key("warm_up_requests");
    w.Uint(warm_requests);
    w.Key("rss_warm_bytes");
    w.Uint(rss_warm);
    w.Key("rss_end_bytes");
    w.Uint(rss_end);
    w.Key("rss_peak_bytes");
    w.Uint(rss_peak);
    w.Key("rss_bytes_by_tenth");
    w.BeginArray();
    for (uint64_t v : rss_by_tenth) w.Uint(v);
    w.EndArray();
    w.Key("kv_blocks_total");
    w.Uint(kv_total);
    w.Key("kv_blocks_peak_used");
    w.Uint(kv_peak);
    w.Key("rss_growth");
    w.Double(growth);
    w.Key("max_rss_growth");
    w.Double(b.max_rss_growth);
    w.Key("watchdog_s");
    w.Uint(b.watchdog_s);
    w.Key("deadlock");
    w.Bool(false);
    w.Key("ok");
    w.Bool(ok);
    w.EndObject();
    std::printf("%s\n", w.str().c_str());
  }
  return ok ? kExitOk : kExitError;
}

}  // namespace kestrel::cli
