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

// Bounds on one rendering, so a hostile template cannot run away with time or memory.
struct RenderLimits {
  size_t max_output_bytes = size_t{64} << 20;
  size_t max_iterations = 1'000'000;  // loop bodies, summed over all loops
};

// Renders `nodes` with `globals` as the outermost scope. Errors ("line N: ..."):
// FAILED_PRECONDITION for raise_exception() (the template refuses these messages, e.g. roles that
// do not alternate); UNIMPLEMENTED for a filter, test, method or function outside the subset;
// INVALID_ARGUMENT for a type error (e.g. a string + a list); RESOURCE_EXHAUSTED when the output
// passes limits.max_output_bytes, loops run past limits.max_iterations, range() passes 100000 items
// or macro calls nest deeper than 64.
// `now` (seconds since the epoch, UTC) is the time strftime_now formats; -1: the current time.
absl::StatusOr<std::string> Render(const std::vector<Node>& nodes, const Dict& globals, int64_t now = -1,
                                   const RenderLimits& limits = RenderLimits());

}  // namespace kestrel::runtime::jinja

#endif  // KESTREL_RUNTIME_TOKENIZER_CHAT_JINJA_RENDER_H_
