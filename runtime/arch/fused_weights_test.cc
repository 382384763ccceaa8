#include "runtime/arch/fused_weights.h"

#include <cstdint>
#include <vector>

#include "gtest/gtest.h"

namespace kestrel::runtime {
namespace {

// A matrix of `rows` rows of `k` F32 elements at `data`.
WeightTensor Matrix(const uint8_t* data, int64_t rows, int64_t k,
                    uint32_t dtype = KESTREL_DTYPE_F32) {
  WeightTensor w;
  w.name = "m";
  w.desc.struct_size = sizeof(w.desc);
  w.desc.dtype = dtype;
  w.desc.rank = 2;
  w.desc.dims[0] = rows;
  w.desc.dims[1] = k;
  w.host_data = data;
  w.bytes = static_cast<uint64_t>(rows * k) * 4;
  return w;
}

// One layer over `bytes`: Q rows [0, 4), then gate/up and K/V where `adjacent` says.
struct Layer {
  std::vector<uint8_t> bytes = std::vector<uint8_t>(4 * 100);
  WeightTable table;
  explicit Layer(bool adjacent) {
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 7 + 1);
    const uint8_t* b = bytes.data();
    const int64_t K = 2;  // 8 bytes per row
    table.tensors.push_back(Matrix(b, 4, K));                             // q
    table.tensors.push_back(Matrix(b + (adjacent ? 32 : 80), 1, K));      // k
    table.tensors.push_back(Matrix(b + (adjacent ? 40 : 64), 1, K));      // v
    table.tensors.push_back(Matrix(b + 100, 3, K));                       // gate
    table.tensors.push_back(Matrix(b + (adjacent ? 124 : 200), 3, K));    // up
    table.layers.resize(1);
    LayerWeights& L = table.layers[0];
    L.wq = 0, L.wk = 1, L.wv = 2, L.w_gate = 3, L.w_up = 4;
  }
  // The parts' bytes, concatenated.
  std::vector<uint8_t> Expected(std::initializer_list<int> ids) const {
    std::vector<uint8_t> out;
    for (int id : ids) {
      const WeightTensor& w = table.tensors[id];
      out.insert(out.end(), w.host_data, w.host_data + w.bytes);
    }
    return out;
  }
};

TEST(FusedWeightsTest, AdjacentPartsAreOneRangeOfTheFile) {
  Layer l(/*adjacent=*/true);
  EXPECT_EQ(AddFusedWeights(&l.table), 2);
  const LayerWeights& L = l.table.layers[0];
  const WeightTensor& qkv = l.table.tensors[L.wqkv];
  EXPECT_EQ(qkv.desc.dims[0], 6);
  EXPECT_EQ(qkv.desc.dims[1], 2);
  EXPECT_EQ(qkv.host_data, l.bytes.data());  // no copy
  EXPECT_TRUE(qkv.parts.empty());
  EXPECT_EQ(qkv.bytes, 48u);
  EXPECT_EQ(L.bqkv, -1);
  EXPECT_EQ(l.table.tensors[L.w_gate_up].host_data, l.bytes.data() + 100);
  for (int part : {L.wq, L.wk, L.wv}) EXPECT_EQ(l.table.tensors[part].fused_into, L.wqkv);
  for (int part : {L.w_gate, L.w_up}) EXPECT_EQ(l.table.tensors[part].fused_into, L.w_gate_up);
}

TEST(FusedWeightsTest, OtherPartsAreAssembledOnlyWhenAsked) {
  Layer l(/*adjacent=*/false);
  EXPECT_EQ(AddFusedWeights(&l.table), 2);
  const LayerWeights& L = l.table.layers[0];
  for (auto [fused, parts] : {std::pair<int, std::vector<int>>{L.wqkv, {L.wq, L.wk, L.wv}},
                              {L.w_gate_up, {L.w_gate, L.w_up}}}) {
    const WeightTensor& w = l.table.tensors[fused];
    EXPECT_EQ(w.host_data, nullptr);
    EXPECT_EQ(w.parts, parts);
    std::vector<uint8_t> scratch;
    const uint8_t* data = AssembleHostData(l.table, fused, &scratch);
    ASSERT_EQ(data, scratch.data());
    const std::vector<uint8_t> want =
        parts.size() == 3 ? l.Expected({L.wq, L.wk, L.wv}) : l.Expected({L.w_gate, L.w_up});
    EXPECT_EQ(scratch, want);
    EXPECT_EQ(w.bytes, want.size());
  }
  std::vector<uint8_t> unused;  // a plain weight is its own host data
  EXPECT_EQ(AssembleHostData(l.table, L.wq, &unused), l.bytes.data());
  EXPECT_TRUE(unused.empty());
}

TEST(FusedWeightsTest, BiasesAreStackedWhenAllThreeArePresent) {
  Layer l(/*adjacent=*/true);
  std::vector<float> bias = {1, 2, 3, 4, 5, 6};  // q 4, k 1, v 1
  auto vec = [&](int at, int64_t n) {
    WeightTensor w;
    w.desc.struct_size = sizeof(w.desc);
    w.desc.dtype = KESTREL_DTYPE_F32;
    w.desc.rank = 1;
    w.desc.dims[0] = n;
    w.host_data = reinterpret_cast<const uint8_t*>(bias.data() + at);
    w.bytes = static_cast<uint64_t>(n) * 4;
    l.table.tensors.push_back(w);
    return static_cast<int>(l.table.tensors.size() - 1);
  };
  LayerWeights& L = l.table.layers[0];
  L.bq = vec(0, 4), L.bk = vec(4, 1), L.bv = vec(5, 1);
  AddFusedWeights(&l.table);
  ASSERT_GE(L.bqkv, 0);
  const WeightTensor& b = l.table.tensors[L.bqkv];
  ASSERT_EQ(b.desc.dims[0], 6);
  const float* f = reinterpret_cast<const float*>(b.host_data);
  EXPECT_EQ(std::vector<float>(f, f + 6), bias);
}

TEST(FusedWeightsTest, MismatchedPartsAreLeftAlone) {
  Layer l(/*adjacent=*/true);
  l.table.tensors[1].desc.dtype = KESTREL_DTYPE_F16;  // K of another type than Q and V
  l.table.tensors[4].desc.dims[1] = 4;                // up of another row width than gate
  l.table.tensors[4].desc.dims[0] = 1;
  LayerWeights& L = l.table.layers[0];
  std::vector<float> bq(4);
  WeightTensor b;  // a bias on Q only: no fused bias possible, so no fused Q/K/V either
  b.desc.dtype = KESTREL_DTYPE_F32;
  b.desc.rank = 1;
  b.desc.dims[0] = 4;
  b.host_data = reinterpret_cast<const uint8_t*>(bq.data());
  l.table.tensors.push_back(b);
  L.bq = static_cast<int>(l.table.tensors.size() - 1);
  EXPECT_EQ(AddFusedWeights(&l.table), 0);
  EXPECT_EQ(L.wqkv, -1);
  EXPECT_EQ(L.w_gate_up, -1);
  for (const WeightTensor& w : l.table.tensors) EXPECT_EQ(w.fused_into, -1);
}

}  // namespace
}  // namespace kestrel::runtime
