#include "tools/synth/synth_args.h"

#include <charconv>
#include <cstdint>
#include <optional>
#include "absl/strings/string_view.h"
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace kestrel::synth {

const char kSynthUsage[] =
    "usage: kestrel-synth --shape NAME|custom [--type T] [--seed S] -o OUT.gguf\n"
    "                     [--dim N] [--layers N] [--heads N] [--kv-heads N] [--ffn N]\n"
    "                     [--vocab N] [--experts N] [--experts-used N] [--ctx N]\n"
    "                     [--name TEXT] [--quiet]\n"
    "\n"
    "Writes a llama GGUF v3 with seeded random weights, one tensor at a time (a few MiB of\n"
    "memory whatever the model size), and a synthetic 32000-token SentencePiece vocab.\n"
    "\n"
    "  --shape NAME     tinyllama-1.1b (dim 2048, 22 layers, 32 heads, 4 KV heads, ffn 5632),\n"
    "                   llama-8b (4096, 32, 32, 8, 14336), mixtral-small (1024, 8, 16, 4,\n"
    "                   ffn 2816, 8 experts, top-2), the test shapes llama3-tiny, qwen2-tiny,\n"
    "                   qwen3-tiny, phi3-tiny, gemma3-tiny (dim 64, 2-3 layers, their family's\n"
    "                   extra tensors),\n"
    "                   or custom (give --dim --layers --heads --ffn)\n"
    "  --type T         matrix type incl. token_embd and output: F32, F16, Q8_0, Q4_0 (default),\n"
    "                   Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K; or the mixes Q4_K_M,\n"
    "                   Q5_K_M (types per tensor as llama-quantize assigns them: Q6_K output\n"
    "                   and some attn_v/ffn_down). K types need dim and ffn multiples of 256.\n"
    "                   Norms (and the MoE router) are F32\n"
    "  --seed S         seed of the weights (default 1); same arguments -> identical bytes\n"
    "  -o, --output P   output file (written as P.partial, renamed when complete)\n"
    "  --dim --layers --heads --kv-heads --ffn --vocab --experts --experts-used --ctx N\n"
    "                   shape fields (override a preset's); vocab default 32000, ctx 2048\n"
    "  --name TEXT      general.name (default: \"kestrel-synth SHAPE TYPE seed S\")\n"
    "  --quiet          no progress on stderr\n"
    "\n"
    "exit status: 0 success, 1 error (I/O), 2 bad usage\n";

namespace {

SynthParseResult Fail(std::string message) {
  SynthParseResult r;
  r.ok = false;
  r.error = std::move(message);
  return r;
}

bool ParseU64(absl::string_view text, uint64_t* out) {
  uint64_t v = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc() || ptr != end) return false;
  *out = v;
  return true;
}

bool ParseU32(absl::string_view text, uint32_t* out) {
  uint64_t v;
  if (!ParseU64(text, &v) || v > UINT32_MAX) return false;
  *out = static_cast<uint32_t>(v);
  return true;
}

struct ParsedType {
  runtime::GgmlType type;
  TypeMix mix;
};

std::optional<ParsedType> ParseType(absl::string_view text) {
  using runtime::GgmlType;
  const std::string t = absl::AsciiStrToUpper(text);
  if (t == "Q4_K_M") return ParsedType{GgmlType::Q4_K, TypeMix::kQ4_K_M};
  if (t == "Q5_K_M") return ParsedType{GgmlType::Q5_K, TypeMix::kQ5_K_M};
  for (GgmlType g : {GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::F32, GgmlType::Q4_1,
                     GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K,
                     GgmlType::Q5_K, GgmlType::Q6_K}) {
    if (t == runtime::GgmlTypeName(g)) return ParsedType{g, TypeMix::kUniform};
  }
  return std::nullopt;
}

}  // namespace

SynthParseResult ParseSynthArgs(int argc, const char* const* argv, SynthArgs* out) {
  SynthArgs a;
  std::string shape_name;
  struct ShapeFlag {
    const char* name;
    uint32_t ModelShape::*field;
    std::optional<uint32_t> value;
  };
  ShapeFlag shape_flags[] = {
      {"dim", &ModelShape::dim, {}},          {"layers", &ModelShape::layers, {}},
      {"heads", &ModelShape::heads, {}},      {"kv-heads", &ModelShape::kv_heads, {}},
      {"ffn", &ModelShape::ffn, {}},          {"vocab", &ModelShape::vocab, {}},
      {"experts", &ModelShape::experts, {}},  {"experts-used", &ModelShape::experts_used, {}},
      {"ctx", &ModelShape::context, {}},
  };
  bool have_output = false;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    absl::string_view name;
    std::optional<absl::string_view> inline_value;
    if (arg == "-h" || arg == "--help") {
      a.help = true;
      continue;
    }
    if (arg == "--quiet") {
      a.quiet = true;
      continue;
    }
    if (arg == "-o") {
      name = "output";
    } else if (arg.size() > 2 && arg.substr(0, 2) == "--") {
      name = arg.substr(2);
      size_t eq = name.find('=');
      if (eq != absl::string_view::npos) {
        inline_value = name.substr(eq + 1);
        name = name.substr(0, eq);
      }
    } else {
      return Fail(absl::StrCat("unexpected argument '", arg, "'"));
    }
    const std::string spelled = arg == "-o" ? "-o" : absl::StrCat("--", name);
    absl::string_view value;
    if (inline_value) {
      value = *inline_value;
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      bool known = name == "shape" || name == "type" || name == "seed" || name == "output" ||
                   name == "name";
      for (const ShapeFlag& f : shape_flags) known = known || name == f.name;
      if (!known) return Fail(absl::StrCat("unknown option '", spelled, "'"));
      return Fail(absl::StrCat("option '", spelled, "' needs a value"));
    }
    if (name == "shape") {
      shape_name = std::string(value);
    } else if (name == "type") {
      std::optional<ParsedType> t = ParseType(value);
      if (!t) {
        return Fail(absl::StrCat("invalid value '", value,
                                 "' for --type: expected F16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, "
                                 "Q3_K, Q4_K, Q5_K, Q6_K, Q4_K_M or Q5_K_M"));
      }
      a.options.type = t->type;
      a.options.mix = t->mix;
    } else if (name == "seed") {
      if (!ParseU64(value, &a.options.seed)) {
        return Fail(absl::StrCat("invalid value '", value,
                                 "' for --seed: expected an integer in [0, 18446744073709551615]"));
      }
    } else if (name == "output") {
      if (value.empty()) return Fail(absl::StrCat("invalid value '' for ", spelled, ": expected a file path"));
      a.options.output_path = std::string(value);
      have_output = true;
    } else if (name == "name") {
      a.options.model_name = std::string(value);
    } else {
      ShapeFlag* flag = nullptr;
      for (ShapeFlag& f : shape_flags) {
        if (name == f.name) flag = &f;
      }
      if (flag == nullptr) return Fail(absl::StrCat("unknown option '", spelled, "'"));
      uint32_t v;
      if (!ParseU32(value, &v)) {
        return Fail(absl::StrCat("invalid value '", value, "' for ", spelled,
                                 ": expected an integer in [0, 4294967295]"));
      }
      flag->value = v;
    }
  }
  if (a.help) {
    *out = std::move(a);
    return SynthParseResult{};
  }
  if (shape_name.empty()) return Fail("missing --shape NAME|custom");
  if (!have_output) return Fail("missing -o/--output OUT.gguf");

  ModelShape shape;
  bool any_override = false;
  for (const ShapeFlag& f : shape_flags) any_override = any_override || f.value.has_value();
  if (shape_name == "custom") {
    for (const char* required : {"dim", "layers", "heads", "ffn"}) {
      for (const ShapeFlag& f : shape_flags) {
        if (absl::string_view(f.name) == required && !f.value) {
          return Fail(absl::StrCat("--shape custom needs --", required));
        }
      }
    }
  } else {
    absl::StatusOr<ModelShape> preset = PresetShape(shape_name);
    if (!preset.ok()) return Fail(std::string(preset.status().message()));
    shape = *preset;
    if (any_override) shape.name += "+overrides";
  }
  bool kv_given = false;
  for (const ShapeFlag& f : shape_flags) {
    if (f.value) shape.*(f.field) = *f.value;
    if (f.field == &ModelShape::kv_heads) kv_given = f.value.has_value();
  }
  if (shape_name == "custom" && !kv_given) shape.kv_heads = shape.heads;
  absl::Status valid = ValidateShape(shape, a.options.type);
  if (!valid.ok()) return Fail(std::string(valid.message()));
  a.options.shape = shape;
  *out = std::move(a);
  return SynthParseResult{};
}

}  // namespace kestrel::synth
