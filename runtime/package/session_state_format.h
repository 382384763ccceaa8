// runtime/package/session_state_format.h: the bytes of a session state (.kstate, kstate.fbs in the
// container of container.h): what one sequence needs to continue in a new process. The encoder
// lays the state out first so the caller can read the KV cache straight into its final place (a
// caller's buffer or the file image), then seals it (data checksum, manifest, header). The
// decoder checks everything (header and manifest checksums, the FlatBuffers Verifier, the data
// checksum, every layer's range and size) before returning views into the bytes.
#ifndef KESTREL_RUNTIME_PACKAGE_SESSION_STATE_FORMAT_H_
#define KESTREL_RUNTIME_PACKAGE_SESSION_STATE_FORMAT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace kestrel {
namespace runtime {

constexpr char kStateMagic[] = "KSTA";
constexpr uint16_t kStateFormatMajor = 1;
constexpr uint16_t kStateFormatMinor = 0;

struct SamplerStateFields {
  float temperature = 0, top_p = 1, min_p = 0, repetition_penalty = 1;
  int32_t top_k = 0, repetition_window = 0;
  uint64_t seed = 0;
  std::string rng;              // std::mt19937_64 state, standard text form
  std::vector<int32_t> window;  // oldest first
};

// One layer's K and V rows for positions [first_position, first_position + n_positions).
struct KvLayerLayout {
  uint32_t first_position = 0, n_positions = 0;
  uint64_t bytes = 0;     // of K, and of V
  uint64_t k_offset = 0;  // from the start of the state (filled by the encoder / decoder)
  uint64_t v_offset = 0;
};

struct SessionStateMeta {
  uint64_t model_fingerprint = 0;
  std::string model_architecture;
  uint32_t n_vocab = 0, n_layers = 0, n_kv_heads = 0, head_dim = 0, kv_dtype = 0;
  uint32_t context_length = 0;
  std::vector<int32_t> tokens, pending;
  std::vector<float> logits;
  SamplerStateFields sampler;
  std::vector<KvLayerLayout> layers;
};

class SessionStateEncoder {
 public:
  // Lays out `meta` (layer sizes set, offsets filled here).
  explicit SessionStateEncoder(SessionStateMeta meta);
  uint64_t total_size() const { return total_; }
  // Where layer i's K and V rows go, from the start of the output.
  const KvLayerLayout& layer(size_t i) const { return meta_.layers[i]; }
  // `out` holds total_size() bytes with every layer's K and V rows in place: writes the padding,
  // the data checksum, the manifest and the header.
  void Seal(uint8_t* out) const;

 private:
  std::string Manifest(uint64_t data_checksum) const;
  SessionStateMeta meta_;
  uint64_t manifest_size_ = 0, data_offset_ = 0, total_ = 0;
};

// The decoded state: metadata plus the layer offsets into `data` (which must outlive the use).
absl::StatusOr<SessionStateMeta> DecodeSessionState(const uint8_t* data, uint64_t size);

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_PACKAGE_SESSION_STATE_FORMAT_H_
