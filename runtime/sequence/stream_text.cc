#include "runtime/sequence/stream_text.h"

#include <algorithm>

namespace kestrel {
namespace runtime {

StreamText::StreamText(std::vector<std::string> stop_strings) {
  for (std::string& s : stop_strings) {
    if (!s.empty()) stops_.push_back(std::move(s));
  }
}

size_t CompleteUtf8Prefix(absl::string_view s) {
  // Look back at most 3 bytes for the lead byte of a multi-byte sequence.
  const size_t n = s.size();
  for (size_t back = 1; back <= 4 && back <= n; ++back) {
    const unsigned char c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte
    size_t len = 1;
    if ((c & 0xE0) == 0xC0) len = 2;
    else if ((c & 0xF0) == 0xE0) len = 3;
    else if ((c & 0xF8) == 0xF0) len = 4;
    return len > back ? n - back : n;  // lead byte whose sequence is not complete yet
  }
  return n;  // only continuation bytes (invalid UTF-8): nothing to wait for
}

std::string StreamText::Push(absl::string_view piece, bool* stopped) {
  *stopped = false;
  pending_.append(piece.data(), piece.size());
  size_t first = std::string::npos;
  for (const std::string& s : stops_) first = std::min(first, pending_.find(s));
  if (first != std::string::npos) {
    *stopped = true;
    std::string out = pending_.substr(0, first);
    pending_.clear();
    return out;
  }
  // Hold back the longest suffix that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const std::string& s : stops_) {
    for (size_t len = std::min(s.size() - 1, pending_.size()); len > hold; --len) {
      if (pending_.compare(pending_.size() - len, len, s, 0, len) == 0) {
        hold = len;
        break;
      }
    }
  }
  size_t emit = std::min(pending_.size() - hold, CompleteUtf8Prefix(pending_));
  std::string out = pending_.substr(0, emit);
  pending_.erase(0, emit);
  return out;
}

std::string StreamText::Flush() {
  std::string out;
  out.swap(pending_);
  return out;
}

}  // namespace runtime
}  // namespace kestrel
