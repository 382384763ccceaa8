// The argument checks of a device plugin whose objects live in device memory (opencl, cuda): the
// handle checks (device, buffer, stream, event), the range and NULL checks of the buffer
// transfer slots, weight_prepare's validation of its arguments, and the op_query / op_execute
// steps that judge an op descriptor (CheckOp, op_contract.h) and resolve its tensor
// arguments. Each plugin keeps its own objects, state and device calls; these functions only
// read the objects through the fields every such plugin gives them:
//
//   Device, Buffer, Stream, Event, Weight: uint32_t magic (a per-type, per-plugin constant);
//   Buffer, Stream, Event, Weight:         Device* device (the device that made it);
//   Buffer:                                uint64_t size;
//   Weight:                                kestrel_tensor_desc_t desc.
//
// A message that names the plugin takes it as `plugin` (e.g. "cuda"); every other message is the
// same for all plugins. Header-only and internal (nothing exported); unlike plugin_glue.h and
// device_table.h it depends on the SDK's status and descriptor helpers (status.h, op_contract.h).
#ifndef KESTREL_PLUGIN_SDK_DEVICE_CHECKS_H_
#define KESTREL_PLUGIN_SDK_DEVICE_CHECKS_H_

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "kestrel/plugin_api.h"
#include "kestrel/plugin_sdk/device_table.h"
#include "kestrel/plugin_sdk/plugin_glue.h"
#include "kestrel/plugin_sdk/dtype.h"
#include "kestrel/plugin_sdk/op_contract.h"
#include "kestrel/plugin_sdk/status.h"

#define KESTREL_DEVICE_CHECKS_RETURN_IF_ERROR(expr) KESTREL_SDK_RETURN_IF_ERROR(expr)

namespace kestrel::plugin_sdk {

// Whether [offset, offset + size) lies within [0, limit), without overflow.
inline bool InRange(uint64_t offset, uint64_t size, uint64_t limit) {
  return offset <= limit && size <= limit - offset;
}

// The device handle of a slot: "<slot>: device is NULL", "<slot>: device is not a device of
// plugin '<plugin>'".
template <typename Device>
Status CheckDevice(const Device* device, uint32_t magic, const char* plugin,
                        const char* slot) {
  if (device == nullptr) return InvalidArgument(slot, ": device is NULL");
  if (device->magic != magic) {
    return InvalidArgument(slot, ": device is not a device of plugin '", plugin, "'");
  }
  return Status();
}

// A buffer handle of `device`: "<what> is NULL", "<what> is not a buffer of this device".
template <typename Buffer, typename Device>
Status CheckBuffer(const Buffer* buffer, uint32_t magic, const Device* device,
                        const std::string& what) {
  if (buffer == nullptr) return InvalidArgument(what, " is NULL");
  if (buffer->magic != magic || buffer->device != device) {
    return InvalidArgument(what, " is not a buffer of this device");
  }
  return Status();
}

// A stream handle of `device`, not NULL (NULL is the device's own stream: the plugin handles it
// before): "<slot>: stream is not a stream of this device".
template <typename Stream, typename Device>
Status CheckStream(const Stream* stream, uint32_t magic, const Device* device,
                        const char* slot) {
  if (stream->magic != magic || stream->device != device) {
    return InvalidArgument(slot, ": stream is not a stream of this device");
  }
  return Status();
}

// An event handle of `device`: "<slot>: event is NULL", "<slot>: event is not an event of this
// device".
template <typename Event, typename Device>
Status CheckEvent(const Event* event, uint32_t magic, const Device* device, const char* slot) {
  if (event == nullptr) return InvalidArgument(slot, ": event is NULL");
  if (event->magic != magic || event->device != device) {
    return InvalidArgument(slot, ": event is not an event of this device");
  }
  return Status();
}

// buffer_write / buffer_read after the handle checks: [off, +size) within the buffer ("<slot>: [off,
// +size) exceeds the buffer size N"), then, unless size is 0 (nothing to move; the caller returns
// OK), the host pointer `host` named `host_name`: "<slot>: <host_name> is NULL".
inline Status CheckTransfer(const char* slot, uint64_t off, uint64_t size,
                                 uint64_t buffer_size, const void* host, const char* host_name) {
  if (!InRange(off, size, buffer_size)) {
    return OutOfRange(slot, ": [", off, ", +", size, ") exceeds the buffer size ",
                           buffer_size);
  }
  if (size > 0 && host == nullptr) return InvalidArgument(slot, ": ", host_name, " is NULL");
  return Status();
}

// buffer_copy after the handle checks: both ranges within their buffers.
inline Status CheckCopy(uint64_t size, uint64_t src_off, uint64_t src_size, uint64_t dst_off,
                             uint64_t dst_size) {
  if (!InRange(src_off, size, src_size) || !InRange(dst_off, size, dst_size)) {
    return OutOfRange("buffer_copy: ", size, " bytes from offset ", src_off, " (size ",
                           src_size, ") to offset ", dst_off, " (size ", dst_size,
                           ") exceed a buffer");
  }
  return Status();
}

// weight_prepare's arguments after the device check: desc and out set, desc a valid packed
// tensor of a weight dtype, `size` holding the *needed (TensorBytes) bytes it describes, host_data
// set unless that is 0.
inline Status CheckWeightPrepare(const kestrel_tensor_desc_t* desc, const void* host_data,
                                      uint64_t size, kestrel_plugin_weight_t** out,
                                      uint64_t* needed) {
  if (desc == nullptr) return InvalidArgument("weight_prepare: desc is NULL");
  if (out == nullptr) return InvalidArgument("weight_prepare: out_weight is NULL");
  KESTREL_DEVICE_CHECKS_RETURN_IF_ERROR(ValidateTensorDesc(*desc, "weight_prepare: desc"));
  if (!IsWeightDtype(desc->dtype)) {
    return InvalidArgument("weight_prepare: dtype ", DtypeName(desc->dtype),
                                " is not a weight dtype (F32, F16, BF16 or a GGUF block format)");
  }
  if (!IsPackedLayout(*desc)) {
    return Unimplemented("weight_prepare: non-packed strides are not supported");
  }
  *needed = TensorBytes(*desc);
  if (size < *needed) {
    return InvalidArgument("weight_prepare: size=", size, " < ", *needed, " bytes that the ",
                                DtypeName(desc->dtype), " desc describes");
  }
  if (*needed > 0 && host_data == nullptr) {
    return InvalidArgument("weight_prepare: host_data is NULL");
  }
  return Status();
}

// "a dim of N exceeds 2^31 - 1" for the first dim of an input or output of `op` above INT32_MAX
// (kernel sizes and grids are int), "" when there is none.
inline std::string LargeDimReason(const kestrel_op_desc_t& op) {
  for (uint32_t i = 0; i < op.n_inputs + op.n_outputs; ++i) {
    const kestrel_tensor_desc_t& t = i < op.n_inputs ? op.inputs[i].desc
                                                     : op.outputs[i - op.n_inputs].desc;
    for (uint32_t r = 0; r < t.rank; ++r) {
      if (t.dims[r] > INT32_MAX) return StrCat("a dim of ", t.dims[r], " exceeds 2^31 - 1");
    }
  }
  return "";
}

// op_query after the device check: checks op and out, marks *out unsupported (no workspace),
// then PREFERRED when the plugin implements op->kind (`kind_ok`), CheckOp supports the
// descriptor and extra_unsupported() (called only then) returns "". Each "no" is logged at DEBUG
// through `host` as "<plugin>: unsupported: ..." and is not an error; an invalid descriptor is.
template <typename ExtraUnsupported>
Status QueryOp(const HostRef& host, const char* plugin, const kestrel_op_desc_t* op,
                    kestrel_op_support_t* out, bool (*kind_ok)(uint32_t),
                    ExtraUnsupported&& extra_unsupported) {
  if (op == nullptr) return InvalidArgument("op_query: op is NULL");
  if (out == nullptr) return InvalidArgument("op_query: out_support is NULL");
  if (out->struct_size < sizeof(kestrel_op_support_t)) {
    return InvalidArgument("op_query: out_support->struct_size=", out->struct_size, " < ",
                                sizeof(kestrel_op_support_t));
  }
  out->level = KESTREL_OP_UNSUPPORTED;
  out->workspace_bytes = 0;
  if (!kind_ok(op->kind)) {
    host.Log(KESTREL_PLUGIN_LOG_DEBUG, StrCat(plugin, ": unsupported: ",
                                                   OpKindName(op->kind),
                                                   " (kind not implemented)"));
    return Status();
  }
  OpCheck check;
  KESTREL_DEVICE_CHECKS_RETURN_IF_ERROR(CheckOp(*op, &check));
  if (!check.supported) {
    host.Log(KESTREL_PLUGIN_LOG_DEBUG, StrCat(plugin, ": unsupported: ", check.reason));
    return Status();
  }
  const std::string extra = extra_unsupported();
  if (!extra.empty()) {
    host.Log(KESTREL_PLUGIN_LOG_DEBUG,
             StrCat(plugin, ": unsupported: ", OpKindName(op->kind), ": ", extra));
    return Status();
  }
  out->level = KESTREL_OP_PREFERRED;
  return Status();
}

// op_execute after the device, op and stream checks: UNIMPLEMENTED "<kind>: not supported by
// plugin '<plugin>'" unless `kind_ok`, the error of CheckOp, UNIMPLEMENTED "<reason> (plugin
// '<plugin>')" or "<kind>: <extra> (plugin '<plugin>')" for what it does not run; then resolves
// every input and output with resolve(arg, "<kind>: input i" / "<kind>: output i", writable,
// Arg*) into *in / *out. *name: the op kind's name (set once the op is supported).
template <typename Arg, typename ExtraUnsupported, typename Resolve>
Status PrepareOp(const char* plugin, const kestrel_op_desc_t& op, bool (*kind_ok)(uint32_t),
                      ExtraUnsupported&& extra_unsupported, Resolve&& resolve, std::string* name,
                      std::vector<Arg>* in, std::vector<Arg>* out) {
  if (!kind_ok(op.kind)) {
    return Unimplemented(OpKindName(op.kind), ": not supported by plugin '", plugin,
                              "'");
  }
  OpCheck check;
  KESTREL_DEVICE_CHECKS_RETURN_IF_ERROR(CheckOp(op, &check));
  if (!check.supported) return Unimplemented(check.reason, " (plugin '", plugin, "')");
  const std::string extra = extra_unsupported();
  *name = OpKindName(op.kind);
  if (!extra.empty()) return Unimplemented(*name, ": ", extra, " (plugin '", plugin, "')");
  in->assign(op.n_inputs, Arg());
  out->assign(op.n_outputs, Arg());
  for (uint32_t i = 0; i < op.n_inputs; ++i) {
    KESTREL_DEVICE_CHECKS_RETURN_IF_ERROR(
        resolve(op.inputs[i], StrCat(*name, ": input ", i), false, &(*in)[i]));
  }
  for (uint32_t i = 0; i < op.n_outputs; ++i) {
    KESTREL_DEVICE_CHECKS_RETURN_IF_ERROR(
        resolve(op.outputs[i], StrCat(*name, ": output ", i), true, &(*out)[i]));
  }
  return Status();
}

// One tensor argument of an op on `device` (labelled `label` in messages): exactly one of buffer
// and weight; a weight (never `writable`) must be a prepared weight of the device with offset 0
// and the argument's dtype, rank and dims; a buffer must be one of the device holding the
// tensor's TensorBytes at an offset aligned to its dtype. Sets *weight (and *buffer NULL) or
// *buffer (and *weight NULL).
template <typename Weight, typename Buffer, typename Device>
Status CheckTensorArg(const Device* device, const kestrel_tensor_arg_t& a,
                           const std::string& label, bool writable, uint32_t weight_magic,
                           uint32_t buffer_magic, const Weight** weight, const Buffer** buffer) {
  *weight = nullptr;
  *buffer = nullptr;
  const kestrel_tensor_desc_t& desc = a.desc;
  if ((a.buffer == nullptr) == (a.weight == nullptr)) {
    return InvalidArgument(label, ": exactly one of buffer and weight must be set");
  }
  if (a.weight != nullptr) {
    if (writable) return InvalidArgument(label, ": a prepared weight cannot be an output");
    const Weight* w = reinterpret_cast<const Weight*>(a.weight);
    if (w->magic != weight_magic || w->device != device) {
      return InvalidArgument(label, ": weight is not a prepared weight of this device");
    }
    if (a.offset != 0) return InvalidArgument(label, ": offset=", a.offset, " with a weight");
    if (w->desc.dtype != desc.dtype || w->desc.rank != desc.rank ||
        !std::equal(desc.dims, desc.dims + desc.rank, w->desc.dims)) {
      return InvalidArgument(label, ": desc (", DtypeName(desc.dtype), ", rank ",
                                  desc.rank, ") does not match the prepared weight's desc (",
                                  DtypeName(w->desc.dtype), ", rank ", w->desc.rank,
                                  ") or its dims differ");
    }
    *weight = w;
    return Status();
  }
  const Buffer* b = reinterpret_cast<const Buffer*>(a.buffer);
  KESTREL_DEVICE_CHECKS_RETURN_IF_ERROR(CheckBuffer(b, buffer_magic, device, label + ": buffer"));
  const uint64_t bytes = TensorBytes(desc);
  if (!InRange(a.offset, bytes, b->size)) {
    return OutOfRange(label, ": offset ", a.offset, " + ", bytes,
                           " bytes exceeds the buffer size ", b->size);
  }
  if (a.offset % DtypeAlignment(desc.dtype) != 0) {
    return InvalidArgument(label, ": offset ", a.offset, " is not a multiple of ",
                                DtypeAlignment(desc.dtype), " (", DtypeName(desc.dtype),
                                ")");
  }
  *buffer = b;
  return Status();
}

// Copies device `index` of `devices` (after discover_locked(), as DiscoveredDevices::Get) to
// *out: "<slot>: index I >= device count N" when there is none.
template <typename Info, typename DiscoverLocked>
Status GetDeviceInfo(DiscoveredDevices<Info>& devices, uint32_t index, const char* slot,
                          DiscoverLocked&& discover_locked, Info* out) {
  size_t count = 0;
  if (!devices.Get(index, discover_locked, out, &count)) {
    return OutOfRange(slot, ": index ", index, " >= device count ", count);
  }
  return Status();
}

}  // namespace kestrel::plugin_sdk

#undef KESTREL_DEVICE_CHECKS_RETURN_IF_ERROR

#endif  // KESTREL_PLUGIN_SDK_DEVICE_CHECKS_H_
