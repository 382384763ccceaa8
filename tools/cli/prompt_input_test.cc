#include "prompt_input.h"

#include <gtest/gtest.h>

#include <stdlib.h>

#include <cstdio>
#include <string>

namespace kestrel::cli {
namespace {

// A temporary file holding `bytes`, open for reading (file()) and by name (path()); removed at
// the end of the test.
class TempFile {
 public:
  explicit TempFile(const std::string& bytes) {
    char name[] = "/tmp/kestrel_prompt_input_test_XXXXXX";
    const int fd = mkstemp(name);
    path_ = name;
    file_ = fdopen(fd, "w+b");
    std::fwrite(bytes.data(), 1, bytes.size(), file_);
    std::rewind(file_);
  }
  ~TempFile() {
    std::fclose(file_);
    std::remove(path_.c_str());
  }
  std::FILE* file() const { return file_; }
  const std::string& path() const { return path_; }

 private:
  std::FILE* file_;
  std::string path_;
};

TEST(ReadPromptTest, TextIsUsedAsGiven) {
  Options o;
  o.prompt = "Once upon a time\n";
  std::string prompt, error;
  ASSERT_TRUE(ReadPrompt(o, nullptr, &prompt, &error)) << error;
  EXPECT_EQ(prompt, "Once upon a time\n");
}

TEST(ReadPromptTest, FileBytesWithOneTrailingLineBreakDropped) {
  TempFile file(std::string("line one\nline \0two\r\n\r\n", 22));
  Options o;
  o.prompt_file = file.path();
  std::string prompt, error;
  ASSERT_TRUE(ReadPrompt(o, nullptr, &prompt, &error)) << error;
  EXPECT_EQ(prompt, std::string("line one\nline \0two\r\n", 20));
}

TEST(ReadPromptTest, DashReadsStandardInput) {
  TempFile file("from stdin\n");
  Options o;
  o.prompt_file = "-";
  std::string prompt, error;
  ASSERT_TRUE(ReadPrompt(o, file.file(), &prompt, &error)) << error;
  EXPECT_EQ(prompt, "from stdin");
}

TEST(ReadPromptTest, MissingFileAndFolderNameThePathAndTheReason) {
  Options o;
  o.prompt_file = "/nonexistent/p.txt";
  std::string prompt = "untouched", error;
  EXPECT_FALSE(ReadPrompt(o, nullptr, &prompt, &error));
  EXPECT_EQ(error, "cannot read prompt file '/nonexistent/p.txt': No such file or directory");
  EXPECT_EQ(prompt, "untouched");
  o.prompt_file = "/tmp";
  EXPECT_FALSE(ReadPrompt(o, nullptr, &prompt, &error));
  EXPECT_NE(error.find("'/tmp': Is a directory"), std::string::npos) << error;
}

}  // namespace
}  // namespace kestrel::cli
