#include "runtime/package/session_state_format.h"

#include <cstring>

#include "absl/strings/str_format.h"
#include "runtime/package/checksum.h"
#include "runtime/package/container.h"
#include "runtime/package/kstate_generated.h"

namespace kestrel {
namespace runtime {
namespace {

constexpr uint64_t kDataAlignment = 64;
constexpr char kWhat[] = "session state";
constexpr char kProducer[] = "kestrel";

absl::Status Bad(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrFormat("%s: %s", kWhat, what));
}

}  // namespace

SessionStateEncoder::SessionStateEncoder(SessionStateMeta meta) : meta_(std::move(meta)) {
  manifest_size_ = Manifest(0).size();
  data_offset_ = AlignUp(kContainerHeaderSize + manifest_size_, kDataAlignment);
  uint64_t pos = data_offset_;
  for (KvLayerLayout& l : meta_.layers) {
    l.k_offset = pos;
    pos = AlignUp(pos + l.bytes, kDataAlignment);
    l.v_offset = pos;
    pos = AlignUp(pos + l.bytes, kDataAlignment);
  }
  total_ = pos;
}

std::string SessionStateEncoder::Manifest(uint64_t data_checksum) const {
  flatbuffers::FlatBufferBuilder fbb(4096);
  fbb.ForceDefaults(true);
  const SamplerStateFields& s = meta_.sampler;
  auto sampler = kstate::CreateSamplerState(fbb, s.temperature, s.top_k, s.top_p, s.min_p,
                                            s.repetition_penalty, s.repetition_window, s.seed,
                                            fbb.CreateString(s.rng), fbb.CreateVector(s.window));
  std::vector<flatbuffers::Offset<kstate::KvLayer>> layers;
  for (const KvLayerLayout& l : meta_.layers) {
    layers.push_back(kstate::CreateKvLayer(fbb, l.first_position, l.n_positions,
                                           l.k_offset - data_offset_, l.v_offset - data_offset_,
                                           l.bytes));
  }
  auto root = kstate::CreateSessionState(
      fbb, kStateFormatMajor, kStateFormatMinor, fbb.CreateString(kProducer),
      meta_.model_fingerprint, fbb.CreateString(meta_.model_architecture), meta_.n_vocab,
      meta_.n_layers, meta_.n_kv_heads, meta_.head_dim, meta_.kv_dtype, meta_.context_length,
      fbb.CreateVector(meta_.tokens), fbb.CreateVector(meta_.pending),
      fbb.CreateVector(meta_.logits), sampler, fbb.CreateVector(layers), data_offset_,
      total_ - data_offset_, data_checksum);
  kstate::FinishSessionStateBuffer(fbb, root);
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
}

void SessionStateEncoder::Seal(uint8_t* out) const {
  // Zero the padding between and after the layers so the checksum covers defined bytes.
  uint64_t pos = data_offset_;
  for (const KvLayerLayout& l : meta_.layers) {
    std::memset(out + pos, 0, l.k_offset - pos);
    std::memset(out + l.k_offset + l.bytes, 0, l.v_offset - l.k_offset - l.bytes);
    pos = l.v_offset + l.bytes;
  }
  std::memset(out + pos, 0, total_ - pos);
  const uint64_t checksum = Xxh64Of(out + data_offset_, total_ - data_offset_);
  const std::string manifest = Manifest(checksum);
  std::memset(out + kContainerHeaderSize, 0, data_offset_ - kContainerHeaderSize);
  std::memcpy(out + kContainerHeaderSize, manifest.data(), manifest.size());
  ContainerHeader h;
  std::memcpy(h.magic, kStateMagic, 4);
  h.major = kStateFormatMajor;
  h.minor = kStateFormatMinor;
  h.manifest_size = manifest.size();
  h.manifest_checksum = Xxh64Of(manifest.data(), manifest.size());
  h.total_size = total_;
  const std::string header = EncodeContainerHeader(h);
  std::memcpy(out, header.data(), header.size());
}

absl::StatusOr<SessionStateMeta> DecodeSessionState(const uint8_t* data, uint64_t size) {
  absl::StatusOr<ContainerHeader> h =
      ReadContainerHeader(data, size, kStateMagic, kStateFormatMajor, kWhat);
  if (!h.ok()) return h.status();
  const uint8_t* manifest = data + h->manifest_offset;
  flatbuffers::Verifier verifier(manifest, static_cast<size_t>(h->manifest_size), 64, 1'000'000);
  if (!kstate::SessionStateBufferHasIdentifier(manifest) ||
      !kstate::VerifySessionStateBuffer(verifier)) {
    return absl::DataLossError(absl::StrFormat(
        "%s: the manifest is not a valid kstate FlatBuffer (the FlatBuffers Verifier rejects it)",
        kWhat));
  }
  const kstate::SessionState* s = kstate::GetSessionState(manifest);
  if (s->format_major() != h->major) {
    return Bad(absl::StrFormat("the manifest says format version %u, the header %u",
                               s->format_major(), h->major));
  }
  const uint64_t manifest_end = h->manifest_offset + h->manifest_size;
  if (s->data_offset() < manifest_end || s->data_offset() > size ||
      s->data_size() != size - s->data_offset()) {
    return Bad(absl::StrFormat("data section [%u, +%u) does not end the %u-byte state",
                               s->data_offset(), s->data_size(), size));
  }
  for (uint64_t i = manifest_end; i < s->data_offset(); ++i) {
    if (data[i] != 0) {
      return absl::DataLossError(
          absl::StrFormat("%s: padding byte %u after the manifest is not zero (damaged)", kWhat, i));
    }
  }
  if (Xxh64Of(data + s->data_offset(), s->data_size()) != s->data_checksum()) {
    return absl::DataLossError(absl::StrFormat(
        "%s: data checksum mismatch (the KV cache bytes are damaged)", kWhat));
  }
  SessionStateMeta m;
  m.model_fingerprint = s->model_fingerprint();
  if (s->model_architecture()) m.model_architecture = s->model_architecture()->str();
  m.n_vocab = s->n_vocab();
  m.n_layers = s->n_layers();
  m.n_kv_heads = s->n_kv_heads();
  m.head_dim = s->head_dim();
  m.kv_dtype = s->kv_dtype();
  m.context_length = s->context_length();
  if (s->tokens()) m.tokens.assign(s->tokens()->begin(), s->tokens()->end());
  if (s->pending()) m.pending.assign(s->pending()->begin(), s->pending()->end());
  if (s->logits()) m.logits.assign(s->logits()->begin(), s->logits()->end());
  const kstate::SamplerState* ss = s->sampler();
  m.sampler.temperature = ss->temperature();
  m.sampler.top_k = ss->top_k();
  m.sampler.top_p = ss->top_p();
  m.sampler.min_p = ss->min_p();
  m.sampler.repetition_penalty = ss->repetition_penalty();
  m.sampler.repetition_window = ss->repetition_window();
  m.sampler.seed = ss->seed();
  if (ss->rng()) m.sampler.rng = ss->rng()->str();
  if (ss->window()) m.sampler.window.assign(ss->window()->begin(), ss->window()->end());
  if (s->layers()) {
    for (const kstate::KvLayer* l : *s->layers()) {
      KvLayerLayout k;
      k.first_position = l->first_position();
      k.n_positions = l->n_positions();
      k.bytes = l->bytes();
      const uint64_t ds = s->data_size();
      if (l->k_offset() > ds || k.bytes > ds - l->k_offset() || l->v_offset() > ds ||
          k.bytes > ds - l->v_offset()) {
        return Bad(absl::StrFormat("layer %u: K at %u or V at %u (+%u bytes) lies outside the "
                                   "%u-byte data section",
                                   m.layers.size(), l->k_offset(), l->v_offset(), k.bytes, ds));
      }
      k.k_offset = s->data_offset() + l->k_offset();
      k.v_offset = s->data_offset() + l->v_offset();
      m.layers.push_back(k);
    }
  }
  return m;
}

}  // namespace runtime
}  // namespace kestrel
