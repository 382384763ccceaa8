// Speculative decoding's guarantees beyond greedy identity: the sampled output has exactly the
// target's distribution (chi-square against the exact joint of the next two tokens, and a biased
// verifier fails the same test), the KV after rejected trees is the KV of plain decoding,
// cancellation inside a verified step, and the configurations that are refused with a message.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <random>

#include "runtime/engine/engine.h"
#include "runtime/gguf/gguf_writer.h"
#include "runtime/speculative/draft_model_proposer.h"
#include "runtime/speculative/draft_vocab.h"
#include "runtime/speculative/heads_file.h"
#include "runtime/speculative/medusa_proposer.h"
#include "runtime/speculative/verifier.h"
#include "tests/speculative/spec_test_util.h"
#include "tests/temp_dir.h"

namespace kestrel::testing {
namespace {

using runtime::DraftTree;
using runtime::Sampler;
using runtime::SamplerConfig;
using runtime::SpecMethod;

// ---- Distribution -----------------------------------------------------------------------------

// The chi-square quantile at 1 - 1e-3 (Wilson-Hilferty; z = 3.0902).
double ChiSquareCritical(int df) {
  const double z = 3.0902, k = df;
  const double a = 2.0 / (9.0 * k);
  return k * std::pow(1.0 - a + z * std::sqrt(a), 3.0);
}

class DistributionTest : public ::testing::Test {
 protected:
  static constexpr int kDraws = 20000;

  void SetUp() override {
    model_ = SpecEnv::Get().Model("stories260K.gguf", "ref");
    ASSERT_NE(model_, nullptr);
    V_ = model_->config().n_vocab;
    cfg_.temperature = 1.0f;
    cfg_.top_k = 6;  // a small support: 36 joint cells
    cfg_.top_p = 1.0f;
    cfg_.min_p = 0.0f;
    runtime::SessionConfig sc;
    sc.context_length = 64;
    auto s = runtime::Session::Create(model_, SpecEnv::Get().Ref(), sc);
    ASSERT_TRUE(s.ok());
    session_ = std::move(*s);
    prefix_ = ReadGolden("stories260K.golden.json")[2].prompt;
    L0_ = Logits(prefix_);
    Sampler probe = *Sampler::Create(cfg_);
    std::vector<double> p1;
    ASSERT_TRUE(probe.Distribution(L0_, &s1_, &p1).ok());
    for (size_t i = 0; i < s1_.size(); ++i) {
      std::vector<int32_t> ctx = prefix_;
      ctx.push_back(s1_[i]);
      L1_[s1_[i]] = Logits(ctx);
      std::vector<int32_t> ids;
      std::vector<double> p2;
      ASSERT_TRUE(probe.Distribution(L1_[s1_[i]], &ids, &p2).ok());
      for (size_t j = 0; j < ids.size(); ++j) exact_[{s1_[i], ids[j]}] = p1[i] * p2[j];
    }
  }

  std::vector<float> Logits(const std::vector<int32_t>& ctx) {
    EXPECT_TRUE(session_->Truncate(0).ok());
    EXPECT_TRUE(session_->Decode(ctx).ok());
    return session_->logits();
  }

  // Rows for `tree` (row 0 after the prefix, row 1 + i after node i). Nodes below depth 1 are
  // never reached with max_tokens = 2, so their rows are left as the parent's.
  std::vector<float> Rows(const DraftTree& tree) {
    std::vector<float> rows(L0_);
    for (size_t i = 0; i < tree.size(); ++i) {
      int32_t first = static_cast<int32_t>(i);
      while (tree.parents[first] >= 0) first = tree.parents[first];
      const std::vector<float>& l = L1_.at(tree.tokens[first]);
      rows.insert(rows.end(), l.begin(), l.end());
    }
    return rows;
  }

  // Draws kDraws pairs; `make_tree` gives the draft of draw i (empty: plain sampling).
  std::map<std::pair<int32_t, int32_t>, int> Draw(
      const std::function<DraftTree(Sampler&)>& make_tree) {
    std::map<std::pair<int32_t, int32_t>, int> counts;
    runtime::Verifier verifier;
    runtime::VerifyOutcome out;
    SamplerConfig c = cfg_;
    c.seed = 1000 + 7919 * static_cast<uint64_t>(++draw_sets_);  // fixed seeds, one per set
    Sampler s = *Sampler::Create(c);
    for (int i = 0; i < kDraws; ++i) {
      DraftTree tree = make_tree(s);
      int32_t a = -1, b = -1;
      if (tree.empty()) {
        a = *s.Sample(L0_);
        b = *s.Sample(L1_.at(a));
      } else {
        const std::vector<float> rows = Rows(tree);
        EXPECT_TRUE(verifier.Verify(tree, rows.data(), V_, s, 2, [](int32_t) { return false; }, &out).ok());
        a = out.tokens[0];
        b = out.tokens.size() > 1 ? out.tokens[1] : *s.Sample(L1_.at(a));
      }
      ++counts[{a, b}];
    }
    return counts;
  }

  // Chi-square statistic against the exact joint (cells expecting < 5 draws pooled), its df.
  std::pair<double, int> ChiSquare(const std::map<std::pair<int32_t, int32_t>, int>& counts) {
    double chi = 0, pooled_e = 0, pooled_o = 0;
    int cells = 0;
    for (const auto& [key, p] : exact_) {
      const double e = p * kDraws;
      auto it = counts.find(key);
      const double o = it == counts.end() ? 0 : it->second;
      if (e < 5) {
        pooled_e += e;
        pooled_o += o;
        continue;
      }
      chi += (o - e) * (o - e) / e;
      ++cells;
    }
    for (const auto& [key, n] : counts) {
      if (!exact_.count(key)) pooled_o += n;  // outside the target's support: always wrong
    }
    if (pooled_e > 0) {
      chi += (pooled_o - pooled_e) * (pooled_o - pooled_e) / pooled_e;
      ++cells;
    } else if (pooled_o > 0) {
      chi += 1e9;
    }
    return {chi, cells - 1};
  }

  // Deterministic drafts: the two likeliest first tokens, and under the likeliest its own
  // likeliest follower (a tree with two candidates at the root).
  DraftTree DeterministicTree() {
    DraftTree t;
    const int32_t top1 = s1_[0], top2 = s1_[1];
    const int32_t n1 = t.Add(-1, top1);
    t.Add(-1, top2);
    Sampler probe = *Sampler::Create(cfg_);
    std::vector<int32_t> ids;
    std::vector<double> p;
    EXPECT_TRUE(probe.Distribution(L1_.at(top1), &ids, &p).ok());
    t.Add(n1, ids[0]);
    return t;
  }

  // A chain drawn from a draft distribution q (the target's at temperature 2: flatter, so some
  // tokens are over-proposed and some rejected), with q attached.
  DraftTree SampledChain(Sampler& s) {
    if (!q_) {
      SamplerConfig qc = cfg_;
      qc.temperature = 2.0f;
      q_ = std::make_unique<Sampler>(*Sampler::Create(qc));
    }
    Sampler& q = *q_;
    DraftTree t;
    std::vector<int32_t> ids;
    std::vector<double> p;
    int32_t parent = -1;
    const std::vector<float>* row = &L0_;
    for (int depth = 0; depth < 2; ++depth) {
      EXPECT_TRUE(q.Distribution(*row, &ids, &p).ok());
      const double u = s.Uniform();  // the draft's draw (any independent source works)
      double acc = 0;
      int32_t tok = ids.back();
      for (size_t k = 0; k < ids.size(); ++k) {
        acc += p[k];
        if (u < acc) {
          tok = ids[k];
          break;
        }
      }
      parent = t.Add(parent, tok);
      t.q.resize(t.size());
      t.q[parent].assign(V_, 0.0f);
      for (size_t k = 0; k < ids.size(); ++k) t.q[parent][ids[k]] = static_cast<float>(p[k]);
      if (!L1_.count(tok)) break;
      row = &L1_.at(tok);
    }
    return t;
  }

  const runtime::Model* model_ = nullptr;
  size_t V_ = 0;
  SamplerConfig cfg_;
  std::unique_ptr<runtime::Session> session_;
  std::vector<int32_t> prefix_;
  std::vector<float> L0_;
  std::vector<int32_t> s1_;
  std::map<int32_t, std::vector<float>> L1_;
  std::map<std::pair<int32_t, int32_t>, double> exact_;
  int draw_sets_ = 0;
  std::unique_ptr<Sampler> q_;  // the draft distribution's sampler (temperature 2)
};

TEST_F(DistributionTest, SpeculativeSamplingKeepsTheTargetDistribution) {
  const auto plain = ChiSquare(Draw([](Sampler&) { return DraftTree(); }));
  const DraftTree fixed = DeterministicTree();
  const auto tree = ChiSquare(Draw([&](Sampler&) { return fixed; }));
  const auto sampled = ChiSquare(Draw([this](Sampler& s) { return SampledChain(s); }));
  std::printf("[ chi2     ] plain %.1f, tree %.1f, sampled-q chain %.1f (df %d, critical %.1f)\n",
              plain.first, tree.first, sampled.first, plain.second, ChiSquareCritical(plain.second));
  EXPECT_LT(plain.first, ChiSquareCritical(plain.second));
  EXPECT_LT(tree.first, ChiSquareCritical(tree.second));
  EXPECT_LT(sampled.first, ChiSquareCritical(sampled.second));
}

TEST_F(DistributionTest, ABiasedVerifierFailsTheSameTest) {
  runtime::Verifier::SetSkipResidualForTesting(true);
  const DraftTree fixed = DeterministicTree();
  const auto tree = ChiSquare(Draw([&](Sampler&) { return fixed; }));
  const auto sampled = ChiSquare(Draw([this](Sampler& s) { return SampledChain(s); }));
  runtime::Verifier::SetSkipResidualForTesting(false);
  std::printf("[ chi2     ] biased: tree %.1f, sampled-q chain %.1f (critical %.1f)\n", tree.first,
              sampled.first, ChiSquareCritical(tree.second));
  EXPECT_GT(tree.first, ChiSquareCritical(tree.second));
  EXPECT_GT(sampled.first, ChiSquareCritical(sampled.second));
}

// ---- Sessions ---------------------------------------------------------------------------------

std::unique_ptr<runtime::Session> MakeSession(const std::string& device, SpecMethod m,
                                              hal::Device* fallback) {
  runtime::SessionConfig c;
  c.context_length = 128;
  c.sampler.temperature = 0.0f;
  c.spec.method = m;
  c.spec.max_draft = 4;
  if (m == SpecMethod::kDraft) c.spec.draft_model = SpecEnv::Get().Model("stories260K-first4L.gguf", device);
  auto s = runtime::Session::Create(SpecEnv::Get().Model("stories260K.gguf", device), fallback, c);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? std::move(*s) : nullptr;
}

float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  float m = a.size() == b.size() ? 0.0f : INFINITY;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

class SessionBehaviourTest : public ::testing::TestWithParam<std::string> {};

// After generations whose trees were partly rejected, the KV equals plain decoding's: the next
// token's logits agree (bit-exact on ref; within rounding on devices whose batched kernels sum in
// another order).
TEST_P(SessionBehaviourTest, KvAfterRejectedTreesGivesPlainLogits) {
  KESTREL_SPEC_DEVICE_OR_SKIP(GetParam());
  for (SpecMethod m : {SpecMethod::kLookahead, SpecMethod::kDraft}) {
    auto spec = MakeSession(GetParam(), m, SpecEnv::Get().Ref());
    auto plain = MakeSession(GetParam(), SpecMethod::kOff, SpecEnv::Get().Ref());
    ASSERT_TRUE(spec && plain);
    const GoldenCase c = ReadGolden("stories260K.golden.json")[0];
    runtime::GenerateRequest req;
    req.prompt = c.prompt;
    req.max_new_tokens = 40;
    auto a = spec->Generate(req);
    auto b = plain->Generate(req);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_GT(a->spec.drafted, a->spec.accepted) << "some draft tokens were rejected";
    ASSERT_EQ(a->tokens, b->tokens);
    ASSERT_EQ(spec->n_tokens(), plain->n_tokens());
    EXPECT_LE(MaxAbsDiff(spec->logits(), plain->logits()), GetParam() == "ref" ? 0.0f : 1e-3f);
    const int32_t next = a->tokens.back();
    ASSERT_TRUE(spec->Decode({&next, 1}).ok());
    ASSERT_TRUE(plain->Decode({&next, 1}).ok());
    EXPECT_LE(MaxAbsDiff(spec->logits(), plain->logits()), GetParam() == "ref" ? 0.0f : 1e-3f)
        << runtime::SpecMethodName(m);
  }
}

// Cancel from the streaming callback in the middle of a verified step's tokens: generation stops
// there (kCancelled), the KV holds exactly the tokens before the last one delivered, and decoding
// on gives plain decoding's logits.
TEST_P(SessionBehaviourTest, CancelDuringAVerifiedStep) {
  KESTREL_SPEC_DEVICE_OR_SKIP(GetParam());
  auto spec = MakeSession(GetParam(), SpecMethod::kDraft, SpecEnv::Get().Ref());
  ASSERT_TRUE(spec);
  const GoldenCase c = ReadGolden("stories260K.golden.json")[0];
  runtime::GenerateRequest req;
  req.prompt = c.prompt;
  req.max_new_tokens = 48;
  int seen = 0;
  runtime::Session* s = spec.get();
  req.on_token = [&](int32_t token, absl::string_view) {
    if (token != runtime::kNoToken && ++seen == 7) s->Cancel();
    return true;
  };
  auto r = spec->Generate(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stop_reason, runtime::StopReason::kCancelled);
  ASSERT_EQ(r->tokens.size(), 7u) << "no token after the cancel, even inside an accepted path";
  EXPECT_TRUE(std::equal(r->tokens.begin(), r->tokens.end(), c.generated.begin()));
  EXPECT_EQ(spec->n_tokens(), c.prompt.size() + r->tokens.size() - 1);
  auto plain = MakeSession(GetParam(), SpecMethod::kOff, SpecEnv::Get().Ref());
  std::vector<int32_t> all = c.prompt;
  all.insert(all.end(), r->tokens.begin(), r->tokens.end());
  ASSERT_TRUE(plain->Decode(all).ok());
  ASSERT_TRUE(spec->Decode({&r->tokens.back(), 1}).ok());
  EXPECT_LE(MaxAbsDiff(spec->logits(), plain->logits()), GetParam() == "ref" ? 1e-5f : 1e-3f);
}

INSTANTIATE_TEST_SUITE_P(Devices, SessionBehaviourTest, ::testing::Values("ref", "cpu"));

// ---- Log-probabilities -------------------------------------------------------------------------

// Verify with n_logprobs reports, for each emitted token, what plain decoding would: Sampler::
// Logprobs on the row the token was chosen at, with the repetition window as it was then. Checked
// by replaying the emitted tokens through a second sampler, greedy and sampled.
TEST(VerifierLogprobsTest, EachEmittedTokenGetsItsRowsLogprobs) {
  constexpr size_t V = 12;
  std::mt19937 rng(4242);
  std::printf("[ seed     ] 4242\n");
  std::normal_distribution<float> normal(0.0f, 2.0f);
  for (float temperature : {0.0f, 1.0f}) {
    SamplerConfig c;
    c.temperature = temperature;
    c.top_k = 0;
    c.top_p = 1.0f;
    c.min_p = 0.0f;
    c.repetition_penalty = 1.5f;
    c.repetition_window = 8;
    c.logit_bias = {{5, 0.75f}};
    for (int trial = 0; trial < 20; ++trial) {
      // A chain of 4 nodes and a sibling at the root; chain tokens are each row's argmax half the
      // time, so paths of every length get accepted.
      std::vector<float> rows((1 + 5) * V);
      for (float& x : rows) x = normal(rng);
      DraftTree tree;
      int32_t parent = -1;
      for (int d = 0; d < 4; ++d) {
        const float* row = rows.data() + static_cast<size_t>(parent + 1) * V;
        int32_t tok = static_cast<int32_t>(rng() % V);
        if (rng() % 2 == 0) tok = static_cast<int32_t>(std::max_element(row, row + V) - row);
        parent = tree.Add(parent, tok);
      }
      tree.Add(-1, static_cast<int32_t>((tree.tokens[0] + 1) % V));
      Sampler s = *Sampler::Create(c);
      s.Accept(3);  // a window that penalises something
      runtime::Verifier verifier;
      runtime::VerifyOutcome out;
      ASSERT_TRUE(verifier.Verify(tree, rows.data(), V, s, 8, [](int32_t) { return false; }, &out, 3).ok());
      ASSERT_EQ(out.logprobs.size(), out.tokens.size());
      Sampler replay = *Sampler::Create(c);
      replay.Accept(3);
      for (size_t j = 0; j < out.tokens.size(); ++j) {
        const size_t row = j == 0 ? 0 : 1 + static_cast<size_t>(out.accepted[j - 1]);
        std::vector<int32_t> ids;
        std::vector<double> probs;
        ASSERT_TRUE(replay.Distribution(absl::MakeConstSpan(rows.data() + row * V, V), &ids, &probs).ok());
        runtime::TokenLogprobs want;
        replay.Logprobs(out.tokens[j], 3, &want);
        replay.Accept(out.tokens[j]);
        const runtime::TokenLogprobs& got = out.logprobs[j];
        EXPECT_EQ(got.chosen.token, out.tokens[j]);
        EXPECT_FLOAT_EQ(got.chosen.logprob, want.chosen.logprob) << "trial " << trial << " token " << j;
        ASSERT_EQ(got.top.size(), 3u);
        for (size_t k = 0; k < 3; ++k) {
          EXPECT_EQ(got.top[k].token, want.top[k].token);
          EXPECT_FLOAT_EQ(got.top[k].logprob, want.top[k].logprob);
        }
      }
      // Without n_logprobs nothing is computed.
      Sampler quiet = *Sampler::Create(c);
      ASSERT_TRUE(verifier.Verify(tree, rows.data(), V, quiet, 8, [](int32_t) { return false; }, &out).ok());
      EXPECT_TRUE(out.logprobs.empty());
    }
  }
}

TEST(SpecRefusalTest, DraftWithAnotherVocabIsRefused) {
  runtime::SessionConfig c;
  c.spec.method = SpecMethod::kDraft;
  c.spec.draft_model = SpecEnv::Get().Model("llama-2-tiny-random.gguf", "ref");
  ASSERT_NE(c.spec.draft_model, nullptr);
  auto s = runtime::Session::Create(SpecEnv::Get().Model("stories260K.gguf", "ref"), nullptr, c);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("vocab has 32000 tokens but the target's has 512"),
            std::string::npos)
      << s.status();
  c.spec.draft_model = nullptr;
  s = runtime::Session::Create(SpecEnv::Get().Model("stories260K.gguf", "ref"), nullptr, c);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("needs a draft model"), std::string::npos) << s.status();
}

TEST(SpecRefusalTest, TooLargeTreesAndUnbuiltMethodsAreRefused) {
  const runtime::Model* m = SpecEnv::Get().Model("stories260K.gguf", "ref");
  runtime::SessionConfig c;
  c.spec.method = SpecMethod::kLookahead;
  c.spec.tree_budget = 1000;
  auto s = runtime::Session::Create(m, nullptr, c);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("tree_budget = 1000 is larger than 256"), std::string::npos)
      << s.status();
  c.spec.tree_budget = 0;
  c.spec.max_draft = 65;
  s = runtime::Session::Create(m, nullptr, c);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("max_draft_tokens = 65"), std::string::npos) << s.status();
  c.spec.max_draft = 0;
  c.spec.method = SpecMethod::kEagle;  // without its heads file
  s = runtime::Session::Create(m, nullptr, c);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << s.status();
}

// A device that cannot run the tree mask and no fallback: trees are cut to their first path
// (causal attention verifies a chain), and the output stays the golden one.
TEST(SpecRefusalTest, TreesAreCutToChainsWithoutTreeMaskSupport) {
  KESTREL_SPEC_DEVICE_OR_SKIP("opencl");
  const runtime::Model* m = SpecEnv::Get().Model("stories260K.gguf", "opencl");
  ASSERT_NE(m, nullptr);
  runtime::SessionConfig c;
  c.context_length = 128;
  c.sampler.temperature = 0.0f;
  c.spec.method = SpecMethod::kLookahead;
  auto s = runtime::Session::Create(m, nullptr, c);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_FALSE(const_cast<runtime::Executor&>((*s)->executor()).SupportsTreeMask());
  const GoldenCase g = ReadGolden("stories260K.golden.json")[0];
  runtime::GenerateRequest req;
  req.prompt = g.prompt;
  req.max_new_tokens = static_cast<uint32_t>(g.generated.size());
  auto r = (*s)->Generate(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->tokens, g.generated);
  EXPECT_GT(r->spec.drafted, 0u);
}

// ---- Medusa heads ------------------------------------------------------------------------------

// A heads file for stories260K written by the fixture: K heads with small seeded random weights
// (the output stays close to the base head's, so some drafts are accepted). Greedy identity does
// not depend on the heads' quality; tools/train_medusa.py trains real ones.
std::string WriteHeads(uint32_t n_embd, uint32_t n_vocab, uint32_t k_heads, const std::string& name) {
  const std::string path = TestTempDir().File(name);
  runtime::GgufWriter w;
  EXPECT_TRUE(w.AddString("general.architecture", "medusa").ok());
  EXPECT_TRUE(w.AddU32("medusa.n_heads", k_heads).ok());
  EXPECT_TRUE(w.AddU32("medusa.n_embd", n_embd).ok());
  EXPECT_TRUE(w.AddU32("medusa.n_vocab", n_vocab).ok());
  for (uint32_t k = 0; k < k_heads; ++k) {
    EXPECT_TRUE(w.AddTensor("medusa." + std::to_string(k) + ".weight", runtime::GgmlType::F32,
                            {n_embd, n_embd}).ok());
    EXPECT_TRUE(w.AddTensor("medusa." + std::to_string(k) + ".bias", runtime::GgmlType::F32, {n_embd}).ok());
  }
  EXPECT_TRUE(w.OpenFile(path).ok());
  std::mt19937 rng(1234);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  for (uint32_t k = 0; k < k_heads; ++k) {
    std::vector<float> wt(n_embd * n_embd), b(n_embd);
    for (float& x : wt) x = nd(rng);
    for (float& x : b) x = nd(rng);
    EXPECT_TRUE(w.WriteTensorData(wt.data(), wt.size() * 4).ok());
    EXPECT_TRUE(w.WriteTensorData(b.data(), b.size() * 4).ok());
  }
  EXPECT_TRUE(w.Close().ok());
  return path;
}

class MedusaTest : public ::testing::TestWithParam<std::string> {};

TEST_P(MedusaTest, HeadsKeepTheGoldenIdsInSessionsAndTheEngine) {
  KESTREL_SPEC_DEVICE_OR_SKIP(GetParam());
  const runtime::Model* m = SpecEnv::Get().Model("stories260K.gguf", GetParam());
  ASSERT_NE(m, nullptr);
  runtime::SpecConfig spec;
  spec.method = SpecMethod::kMedusa;
  spec.heads_path = WriteHeads(64, 512, 3, "medusa-" + GetParam() + ".gguf");
  runtime::SessionConfig c;
  c.context_length = 128;
  c.sampler.temperature = 0.0f;
  c.spec = spec;
  auto s = runtime::Session::Create(m, SpecEnv::Get().Ref(), c);
  ASSERT_TRUE(s.ok()) << s.status();
  const std::vector<GoldenCase> cases = ReadGolden("stories260K.golden.json");
  uint64_t drafted = 0;
  for (size_t i = 0; i < 2; ++i) {
    runtime::GenerateRequest req;
    req.prompt = cases[i].prompt;
    req.max_new_tokens = static_cast<uint32_t>(cases[i].generated.size());
    auto r = (*s)->Generate(req);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->tokens, cases[i].generated);
    drafted += r->spec.drafted;
  }
  EXPECT_GT(drafted, 0u);

  runtime::EngineConfig ec;
  ec.context_length = 128;
  auto e = runtime::Engine::Create(m, SpecEnv::Get().Ref(), ec);
  ASSERT_TRUE(e.ok());
  std::vector<uint64_t> ids;
  for (size_t i = 0; i < 3; ++i) {
    runtime::EngineRequest r;
    r.prompt = cases[i].prompt;
    r.max_new_tokens = static_cast<uint32_t>(cases[i].generated.size());
    r.sampler.temperature = 0.0f;
    r.spec = spec;
    ids.push_back(*(*e)->Submit(r));
  }
  ASSERT_TRUE((*e)->Wait(0, -1).ok());
  for (size_t i = 0; i < ids.size(); ++i) {
    auto out = (*e)->Result(ids[i]);
    ASSERT_TRUE(out.ok());
    EXPECT_EQ(out->samples[0].tokens, cases[i].generated) << out->status;
    EXPECT_GT(out->spec.drafted, 0u);
  }
}

INSTANTIATE_TEST_SUITE_P(Devices, MedusaTest, ::testing::Values("ref", "cpu"));

// ---- The draft vocab (a reduced output head) ------------------------------------------------------

class DraftVocabTest : public ::testing::TestWithParam<std::string> {};

// The device's product over the subset rows equals the host product with the dequantized matrix.
TEST_P(DraftVocabTest, ScoresAreTheOutputRowsOfTheFirstIds) {
  KESTREL_SPEC_DEVICE_OR_SKIP(GetParam());
  const runtime::Model* m = SpecEnv::Get().Model("stories260K.gguf", GetParam());
  ASSERT_NE(m, nullptr);
  const std::vector<std::string> names = {"output.weight", "token_embd.weight"};
  auto head = runtime::DraftVocabHead::Create(*m, 100, names, "test");
  ASSERT_TRUE(head.ok()) << head.status();
  ASSERT_EQ((*head)->size(), 100u);
  EXPECT_TRUE((*head)->on_device() || GetParam() == "ref");
  auto full = runtime::TargetMatrixF32(*m, names, "test");
  ASSERT_TRUE(full.ok()) << full.status();
  const uint32_t D = m->config().n_embd, n = 3;
  const uint32_t seed = 77;
  std::printf("DraftVocabTest seed %u\n", seed);
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(n * D);
  for (float& v : x) v = nd(rng);
  std::vector<float> scores(n * 100, std::nanf(""));  // poisoned
  ASSERT_TRUE((*head)->Logits(x.data(), n, &scores).ok());
  ASSERT_EQ(scores.size(), n * 100u);
  for (uint32_t t = 0; t < n; ++t) {
    for (uint32_t i = 0; i < 100; ++i) {
      double want = 0;
      for (uint32_t j = 0; j < D; ++j) want += (*full)[static_cast<uint64_t>((*head)->token(i)) * D + j] * x[t * D + j];
      EXPECT_NEAR(scores[t * 100 + i], want, 2e-2 + 2e-2 * std::fabs(want)) << "row " << t << " id " << i;
    }
  }
  // More than the vocab: the whole vocab.
  auto all = runtime::DraftVocabHead::Create(*m, 1u << 20, names, "test");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ((*all)->size(), m->config().n_vocab);
}

// Medusa heads propose only tokens of the draft vocab.
TEST_P(DraftVocabTest, MedusaProposesOnlyDraftVocabTokens) {
  KESTREL_SPEC_DEVICE_OR_SKIP(GetParam());
  const runtime::Model* m = SpecEnv::Get().Model("stories260K.gguf", GetParam());
  ASSERT_NE(m, nullptr);
  auto heads = runtime::LoadMedusaHeads(WriteHeads(64, 512, 3, "medusa-vocab-" + GetParam() + ".gguf"), *m, 40);
  ASSERT_TRUE(heads.ok()) << heads.status();
  runtime::MedusaProposer p(std::move(*heads));
  std::vector<float> hidden(64);
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (float& v : hidden) v = nd(rng);
  const std::vector<int32_t> history = {1, 300, 301};
  runtime::ProposeRequest req;
  req.history = history;
  req.max_depth = 3;
  req.max_nodes = 8;
  req.hidden = hidden;
  runtime::DraftTree tree;
  ASSERT_TRUE(p.Propose(req, &tree).ok());
  ASSERT_GT(tree.size(), 0u);
  for (size_t i = 0; i < tree.size(); ++i) EXPECT_LT(tree.tokens[i], 40) << "node " << i;
}

INSTANTIATE_TEST_SUITE_P(Devices, DraftVocabTest, ::testing::Values("ref", "cpu"));

TEST(MedusaRefusalTest, HeadsForAnotherModelAreRefused) {
  runtime::SessionConfig c;
  c.spec.method = SpecMethod::kMedusa;
  auto s = runtime::Session::Create(SpecEnv::Get().Model("stories260K.gguf", "ref"), nullptr, c);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("needs heads_path"), std::string::npos) << s.status();
  c.spec.heads_path = WriteHeads(32, 512, 2, "medusa-wrong.gguf");
  s = runtime::Session::Create(SpecEnv::Get().Model("stories260K.gguf", "ref"), nullptr, c);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("trained for n_embd 32 and vocab 512, but the model has 64 and 512"),
            std::string::npos)
      << s.status();
  c.spec.heads_path = TestTempDir().File("no-such-heads.gguf");
  s = runtime::Session::Create(SpecEnv::Get().Model("stories260K.gguf", "ref"), nullptr, c);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("no-such-heads.gguf"), std::string::npos) << s.status();
}

}  // namespace
}  // namespace kestrel::testing
