// runtime/grammar/: a JSON-schema subset compiled to GBNF (then ParseGbnf).
//
// Supported: `type` (object, string, number, integer, boolean, null, array, or a list of them),
// `properties` / `required` / `additionalProperties: false` (properties come in the schema's
// order; optional ones may be left out), `items` / `minItems` / `maxItems`, `minLength` /
// `maxLength`, `enum`, `const`, `anyOf` / `oneOf`, nesting, and the annotations `title`,
// `description`, `default`, `examples`, `$schema`, `$id`, `$comment`. An empty schema (or
// `true`) is any JSON value. Every other keyword is refused with its name and where it is.
// Numbers have at most 16 integer and 16 fraction digits, whitespace at most one space or
// newline between tokens, so a constrained output always can end.
#ifndef KESTREL_RUNTIME_GRAMMAR_JSON_SCHEMA_H_
#define KESTREL_RUNTIME_GRAMMAR_JSON_SCHEMA_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kestrel {
namespace runtime {
namespace grammar {

// The GBNF of the schema's instances. INVALID_ARGUMENT "json_schema: ..." for text that is not
// JSON, an unsupported keyword ("json_schema: unsupported keyword 'pattern' at
// #/properties/name"), or a keyword with a bad value.
absl::StatusOr<std::string> JsonSchemaToGbnf(absl::string_view schema);

// The GBNF of any JSON object (OpenAI's response_format {"type": "json_object"}).
std::string JsonObjectGbnf();

}  // namespace grammar
}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_GRAMMAR_JSON_SCHEMA_H_
