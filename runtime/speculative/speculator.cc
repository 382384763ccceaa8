#include "runtime/speculative/speculator.h"

#include <chrono>
#include <limits>

#include "absl/strings/str_format.h"
#include "runtime/speculative/draft_model_proposer.h"
#include "runtime/speculative/eagle_proposer.h"
#include "runtime/speculative/heads_file.h"
#include "runtime/speculative/lookahead_proposer.h"
#include "runtime/speculative/medusa_proposer.h"
#include "runtime/speculative/ngram_proposer.h"

namespace kestrel {
namespace runtime {
namespace {

constexpr uint32_t kMaxDraftLimit = 64;
constexpr uint32_t kDefaultMaxDraft = 5;
// An n-gram proposal whose source repeats this many tokens of the history's end is confident.
constexpr uint32_t kConfidentMatch = 4;
// ... or this many right after a confident proposal was accepted: a quote the model left for a
// token or two is usually picked up again, and waiting for 4 repeated tokens costs plain steps.
constexpr uint32_t kConfidentResume = 3;
constexpr uint32_t kNgramMax = 3;  // longest history suffix the n-gram proposer matches

double MsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

absl::Status ValidateSpecConfig(const SpecConfig& c, const Model& target) {
  if (static_cast<uint32_t>(c.method) >= kNumSpecMethods) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "speculative method = %u is not a kestrel_spec_method_t (0..7)", static_cast<uint32_t>(c.method)));
  }
  if (c.max_draft > kMaxDraftLimit) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "speculative max_draft_tokens = %u is larger than %u", c.max_draft, kMaxDraftLimit));
  }
  if (c.tree_budget > kMaxDraftLimit * 4) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "speculative tree_budget = %u is larger than %u", c.tree_budget, kMaxDraftLimit * 4));
  }
  if (c.method == SpecMethod::kEagle && c.heads_path.empty()) {
    return absl::InvalidArgumentError(
        "speculative method 'eagle' needs heads_path (an EAGLE head GGUF, tools/train_eagle.py)");
  }
  if (c.method == SpecMethod::kMedusa && c.heads_path.empty()) {
    return absl::InvalidArgumentError(
        "speculative method 'medusa' needs heads_path (a Medusa heads GGUF, tools/train_medusa.py)");
  }
  if (c.method == SpecMethod::kDraft) {
    if (c.draft_model == nullptr) {
      return absl::InvalidArgumentError(
          "speculative method 'draft' needs a draft model (draft_model is NULL)");
    }
  }
  if (c.draft_model != nullptr) {
    if (auto s = CheckSameVocab(target, *c.draft_model); !s.ok()) return s;
  }
  if (c.method == SpecMethod::kSelf && c.self_layers >= target.config().n_layers) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "speculative self-draft layers = %u must be below the model's %u layers", c.self_layers,
        target.config().n_layers));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Speculator>> Speculator::Create(const SpecConfig& config,
                                                               const Model* target,
                                                               hal::Device* fallback,
                                                               uint32_t context_length) {
  if (config.method == SpecMethod::kOff) return std::unique_ptr<Speculator>();
  if (auto s = ValidateSpecConfig(config, *target); !s.ok()) return s;
  std::unique_ptr<Speculator> sp(new Speculator());
  sp->config_ = config;
  const SpecMethod m = config.method;
  const bool any = m == SpecMethod::kAuto;
  std::vector<SpecMethod> methods;
  if (any || m == SpecMethod::kNgram) {
    // `auto` judges every proposal by its statistics, so it may take weak ones (a one-token
    // match, several continuations as branches). The fixed method drafts whatever it finds:
    // only a match of two tokens or more, and one chain, the most recent continuation (replays
    // of real generations, docs/perf/speculative.md: a quote 1.98x -> 2.42x, open text 0.74x ->
    // 1.08x at a verify cost of 1 + 0.15 per extra token).
    sp->proposers_.push_back(any ? std::make_unique<NgramProposer>()
                                 : std::make_unique<NgramProposer>(kNgramMax, 2, 1));
    methods.push_back(SpecMethod::kNgram);
  }
  // Not in `auto`: a one-node probe cannot show what lookahead's Jacobi window would give (the
  // window needs iterations to converge), and where it was measured it never paid on the CPU
  // (docs/perf/speculative.md: 0.49x on open text, 0.82x on a quote); its probes only cost.
  if (m == SpecMethod::kLookahead) {
    sp->proposers_.push_back(std::make_unique<LookaheadProposer>());
    methods.push_back(SpecMethod::kLookahead);
  }
  if ((any && config.draft_model != nullptr) || m == SpecMethod::kDraft) {
    absl::StatusOr<std::unique_ptr<ModelRunner>> r =
        ModelRunner::Create(config.draft_model, fallback, context_length);
    if (!r.ok()) return r.status();
    sp->proposers_.push_back(std::make_unique<DraftModelProposer>(SpecMethod::kDraft, std::move(*r)));
    methods.push_back(SpecMethod::kDraft);
  }
  if (m == SpecMethod::kSelf) {
    const uint32_t layers = config.self_layers ? config.self_layers
                                               : std::max<uint32_t>(1, target->config().n_layers / 2);
    absl::StatusOr<std::unique_ptr<ModelRunner>> r =
        ModelRunner::Create(target, fallback, context_length, layers, kDefaultDraftVocab);
    if (!r.ok()) return r.status();
    sp->proposers_.push_back(std::make_unique<DraftModelProposer>(SpecMethod::kSelf, std::move(*r)));
    methods.push_back(SpecMethod::kSelf);
  }
  // `auto` with a heads file: the file's architecture says which kind of heads.
  bool eagle = m == SpecMethod::kEagle;
  if (any && !config.heads_path.empty()) {
    absl::StatusOr<std::string> arch = HeadsArchitecture(config.heads_path);
    if (!arch.ok()) return arch.status();
    eagle = *arch == "eagle";
  }
  if (m == SpecMethod::kMedusa || (any && !config.heads_path.empty() && !eagle)) {
    absl::StatusOr<std::unique_ptr<MedusaHeads>> heads = LoadMedusaHeads(config.heads_path, *target);
    if (!heads.ok()) return heads.status();
    sp->proposers_.push_back(std::make_unique<MedusaProposer>(std::move(*heads)));
    methods.push_back(SpecMethod::kMedusa);
  }
  if (eagle) {
    absl::StatusOr<std::unique_ptr<EagleHead>> head = LoadEagleHead(config.heads_path, *target);
    if (!head.ok()) return head.status();
    sp->proposers_.push_back(std::make_unique<EagleProposer>(std::move(*head)));
    methods.push_back(SpecMethod::kEagle);
  }
  for (auto& p : sp->proposers_) sp->needs_hidden_ |= p->needs_hidden();
  const uint32_t max_draft = config.max_draft ? config.max_draft : kDefaultMaxDraft;
  sp->controller_ = std::make_unique<Controller>(methods, max_draft, any);
  return sp;
}

Proposer* Speculator::ProposerFor(SpecMethod m) {
  for (auto& p : proposers_) {
    if (p->method() == m) return p.get();
  }
  return nullptr;
}

void Speculator::Reset() {
  for (auto& p : proposers_) p->Reset();
  shadow_.clear();
  shadow_second_ = -1;
  shadow_rate_ = 0;
  shadow_samples_ = 0;
  last_confident_ = last_confident_ok_ = false;
  // A new text: what the controller learnt about acceptance and its probe back-off belong to the
  // old one (a back-off grown on a chat preamble must not keep n-gram off on a quoted passage).
  std::vector<SpecMethod> methods;
  for (auto& p : proposers_) methods.push_back(p->method());
  controller_ = std::make_unique<Controller>(methods, config_.max_draft ? config_.max_draft : kDefaultMaxDraft,
                                             config_.method == SpecMethod::kAuto);
}

void CutToFirstPath(DraftTree* tree) {
  if (tree->empty()) return;
  DraftTree path;
  path.confidence = tree->confidence;
  int32_t cur = 0;
  int32_t parent = -1;
  while (cur >= 0) {
    parent = path.Add(parent, tree->tokens[cur]);
    if (static_cast<size_t>(cur) < tree->q.size()) {
      path.q.resize(path.size());
      path.q[parent] = tree->q[cur];
    }
    int32_t next = -1;
    for (size_t i = cur + 1; i < tree->size() && next < 0; ++i) {
      if (tree->parents[i] == cur) next = static_cast<int32_t>(i);
    }
    cur = next;
  }
  *tree = std::move(path);
}

ControllerChoice Speculator::Choose(const Sequence& seq, uint32_t room) {
  // `auto`: a long n-gram match is worth verifying at once (a quoted passage), before the cost
  // model has data and while speculation is off; the controller keeps its own statistics of
  // such proposals and stops trusting them when they fail. n-gram costs microseconds to ask.
  Proposer* ngram = config_.method == SpecMethod::kAuto ? ProposerFor(SpecMethod::kNgram) : nullptr;
  if (ngram != nullptr && room > 0) {
    ProposeRequest req;
    req.history = seq.tokens();
    req.max_depth = std::min(config_.max_draft ? config_.max_draft : kDefaultMaxDraft, room);
    req.max_nodes = req.max_depth;
    req.chains_only = true;
    DraftTree probe;
    const uint32_t need = last_confident_ok_ ? kConfidentResume : kConfidentMatch;
    if (ngram->Propose(req, &probe).ok() && probe.confidence >= need) {
      CutToFirstPath(&probe);
      // The longer the repeated run, the further its continuation is worth trusting: a run just
      // long enough (a phrase a story repeats) gets 2 nodes, a quote being copied the full draft.
      const uint32_t trusted = std::min(probe.Depth(), probe.confidence - need + 2);
      const ControllerChoice c = controller_->ChooseConfident(SpecMethod::kNgram, trusted);
      if (c.method != SpecMethod::kOff) {
        last_confident_ = true;
        return c;
      }
    }
  }
  return controller_->Choose();
}

absl::Status Speculator::Propose(const Sequence& seq, uint32_t room, bool chains_only,
                                 DraftTree* tree) {
  tree->Clear();
  last_confident_ = false;
  const ControllerChoice c = Choose(seq, room);
  stats_.current = c.method;
  stats_.current_draft = c.draft;
  last_method_ = c.method;
  last_depth_ = 0;
  Proposer* p = ProposerFor(c.method);
  shadow_.clear();
  if (room == 0) Shadow(seq);
  if (p == nullptr || c.draft == 0 || room == 0) return absl::OkStatus();
  const auto t0 = std::chrono::steady_clock::now();
  ProposeRequest req;
  req.history = seq.tokens();
  req.max_depth = std::min(c.draft, room);
  const uint32_t budget = config_.tree_budget ? config_.tree_budget : 2 * c.draft + 4;
  // Lookahead carries its Jacobi window besides the candidates.
  req.max_nodes = std::min(room, c.method == SpecMethod::kLookahead ? budget + 4 : budget);
  if (c.method == SpecMethod::kDraft || c.method == SpecMethod::kSelf) req.max_nodes = req.max_depth;
  if (c.max_nodes > 0) req.max_nodes = std::min(req.max_nodes, c.max_nodes);
  SamplerConfig sc = const_cast<Sequence&>(seq).sampler().config();
  req.sampling = &sc;
  req.chains_only = chains_only;
  req.hidden = hidden_;
  absl::Status s = p->Propose(req, tree);
  if (!s.ok()) tree->Clear();  // a failing proposer only costs the speculation
  if (chains_only) CutToFirstPath(tree);
  const double ms = MsSince(t0);
  stats_.propose_ms += ms;
  controller_->RecordProposal(c.method, ms, req.max_depth, static_cast<uint32_t>(tree->size()));
  if (!s.ok()) return absl::OkStatus();
  last_depth_ = tree->Depth();
  if (c.probe && !tree->empty()) ++stats_.probes;
  return absl::OkStatus();
}

double Speculator::ShadowAccepted() const {
  const bool ngram_only = config_.method == SpecMethod::kAuto && proposers_.size() == 1 &&
                          proposers_[0]->method() == SpecMethod::kNgram;
  if (!ngram_only) return std::numeric_limits<double>::infinity();
  return shadow_rate_;
}

void Speculator::Shadow(const Sequence& seq) {
  Proposer* ngram = ProposerFor(SpecMethod::kNgram);
  if (ngram == nullptr || config_.method != SpecMethod::kAuto) return;
  ProposeRequest req;
  req.history = seq.tokens();
  req.max_depth = req.max_nodes = kShadowDepth;
  req.chains_only = true;
  DraftTree tree;
  if (!ngram->Propose(req, &tree).ok()) return;
  CutToFirstPath(&tree);
  shadow_.assign(tree.tokens.begin(), tree.tokens.end());
  if (shadow_.empty()) shadow_.push_back(-1);  // no proposal: accepts nothing
}

void Speculator::CheckShadow(const VerifyOutcome& out) {
  if (out.tokens.empty()) return;
  const int32_t next = out.tokens[0];
  auto record = [this](double accepted) {
    shadow_rate_ = shadow_samples_ == 0 ? accepted : 0.9 * shadow_rate_ + 0.1 * accepted;
    ++shadow_samples_;
  };
  if (shadow_second_ >= 0) {  // last step's shadow had its first node right
    record(next == shadow_second_ ? 2.0 : 1.0);
    shadow_second_ = -1;
  }
  if (shadow_.empty()) return;
  if (next != shadow_[0]) {
    record(0.0);
  } else if (shadow_.size() > 1) {
    shadow_second_ = shadow_[1];  // resolved by the next step's first token
  } else {
    record(1.0);
  }
  shadow_.clear();
}

absl::Status Speculator::Verify(Sequence& seq, const DraftTree& tree, const float* rows,
                                size_t n_vocab, VerifyOutcome* out) {
  const uint32_t left = seq.policy().max_new_tokens - seq.n_generated();
  const Tokenizer& tok = seq.tokenizer();
  Proposer* proposer = tree.empty() ? nullptr : ProposerFor(last_method_);
  verifier_.set_argmax(proposer != nullptr && proposer->wants_argmax());
  if (auto s = verifier_.Verify(tree, rows, n_vocab, seq.sampler(), std::max<uint32_t>(left, 1),
                                [&tok](int32_t t) { return tok.IsEndOfGeneration(t); }, out,
                                seq.wants_logprobs() ? static_cast<int32_t>(seq.logprobs().n_probs) : -1);
      !s.ok()) {
    return s;
  }
  CheckShadow(*out);
  if (!tree.empty()) {
    const uint32_t m = static_cast<uint32_t>(out->accepted.size());
    const uint32_t i = static_cast<uint32_t>(last_method_);
    ++stats_.steps;
    stats_.drafted += tree.size();
    stats_.accepted += m;
    ++stats_.steps_by_method[i];
    stats_.drafted_by_method[i] += tree.size();
    stats_.accepted_by_method[i] += m;
    controller_->RecordAcceptance(last_method_, last_depth_, m);
    if (last_confident_) last_confident_ok_ = m > 0;
    VerifyFeedback fb;
    fb.tree = &tree;
    fb.node_argmax = out->node_argmax;
    fb.root_argmax = out->root_argmax;
    fb.accepted = out->accepted;
    if (proposer != nullptr) proposer->Observe(fb);
  } else {
    ++stats_.plain_steps;
  }
  return absl::OkStatus();
}

void Speculator::RecordStep(uint32_t n_tokens, double ms, bool speculative) {
  controller_->RecordStep(n_tokens, ms);
  if (speculative) stats_.verify_ms += ms;
  const ControllerReport r = controller_->Report();
  stats_.probe_interval = r.probe_interval;
  stats_.plain_step_ms = r.plain_step_ms;
  stats_.verify_tokens = r.verify_tokens;
  stats_.verify_cost_ratio = r.verify_ratio;
  stats_.expected_speedup = r.expected_speedup;
  stats_.acceptance = r.acceptance;
}

std::vector<int32_t> KvPlan(const BlockTable& table, uint32_t n_past,
                            const std::vector<int32_t>& accepted) {
  std::vector<int32_t> pairs;
  for (size_t k = 0; k < accepted.size(); ++k) {
    const uint32_t src = n_past + 1 + static_cast<uint32_t>(accepted[k]);
    const uint32_t dst = n_past + 1 + static_cast<uint32_t>(k);
    // accepted[k] >= k (parents come first), so a destination is never a later source.
    if (src != dst) {
      pairs.push_back(table.Slot(src));
      pairs.push_back(table.Slot(dst));
    }
  }
  return pairs;
}

StopReason Commit(Sequence& seq, uint32_t n_past, const VerifyOutcome& outcome,
                  const TokenSink& sink, const std::function<bool()>& cancelled) {
  BlockTable& table = seq.table();
  table.Truncate(n_past + 1 + static_cast<uint32_t>(outcome.accepted.size()));
  for (size_t j = 0; j < outcome.tokens.size(); ++j) {
    const uint32_t kv = n_past + 1 + static_cast<uint32_t>(j);
    const StopReason r = seq.Emit(outcome.tokens[j], kv, sink,
                                  j < outcome.logprobs.size() ? &outcome.logprobs[j] : nullptr);
    const bool last = j + 1 == outcome.tokens.size();
    if (r != StopReason::kNone || (!last && cancelled && cancelled())) {
      table.Truncate(kv);
      return r != StopReason::kNone ? r : StopReason::kCancelled;
    }
  }
  return StopReason::kNone;
}

}  // namespace runtime
}  // namespace kestrel
