// C boundary of the .kpkg package calls (api/include/kestrel/package.h).
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "api/src/c_api_internal.h"
#include "kestrel/package.h"
#include "runtime/model/model_packer.h"
#include "runtime/package/package_reader.h"

using kestrel::api::Guard;
using kestrel::api::NullArgument;

namespace {

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += absl::StrFormat("\\u%04x", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

std::string SectionJson(const kestrel::runtime::PackageSection& s) {
  return absl::StrFormat("{\"offset\":%u,\"size\":%u,\"checksum\":\"%016x\"}", s.offset, s.size,
                         s.checksum);
}

std::string ModelJson(const kestrel::runtime::PackageModel& m) {
  std::string prepared;
  for (const kestrel::runtime::PreparedSet& p : m.prepared) {
    absl::StrAppend(&prepared, prepared.empty() ? "" : ",", "{\"plugin\":", JsonString(p.plugin),
                    ",\"plugin_version\":", JsonString(p.plugin_version),
                    ",\"device_fingerprint\":", JsonString(p.device_fingerprint),
                    ",\"section\":", SectionJson(p.section), ",\"n_weights\":", p.weights.size(), "}");
  }
  return absl::StrCat("{\"role\":", JsonString(m.role), ",\"architecture\":", JsonString(m.architecture),
                      ",\"fingerprint\":\"", absl::StrFormat("%016x", m.fingerprint),
                      "\",\"source\":", JsonString(m.source_name), ",\"source_size\":", m.source_size,
                      ",\"n_tensors\":", m.n_tensors, ",\"data\":", SectionJson(m.data),
                      ",\"prepared\":[", prepared, "]}");
}

}  // namespace

KESTREL_API void kestrel_pack_options_init_sized(kestrel_pack_options_t* out, size_t struct_size) {
  kestrel::api::InitOptions(out, struct_size, [](kestrel_pack_options_t&) {});
}

KESTREL_API kestrel_status_t* kestrel_package_write(kestrel_runtime_t* runtime,
                                                    const char* model_path,
                                                    const char* output_path,
                                                    const kestrel_pack_options_t* options) {
  return Guard("kestrel_package_write", [&]() -> absl::Status {
    constexpr const char* fn = "kestrel_package_write";
    if (runtime == nullptr) return NullArgument(fn, "runtime");
    if (model_path == nullptr) return NullArgument(fn, "model_path");
    if (output_path == nullptr) return NullArgument(fn, "output_path");
    kestrel_pack_options_t o;
    kestrel_pack_options_init(&o);
    if (auto s = kestrel::api::ReadOptions(fn, "options", options, KESTREL_PACK_OPTIONS_MIN_SIZE, &o);
        !s.ok()) {
      return s;
    }
    if (o.devices == nullptr && o.n_devices > 0) return NullArgument(fn, "options->devices");
    kestrel::runtime::PackOptions po;
    po.model_path = model_path;
    po.output_path = output_path;
    if (o.draft_path != nullptr) po.draft_path = o.draft_path;
    for (size_t i = 0; i < o.n_devices; ++i) {
      if (o.devices[i] == nullptr) {
        return absl::InvalidArgumentError(absl::StrFormat("%s: options->devices[%u] is NULL", fn, i));
      }
      absl::StatusOr<kestrel::hal::Device*> d = runtime->state->registry->FindDevice(o.devices[i]);
      if (!d.ok()) return d.status();
      po.devices.push_back(*d);
    }
    if (o.progress_callback != nullptr) {
      po.progress = [&o](float f) { return o.progress_callback(o.progress_user_data, f); };
    }
    runtime->state->Log(KESTREL_LOG_INFO,
                        absl::StrCat("packing '", po.model_path, "' into '", po.output_path, "'"));
    return kestrel::runtime::PackModel(po);
  });
}

KESTREL_API kestrel_status_t* kestrel_package_describe(const char* path, bool verify_checksums,
                                                       char* out_json, size_t capacity,
                                                       size_t* out_required) {
  return Guard("kestrel_package_describe", [&]() -> absl::Status {
    constexpr const char* fn = "kestrel_package_describe";
    if (path == nullptr) return NullArgument(fn, "path");
    absl::StatusOr<std::unique_ptr<kestrel::runtime::PackageReader>> r =
        kestrel::runtime::PackageReader::Open(path);
    if (!r.ok()) return r.status();
    if (verify_checksums) {
      if (absl::Status s = (*r)->VerifyData(); !s.ok()) return s;
    }
    const std::string json = absl::StrCat(
        "{\"format_version\":\"", (*r)->format_major(), ".", (*r)->format_minor(),
        "\",\"producer\":", JsonString((*r)->producer()), ",\"file_size\":", (*r)->file_size(),
        ",\"checksums_verified\":", verify_checksums ? "true" : "false",
        ",\"model\":", ModelJson((*r)->model()),
        ",\"draft\":", (*r)->has_draft() ? ModelJson((*r)->draft()) : "null", "}");
    return kestrel::api::CopyOut(fn, "out_json", json.data(), json.size(), out_json, capacity,
                                 out_required);
  });
}

KESTREL_API kestrel_status_t* kestrel_model_weight_sources(const kestrel_model_t* model,
                                                           uint32_t* out_imported,
                                                           uint32_t* out_prepared) {
  return Guard("kestrel_model_weight_sources", [&]() -> absl::Status {
    constexpr const char* fn = "kestrel_model_weight_sources";
    if (model == nullptr) return NullArgument(fn, "model");
    if (out_imported == nullptr) return NullArgument(fn, "out_imported");
    if (out_prepared == nullptr) return NullArgument(fn, "out_prepared");
    *out_imported = model->model->n_weights_imported();
    *out_prepared = model->model->n_weights_prepared();
    return absl::OkStatus();
  });
}
