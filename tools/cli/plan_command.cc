// `kestrel plan`: the memory plan for a model under the given budgets, printed before any weight
// is loaded (the model is opened metadata-only with kestrel_model_options_t.memory_budget).
#include <cinttypes>
#include <cstdio>
#include <string>

#include "api_util.h"
#include "args.h"
#include "commands.h"
#include "json_writer.h"

namespace kestrel::cli {
namespace {

std::string Bytes(uint64_t b) {
  if (b == UINT64_MAX) return "unlimited";
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.2f %s", v, units[u]);
  return buf;
}

void PrintJson(const Options& o, const kestrel_memory_plan_info_t& p) {
  JsonWriter w;
  w.BeginObject();
  w.Key("model");
  w.String(o.model_path);
  w.Key("device");
  w.String(p.device);
  w.Key("device_budget_bytes");
  if (p.device_budget_bytes == UINT64_MAX) {
    w.Null();
  } else {
    w.Uint(p.device_budget_bytes);
  }
  w.Key("host_budget_bytes");
  if (p.host_budget_bytes == UINT64_MAX) {
    w.Null();
  } else {
    w.Uint(p.host_budget_bytes);
  }
  w.Key("resident_tensors");
  w.Uint(p.resident_tensors);
  w.Key("resident_bytes");
  w.Uint(p.resident_bytes);
  w.Key("experts_offloaded");
  w.Bool(p.experts_offloaded);
  w.Key("offloaded_tensors");
  w.Uint(p.offloaded_tensors);
  w.Key("expert_bytes");
  w.Uint(p.expert_bytes);
  w.Key("expert_slot_bytes");
  w.Uint(p.expert_slot_bytes);
  w.Key("experts_total");
  w.Uint(p.experts_total);
  w.Key("expert_slots");
  w.Uint(p.expert_slots);
  w.Key("expert_cache_bytes");
  w.Uint(p.expert_cache_bytes);
  w.Key("kv_tokens");
  w.Uint(p.kv_tokens);
  w.Key("kv_bytes");
  w.Uint(p.kv_bytes);
  w.Key("streamed_layers");
  w.Uint(p.n_streamed_layers);
  w.Key("streamed_bytes");
  w.Uint(p.streamed_bytes);
  w.Key("stream_ring_bytes");
  w.Uint(p.stream_ring_bytes);
  w.Key("stream_prefetch_distance");
  w.Uint(p.stream_prefetch_distance);
  w.Key("stream_staging_bytes");
  w.Uint(p.stream_staging_bytes);
  w.Key("host_resident_tensors");
  w.Uint(p.host_resident_tensors);
  w.Key("host_resident_bytes");
  w.Uint(p.host_resident_bytes);
  w.Key("host_swap_bytes");
  if (p.host_swap_bytes == UINT64_MAX) {
    w.Null();  // an "unlimited" host budget: no bound on the swap space either
  } else {
    w.Uint(p.host_swap_bytes);
  }
  w.Key("device_total_bytes");
  w.Uint(p.device_total_bytes);
  w.EndObject();
  std::printf("%s\n", w.str().c_str());
}

void PrintText(const Options& o, const kestrel_memory_plan_info_t& p) {
  std::printf("model:            %s\n", o.model_path.c_str());
  std::printf("device:           %s (budget %s)\n", p.device, Bytes(p.device_budget_bytes).c_str());
  if (p.host_budget_bytes > 0) {
    std::printf("host budget:      %s\n", Bytes(p.host_budget_bytes).c_str());
  }
  std::printf("resident weights: %" PRIu32 " tensors, %s\n", p.resident_tensors,
              Bytes(p.resident_bytes).c_str());
  if (p.expert_bytes > 0) {
    if (p.experts_offloaded) {
      std::printf("experts:          %s in %" PRIu32 " stacks stay in the file; cache of %" PRIu32
                  " of %" PRIu32 " experts (%s per expert, %s with the staging slot)\n",
                  Bytes(p.expert_bytes).c_str(), p.offloaded_tensors, p.expert_slots,
                  p.experts_total, Bytes(p.expert_slot_bytes).c_str(),
                  Bytes(p.expert_cache_bytes).c_str());
    } else {
      std::printf("experts:          all resident (%s)\n", Bytes(p.expert_bytes).c_str());
    }
  }
  if (p.host_resident_tensors > 0) {
    std::printf("on the fallback:  %" PRIu32 " tensors, %s in dtypes %s does not take (run from "
                "host memory)\n",
                p.host_resident_tensors, Bytes(p.host_resident_bytes).c_str(), p.device);
  }
  std::printf("KV pool:          %" PRIu32 " tokens, %s\n", p.kv_tokens, Bytes(p.kv_bytes).c_str());
  if (p.n_streamed_layers > 0) {
    std::printf("streamed layers:  %" PRIu32 " (%s copied per step through a ring of %" PRIu32
                " slots, %s; prefetch distance %" PRIu32 ")\n",
                p.n_streamed_layers, Bytes(p.streamed_bytes).c_str(), p.stream_slots,
                Bytes(p.stream_ring_bytes).c_str(), p.stream_prefetch_distance);
    if (p.stream_staging_bytes > 0) {
      std::printf("                  read from the file with direct I/O through a %s staging "
                  "buffer\n",
                  Bytes(p.stream_staging_bytes).c_str());
    }
  } else {
    std::printf("streamed layers:  0\n");
  }
  std::printf("host swap:        %s\n", Bytes(p.host_swap_bytes).c_str());
  std::printf("device total:     %s\n", Bytes(p.device_total_bytes).c_str());
}

}  // namespace

int RunPlan(const Options& o) {
  RuntimePtr runtime = CreateRuntime(o.verbosity);
  if (!runtime) return kExitError;
  LoadOptions load = LoadOptionsFrom(o);
  load.metadata_only = true;
  // Without a budget, plan against the device's capacity alone.
  if (load.mem.empty()) load.mem.push_back("host=unlimited");
  int exit_code = kExitError;
  ModelPtr model = LoadModel(runtime.get(), load, &exit_code);
  if (!model) return exit_code;
  kestrel_memory_plan_info_t plan{};
  plan.struct_size = sizeof(plan);
  StatusPtr status(kestrel_model_get_memory_plan(model.get(), &plan));
  if (status) {
    PrintStatusError(status.get());
    return kExitError;
  }
  if (o.json) {
    PrintJson(o, plan);
  } else {
    PrintText(o, plan);
  }
  return kExitOk;
}

}  // namespace kestrel::cli
