// A minimal streaming JSON writer for the CLI's machine-readable output: compact (one line),
// strings escaped per RFC 8259, invalid UTF-8 replaced by U+FFFD, non-finite numbers as null.
#ifndef KESTREL_TOOLS_CLI_JSON_WRITER_H_
#define KESTREL_TOOLS_CLI_JSON_WRITER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kestrel::cli {

// Appends `text` as a quoted JSON string to *out. `"` and `\` are escaped, control characters
// (U+0000..U+001F) become \n, \t, ... or \u00XX, and every maximal ill-formed UTF-8 subsequence
// (Unicode's "substitution of maximal subparts") becomes \ufffd. Valid UTF-8 is copied as is.
void AppendJsonString(std::string_view text, std::string* out);

// Builds one JSON value. Misuse (a value where a key is due, unbalanced End*) is a programming
// error and is not diagnosed.
//   JsonWriter w;  w.BeginObject();  w.Key("n"); w.Int(3);  w.EndObject();  w.str() == "{\"n\":3}"
class JsonWriter {
 public:
  void BeginObject();
  void EndObject();
  void BeginArray();
  void EndArray();
  void Key(std::string_view key);

  void String(std::string_view value);
  void Int(int64_t value);
  void Uint(uint64_t value);
  void Double(double value);  // shortest round-trip form; NaN/inf -> null
  void Float(float value);    // shortest form of the float, so 0.8f prints as 0.8
  void Bool(bool value);
  void Null();
  // [v0, v1, ...] (a benchmark's per-repetition figures).
  void DoubleArray(const std::vector<double>& values);
  // A value that is already JSON (e.g. what the library's kestrel_package_describe wrote).
  void RawJson(std::string_view json);

  const std::string& str() const { return out_; }

 private:
  void BeforeValue();

  std::string out_;
  std::vector<bool> has_elements_;  // per open container: something written already
  bool after_key_ = false;
};

}  // namespace kestrel::cli

#endif  // KESTREL_TOOLS_CLI_JSON_WRITER_H_
