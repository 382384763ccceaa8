// CPU feature detection and the ISA level the CPU plugin's kernels run at.
//
// One binary runs on any x86-64 or any aarch64: the ISA-specific kernels live in their own
// translation units compiled with per-file flags, and the level is chosen at run time (x86: CPUID
// and the OS's XSAVE state (XCR0); aarch64 Linux: getauxval(AT_HWCAP), NEON always, dotprod with
// HWCAP_ASIMDDP), optionally capped by the init option "isa" or the environment variable
// KESTREL_CPU_ISA (portable | avx2 | avx512 | vnni | amx | neon | dotprod | best). Thread-safe (no
// state).
#ifndef KESTREL_PLUGINS_CPU_CPU_FEATURES_H_
#define KESTREL_PLUGINS_CPU_CPU_FEATURES_H_

#include <string>

namespace kestrel::plugins::cpu {

// Two families over kPortable: x86 (kAvx2..kAmx) and aarch64 (kNeon, kDotprod); within a family
// each level implies the ones below it (IsaLevelSupported compares within the family only).
enum class IsaLevel : int {
  kPortable = 0,  // plain C++ (any architecture)
  kAvx2 = 1,      // AVX2 + FMA + F16C
  kAvx512 = 2,    // AVX-512 F/BW/VL/DQ (+ FMA, F16C)
  kVnni = 3,      // kAvx512 + AVX-512 VNNI (vpdpbusd)
  kAmx = 4,       // kVnni + AMX-INT8 tiles (prefill GEMMs; F16 ones on AMX-BF16 where the CPU
                  // has it), with the OS's permission
  kNeon = 5,      // aarch64 Advanced SIMD (every aarch64 CPU)
  kDotprod = 6,   // kNeon + the Armv8.2 dot product instructions (sdot/udot)
};

struct CpuFeatures {
  bool amd = false;   // CPUID vendor "AuthenticAMD"
  bool avx2 = false;  // AVX2 and FMA and F16C, with the OS saving YMM state
  bool avx512 = false;  // AVX-512 F, BW, VL, DQ with the OS saving ZMM state
  bool avx512_vnni = false;
  bool amx_int8 = false;  // CPUID only; level kAmx also needs the OS (AmxUsable, kernels.h)
  bool neon = false;      // aarch64 Advanced SIMD
  bool dotprod = false;   // aarch64 HWCAP_ASIMDDP
};

// Detected once per process.
const CpuFeatures& DetectCpuFeatures();

// Highest level the CPU supports.
IsaLevel BestIsaLevel();

// True when this build has the kernels of `level` and this CPU runs them (portable: always).
bool IsaLevelSupported(IsaLevel level);

// "portable", "avx2", "avx512", "vnni", "amx", "neon", "dotprod".
const char* IsaLevelName(IsaLevel level);

// True for the x86 levels (the ones GemvStyle applies to).
inline bool IsX86IsaLevel(IsaLevel level) {
  return level != IsaLevel::kPortable && level != IsaLevel::kNeon && level != IsaLevel::kDotprod;
}

// How the AVX2 and AVX-512 levels run a decode GEMV (one token): kTiles reads R rows at once
// (tuned on Intel Sapphire Rapids), kRows one row after the other, a single linear stream per
// thread (kernels_avx512_gemv.h; much faster on AMD Zen, whose prefetchers lose track of many
// streams). Default: kRows on AMD, kTiles elsewhere; the environment variable
// KESTREL_CPU_GEMV=rows|tiles overrides it (read once per process; other values are ignored).
enum class GemvStyle : int { kTiles = 0, kRows = 1 };
GemvStyle DecodeGemvStyle();

// Parses a level name (case-sensitive; "best" = BestIsaLevel()). False for an unknown name.
bool ParseIsaLevel(const std::string& name, IsaLevel* out);

}  // namespace kestrel::plugins::cpu

#endif  // KESTREL_PLUGINS_CPU_CPU_FEATURES_H_
