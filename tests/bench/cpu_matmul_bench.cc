// Microbenchmark of MATMUL through the HAL: the cpu plugin against the reference plugin (the
// baseline, measured in the same run), for the decode GEMV (T=1) and a prefill GEMM (T=128) at
// TinyLlama-1.1B shapes (2048x2048: attention projections, 5632x2048: FFN), each weight format,
// 1 and 2 threads. Reports GB/s of weight bytes (the GGUF size of the weight) and, for GEMM,
// GFLOP/s. Not a test: run it by hand on a quiet machine, e.g.
//   build/bin/cpu_matmul_bench --benchmark_min_time=0.5 --benchmark_repetitions=3
//       --benchmark_report_aggregates_only=true
// BM_DecodeSweep runs one decode step's GEMVs over a DRAM-sized working set (GB/s comparable with
// `kestrel bench --membw`); BM_Matmul's single matrices stay in the L2/L3.
// The plugin folder is KESTREL_PLUGIN_DIR, or the build's plugin folder.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "hal/src/device.h"
#include "hal/src/plugin_registry.h"
#include "kestrel/plugin_api.h"
#include "kestrel/plugin_sdk/half.h"
#include "kestrel/plugin_sdk/dtype.h"
#include "kestrel/plugin_sdk/quants.h"

namespace {

using kestrel::hal::Device;
using kestrel::hal::PluginRegistry;

// One registry at a time: the cpu plugin's init options (threads, exact) are process-wide.
struct Env {
  int threads = 0;
  bool exact = false;
  std::unique_ptr<PluginRegistry> registry;
};
Env& CurrentEnv() {
  static Env env;
  return env;
}

Device* GetDevice(const std::string& name, int threads, bool exact) {
  Env& env = CurrentEnv();
  if (!env.registry || env.threads != threads || env.exact != exact) {
    env.registry.reset();
    const char* dir = std::getenv("KESTREL_PLUGIN_DIR");
    kestrel::hal::PluginOptions options = {{"threads", std::to_string(threads)},
                                           {"exact", exact ? "1" : "0"}};
    env.registry = PluginRegistry::Create(dir ? dir : KESTREL_PLUGIN_OUTPUT_DIR, nullptr, options);
    env.threads = threads;
    env.exact = exact;
  }
  auto d = env.registry->FindDevice(name);
  return d.ok() ? *d : nullptr;
}

kestrel_tensor_desc_t Desc(uint32_t dtype, int64_t d0, int64_t d1) {
  kestrel_tensor_desc_t d{};
  d.struct_size = sizeof d;
  d.dtype = dtype;
  d.rank = 2;
  d.dims[0] = d0;
  d.dims[1] = d1;
  return d;
}

std::vector<uint8_t> RandomWeight(uint32_t dtype, int64_t n, int64_t k) {
  if (kestrel::plugin_sdk::IsExtraQuant(dtype)) {  // random blocks with realistic scales
    std::mt19937_64 gen64(42);
    std::vector<uint8_t> out(kestrel::plugin_sdk::RowBytes(dtype, k) * n);
    kestrel::plugin_sdk::RandomExtraBlocks(dtype, static_cast<int64_t>(out.size() / kestrel::plugin_sdk::DtypeBlockBytes(dtype)),
                           true, gen64, out.data());
    return out;
  }
  std::mt19937 gen(42);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> row(k);
  const uint64_t row_bytes = kestrel::plugin_sdk::RowBytes(dtype, k);
  std::vector<uint8_t> out(row_bytes * n);
  for (int64_t j = 0; j < n; ++j) {
    for (float& v : row) v = u(gen);
    uint8_t* dst = out.data() + j * row_bytes;
    switch (dtype) {
      case KESTREL_DTYPE_F32: std::memcpy(dst, row.data(), k * 4); break;
      case KESTREL_DTYPE_F16:
        for (int64_t i = 0; i < k; ++i) {
          const uint16_t h = kestrel::plugin_sdk::FloatToHalf(row[i]);
          std::memcpy(dst + 2 * i, &h, 2);
        }
        break;
      case KESTREL_DTYPE_Q8_0: kestrel::plugin_sdk::QuantizeRowQ8_0(row.data(), k, dst); break;
      case KESTREL_DTYPE_Q4_0: kestrel::plugin_sdk::QuantizeRowQ4_0(row.data(), k, dst); break;
    }
  }
  return out;
}

// args: dtype, N, K, T, threads, exact
void BM_Matmul(benchmark::State& state, const char* device_name) {
  const uint32_t dtype = static_cast<uint32_t>(state.range(0));
  const int64_t n = state.range(1), k = state.range(2), t = state.range(3);
  const int threads = static_cast<int>(state.range(4));
  const bool exact = state.range(5) != 0;
  Device* dev = GetDevice(device_name, threads, exact);
  if (dev == nullptr) {
    state.SkipWithError("device not found");
    return;
  }
  const kestrel_tensor_desc_t wd = Desc(dtype, n, k);
  const std::vector<uint8_t> wbytes = RandomWeight(dtype, n, k);
  auto weight = dev->PrepareWeight(wd, wbytes.data(), wbytes.size());
  auto x = dev->Allocate(t * k * 4);
  auto y = dev->Allocate(t * n * 4);
  if (!weight.ok() || !x.ok() || !y.ok()) {
    state.SkipWithError("setup failed");
    return;
  }
  std::vector<float> xv(t * k);
  std::mt19937 gen(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (float& v : xv) v = u(gen);
  (void)dev->Write(*x, 0, xv.data(), xv.size() * 4);
  kestrel_tensor_arg_t in[2] = {}, out[1] = {};
  in[0].desc = Desc(KESTREL_DTYPE_F32, t, k);
  in[0].buffer = x->handle();
  in[1].desc = wd;
  in[1].weight = weight->handle();
  out[0].desc = Desc(KESTREL_DTYPE_F32, t, n);
  out[0].buffer = y->handle();
  kestrel_op_desc_t op{};
  op.struct_size = sizeof op;
  op.kind = KESTREL_OP_MATMUL;
  op.op_version = 1;
  op.n_inputs = 2;
  op.n_outputs = 1;
  op.inputs = in;
  op.outputs = out;
  for (auto _ : state) {
    absl::Status s = dev->Execute(op, nullptr);
    if (!s.ok()) {
      state.SkipWithError(std::string(s.message()).c_str());
      return;
    }
  }
  const double bytes = static_cast<double>(wbytes.size()) * state.iterations();
  state.counters["GB/s"] = benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsRate);
  if (t > 1) {
    state.counters["GFLOP/s"] = benchmark::Counter(
        2.0 * n * k * t * state.iterations() / 1e9, benchmark::Counter::kIsRate);
  }
  state.SetLabel(std::string(kestrel::plugin_sdk::DtypeName(dtype)) + (exact ? " exact" : ""));
}

void GemvArgs(benchmark::internal::Benchmark* b, bool with_exact) {
  for (int threads : {1, 2}) {
    for (int dtype : {KESTREL_DTYPE_Q4_0, KESTREL_DTYPE_Q8_0, KESTREL_DTYPE_F16, KESTREL_DTYPE_F32,
                      KESTREL_DTYPE_Q4_K, KESTREL_DTYPE_Q6_K}) {
      for (int n : {2048, 5632}) {
        b->Args({dtype, n, 2048, 1, threads, 0});
        if (with_exact && (dtype == KESTREL_DTYPE_Q4_0 || dtype == KESTREL_DTYPE_Q8_0)) {
          b->Args({dtype, n, 2048, 1, threads, 1});
        }
      }
    }
  }
}

void GemmArgs(benchmark::internal::Benchmark* b) {
  for (int dtype : {KESTREL_DTYPE_Q4_0, KESTREL_DTYPE_F32, KESTREL_DTYPE_F16}) b->Args({dtype, 2048, 2048, 128, 1, 0});
  for (int dtype : {KESTREL_DTYPE_Q4_0, KESTREL_DTYPE_Q8_0, KESTREL_DTYPE_F16, KESTREL_DTYPE_F32,
                    KESTREL_DTYPE_Q4_K, KESTREL_DTYPE_Q6_K}) {
    b->Args({dtype, 2048, 2048, 128, 2, 0});
    b->Args({dtype, 5632, 2048, 128, 2, 0});
  }
}

// y[T, n] = x[T, k] . w[n, k]^T on dev, w a prepared weight of `dtype`.
absl::Status ExecuteMatmul(Device* dev, kestrel_plugin_buffer_t* x, kestrel_plugin_weight_t* w,
                           kestrel_plugin_buffer_t* y, uint32_t dtype, int64_t T, int64_t n,
                           int64_t k) {
  kestrel_tensor_arg_t in[2] = {}, out[1] = {};
  in[0].desc = Desc(KESTREL_DTYPE_F32, T, k);
  in[0].buffer = x;
  in[1].desc = Desc(dtype, n, k);
  in[1].weight = w;
  out[0].desc = Desc(KESTREL_DTYPE_F32, T, n);
  out[0].buffer = y;
  kestrel_op_desc_t op{};
  op.struct_size = sizeof op;
  op.kind = KESTREL_OP_MATMUL;
  op.op_version = 1;
  op.n_inputs = 2;
  op.n_outputs = 1;
  op.inputs = in;
  op.outputs = out;
  return dev->Execute(op, nullptr);
}

// Decode sweep: the GEMVs of one TinyLlama-1.1B decode step (22 layers x q, k, v, o, gate, up,
// down; the output projection left out), each layer's weights prepared separately, so the
// working set (Q4_0 ~0.56 GB, Q8_0 ~1.05 GB, F16 ~2 GB) is far beyond the L3 and every step
// streams its weights from DRAM, as in real decoding. GB/s is directly comparable with
// `kestrel bench --membw`. args: dtype, threads, tokens (1: decode; 8: a speculative verify
// step, 32: the engine's batch of 32 sequences: the same weights read once for all tokens, so
// ms per step against tokens = 1 is the cost of a verify / batched step relative to decode).
void BM_DecodeSweep(benchmark::State& state) {
  const uint32_t dtype = static_cast<uint32_t>(state.range(0));
  const int threads = static_cast<int>(state.range(1));
  const int64_t T = state.range(2);
  Device* dev = GetDevice("cpu", threads, false);
  if (dev == nullptr) {
    state.SkipWithError("device not found");
    return;
  }
  struct Shape {
    int64_t n, k;
  };
  const Shape shapes[] = {{2048, 2048}, {256, 2048}, {256, 2048}, {2048, 2048},
                          {5632, 2048}, {5632, 2048}, {2048, 5632}};
  std::vector<std::vector<uint8_t>> bytes;
  for (const Shape& s : shapes) bytes.push_back(RandomWeight(dtype, s.n, s.k));
  std::vector<kestrel::hal::PreparedWeight> weights;
  double total = 0;
  for (int layer = 0; layer < 22; ++layer) {
    for (size_t i = 0; i < 7; ++i) {
      auto w = dev->PrepareWeight(Desc(dtype, shapes[i].n, shapes[i].k), bytes[i].data(),
                                  bytes[i].size());
      if (!w.ok()) {
        state.SkipWithError("prepare failed");
        return;
      }
      weights.push_back(std::move(*w));
      total += static_cast<double>(bytes[i].size());
    }
  }
  auto x = dev->Allocate(T * 5632 * 4);
  auto y = dev->Allocate(T * 5632 * 4);
  if (!x.ok() || !y.ok()) {
    state.SkipWithError("setup failed");
    return;
  }
  std::vector<float> xv(T * 5632);
  std::mt19937 gen(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (float& v : xv) v = u(gen);
  (void)dev->Write(*x, 0, xv.data(), xv.size() * 4);
  for (auto _ : state) {
    for (size_t i = 0; i < weights.size(); ++i) {
      const Shape& s = shapes[i % 7];
      absl::Status st = ExecuteMatmul(dev, x->handle(), weights[i].handle(), y->handle(), dtype, T,
                                      s.n, s.k);
      if (!st.ok()) {
        state.SkipWithError(std::string(st.message()).c_str());
        return;
      }
    }
  }
  state.counters["GB/s"] = benchmark::Counter(total * state.iterations() / 1e9,
                                              benchmark::Counter::kIsRate);
  state.counters["steps/s"] = benchmark::Counter(static_cast<double>(state.iterations()),
                                                 benchmark::Counter::kIsRate);
  state.SetLabel(std::string(kestrel::plugin_sdk::DtypeName(dtype)) + " T=" + std::to_string(T));
}
BENCHMARK(BM_DecodeSweep)
    ->Args({KESTREL_DTYPE_Q4_0, 2, 1})
    ->Args({KESTREL_DTYPE_Q4_0, 2, 2})
    ->Args({KESTREL_DTYPE_Q4_0, 2, 4})
    ->Args({KESTREL_DTYPE_Q4_0, 2, 8})
    ->Args({KESTREL_DTYPE_Q4_0, 2, 32})
    ->Args({KESTREL_DTYPE_Q4_K, 2, 1})
    ->Args({KESTREL_DTYPE_Q6_K, 2, 1})
    ->Args({KESTREL_DTYPE_Q8_0, 2, 1})
    ->Args({KESTREL_DTYPE_Q8_0, 2, 8})
    ->Args({KESTREL_DTYPE_F16, 2, 1})
    ->Args({KESTREL_DTYPE_Q4_0, 1, 1})
    ->Args({KESTREL_DTYPE_Q4_0, 1, 8})
    ->Args({KESTREL_DTYPE_Q4_0, 1, 32})
    ->Args({KESTREL_DTYPE_Q8_0, 1, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Small batches (speculative verify, the batching engine): one TinyLlama-1.1B weight shape and
// format at T tokens, cycling through enough prepared copies of the weight that the working set
// (>= 512 MiB) streams from DRAM as in a real decode step. ms per op at T against T = 1 (same run;
// pass --benchmark_enable_random_interleaving=true --benchmark_repetitions=N to alternate them) is
// the cost of a T-row step relative to decode. args: dtype, N, K, T, threads. With 1 thread the
// calling thread does all the work, so its CPU time (the "CPU" column) is a measure that
// time-slicing on a shared machine disturbs far less than the wall time.
//   build/bin/cpu_matmul_bench --benchmark_filter=BM_SmallBatch --benchmark_repetitions=5
//       --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true
void BM_SmallBatch(benchmark::State& state) {
  const uint32_t dtype = static_cast<uint32_t>(state.range(0));
  const int64_t n = state.range(1), k = state.range(2), T = state.range(3);
  Device* dev = GetDevice("cpu", static_cast<int>(state.range(4)), false);
  if (dev == nullptr) {
    state.SkipWithError("device not found");
    return;
  }
  const std::vector<uint8_t> bytes = RandomWeight(dtype, n, k);
  const size_t copies = std::max<size_t>(2, (size_t{512} << 20) / bytes.size() + 1);
  std::vector<kestrel::hal::PreparedWeight> weights;
  for (size_t i = 0; i < copies; ++i) {
    auto w = dev->PrepareWeight(Desc(dtype, n, k), bytes.data(), bytes.size());
    if (!w.ok()) {
      state.SkipWithError("prepare failed");
      return;
    }
    weights.push_back(std::move(*w));
  }
  auto x = dev->Allocate(T * k * 4);
  auto y = dev->Allocate(T * n * 4);
  if (!x.ok() || !y.ok()) {
    state.SkipWithError("setup failed");
    return;
  }
  std::vector<float> xv(T * k);
  std::mt19937 gen(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (float& v : xv) v = u(gen);
  (void)dev->Write(*x, 0, xv.data(), xv.size() * 4);
  size_t i = 0;
  for (auto _ : state) {
    absl::Status st = ExecuteMatmul(dev, x->handle(), weights[i].handle(), y->handle(), dtype, T, n, k);
    if (!st.ok()) {
      state.SkipWithError(std::string(st.message()).c_str());
      return;
    }
    i = (i + 1) % copies;
  }
  state.counters["GB/s"] = benchmark::Counter(
      static_cast<double>(bytes.size()) * state.iterations() / 1e9, benchmark::Counter::kIsRate);
  state.SetLabel(std::string(kestrel::plugin_sdk::DtypeName(dtype)) + " T=" + std::to_string(T));
}
BENCHMARK(BM_SmallBatch)
    ->Apply([](benchmark::internal::Benchmark* b) {
      for (int dtype : {KESTREL_DTYPE_Q4_0, KESTREL_DTYPE_Q8_0, KESTREL_DTYPE_Q4_1, KESTREL_DTYPE_Q4_K,
                        KESTREL_DTYPE_Q6_K}) {
        for (auto nk : {std::pair<int, int>{2048, 2048}, {256, 2048}, {5632, 2048}, {2048, 5632}}) {
          for (int t : {1, 2, 4, 8, 16, 32, 64}) {
            for (int threads : {2, 1}) b->Args({dtype, nk.first, nk.second, t, threads});
          }
        }
      }
    })
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

BENCHMARK_CAPTURE(BM_Matmul, ref_gemv, "ref")
    ->Apply([](benchmark::internal::Benchmark* b) {
      for (int dtype : {KESTREL_DTYPE_Q4_0, KESTREL_DTYPE_Q8_0, KESTREL_DTYPE_F16, KESTREL_DTYPE_F32}) {
        for (int n : {2048, 5632}) b->Args({dtype, n, 2048, 1, 1, 0});
      }
    })
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_Matmul, cpu_gemv, "cpu")
    ->Apply([](benchmark::internal::Benchmark* b) { GemvArgs(b, true); })
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_Matmul, ref_gemm, "ref")
    ->Args({KESTREL_DTYPE_Q4_0, 2048, 2048, 128, 1, 0})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_Matmul, cpu_gemm, "cpu")
    ->Apply(GemmArgs)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
