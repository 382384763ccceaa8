// Weight streaming, measured (issue 14, docs/perf/offload.md): does the next layer's copy overlap
// the current layer's compute? One process loads MODEL three times on DEVICE:
//   streamed  under a device budget that leaves --resident (default 25 %) of the weight bytes
//             resident; the rest streamed through the ring, prefetched ahead;
//   compute   the same plan with a streamer that issues no copies (the same buffer arguments and
//             kernels, meaningless outputs): the step's compute time alone;
//   resident  no budget: every weight prepared on the device (for reference).
// Repetitions alternate between the three (same machine load); each prefills a --prompt-token
// prompt and times --decode single-token greedy steps (median ms per step). The copy time of a
// step is measured in the same repetition: every streamed layer copied once through the copy
// stream and waited for, nothing else queued. overlap_ratio = streamed step / max(compute step,
// copy time); 1.0 is perfect overlap, the sum of the two is no overlap (target <= 1.2).
//
//   weight_stream_bench MODEL.gguf [--device opencl] [--resident 0.25] [--prompt 16]
//                       [--decode 16] [--reps 5] [--prefetch N]
// Plugins from $KESTREL_PLUGIN_DIR (default: this build's plugin folder). Last line: JSON.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "hal/src/plugin_registry.h"
#include "runtime/model/model.h"
#include "runtime/session/session.h"

namespace {

using kestrel::runtime::Model;
using kestrel::runtime::ModelLoadOptions;
using kestrel::runtime::Session;
using Clock = std::chrono::steady_clock;

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

int Fail(const std::string& what) {
  std::fprintf(stderr, "weight_stream_bench: %s\n", what.c_str());
  return 1;
}

struct Run {
  std::unique_ptr<Model> model;
  std::unique_ptr<Session> session;
  std::vector<double> step_ms;
  std::vector<int32_t> tokens;  // greedy tokens of the last repetition
};

// One repetition: prefill, then `decode` timed greedy steps. Returns the median step in ms.
absl::StatusOr<double> Repetition(Run& r, const std::vector<int32_t>& prompt, int decode) {
  if (auto s = r.session->Truncate(0); !s.ok()) return s;
  if (auto s = r.session->Decode(prompt); !s.ok()) return s;
  std::vector<double> ms;
  r.tokens.clear();
  for (int i = 0; i < decode; ++i) {
    absl::StatusOr<int32_t> t = r.session->Sample();
    if (!t.ok()) return t.status();
    r.tokens.push_back(*t);
    const auto t0 = Clock::now();
    if (auto s = r.session->Decode({*t}); !s.ok()) return s;
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  return Median(ms);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return Fail("usage: weight_stream_bench MODEL.gguf [--device D] [--resident F] ...");
  const std::string path = argv[1];
  std::string device_name = "opencl";
  double resident = 0.25;
  int n_prompt = 16, n_decode = 16, reps = 5;
  uint32_t prefetch = 0;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    bool ok = true;
    if (k == "--device") device_name = v;
    else if (k == "--resident") ok = absl::SimpleAtod(v, &resident);
    else if (k == "--prompt") ok = absl::SimpleAtoi(v, &n_prompt);
    else if (k == "--decode") ok = absl::SimpleAtoi(v, &n_decode);
    else if (k == "--reps") ok = absl::SimpleAtoi(v, &reps);
    else if (k == "--prefetch") ok = absl::SimpleAtoi(v, &prefetch);
    else return Fail("unknown option " + k);
    if (!ok) return Fail("bad value for " + k + ": " + v);
  }
  const char* dir = std::getenv("KESTREL_PLUGIN_DIR");
  auto registry = kestrel::hal::PluginRegistry::Create(dir ? dir : KESTREL_PLUGIN_OUTPUT_DIR,
                                                       [](kestrel_plugin_log_level_t, const std::string&) {});
  auto device = registry->FindDevice(device_name);
  if (!device.ok()) return Fail(std::string(device.status().message()));
  kestrel::hal::Device* fallback = registry->ReferenceDevice();
  const uint32_t ctx = static_cast<uint32_t>(n_prompt + n_decode + 16);

  // The largest budget whose plan keeps at most `resident` of the weight bytes resident.
  ModelLoadOptions meta;
  meta.metadata_only = true;
  meta.plan_context = ctx;
  meta.memory_budgets = {absl::StrCat(device_name, "=unlimited")};
  auto probe = Model::Load(path, *device, meta);
  if (!probe.ok()) return Fail(std::string(probe.status().message()));
  const uint64_t weight_bytes = (*probe)->weight_bytes();
  const uint64_t kv = (*probe)->memory_plan()->kv_bytes;
  uint64_t budget = 0;
  for (double f = resident + 0.5; f > 0.01; f -= 0.005) {
    meta.memory_budgets = {absl::StrCat(device_name, "=",
                                        kv + static_cast<uint64_t>(f * static_cast<double>(weight_bytes)))};
    auto m = Model::Load(path, *device, meta);
    if (!m.ok()) continue;
    if (static_cast<double>((*m)->memory_plan()->resident_bytes) <= resident * static_cast<double>(weight_bytes)) {
      budget = kv + static_cast<uint64_t>(f * static_cast<double>(weight_bytes));
      break;
    }
  }
  if (budget == 0) return Fail("no budget streams enough layers to leave that fraction resident");

  Run runs[3];  // streamed, compute (no copies), resident
  for (int i = 0; i < 3; ++i) {
    ModelLoadOptions o;
    o.plan_context = ctx;
    o.prefetch_distance = prefetch;
    if (i < 2) o.memory_budgets = {absl::StrCat(device_name, "=", budget)};
    o.stream_skip_copies = i == 1;
    auto m = Model::Load(path, *device, o);
    if (!m.ok()) return Fail(std::string(m.status().message()));
    runs[i].model = std::move(*m);
    kestrel::runtime::SessionConfig c;
    c.context_length = ctx;
    c.sampler.temperature = 0.0f;
    auto s = Session::Create(runs[i].model.get(), fallback, c);
    if (!s.ok()) return Fail(std::string(s.status().message()));
    runs[i].session = std::move(*s);
  }
  kestrel::runtime::offload::WeightStreamer* streamer = runs[0].model->weight_streamer();
  if (streamer == nullptr) return Fail("the budget streams nothing");
  std::vector<int32_t> prompt;
  for (int i = 0; i < n_prompt; ++i) prompt.push_back(1 + (i * 37) % 500);
  std::vector<double> copy_ms;
  for (int rep = -1; rep < reps; ++rep) {  // rep -1: warm-up, not recorded
    for (int i = 0; i < 3; ++i) {
      absl::StatusOr<double> ms = Repetition(runs[i], prompt, n_decode);
      if (!ms.ok()) return Fail(std::string(ms.status().message()));
      if (rep >= 0) runs[i].step_ms.push_back(*ms);
    }
    std::lock_guard<std::mutex> lock(streamer->mutex());
    absl::StatusOr<double> c = streamer->MeasureCopySeconds();
    if (!c.ok()) return Fail(std::string(c.status().message()));
    if (rep >= 0) copy_ms.push_back(*c * 1000);
  }
  const auto& plan = *runs[0].model->memory_plan();
  const double step = Median(runs[0].step_ms), compute = Median(runs[1].step_ms),
               resident_step = Median(runs[2].step_ms), copy = Median(copy_ms);
  auto list = [](const std::vector<double>& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += absl::StrCat(i ? ", " : "", v[i]);
    return s + "]";
  };
  std::printf(
      "{\"model\": \"%s\", \"device\": \"%s\", \"budget_bytes\": %llu, \"weight_bytes\": %llu, "
      "\"resident_fraction\": %.4f, \"streamed_layers\": %zu, \"prefetch_distance\": %u, "
      "\"ring_bytes\": %llu, \"streamed_bytes_per_step\": %llu, \"async_copies\": %s, "
      "\"step_ms\": %.3f, \"compute_ms\": %.3f, \"copy_ms\": %.3f, \"resident_step_ms\": %.3f, "
      "\"overlap_ratio\": %.3f, \"no_overlap_ratio\": %.3f, \"identical_to_resident\": %s, "
      "\"step_ms_reps\": %s, \"compute_ms_reps\": %s, \"copy_ms_reps\": %s, "
      "\"resident_step_ms_reps\": %s}\n",
      path.c_str(), (*device)->name().c_str(), static_cast<unsigned long long>(budget),
      static_cast<unsigned long long>(weight_bytes),
      static_cast<double>(plan.resident_bytes) / static_cast<double>(weight_bytes),
      plan.streamed_layers.size(), plan.prefetch_distance,
      static_cast<unsigned long long>(plan.stream_ring_bytes()),
      static_cast<unsigned long long>(plan.streamed_bytes), streamer->async() ? "true" : "false",
      step, compute, copy, resident_step, step / std::max(compute, copy),
      (compute + copy) / std::max(compute, copy),
      runs[0].tokens == runs[2].tokens ? "true" : "false", list(runs[0].step_ms).c_str(),
      list(runs[1].step_ms).c_str(), list(copy_ms).c_str(), list(runs[2].step_ms).c_str());
  return 0;
}
