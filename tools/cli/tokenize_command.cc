// `kestrel tokenize`: the token ids and pieces of a text, from the model's vocab alone (the model
// is loaded metadata-only, so this works for any GGUF whose tokenizer this build reads, whatever
// its architecture or tensor types).
//
// stdout: one line per token, "ID -> 'PIECE'" (bytes outside printable ASCII escaped as \xHH, \n,
// \t), or with --json one line {"ids": [...], "pieces": [...]}. Pieces are the tokens' text with
// control tokens spelled out (<|im_start|>); a byte token's piece may be part of a UTF-8
// sequence, which JSON shows as U+FFFD.
#include <cstdio>
#include <string>
#include <vector>

#include "api_util.h"
#include "commands.h"
#include "json_writer.h"
#include "kestrel/kestrel.h"

namespace kestrel::cli {
namespace {

std::string Escaped(const std::string& piece) {
  std::string out;
  for (const char c : piece) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '\r') out += "\\r";
    else if (c == '\\') out += "\\\\";
    else if (c == '\'') out += "\\'";
    else if (u < 0x20 || u == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02X", u);
      out += buf;
    } else {
      out.push_back(c);  // UTF-8 passes through
    }
  }
  return out;
}

}  // namespace

int RunTokenize(const Options& o) {
  RuntimePtr runtime = CreateRuntime(o.verbosity);
  if (!runtime) return kExitError;
  int exit_code = kExitError;
  LoadOptions load{o.model_path, "", o.use_mmap};
  load.metadata_only = true;
  ModelPtr model = LoadModel(runtime.get(), load, &exit_code);
  if (!model) return exit_code;
  std::vector<int32_t> ids;
  if (!Tokenize(model.get(), *o.prompt, /*add_special=*/true, o.special, &ids)) return kExitError;
  std::vector<std::string> pieces;
  pieces.reserve(ids.size());
  for (const int32_t id : ids) pieces.push_back(TokenPiece(model.get(), id, /*special=*/true));
  if (o.json) {
    JsonWriter w;
    w.BeginObject();
    w.Key("ids");
    w.BeginArray();
    for (const int32_t id : ids) w.Int(id);
    w.EndArray();
    w.Key("pieces");
    w.BeginArray();
    for (const std::string& p : pieces) w.String(p);
    w.EndArray();
    w.EndObject();
    std::printf("%s\n", w.str().c_str());
  } else {
    for (size_t i = 0; i < ids.size(); ++i) std::printf("%6d -> '%s'\n", ids[i], Escaped(pieces[i]).c_str());
  }
  return kExitOk;
}

}  // namespace kestrel::cli
