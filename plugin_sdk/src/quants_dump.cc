// Test helper for quants_gguf_test.py: draws random blocks of every format of quants.h,
// dequantizes them with the reference plugin and writes, per format, <dir>/<NAME>.blocks (the raw
// GGUF bytes) and <dir>/<NAME>.f32 (ref's f32 values). Half the blocks have any finite f16 scale
// (subnormals included), half have scales of realistic size.
//
//   quants_dump SEED DIR
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "kestrel/plugin_api.h"
#include "kestrel/plugin_sdk/reference_kernels.h"
#include "kestrel/plugin_sdk/quants.h"

namespace {

bool WriteFile(const std::string& path, const void* data, size_t size) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return false;
  const bool ok = std::fwrite(data, 1, size, f) == size;
  return std::fclose(f) == 0 && ok;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace kestrel::plugin_sdk;
  if (argc != 3) {
    std::fprintf(stderr, "usage: quants_dump SEED DIR\n");
    return 2;
  }
  const uint64_t seed = std::strtoull(argv[1], nullptr, 10);
  const std::string dir = argv[2];
  std::mt19937_64 rng(seed);
  constexpr int64_t kBlocksPerKind = 64;
  for (uint32_t dt = 0; dt < 64; ++dt) {
    if (!IsExtraQuant(dt)) continue;
    const size_t bytes = ExtraQuantBlockBytes(dt);
    const int64_t elems = ExtraQuantBlockElements(dt);
    std::vector<uint8_t> blocks(2 * kBlocksPerKind * bytes);
    RandomExtraBlocks(dt, kBlocksPerKind, /*moderate=*/false, rng, blocks.data());
    RandomExtraBlocks(dt, kBlocksPerKind, /*moderate=*/true, rng,
                      blocks.data() + kBlocksPerKind * bytes);
    std::vector<float> values(2 * kBlocksPerKind * elems);
    DequantizeRow(dt, blocks.data(), static_cast<int64_t>(values.size()), values.data());
    const std::string name = ExtraQuantName(dt);
    if (!WriteFile(dir + "/" + name + ".blocks", blocks.data(), blocks.size()) ||
        !WriteFile(dir + "/" + name + ".f32", values.data(), values.size() * sizeof(float))) {
      std::fprintf(stderr, "quants_dump: cannot write %s/%s.*\n", dir.c_str(), name.c_str());
      return 1;
    }
  }
  return 0;
}
