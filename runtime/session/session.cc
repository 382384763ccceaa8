#include "runtime/session/session.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/plan/execution_plan.h"

namespace kestrel {
namespace runtime {
namespace {

double MsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Session>> Session::Create(const Model* model,
                                                         hal::Device* fallback,
                                                         const SessionConfig& config) {
  std::unique_ptr<Session> s(new Session());
  s->model_ = model;
  const uint32_t trained = model->config().context_length;
  s->context_length_ = config.context_length == 0 ? trained : config.context_length;
  constexpr uint32_t kMaxContext = 1u << 22;
  if (s->context_length_ > kMaxContext) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "session context_length = %u exceeds the supported maximum %u", s->context_length_, kMaxContext));
  }
  if (config.block_size == 0 || config.block_size > 4096 ||
      (config.block_size & (config.block_size - 1)) != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "session kv_block_size = %u must be a power of two in [1, 4096]", config.block_size));
  }
  if (config.kv_dtype != KESTREL_DTYPE_F32 && config.kv_dtype != KESTREL_DTYPE_F16) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "session KV cache dtype %u is neither F32 nor F16", config.kv_dtype));
  }
  if (config.n_threads > 4096) {
    return absl::InvalidArgumentError(
        absl::StrFormat("session n_threads = %u is larger than 4096", config.n_threads));
  }
  if (config.n_threads > 0) {
    // Thread count is a device setting (plugin ABI 1.1); plugins without threads ignore it.
    if (auto st = model->device()->SetOptions({{"threads", absl::StrCat(config.n_threads)}}); !st.ok()) {
      return st;
    }
  }
  absl::StatusOr<Sampler> sampler = Sampler::Create(config.sampler);
  if (!sampler.ok()) return sampler.status();
  const uint32_t n_blocks = (s->context_length_ + config.block_size - 1) / config.block_size;
  s->pool_ = std::make_unique<BlockPool>(n_blocks, config.block_size);
  s->seq_ = std::make_unique<Sequence>(s->pool_.get(), &model->tokenizer(), std::move(*sampler));
  PlanOptions plan_options;
  plan_options.block_size = config.block_size;
  plan_options.n_blocks = n_blocks;
  plan_options.kv_dtype = config.kv_dtype;
  plan_options.context_length = s->context_length_;
  // The final hidden state is only marked in the plan (free) and read back on request: by
  // kestrel_session_get_hidden, kestrel_session_embed and speculative proposers that read it
  // (Medusa heads).
  plan_options.hidden = HiddenState::kPostNorm;
  // Sliding-window layers keep only their window's KV (steps of at most one window, so a pool of
  // about two windows suffices) when that is smaller than the full context.
  uint32_t window = 0;
  for (const LayerConfig& l : model->config().layers) window = std::max(window, l.sliding_window);
  if (window > 0) {
    const uint32_t blocks = WindowTables::BlocksNeeded(window, window, config.block_size);
    if (blocks < n_blocks) {
      plan_options.window_kv_blocks = blocks;
      s->max_step_ = window;
    }
  }
  absl::StatusOr<ExecutionPlan> plan = model->BuildPlan(plan_options);
  if (!plan.ok()) return plan.status();
  if (plan->kv_groups.size() > 1) {
    std::vector<WindowTables::Group> groups;
    for (size_t g = 1; g < plan->kv_groups.size(); ++g) {
      groups.push_back({plan->kv_groups[g].window, plan->kv_groups[g].n_blocks});
    }
    s->window_tables_ = std::make_unique<WindowTables>(groups, config.block_size);
  } else {
    s->max_step_ = 0;
  }
  absl::StatusOr<std::unique_ptr<Executor>> exec =
      Executor::Create(model, std::move(*plan), model->device(), fallback);
  if (!exec.ok()) return exec.status();
  s->executor_ = std::move(*exec);
  absl::StatusOr<std::unique_ptr<Speculator>> spec =
      Speculator::Create(config.spec, model, fallback, s->context_length_);
  if (!spec.ok()) return spec.status();
  s->spec_ = std::move(*spec);
  return s;
}

Session::~Session() {
  seq_.reset();
  window_tables_.reset();
}

std::vector<uint32_t> Session::kv_blocks_held() const {
  std::vector<uint32_t> held = {seq_->table().n_held_blocks()};
  for (size_t g = 0; window_tables_ && g < window_tables_->size(); ++g) {
    held.push_back(window_tables_->table(g).n_held_blocks());
  }
  return held;
}

absl::Status Session::AppendKv(uint32_t n) {
  BlockTable& table = seq_->table();
  const uint32_t n_past = table.n_tokens();
  if (auto s = table.Append(n); !s.ok()) return s;
  if (window_tables_) {
    if (auto s = window_tables_->Append(n_past, n); !s.ok()) {
      table.Truncate(n_past);
      return s;
    }
  }
  return absl::OkStatus();
}

void Session::RollBack(uint32_t n_past) {
  if (window_tables_ && !window_tables_->CanTruncateTo(n_past)) n_past = 0;
  seq_->table().Truncate(n_past);
  if (window_tables_) window_tables_->Truncate(n_past);
}

absl::Status Session::CheckTokens(absl::Span<const int32_t> tokens) const {
  const int32_t vocab = static_cast<int32_t>(model_->config().n_vocab);
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= vocab) {
      return absl::OutOfRangeError(absl::StrFormat(
          "token #%u has id %d, outside the vocab [0, %d)", i, tokens[i], vocab));
    }
  }
  return absl::OkStatus();
}

absl::Status Session::RunPending() {
  const uint32_t n_past = seq_->n_computed();
  const absl::Span<const int32_t> pending = seq_->pending();
  if (pending.empty()) return absl::InvalidArgumentError("decode: no tokens given");
  if (uint64_t{n_past} + pending.size() > context_length_) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "decode: %u tokens after the %u already in the session exceed its context length %u",
        pending.size(), n_past, context_length_));
  }
  if (max_step_ == 0 || pending.size() <= max_step_) {
    return RunPendingStep(static_cast<uint32_t>(pending.size()));
  }
  // Window groups are sized for steps of max_step_ tokens: run longer inputs in pieces. A piece
  // that fails after others succeeded may have dropped window KV the original context needs;
  // RollBack then empties the session.
  const uint32_t total = static_cast<uint32_t>(pending.size());
  for (uint32_t done = 0; done < total; done += max_step_) {
    const absl::Status s = RunPendingStep(std::min(max_step_, total - done));
    if (!s.ok()) {
      RollBack(n_past);
      if (seq_->n_computed() != n_past) {
        return absl::Status(s.code(), absl::StrCat(s.message(), " (the session's context was cleared: "
                                                   "its sliding-window KV had moved past it)"));
      }
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status Session::RunPendingStep(uint32_t n) {
  const uint32_t n_past = seq_->n_computed();
  const absl::Span<const int32_t> tokens = seq_->pending().subspan(0, n);  // before the KV grows
  if (auto s = AppendKv(n); !s.ok()) return s;
  step_.Reset();
  absl::StatusOr<int32_t> row =
      step_.Add({&seq_->table(), n_past, tokens, {}, LogitRows::kLast, window_tables_.get()});
  has_logits_ = false;
  absl::Status s = row.status();
  if (s.ok()) s = executor_->Run(step_.Finish(), &logits_);
  if (!s.ok()) {
    RollBack(n_past);  // the failed step's tokens are not part of the context
    return s;
  }
  last_step_tokens_ = n;
  has_logits_ = true;
  return absl::OkStatus();
}

absl::Status Session::SpeculativeStep(const TokenSink& sink, StopReason* stop,
                                      uint32_t* n_emitted) {
  Sequence& seq = *seq_;
  const uint32_t n_past = seq.n_computed();
  if (seq.n_pending() != 1) return absl::InternalError("speculative step: expected one pending token");
  const uint32_t left = seq.policy().max_new_tokens - seq.n_generated();
  uint32_t room = std::min<uint64_t>(context_length_ - n_past - 1, left > 0 ? left - 1 : 0);
  if (max_step_ > 0) room = std::min(room, max_step_ - 1);  // the window groups' step cap
  if (auto s = spec_->Propose(seq, room, !executor_->SupportsTreeMask(), &tree_); !s.ok()) return s;
  // The controller compares whole steps (forward, verification, KV moves, emission), not only
  // the forward: that is what a verify step really costs against a plain one.
  const auto t0 = std::chrono::steady_clock::now();
  verify_tokens_.assign(1, seq.pending()[0]);
  verify_parents_.assign(1, -1);
  for (size_t i = 0; i < tree_.size(); ++i) {
    verify_tokens_.push_back(tree_.tokens[i]);
    verify_parents_.push_back(tree_.parents[i] + 1);
  }
  const uint32_t T = static_cast<uint32_t>(verify_tokens_.size());
  if (auto s = AppendKv(T); !s.ok()) return s;
  step_.Reset();
  absl::StatusOr<int32_t> row = step_.Add({&seq.table(), n_past, verify_tokens_, verify_parents_,
                                           LogitRows::kAll, window_tables_.get()});
  has_logits_ = false;
  absl::Status s = row.status();
  if (s.ok()) s = executor_->Run(step_.Finish(), &logits_);
  if (!s.ok()) {
    RollBack(n_past);
    return s;
  }
  const size_t V = model_->config().n_vocab;
  if (s = spec_->Verify(seq, tree_, logits_.data(), V, &outcome_); !s.ok()) {
    RollBack(n_past);
    return s;
  }
  if (s = KeepAcceptedPath(n_past); !s.ok()) {
    RollBack(n_past);
    return s;
  }
  const size_t before = seq.n_generated();
  *stop = Commit(seq, n_past, outcome_, sink,
                 [this] { return cancel_.load(std::memory_order_relaxed); });
  if (window_tables_) window_tables_->Truncate(seq.n_computed());
  *n_emitted = static_cast<uint32_t>(seq.n_generated() - before);
  // The logits of the last position in the KV, as after plain decoding.
  const uint32_t kv_last = seq.n_computed() - 1 - n_past;  // 0: the pending token's row
  const size_t keep = kv_last == 0 ? 0 : 1 + static_cast<size_t>(outcome_.accepted[kv_last - 1]);
  if (keep > 0) std::copy(logits_.begin() + keep * V, logits_.begin() + (keep + 1) * V, logits_.begin());
  logits_.resize(V);
  has_logits_ = true;
  s = FeedHidden(keep);
  spec_->RecordStep(T, MsSince(t0), T > 1);
  return s;
}

absl::Status Session::KeepAcceptedPath(uint32_t n_past) {
  if (auto s = executor_->CopySlots(KvPlan(seq_->table(), n_past, outcome_.accepted)); !s.ok()) {
    return s;
  }
  for (size_t g = 0; window_tables_ && g < window_tables_->size(); ++g) {
    const std::vector<int32_t> pairs = KvPlan(window_tables_->table(g), n_past, outcome_.accepted);
    if (auto s = executor_->CopySlots(pairs, static_cast<uint32_t>(g + 1)); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status Session::FeedHidden(size_t row) {
  if (!spec_ || !spec_->needs_hidden()) return absl::OkStatus();
  if (auto s = executor_->ReadHidden(&hidden_); !s.ok()) return s;
  const size_t D = model_->config().n_embd;
  if ((row + 1) * D > hidden_.size()) return absl::InternalError("hidden state row out of range");
  spec_->SetHidden(hidden_.data() + row * D, D);
  return absl::OkStatus();
}

absl::Status Session::Hidden(uint32_t n_last, std::vector<float>* out) {
  if (!has_logits_ || last_step_tokens_ == 0) {
    return absl::FailedPreconditionError(
        "hidden state: nothing decoded since the session was created, truncated or restored");
  }
  if (auto s = executor_->ReadHidden(&hidden_); !s.ok()) return s;
  const size_t D = model_->config().n_embd;
  const size_t rows = hidden_.size() / D;
  if (n_last > rows) {
    return absl::OutOfRangeError(absl::StrFormat(
        "hidden state: %u positions asked, the last step had %u", n_last, rows));
  }
  const size_t n = n_last == 0 ? rows : n_last;
  out->assign(hidden_.end() - static_cast<std::ptrdiff_t>(n * D), hidden_.end());
  return absl::OkStatus();
}

absl::Status Session::Decode(absl::Span<const int32_t> tokens) {
  if (tokens.empty()) return absl::InvalidArgumentError("decode: no tokens given");
  if (auto s = CheckTokens(tokens); !s.ok()) return s;
  seq_->DropPending();
  seq_->AddTokens(tokens, /*to_sampler=*/false);
  absl::Status s = RunPending();
  if (!s.ok()) seq_->DropPending();
  return s;
}

absl::Status Session::Truncate(uint32_t n_tokens) {
  if (n_tokens > seq_->n_computed()) {
    return absl::OutOfRangeError(absl::StrFormat(
        "truncate to %u tokens: the session holds only %u", n_tokens, seq_->n_computed()));
  }
  if (window_tables_ && !window_tables_->CanTruncateTo(n_tokens)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "truncate to %u tokens: the sliding-window layers no longer hold the KV a query there "
        "reads (they keep only their window); truncate to 0 or to at least %u tokens",
        n_tokens, window_tables_->MinTruncation()));
  }
  if (n_tokens < seq_->n_computed()) has_logits_ = false;
  seq_->Truncate(n_tokens);
  seq_->DropPending();
  if (window_tables_) window_tables_->Truncate(n_tokens);
  return absl::OkStatus();
}

absl::StatusOr<int32_t> Session::Sample() {
  if (!has_logits_) {
    return absl::FailedPreconditionError("sample: no logits (decode something first)");
  }
  return seq_->Sample(logits_);
}

absl::Status Session::Embed(absl::Span<const int32_t> tokens, Pooling pooling, std::vector<float>* out) {
  if (tokens.empty()) return absl::InvalidArgumentError("embed: the text has no tokens");
  if (auto s = CheckTokens(tokens); !s.ok()) return s;
  if (tokens.size() > context_length_) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "embed: the text has %u tokens but the context length is %u", tokens.size(), context_length_));
  }
  auto clear = [this] {
    seq_->Truncate(0);
    seq_->DropPending();
    RollBack(0);
    has_logits_ = false;
    if (spec_) spec_->Reset();
  };
  clear();
  const size_t n_embd = model_->config().n_embd;
  std::vector<double> sum(n_embd, 0.0);
  // Window-capped sessions take at most max_step_ tokens per step; the hidden rows of every step
  // are pooled.
  const size_t step = max_step_ == 0 ? tokens.size() : max_step_;
  absl::Status status;
  for (size_t i = 0; i < tokens.size() && status.ok(); i += step) {
    const absl::Span<const int32_t> chunk = tokens.subspan(i, std::min(step, tokens.size() - i));
    seq_->AddTokens(chunk, /*to_sampler=*/false);
    status = RunPending();
    if (status.ok()) status = executor_->ReadHidden(&hidden_);
    if (status.ok() && hidden_.size() != chunk.size() * n_embd) {
      status = absl::InternalError(absl::StrFormat("embed: the plan read back %u hidden floats for %u tokens of %u",
                                                   hidden_.size(), chunk.size(), n_embd));
    }
    if (!status.ok()) break;
    const size_t first_row = pooling == Pooling::kLast ? chunk.size() - 1 : 0;
    if (pooling == Pooling::kLast) std::fill(sum.begin(), sum.end(), 0.0);
    for (size_t r = first_row; r < chunk.size(); ++r) {
      for (size_t e = 0; e < n_embd; ++e) sum[e] += hidden_[r * n_embd + e];
    }
  }
  clear();
  if (!status.ok()) return status;
  double norm = 0.0;
  for (double v : sum) norm += v * v;
  norm = std::sqrt(norm);
  out->resize(n_embd);
  for (size_t e = 0; e < n_embd; ++e) (*out)[e] = norm > 0 ? static_cast<float>(sum[e] / norm) : 0.0f;
  return absl::OkStatus();
}

absl::StatusOr<GenerateResult> Session::Generate(const GenerateRequest& req) {
  cancel_.store(false, std::memory_order_relaxed);
  GenerateResult r;
  r.n_prompt = static_cast<uint32_t>(req.prompt.size());
  Sequence& seq = *seq_;
  // An empty prompt continues the context the session holds (after a Generate, LoadState or
  // Decode): its pending token is computed first, else its logits are sampled.
  const bool resume = req.prompt.empty() && req.keep_context && (seq.n_pending() > 0 || has_logits_);
  if (req.prompt.empty() && !resume) {
    return absl::InvalidArgumentError(
        req.keep_context ? "generate: the prompt is empty (0 tokens) and the session holds no "
                           "logits to continue from"
                         : "generate: the prompt is empty (0 tokens)");
  }
  if (auto s = CheckTokens(req.prompt); !s.ok()) return s;
  if (!req.keep_context) {
    seq.Truncate(0);
    if (window_tables_) window_tables_->Truncate(0);
    has_logits_ = false;
    seq.sampler().Reset();
  }
  if (!resume) seq.DropPending();
  const uint64_t needed = uint64_t{seq.n_computed()} + seq.n_pending() + req.prompt.size();
  if (needed > context_length_ && resume) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "generate: nothing to continue, the context is full (%u tokens, the context length, and "
        "the token sampled last)", seq.n_computed()));
  }
  if (needed > context_length_) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "generate: the prompt has %u tokens%s but the context length is %u", req.prompt.size(),
        seq.n_computed() ? absl::StrFormat(" (after %u kept tokens)", seq.n_computed()) : "",
        context_length_));
  }
  seq.Begin({req.max_new_tokens, req.stop_strings, context_length_}, r.n_prompt,
            {req.n_probs, req.on_logprobs});
  if (req.grammar) {
    if (!grammar_vocab_) grammar_vocab_ = BuildGrammarVocab(model_->tokenizer());
    seq.Constrain(req.grammar, grammar_vocab_);
  }
  // Drafts are not grammar-checked: a constrained generation decodes one token per step.
  const bool speculate = spec_ && !req.grammar;
  // However the run ends: Session::Sample() after it is unconstrained, and the proposers, which
  // did not follow it, start over from the history (as after LoadState).
  struct Unconstrain {
    Sequence* seq;
    Speculator* spec;
    ~Unconstrain() {
      if (seq == nullptr) return;
      seq->Constrain(nullptr, nullptr);
      if (spec != nullptr) {
        spec->Reset();
        spec->SetHidden(nullptr, 0);
      }
    }
  } unconstrain{req.grammar ? &seq : nullptr, spec_.get()};
  const TokenSink sink = [&](int32_t token, absl::string_view text) {
    if (token != kNoToken) r.tokens.push_back(token);
    r.text.append(text.data(), text.size());
    return req.on_token ? req.on_token(token, text) : true;
  };
  auto t0 = std::chrono::steady_clock::now();
  seq.AddTokens(req.prompt, /*to_sampler=*/false);
  // A pending token of the last generation is in the sampler's window already.
  if (seq.n_pending() > 0) {
    if (auto s = RunPending(); !s.ok()) {
      seq.DropPending();
      return s;
    }
    if (auto s = FeedHidden(last_step_tokens_ - 1); !s.ok()) return s;
  }
  r.prefill_ms = MsSince(t0);
  for (int32_t t : req.prompt) seq.sampler().Accept(t);

  auto t1 = std::chrono::steady_clock::now();
  if (spec_) {
    spec_->ResetStats();
    if (!req.keep_context) spec_->Reset();
  }
  bool first = true;  // the first token comes from the prefill's logits
  while (true) {
    r.stop_reason = seq.BeforeSample();
    if (r.stop_reason != StopReason::kNone) break;
    if (cancel_.load(std::memory_order_relaxed)) {
      r.stop_reason = StopReason::kCancelled;
      seq.FlushHeld(sink);
      break;
    }
    if (speculate && !first) {
      uint32_t emitted = 0;
      if (auto s = SpeculativeStep(sink, &r.stop_reason, &emitted); !s.ok()) return s;
      r.n_decode_steps += emitted;
      if (r.stop_reason != StopReason::kNone) break;
      continue;
    }
    if (!first) ++r.n_decode_steps;
    first = false;
    absl::StatusOr<int32_t> next = seq.Sample(logits_);
    if (!next.ok()) return next.status();
    r.stop_reason = seq.Emit(*next, sink);
    if (r.stop_reason != StopReason::kNone) break;
    if (speculate) continue;  // the next step verifies this token together with a draft
    if (auto s = RunPending(); !s.ok()) return s;
  }
  if (r.stop_reason == StopReason::kCancelled && speculate) seq.FlushHeld(sink);
  if (spec_) r.spec = spec_->stats();

  last_spec_ = r.spec;
  r.n_generated = seq.n_generated();
  r.decode_ms = MsSince(t1);
  return r;
}

}  // namespace runtime
}  // namespace kestrel
