#include "runtime/arch/fused_weights.h"

#include <cstring>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"

namespace kestrel {
namespace runtime {
namespace {

// Whether the matrices `ids` can be stacked: all present, rank 2, one dtype, one row width.
bool Stackable(const WeightTable& t, std::initializer_list<int> ids) {
  const WeightTensor* first = nullptr;
  for (int id : ids) {
    if (id < 0) return false;
    const WeightTensor& w = t.tensors[id];
    if (w.desc.rank != 2 || w.desc.dtype == KESTREL_DTYPE_INVALID || w.fused_into >= 0 ||
        w.host_data == nullptr) {
      return false;
    }
    if (first != nullptr &&
        (w.desc.dtype != first->desc.dtype || w.desc.dims[1] != first->desc.dims[1])) {
      return false;
    }
    if (first == nullptr) first = &w;
  }
  return true;
}

// The parts stacked as one matrix; its id.
int Stack(WeightTable& t, std::string name, std::initializer_list<int> ids) {
  WeightTensor f;
  f.name = std::move(name);
  const WeightTensor& first = t.tensors[*ids.begin()];
  f.desc = first.desc;
  f.desc.dims[0] = 0;
  f.ggml_type = first.ggml_type;
  bool adjacent = true;
  const uint8_t* next = first.host_data;
  for (int id : ids) {
    const WeightTensor& w = t.tensors[id];
    f.desc.dims[0] += w.desc.dims[0];
    f.bytes += w.bytes;
    adjacent = adjacent && w.host_data == next;
    next = w.host_data + w.bytes;
    f.parts.push_back(id);
  }
  if (adjacent) {
    f.host_data = first.host_data;  // already one range of the file: nothing to assemble
    f.parts.clear();
  }
  const int fused = static_cast<int>(t.tensors.size());
  for (int id : ids) t.tensors[id].fused_into = fused;
  t.tensors.push_back(std::move(f));
  return fused;
}

// The F32 vectors `ids` concatenated (small: biases), owned by the table.
int StackVectors(WeightTable& t, std::string name, std::initializer_list<int> ids) {
  auto data = std::make_unique<std::vector<float>>();
  for (int id : ids) {
    const WeightTensor& w = t.tensors[id];
    const float* f = reinterpret_cast<const float*>(w.host_data);
    data->insert(data->end(), f, f + w.desc.dims[0]);
  }
  WeightTensor v;
  v.name = std::move(name);
  v.desc = t.tensors[*ids.begin()].desc;
  v.desc.dims[0] = static_cast<int64_t>(data->size());
  v.ggml_type = GgmlType::F32;
  v.host_data = reinterpret_cast<const uint8_t*>(data->data());
  v.bytes = data->size() * sizeof(float);
  t.converted.push_back(std::move(data));
  t.tensors.push_back(std::move(v));
  return static_cast<int>(t.tensors.size() - 1);
}

}  // namespace

int AddFusedWeights(WeightTable* table) {
  WeightTable& t = *table;
  int added = 0;
  for (size_t l = 0; l < t.layers.size(); ++l) {
    LayerWeights& L = t.layers[l];
    const std::string b = absl::StrCat("blk.", l, ".");
    const int n_bias = (L.bq >= 0) + (L.bk >= 0) + (L.bv >= 0);
    if (L.wqkv < 0 && (n_bias == 0 || n_bias == 3) && Stackable(t, {L.wq, L.wk, L.wv})) {
      L.wqkv = Stack(t, b + "attn_q+k+v.weight", {L.wq, L.wk, L.wv});
      if (n_bias == 3) L.bqkv = StackVectors(t, b + "attn_q+k+v.bias", {L.bq, L.bk, L.bv});
      ++added;
    }
    if (L.w_gate_up < 0 && Stackable(t, {L.w_gate, L.w_up})) {
      L.w_gate_up = Stack(t, b + "ffn_gate+up.weight", {L.w_gate, L.w_up});
      ++added;
    }
  }
  return added;
}

const uint8_t* AssembleHostData(const WeightTable& table, int id, std::vector<uint8_t>* scratch) {
  const WeightTensor& w = table.tensors[id];
  if (w.host_data != nullptr || w.parts.empty()) return w.host_data;
  scratch->resize(w.bytes);
  uint64_t at = 0;
  for (int part : w.parts) {
    const WeightTensor& p = table.tensors[part];
    std::memcpy(scratch->data() + at, p.host_data, p.bytes);
    at += p.bytes;
  }
  return scratch->data();
}

}  // namespace runtime
}  // namespace kestrel
