// The tokenizer entry points (tokenize, detokenize, pieces, tokenizer info) and chat templates
// at the C boundary.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "api/src/c_api_internal.h"

using kestrel::api::CheckTokenizer;
using kestrel::api::Guard;
using kestrel::api::NullArgument;

namespace {

absl::Status Tokenize(const char* fn, const kestrel_model_t* model, const char* text, size_t text_length,
                      bool add_special, bool parse_special, int32_t* out_tokens, size_t capacity,
                      size_t* out_required) {
  if (model == nullptr) return NullArgument(fn, "model");
  if (text == nullptr && text_length > 0) return NullArgument(fn, "text");
  if (auto s = CheckTokenizer(fn, model); !s.ok()) return s;
  std::vector<int32_t> ids = model->model->tokenizer().Encode(
      absl::string_view(text == nullptr ? "" : text, text_length), add_special, parse_special);
  return kestrel::api::CopyOut(fn, "out_tokens", ids.data(), ids.size(), out_tokens, capacity, out_required);
}

absl::Status Piece(const char* fn, const kestrel_model_t* model, int32_t token, bool special, char* out_piece,
                   size_t capacity, size_t* out_required) {
  if (model == nullptr) return NullArgument(fn, "model");
  if (auto s = CheckTokenizer(fn, model); !s.ok()) return s;
  const auto& tok = model->model->tokenizer();
  if (token < 0 || token >= tok.vocab_size()) {
    return absl::OutOfRangeError(
        absl::StrFormat("%s: token id %d is outside the vocab [0, %d)", fn, token, tok.vocab_size()));
  }
  absl::string_view piece = tok.PieceView(token, special);
  return kestrel::api::CopyOut(fn, "out_piece", piece.data(), piece.size(), out_piece, capacity, out_required);
}

}  // namespace

extern "C" {

KESTREL_API kestrel_status_t* kestrel_tokenize(const kestrel_model_t* model, const char* text,
                                               size_t text_length, bool add_bos,
                                               int32_t* out_tokens, size_t capacity,
                                               size_t* out_required) {
  return Guard("kestrel_tokenize", [&]() -> absl::Status {
    return Tokenize("kestrel_tokenize", model, text, text_length, add_bos, /*parse_special=*/false, out_tokens,
                    capacity, out_required);
  });
}

KESTREL_API kestrel_status_t* kestrel_detokenize(const kestrel_model_t* model,
                                                 const int32_t* tokens, size_t n_tokens,
                                                 bool remove_leading_space, char* out_text,
                                                 size_t capacity, size_t* out_required) {
  return Guard("kestrel_detokenize", [&]() -> absl::Status {
    constexpr const char* fn = "kestrel_detokenize";
    if (model == nullptr) return NullArgument(fn, "model");
    if (tokens == nullptr && n_tokens > 0) return NullArgument(fn, "tokens");
    if (auto s = CheckTokenizer(fn, model); !s.ok()) return s;
    const auto& tok = model->model->tokenizer();
    for (size_t i = 0; i < n_tokens; ++i) {
      if (tokens[i] < 0 || tokens[i] >= tok.vocab_size()) {
        return absl::OutOfRangeError(absl::StrFormat("%s: token #%u has id %d, outside the vocab [0, %d)",
                                                     fn, i, tokens[i], tok.vocab_size()));
      }
    }
    std::string text = tok.Decode(absl::MakeConstSpan(tokens, n_tokens), remove_leading_space);
    return kestrel::api::CopyOut(fn, "out_text", text.data(), text.size(), out_text, capacity, out_required);
  });
}

KESTREL_API kestrel_status_t* kestrel_token_to_piece(const kestrel_model_t* model, int32_t token,
                                                     char* out_piece, size_t capacity,
                                                     size_t* out_required) {
  return Guard("kestrel_token_to_piece", [&]() -> absl::Status {
    return Piece("kestrel_token_to_piece", model, token, /*special=*/false, out_piece, capacity, out_required);
  });
}

KESTREL_API void kestrel_tokenize_options_init_sized(kestrel_tokenize_options_t* out, size_t struct_size) {
  kestrel::api::InitOptions(out, struct_size, [](kestrel_tokenize_options_t& o) { o.add_special = true; });
}

KESTREL_API kestrel_status_t* kestrel_tokenize_with_options(const kestrel_model_t* model, const char* text,
                                                            size_t text_length,
                                                            const kestrel_tokenize_options_t* options,
                                                            int32_t* out_tokens, size_t capacity,
                                                            size_t* out_required) {
  return Guard("kestrel_tokenize_with_options", [&]() -> absl::Status {
    constexpr const char* fn = "kestrel_tokenize_with_options";
    kestrel_tokenize_options_t o;
    kestrel_tokenize_options_init(&o);
    if (auto s = kestrel::api::ReadOptions(fn, "options", options, KESTREL_TOKENIZE_OPTIONS_MIN_SIZE, &o); !s.ok()) {
      return s;
    }
    return Tokenize(fn, model, text, text_length, o.add_special, o.parse_special, out_tokens, capacity,
                    out_required);
  });
}

KESTREL_API kestrel_status_t* kestrel_token_to_piece_special(const kestrel_model_t* model, int32_t token,
                                                             bool special, char* out_piece, size_t capacity,
                                                             size_t* out_required) {
  return Guard("kestrel_token_to_piece_special", [&]() -> absl::Status {
    return Piece("kestrel_token_to_piece_special", model, token, special, out_piece, capacity, out_required);
  });
}

KESTREL_API kestrel_status_t* kestrel_model_get_tokenizer_info(const kestrel_model_t* model,
                                                               kestrel_tokenizer_info_t* out_info) {
  return Guard("kestrel_model_get_tokenizer_info", [&]() -> absl::Status {
    constexpr const char* fn = "kestrel_model_get_tokenizer_info";
    if (model == nullptr) return NullArgument(fn, "model");
    if (auto s = CheckTokenizer(fn, model); !s.ok()) return s;
    const auto& tok = model->model->tokenizer();
    kestrel_tokenizer_info_t info{};
    info.struct_size = sizeof(info);
    info.kind = model->tokenizer_kind.c_str();
    info.pre_tokenizer = model->tokenizer_pre.c_str();
    info.vocab_size = static_cast<uint32_t>(tok.vocab_size());
    info.bos_id = tok.bos_id();
    info.eos_id = tok.eos_id();
    info.add_bos = tok.add_bos();
    info.add_eos = tok.add_eos();
    info.n_end_of_generation = static_cast<uint32_t>(tok.EndOfGenerationIds().size());
    info.chat_template = model->chat_template != nullptr ? model->chat_template->source().c_str() : "";
    info.chat_template_family = model->chat_template != nullptr ? model->chat_template->family().c_str() : "";
    info.chat_template_error = model->chat_template_error.c_str();
    return kestrel::api::WriteInfo(fn, "out_info", info, out_info, KESTREL_TOKENIZER_INFO_MIN_SIZE);
  });
}

KESTREL_API kestrel_status_t* kestrel_model_end_of_generation_tokens(const kestrel_model_t* model,
                                                                     int32_t* out_tokens, size_t capacity,
                                                                     size_t* out_required) {
  return Guard("kestrel_model_end_of_generation_tokens", [&]() -> absl::Status {
    constexpr const char* fn = "kestrel_model_end_of_generation_tokens";
    if (model == nullptr) return NullArgument(fn, "model");
    if (auto s = CheckTokenizer(fn, model); !s.ok()) return s;
    const std::vector<int32_t>& ids = model->model->tokenizer().EndOfGenerationIds();
    return kestrel::api::CopyOut(fn, "out_tokens", ids.data(), ids.size(), out_tokens, capacity, out_required);
  });
}

KESTREL_API void kestrel_chat_template_options_init_sized(kestrel_chat_template_options_t* out, size_t struct_size) {
  kestrel::api::InitOptions(out, struct_size,
                            [](kestrel_chat_template_options_t& o) { o.add_generation_prompt = true; });
}

KESTREL_API kestrel_status_t* kestrel_model_apply_chat_template(const kestrel_model_t* model,
                                                                const kestrel_chat_message_t* messages,
                                                                size_t n_messages,
                                                                const kestrel_chat_template_options_t* options,
                                                                char* out_text, size_t capacity,
                                                                size_t* out_required) {
  return Guard("kestrel_model_apply_chat_template", [&]() -> absl::Status {
    constexpr const char* fn = "kestrel_model_apply_chat_template";
    if (model == nullptr) return NullArgument(fn, "model");
    if (messages == nullptr && n_messages > 0) return NullArgument(fn, "messages");
    if (out_required == nullptr) return NullArgument(fn, "out_required");
    kestrel_chat_template_options_t o;
    kestrel_chat_template_options_init(&o);
    if (auto s = kestrel::api::ReadOptions(fn, "options", options, KESTREL_CHAT_TEMPLATE_OPTIONS_MIN_SIZE, &o);
        !s.ok()) {
      return s;
    }
    std::vector<kestrel::runtime::ChatMessage> list;
    list.reserve(n_messages);
    for (size_t i = 0; i < n_messages; ++i) {
      const kestrel_chat_message_t& m = messages[i];
      if ((m.role == nullptr && m.role_length > 0) || (m.content == nullptr && m.content_length > 0)) {
        return absl::InvalidArgumentError(
            absl::StrFormat("%s: messages[%u] has a NULL role or content with a nonzero length", fn, i));
      }
      list.push_back({std::string(m.role == nullptr ? "" : m.role, m.role_length),
                      std::string(m.content == nullptr ? "" : m.content, m.content_length)});
    }
    const kestrel::runtime::ChatTemplate* tmpl = model->chat_template.get();
    std::unique_ptr<kestrel::runtime::ChatTemplate> explicit_template;
    if (o.template_text != nullptr) {
      if (auto s = CheckTokenizer(fn, model); !s.ok()) return s;
      const auto& tok = model->model->tokenizer();
      absl::StatusOr<std::unique_ptr<kestrel::runtime::ChatTemplate>> t = kestrel::runtime::ChatTemplate::Create(
          std::string(o.template_text, o.template_length), tok.TokenText(tok.bos_id()), tok.TokenText(tok.eos_id()),
          "options->template_text");
      if (!t.ok()) return absl::Status(t.status().code(), absl::StrCat(fn, ": ", t.status().message()));
      explicit_template = std::move(*t);
      tmpl = explicit_template.get();
    } else if (o.template_length > 0) {
      return NullArgument(fn, "options->template_text (with template_length > 0)");
    }
    if (tmpl == nullptr) {
      return absl::Status(model->chat_template_status.code(),
                          absl::StrCat(fn, ": ", model->chat_template_status.message()));
    }
    absl::StatusOr<std::string> text = tmpl->Apply(list, o.add_generation_prompt);
    if (!text.ok()) return absl::Status(text.status().code(), absl::StrCat(fn, ": ", text.status().message()));
    return kestrel::api::CopyOut(fn, "out_text", text->data(), text->size(), out_text, capacity, out_required);
  });
}

}  // extern "C"
