#include "cpu_features.h"

#include <cstdlib>
#include <cstring>

#include "kernels.h"

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#define KESTREL_CPU_X86 1
#include <cpuid.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1 << 1)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif

namespace kestrel::plugins::cpu {
namespace {

#if defined(KESTREL_CPU_X86)
unsigned long long Xgetbv0() {
  unsigned int eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}
#endif

CpuFeatures Detect() {
  CpuFeatures f;
#if defined(KESTREL_CPU_X86)
  unsigned int eax, ebx, ecx, edx;
  if (!__get_cpuid(0, &eax, &ebx, &ecx, &edx)) return f;
  f.amd = ebx == 0x68747541u && edx == 0x69746E65u && ecx == 0x444D4163u;  // "AuthenticAMD"
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
  const bool osxsave = (ecx >> 27) & 1;
  const bool fma = (ecx >> 12) & 1;
  const bool f16c = (ecx >> 29) & 1;
  const bool avx = (ecx >> 28) & 1;
  if (!osxsave || !avx) return f;
  const unsigned long long xcr0 = Xgetbv0();
  const bool ymm_state = (xcr0 & 0x6) == 0x6;     // SSE + AVX state
  const bool zmm_state = (xcr0 & 0xE6) == 0xE6;   // + opmask, ZMM_Hi256, Hi16_ZMM
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return f;
  const bool avx2 = (ebx >> 5) & 1;
  f.avx2 = ymm_state && avx2 && fma && f16c;
  const bool avx512f = (ebx >> 16) & 1;
  const bool avx512dq = (ebx >> 17) & 1;
  const bool avx512bw = (ebx >> 30) & 1;
  const bool avx512vl = (ebx >> 31) & 1;
  f.avx512 = f.avx2 && zmm_state && avx512f && avx512dq && avx512bw && avx512vl;
  f.avx512_vnni = f.avx512 && ((ecx >> 11) & 1);
  f.amx_int8 = ((edx >> 24) & 1) && ((edx >> 25) & 1);
#elif defined(__aarch64__) && defined(__linux__)
  const unsigned long hwcap = getauxval(AT_HWCAP);
  f.neon = (hwcap & HWCAP_ASIMD) != 0;
  f.dotprod = f.neon && (hwcap & HWCAP_ASIMDDP) != 0;
#elif defined(__aarch64__)
  f.neon = true;  // Advanced SIMD is part of every aarch64 CPU; dotprod unknown off Linux
#endif
  return f;
}

}  // namespace

const CpuFeatures& DetectCpuFeatures() {
  static const CpuFeatures features = Detect();
  return features;
}

IsaLevel BestIsaLevel() {
  const CpuFeatures& f = DetectCpuFeatures();
#if defined(KESTREL_CPU_X86) && defined(KESTREL_CPU_HAVE_X86_KERNELS)
#if defined(KESTREL_CPU_HAVE_AMX)
  if (f.avx512_vnni && f.amx_int8 && AmxUsable()) return IsaLevel::kAmx;
#endif
  if (f.avx512_vnni) return IsaLevel::kVnni;
  if (f.avx512) return IsaLevel::kAvx512;
  if (f.avx2) return IsaLevel::kAvx2;
#elif defined(KESTREL_CPU_HAVE_NEON_KERNELS)
  if (f.dotprod) return IsaLevel::kDotprod;
  if (f.neon) return IsaLevel::kNeon;
#else
  (void)f;
#endif
  return IsaLevel::kPortable;
}

GemvStyle DecodeGemvStyle() {
  static const GemvStyle style = [] {
    const char* env = std::getenv("KESTREL_CPU_GEMV");
    if (env != nullptr && std::strcmp(env, "rows") == 0) return GemvStyle::kRows;
    if (env != nullptr && std::strcmp(env, "tiles") == 0) return GemvStyle::kTiles;
    return DetectCpuFeatures().amd ? GemvStyle::kRows : GemvStyle::kTiles;
  }();
  return style;
}

bool IsaLevelSupported(IsaLevel level) {
  if (level == IsaLevel::kPortable) return true;
  const IsaLevel best = BestIsaLevel();
  if (best == IsaLevel::kPortable || IsX86IsaLevel(level) != IsX86IsaLevel(best)) return false;
  return static_cast<int>(level) <= static_cast<int>(best);
}

const char* IsaLevelName(IsaLevel level) {
  switch (level) {
    case IsaLevel::kPortable: return "portable";
    case IsaLevel::kAvx2: return "avx2";
    case IsaLevel::kAvx512: return "avx512";
    case IsaLevel::kVnni: return "vnni";
    case IsaLevel::kAmx: return "amx";
    case IsaLevel::kNeon: return "neon";
    case IsaLevel::kDotprod: return "dotprod";
  }
  return "unknown";
}

bool ParseIsaLevel(const std::string& name, IsaLevel* out) {
  if (name == "best") *out = BestIsaLevel();
  else if (name == "portable") *out = IsaLevel::kPortable;
  else if (name == "avx2") *out = IsaLevel::kAvx2;
  else if (name == "avx512") *out = IsaLevel::kAvx512;
  else if (name == "vnni") *out = IsaLevel::kVnni;
  else if (name == "amx") *out = IsaLevel::kAmx;
  else if (name == "neon") *out = IsaLevel::kNeon;
  else if (name == "dotprod") *out = IsaLevel::kDotprod;
  else return false;
  return true;
}

}  // namespace kestrel::plugins::cpu
