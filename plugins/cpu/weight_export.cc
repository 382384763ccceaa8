#include "weight_export.h"

#include <cstring>
#include <string>

namespace kestrel::plugins::cpu {
namespace {

constexpr uint32_t kMagic = 0x42575043;  // "CPWB"
constexpr uint32_t kVersion = 1;
constexpr uint64_t kAlign = 64;
enum Kind : uint32_t { kRaw = 0, kPacked = 1, kSlices = 2, kKPacked = 3 };

struct Header {  // 64 bytes, little-endian
  uint32_t magic;
  uint32_t version;
  uint32_t kind;
  uint32_t dtype;
  uint32_t rank;
  uint32_t n_parts;   // packed matrices (1 for kPacked, dims[0] for kSlices, 0 for raw)
  int64_t dims[4];
  uint64_t payload;   // bytes after the header
};
static_assert(sizeof(Header) == 64, "header is 64 bytes");

uint64_t Up(uint64_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

uint64_t QsBytes(const QWeightView& v) { return static_cast<uint64_t>(v.n * v.n_groups * v.group_bytes); }
uint64_t DBytes(const QWeightView& v) {
  return static_cast<uint64_t>(v.n * v.n_groups * kGroupBlocks) * sizeof(uint16_t);
}

// The view a Q4_0/Q8_0 matrix [n, k] repacks into (RepackQ's geometry), pointers unset.
QWeightView ViewFor(uint32_t dtype, int64_t n, int64_t k) {
  QWeightView v;
  v.dtype = dtype;
  v.n = n;
  v.k = k;
  v.n_groups = GroupsFor(k);
  const bool q8 = dtype == KESTREL_DTYPE_Q8_0;
  v.group_bytes = q8 ? 128 : 64;
  v.offset = q8 ? 128 : 8;
  return v;
}

// The view a KQ matrix [n, k] repacks into (RepackK's geometry), pointers unset.
KWeightView KViewFor(uint32_t dtype, int64_t n, int64_t k) { return KqViewFor(dtype, n, k); }
uint64_t KqsBytes(const KWeightView& v) { return static_cast<uint64_t>(v.n * v.q_row); }
uint64_t KscBytes(const KWeightView& v) { return static_cast<uint64_t>(v.n * v.n_sb * v.fmt.s_bytes); }

std::string Num(int64_t v) { return std::to_string(v); }

}  // namespace

// v2: KQ matrices (Q4_1, Q5_0, Q5_1, Q2_K..Q6_K) are exported in their repacked layout.
// v3: a partial last super-block of Q4_1/Q5_0/Q5_1 rows is stored compact (kq tails).
const char* ExportedLayoutId() { return "cpu-qgroups-v3:group128:q4_0=64B:q8_0=128B:kq=sb256+tail:le"; }

uint64_t ExportedSize(const WeightParts& w) {
  uint64_t size = sizeof(Header);
  if (w.packed != nullptr) return size + Up(QsBytes(w.packed->view)) + Up(DBytes(w.packed->view));
  if (w.kpacked != nullptr) return size + Up(KqsBytes(w.kpacked->view)) + Up(KscBytes(w.kpacked->view));
  if (!w.slices.empty()) {
    for (const PackedQ* p : w.slices) size += Up(QsBytes(p->view)) + Up(DBytes(p->view));
    return size;
  }
  return size + Up(w.raw_bytes);
}

void ExportWeightBytes(const WeightParts& w, uint8_t* dst) {
  const uint64_t total = ExportedSize(w);
  std::memset(dst, 0, static_cast<size_t>(total));
  Header h{};
  h.magic = kMagic;
  h.version = kVersion;
  h.dtype = w.desc.dtype;
  h.rank = w.desc.rank;
  for (uint32_t i = 0; i < w.desc.rank && i < 4; ++i) h.dims[i] = w.desc.dims[i];
  h.payload = total - sizeof(Header);
  uint8_t* p = dst + sizeof(Header);
  auto put_packed = [&](const QWeightView& v) {
    std::memcpy(p, v.qs, static_cast<size_t>(QsBytes(v)));
    p += Up(QsBytes(v));
    std::memcpy(p, v.d, static_cast<size_t>(DBytes(v)));
    p += Up(DBytes(v));
  };
  if (w.packed != nullptr) {
    h.kind = kPacked;
    h.n_parts = 1;
    put_packed(w.packed->view);
  } else if (w.kpacked != nullptr) {
    h.kind = kKPacked;
    h.n_parts = 1;
    const KWeightView& v = w.kpacked->view;
    std::memcpy(p, v.qs, static_cast<size_t>(KqsBytes(v)));
    std::memcpy(p + Up(KqsBytes(v)), v.sc, static_cast<size_t>(KscBytes(v)));
  } else if (!w.slices.empty()) {
    h.kind = kSlices;
    h.n_parts = static_cast<uint32_t>(w.slices.size());
    for (const PackedQ* s : w.slices) put_packed(s->view);
  } else {
    h.kind = kRaw;
    if (w.raw_bytes > 0) std::memcpy(p, w.raw, static_cast<size_t>(w.raw_bytes));
  }
  std::memcpy(dst, &h, sizeof h);
}

std::string ImportWeightBytes(const kestrel_tensor_desc_t& desc, const uint8_t* data,
                              uint64_t size, bool borrow, bool expect_packed, bool expect_kpacked,
                              bool expect_slices,
                              uint64_t raw_bytes, ImportedWeight* out) {
  if (size < sizeof(Header)) return "the bytes are shorter than the 64-byte header";
  Header h;
  std::memcpy(&h, data, sizeof h);
  if (h.magic != kMagic) return "the bytes are not a cpu prepared weight (bad magic)";
  if (h.version != kVersion) return "cpu prepared weight version " + Num(h.version) + ", expected " + Num(kVersion);
  if (h.dtype != desc.dtype || h.rank != desc.rank) return "the bytes are for another dtype or rank";
  for (uint32_t i = 0; i < desc.rank && i < 4; ++i) {
    if (h.dims[i] != desc.dims[i]) return "the bytes are for dims[" + Num(i) + "] = " + Num(h.dims[i]) + ", not " + Num(desc.dims[i]);
  }
  const uint32_t want =
      expect_packed ? kPacked : expect_kpacked ? kKPacked : expect_slices ? kSlices : kRaw;
  if (h.kind != want) return "the bytes hold layout kind " + Num(h.kind) + ", this weight needs " + Num(want);
  if (h.payload != size - sizeof(Header)) return "the header says " + Num(static_cast<int64_t>(h.payload)) + " payload bytes, there are " + Num(static_cast<int64_t>(size - sizeof(Header)));
  const bool aligned = reinterpret_cast<uintptr_t>(data) % kAlign == 0;
  const bool in_place = borrow && aligned;
  const uint8_t* p = data + sizeof(Header);
  const uint8_t* end = data + size;
  auto take_packed = [&](int64_t n, int64_t k) -> std::unique_ptr<PackedQ> {
    auto q = std::make_unique<PackedQ>();
    q->view = ViewFor(desc.dtype, n, k);
    const uint64_t qs = QsBytes(q->view), d = DBytes(q->view);
    if (static_cast<uint64_t>(end - p) < Up(qs) + Up(d)) return nullptr;
    if (in_place) {
      q->view.qs = p;
      q->view.d = reinterpret_cast<const uint16_t*>(p + Up(qs));
    } else {
      q->qs = AlignedBuffer(qs);
      q->d = AlignedBuffer(d);
      std::memcpy(q->qs.data(), p, static_cast<size_t>(qs));
      std::memcpy(q->d.data(), p + Up(qs), static_cast<size_t>(d));
      q->view.qs = static_cast<const uint8_t*>(q->qs.data());
      q->view.d = static_cast<const uint16_t*>(q->d.data());
    }
    p += Up(qs) + Up(d);
    return q;
  };
  if (want == kPacked) {
    out->packed = take_packed(desc.dims[0], desc.dims[1]);
    if (out->packed == nullptr) return "the bytes are too short for the repacked matrix";
  } else if (want == kKPacked) {
    auto q = std::make_unique<PackedK>();
    q->view = KViewFor(desc.dtype, desc.dims[0], desc.dims[1]);
    const uint64_t qs = KqsBytes(q->view), sc = KscBytes(q->view);
    if (static_cast<uint64_t>(end - p) < Up(qs) + Up(sc)) return "the bytes are too short for the repacked KQ matrix";
    if (in_place) {
      q->view.qs = p;
      q->view.sc = p + Up(qs);
    } else {
      q->qs = AlignedBuffer(qs);
      q->sc = AlignedBuffer(sc);
      std::memcpy(q->qs.data(), p, static_cast<size_t>(qs));
      std::memcpy(q->sc.data(), p + Up(qs), static_cast<size_t>(sc));
      q->view.qs = static_cast<const uint8_t*>(q->qs.data());
      q->view.sc = static_cast<const uint8_t*>(q->sc.data());
    }
    p += Up(qs) + Up(sc);
    out->kpacked = std::move(q);
  } else if (want == kSlices) {
    if (h.n_parts != static_cast<uint64_t>(desc.dims[0])) return "the bytes hold " + Num(h.n_parts) + " slices, not " + Num(desc.dims[0]);
    for (int64_t i = 0; i < desc.dims[0]; ++i) {
      out->slices.push_back(take_packed(desc.dims[1], desc.dims[2]));
      if (out->slices.back() == nullptr) return "the bytes are too short for slice " + Num(i);
    }
  } else {
    if (static_cast<uint64_t>(end - p) < raw_bytes) return "the bytes are too short for the weight";
    if (in_place) {
      out->raw = p;
    } else {
      out->raw_copy = AlignedBuffer(raw_bytes);
      if (raw_bytes > 0) std::memcpy(out->raw_copy.data(), p, static_cast<size_t>(raw_bytes));
      out->raw = out->raw_copy.data();
    }
    p += Up(raw_bytes);
  }
  if (p != end) return "the bytes are longer than the weight needs";
  return "";
}

}  // namespace kestrel::plugins::cpu
