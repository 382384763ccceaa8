#include "plugin_sdk/conformance/op_case.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kestrel/plugin_sdk/dtype.h"
#include "kestrel/plugin_sdk/half.h"
#include "kestrel/plugin_sdk/op_contract.h"
#include "kestrel/plugin_sdk/quants.h"

namespace kestrel::conformance {

using plugin_sdk::testing_util::RandomWeights;

// ---- op cases -------------------------------------------------------------------------------------
kestrel_tensor_arg_t A(kestrel_tensor_desc_t d) {
  kestrel_tensor_arg_t a{};
  a.desc = d;
  return a;
}

Tensor F32(std::vector<int64_t> dims, const std::vector<float>& v) {
  return {Desc(KESTREL_DTYPE_F32, dims), Bytes(v), false};
}
Tensor I32(std::vector<int64_t> dims, const std::vector<int32_t>& v) {
  return {Desc(KESTREL_DTYPE_I32, dims), Bytes(v), false};
}
Tensor Out(uint32_t dtype, std::vector<int64_t> dims) { return {Desc(dtype, dims), {}, false}; }

// ---- padded buffers ----------------------------------------------------------------------------
namespace {

uint8_t Canary(uint64_t i) { return static_cast<uint8_t>(0xA5u ^ (i * 0x3Bu)); }

}  // namespace

absl::StatusOr<hal::Buffer> AllocatePadded(hal::Device* dev, uint64_t bytes, const uint8_t* init,
                                           uint8_t poison) {
  auto b = dev->Allocate(bytes + 2 * kPad);
  if (!b.ok()) return b.status();
  std::vector<uint8_t> image(bytes + 2 * kPad);
  for (uint64_t i = 0; i < kPad; ++i) {
    image[i] = Canary(i);
    image[kPad + bytes + i] = Canary(kPad + bytes + i);
  }
  if (init != nullptr) {
    if (bytes > 0) std::memcpy(image.data() + kPad, init, bytes);
  } else {
    std::fill(image.begin() + kPad, image.begin() + kPad + bytes, poison);
  }
  if (auto s = dev->Write(*b, 0, image.data(), image.size()); !s.ok()) return s;
  return std::move(*b);
}

absl::Status CheckPadding(hal::Device* dev, const hal::Buffer& buffer, uint64_t bytes,
                          const std::string& what) {
  std::vector<uint8_t> image(bytes + 2 * kPad);
  if (auto s = dev->Read(buffer, 0, image.data(), image.size()); !s.ok()) return s;
  for (uint64_t i = 0; i < image.size(); ++i) {
    if (i == kPad) i += bytes;  // the tensor itself
    if (i >= image.size()) break;
    if (image[i] != Canary(i)) {
      const bool before = i < kPad;
      return absl::DataLossError(absl::StrCat(
          dev->name(), " wrote outside ", what, ": byte ",
          before ? absl::StrCat(kPad - i, " before its start")
                 : absl::StrCat(i - kPad - bytes, " past its end"),
          " (", bytes, "-byte tensor, ", kPad, " guard bytes each side) changed"));
    }
  }
  return absl::OkStatus();
}

namespace {

// The buffers of one case on one device: each tensor at kPad inside guard bytes.
struct Bound {
  std::vector<hal::Buffer> buffers;
  std::vector<hal::PreparedWeight> weights;
  std::vector<kestrel_tensor_arg_t> in, out;
  std::vector<const hal::Buffer*> in_buffers, out_buffers;
};

absl::Status Bind(hal::Device* dev, const OpCase& c, uint8_t poison, Bound* b) {
  b->in.assign(c.in.size(), {});
  b->out.assign(c.out.size(), {});
  b->in_buffers.assign(c.in.size(), nullptr);
  b->out_buffers.assign(c.out.size(), nullptr);
  b->buffers.reserve(c.in.size() + c.out.size());  // the pointers above stay valid
  for (size_t i = 0; i < c.in.size(); ++i) {
    const Tensor& t = c.in[i];
    b->in[i].desc = t.desc;
    if (t.prepared) {
      auto w = dev->PrepareWeight(t.desc, t.bytes.data(), t.bytes.size());
      if (!w.ok()) return w.status();
      b->in[i].weight = w->handle();
      b->weights.push_back(std::move(*w));
      continue;
    }
    auto buf = AllocatePadded(dev, t.bytes.size(), t.bytes.data(), poison);
    if (!buf.ok()) return buf.status();
    b->in[i].buffer = buf->handle();
    b->in[i].offset = kPad;
    b->buffers.push_back(std::move(*buf));
    b->in_buffers[i] = &b->buffers.back();
  }
  for (size_t i = 0; i < c.out.size(); ++i) {
    const Tensor& t = c.out[i];
    b->out[i].desc = t.desc;
    b->out[i].offset = kPad;
    if (i == 0 && c.out_alias >= 0) {
      b->out[i].buffer = b->in[c.out_alias].buffer;
      b->out_buffers[i] = b->in_buffers[c.out_alias];
      continue;
    }
    const uint64_t size = plugin_sdk::TensorBytes(t.desc);
    auto buf = AllocatePadded(dev, size, t.bytes.empty() ? nullptr : t.bytes.data(), poison);
    if (!buf.ok()) return buf.status();
    b->out[i].buffer = buf->handle();
    b->buffers.push_back(std::move(*buf));
    b->out_buffers[i] = &b->buffers.back();
  }
  return absl::OkStatus();
}

// After the op: every guard intact, every input that is not also the output unchanged.
absl::Status CheckAfter(hal::Device* dev, const OpCase& c, const Bound& b) {
  for (size_t i = 0; i < c.in.size(); ++i) {
    if (b.in_buffers[i] == nullptr) continue;
    const std::vector<uint8_t>& bytes = c.in[i].bytes;
    if (auto s = CheckPadding(dev, *b.in_buffers[i], bytes.size(), absl::StrCat("input ", i));
        !s.ok()) {
      return s;
    }
    if (static_cast<int>(i) == c.out_alias || bytes.empty()) continue;
    std::vector<uint8_t> now(bytes.size());
    if (auto s = dev->Read(*b.in_buffers[i], kPad, now.data(), now.size()); !s.ok()) return s;
    if (now != bytes) {
      return absl::DataLossError(absl::StrCat(dev->name(), " changed input ", i, " (not an output)"));
    }
  }
  for (size_t i = 0; i < c.out.size(); ++i) {
    if (i == 0 && c.out_alias >= 0) continue;  // checked as its input
    if (auto s = CheckPadding(dev, *b.out_buffers[i], plugin_sdk::TensorBytes(c.out[i].desc),
                              absl::StrCat("output ", i));
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RunOn(hal::Device* dev, const OpCase& c, std::vector<std::vector<uint8_t>>* outs,
                   uint8_t poison) {
  Bound b;
  if (auto s = Bind(dev, c, poison, &b); !s.ok()) return s;
  kestrel_op_desc_t op = MakeOp(c.kind, b.in, b.out, c.params);
  op.op_version = c.op_version;
  auto support = dev->Query(op);
  if (!support.ok()) return support.status();
  if (support->level == KESTREL_OP_UNSUPPORTED) {
    return absl::UnimplementedError(dev->name() + " reports the op UNSUPPORTED");
  }
  if (auto s = dev->Execute(op, nullptr); !s.ok()) return s;
  if (auto s = dev->Synchronize(); !s.ok()) return s;
  outs->assign(c.out.size(), {});
  for (size_t i = 0; i < c.out.size(); ++i) {
    (*outs)[i].resize(plugin_sdk::TensorBytes(c.out[i].desc));
    if ((*outs)[i].empty()) continue;
    if (auto s = dev->Read(*b.out_buffers[i], kPad, (*outs)[i].data(), (*outs)[i].size());
        !s.ok()) {
      return s;
    }
  }
  return CheckAfter(dev, c, b);
}

absl::Status RunReference(hal::Device* ref, const OpCase& c,
                          std::vector<std::vector<uint8_t>>* outs) {
  if (auto s = RunOn(ref, c, outs, 0xFF); !s.ok()) return s;
  std::vector<std::vector<uint8_t>> again;
  if (auto s = RunOn(ref, c, &again, 0x00); !s.ok()) return s;
  for (size_t i = 0; i < c.out.size(); ++i) {
    const bool poisoned = c.out[i].bytes.empty() && !(i == 0 && c.out_alias >= 0);
    if (!poisoned) continue;
    const std::vector<uint8_t>& w = (*outs)[i];
    const auto diff = std::mismatch(w.begin(), w.end(), again[i].begin());
    if (diff.first != w.end()) {
      return absl::DataLossError(absl::StrCat(ref->name(), " left byte ", diff.first - w.begin(),
                                              " of output ", i, " unwritten (it differs under ",
                                              "poisons 0xFF and 0x00)"));
    }
  }
  return absl::OkStatus();
}

Tensor Weight(Rng& rng, uint32_t dtype, int64_t rows, int64_t cols, bool prepared) {
  if (plugin_sdk::IsExtraQuant(dtype)) {
    // Random blocks with scales of realistic size (values in about [-2, 2]).
    const int64_t blocks = rows * cols / plugin_sdk::ExtraQuantBlockElements(dtype);
    std::vector<uint8_t> bytes(blocks * plugin_sdk::ExtraQuantBlockBytes(dtype));
    std::mt19937_64 gen((uint64_t{rng.gen()()} << 32) | rng.gen()());
    plugin_sdk::RandomExtraBlocks(dtype, blocks, /*moderate=*/true, gen, bytes.data());
    return {Desc(dtype, {rows, cols}), std::move(bytes), prepared};
  }
  return {Desc(dtype, {rows, cols}), RandomWeights(rng, dtype, rows, cols), prepared};
}

const uint32_t kWeightDtypes[5] = {KESTREL_DTYPE_F32, KESTREL_DTYPE_F16, KESTREL_DTYPE_BF16,
                                  KESTREL_DTYPE_Q8_0, KESTREL_DTYPE_Q4_0};
const uint32_t kExtraQuantDtypes[8] = {KESTREL_DTYPE_Q4_1, KESTREL_DTYPE_Q5_0, KESTREL_DTYPE_Q5_1,
                                       KESTREL_DTYPE_Q2_K, KESTREL_DTYPE_Q3_K, KESTREL_DTYPE_Q4_K,
                                       KESTREL_DTYPE_Q5_K, KESTREL_DTYPE_Q6_K};

std::string Name(uint32_t dtype) { return plugin_sdk::DtypeName(dtype); }

// ---- KV cache ops -----------------------------------------------------------------------------------
std::vector<uint8_t> RandomCache(Rng& rng, uint32_t dtype, int64_t elems) {
  const std::vector<float> f = rng.Floats(elems);
  if (dtype == KESTREL_DTYPE_F32) return Bytes(f);
  std::vector<uint16_t> h(elems);
  for (int64_t i = 0; i < elems; ++i) h[i] = plugin_sdk::FloatToHalf(f[i]);
  return Bytes(h);
}

// ---- paged attention ------------------------------------------------------------------------------
OpCase Attention(Rng& rng, int64_t h, int64_t hkv, int64_t dh, int64_t b, uint32_t kd,
                 uint32_t vd, bool causal, const std::vector<Seq>& seqs, bool tree) {
  int64_t used = 0, mb = 1, t = 0;
  for (const Seq& s : seqs) {
    used += (s.kv_len + b - 1) / b;
    mb = std::max(mb, (s.kv_len + b - 1) / b + 1);
    t += s.q_len;
  }
  const int64_t nb = used + 3;
  std::vector<int32_t> pool(static_cast<size_t>(nb));
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), rng.gen());
  const int64_t n_seqs = static_cast<int64_t>(seqs.size());
  std::vector<int32_t> tables(seqs.size() * static_cast<size_t>(mb), -1);
  std::vector<int32_t> starts(seqs.size() + 1, 0), lens(seqs.size(), 0);
  size_t next = 0;
  for (int64_t s = 0; s < n_seqs; ++s) {
    for (int64_t k = 0; k < (seqs[s].kv_len + b - 1) / b; ++k) tables[s * mb + k] = pool[next++];
    starts[s + 1] = starts[s] + static_cast<int32_t>(seqs[s].q_len);
    lens[s] = static_cast<int32_t>(seqs[s].kv_len);
  }
  OpCase c;
  c.kind = KESTREL_OP_PAGED_ATTENTION;
  const int64_t cache = nb * b * hkv * dh;
  c.in = {F32({t, h, dh}, rng.Floats(t * h * dh, -2, 2)),
          {Desc(kd, {nb, b, hkv, dh}), RandomCache(rng, kd, cache), false},
          {Desc(vd, {nb, b, hkv, dh}), RandomCache(rng, vd, cache), false},
          I32({n_seqs, mb}, tables), I32({n_seqs + 1}, starts), I32({n_seqs}, lens)};
  c.out = {Out(KESTREL_DTYPE_F32, {t, h, dh})};
  kestrel_op_attention_params_t p{};
  p.n_heads = static_cast<uint32_t>(h);
  p.n_kv_heads = static_cast<uint32_t>(hkv);
  p.head_dim = static_cast<uint32_t>(dh);
  p.block_size = static_cast<uint32_t>(b);
  p.causal = causal ? 1 : 0;
  p.scale = 1.0f / std::sqrt(static_cast<float>(dh));
  if (tree) {
    // A random forest per sequence, its nodes then shuffled so that parents need not precede
    // their children.
    std::vector<int32_t> parents;
    for (int64_t s = 0; s < n_seqs; ++s) {
      const int64_t q_len = seqs[s].q_len;
      std::vector<int32_t> forest(q_len), perm(q_len), shuffled(q_len);
      for (int64_t j = 0; j < q_len; ++j) forest[j] = j == 0 ? -1 : rng.Int(-1, j - 1);
      std::iota(perm.begin(), perm.end(), 0);
      std::shuffle(perm.begin(), perm.end(), rng.gen());
      for (int64_t j = 0; j < q_len; ++j) {
        shuffled[perm[j]] = forest[j] < 0 ? -1 : perm[forest[j]];
      }
      parents.insert(parents.end(), shuffled.begin(), shuffled.end());
    }
    c.in.push_back(I32({t}, parents));
    p.tree_mask = 1;
  }
  c.params = Params(p);
  return c;
}

OpCase WindowedAttention(OpCase c, uint32_t window) {
  kestrel_op_attention_params_t p{};
  std::memcpy(&p, c.params.data(), std::min(c.params.size(), sizeof p));
  p.window = window;
  c.params = Params(p);
  c.op_version = 2;
  const int64_t b = p.block_size;
  const kestrel_tensor_desc_t& td = c.in[3].desc;
  std::vector<int32_t> tables(td.dims[0] * td.dims[1]), starts(td.dims[0] + 1), lens(td.dims[0]);
  std::memcpy(tables.data(), c.in[3].bytes.data(), tables.size() * 4);
  std::memcpy(starts.data(), c.in[4].bytes.data(), starts.size() * 4);
  std::memcpy(lens.data(), c.in[5].bytes.data(), lens.size() * 4);
  for (int64_t s = 0; s < td.dims[0]; ++s) {
    const int64_t first = lens[s] - (starts[s + 1] - starts[s]) - static_cast<int64_t>(window) + 1;
    for (int64_t k = 0; (k + 1) * b <= first; ++k) tables[s * td.dims[1] + k] = -1;
  }
  c.in[3].bytes = Bytes(tables);
  return c;
}

kestrel_op_desc_t AddOp(kestrel_plugin_buffer_t* a, kestrel_plugin_buffer_t* b,
                        kestrel_plugin_buffer_t* out, int64_t n, kestrel_tensor_arg_t args[3]) {
  for (int i = 0; i < 3; ++i) {
    args[i] = kestrel_tensor_arg_t{};
    args[i].desc = Desc(KESTREL_DTYPE_F32, {1, n});
  }
  args[0].buffer = a;
  args[1].buffer = b;
  args[2].buffer = out;
  kestrel_op_desc_t op{};
  op.struct_size = sizeof op;
  op.kind = KESTREL_OP_ADD;
  op.op_version = 1;
  op.n_inputs = 2;
  op.n_outputs = 1;
  op.inputs = args;
  op.outputs = args + 2;
  return op;
}

Comparison Compare(const OpCase& c, const std::vector<std::vector<uint8_t>>& want,
                   const std::vector<std::vector<uint8_t>>& got) {
  Comparison r;
  for (size_t i = 0; i < c.out.size(); ++i) {
    if (i >= got.size() || i >= want.size() || got[i].size() != want[i].size()) {
      r.ok = false;
      r.message = "output " + std::to_string(i) + ": wrong size";
      return r;
    }
    if (c.exact || c.out[i].desc.dtype != KESTREL_DTYPE_F32) {
      if (got[i] != want[i]) {
        r.ok = false;
        r.message = "output " + std::to_string(i) + " differs from the reference (bit for bit)";
        return r;
      }
      continue;
    }
    const size_t n = want[i].size() / 4;
    std::vector<float> g(n), w(n);
    if (n > 0) {
      std::memcpy(g.data(), got[i].data(), n * 4);
      std::memcpy(w.data(), want[i].data(), n * 4);
    }
    std::vector<double> wd(w.begin(), w.end());
    const double err = n == 0 ? 0.0 : plugin_sdk::testing_util::RelErr(g, wd);
    r.max_error = std::max(r.max_error, err);
    if (!(err <= c.tol)) {
      r.ok = false;
      r.message = "output " + std::to_string(i) + ": relative norm error " + std::to_string(err) +
                  " > tolerance " + std::to_string(c.tol) + " (n=" + std::to_string(n) + ")";
      return r;
    }
  }
  return r;
}

}  // namespace kestrel::conformance
