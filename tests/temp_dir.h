// tests/temp_dir.h: the temporary files of the tests, removed when the test is done, so that no
// run leaves models, packages or reports behind in /tmp.
//
// ScopedTempDir: a fresh folder "$TMPDIR/kestrel_<tag>_XXXXXX" (TMPDIR unset: /tmp), removed with
// everything in it when the object goes away. Only the process that made it removes it: a forked
// child (death tests, popen) that exits does not delete its parent's files.
// TestTempDir(): one such folder per test process, removed at exit; the tests' TempPath helpers
// hand out paths inside it, so a file a test forgets, or writes once per process and shares
// (a synthetic model), still goes away with the process. A crashed process leaves its folder.
#ifndef KESTREL_TESTS_TEMP_DIR_H_
#define KESTREL_TESTS_TEMP_DIR_H_

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

namespace kestrel::testing {

class ScopedTempDir {
 public:
  explicit ScopedTempDir(const std::string& tag = "test") : owner_(::getpid()) {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/kestrel_" +
                          tag + "_XXXXXX";
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data()) == nullptr) {
      std::perror(("ScopedTempDir: mkdtemp " + pattern).c_str());
      std::abort();
    }
    path_ = buf.data();
  }
  ~ScopedTempDir() {
    if (::getpid() != owner_) return;
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScopedTempDir(const ScopedTempDir&) = delete;
  ScopedTempDir& operator=(const ScopedTempDir&) = delete;

  const std::string& path() const { return path_; }
  // `name` inside the folder (the file is not created).
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
  pid_t owner_;
};

// The test process's own folder, created on first use and removed at exit.
inline const ScopedTempDir& TestTempDir() {
  static const ScopedTempDir dir("test");
  return dir;
}

}  // namespace kestrel::testing

#endif  // KESTREL_TESTS_TEMP_DIR_H_
