#include "prompt_input.h"

#include <cerrno>
#include <cstring>

namespace kestrel::cli {
namespace {

bool ReadAll(std::FILE* f, std::string* out) {
  char buffer[1 << 16];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), f)) > 0) out->append(buffer, n);
  return !std::ferror(f);
}

bool ReadFile(const std::string& path, const std::string& what, std::string* out, std::string* error) {
  errno = 0;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    *error = "cannot read " + what + " '" + path + "': " + std::strerror(errno);
    return false;
  }
  const bool ok = ReadAll(f, out);
  const int read_errno = errno;
  std::fclose(f);
  if (!ok) *error = "cannot read " + what + " '" + path + "': " + std::strerror(read_errno != 0 ? read_errno : EIO);
  return ok;
}

}  // namespace

bool ReadConstraint(const Options& options, std::string* grammar, std::string* json_schema,
                    std::string* error) {
  grammar->clear();
  json_schema->clear();
  if (options.grammar_file) return ReadFile(*options.grammar_file, "grammar file", grammar, error);
  if (options.json_schema_file) return ReadFile(*options.json_schema_file, "JSON schema file", json_schema, error);
  if (options.json_object) *json_schema = R"({"type": "object"})";
  return true;
}

bool ReadPrompt(const Options& options, std::FILE* stdin_file, std::string* prompt,
                std::string* error) {
  if (!options.prompt_file) {
    *prompt = options.prompt.value_or("");
    return true;
  }
  const std::string& path = *options.prompt_file;
  const std::string what = path == "-" ? std::string("standard input")
                                       : "prompt file '" + path + "'";
  std::string text;
  errno = 0;
  std::FILE* f = path == "-" ? stdin_file : std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    *error = "cannot read " + what + ": " + std::strerror(errno);
    return false;
  }
  const bool ok = ReadAll(f, &text);
  const int read_errno = errno;
  if (f != stdin_file) std::fclose(f);
  if (!ok) {
    *error = "cannot read " + what + ": " + std::strerror(read_errno != 0 ? read_errno : EIO);
    return false;
  }
  if (!text.empty() && text.back() == '\n') {
    text.pop_back();
    if (!text.empty() && text.back() == '\r') text.pop_back();
  }
  *prompt = std::move(text);
  return true;
}

}  // namespace kestrel::cli
