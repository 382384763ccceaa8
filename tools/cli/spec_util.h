// Speculative decoding on the command line (generate --spec, bench --spec): the options the flags
// ask for, the draft model they load, and the statistics they print. Public C API only.
#ifndef KESTREL_TOOLS_CLI_SPEC_UTIL_H_
#define KESTREL_TOOLS_CLI_SPEC_UTIL_H_

#include <string>
#include <vector>

#include "api_util.h"
#include "args.h"
#include "json_writer.h"
#include "kestrel/kestrel.h"

namespace kestrel::cli {

// KESTREL_SPEC_* of a --spec name ("ngram"); KESTREL_SPEC_OFF for an unknown name.
uint32_t SpecMethodFromName(const std::string& name);
// The methods of bench's --spec list ("auto,ngram" -> {"auto", "ngram"}).
std::vector<std::string> SpecMethodList(const std::string& spec);

// Fills `spec` (the first method of a --spec list) from --spec/--spec-max/--heads and loads --draft-model (on the same device) into
// *draft. False (error printed, *exit_code set) on failure. With no --spec, method OFF.
bool MakeSpecOptions(const Options& o, kestrel_runtime_t* runtime, ModelPtr* draft,
                     kestrel_speculative_options_t* spec, int* exit_code);

// One stderr line: method, drafted, accepted, mean accepted, propose/verify ms.
void PrintSpecStats(const kestrel_speculative_stats_t& st);
// "speculative": {...} as one JSON value.
void WriteSpecStatsJson(JsonWriter* w, const kestrel_speculative_stats_t& st);

}  // namespace kestrel::cli

#endif  // KESTREL_TOOLS_CLI_SPEC_UTIL_H_
