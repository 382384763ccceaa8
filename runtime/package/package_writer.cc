#include "runtime/package/package_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/package/checksum.h"
#include "runtime/package/container.h"
#include "runtime/package/kpkg_generated.h"
#include "runtime/package/package_reader.h"
#include "runtime/package/value_codec.h"

namespace kestrel {
namespace runtime {
namespace {

constexpr uint32_t kTensorAlignment = 64;
constexpr char kProducer[] = "kestrel";

struct SectionLayout {
  uint64_t offset = 0, size = 0, checksum = 0;
};

struct PreparedLayout {
  SectionLayout section;
  std::vector<uint64_t> offsets, sizes;
};

struct ModelLayout {
  SectionLayout data;
  std::vector<uint64_t> tensor_offsets;
  std::vector<PreparedLayout> prepared;
};

// Positional writes with errno-named failures.
class OutFile {
 public:
  explicit OutFile(std::string path) : path_(std::move(path)) {}
  ~OutFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  absl::Status Open() {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) return absl::ErrnoToStatus(errno, absl::StrCat("cannot create '", path_, "'"));
    return absl::OkStatus();
  }
  absl::Status WriteAt(uint64_t pos, const void* data, uint64_t size) {
    const uint8_t* p = static_cast<const uint8_t*>(data);
    while (size > 0) {
      const ssize_t n = ::pwrite(fd_, p, static_cast<size_t>(std::min<uint64_t>(size, 1u << 30)),
                                 static_cast<off_t>(pos));
      if (n < 0) {
        if (errno == EINTR) continue;
        return absl::ErrnoToStatus(errno, absl::StrCat("writing '", path_, "' at offset ", pos));
      }
      p += n;
      pos += static_cast<uint64_t>(n);
      size -= static_cast<uint64_t>(n);
    }
    return absl::OkStatus();
  }
  absl::Status Finish(uint64_t total) {
    if (::ftruncate(fd_, static_cast<off_t>(total)) != 0) {
      return absl::ErrnoToStatus(errno, absl::StrCat("truncating '", path_, "'"));
    }
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) return absl::ErrnoToStatus(errno, absl::StrCat("closing '", path_, "'"));
    return absl::OkStatus();
  }

 private:
  std::string path_;
  int fd_ = -1;
};

// Writes `size` bytes at the section cursor, hashing them and the zero padding before them.
class SectionWriter {
 public:
  SectionWriter(OutFile* out, uint64_t offset) : out_(out), offset_(offset) {}
  absl::Status Append(const void* data, uint64_t size, uint64_t align, uint64_t* at) {
    static const uint8_t kZeros[64] = {};
    const uint64_t start = AlignUp(pos_, align);
    while (pos_ < start) {
      const uint64_t n = std::min<uint64_t>(start - pos_, sizeof kZeros);
      hash_.Update(kZeros, static_cast<size_t>(n));
      if (absl::Status s = out_->WriteAt(offset_ + pos_, kZeros, n); !s.ok()) return s;
      pos_ += n;
    }
    *at = pos_;
    const uint8_t* p = static_cast<const uint8_t*>(data);
    for (uint64_t done = 0; done < size;) {  // hash in chunks to stay in cache
      const uint64_t n = std::min<uint64_t>(size - done, 1u << 22);
      hash_.Update(p + done, static_cast<size_t>(n));
      done += n;
    }
    if (absl::Status s = out_->WriteAt(offset_ + pos_, data, size); !s.ok()) return s;
    pos_ += size;
    return absl::OkStatus();
  }
  SectionLayout Done() const { return {offset_, pos_, hash_.Digest()}; }

 private:
  OutFile* out_;
  uint64_t offset_;
  uint64_t pos_ = 0;
  Xxh64 hash_;
};

ModelLayout PlanTensors(const GgufFile& f) {
  ModelLayout l;
  uint64_t pos = 0;
  for (const GgufTensorInfo& t : f.tensors()) {
    pos = AlignUp(pos, kTensorAlignment);
    l.tensor_offsets.push_back(pos);
    pos += t.size_bytes;
  }
  l.data.size = pos;
  return l;
}

flatbuffers::Offset<kpkg::Section> MakeSection(flatbuffers::FlatBufferBuilder& fbb,
                                               const SectionLayout& s) {
  return kpkg::CreateSection(fbb, s.offset, s.size, s.checksum);
}

flatbuffers::Offset<kpkg::Model> BuildModel(flatbuffers::FlatBufferBuilder& fbb,
                                            const PackageModelSource& src, const ModelLayout& l) {
  const GgufFile& f = *src.file;
  flatbuffers::Offset<flatbuffers::Vector<flatbuffers::Offset<kpkg::KeyValue>>> metadata;
  flatbuffers::Offset<kpkg::Tokenizer> tokenizer;
  EncodeMetadata(fbb, f.metadata(), &metadata, &tokenizer);
  std::vector<flatbuffers::Offset<kpkg::Tensor>> tensors;
  for (size_t i = 0; i < f.tensors().size(); ++i) {
    const GgufTensorInfo& t = f.tensors()[i];
    tensors.push_back(kpkg::CreateTensor(fbb, fbb.CreateString(t.name),
                                         static_cast<uint32_t>(t.type), fbb.CreateVector(t.dims),
                                         l.tensor_offsets[i], t.size_bytes));
  }
  std::vector<flatbuffers::Offset<kpkg::PreparedWeights>> prepared;
  for (size_t p = 0; p < src.prepared.size(); ++p) {
    const PreparedExport& e = src.prepared[p];
    const PreparedLayout& pl = l.prepared[p];
    std::vector<flatbuffers::Offset<kpkg::PreparedTensor>> blobs;
    for (size_t i = 0; i < e.weight_names.size(); ++i) {
      blobs.push_back(kpkg::CreatePreparedTensor(fbb, fbb.CreateString(e.weight_names[i]),
                                                 pl.offsets[i], pl.sizes[i]));
    }
    prepared.push_back(kpkg::CreatePreparedWeights(
        fbb, fbb.CreateString(e.plugin), fbb.CreateString(e.plugin_version),
        fbb.CreateString(e.device_fingerprint), MakeSection(fbb, pl.section), fbb.CreateVector(blobs)));
  }
  std::string arch;
  if (absl::StatusOr<std::string> a = f.GetString("general.architecture"); a.ok()) arch = *a;
  return kpkg::CreateModel(fbb, fbb.CreateString(src.role), fbb.CreateString(arch), src.fingerprint,
                           fbb.CreateString(src.source_name), src.source_size, metadata, tokenizer,
                           kTensorAlignment, fbb.CreateVector(tensors), MakeSection(fbb, l.data),
                           fbb.CreateVector(prepared));
}

// The manifest for these layouts. Every scalar is written (force_defaults), so its size depends
// only on the structure, not on the offsets and checksums: the writer sizes it before the data
// exists and fills it in afterwards.
std::string BuildManifest(const PackageModelSource& model, const ModelLayout& ml,
                          const PackageModelSource* draft, const ModelLayout& dl) {
  flatbuffers::FlatBufferBuilder fbb(1 << 16);
  fbb.ForceDefaults(true);
  auto m = BuildModel(fbb, model, ml);
  flatbuffers::Offset<kpkg::Model> d;
  if (draft != nullptr) d = BuildModel(fbb, *draft, dl);
  auto producer = fbb.CreateString(kProducer);
  kpkg::PackageBuilder b(fbb);
  b.add_format_major(kPackageFormatMajor);
  b.add_format_minor(kPackageFormatMinor);
  b.add_producer(producer);
  b.add_model(m);
  if (draft != nullptr) b.add_draft(d);
  kpkg::FinishPackageBuffer(fbb, b.Finish());
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
}

absl::Status WriteTensors(OutFile& out, const GgufFile& f, ModelLayout* l, uint64_t* cursor,
                          const std::function<absl::Status(uint64_t)>& advance) {
  SectionWriter w(&out, *cursor);
  for (size_t i = 0; i < f.tensors().size(); ++i) {
    const GgufTensorInfo& t = f.tensors()[i];
    uint64_t at = 0;
    if (absl::Status s = w.Append(f.TensorData(t), t.size_bytes, kTensorAlignment, &at); !s.ok()) {
      return s;
    }
    if (at != l->tensor_offsets[i]) return absl::InternalError("package tensor layout drifted");
    f.ReleaseResidentRange(f.TensorData(t), t.size_bytes);
    if (absl::Status s = advance(t.size_bytes); !s.ok()) return s;
  }
  l->data = w.Done();
  *cursor = AlignUp(l->data.offset + l->data.size, kPackageSectionAlignment);
  return absl::OkStatus();
}

absl::Status WritePrepared(OutFile& out, const PreparedExport& e, PreparedLayout* pl,
                           uint64_t* cursor) {
  SectionWriter w(&out, *cursor);
  for (size_t i = 0; i < e.weight_names.size(); ++i) {
    absl::StatusOr<std::vector<uint8_t>> blob = e.export_weight(i);
    if (!blob.ok()) return blob.status();
    uint64_t at = 0;
    if (absl::Status s = w.Append(blob->data(), blob->size(), kPreparedAlignment, &at); !s.ok()) {
      return s;
    }
    pl->offsets[i] = at;
    pl->sizes[i] = blob->size();
  }
  pl->section = w.Done();
  *cursor = AlignUp(pl->section.offset + pl->section.size, kPackageSectionAlignment);
  return absl::OkStatus();
}

}  // namespace

absl::Status WritePackage(const std::string& path, const PackageModelSource& model,
                          const PackageModelSource* draft,
                          const std::function<absl::Status(float)>& progress) {
  std::vector<const PackageModelSource*> sources = {&model};
  if (draft != nullptr) sources.push_back(draft);
  std::vector<ModelLayout> layouts;
  uint64_t total_bytes = 0, done_bytes = 0;
  for (const PackageModelSource* s : sources) {
    if (s->file == nullptr) return absl::InvalidArgumentError("package source has no GGUF");
    layouts.push_back(PlanTensors(*s->file));
    total_bytes += layouts.back().data.size;
    for (const PreparedExport& e : s->prepared) {
      PreparedLayout pl;
      pl.offsets.assign(e.weight_names.size(), 0);
      pl.sizes.assign(e.weight_names.size(), 0);
      layouts.back().prepared.push_back(std::move(pl));
      total_bytes += layouts.back().data.size;  // about as large as the weights
    }
  }
  ModelLayout none;
  const size_t manifest_size =
      BuildManifest(model, layouts[0], draft, draft ? layouts[1] : none).size();
  const uint64_t data_start = AlignUp(kContainerHeaderSize + manifest_size, kPackageSectionAlignment);

  const std::string tmp = path + ".tmp";
  OutFile out(tmp);
  if (absl::Status s = out.Open(); !s.ok()) return s;
  auto fail = [&](const absl::Status& s) {
    std::remove(tmp.c_str());
    return s;
  };
  auto advance = [&](uint64_t n) -> absl::Status {
    done_bytes += n;
    if (!progress) return absl::OkStatus();
    return progress(total_bytes ? static_cast<float>(done_bytes) / total_bytes : 1.0f);
  };
  uint64_t cursor = data_start;
  for (size_t m = 0; m < sources.size(); ++m) {
    if (absl::Status s = WriteTensors(out, *sources[m]->file, &layouts[m], &cursor, advance); !s.ok()) {
      return fail(s);
    }
  }
  for (size_t m = 0; m < sources.size(); ++m) {
    for (size_t p = 0; p < sources[m]->prepared.size(); ++p) {
      if (absl::Status s = WritePrepared(out, sources[m]->prepared[p], &layouts[m].prepared[p], &cursor);
          !s.ok()) {
        return fail(s);
      }
      if (absl::Status s = advance(layouts[m].data.size); !s.ok()) return fail(s);
    }
  }
  uint64_t total = data_start;
  for (const ModelLayout& l : layouts) {
    total = std::max(total, l.data.offset + l.data.size);
    for (const PreparedLayout& p : l.prepared) total = std::max(total, p.section.offset + p.section.size);
  }
  const std::string manifest = BuildManifest(model, layouts[0], draft, draft ? layouts[1] : none);
  if (manifest.size() != manifest_size) {
    return fail(absl::InternalError(absl::StrFormat(
        "package manifest changed size from %u to %u bytes", manifest_size, manifest.size())));
  }
  ContainerHeader h;
  std::memcpy(h.magic, kPackageMagic, 4);
  h.major = kPackageFormatMajor;
  h.minor = kPackageFormatMinor;
  h.manifest_size = manifest.size();
  h.manifest_checksum = Xxh64Of(manifest.data(), manifest.size());
  h.total_size = total;
  const std::string header = EncodeContainerHeader(h);
  if (absl::Status s = out.WriteAt(0, header.data(), header.size()); !s.ok()) return fail(s);
  if (absl::Status s = out.WriteAt(kContainerHeaderSize, manifest.data(), manifest.size()); !s.ok()) {
    return fail(s);
  }
  if (absl::Status s = out.Finish(total); !s.ok()) return fail(s);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return fail(absl::ErrnoToStatus(errno, absl::StrCat("renaming '", tmp, "' to '", path, "'")));
  }
  return absl::OkStatus();
}

}  // namespace runtime
}  // namespace kestrel
