#include "runtime/session/session.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/plan/execution_plan.h"
#include "runtime/session/stream_text.h"

namespace kestrel {
namespace runtime {
namespace {

// Delivers text still held back when generation ends without a final token to carry it.
void FlushHeldBack(StreamText& stream, const GenerateRequest& req, GenerateResult* r) {
  std::string rest = stream.Flush();
  if (rest.empty()) return;
  r->text += rest;
  if (req.on_token) req.on_token(kNoToken, rest);
}

double MsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

const char* StopReasonName(StopReason reason) {
  switch (reason) {
    case StopReason::kEos: return "eos";
    case StopReason::kMaxTokens: return "max_tokens";
    case StopReason::kStopString: return "stop_string";
    case StopReason::kCallback: return "callback";
    case StopReason::kContextFull: return "context_full";
    case StopReason::kCancelled: return "cancelled";
    default: return "none";
  }
}

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
  s->sampler_ = std::make_unique<Sampler>(std::move(*sampler));
  const uint32_t n_blocks = (s->context_length_ + config.block_size - 1) / config.block_size;
  s->pool_ = std::make_unique<BlockPool>(n_blocks, config.block_size);
  s->table_ = std::make_unique<BlockTable>(s->pool_.get());
  PlanOptions plan_options;
  plan_options.block_size = config.block_size;
  plan_options.n_blocks = n_blocks;
  plan_options.kv_dtype = config.kv_dtype;
  plan_options.context_length = s->context_length_;
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
  return s;
}

Session::~Session() {
  table_.reset();
  window_tables_.reset();
}

std::vector<uint32_t> Session::kv_blocks_held() const {
  std::vector<uint32_t> held = {table_->n_held_blocks()};
  for (size_t g = 0; window_tables_ && g < window_tables_->size(); ++g) {
    held.push_back(window_tables_->table(g).n_held_blocks());
  }
  return held;
}

void Session::RollBack(uint32_t n_past) {
  if (window_tables_ && !window_tables_->CanTruncateTo(n_past)) n_past = 0;
  table_->Truncate(n_past);
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

absl::Status Session::Decode(absl::Span<const int32_t> tokens) {
  if (tokens.empty()) return absl::InvalidArgumentError("decode: no tokens given");
  if (auto s = CheckTokens(tokens); !s.ok()) return s;
  const uint32_t n_past = table_->n_tokens();
  if (uint64_t{n_past} + tokens.size() > context_length_) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "decode: %u tokens after the %u already in the session exceed its context length %u",
        tokens.size(), n_past, context_length_));
  }
  if (max_step_ == 0 || tokens.size() <= max_step_) return DecodeStep(tokens);
  // Window groups are sized for steps of max_step_ tokens: run longer inputs in pieces. A piece
  // that fails after others succeeded may have dropped window KV the original context needs;
  // RollBack then empties the session.
  for (size_t i = 0; i < tokens.size(); i += max_step_) {
    const absl::Status s = DecodeStep(tokens.subspan(i, std::min<size_t>(max_step_, tokens.size() - i)));
    if (!s.ok()) {
      RollBack(n_past);
      if (table_->n_tokens() != n_past) {
        return absl::Status(s.code(), absl::StrCat(s.message(), " (the session's context was cleared: "
                                                   "its sliding-window KV had moved past it)"));
      }
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status Session::DecodeStep(absl::Span<const int32_t> tokens) {
  const uint32_t n_past = table_->n_tokens();
  if (auto s = table_->Append(static_cast<uint32_t>(tokens.size())); !s.ok()) return s;
  if (window_tables_) {
    if (auto s = window_tables_->Append(n_past, static_cast<uint32_t>(tokens.size())); !s.ok()) {
      table_->Truncate(n_past);
      return s;
    }
  }
  const int32_t T = static_cast<int32_t>(tokens.size());
  StepInputs& in = step_;
  in.tokens.assign(tokens.begin(), tokens.end());
  in.positions.resize(T);
  in.slots.resize(T);
  for (int32_t i = 0; i < T; ++i) {
    in.positions[i] = static_cast<int32_t>(n_past) + i;
    in.slots[i] = table_->Slot(n_past + i);
  }
  in.block_tables = table_->blocks();
  in.groups.resize(window_tables_ ? window_tables_->size() : 0);
  for (size_t g = 0; g < in.groups.size(); ++g) {
    const BlockTable& t = window_tables_->table(g);
    in.groups[g].slots.resize(T);
    for (int32_t i = 0; i < T; ++i) in.groups[g].slots[i] = t.Slot(n_past + i);
    in.groups[g].block_tables = t.blocks();
  }
  in.n_seqs = 1;
  in.max_blocks = static_cast<int64_t>(in.block_tables.size());
  in.query_start = {0, T};
  in.kv_lens = {static_cast<int32_t>(n_past) + T};
  in.logit_rows = {T - 1};
  has_logits_ = false;
  absl::Status s = executor_->Run(in, &logits_);
  if (!s.ok()) {
    RollBack(n_past);  // the failed step's tokens are not part of the context
    return s;
  }
  has_logits_ = true;
  return absl::OkStatus();
}

absl::Status Session::Truncate(uint32_t n_tokens) {
  if (n_tokens > table_->n_tokens()) {
    return absl::OutOfRangeError(absl::StrFormat(
        "truncate to %u tokens: the session holds only %u", n_tokens, table_->n_tokens()));
  }
  if (window_tables_ && !window_tables_->CanTruncateTo(n_tokens)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "truncate to %u tokens: the sliding-window layers no longer hold the KV a query there "
        "reads (they keep only their window); truncate to 0 or to at least %u tokens",
        n_tokens, window_tables_->MinTruncation()));
  }
  if (n_tokens < table_->n_tokens()) has_logits_ = false;
  table_->Truncate(n_tokens);
  if (window_tables_) window_tables_->Truncate(n_tokens);
  return absl::OkStatus();
}

absl::StatusOr<int32_t> Session::Sample() {
  if (!has_logits_) {
    return absl::FailedPreconditionError("sample: no logits (decode something first)");
  }
  absl::StatusOr<int32_t> t = sampler_->Sample(logits_);
  if (t.ok()) sampler_->Accept(*t);
  return t;
}

absl::StatusOr<GenerateResult> Session::Generate(const GenerateRequest& req) {
  cancel_.store(false, std::memory_order_relaxed);
  GenerateResult r;
  r.n_prompt = static_cast<uint32_t>(req.prompt.size());
  if (req.prompt.empty()) {
    return absl::InvalidArgumentError("generate: the prompt is empty (0 tokens)");
  }
  if (auto s = CheckTokens(req.prompt); !s.ok()) return s;
  if (!req.keep_context) {
    table_->Truncate(0);
    if (window_tables_) window_tables_->Truncate(0);
    has_logits_ = false;
    sampler_->Reset();
  }
  const uint64_t needed = uint64_t{table_->n_tokens()} + req.prompt.size();
  if (needed > context_length_) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "generate: the prompt has %u tokens%s but the context length is %u", req.prompt.size(),
        table_->n_tokens() ? absl::StrFormat(" (after %u kept tokens)", table_->n_tokens()) : "",
        context_length_));
  }
  StreamText stream(req.stop_strings);
  auto t0 = std::chrono::steady_clock::now();
  if (auto s = Decode(req.prompt); !s.ok()) return s;
  r.prefill_ms = MsSince(t0);
  for (int32_t t : req.prompt) sampler_->Accept(t);

  auto t1 = std::chrono::steady_clock::now();
  const Tokenizer& tok = model_->tokenizer();
  while (true) {
    if (r.n_generated >= req.max_new_tokens) {
      r.stop_reason = StopReason::kMaxTokens;
      break;
    }
    if (cancel_.load(std::memory_order_relaxed)) {
      r.stop_reason = StopReason::kCancelled;
      FlushHeldBack(stream, req, &r);
      break;
    }
    absl::StatusOr<int32_t> next = Sample();
    if (!next.ok()) return next.status();
    const int32_t token = *next;
    if (tok.IsEndOfGeneration(token)) {
      r.stop_reason = StopReason::kEos;
      FlushHeldBack(stream, req, &r);
      break;
    }
    r.tokens.push_back(token);
    ++r.n_generated;
    bool stopped = false;
    std::string text = stream.Push(tok.PieceView(token), &stopped);
    // The last token of the run flushes what was held back.
    const bool last = !stopped && (r.n_generated >= req.max_new_tokens ||
                                   table_->n_tokens() >= context_length_);
    if (last) text += stream.Flush();
    r.text += text;
    if (req.on_token && !req.on_token(token, text)) {
      r.stop_reason = StopReason::kCallback;
      break;
    }
    if (stopped) {
      r.stop_reason = StopReason::kStopString;
      break;
    }
    if (r.n_generated >= req.max_new_tokens) {
      r.stop_reason = StopReason::kMaxTokens;
      break;
    }
    if (table_->n_tokens() >= context_length_) {
      r.stop_reason = StopReason::kContextFull;
      break;
    }
    if (auto s = Decode({&token, 1}); !s.ok()) return s;
    ++r.n_decode_steps;
  }
  r.decode_ms = MsSince(t1);
  return r;
}

}  // namespace runtime
}  // namespace kestrel
