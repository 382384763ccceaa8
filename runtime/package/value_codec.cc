#include "runtime/package/value_codec.h"

#include <cstring>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kestrel {
namespace runtime {
namespace {

using flatbuffers::FlatBufferBuilder;
using flatbuffers::Offset;
using KvVector = flatbuffers::Vector<Offset<kpkg::KeyValue>>;

constexpr char kTok[] = "tokenizer.ggml.";
constexpr char kChatTemplate[] = "tokenizer.chat_template";
constexpr char kTokenIdSuffix[] = "_token_id";

std::string ValueKeyName(const std::string& key) { return absl::StrCat("metadata key '", key, "'"); }

// Which Tokenizer field holds a key of this name and type; "" when none does (it goes to extra).
std::string TokenizerField(const GgufKeyValue& kv) {
  const GgufValue& v = kv.value;
  if (kv.key == kChatTemplate) return v.type() == GgufValueType::STRING ? "chat_template" : "";
  if (!absl::StartsWith(kv.key, kTok)) return "";
  const std::string name = kv.key.substr(sizeof(kTok) - 1);
  const bool is_string = v.type() == GgufValueType::STRING;
  auto array_is = [&](GgufValueType t) { return v.is_array() && v.array_type() == t; };
  if (name == "model" || name == "pre") return is_string ? name : "";
  if (name == "tokens" || name == "merges") return array_is(GgufValueType::STRING) ? name : "";
  if (name == "scores") return array_is(GgufValueType::FLOAT32) ? name : "";
  if (name == "token_type") return array_is(GgufValueType::INT32) ? name : "";
  if (absl::EndsWith(name, kTokenIdSuffix) && v.type() == GgufValueType::UINT32 &&
      (v.ToU64().value_or(0) <= 0x7fffffffu)) {
    return "special";
  }
  if (v.type() == GgufValueType::BOOL) return "flag";
  return "";
}

}  // namespace

Offset<kpkg::Value> EncodeValue(FlatBufferBuilder& fbb, const GgufValue& v) {
  Offset<flatbuffers::String> str;
  Offset<flatbuffers::Vector<uint8_t>> raw;
  Offset<flatbuffers::Vector<Offset<flatbuffers::String>>> strings;
  Offset<flatbuffers::Vector<Offset<kpkg::Value>>> arrays;
  uint64_t scalar = 0;
  if (const std::string* s = v.AsString()) {
    str = fbb.CreateString(*s);
  } else if (v.is_array()) {
    if (const std::vector<std::string>* a = v.AsStringArray()) {
      strings = fbb.CreateVectorOfStrings(*a);
    } else if (const std::vector<GgufValue>* aa = v.AsArrayOfArrays()) {
      std::vector<Offset<kpkg::Value>> inner;
      inner.reserve(aa->size());
      for (const GgufValue& e : *aa) inner.push_back(EncodeValue(fbb, e));
      arrays = fbb.CreateVector(inner);
    } else {
      absl::Span<const uint8_t> bytes = v.array_raw();
      raw = fbb.CreateVector(bytes.data(), bytes.size());
    }
  } else {
    scalar = GgufValueBuilder::ScalarBits(v);
  }
  kpkg::ValueBuilder b(fbb);
  b.add_type(static_cast<uint32_t>(v.type()));
  b.add_array_type(static_cast<uint32_t>(v.array_type()));
  b.add_scalar(scalar);
  if (!str.IsNull()) b.add_str(str);
  if (!raw.IsNull()) b.add_raw(raw);
  if (!strings.IsNull()) b.add_strings(strings);
  if (!arrays.IsNull()) b.add_arrays(arrays);
  return b.Finish();
}

absl::StatusOr<GgufValue> DecodeValue(const kpkg::Value& v, const std::string& key, int depth_left) {
  if (!IsValidGgufValueType(v.type())) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: unknown value type %u", ValueKeyName(key), v.type()));
  }
  const GgufValueType type = static_cast<GgufValueType>(v.type());
  GgufValue out;
  if (type == GgufValueType::STRING) {
    GgufValueBuilder::SetString(&out, v.str() ? v.str()->str() : std::string());
    return out;
  }
  if (type != GgufValueType::ARRAY) {
    uint8_t le[8];
    for (int i = 0; i < 8; ++i) le[i] = static_cast<uint8_t>(v.scalar() >> (8 * i));
    GgufValueBuilder::SetScalar(&out, type, le);
    return out;
  }
  if (!IsValidGgufValueType(v.array_type())) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: unknown array element type %u", ValueKeyName(key), v.array_type()));
  }
  const GgufValueType elem = static_cast<GgufValueType>(v.array_type());
  if (elem == GgufValueType::STRING) {
    std::vector<std::string>* s = GgufValueBuilder::MutableStringArray(&out);
    if (v.strings() != nullptr) {
      s->reserve(v.strings()->size());
      for (const flatbuffers::String* e : *v.strings()) s->push_back(e ? e->str() : std::string());
    }
    return out;
  }
  if (elem == GgufValueType::ARRAY) {
    if (depth_left <= 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: arrays nested too deeply", ValueKeyName(key)));
    }
    std::vector<GgufValue>* a = GgufValueBuilder::MutableArrayOfArrays(&out);
    if (v.arrays() != nullptr) {
      for (const kpkg::Value* e : *v.arrays()) {
        if (e == nullptr || e->type() != static_cast<uint32_t>(GgufValueType::ARRAY)) {
          return absl::InvalidArgumentError(absl::StrFormat(
              "%s: an element of an array of arrays is not an array", ValueKeyName(key)));
        }
        absl::StatusOr<GgufValue> d = DecodeValue(*e, key, depth_left - 1);
        if (!d.ok()) return d.status();
        a->push_back(std::move(*d));
      }
    }
    return out;
  }
  const size_t esize = GgufScalarSize(elem);
  const size_t n = v.raw() ? v.raw()->size() : 0;
  if (esize == 0 || n % esize != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: %u array bytes are not a whole number of %s elements", ValueKeyName(key), n,
        GgufValueTypeName(elem)));
  }
  std::vector<uint8_t>* raw = GgufValueBuilder::MutableRawArray(&out, elem);
  if (n > 0) raw->assign(v.raw()->data(), v.raw()->data() + n);
  return out;
}

void EncodeMetadata(FlatBufferBuilder& fbb, const std::vector<GgufKeyValue>& kvs,
                    Offset<KvVector>* metadata, Offset<kpkg::Tokenizer>* tokenizer) {
  std::vector<Offset<kpkg::KeyValue>> meta, extra;
  std::vector<Offset<kpkg::SpecialToken>> specials;
  std::vector<Offset<kpkg::TokenizerFlag>> flags;
  Offset<flatbuffers::String> model, pre, chat;
  Offset<flatbuffers::Vector<Offset<flatbuffers::String>>> tokens, merges;
  Offset<flatbuffers::Vector<float>> scores;
  Offset<flatbuffers::Vector<int32_t>> types;
  bool any_tokenizer = false;
  for (const GgufKeyValue& kv : kvs) {
    const std::string field = TokenizerField(kv);
    const bool tokenizer_key = absl::StartsWith(kv.key, "tokenizer.");
    any_tokenizer |= tokenizer_key;
    if (field.empty()) {
      auto entry = kpkg::CreateKeyValue(fbb, fbb.CreateString(kv.key), EncodeValue(fbb, kv.value));
      (tokenizer_key ? extra : meta).push_back(entry);
      continue;
    }
    const GgufValue& v = kv.value;
    const std::string name = kv.key.substr(sizeof(kTok) - 1);
    if (field == "chat_template") {
      chat = fbb.CreateString(*v.AsString());
    } else if (field == "model") {
      model = fbb.CreateString(*v.AsString());
    } else if (field == "pre") {
      pre = fbb.CreateString(*v.AsString());
    } else if (field == "tokens") {
      tokens = fbb.CreateVectorOfStrings(*v.AsStringArray());
    } else if (field == "merges") {
      merges = fbb.CreateVectorOfStrings(*v.AsStringArray());
    } else if (field == "scores") {
      absl::Span<const uint8_t> raw = v.array_raw();
      std::vector<float> f(raw.size() / 4);
      if (!f.empty()) std::memcpy(f.data(), raw.data(), f.size() * 4);
      scores = fbb.CreateVector(f);
    } else if (field == "token_type") {
      absl::Span<const uint8_t> raw = v.array_raw();
      std::vector<int32_t> t(raw.size() / 4);
      if (!t.empty()) std::memcpy(t.data(), raw.data(), t.size() * 4);
      types = fbb.CreateVector(t);
    } else if (field == "special") {
      const std::string sname = name.substr(0, name.size() - (sizeof(kTokenIdSuffix) - 1));
      specials.push_back(kpkg::CreateSpecialToken(fbb, fbb.CreateString(sname),
                                                  static_cast<int32_t>(*v.ToU64())));
    } else if (field == "flag") {
      flags.push_back(kpkg::CreateTokenizerFlag(fbb, fbb.CreateString(name), *v.ToBool()));
    }
  }
  *metadata = fbb.CreateVector(meta);
  if (!any_tokenizer) return;
  auto specials_v = fbb.CreateVector(specials);
  auto flags_v = fbb.CreateVector(flags);
  auto extra_v = fbb.CreateVector(extra);
  kpkg::TokenizerBuilder b(fbb);
  if (!model.IsNull()) b.add_model(model);
  if (!pre.IsNull()) b.add_pre(pre);
  if (!tokens.IsNull()) b.add_tokens(tokens);
  if (!scores.IsNull()) b.add_scores(scores);
  if (!types.IsNull()) b.add_token_types(types);
  if (!merges.IsNull()) b.add_merges(merges);
  b.add_specials(specials_v);
  b.add_flags(flags_v);
  if (!chat.IsNull()) b.add_chat_template(chat);
  b.add_extra(extra_v);
  *tokenizer = b.Finish();
}

absl::StatusOr<std::vector<GgufKeyValue>> DecodeMetadata(const KvVector* metadata,
                                                         const kpkg::Tokenizer* tok) {
  std::vector<GgufKeyValue> out;
  auto decode_list = [&](const KvVector* list) -> absl::Status {
    if (list == nullptr) return absl::OkStatus();
    for (const kpkg::KeyValue* kv : *list) {
      absl::StatusOr<GgufValue> v = DecodeValue(*kv->value(), kv->key()->str());
      if (!v.ok()) return v.status();
      out.push_back({kv->key()->str(), std::move(*v)});
    }
    return absl::OkStatus();
  };
  if (absl::Status s = decode_list(metadata); !s.ok()) return s;
  if (tok == nullptr) return out;
  auto key = [](absl::string_view name) { return absl::StrCat(kTok, name); };
  auto strings = [](const flatbuffers::Vector<Offset<flatbuffers::String>>* v) {
    std::vector<std::string> s;
    s.reserve(v->size());
    for (const flatbuffers::String* e : *v) s.push_back(e->str());
    return s;
  };
  if (tok->model()) out.push_back({key("model"), GgufValue::String(tok->model()->str())});
  if (tok->pre()) out.push_back({key("pre"), GgufValue::String(tok->pre()->str())});
  if (tok->tokens()) out.push_back({key("tokens"), GgufValue::StringArray(strings(tok->tokens()))});
  if (tok->scores()) {
    out.push_back({key("scores"), GgufValue::F32Array(absl::MakeConstSpan(
                                      tok->scores()->data(), tok->scores()->size()))});
  }
  if (tok->token_types()) {
    out.push_back({key("token_type"), GgufValue::I32Array(absl::MakeConstSpan(
                                          tok->token_types()->data(), tok->token_types()->size()))});
  }
  if (tok->merges()) out.push_back({key("merges"), GgufValue::StringArray(strings(tok->merges()))});
  if (tok->specials()) {
    for (const kpkg::SpecialToken* s : *tok->specials()) {
      if (s->id() < 0) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "tokenizer special token '%s' has id %d", s->name()->str(), s->id()));
      }
      out.push_back({key(absl::StrCat(s->name()->str(), kTokenIdSuffix)),
                     GgufValue::U32(static_cast<uint32_t>(s->id()))});
    }
  }
  if (tok->flags()) {
    for (const kpkg::TokenizerFlag* f : *tok->flags()) {
      out.push_back({key(f->name()->str()), GgufValue::Bool(f->value())});
    }
  }
  if (tok->chat_template()) {
    out.push_back({kChatTemplate, GgufValue::String(tok->chat_template()->str())});
  }
  if (absl::Status s = decode_list(tok->extra()); !s.ok()) return s;
  return out;
}

}  // namespace runtime
}  // namespace kestrel
