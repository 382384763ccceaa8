// tests/arch/arch_test_util.h: what the architecture tests share: the F32 synthetic model of a
// kestrel-synth shape written once per process, and the comparisons with the float64 reference.
#ifndef KESTREL_TESTS_ARCH_ARCH_TEST_UTIL_H_
#define KESTREL_TESTS_ARCH_ARCH_TEST_UTIL_H_

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/temp_dir.h"
#include "tools/synth/synth_shape.h"
#include "tools/synth/synth_writer.h"

namespace kestrel::testing {

// Inside the process's temporary folder (tests/temp_dir.h), removed at exit.
inline std::string TempPath(const std::string& name) { return TestTempDir().File("arch_" + name); }

// The F32 synthetic model of preset `shape` (seed 7), written once per process.
inline std::string SynthModel(const std::string& shape) {
  const std::string path = TempPath(shape + ".gguf");
  if (access(path.c_str(), F_OK) == 0) return path;
  synth::SynthOptions o;
  absl::StatusOr<synth::ModelShape> s = synth::PresetShape(shape);
  EXPECT_TRUE(s.ok()) << s.status();
  o.shape = *s;
  o.type = runtime::GgmlType::F32;
  o.seed = 7;
  o.output_path = path;
  absl::Status st = synth::WriteSyntheticModel(o);
  EXPECT_TRUE(st.ok()) << st;
  return path;
}

// ||got - want|| / ||want||; infinity when got holds a NaN or an infinity.
inline double RelL2(const std::vector<float>& got, const std::vector<double>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  return std::sqrt(num / den);
}

// Index of the largest value, ties to the lowest index.
template <typename T>
int32_t ArgMax(const std::vector<T>& v) {
  size_t best = 0;
  for (size_t i = 1; i < v.size(); ++i) {
    if (v[i] > v[best]) best = i;
  }
  return static_cast<int32_t>(best);
}

}  // namespace kestrel::testing

#endif  // KESTREL_TESTS_ARCH_ARCH_TEST_UTIL_H_
