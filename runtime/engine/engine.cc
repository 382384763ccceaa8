#include "runtime/engine/engine.h"

#include <algorithm>
#include <chrono>
#include <tuple>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/plan/execution_plan.h"

namespace kestrel {
namespace runtime {
namespace {

using Clock = std::chrono::steady_clock;

double MsBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

uint64_t KvElementBytes(uint32_t dtype) {
  switch (dtype) {
    case KESTREL_DTYPE_F16:
    case KESTREL_DTYPE_BF16: return 2;
    case KESTREL_DTYPE_I8: return 1;
    default: return 4;
  }
}

uint32_t CeilDiv(uint64_t a, uint64_t b) { return static_cast<uint32_t>((a + b - 1) / b); }

}  // namespace

// A request as the API sees it. `out`, `cancel_requested` and `live_samples` are guarded by mu_;
// the rest is immutable after Submit.
struct Engine::Request {
  uint64_t id = 0;
  uint64_t arrival = 0;
  EngineRequest req;
  Clock::time_point submitted;
  RequestOutput out;
  uint32_t live_samples = 0;  // samples not done yet
  bool admitted_once = false;
  bool first_token = false;
  bool failed = false;  // stepper only: a sequence of it failed, so all of its samples end
};

// One sample of one request: its sequence (tokens, blocks, sampler, stream text, stop policy)
// and its scheduling state. Owned by the stepper.
struct Engine::SeqState {
  std::shared_ptr<Request> request;
  uint32_t sample = 0;
  uint32_t forks_pending = 0;  // samples to spawn when the prompt's logits arrive (parent only)
  int32_t priority = 0;
  uint64_t arrival = 0;
  // History = prompt + generated (the newest generated one is not computed); its table's blocks
  // hold the computed tokens (and, at admission, room for the whole prompt).
  std::unique_ptr<Sequence> seq;
  // Its tables of the sliding-window KV groups, at the same positions as seq's table (null
  // without window groups).
  std::unique_ptr<WindowTables> windows;
  std::vector<uint64_t> keys;  // prefix-cache entry of block i for the cached full blocks
  bool prefilled = false;  // computed up to its last token since (re)admission: decoding
  SwappedKv swapped;       // its KV in host swap space while preempted (none: recompute)
  // Speculative decoding (null: off): this step's tree and its verify inputs.
  std::unique_ptr<Speculator> spec;
  DraftTree tree;
  std::vector<int32_t> verify_tokens, verify_parents;
  bool spec_step = false;  // this step verifies a tree (or a plain token through the verifier)
  uint32_t token_offset = 0;  // index of its first token in this step
  bool done = false;
  // Per step.
  uint32_t chunk = 0;
  int32_t logit_row = -1;

  // Scheduling order: higher priority, then earlier arrival, then lower sample index.
  bool RanksBefore(const SeqState& o) const {
    return std::make_tuple(-int64_t{priority}, arrival, sample) <
           std::make_tuple(-int64_t{o.priority}, o.arrival, o.sample);
  }
};

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const Model* model,
                                                       hal::Device* fallback,
                                                       const EngineConfig& config) {
  std::unique_ptr<Engine> e(new Engine());
  e->model_ = model;
  e->fallback_ = fallback;
  e->config_ = config;
  const uint32_t trained = model->config().context_length;
  e->context_length_ = config.context_length == 0 ? trained : config.context_length;
  constexpr uint32_t kMaxContext = 1u << 22;
  if (e->context_length_ == 0 || e->context_length_ > kMaxContext) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "engine context_length = %u is outside [1, %u]", e->context_length_, kMaxContext));
  }
  const uint32_t bs = config.block_size;
  if (bs == 0 || bs > 4096 || (bs & (bs - 1)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("engine kv_block_size = %u must be a power of two in [1, 4096]", bs));
  }
  if (config.kv_dtype != KESTREL_DTYPE_F32 && config.kv_dtype != KESTREL_DTYPE_F16) {
    return absl::InvalidArgumentError(
        absl::StrFormat("engine KV cache dtype %u is neither F32 nor F16", config.kv_dtype));
  }
  if (config.max_batch_tokens == 0) {
    return absl::InvalidArgumentError("engine max_batch_tokens = 0 must be at least 1");
  }
  if (config.max_sequences == 0 || config.max_sequences > 65536) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "engine max_sequences = %u is outside [1, 65536]", config.max_sequences));
  }
  // Sliding-window layers keep only their window's KV when that is smaller than the full
  // context: steps of at most one window per sequence, so each sequence holds at most
  // BlocksNeeded(window, window) blocks of each window group (docs/ENGINE.md).
  uint32_t window = 0;
  for (const LayerConfig& l : model->config().layers) window = std::max(window, l.sliding_window);
  uint32_t window_blocks_per_seq = 0;
  if (config.window_kv && window > 0) {
    const uint32_t per_seq = WindowTables::BlocksNeeded(window, window, bs);
    if (per_seq < CeilDiv(e->context_length_, bs)) window_blocks_per_seq = per_seq;
  }
  PlanOptions plan_options;
  plan_options.block_size = bs;
  plan_options.n_blocks = 1;
  plan_options.kv_dtype = config.kv_dtype;
  plan_options.context_length = e->context_length_;
  plan_options.hidden = HiddenState::kPostNorm;  // marked only; read back for Medusa heads
  plan_options.window_kv_blocks = window_blocks_per_seq * config.max_sequences;
  absl::StatusOr<ExecutionPlan> probe_plan = model->BuildPlan(plan_options);
  if (!probe_plan.ok()) return probe_plan.status();
  const ExecutionPlan& probe = *probe_plan;
  // Bytes of one block of one layer (K and V), from the plan's own KV geometry; group 0's block
  // spans its layers, the window pools are fixed.
  const uint64_t layer_block_bytes =
      uint64_t{2} * bs * probe.n_kv_heads * probe.head_dim * KvElementBytes(probe.kv_dtype);
  uint32_t group0_layers = probe.n_layers;
  uint64_t window_bytes = 0;
  if (probe.kv_groups.size() > 1) {
    group0_layers = 0;
    for (uint32_t l = 0; l < probe.n_layers; ++l) {
      const uint32_t g = probe.layer_kv_group[l];
      if (g == 0) {
        ++group0_layers;
      } else {
        window_bytes += uint64_t{probe.kv_groups[g].n_blocks} * layer_block_bytes;
      }
    }
  }
  const uint64_t block_bytes = group0_layers * layer_block_bytes;
  uint64_t n_blocks = 0;
  if (config.kv_cache_bytes == 0 || block_bytes == 0) {
    n_blocks = uint64_t{config.max_sequences} * CeilDiv(e->context_length_, bs);
  } else {
    n_blocks = config.kv_cache_bytes > window_bytes
                   ? (config.kv_cache_bytes - window_bytes) / block_bytes
                   : 0;
    if (n_blocks == 0 && window_bytes > 0) {
      // The window pools are sized for max_sequences sequences at once: name both numbers and
      // what would fit either way.
      const uint64_t per_seq = window_bytes / config.max_sequences;
      const uint64_t fit = config.kv_cache_bytes > block_bytes
                               ? (config.kv_cache_bytes - block_bytes) / per_seq
                               : 0;
      return absl::InvalidArgumentError(absl::StrFormat(
          "engine kv_cache_bytes = %u is too small for max_sequences = %u: the sliding-window "
          "layers' pools take %u bytes per sequence (%u for %u sequences) and the full-context "
          "layers need at least one block of %u tokens (%u bytes) besides: raise kv_cache_bytes "
          "to at least %u%s",
          config.kv_cache_bytes, config.max_sequences, per_seq, window_bytes,
          config.max_sequences, bs, block_bytes, window_bytes + block_bytes,
          fit == 0 ? std::string() : absl::StrFormat(" or lower max_sequences to at most %u", fit)));
    }
    if (n_blocks == 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "engine kv_cache_bytes = %u holds no KV block (one block of %u tokens needs %u bytes)",
          config.kv_cache_bytes, bs, block_bytes));
    }
  }
  if (n_blocks > (1u << 30) / std::max<uint32_t>(bs, 1)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "engine KV pool of %u blocks x %u tokens is too large (kv_cache_bytes = %u)", n_blocks, bs,
        config.kv_cache_bytes));
  }
  e->n_blocks_ = static_cast<uint32_t>(n_blocks);
  // A model loaded under memory budgets re-plans for this pool: its expert cache shrinks first.
  if (absl::Status s = model->ReserveKv(n_blocks * block_bytes + window_bytes); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("engine KV pool of ", e->n_blocks_, " blocks: ",
                                               s.message()));
  }
  e->pool_ = std::make_unique<BlockPool>(e->n_blocks_, bs);
  for (size_t g = 1; g < probe.kv_groups.size(); ++g) {
    e->window_pools_.push_back(std::make_unique<BlockPool>(probe.kv_groups[g].n_blocks, bs));
    e->window_of_group_.push_back(probe.kv_groups[g].window);
  }
  if (!e->window_pools_.empty()) e->max_step_ = window;
  e->window_bytes_ = window_bytes;
  if (config.prefix_cache) {
    // With window groups the cache keeps their blocks too, while their pools have room, and a
    // hit is only taken as far as their rows are held (prefix_cache.h).
    std::vector<PrefixCache::WindowGroup> groups;
    for (size_t g = 0; g < e->window_pools_.size(); ++g) {
      groups.push_back({e->window_of_group_[g], e->window_pools_[g].get()});
    }
    e->cache_ = std::make_unique<PrefixCache>(e->pool_.get(), std::move(groups));
  }
  plan_options.n_blocks = e->n_blocks_;
  absl::StatusOr<ExecutionPlan> plan = model->BuildPlan(plan_options);
  if (!plan.ok()) return plan.status();
  absl::StatusOr<std::unique_ptr<Executor>> exec =
      Executor::Create(model, std::move(*plan), model->device(), fallback);
  if (!exec.ok()) return exec.status();
  e->executor_ = std::move(*exec);
  uint64_t swap_bytes = config.kv_swap_bytes;
  if (swap_bytes == 0 && model->memory_plan() != nullptr) {
    std::lock_guard<std::mutex> lock(model->plan_mutex());
    swap_bytes = model->memory_plan()->host_swap_bytes;
  }
  if (swap_bytes > 0 && config.kv_swap_policy != KvSwapPolicy::kNever) {
    e->swap_ = std::make_unique<offload::KvSwapSpace>(swap_bytes);
  }
  e->work_stats_.kv_blocks_total = e->n_blocks_;
  e->work_stats_.kv_block_size = bs;
  e->PublishStats();
  return e;
}

Engine::~Engine() {
  Stop();
  std::lock_guard<std::mutex> step_lock(step_mu_);
  for (auto& s : running_) ReleaseBlocks(*s);
  running_.clear();
  waiting_.clear();
  cache_.reset();
  executor_.reset();
  pool_.reset();
}

bool Engine::OnStepThread() const {
  return step_thread_.load(std::memory_order_relaxed) == std::this_thread::get_id();
}

absl::StatusOr<uint64_t> Engine::Submit(EngineRequest r) {
  if (r.prompt.empty()) {
    return absl::InvalidArgumentError("submit: the prompt is empty (0 tokens)");
  }
  const int32_t vocab = static_cast<int32_t>(model_->config().n_vocab);
  for (size_t i = 0; i < r.prompt.size(); ++i) {
    if (r.prompt[i] < 0 || r.prompt[i] >= vocab) {
      return absl::OutOfRangeError(absl::StrFormat(
          "submit: prompt token #%u has id %d, outside the vocab [0, %d)", i, r.prompt[i], vocab));
    }
  }
  if (r.n == 0 || r.n > config_.max_sequences) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "submit: options->n = %u must be in [1, max_sequences = %u]", r.n, config_.max_sequences));
  }
  if (auto s = ValidateSamplerConfig(r.sampler); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("submit: options->", s.message()));
  }
  if (auto s = ValidateSpecConfig(r.spec, *model_); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("submit: options->", s.message()));
  }
  const uint64_t P = r.prompt.size();
  if (P > context_length_) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "submit: the prompt has %u tokens but the context length is %u", P, context_length_));
  }
  // KV one sample can hold at once: the prompt and every generated token but the last (which is
  // never run through the model), at most the context.
  const uint64_t tokens_needed =
      std::min<uint64_t>(P + std::max<uint32_t>(r.max_new_tokens, 1) - 1, context_length_);
  const uint32_t blocks_needed = CeilDiv(tokens_needed, config_.block_size);
  if (blocks_needed > n_blocks_) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "submit: the request cannot fit in the KV pool even alone: it needs %u tokens (prompt %u "
        "+ up to %u generated, context %u) = %u blocks of %u tokens, but the pool has %u blocks "
        "(block size %u)",
        tokens_needed, P, r.max_new_tokens, context_length_, blocks_needed, config_.block_size,
        n_blocks_, config_.block_size));
  }
  auto req = std::make_shared<Request>();
  req->req = std::move(r);
  req->submitted = Clock::now();
  req->out.n_prompt = static_cast<uint32_t>(P);
  req->out.samples.resize(req->req.n);
  req->live_samples = req->req.n;
  std::lock_guard<std::mutex> lock(mu_);
  req->id = next_id_++;
  req->arrival = next_arrival_++;
  requests_[req->id] = req;
  submitted_.push_back(req);
  ++n_unfinished_;
  work_cv_.notify_all();
  return req->id;
}

void Engine::TakeSubmissions() {
  std::vector<std::shared_ptr<Request>> taken;
  {
    std::lock_guard<std::mutex> lock(mu_);
    taken.swap(submitted_);
  }
  for (auto& req : taken) {
    auto seq = std::make_unique<SeqState>();
    seq->request = req;
    seq->forks_pending = req->req.n - 1;
    seq->priority = req->req.priority;
    seq->arrival = req->arrival;
    // Validated at submit, so Create cannot fail here.
    seq->seq = std::make_unique<Sequence>(pool_.get(), &model_->tokenizer(),
                                          *Sampler::Create(req->req.sampler));
    seq->seq->AddTokens(req->req.prompt);
    seq->windows = MakeWindowTables();
    seq->seq->Begin({req->req.max_new_tokens, req->req.stop_strings, context_length_},
                    static_cast<uint32_t>(req->req.prompt.size()), LogprobsFor(*seq));
    Constrain(*seq->seq, req->req);
    seq->spec = MakeSpeculator(req->req);
    waiting_.push_back(std::move(seq));
  }
}

void Engine::ApplyCancels() {
  std::vector<uint64_t> ids;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ids.swap(cancels_);
  }
  for (uint64_t id : ids) {
    for (auto* list : {&running_, &waiting_}) {
      for (auto& s : *list) {
        if (s->request->id == id && !s->done) FinishSequence(*s, StopReason::kCancelled);
      }
    }
  }
}

uint32_t Engine::AvailableBlocks() const {
  return pool_->n_free() + (cache_ ? cache_->NumEvictable() : 0);
}

bool Engine::EnsureFree(uint32_t n) {
  while (pool_->n_free() < n) {
    if (!cache_ || cache_->NumEvictable() == 0) return false;
    cache_->EvictOne();
  }
  return true;
}

void Engine::ReleaseBlocks(SeqState& seq) {
  seq.seq->table().Clear();
  if (seq.windows) seq.windows->Truncate(0);
  seq.keys.clear();
}

std::unique_ptr<WindowTables> Engine::MakeWindowTables() const {
  if (window_pools_.empty()) return nullptr;
  std::vector<WindowTables::SharedGroup> groups;
  for (size_t g = 0; g < window_pools_.size(); ++g) {
    groups.push_back({window_of_group_[g], window_pools_[g].get()});
  }
  return std::make_unique<WindowTables>(groups);
}

// Frees the victim's blocks and requeues it with its prompt and generated tokens, its KV swapped
// to host memory or else to be recomputed; its sampler and stream state stay, so its output
// continues seamlessly.
void Engine::Preempt(SeqState* victim) {
  SwapOut(victim->seq->table(), victim->windows.get(), &victim->swapped);
  ReleaseBlocks(*victim);
  victim->prefilled = false;
  ++work_stats_.preemptions;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++victim->request->out.n_preemptions;
  }
  auto it = std::find_if(running_.begin(), running_.end(),
                         [victim](const std::unique_ptr<SeqState>& s) { return s.get() == victim; });
  std::unique_ptr<SeqState> owned = std::move(*it);
  running_.erase(it);
  auto pos = std::find_if(waiting_.begin(), waiting_.end(),
                          [&](const std::unique_ptr<SeqState>& s) { return victim->RanksBefore(*s); });
  waiting_.insert(pos, std::move(owned));
  bool any_running = false;
  for (auto& s : running_) any_running |= s->request == victim->request;
  if (!any_running) {
    std::lock_guard<std::mutex> lock(mu_);
    if (victim->request->out.state == RequestState::kRunning) {
      victim->request->out.state = RequestState::kWaiting;
    }
  }
}

// Takes prefix-cache hits and allocates the blocks for all of the sequence's tokens at once, so
// that a sequence never needs a block in the middle of its prefill. False (nothing held) when the
// pool cannot give them now.
bool Engine::Admit(SeqState* seq) {
  const uint32_t bs = config_.block_size;
  const std::vector<int32_t>& tokens = seq->seq->tokens();
  const uint32_t n = static_cast<uint32_t>(tokens.size());
  const uint32_t max_match = (n - 1) / bs;  // leave at least one token to compute (its logits)
  PrefixCache::Match m;
  if (cache_) m = cache_->Lookup(tokens, max_match, /*retain=*/true);
  const uint32_t need = CeilDiv(n, bs) - static_cast<uint32_t>(m.blocks.size());
  if (AvailableBlocks() < need) {
    for (int32_t b : m.blocks) pool_->Release(b);
    for (size_t g = 0; g < m.window_blocks.size(); ++g) {
      for (int32_t b : m.window_blocks[g]) {
        if (b >= 0) window_pools_[g]->Release(b);
      }
    }
    return false;
  }
  const uint32_t reused = static_cast<uint32_t>(m.blocks.size()) * bs;
  seq->seq->table().Adopt(m.blocks, reused);
  // The window groups' rows of the window before `reused` (the cache matched only that far).
  if (seq->windows) seq->windows->Adopt(std::move(m.window_blocks), reused);
  seq->keys = m.keys;
  EnsureFree(need);  // AvailableBlocks() said there are enough
  (void)seq->seq->table().Reserve(n);
  if (seq->swapped.tokens > 0) {
    std::vector<uint32_t> window_need(window_pools_.size());
    for (size_t g = 0; g < window_need.size(); ++g) {
      window_need[g] = WindowTables::BlocksNeeded(window_of_group_[g], max_step_, bs);
    }
    ReserveWindowBlocks(window_need);
    SwapIn(seq->seq->table(), seq->windows.get(), reused, &seq->swapped);
  }
  seq->prefilled = false;
  if (cache_) {
    work_stats_.prefix_cache_lookups += max_match;
    work_stats_.prefix_cache_hits += m.blocks.size();
  }
  work_stats_.prefill_tokens_reused += reused;
  std::lock_guard<std::mutex> lock(mu_);
  Request& r = *seq->request;
  r.out.state = RequestState::kRunning;
  r.out.n_cached_prompt_tokens = std::max(r.out.n_cached_prompt_tokens,
                                          std::min(reused, seq->seq->n_prompt()));
  if (!r.admitted_once) {
    r.admitted_once = true;
    r.out.queue_ms = MsBetween(r.submitted, Clock::now());
  }
  return true;
}

// Offers every newly completed full block to the prefix cache. If the cache already holds the same
// content in another block, the sequence switches to that block and frees its own copy.
void Engine::CacheFullBlocks(SeqState& seq) {
  if (!cache_) return;
  const uint32_t bs = config_.block_size;
  BlockTable& table = seq.seq->table();
  const std::vector<int32_t>& tokens = seq.seq->tokens();
  while (seq.keys.size() < table.n_tokens() / bs) {
    const size_t i = seq.keys.size();
    const uint64_t parent = i == 0 ? PrefixCache::kRoot : seq.keys[i - 1];
    int32_t shared = -1;
    const uint64_t key = cache_->Insert(
        parent, absl::MakeConstSpan(tokens.data() + i * bs, bs), table.blocks()[i], &shared);
    if (shared >= 0) table.ReplaceBlock(i, shared);
    seq.keys.push_back(key);
    // The window groups still hold the block just completed (a step drops only blocks before
    // its own first position's window).
    for (size_t g = 0; seq.windows && g < seq.windows->size(); ++g) {
      const BlockTable& w = seq.windows->table(g);
      if (i < w.blocks().size()) cache_->AttachWindowBlock(key, g, w.blocks()[i]);
    }
  }
}

void Engine::ReserveWindowBlocks(const std::vector<uint32_t>& need) {
  if (!cache_) return;
  for (size_t g = 0; g < need.size() && g < window_pools_.size(); ++g) {
    while (window_pools_[g]->n_free() < need[g] && cache_->EvictWindowBlock(g)) {
    }
  }
}

void Engine::Deliver(SeqState& seq, int32_t token, absl::string_view text) {
  Request& r = *seq.request;
  {
    std::lock_guard<std::mutex> lock(mu_);
    SampleOutput& o = r.out.samples[seq.sample];
    if (token != kNoToken) o.tokens.push_back(token);
    o.text.append(text.data(), text.size());
    if (token != kNoToken && !r.first_token) {
      r.first_token = true;
      r.out.ttft_ms = MsBetween(r.submitted, Clock::now());
    }
  }
}

LogprobsRequest Engine::LogprobsFor(const SeqState& seq) {
  const EngineRequest& req = seq.request->req;
  if (!req.on_logprobs) return {};
  // The request outlives its sequences (each SeqState holds it).
  return {req.n_probs, [r = seq.request.get(), sample = seq.sample](const TokenLogprobs& lp) {
            r->req.on_logprobs(r->id, sample, lp);
          }};
}

TokenSink Engine::SinkFor(SeqState& seq) {
  return [this, &seq](int32_t token, absl::string_view text) {
    if (token != kNoToken) ++work_stats_.generated_tokens;
    Deliver(seq, token, text);
    const auto& callback = seq.request->req.on_token;
    return callback ? callback(seq.request->id, seq.sample, token, text) : true;
  };
}

void Engine::FinishSequence(SeqState& seq, StopReason reason) {
  if (seq.done) return;
  seq.done = true;
  Request& r = *seq.request;
  if (reason == StopReason::kEos || reason == StopReason::kCancelled) seq.seq->FlushHeld(SinkFor(seq));
  std::lock_guard<std::mutex> lock(mu_);
  // A parent that ends before forking ends its unborn samples too.
  std::vector<uint32_t> samples = {seq.sample};
  for (uint32_t i = 0; i < seq.forks_pending; ++i) samples.push_back(seq.sample + 1 + i);
  seq.forks_pending = 0;
  for (uint32_t s : samples) {
    SampleOutput& o = r.out.samples[s];
    if (o.done) continue;
    o.done = true;
    o.stop_reason = reason;
    --r.live_samples;
  }
  if (reason == StopReason::kCancelled && r.out.state != RequestState::kFailed) {
    r.out.state = RequestState::kCancelled;
    r.out.status = absl::CancelledError(absl::StrFormat(
        "request %u was cancelled by kestrel_engine_cancel", r.id));
  }
  if (r.live_samples == 0) {
    if (r.out.state != RequestState::kCancelled && r.out.state != RequestState::kFailed) {
      r.out.state = RequestState::kFinished;
    }
    r.out.total_ms = MsBetween(r.submitted, Clock::now());
    --n_unfinished_;
    ++published_.n_finished;
    done_cv_.notify_all();
  }
}

void Engine::FailSequence(SeqState& seq, const absl::Status& status) {
  seq.request->failed = true;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Request& r = *seq.request;
    if (r.out.state != RequestState::kFailed) {
      r.out.state = RequestState::kFailed;
      r.out.status = status;
    }
  }
  FinishSequence(seq, StopReason::kNone);
}

bool Engine::SampleNext(SeqState& seq, const float* logits) {
  Sequence& core = *seq.seq;
  StopReason reason = core.BeforeSample();
  if (reason == StopReason::kNone) {
    absl::StatusOr<int32_t> next = core.Sample(absl::MakeConstSpan(logits, model_->config().n_vocab));
    if (!next.ok()) {
      FailSequence(seq, next.status());
      return false;
    }
    reason = core.Emit(*next, SinkFor(seq));
  }
  if (reason == StopReason::kNone) return true;
  FinishSequence(seq, reason);
  return false;
}

void Engine::RetireSequence(SeqState* seq) {
  ReleaseBlocks(*seq);
  DropSwap(&seq->swapped);
}

void Engine::Constrain(Sequence& seq, const EngineRequest& req) {
  if (!req.grammar) return;
  if (!grammar_vocab_) grammar_vocab_ = BuildGrammarVocab(model_->tokenizer());
  seq.Constrain(req.grammar, grammar_vocab_);
}

std::unique_ptr<Speculator> Engine::MakeSpeculator(const EngineRequest& req) {
  const SpecConfig& config = req.spec;
  // Drafts are not grammar-checked: constrained requests decode one token per step.
  if (config.method == SpecMethod::kOff || req.grammar) return nullptr;
  absl::StatusOr<std::unique_ptr<Speculator>> sp =
      Speculator::Create(config, model_, fallback_, context_length_);
  return sp.ok() ? std::move(*sp) : nullptr;
}

void Engine::ProposeTree(SeqState& seq, uint32_t room) {
  Sequence& core = *seq.seq;
  const uint32_t n_past = core.n_computed();
  const uint32_t left = core.policy().max_new_tokens - std::min(core.n_generated(), core.policy().max_new_tokens);
  room = std::min<uint64_t>({room, uint64_t{context_length_} - std::min(context_length_, n_past + 1),
                             left > 0 ? left - 1 : 0});
  if (max_step_ > 0) room = std::min(room, max_step_ - 1);  // the window groups' step cap
  if (!seq.spec->Propose(core, room, !executor_->SupportsTreeMask(), &seq.tree).ok()) {
    seq.tree.Clear();
  }
  seq.verify_tokens.assign(1, core.pending()[0]);
  seq.verify_parents.assign(1, -1);
  for (size_t i = 0; i < seq.tree.size(); ++i) {
    seq.verify_tokens.push_back(seq.tree.tokens[i]);
    seq.verify_parents.push_back(seq.tree.parents[i] + 1);
  }
}

void Engine::FinishSpeculativeStep(SeqState& seq, const float* rows, const float* hidden,
                                   double step_ms) {
  Sequence& core = *seq.seq;
  const uint32_t T = static_cast<uint32_t>(seq.verify_tokens.size());
  const uint32_t n_past = core.n_computed() - T;
  seq.spec->RecordStep(T, step_ms, T > 1);
  StopReason reason = core.BeforeSample();
  if (reason == StopReason::kNone) {
    VerifyOutcome outcome;
    absl::Status s = seq.spec->Verify(core, seq.tree, rows, model_->config().n_vocab, &outcome);
    if (s.ok()) s = executor_->CopySlots(KvPlan(core.table(), n_past, outcome.accepted));
    for (size_t g = 0; s.ok() && seq.windows && g < seq.windows->size(); ++g) {
      s = executor_->CopySlots(KvPlan(seq.windows->table(g), n_past, outcome.accepted),
                               static_cast<uint32_t>(g + 1));
    }
    if (!s.ok()) {
      FailSequence(seq, s);
      return;
    }
    reason = Commit(core, n_past, outcome, SinkFor(seq), nullptr);
    if (seq.windows) seq.windows->Truncate(core.n_computed());
    if (hidden != nullptr) {
      // The hidden state of the last position kept in the KV (the pending token's row: 0).
      const uint32_t kv_last = core.n_computed() - 1 - n_past;
      const size_t keep = kv_last == 0 ? 0 : 1 + static_cast<size_t>(outcome.accepted[kv_last - 1]);
      const size_t D = model_->config().n_embd;
      seq.spec->SetHidden(hidden + keep * D, D);
    }
  } else {
    core.table().Truncate(n_past + 1);
    if (seq.windows) seq.windows->Truncate(n_past + 1);
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    SpecStats& st = seq.request->out.spec;
    st.Add(seq.spec->stats());
  }
  seq.spec->ResetStats();
  if (reason != StopReason::kNone) FinishSequence(seq, reason);
}

absl::Status Engine::Step(uint32_t* n_active) {
  if (OnStepThread()) {
    return absl::FailedPreconditionError(
        "kestrel_engine_step: called from inside a streaming callback of the same engine");
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (thread_running_) {
      return absl::FailedPreconditionError(
          "kestrel_engine_step: the engine thread is running (kestrel_engine_start); stop it "
          "first or use kestrel_engine_wait");
    }
  }
  std::lock_guard<std::mutex> step_lock(step_mu_);
  step_thread_.store(std::this_thread::get_id(), std::memory_order_relaxed);
  absl::Status s = StepLocked(n_active);
  step_thread_.store(std::thread::id(), std::memory_order_relaxed);
  return s;
}

uint32_t Engine::StepChunk(const Sequence& seq, uint32_t budget) const {
  const uint32_t chunk = std::min<uint32_t>(seq.n_pending(), budget);
  return max_step_ > 0 ? std::min(chunk, max_step_) : chunk;
}

absl::Status Engine::StepLocked(uint32_t* n_active) {
  TakeSubmissions();
  ApplyCancels();
  auto sweep = [this]() {
    // Drops done sequences (cancelled, failed or finished) and frees their blocks.
    for (auto* list : {&running_, &waiting_}) {
      for (auto& s : *list) {
        if (!s->done && s->request->failed) FinishSequence(*s, StopReason::kNone);
        if (s->done) RetireSequence(s.get());
      }
      list->erase(std::remove_if(list->begin(), list->end(),
                                 [](const std::unique_ptr<SeqState>& s) { return s->done; }),
                  list->end());
    }
  };
  sweep();
  const auto t0 = Clock::now();
  absl::Status result;
  auto by_rank = [](const std::unique_ptr<SeqState>& a, const std::unique_ptr<SeqState>& b) {
    return a->RanksBefore(*b);
  };
  std::stable_sort(running_.begin(), running_.end(), by_rank);
  std::stable_sort(waiting_.begin(), waiting_.end(), by_rank);

  std::vector<SeqState*> scheduled;
  std::vector<int32_t> copies;  // copy-on-write pairs, run before the step
  uint32_t budget = config_.max_batch_tokens;
  const uint64_t preemptions_before = work_stats_.preemptions;

  // 1. Decodes first: one token for each running sequence that has sampled (rank order), plus
  // its draft tree when it speculates (never more than leaves one token for each later decode,
  // and never at the price of a preemption). A sequence about to write into a block it shares (a
  // fork's partial prompt block) copies it.
  uint32_t decodes_left = 0;
  bool any_spec = false;
  // The batch's mean shadow estimate of the tokens a capped draft would get accepted per
  // sequence (the cost of drafting is the batch's, so is the gain that must pay for it).
  double predicted = 0;
  uint32_t n_gated = 0;
  for (auto& r : running_) {
    decodes_left += r->prefilled ? 1 : 0;
    // The gate decides for `auto` requests; a fixed method always drafts, as in a session.
    const bool gated =
        r->prefilled && r->spec != nullptr && r->request->req.spec.method == SpecMethod::kAuto;
    any_spec |= gated;
    if (gated) {
      predicted += r->spec->ShadowAccepted();
      ++n_gated;
    }
  }
  if (n_gated > 0) predicted /= n_gated;
  // Whether this step's speculating sequences draft at all: the gate compares the batch's
  // tokens per ms with and without drafts (their per-sequence controllers cannot see the
  // batch's cost).
  const uint32_t draft_cap = any_spec ? gate_.DraftCap(predicted) : ThroughputGate::kOff;
  const uint64_t generated_before = work_stats_.generated_tokens;
  bool had_prefill = false;  // prefill chunks make a step's rate incomparable
  for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
    SeqState* seq = running_[i].get();
    if (!seq->prefilled) continue;
    --decodes_left;
    BlockTable& table = seq->seq->table();
    seq->spec_step = seq->spec != nullptr;
    uint32_t T = 1;
    if (seq->spec_step) {
      const uint32_t cap = seq->request->req.spec.method == SpecMethod::kAuto ? draft_cap
                                                                              : ThroughputGate::kUncapped;
      ProposeTree(*seq, std::min(cap, budget > 1 + decodes_left ? budget - 1 - decodes_left : 0));
      T = static_cast<uint32_t>(seq->verify_tokens.size());
      if (AvailableBlocks() < table.BlocksToWrite(uint64_t{table.n_tokens()} + T)) {
        seq->tree.Clear();  // no room for the draft: a plain step through the verifier
        seq->verify_tokens.resize(1);
        seq->verify_parents.resize(1);
        T = 1;
      }
    }
    const uint64_t end = uint64_t{table.n_tokens()} + T;
    const uint32_t need = table.BlocksToWrite(end);
    bool self_preempted = false;
    while (AvailableBlocks() < need) {
      SeqState* victim = running_.back().get();  // lowest rank, latest arrival
      Preempt(victim);
      if (victim == seq) {
        self_preempted = true;
        break;
      }
    }
    if (self_preempted) break;  // it was the last in rank order
    EnsureFree(need);
    if (auto st = table.MakeWritable(end, &copies); !st.ok()) return st;  // cannot happen
    seq->chunk = T;
    budget -= T;
    scheduled.push_back(seq);
  }
  // 2. Prefill chunks of admitted sequences, in rank order, with what is left of the budget.
  for (auto& s : running_) {
    if (budget == 0) break;
    if (s->prefilled) continue;
    s->spec_step = false;
    had_prefill = true;
    s->chunk = StepChunk(*s->seq, budget);
    budget -= s->chunk;
    scheduled.push_back(s.get());
  }
  // 3. Admit waiting sequences in rank order (strict: a head that does not fit blocks the rest),
  // not in a step that had to preempt (it would only thrash).
  if (work_stats_.preemptions == preemptions_before) {
    uint32_t n_seqs = static_cast<uint32_t>(running_.size());
    while (budget > 0 && !waiting_.empty()) {
      SeqState* seq = waiting_.front().get();
      if (n_seqs + 1 + seq->forks_pending > config_.max_sequences) break;
      if (!Admit(seq)) break;
      n_seqs += 1 + seq->forks_pending;
      running_.push_back(std::move(waiting_.front()));
      waiting_.erase(waiting_.begin());
      seq->spec_step = false;
      had_prefill = true;
      seq->chunk = StepChunk(*seq->seq, budget);
      budget -= seq->chunk;
      scheduled.push_back(seq);
    }
  }

  if (!scheduled.empty()) {
    // The window pools are sized for the sequences: the prefix cache's window blocks make room
    // for this step's (the most each sequence's Append may allocate).
    if (!window_pools_.empty()) {
      std::vector<uint32_t> window_need(window_pools_.size(), 0);
      for (SeqState* s : scheduled) {
        const uint64_t end = uint64_t{s->seq->n_computed()} + s->chunk;
        for (size_t g = 0; s->windows && g < window_need.size(); ++g) {
          window_need[g] += s->windows->table(g).BlocksToWrite(end);
        }
      }
      ReserveWindowBlocks(window_need);
    }
    // One model run over every scheduled token of every sequence.
    step_.Reset();
    std::vector<std::vector<int32_t>> window_copies(window_pools_.size());
    std::vector<std::vector<int32_t>> seq_copies;
    for (SeqState* s : scheduled) {
      Sequence& core = *s->seq;
      const uint32_t n_past = core.n_computed();
      const absl::Span<const int32_t> chunk = core.pending().subspan(0, s->chunk);
      const bool last = s->chunk == core.n_pending();
      // Room is reserved (prefill) or made writable (decode) above, so this cannot fail.
      (void)core.table().Append(s->chunk);
      if (s->windows) {
        // Drops the blocks before the window and makes the step's slots writable (a fork's
        // shared partial block is copied); each sequence's share of the window pools holds
        // window + one step of at most max_step_ tokens, so this cannot fail either.
        (void)s->windows->Append(n_past, s->chunk, &seq_copies);
        for (size_t g = 0; g < seq_copies.size(); ++g) {
          window_copies[g].insert(window_copies[g].end(), seq_copies[g].begin(), seq_copies[g].end());
          seq_copies[g].clear();
        }
      }
      absl::StatusOr<int32_t> row;
      if (s->prefilled && s->spec_step) {
        row = step_.Add({&core.table(), n_past, s->verify_tokens, s->verify_parents, LogitRows::kAll,
                         s->windows.get()});
      } else {
        row = step_.Add({&core.table(), n_past, chunk, {}, last ? LogitRows::kLast : LogitRows::kNone,
                         s->windows.get()});
      }
      s->logit_row = row.ok() ? *row : -1;
      s->token_offset = static_cast<uint32_t>(step_.n_tokens()) - s->chunk;
    }
    const StepInputs& in = step_.Finish();
    const auto run_t0 = Clock::now();
    absl::Status run = executor_->CopyBlocks(copies);
    for (size_t g = 0; run.ok() && g < window_copies.size(); ++g) {
      if (!window_copies[g].empty()) run = executor_->CopyBlocks(window_copies[g], static_cast<uint32_t>(g + 1));
    }
    if (run.ok()) run = executor_->Run(in, &logits_);
    const double run_ms = MsBetween(run_t0, Clock::now());
    // The prefill rate recompute would run at, for the swap cost model.
    if (run.ok() && had_prefill) swap_cost_.RecordCompute(in.tokens.size(), run_ms);
    if (!run.ok()) {
      // The step's sequences fail with the device's status; the engine itself stays usable.
      for (SeqState* s : scheduled) FailSequence(*s, run);
      result = run;
    } else {
      const size_t V = model_->config().n_vocab;
      const size_t D = model_->config().n_embd;
      // The hidden states, read back only when a proposer reads them (Medusa heads).
      bool want_hidden = false;
      for (SeqState* s : scheduled) want_hidden |= s->spec != nullptr && s->spec->needs_hidden();
      if (want_hidden && !executor_->ReadHidden(&hidden_).ok()) want_hidden = false;
      std::vector<std::unique_ptr<SeqState>> born;
      for (SeqState* s : scheduled) {
        const float* hidden =
            want_hidden && s->spec && s->spec->needs_hidden() ? hidden_.data() + s->token_offset * D : nullptr;
        if (s->prefilled) {
          work_stats_.decode_tokens += s->chunk;
        } else {
          work_stats_.prefill_tokens_computed += s->chunk;
        }
        if (s->prefilled && s->spec_step && !s->done) {
          FinishSpeculativeStep(*s, logits_.data() + size_t(s->logit_row) * V, hidden, run_ms);
          CacheFullBlocks(*s);
          continue;
        }
        CacheFullBlocks(*s);
        if (s->logit_row < 0 || s->done) continue;
        s->prefilled = true;
        if (hidden != nullptr) s->spec->SetHidden(hidden + (s->chunk - 1) * D, D);
        const float* row = logits_.data() + size_t(s->logit_row) * V;
        // Fork: the other samples start here, sharing every block (the partial last one too,
        // copy-on-write at their first decode).
        for (uint32_t k = 1; k <= s->forks_pending; ++k) {
          auto child = std::make_unique<SeqState>();
          child->request = s->request;
          child->sample = s->sample + k;
          child->priority = s->priority;
          child->arrival = s->arrival;
          SamplerConfig sc = s->request->req.sampler;
          sc.seed += k;
          child->seq = std::make_unique<Sequence>(pool_.get(), &model_->tokenizer(),
                                                  *Sampler::Create(sc));
          child->seq->AddTokens(s->seq->tokens());
          child->seq->Begin(s->seq->policy(), s->seq->n_prompt(), LogprobsFor(*child));
          Constrain(*child->seq, s->request->req);
          s->seq->table().ShareInto(&child->seq->table());
          child->windows = MakeWindowTables();
          if (child->windows) s->windows->ShareInto(child->windows.get());
          child->keys = s->keys;
          child->prefilled = true;
          child->spec = MakeSpeculator(s->request->req);
          if (hidden != nullptr && child->spec) child->spec->SetHidden(hidden + (s->chunk - 1) * D, D);
          SampleNext(*child, row);
          born.push_back(std::move(child));
        }
        s->forks_pending = 0;
        SampleNext(*s, row);
      }
      for (auto& c : born) running_.push_back(std::move(c));
    }
    const double step_ms = MsBetween(t0, Clock::now());
    work_stats_.busy_ms += step_ms;
    if (any_spec && !had_prefill && result.ok()) {
      gate_.Record(draft_cap, work_stats_.generated_tokens - generated_before, step_ms);
    }
    ++work_stats_.steps;
  }
  sweep();
  PublishStats();
  std::lock_guard<std::mutex> lock(mu_);
  if (n_active != nullptr) *n_active = n_unfinished_;
  done_cv_.notify_all();
  return result;
}

void Engine::PublishStats() {
  EngineStats st = work_stats_;
  st.kv_blocks_total = n_blocks_;
  st.kv_blocks_free = pool_->n_free();
  st.kv_blocks_used = n_blocks_ - st.kv_blocks_free;
  st.kv_blocks_cached = cache_ ? cache_->NumEvictable() : 0;
  st.kv_block_size = config_.block_size;
  st.kv_window_groups = static_cast<uint32_t>(window_pools_.size());
  st.kv_window_blocks_total = st.kv_window_blocks_used = 0;
  for (const auto& p : window_pools_) {
    st.kv_window_blocks_total += p->n_blocks();
    st.kv_window_blocks_used += p->n_blocks() - p->n_free();
  }
  st.kv_window_bytes = window_bytes_;
  st.kv_window_step_tokens = max_step_;
  st.kv_window_blocks_cached = 0;
  for (size_t g = 0; cache_ && g < window_pools_.size(); ++g) {
    st.kv_window_blocks_cached += cache_->NumWindowCached(g);
  }
  work_stats_.kv_window_blocks_peak = std::max(work_stats_.kv_window_blocks_peak, st.kv_window_blocks_used);
  st.kv_window_blocks_peak = work_stats_.kv_window_blocks_peak;
  if (swap_ != nullptr) {
    st.kv_swap_held_bytes = swap_->held_bytes();
    st.kv_swap_peak_bytes = swap_->peak_bytes();
    st.kv_swap_budget_bytes = swap_->budget_bytes();
  }
  // Waste: slots of used blocks that hold no computed token (a shared block counts once).
  const uint32_t bs = config_.block_size;
  std::unordered_map<int32_t, uint32_t> filled;
  for (auto& s : running_) {
    const BlockTable& table = s->seq->table();
    for (size_t i = 0; i < table.blocks().size(); ++i) {
      const uint64_t start = uint64_t{i} * bs;
      const uint32_t f = table.n_tokens() > start
                             ? static_cast<uint32_t>(std::min<uint64_t>(bs, table.n_tokens() - start))
                             : 0;
      uint32_t& v = filled[table.blocks()[i]];
      v = std::max(v, f);
    }
  }
  uint64_t filled_slots = uint64_t{st.kv_blocks_cached} * bs;
  for (auto& [b, f] : filled) filled_slots += f;
  const uint64_t used_slots = uint64_t{st.kv_blocks_used} * bs;
  st.kv_waste_fraction =
      used_slots > 0 ? 1.0 - static_cast<double>(std::min(filled_slots, used_slots)) / used_slots
                     : 0.0;
  std::unordered_map<uint64_t, bool> reqs;  // request id -> running?
  for (auto& s : running_) reqs[s->request->id] = true;
  uint32_t n_running = static_cast<uint32_t>(reqs.size()), n_waiting = 0;
  for (auto& s : waiting_) {
    if (reqs.emplace(s->request->id, false).second) ++n_waiting;
  }
  std::lock_guard<std::mutex> lock(mu_);
  st.n_finished = published_.n_finished;
  st.n_running = n_running;
  st.n_waiting = n_waiting;
  published_ = st;
}

EngineStats Engine::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  EngineStats st = published_;
  st.n_waiting += static_cast<uint32_t>(submitted_.size());
  // The request counts are current (engine.h): a request that ended inside the step now running
  // (a cancel, say) is no longer running or waiting, although the snapshot from the last step's
  // end still counts it and its blocks are freed at this step's end.
  const uint64_t unfinished = n_unfinished_;
  st.n_running = static_cast<uint32_t>(std::min<uint64_t>(st.n_running, unfinished));
  st.n_waiting = static_cast<uint32_t>(std::min<uint64_t>(st.n_waiting, unfinished - st.n_running));
  return st;
}

bool Engine::IdleLocked() const { return n_unfinished_ == 0 && cancels_.empty(); }

absl::Status Engine::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (thread_running_) return absl::OkStatus();
  stop_thread_ = false;
  thread_running_ = true;
  try {
    thread_ = std::thread([this] { ThreadMain(); });
  } catch (const std::system_error& e) {
    thread_running_ = false;
    return absl::ResourceExhaustedError(
        absl::StrCat("kestrel_engine_start: cannot start the engine thread: ", e.what()));
  }
  return absl::OkStatus();
}

void Engine::Stop() {
  std::thread t;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!thread_running_) return;
    stop_thread_ = true;
    work_cv_.notify_all();
    t = std::move(thread_);
  }
  if (t.joinable()) t.join();
  std::lock_guard<std::mutex> lock(mu_);
  thread_running_ = false;
  done_cv_.notify_all();
}

void Engine::ThreadMain() {
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [this] { return stop_thread_ || !IdleLocked(); });
      if (stop_thread_) return;
    }
    std::lock_guard<std::mutex> step_lock(step_mu_);
    step_thread_.store(std::this_thread::get_id(), std::memory_order_relaxed);
    uint32_t n_active = 0;
    (void)StepLocked(&n_active);  // failures are reported to the step's requests
    step_thread_.store(std::thread::id(), std::memory_order_relaxed);
  }
}

absl::Status Engine::Wait(uint64_t id, int64_t timeout_ms) {
  if (OnStepThread()) {
    return absl::FailedPreconditionError(
        "kestrel_engine_wait: called from inside a streaming callback of the same engine");
  }
  const auto deadline = timeout_ms < 0 ? Clock::time_point::max()
                                       : Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      std::shared_ptr<Request> req;
      if (id != 0) {
        auto it = requests_.find(id);
        if (it == requests_.end()) {
          return absl::NotFoundError(
              absl::StrFormat("kestrel_engine_wait: request_id %u is unknown or released", id));
        }
        req = it->second;
      }
      auto done = [&]() { return req ? req->live_samples == 0 : n_unfinished_ == 0; };
      if (done()) return req ? req->out.status : absl::OkStatus();
      if (Clock::now() >= deadline) {
        return absl::DeadlineExceededError(absl::StrFormat(
            "kestrel_engine_wait: request_id %u not done after %d ms", id, timeout_ms));
      }
      if (thread_running_) {
        if (deadline == Clock::time_point::max()) {
          done_cv_.wait(lock);
        } else {
          done_cv_.wait_until(lock, deadline);
        }
        continue;
      }
    }
    uint32_t n_active = 0;
    absl::Status s = Step(&n_active);
    if (!s.ok() && s.code() == absl::StatusCode::kFailedPrecondition) {
      // The engine thread started meanwhile: wait for it instead.
      std::unique_lock<std::mutex> lock(mu_);
      done_cv_.wait_for(lock, std::chrono::milliseconds(1));
    }
  }
}

absl::Status Engine::Cancel(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = requests_.find(id);
  if (it == requests_.end()) {
    return absl::NotFoundError(
        absl::StrFormat("kestrel_engine_cancel: request_id %u is unknown or released", id));
  }
  if (it->second->live_samples == 0) return absl::OkStatus();
  cancels_.push_back(id);
  work_cv_.notify_all();
  return absl::OkStatus();
}

absl::Status Engine::Release(uint64_t id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = requests_.find(id);
    if (it == requests_.end()) {
      return absl::NotFoundError(absl::StrFormat(
          "kestrel_engine_release_request: request_id %u is unknown or released", id));
    }
    if (it->second->live_samples == 0) {
      requests_.erase(it);
      return absl::OkStatus();
    }
    cancels_.push_back(id);
    work_cv_.notify_all();
  }
  // Not done yet: let the cancellation take effect (a step on this thread, or the engine
  // thread's), then forget it. Sequences keep the request alive through their shared_ptr.
  absl::Status s = Wait(id, -1);
  (void)s;
  std::lock_guard<std::mutex> lock(mu_);
  requests_.erase(id);
  return absl::OkStatus();
}

absl::StatusOr<RequestOutput> Engine::Result(uint64_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = requests_.find(id);
  if (it == requests_.end()) {
    return absl::NotFoundError(absl::StrFormat("request_id %u is unknown or released", id));
  }
  RequestOutput out = it->second->out;
  if (it->second->live_samples > 0) out.total_ms = MsBetween(it->second->submitted, Clock::now());
  return out;
}

}  // namespace runtime
}  // namespace kestrel
