// kpkg_bench: the numbers of docs/perf/package.md, through the public C API only.
//
//   kpkg_bench --gguf M.gguf --kpkg M.kpkg [--plain-kpkg M.plain.kpkg] [--device cpu] [--reps 5]
//              [--restore-tokens 2048] [--restore-reps 3] [--prefill-reps 2] [--threads N]
//
// 1. Load: kestrel_model_load of the GGUF and of the package (with the device's prepared
//    weights), alternated, `reps` times each; also load + one decode step (the package's weights
//    are used in place from the mapping, so their pages are first touched by that step).
// 2. Size: the three files' sizes.
// 3. Restore: a session prefills `restore-tokens` synthetic tokens (BOS, then ids cycling over the
//    vocab) in one step, saves its state to a file; fresh sessions restore it; prefill and restore
//    alternate. The restored session's logits must equal the prefilled one's bit for bit.
// Prints one JSON object with every sample and the medians.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <sys/stat.h>
#include <vector>

#include "kestrel/kestrel.h"

namespace {

struct Args {
  std::string gguf, kpkg, plain_kpkg, device = "cpu", state = "/tmp/kpkg_bench.kstate";
  int reps = 5, restore_reps = 3, prefill_reps = 2;
  uint32_t restore_tokens = 2048, threads = 0;
};

double Now() {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void Check(kestrel_status_t* s, const char* what) {
  if (s == nullptr) return;
  std::fprintf(stderr, "kpkg_bench: %s: %s: %s\n", what, kestrel_status_code_name(kestrel_status_code(s)),
               kestrel_status_message(s));
  std::exit(1);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

std::string List(const std::vector<double>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) {
    char b[32];
    std::snprintf(b, sizeof b, "%s%.2f", i ? "," : "", v[i]);
    s += b;
  }
  return s + "]";
}

uint64_t FileSize(const std::string& p) {
  struct stat st;
  return p.empty() || ::stat(p.c_str(), &st) != 0 ? 0 : static_cast<uint64_t>(st.st_size);
}

kestrel_model_t* Load(kestrel_runtime_t* rt, const Args& a, const std::string& path, double* ms) {
  kestrel_model_options_t o;
  kestrel_model_options_init(&o);
  o.device = a.device.c_str();
  kestrel_model_t* m = nullptr;
  const double t0 = Now();
  Check(kestrel_model_load(rt, path.c_str(), path.size(), &o, &m), path.c_str());
  *ms = Now() - t0;
  return m;
}

kestrel_session_t* NewSession(kestrel_model_t* m, const Args& a, uint32_t context) {
  kestrel_sampler_options_t so;
  kestrel_sampler_options_init(&so);
  so.temperature = 0;
  kestrel_session_options_t o;
  kestrel_session_options_init(&o);
  o.context_length = context;
  o.sampler = &so;
  o.n_threads = a.threads;
  kestrel_session_t* s = nullptr;
  Check(kestrel_session_create(m, &o, &s), "session");
  return s;
}

std::vector<float> Logits(kestrel_session_t* s) {
  size_t n = 0;
  Check(kestrel_session_get_logits(s, nullptr, 0, &n), "logits");
  std::vector<float> l(n);
  Check(kestrel_session_get_logits(s, l.data(), l.size(), &n), "logits");
  return l;
}

Args Parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--gguf") a.gguf = v;
    else if (k == "--kpkg") a.kpkg = v;
    else if (k == "--plain-kpkg") a.plain_kpkg = v;
    else if (k == "--device") a.device = v;
    else if (k == "--state") a.state = v;
    else if (k == "--reps") a.reps = std::atoi(v.c_str());
    else if (k == "--restore-reps") a.restore_reps = std::atoi(v.c_str());
    else if (k == "--prefill-reps") a.prefill_reps = std::atoi(v.c_str());
    else if (k == "--restore-tokens") a.restore_tokens = static_cast<uint32_t>(std::atoi(v.c_str()));
    else if (k == "--threads") a.threads = static_cast<uint32_t>(std::atoi(v.c_str()));
    else {
      std::fprintf(stderr, "kpkg_bench: unknown flag %s\n", k.c_str());
      std::exit(2);
    }
  }
  if (a.gguf.empty() || a.kpkg.empty()) {
    std::fprintf(stderr, "usage: kpkg_bench --gguf M.gguf --kpkg M.kpkg [...]\n");
    std::exit(2);
  }
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = Parse(argc, argv);
  kestrel_runtime_t* rt = nullptr;
  Check(kestrel_runtime_create(nullptr, &rt), "runtime");

  // ---- load, alternated ----
  std::vector<double> gguf_ms, kpkg_ms, gguf_first_ms, kpkg_first_ms;
  uint32_t imported = 0, prepared = 0;
  for (int r = 0; r < a.reps; ++r) {
    for (int which = 0; which < 2; ++which) {
      const std::string& path = which == 0 ? a.gguf : a.kpkg;
      double ms = 0;
      kestrel_model_t* m = Load(rt, a, path, &ms);
      kestrel_session_t* s = NewSession(m, a, 64);
      const int32_t bos = 1;
      const double t0 = Now();
      Check(kestrel_session_decode(s, &bos, 1), "first step");
      const double first = ms + (Now() - t0);
      if (which == 1) Check(kestrel_model_weight_sources(m, &imported, &prepared), "sources");
      kestrel_session_destroy(s);
      kestrel_model_release(m);
      (which == 0 ? gguf_ms : kpkg_ms).push_back(ms);
      (which == 0 ? gguf_first_ms : kpkg_first_ms).push_back(first);
    }
  }

  // ---- restore vs prefill, alternated ----
  double ms = 0;
  kestrel_model_t* m = Load(rt, a, a.kpkg, &ms);
  kestrel_model_info_t info;
  std::memset(&info, 0, sizeof info);
  info.struct_size = sizeof info;
  Check(kestrel_model_get_info(m, &info), "info");
  std::vector<int32_t> tokens(a.restore_tokens);
  tokens[0] = 1;
  for (uint32_t i = 1; i < a.restore_tokens; ++i) tokens[i] = static_cast<int32_t>(3 + (i * 7919) % (info.vocab_size - 3));
  const uint32_t context = a.restore_tokens + 16;
  std::vector<double> prefill_ms, restore_ms;
  std::vector<float> want;
  bool identical = true;
  const int rounds = std::max(a.prefill_reps, a.restore_reps);
  for (int r = 0; r < rounds; ++r) {
    if (r < a.prefill_reps) {
      kestrel_session_t* s = NewSession(m, a, context);
      const double t0 = Now();
      Check(kestrel_session_decode(s, tokens.data(), tokens.size()), "prefill");
      prefill_ms.push_back(Now() - t0);
      if (r == 0) {
        want = Logits(s);
        Check(kestrel_session_save_state_file(s, a.state.c_str()), "save state");
      }
      kestrel_session_destroy(s);
    }
    if (r < a.restore_reps) {
      kestrel_session_t* s = NewSession(m, a, context);
      const double t0 = Now();
      Check(kestrel_session_load_state_file(s, a.state.c_str()), "load state");
      restore_ms.push_back(Now() - t0);
      const std::vector<float> got = Logits(s);
      identical &= got.size() == want.size() &&
                   std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) == 0;
      kestrel_session_destroy(s);
    }
  }
  kestrel_model_release(m);
  kestrel_runtime_destroy(rt);

  const double gl = Median(gguf_ms), kl = Median(kpkg_ms);
  const double pf = Median(prefill_ms), rs = Median(restore_ms);
  std::printf(
      "{\"device\":\"%s\",\"reps\":%d,\"gguf_load_ms\":%s,\"kpkg_load_ms\":%s,"
      "\"gguf_load_ms_median\":%.2f,\"kpkg_load_ms_median\":%.2f,\"kpkg_over_gguf_load\":%.4f,"
      "\"gguf_load_first_step_ms\":%s,\"kpkg_load_first_step_ms\":%s,"
      "\"gguf_load_first_step_ms_median\":%.2f,\"kpkg_load_first_step_ms_median\":%.2f,"
      "\"kpkg_weights_imported\":%u,\"kpkg_weights_prepared\":%u,"
      "\"gguf_bytes\":%llu,\"kpkg_bytes\":%llu,\"plain_kpkg_bytes\":%llu,"
      "\"restore_tokens\":%u,\"state_bytes\":%llu,\"prefill_ms\":%s,\"restore_ms\":%s,"
      "\"prefill_ms_median\":%.2f,\"restore_ms_median\":%.2f,\"restore_speedup\":%.1f,"
      "\"restored_logits_identical\":%s}\n",
      a.device.c_str(), a.reps, List(gguf_ms).c_str(), List(kpkg_ms).c_str(), gl, kl,
      gl > 0 ? kl / gl : 0, List(gguf_first_ms).c_str(), List(kpkg_first_ms).c_str(),
      Median(gguf_first_ms), Median(kpkg_first_ms), imported, prepared,
      static_cast<unsigned long long>(FileSize(a.gguf)),
      static_cast<unsigned long long>(FileSize(a.kpkg)),
      static_cast<unsigned long long>(FileSize(a.plain_kpkg)), a.restore_tokens,
      static_cast<unsigned long long>(FileSize(a.state)), List(prefill_ms).c_str(),
      List(restore_ms).c_str(), pf, rs, rs > 0 ? pf / rs : 0, identical ? "true" : "false");
  std::remove(a.state.c_str());
  return identical ? 0 : 1;
}
