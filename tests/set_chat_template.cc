// kestrel_test_set_chat_template IN.gguf OUT.gguf TEMPLATE: copies a GGUF with its
// tokenizer.chat_template set to TEMPLATE (the CLI chat test gives stories260K a template).
#include <cstdio>
#include <string>

#include "tests/gguf_edit.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s IN.gguf OUT.gguf TEMPLATE\n", argv[0]);
    return 2;
  }
  const absl::Status s = kestrel::testing::CopyGgufWith(
      argv[1], argv[2], {{"tokenizer.chat_template", kestrel::runtime::GgufValue::String(argv[3])}});
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
