// Where `kestrel generate` takes its prompt from: -p TEXT, or -f FILE / -p - (standard input).
// Pure C++ (no Kestrel API calls).
#ifndef KESTREL_TOOLS_CLI_PROMPT_INPUT_H_
#define KESTREL_TOOLS_CLI_PROMPT_INPUT_H_

#include <cstdio>
#include <string>

#include "args.h"

namespace kestrel::cli {

// The prompt of `options`: the -p text as given, or the bytes of the -f file ("-": all of
// `stdin_file`) with one trailing line break ("\n" or "\r\n") removed, so that
// `echo TEXT | kestrel generate -p -` prompts with TEXT, as -p TEXT does. On failure returns
// false with `error` naming the file and the reason ("cannot read prompt file 'p.txt': No such
// file or directory").
bool ReadPrompt(const Options& options, std::FILE* stdin_file, std::string* prompt,
                std::string* error);

// The constrained-output options of `options`: the text of the --grammar file into `grammar`, of
// the --json-schema file (or, for --json-object, the schema of any object) into `json_schema`;
// both stay empty without those flags. On failure returns false with `error` naming the file.
bool ReadConstraint(const Options& options, std::string* grammar, std::string* json_schema,
                    std::string* error);

}  // namespace kestrel::cli

#endif  // KESTREL_TOOLS_CLI_PROMPT_INPUT_H_
