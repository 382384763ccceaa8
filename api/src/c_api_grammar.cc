// The C boundary's reading of constrained-output options (kestrel_generate_options_t and
// kestrel_engine_request_options_t: grammar, json_schema).
#include "api/src/c_api_internal.h"
#include "runtime/grammar/gbnf_parser.h"
#include "runtime/grammar/json_schema.h"

namespace kestrel {
namespace api {

absl::StatusOr<std::shared_ptr<const runtime::grammar::Grammar>> GrammarFrom(
    const char* function, const char* grammar, const char* json_schema) {
  if (grammar == nullptr && json_schema == nullptr) {
    return std::shared_ptr<const runtime::grammar::Grammar>();
  }
  if (grammar != nullptr && json_schema != nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        function, ": options->grammar and options->json_schema are both set (give one)"));
  }
  std::string gbnf;
  const char* field = "options->grammar";
  if (json_schema != nullptr) {
    field = "options->json_schema";
    absl::StatusOr<std::string> g = runtime::grammar::JsonSchemaToGbnf(json_schema);
    if (!g.ok()) return absl::InvalidArgumentError(absl::StrCat(function, ": ", field, ": ", g.status().message()));
    gbnf = *std::move(g);
  } else {
    gbnf = grammar;
  }
  absl::StatusOr<runtime::grammar::Grammar> g = runtime::grammar::ParseGbnf(gbnf);
  if (!g.ok()) return absl::InvalidArgumentError(absl::StrCat(function, ": ", field, ": ", g.status().message()));
  return std::make_shared<const runtime::grammar::Grammar>(*std::move(g));
}

}  // namespace api
}  // namespace kestrel
