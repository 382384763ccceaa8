// kestrel_tokenizer_bench: single-thread tokenization speed of GGUF vocabs on an English text.
//
//   kestrel_tokenizer_bench [--text FILE] [--bytes N] [--reps R] [--parse-special] MODEL.gguf...
//
// The text is FILE, or (default) the Debian license texts of /usr/share/common-licenses
// concatenated in name order and repeated up to N bytes (default 1 MiB = 1048576), cut at a UTF-8
// character boundary. For each vocab, one warm-up Encode, then R timed ones (default 9); each
// prints one JSON line: model, kind, pre_tokenizer, bytes, tokens, reps, median_ms, min_ms, max_ms,
// mb_per_s (1e6 bytes/s at the median wall time), cpu_median_ms and mb_per_s_cpu (the same from the
// thread's CPU time: on a shared machine this leaves out the time the thread waited for a core),
// and round_trip (Decode(Encode(text)) == text).
#include <dirent.h>

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/gguf/gguf_file.h"
#include "runtime/tokenizer/tokenizer_loader.h"

namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string LicenseText() {
  const std::string dir = "/usr/share/common-licenses";
  std::vector<std::string> names;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] != '.') names.emplace_back(e->d_name);
    }
    closedir(d);
  }
  std::sort(names.begin(), names.end());
  std::string text;
  for (const std::string& n : names) text += ReadAll(dir + "/" + n);
  return text;
}

double ThreadCpuMs() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::string JsonEscape(const std::string& s) {
  std::string out;
  for (const char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

int Usage() {
  std::fprintf(stderr,
               "usage: kestrel_tokenizer_bench [--text FILE] [--bytes N] [--reps R] [--parse-special] MODEL.gguf...\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string text_file;
  size_t bytes = size_t{1} << 20;
  int reps = 9;
  bool parse_special = false;
  std::vector<std::string> models;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--text" && i + 1 < argc) {
      text_file = argv[++i];
    } else if (a == "--bytes" && i + 1 < argc) {
      bytes = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--reps" && i + 1 < argc) {
      reps = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--parse-special") {
      parse_special = true;
    } else if (!a.empty() && a[0] == '-') {
      return Usage();
    } else {
      models.push_back(a);
    }
  }
  if (models.empty()) return Usage();
  std::string text;
  if (!text_file.empty()) {
    text = ReadAll(text_file);
  } else {
    const std::string base = LicenseText();
    if (base.empty()) {
      std::fprintf(stderr, "no text: /usr/share/common-licenses is empty; pass --text FILE\n");
      return 1;
    }
    while (text.size() < bytes) text += base;
    size_t cut = bytes;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;  // a character boundary
    text.resize(cut);
  }
  for (const std::string& path : models) {
    kestrel::runtime::GgufOpenOptions open;
    auto file = kestrel::runtime::GgufFile::Open(path, open);
    if (!file.ok()) {
      std::fprintf(stderr, "%s: %s\n", path.c_str(), std::string(file.status().message()).c_str());
      return 1;
    }
    auto tok = kestrel::runtime::LoadTokenizer(**file);
    if (!tok.ok()) {
      std::fprintf(stderr, "%s: %s\n", path.c_str(), std::string(tok.status().message()).c_str());
      return 1;
    }
    std::vector<int32_t> ids = (*tok)->Encode(text, false, parse_special);  // warm-up
    const bool round_trip = (*tok)->Decode(ids, true) == text;
    std::vector<double> ms, cpu_ms;
    for (int r = 0; r < reps; ++r) {
      const double c0 = ThreadCpuMs();
      const auto t0 = std::chrono::steady_clock::now();
      ids = (*tok)->Encode(text, false, parse_special);
      const auto t1 = std::chrono::steady_clock::now();
      cpu_ms.push_back(ThreadCpuMs() - c0);
      ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    }
    const double median = Median(ms), cpu_median = Median(cpu_ms);
    std::printf(
        "{\"model\": \"%s\", \"kind\": \"%s\", \"pre_tokenizer\": \"%s\", \"bytes\": %zu, \"tokens\": %zu, "
        "\"reps\": %d, \"median_ms\": %.3f, \"min_ms\": %.3f, \"max_ms\": %.3f, \"mb_per_s\": %.2f, "
        "\"cpu_median_ms\": %.3f, \"mb_per_s_cpu\": %.2f, \"round_trip\": %s}\n",
        JsonEscape(path).c_str(), std::string((*tok)->kind()).c_str(),
        std::string((*tok)->pre_tokenizer()).c_str(), text.size(), ids.size(), reps, median,
        *std::min_element(ms.begin(), ms.end()), *std::max_element(ms.begin(), ms.end()),
        text.size() / (median / 1000.0) / 1e6, cpu_median, text.size() / (cpu_median / 1000.0) / 1e6,
        round_trip ? "true" : "false");
    std::fflush(stdout);
  }
  return 0;
}
