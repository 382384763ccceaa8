#include "runtime/package/package_reader.h"

#include <cstring>

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/package/checksum.h"
#include "runtime/package/container.h"
#include "runtime/package/kpkg_generated.h"
#include "runtime/package/value_codec.h"

namespace kestrel {
namespace runtime {
namespace {

const kpkg::Package* Manifest(const uint8_t* p) { return kpkg::GetPackage(p); }

std::string Str(const flatbuffers::String* s) { return s == nullptr ? std::string() : s->str(); }

}  // namespace

const PreparedSet* PackageModel::FindPrepared(absl::string_view plugin, absl::string_view version,
                                              absl::string_view fingerprint) const {
  for (const PreparedSet& p : prepared) {
    if (p.plugin == plugin && p.plugin_version == version && p.device_fingerprint == fingerprint) {
      return &p;
    }
  }
  return nullptr;
}

bool PackageReader::IsPackage(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return false;
  char magic[4] = {};
  const size_t n = std::fread(magic, 1, sizeof magic, f);
  std::fclose(f);
  return HasMagic(magic, n, kPackageMagic);
}

absl::StatusOr<std::unique_ptr<PackageReader>> PackageReader::Open(const std::string& path,
                                                                   const PackageOpenOptions& options) {
  const std::string what = absl::StrCat("package '", path, "'");
  absl::StatusOr<std::shared_ptr<const FileImage>> image =
      FileImage::Open(path, options.use_mmap, absl::StrCat(what, ": "));
  if (!image.ok()) return image.status();
  return FromImage(std::move(*image), what);
}

absl::StatusOr<std::unique_ptr<PackageReader>> PackageReader::FromImage(
    std::shared_ptr<const FileImage> image, const std::string& what) {
  std::unique_ptr<PackageReader> r(new PackageReader());
  r->what_ = what;
  r->image_ = std::move(image);
  if (absl::Status s = r->Parse(); !s.ok()) return s;
  return r;
}

absl::Status PackageReader::Parse() {
  const uint8_t* base = image_->data();
  const uint64_t size = image_->size();
  absl::StatusOr<ContainerHeader> h =
      ReadContainerHeader(base, size, kPackageMagic, kPackageFormatMajor, what_);
  if (!h.ok()) return h.status();
  manifest_ = base + h->manifest_offset;
  manifest_end_ = h->manifest_offset + h->manifest_size;
  major_ = h->major;
  minor_ = h->minor;
  flatbuffers::Verifier verifier(manifest_, static_cast<size_t>(h->manifest_size),
                                 /*max_depth=*/64, /*max_tables=*/50'000'000);
  if (!kpkg::PackageBufferHasIdentifier(manifest_) || !kpkg::VerifyPackageBuffer(verifier)) {
    return absl::DataLossError(absl::StrCat(
        what_, ": the manifest is not a valid kpkg FlatBuffer (the FlatBuffers Verifier rejects it)"));
  }
  const kpkg::Package* pkg = Manifest(manifest_);
  if (pkg->format_major() != major_) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: the manifest says format version %u but the header says %u", what_,
        pkg->format_major(), major_));
  }
  producer_ = Str(pkg->producer());
  auto check_section = [&](const kpkg::Section* s, const std::string& name,
                           uint64_t align) -> absl::StatusOr<PackageSection> {
    if (s == nullptr) return absl::InvalidArgumentError(absl::StrCat(what_, ": ", name, " is missing"));
    PackageSection out{s->offset(), s->size(), s->checksum()};
    if (out.offset % align != 0 || out.offset < manifest_end_ || out.offset > size ||
        out.size > size - out.offset) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: %s [%u, +%u) is not a %u-aligned range after the manifest inside the %u-byte file",
          what_, name, out.offset, out.size, align, size));
    }
    return out;
  };
  auto read_model = [&](const kpkg::Model* m, const std::string& role,
                        PackageModel* out) -> absl::Status {
    out->role = m->role() ? m->role()->str() : role;
    out->architecture = Str(m->architecture());
    out->fingerprint = m->fingerprint();
    out->source_name = Str(m->source_name());
    out->source_size = m->source_size();
    out->n_tensors = m->tensors() ? m->tensors()->size() : 0;
    absl::StatusOr<PackageSection> data =
        check_section(m->data(), absl::StrCat(role, " data section"), kPackageSectionAlignment);
    if (!data.ok()) return data.status();
    out->data = *data;
    if (m->prepared() == nullptr) return absl::OkStatus();
    for (const kpkg::PreparedWeights* p : *m->prepared()) {
      PreparedSet set;
      set.plugin = p->plugin()->str();
      set.plugin_version = p->plugin_version()->str();
      set.device_fingerprint = p->device_fingerprint()->str();
      const std::string name = absl::StrCat(role, " prepared weights of plugin '", set.plugin, "'");
      absl::StatusOr<PackageSection> sec = check_section(p->data(), name, kPackageSectionAlignment);
      if (!sec.ok()) return sec.status();
      set.section = *sec;
      if (p->tensors() != nullptr) {
        for (const kpkg::PreparedTensor* t : *p->tensors()) {
          if (t->offset() % kPreparedAlignment != 0 || t->offset() > sec->size ||
              t->size() > sec->size - t->offset()) {
            return absl::InvalidArgumentError(absl::StrFormat(
                "%s: %s: weight '%s' [%u, +%u) lies outside its %u-byte section or is not "
                "64-aligned", what_, name, t->name()->str(), t->offset(), t->size(), sec->size));
          }
          PreparedSet::Blob blob{image_->data() + sec->offset + t->offset(), t->size()};
          if (!set.weights.emplace(t->name()->str(), blob).second) {
            return absl::InvalidArgumentError(absl::StrFormat(
                "%s: %s: weight '%s' appears twice", what_, name, t->name()->str()));
          }
        }
      }
      out->prepared.push_back(std::move(set));
    }
    return absl::OkStatus();
  };
  if (absl::Status s = read_model(pkg->model(), "main", &model_); !s.ok()) return s;
  if (pkg->draft() != nullptr) {
    has_draft_ = true;
    if (absl::Status s = read_model(pkg->draft(), "draft", &draft_); !s.ok()) return s;
  }
  // Build the views once, so a package whose tensor table or metadata is bad fails here.
  if (absl::StatusOr<std::unique_ptr<GgufFile>> f = File(false); !f.ok()) return f.status();
  if (has_draft_) {
    if (absl::StatusOr<std::unique_ptr<GgufFile>> f = File(true); !f.ok()) return f.status();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<GgufFile>> PackageReader::DraftFile() const {
  if (!has_draft_) return absl::NotFoundError(absl::StrCat(what_, ": the package has no draft model"));
  return File(true);
}

absl::StatusOr<std::unique_ptr<GgufFile>> PackageReader::File(bool draft) const {
  const kpkg::Package* pkg = Manifest(manifest_);
  const kpkg::Model* m = draft ? pkg->draft() : pkg->model();
  const PackageModel& pm = draft ? draft_ : model_;
  const std::string prefix = absl::StrCat(what_, ": ", pm.role, " model: ");
  auto fail = [&](const absl::Status& s) {
    return absl::Status(s.code(), absl::StrCat(prefix, s.message()));
  };
  absl::StatusOr<std::vector<GgufKeyValue>> kvs = DecodeMetadata(m->metadata(), m->tokenizer());
  if (!kvs.ok()) return fail(kvs.status());
  std::vector<GgufTensorInfo> tensors;
  std::vector<uint32_t> types;
  std::vector<uint64_t> sizes;
  if (m->tensors() != nullptr) {
    tensors.reserve(m->tensors()->size());
    for (const kpkg::Tensor* t : *m->tensors()) {
      GgufTensorInfo info;
      info.name = t->name()->str();
      if (t->dims() != nullptr) {
        // The FlatBuffers Verifier checks only a vector's 4-byte length field for alignment, so
        // a crafted manifest can put these uint64 elements at a 4-byte boundary (found by
        // package_fuzzer): copy them bytewise instead of loading them as uint64.
        info.dims.resize(t->dims()->size());
        if (!info.dims.empty()) {
          std::memcpy(info.dims.data(), t->dims()->Data(), info.dims.size() * sizeof(uint64_t));
        }
      }
      info.offset_in_data = t->offset();
      tensors.push_back(std::move(info));
      types.push_back(t->ggml_type());
      sizes.push_back(t->size());
    }
  }
  absl::StatusOr<std::unique_ptr<GgufFile>> file =
      GgufFile::FromParts(image_, pm.data.offset, pm.data.size, m->alignment(), std::move(*kvs),
                          std::move(tensors), types);
  if (!file.ok()) return fail(file.status());
  for (size_t i = 0; i < sizes.size(); ++i) {
    const GgufTensorInfo& t = (*file)->tensors()[i];
    if (t.size_bytes != sizes[i]) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%stensor '%s': the manifest says %u bytes, its type and dims make %u", prefix, t.name,
          sizes[i], t.size_bytes));
    }
  }
  return file;
}

absl::Status PackageReader::VerifyData() const {
  auto check = [&](const PackageSection& s, const std::string& name) -> absl::Status {
    if (Xxh64Of(image_->data() + s.offset, static_cast<size_t>(s.size)) != s.checksum) {
      return absl::DataLossError(absl::StrFormat(
          "%s: %s [%u, +%u): checksum mismatch (the data is damaged)", what_, name, s.offset, s.size));
    }
    return absl::OkStatus();
  };
  for (const PackageModel* m : {&model_, has_draft_ ? &draft_ : nullptr}) {
    if (m == nullptr) continue;
    if (absl::Status s = check(m->data, absl::StrCat(m->role, " data section")); !s.ok()) return s;
    for (const PreparedSet& p : m->prepared) {
      if (absl::Status s = check(p.section, absl::StrCat(m->role, " prepared weights of plugin '",
                                                           p.plugin, "'"));
          !s.ok()) {
        return s;
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace runtime
}  // namespace kestrel
