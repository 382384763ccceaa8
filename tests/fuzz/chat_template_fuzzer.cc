// Fuzz target: chat templates (runtime/tokenizer/chat): ChatTemplate::Create (the Jinja-subset
// parser) on arbitrary template text, then Apply (the renderer) on an arbitrary conversation.
//
// Input: byte 0 = flags (bit 0: add_generation_prompt); then the template source up to the first
// NUL byte; then NUL-separated fields taken in pairs as (role, content) messages (an odd last
// field is a user message's content).
// Invariants: a template is refused with INVALID_ARGUMENT or UNIMPLEMENTED, its message starting
// with the key; a rendering fails only with the documented codes (FAILED_PRECONDITION,
// UNIMPLEMENTED, INVALID_ARGUMENT, RESOURCE_EXHAUSTED) and a message naming the key; a rendering
// that succeeds is deterministic (the same text twice) and within the renderer's output limit.
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "runtime/tokenizer/chat/chat_template.h"
#include "runtime/tokenizer/chat/jinja_render.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using kestrel::runtime::ChatMessage;
using kestrel::runtime::ChatTemplate;

constexpr absl::string_view kKey = "fuzz.chat_template";
constexpr int64_t kNow = 1721952000;  // a fixed date for strftime_now: renderings repeat

bool Documented(absl::StatusCode c, std::initializer_list<absl::StatusCode> codes) {
  for (absl::StatusCode k : codes) {
    if (c == k) return true;
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool add_generation_prompt = (data[0] & 1) != 0;
  const absl::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  const size_t end = rest.find('\0');
  const absl::string_view source = rest.substr(0, end);
  std::vector<ChatMessage> messages;
  if (end != absl::string_view::npos) {
    std::vector<absl::string_view> fields = absl::StrSplit(rest.substr(end + 1), '\0');
    for (size_t i = 0; i < fields.size(); i += 2) {
      if (i + 1 < fields.size()) {
        messages.push_back({std::string(fields[i]), std::string(fields[i + 1])});
      } else {
        messages.push_back({"user", std::string(fields[i])});
      }
    }
  }

  auto t = ChatTemplate::Create(std::string(source), "<s>", "</s>", kKey);
  if (!t.ok()) {
    KESTREL_FUZZ_CHECK(Documented(t.status().code(), {absl::StatusCode::kInvalidArgument,
                                                       absl::StatusCode::kUnimplemented}),
                       "parse: undocumented status %s", t.status().ToString().c_str());
    KESTREL_FUZZ_CHECK(absl::StartsWith(t.status().message(), kKey), "parse error without the key: %s",
                       t.status().ToString().c_str());
    return 0;
  }
  auto text = (*t)->Apply(messages, add_generation_prompt, kNow);
  if (!text.ok()) {
    KESTREL_FUZZ_CHECK(
        Documented(text.status().code(),
                   {absl::StatusCode::kFailedPrecondition, absl::StatusCode::kUnimplemented,
                    absl::StatusCode::kInvalidArgument, absl::StatusCode::kResourceExhausted}),
        "render: undocumented status %s", text.status().ToString().c_str());
    KESTREL_FUZZ_CHECK(absl::StrContains(text.status().message(), kKey),
                       "render error without the key: %s", text.status().ToString().c_str());
    return 0;
  }
  KESTREL_FUZZ_CHECK(text->size() <= kestrel::runtime::jinja::RenderLimits().max_output_bytes,
                     "output of %zu bytes past the limit", text->size());
  auto again = (*t)->Apply(messages, add_generation_prompt, kNow);
  KESTREL_FUZZ_CHECK(again.ok() && *again == *text, "a second rendering differs");
  return 0;
}
