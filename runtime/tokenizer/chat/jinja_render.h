// runtime/tokenizer/chat/jinja_render.h: evaluates a parsed chat template (jinja_parser.h) with
// the variables a chat template receives, the way Jinja2 with Hugging Face's environment does.
//
// Filters: trim, upper, lower, capitalize, title, length/count, list, first, last, join, default/d,
// tojson, string, int, float, abs, replace, safe, reverse, items, selectattr, rejectattr, map
// (attribute=), unique, sort(attribute=)... Tests: defined, undefined, none, string, number, integer,
// boolean, mapping, iterable, sequence, true, false, equalto/eq/==, ne, in, odd, even,
// divisibleby. Methods: str strip/lstrip/rstrip/startswith/endswith/split/upper/lower/replace/title/
// capitalize/format-free; dict items/keys/values/get; list append (index/count). Functions:
// raise_exception, namespace, range, strftime_now (UTC), dict.
#ifndef KESTREL_RUNTIME_TOKENIZER_CHAT_JINJA_RENDER_H_
#define KESTREL_RUNTIME_TOKENIZER_CHAT_JINJA_RENDER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/tokenizer/chat/jinja_parser.h"
#include "runtime/tokenizer/chat/jinja_value.h"

namespace kestrel::runtime::jinja {

// Renders `nodes` with `globals` as the outermost scope. Errors ("line N: ..."):
// FAILED_PRECONDITION for raise_exception() (the template refuses these messages, e.g. roles that
// do not alternate); UNIMPLEMENTED for a filter, test, method or function outside the subset;
// INVALID_ARGUMENT for a type error (e.g. a string + a list); RESOURCE_EXHAUSTED when the output
// passes 64 MiB or loops run past 10 million iterations.
// `now` (seconds since the epoch, UTC) is the time strftime_now formats; -1: the current time.
absl::StatusOr<std::string> Render(const std::vector<Node>& nodes, const Dict& globals, int64_t now = -1);

}  // namespace kestrel::runtime::jinja

#endif  // KESTREL_RUNTIME_TOKENIZER_CHAT_JINJA_RENDER_H_
