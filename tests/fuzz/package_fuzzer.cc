// Fuzz target: the .kpkg package reader (runtime/package/package_reader.h): the container header,
// the FlatBuffers Verifier on the manifest and Kestrel's own checks of every section, tensor and
// prepared-weight range; then, on a package it accepts, the model and the draft opened as a model
// far enough to use their tables: every metadata getter, every tensor's first and last byte, the
// tokenizer, the architecture seam up to a plan (tests/fuzz/gguf_checks.h), every prepared blob,
// and the data checksums (VerifyData).
//
// Input: a flags byte, then the package. Flags bit 0: reseal (the manifest checksum, total size
// and header checksum recomputed after the unsealed bytes were tried, so that mutations of the
// manifest reach the Verifier and the range checks); bit 1: squeezed (the zero bytes between the
// manifest and the first 64 KiB-aligned section are left out of the input and put back here;
// tests/fuzz/container_reseal.h). Seeds (fuzz_seeds.cc): packages that the package writer packed
// from toy-size llama models with stories260K's metadata and vocab (dense, MoE as a draft, a
// prepared-weight set) and from kestrel-synth's tiny models.
//
// Invariants: a refusal is INVALID_ARGUMENT, DATA_LOSS or UNIMPLEMENTED (RESOURCE_EXHAUSTED for
// an allocation) whose message starts with the package's name; an accepted package has its
// sections, tensors and prepared blobs inside the file, each model's tensors inside its data
// section; VerifyData is OK or DATA_LOSS naming a section.
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "runtime/gguf/file_image.h"
#include "runtime/package/package_reader.h"
#include "tests/fuzz/container_reseal.h"
#include "tests/fuzz/gguf_checks.h"

namespace {

using kestrel::runtime::FileImage;
using kestrel::runtime::GgufFile;
using kestrel::runtime::PackageModel;
using kestrel::runtime::PackageReader;
using kestrel::runtime::PackageSection;

constexpr char kWhat[] = "package 'fuzz.kpkg'";

void CheckSection(const PackageSection& s, uint64_t file_size, const char* name) {
  KESTREL_FUZZ_CHECK(s.offset <= file_size && s.size <= file_size - s.offset,
                     "%s [%llu, +%llu) outside the %llu-byte file", name,
                     static_cast<unsigned long long>(s.offset),
                     static_cast<unsigned long long>(s.size),
                     static_cast<unsigned long long>(file_size));
}

void CheckModel(const PackageReader& r, const PackageModel& m, const GgufFile& f) {
  const uint8_t* begin = r.image()->data();
  const uint64_t size = r.file_size();
  CheckSection(m.data, size, "data section");
  KESTREL_FUZZ_CHECK(f.data_offset() == m.data.offset, "the model's data starts at %llu, not at "
                     "its section's %llu", static_cast<unsigned long long>(f.data_offset()),
                     static_cast<unsigned long long>(m.data.offset));
  KESTREL_FUZZ_CHECK(f.tensors().size() == m.n_tensors, "%zu tensors, the manifest lists %u",
                     f.tensors().size(), m.n_tensors);
  for (const auto& t : f.tensors()) {
    KESTREL_FUZZ_CHECK(t.offset_in_data <= m.data.size && t.size_bytes <= m.data.size - t.offset_in_data,
                       "tensor '%s' outside its model's data section", t.name.c_str());
  }
  for (const auto& p : m.prepared) {
    CheckSection(p.section, size, "prepared section");
    for (const auto& [name, blob] : p.weights) {
      KESTREL_FUZZ_CHECK(blob.data >= begin + p.section.offset &&
                             blob.data + blob.size <= begin + p.section.offset + p.section.size,
                         "prepared weight '%s' outside its section", name.c_str());
      if (blob.size == 0) continue;
      volatile uint8_t first = blob.data[0];
      volatile uint8_t last = blob.data[blob.size - 1];
      (void)first;
      (void)last;
    }
    (void)m.FindPrepared(p.plugin, p.plugin_version, p.device_fingerprint);
  }
  kestrel::fuzz::TouchMetadata(f);
  kestrel::fuzz::TouchTensors(f);
  kestrel::fuzz::TouchTokenizer(f);
  kestrel::fuzz::CheckArchitectureSeam(f);
}

void Run(const std::string& bytes) {
  auto image = FileImage::Copy(bytes);
  KESTREL_FUZZ_CHECK(image.ok(), "copying the input: %s", image.status().ToString().c_str());
  auto r = PackageReader::FromImage(*image, kWhat);
  if (!r.ok()) {
    const absl::StatusCode c = r.status().code();
    KESTREL_FUZZ_CHECK(c == absl::StatusCode::kInvalidArgument || c == absl::StatusCode::kDataLoss ||
                           c == absl::StatusCode::kUnimplemented ||
                           c == absl::StatusCode::kResourceExhausted,
                       "undocumented status %s", r.status().ToString().c_str());
    KESTREL_FUZZ_CHECK(absl::StartsWith(r.status().message(), kWhat),
                       "refusal not naming the package: %s", r.status().ToString().c_str());
    return;
  }
  const PackageReader& reader = **r;
  auto model = reader.ModelFile();
  KESTREL_FUZZ_CHECK(model.ok(), "accepted, then its model does not open: %s",
                     model.status().ToString().c_str());
  CheckModel(reader, reader.model(), **model);
  if (reader.has_draft()) {
    auto draft = reader.DraftFile();
    KESTREL_FUZZ_CHECK(draft.ok(), "accepted, then its draft does not open: %s",
                       draft.status().ToString().c_str());
    CheckModel(reader, reader.draft(), **draft);
  }
  if (absl::Status s = reader.VerifyData(); !s.ok()) {
    KESTREL_FUZZ_CHECK(s.code() == absl::StatusCode::kDataLoss && absl::StartsWith(s.message(), kWhat),
                       "VerifyData: %s", s.ToString().c_str());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t flags = data[0];
  const absl::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  std::string bytes = (flags & 2) ? kestrel::fuzz::ExpandPackage(body) : std::string(body);
  Run(bytes);
  if (flags & 1) {
    const std::string unsealed = bytes;
    kestrel::fuzz::ResealContainer(&bytes);
    if (bytes != unsealed) Run(bytes);
  }
  return 0;
}
