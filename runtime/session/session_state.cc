// Session::SaveState / LoadState: one sequence's state to and from the .kstate bytes
// (runtime/package/session_state_format.h).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/arch/common/metadata.h"
#include "runtime/package/session_state_format.h"
#include "runtime/session/session.h"

namespace kestrel {
namespace runtime {
namespace {

// Cache slots of positions [first, n).
std::vector<int32_t> SlotsOf(const BlockTable& table, uint32_t first, uint32_t n) {
  std::vector<int32_t> slots;
  slots.reserve(n > first ? n - first : 0);
  for (uint32_t p = first; p < n; ++p) slots.push_back(table.Slot(p));
  return slots;
}

uint32_t GroupOf(const ExecutionPlan& plan, uint32_t layer) {
  return plan.layer_kv_group.empty() ? 0 : plan.layer_kv_group[layer];
}

// The first position a query at position `pos` sees in a window of `window` positions.
uint32_t WindowStartOf(uint32_t pos, uint32_t window) {
  return pos + 1 > window ? pos + 1 - window : 0;
}

const char* KvName(uint32_t dtype) {
  return dtype == KESTREL_DTYPE_F16 ? "F16" : dtype == KESTREL_DTYPE_F32 ? "F32" : "?";
}

}  // namespace

const BlockTable& Session::TableOfLayer(uint32_t layer) const {
  const uint32_t g = GroupOf(executor_->plan(), layer);
  return g == 0 || !window_tables_ ? seq_->table() : window_tables_->table(g - 1);
}

absl::StatusOr<uint64_t> Session::SaveState(const std::function<uint8_t*(uint64_t)>& reserve) {
  const ExecutionPlan& plan = executor_->plan();
  const uint32_t n = seq_->n_computed();
  SessionStateMeta meta;
  meta.model_fingerprint = model_->fingerprint();
  meta.model_architecture =
      model_->architecture() ? std::string(model_->architecture()->name()) : std::string();
  meta.n_vocab = model_->config().n_vocab;
  meta.n_layers = plan.n_layers;
  meta.n_kv_heads = plan.n_kv_heads;
  meta.head_dim = plan.head_dim;
  meta.kv_dtype = plan.kv_dtype;
  meta.context_length = context_length_;
  const absl::Span<const int32_t> tokens = history(), pending = seq_->pending();
  meta.tokens.assign(tokens.begin(), tokens.end());
  meta.pending.assign(pending.begin(), pending.end());
  if (pending.empty() && has_logits_) meta.logits = logits_;
  const Sampler& sampler = seq_->sampler();
  const SamplerConfig& c = sampler.config();
  meta.sampler.temperature = c.temperature;
  meta.sampler.top_k = c.top_k;
  meta.sampler.top_p = c.top_p;
  meta.sampler.min_p = c.min_p;
  meta.sampler.repetition_penalty = c.repetition_penalty;
  meta.sampler.repetition_window = c.repetition_window;
  meta.sampler.seed = c.seed;
  meta.sampler.rng = sampler.RngState();
  meta.sampler.window = sampler.Window();
  const uint64_t row = executor_->kv_row_bytes();
  // A sliding-window layer whose KV is capped at its window stores only the positions its table
  // still holds (a superset of what any later query reads).
  for (uint32_t l = 0; l < plan.n_layers; ++l) {
    KvLayerLayout layer;
    layer.first_position = std::min(TableOfLayer(l).first_held_position(), n);
    layer.n_positions = n - layer.first_position;
    layer.bytes = uint64_t{layer.n_positions} * row;
    meta.layers.push_back(layer);
  }
  SessionStateEncoder encoder(std::move(meta));
  uint8_t* out = reserve(encoder.total_size());
  if (out == nullptr) return encoder.total_size();
  for (uint32_t l = 0; l < plan.n_layers; ++l) {
    const KvLayerLayout& layer = encoder.layer(l);
    const std::vector<int32_t> slots = SlotsOf(TableOfLayer(l), layer.first_position, n);
    KESTREL_RETURN_IF_ERROR(executor_->ReadKvRows(l, false, slots, out + layer.k_offset));
    KESTREL_RETURN_IF_ERROR(executor_->ReadKvRows(l, true, slots, out + layer.v_offset));
  }
  encoder.Seal(out);
  return encoder.total_size();
}

absl::Status Session::LoadState(const uint8_t* data, uint64_t size) {
  // The FlatBuffers Verifier and accessors read the manifest's scalars in place (undefined
  // behaviour when misaligned; session_state_fuzzer found it): a caller's buffer may sit at any
  // address, so an unaligned one is read from an 8-byte-aligned copy.
  if (reinterpret_cast<uintptr_t>(data) % alignof(uint64_t) != 0) {
    std::vector<uint64_t> aligned(static_cast<size_t>((size + 7) / 8));
    if (size > 0) std::memcpy(aligned.data(), data, static_cast<size_t>(size));
    return LoadState(reinterpret_cast<const uint8_t*>(aligned.data()), size);
  }
  absl::StatusOr<SessionStateMeta> m = DecodeSessionState(data, size);
  if (!m.ok()) return m.status();
  const ExecutionPlan& plan = executor_->plan();
  auto bad = [](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat("session state: ", why));
  };
  if (m->model_fingerprint != model_->fingerprint()) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "session state: saved with model fingerprint %016x (%s), this session's model is %016x: "
        "a state only restores into the model it was saved with",
        m->model_fingerprint, m->model_architecture, model_->fingerprint()));
  }
  if (m->n_vocab != model_->config().n_vocab || m->n_layers != plan.n_layers ||
      m->n_kv_heads != plan.n_kv_heads || m->head_dim != plan.head_dim) {
    return bad(absl::StrFormat(
        "KV geometry %u layers x %u KV heads x %u head dim (vocab %u) differs from this session's "
        "%u x %u x %u (vocab %u)",
        m->n_layers, m->n_kv_heads, m->head_dim, m->n_vocab, plan.n_layers, plan.n_kv_heads,
        plan.head_dim, model_->config().n_vocab));
  }
  if (m->kv_dtype != plan.kv_dtype) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "session state: the KV cache was saved as %s but this session's is %s (create the "
        "session with the same kv_type)",
        KvName(m->kv_dtype), KvName(plan.kv_dtype)));
  }
  const uint64_t n = m->tokens.size();
  if (n + m->pending.size() > context_length_) {
    return bad(absl::StrFormat("%u tokens (+%u pending) exceed this session's context length %u",
                               n, m->pending.size(), context_length_));
  }
  KESTREL_RETURN_IF_ERROR(CheckTokens(m->tokens));
  KESTREL_RETURN_IF_ERROR(CheckTokens(m->pending));
  if (!m->logits.empty() && m->logits.size() != model_->config().n_vocab) {
    return bad(absl::StrFormat("%u logits for a vocab of %u", m->logits.size(),
                               model_->config().n_vocab));
  }
  if (m->layers.size() != plan.n_layers) {
    return bad(absl::StrFormat("%u KV layers, the model has %u", m->layers.size(), plan.n_layers));
  }
  const uint64_t row = executor_->kv_row_bytes();
  for (uint32_t l = 0; l < m->layers.size(); ++l) {
    const KvLayerLayout& layer = m->layers[l];
    if (layer.first_position > n || layer.n_positions != n - layer.first_position ||
        layer.bytes != layer.n_positions * row) {
      return bad(absl::StrFormat("layer %u holds positions [%u, +%u) in %u bytes, not the last "
                                 "positions of its %u tokens (%u bytes each)",
                                 l, layer.first_position, layer.n_positions, layer.bytes, n, row));
    }
    const uint32_t g = GroupOf(plan, l);
    const bool windowed = g != 0 && window_tables_ != nullptr;
    // A windowed layer needs every position the next query sees; any other layer all of them.
    const uint64_t need_from = windowed ? WindowStartOf(static_cast<uint32_t>(n), plan.kv_groups[g].window) : 0;
    if (layer.first_position > need_from) {
      return bad(absl::StrFormat(
          "layer %u holds positions from %u, but this session needs them from %u (%s)", l,
          layer.first_position, need_from,
          windowed ? "its sliding window" : "it keeps every position of that layer: restore into a "
                                            "session whose context exceeds the model's window"));
    }
  }
  SamplerConfig sc;
  sc.temperature = m->sampler.temperature;
  sc.top_k = m->sampler.top_k;
  sc.top_p = m->sampler.top_p;
  sc.min_p = m->sampler.min_p;
  sc.repetition_penalty = m->sampler.repetition_penalty;
  sc.repetition_window = m->sampler.repetition_window;
  sc.seed = m->sampler.seed;
  absl::StatusOr<Sampler> sampler = Sampler::Create(sc);
  if (!sampler.ok()) return bad(std::string(sampler.status().message()));
  KESTREL_RETURN_IF_ERROR(sampler->Restore(m->sampler.rng, m->sampler.window));

  // Everything checked: replace the session's context.
  absl::Status s = RestoreKv(data, m->tokens, m->layers);
  if (s.ok()) {
    seq_->sampler() = std::move(*sampler);
    logits_ = m->logits;
    has_logits_ = !m->logits.empty();
    // The speculator's proposers start over from the restored history; the hidden state they
    // read is the pending token's, or none until the next step.
    if (spec_) {
      spec_->Reset();
      spec_->SetHidden(nullptr, 0);
    }
    if (!m->pending.empty()) {
      s = Decode(m->pending);  // logits of the pending token, not accepted
      if (s.ok()) s = FeedHidden(last_step_tokens_ - 1);
    }
  }
  if (!s.ok()) {
    seq_->Truncate(0);
    if (window_tables_) window_tables_->Truncate(0);
    has_logits_ = false;
    return absl::Status(s.code(), absl::StrCat("restoring the session state failed, the session "
                                               "is now empty: ", s.message()));
  }
  return absl::OkStatus();
}

absl::Status Session::RestoreKv(const uint8_t* data, const std::vector<int32_t>& tokens,
                                const std::vector<KvLayerLayout>& layers) {
  if (window_tables_) window_tables_->Truncate(0);
  has_logits_ = false;
  last_step_tokens_ = 0;  // the executor's hidden state belongs to the old context
  KESTREL_RETURN_IF_ERROR(seq_->RestoreComputed(tokens));
  const uint32_t n = static_cast<uint32_t>(tokens.size());
  if (n == 0) return absl::OkStatus();
  if (window_tables_) {
    // Grow the window tables the way decoding n tokens would (steps of at most max_step_, the
    // last one a single token), so they hold no more than the window needs.
    for (uint32_t p = 0; p + 1 < n;) {
      const uint32_t step = std::min(max_step_ > 0 ? max_step_ : n, n - 1 - p);
      KESTREL_RETURN_IF_ERROR(window_tables_->Append(p, step));
      p += step;
    }
    KESTREL_RETURN_IF_ERROR(window_tables_->Append(n - 1, 1));
  }
  const uint64_t row = executor_->kv_row_bytes();
  for (uint32_t l = 0; l < layers.size(); ++l) {
    const BlockTable& table = TableOfLayer(l);
    const uint32_t held = table.first_held_position();
    if (layers[l].first_position > held) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "layer %u: the state starts at position %u but this session's window table holds "
          "positions from %u (restore into a session with the KV block size it was saved with)",
          l, layers[l].first_position, held));
    }
    const std::vector<int32_t> slots = SlotsOf(table, held, n);
    const uint64_t skip = uint64_t{held - layers[l].first_position} * row;
    KESTREL_RETURN_IF_ERROR(executor_->WriteKvRows(l, false, slots, data + layers[l].k_offset + skip));
    KESTREL_RETURN_IF_ERROR(executor_->WriteKvRows(l, true, slots, data + layers[l].v_offset + skip));
  }
  return absl::OkStatus();
}

}  // namespace runtime
}  // namespace kestrel
