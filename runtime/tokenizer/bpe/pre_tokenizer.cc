// runtime/tokenizer/bpe/pre_tokenizer.cc
#include "runtime/tokenizer/bpe/pre_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"

namespace kestrel::runtime {
namespace {

// llama.cpp's whitespace set (unicode_set_whitespace) as the members of a character class. Its
// regexes see exactly these as \s (its custom splitters test the set; its std::regex paths map
// every non-ASCII member to \v first); PCRE2's own \s differs (U+0085).
constexpr absl::string_view kWs =
    R"(\t\n\x0B\f\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})";

// The patterns below use \s and \S outside character classes and {WS} inside them.
std::string Expand(absl::string_view pattern) {
  const std::string ws(kWs);
  return absl::StrReplaceAll(pattern,
                             {{"{WS}", ws}, {R"(\s)", "[" + ws + "]"}, {R"(\S)", "[^" + ws + "]"}});
}

// GPT-2's pattern. llama.cpp's splitter for it also takes a lone trailing \s+ (the last
// alternative here), which its split would keep as a piece of its own anyway.
constexpr absl::string_view kGpt2 =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^{WS}\p{L}\p{N}]+|\s+(?!\S)|\s+)";
// Llama 3: tokenizer.json's case-insensitive contractions spelled out, as llama.cpp adapts them.
constexpr absl::string_view kLlama3 =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^{WS}\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr absl::string_view kQwen2 =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^{WS}\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr absl::string_view kTekken =
    R"([^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^{WS}\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr absl::string_view kDeepseekV3 =
    R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr absl::string_view kPoro = R"( ?[^({WS}|.,!?…。，、।۔،)]+)";
// DeepSeek LLM's letters and punctuation. In the punctuation class llama.cpp's range U+3000-U+3002
// can never match U+3000 (its subject has U+3000 as \v by then), so the range starts at U+3001.
constexpr absl::string_view kDeepseekLetters = "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+";
constexpr absl::string_view kDeepseekPunct = "\\s?[!-/:-~！-／：-～‘-‟、-。]+";
constexpr absl::string_view kCjk = "[一-龥ࠀ-一가-퟿]+";

struct Spec {
  std::vector<absl::string_view> names;
  std::vector<absl::string_view> regexes;
  bool ignore_merges = false;
  bool add_bos_default = false;
};

const std::vector<Spec>& Specs() {
  static const std::vector<Spec>* const specs = new std::vector<Spec>{
      {{"default", ""}, {R"([\p{P}\$\+<=>\^~\|]+)", kGpt2, R"(\p{N}+)", "[0-9][0-9][0-9]"}},
      {{"gpt-2", "phi-2", "mpt", "olmo", "jais", "jina-es", "jina-de", "jina-v2-es", "jina-v2-de",
        "gigachat", "a.x-4.0", "mellum", "modern-bert", "exaone4", "trillion", "granite-docling"},
       {kGpt2}},
      {{"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva", "mellum2"},
       {R"(\p{N})", kGpt2}},
      {{"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"},
       {kLlama3}, /*ignore_merges=*/true, /*add_bos_default=*/true},
      {{"dbrx", "smaug-bpe", "chatglm-bpe"}, {kLlama3}},
      {{"qwen2", "deepseek-r1-qwen", "stablelm2", "hunyuan"}, {kQwen2}},
      {{"tekken"}, {kTekken}, /*ignore_merges=*/true, /*add_bos_default=*/true},
      {{"deepseek-llm"}, {"[\r\n]", kDeepseekLetters, kDeepseekPunct, R"(\s+\z)", kCjk, R"(\p{N}+)"}},
      {{"deepseek-coder"}, {"[\r\n]", R"(\s?\p{L}+)", R"(\s?\p{P}+)", kCjk, R"(\p{N})"}},
      {{"deepseek-v3"}, {R"(\p{N}{1,3})", "[一-龥぀-ゟ゠-ヿ]+", kDeepseekV3}},
      {{"falcon"}, {R"([\p{P}\$\+<=>\^~\|`]+)", kGpt2, "[0-9][0-9][0-9]"}},
      {{"poro-chat", "bloom", "gpt3-finnish"}, {kPoro}},
      {{"viking"}, {kPoro, R"(\p{N})"}},
  };
  return *specs;
}

}  // namespace

struct PreTokenizer::Regex {
  pcre2_code* code = nullptr;
  ~Regex() { pcre2_code_free(code); }
};

PreTokenizer::~PreTokenizer() = default;

std::vector<std::string> PreTokenizer::KnownNames() {
  std::vector<std::string> names;
  for (const Spec& spec : Specs()) {
    for (absl::string_view n : spec.names) {
      if (!n.empty()) names.emplace_back(n);
    }
  }
  return names;
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizer::Create(absl::string_view name) {
  const Spec* found = nullptr;
  for (const Spec& spec : Specs()) {
    for (absl::string_view n : spec.names) {
      if (n == name) found = &spec;
    }
  }
  if (found == nullptr) {
    return absl::UnimplementedError(absl::StrCat("tokenizer.ggml.pre '", name,
                                                 "' is not a pre-tokenizer this build knows (known: ",
                                                 absl::StrJoin(KnownNames(), ", "), ")"));
  }
  std::unique_ptr<PreTokenizer> p(new PreTokenizer());
  p->name_ = name.empty() ? "default" : std::string(name);
  p->ignore_merges_ = found->ignore_merges;
  p->add_bos_default_ = found->add_bos_default;
  for (absl::string_view pattern : found->regexes) {
    const std::string expanded = Expand(pattern);
    int error = 0;
    PCRE2_SIZE offset = 0;
    auto regex = std::make_unique<Regex>();
    regex->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(expanded.data()), expanded.size(),
                                PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error, &offset, nullptr);
    if (regex->code == nullptr) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error, message, sizeof(message));
      return absl::InternalError(absl::StrCat("tokenizer.ggml.pre '", name, "': regex /", expanded,
                                              "/ does not compile at offset ", offset, ": ",
                                              reinterpret_cast<const char*>(message)));
    }
    // JIT is an optimisation: without it (a platform PCRE2 lacks it for) matching still works.
    pcre2_jit_compile(regex->code, PCRE2_JIT_COMPLETE);
    p->regexes_.push_back(std::move(regex));
  }
  return p;
}

void PreTokenizer::Split(absl::string_view text, std::vector<absl::string_view>* words) const {
  if (text.empty()) return;
  std::vector<absl::string_view> pieces{text};
  std::vector<absl::string_view> next;
  for (size_t r = 0; r < regexes_.size(); ++r) {
    pcre2_code* code = regexes_[r]->code;
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(code, nullptr);
    std::vector<absl::string_view>& out = r + 1 == regexes_.size() ? *words : next;
    for (absl::string_view piece : pieces) {
      const auto* subject = reinterpret_cast<PCRE2_SPTR>(piece.data());
      size_t pos = 0;      // where the search resumes
      size_t emitted = 0;  // end of what this piece has handed on
      while (pos < piece.size()) {
        const int rc = pcre2_match(code, subject, piece.size(), pos, 0, md, nullptr);
        if (rc < 0) break;  // no further match (or a matching error: the rest stays one piece)
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
        const size_t begin = ov[0], end = ov[1];
        if (end <= begin) {  // none of the patterns matches empty; never loop on one that does
          pos = begin + 1;
          continue;
        }
        if (begin > emitted) out.push_back(piece.substr(emitted, begin - emitted));
        out.push_back(piece.substr(begin, end - begin));
        emitted = pos = end;
      }
      if (emitted < piece.size()) out.push_back(piece.substr(emitted));
    }
    pcre2_match_data_free(md);
    if (r + 1 < regexes_.size()) {
      pieces.swap(next);
      next.clear();
    }
  }
}

}  // namespace kestrel::runtime
