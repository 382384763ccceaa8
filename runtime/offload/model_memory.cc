#include "runtime/offload/model_memory.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "runtime/kv_cache/window_tables.h"

namespace kestrel {
namespace runtime {
namespace offload {
namespace {

bool IsExpertStack(const LayerWeights& l, int id) {
  return id >= 0 && (id == l.ffn_gate_exps || id == l.ffn_up_exps || id == l.ffn_down_exps);
}

absl::StatusOr<ExpertStackSource> StackSource(const GgufFile& file, const WeightTensor& w,
                                              uint32_t n_experts) {
  const uint8_t* base = file.data();
  if (base == nullptr || w.host_data < base || w.host_data + w.bytes > base + file.file_size() ||
      w.desc.rank != 3 || w.desc.dims[0] != n_experts || w.bytes % n_experts != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expert offload: '", w.name, "' is not a stack of ", n_experts,
        " experts stored as one tensor of the file"));
  }
  ExpertStackSource s;
  s.offset = static_cast<uint64_t>(w.host_data - base);
  s.expert_bytes = w.bytes / n_experts;
  s.desc = w.desc;
  s.desc.dims[0] = 1;
  return s;
}

}  // namespace

PlanRequest ModelPlanRequest(const ModelConfig& config, const WeightTable& weights,
                             uint64_t weight_bytes, uint32_t kv_element_bytes,
                             uint32_t kv_block_size) {
  PlanRequest r;
  r.weight_bytes = weight_bytes;
  r.n_layers = config.n_layers;
  r.n_experts = config.n_experts;
  r.top_k = config.n_experts_used;
  r.kv_layer_bytes_per_token = 2ull * config.n_kv_heads * config.head_dim * kv_element_bytes;
  r.kv_bytes_per_token = config.n_layers * r.kv_layer_bytes_per_token;
  // Sliding-window layers keep their window and one step of up to a window (whole blocks), as
  // sessions and the engine size their window pools (runtime/kv_cache/window_tables.h).
  bool windowed = false;
  for (uint32_t l = 0; l < config.n_layers; ++l) {
    const uint32_t w = l < config.layers.size() ? config.layers[l].sliding_window : 0;
    r.kv_window_tokens.push_back(
        w == 0 ? 0 : WindowTables::BlocksNeeded(w, w, kv_block_size) * kv_block_size);
    windowed = windowed || w > 0;
  }
  if (!windowed) r.kv_window_tokens.clear();
  std::map<int, int32_t> layer_of;
  std::map<int, bool> expert, matrix;
  for (size_t l = 0; l < weights.layers.size(); ++l) {
    const LayerWeights& lw = weights.layers[l];
    for (int id : {lw.attn_norm, lw.wq, lw.wk, lw.wv, lw.wo, lw.bq, lw.bk, lw.bv, lw.q_norm,
                   lw.k_norm, lw.attn_post_norm, lw.ffn_norm, lw.w_gate, lw.w_up, lw.w_down,
                   lw.ffn_post_norm, lw.ffn_gate_inp, lw.ffn_gate_exps, lw.ffn_up_exps,
                   lw.ffn_down_exps}) {
      if (id < 0) continue;
      layer_of[id] = static_cast<int32_t>(l);
      expert[id] = IsExpertStack(lw, id);
      matrix[id] = id == lw.wq || id == lw.wk || id == lw.wv || id == lw.wo ||
                   id == lw.w_gate || id == lw.w_up || id == lw.w_down;
    }
  }
  for (size_t i = 0; i < weights.tensors.size(); ++i) {
    PlannedTensor t;
    t.weight_id = static_cast<int>(i);
    t.bytes = weights.tensors[i].bytes;
    auto it = layer_of.find(t.weight_id);
    if (it != layer_of.end()) {
      t.layer = it->second;
      t.expert_stack = expert[t.weight_id] && config.n_experts > 0;
      t.streamable = matrix[t.weight_id] && !t.expert_stack;
    }
    r.tensors.push_back(t);
  }
  return r;
}

absl::StatusOr<std::vector<ExpertLayerSource>> ExpertSources(const GgufFile& file,
                                                            const WeightTable& weights,
                                                            uint32_t n_experts) {
  std::vector<ExpertLayerSource> out;
  for (const LayerWeights& l : weights.layers) {
    if (l.ffn_gate_exps < 0) continue;
    ExpertLayerSource s;
    for (auto [id, dst] : {std::pair<int, ExpertStackSource*>{l.ffn_gate_exps, &s.gate},
                           {l.ffn_up_exps, &s.up},
                           {l.ffn_down_exps, &s.down}}) {
      absl::StatusOr<ExpertStackSource> src = StackSource(file, weights.tensors[id], n_experts);
      if (!src.ok()) return src.status();
      *dst = *src;
    }
    out.push_back(s);
  }
  return out;
}

}  // namespace offload
}  // namespace runtime
}  // namespace kestrel
