// PlanOptions: the speculative-decoding variants of a plan on stories260K (ref device): the final
// hidden state read back before and after the output norm (checked against the logits and the
// norm computed here in double), the self-draft plan that runs only the first layers, and fused
// Q/K/V and gate/up matmuls against separate ones.
#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "hal/src/plugin_registry.h"
#include "runtime/model/model.h"
#include "runtime/plan/executor.h"
#include "tests/test_util.h"

namespace kestrel::testing {
namespace {

using runtime::ExecutionPlan;
using runtime::Executor;
using runtime::HiddenState;
using runtime::PlanOptions;

class PlanOptionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    registry_ = hal::PluginRegistry::Create(PluginDir() + "/libkestrel_plugin_ref.so", nullptr);
    ref_ = registry_->ReferenceDevice();
    ASSERT_NE(ref_, nullptr);
    auto m = runtime::Model::Load(ModelPath("stories260K.gguf"), ref_, {});
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::move(*m);
  }

  // Runs one 4-token prefill; returns the executor (for ReadHidden) and the logits of every row.
  std::unique_ptr<Executor> Run(const PlanOptions& o, std::vector<float>* logits) {
    absl::StatusOr<ExecutionPlan> plan = model_->BuildPlan(o);
    EXPECT_TRUE(plan.ok()) << plan.status();
    auto exec = Executor::Create(model_.get(), std::move(*plan), ref_, nullptr);
    EXPECT_TRUE(exec.ok()) << exec.status();
    runtime::StepInputs in;
    in.tokens = {1, 403, 407, 261};
    in.positions = {0, 1, 2, 3};
    in.slots = {0, 1, 2, 3};
    in.block_tables = {0};
    in.n_seqs = 1;
    in.max_blocks = 1;
    in.query_start = {0, 4};
    in.kv_lens = {4};
    in.logit_rows = {0, 1, 2, 3};
    absl::Status s = (*exec)->Run(in, logits);
    EXPECT_TRUE(s.ok()) << s;
    return std::move(*exec);
  }

  static PlanOptions Options(HiddenState hidden, uint32_t n_layers = 0) {
    PlanOptions o;
    o.block_size = 16;
    o.n_blocks = 2;
    o.hidden = hidden;
    o.n_layers = n_layers;
    return o;
  }

  const float* F32Weight(int id) {
    const runtime::WeightTensor& w = model_->weight(id);
    EXPECT_EQ(w.desc.dtype, KESTREL_DTYPE_F32);
    return reinterpret_cast<const float*>(w.host_data);
  }

  std::unique_ptr<hal::PluginRegistry> registry_;
  hal::Device* ref_ = nullptr;
  std::unique_ptr<runtime::Model> model_;
};

TEST_F(PlanOptionsTest, PostNormHiddenStateIsWhatTheOutputHeadMultiplies) {
  std::vector<float> logits, hidden;
  auto exec = Run(Options(HiddenState::kPostNorm), &logits);
  ASSERT_TRUE(exec->ReadHidden(&hidden).ok());
  const int64_t D = model_->config().n_embd, V = model_->config().n_vocab;
  ASSERT_EQ(hidden.size(), static_cast<size_t>(4 * D));
  const float* w = F32Weight(model_->weights().output);
  for (int64_t t = 0; t < 4; ++t) {
    for (int64_t v = 0; v < V; ++v) {
      double dot = 0;
      for (int64_t d = 0; d < D; ++d) dot += double{hidden[t * D + d]} * w[v * D + d];
      ASSERT_NEAR(logits[t * V + v], dot, 1e-4 * (1 + std::fabs(dot))) << "row " << t << " vocab " << v;
    }
  }
}

TEST_F(PlanOptionsTest, PreNormHiddenStateNormsToThePostNormOne) {
  std::vector<float> logits, pre, post;
  auto a = Run(Options(HiddenState::kPreNorm), &logits);
  ASSERT_TRUE(a->ReadHidden(&pre).ok());
  auto b = Run(Options(HiddenState::kPostNorm), &logits);
  ASSERT_TRUE(b->ReadHidden(&post).ok());
  const int64_t D = model_->config().n_embd;
  const float* g = F32Weight(model_->weights().output_norm);
  for (int64_t t = 0; t < 4; ++t) {
    double ss = 0;
    for (int64_t d = 0; d < D; ++d) ss += double{pre[t * D + d]} * pre[t * D + d];
    const double inv = 1.0 / std::sqrt(ss / D + model_->config().rms_eps);
    for (int64_t d = 0; d < D; ++d) {
      const double want = pre[t * D + d] * inv * g[d];
      ASSERT_NEAR(post[t * D + d], want, 1e-5 * (1 + std::fabs(want)));
    }
  }
}

TEST_F(PlanOptionsTest, SelfDraftRunsOnlyTheFirstLayersThenTheHead) {
  std::vector<float> full, draft, all_layers;
  Run(Options(HiddenState::kNone), &full);
  auto exec = Run(Options(HiddenState::kNone, 2), &draft);
  EXPECT_EQ(exec->plan().n_layers, 2u);
  int attention_ops = 0;
  for (const auto& op : exec->plan().ops) attention_ops += op.kind == KESTREL_OP_PAGED_ATTENTION;
  EXPECT_EQ(attention_ops, 2);
  ASSERT_EQ(draft.size(), full.size());
  EXPECT_NE(draft, full);  // two of five layers is another function
  Run(Options(HiddenState::kNone, model_->config().n_layers), &all_layers);
  EXPECT_EQ(all_layers, full);  // every layer asked for = the default plan
  // Hidden state of a plan that exposes none, or before any step: FAILED_PRECONDITION.
  std::vector<float> h;
  EXPECT_EQ(exec->ReadHidden(&h).code(), absl::StatusCode::kFailedPrecondition);
}

// Fused Q/K/V and gate/up matmuls (split by columns after) compute each output element as the
// separate matmuls do: the logits of a prefill and of the decode step after it are bit-identical.
TEST_F(PlanOptionsTest, FusedMatmulsGiveTheSeparateMatmulsLogits) {
  const uint32_t n_layers = model_->config().n_layers;
  for (uint32_t l = 0; l < n_layers; ++l) {
    const runtime::LayerWeights& L = model_->weights().layers[l];
    ASSERT_GE(L.wqkv, 0) << "layer " << l;
    ASSERT_GE(L.w_gate_up, 0) << "layer " << l;
    EXPECT_EQ(model_->weight(L.wk).fused_into, L.wqkv);
    EXPECT_EQ(model_->weight(L.w_up).fused_into, L.w_gate_up);
    EXPECT_EQ(model_->weight(L.wqkv).desc.dims[0],
              model_->weight(L.wq).desc.dims[0] + 2 * model_->weight(L.wk).desc.dims[0]);
  }
  std::vector<float> logits[2][2];  // [fused][prefill, decode]
  for (int fused = 0; fused < 2; ++fused) {
    PlanOptions o = Options(HiddenState::kNone);
    o.fuse_matmuls = fused == 1;
    auto exec = Run(o, &logits[fused][0]);
    int matmuls = 0, splits = 0;
    for (const auto& op : exec->plan().ops) {
      matmuls += op.kind == KESTREL_OP_MATMUL;
      splits += op.kind == runtime::kPlanOpSplitColumns;
    }
    EXPECT_EQ(matmuls, static_cast<int>(n_layers) * (fused ? 4 : 7));
    EXPECT_EQ(splits, fused ? static_cast<int>(2 * n_layers) : 0);
    runtime::StepInputs in;  // one decode step after the 4-token prefill
    in.tokens = {403};
    in.positions = {4};
    in.slots = {4};
    in.block_tables = {0};
    in.n_seqs = 1;
    in.max_blocks = 1;
    in.query_start = {0, 1};
    in.kv_lens = {5};
    in.logit_rows = {0};
    ASSERT_TRUE(exec->Run(in, &logits[fused][1]).ok());
    // Every op ran on the one device, the splits included.
    EXPECT_EQ(exec->ops_per_device().at("ref"), 2 * exec->plan().ops.size());
  }
  EXPECT_EQ(logits[1][0], logits[0][0]);
  EXPECT_EQ(logits[1][1], logits[0][1]);
}

TEST_F(PlanOptionsTest, MoreLayersThanTheModelIsInvalid) {
  PlanOptions o = Options(HiddenState::kNone, model_->config().n_layers + 1);
  absl::StatusOr<ExecutionPlan> plan = model_->BuildPlan(o);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kestrel::testing
