/* A plugin built against the frozen plugin ABI 1.1 header (old_plugin_headers/), as a vendor's
 * plugin released before 1.2 would be: one synchronous host-memory device "old11" that runs ADD
 * (F32, packed) and reports everything else UNSUPPORTED. Its table ends at device_set_options
 * (struct_size of the 1.1 table), so a 1.2 host must find no instance slots and drive it through
 * init / device_count / device_get_caps / device_open. init counts its calls (a host must call
 * it once per process), and the device's description says how often it ran. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kestrel/plugin_api.h"

#if KESTREL_PLUGIN_API_MINOR != 1
#error "old_plugin.c must be compiled against the frozen 1.1 header (tests/abi/old_plugin_headers)"
#endif

#define OLD_DEVICE_MAGIC 0x4F4C4444u
#define OLD_BUFFER_MAGIC 0x4F4C4442u

typedef struct {
  uint32_t magic;
} OldDevice;

typedef struct {
  uint32_t magic;
  uint64_t size;
  unsigned char* data;
} OldBuffer;

static const kestrel_host_api_t* g_host;
static int g_init_calls;
static OldDevice g_device = {OLD_DEVICE_MAGIC};

static kestrel_plugin_status_t* Err(kestrel_plugin_status_code_t code, const char* msg) {
  return g_host->status_create(g_host->host_ctx, code, msg, strlen(msg));
}
static int IsDevice(kestrel_plugin_device_t* d) {
  return d != NULL && ((OldDevice*)d)->magic == OLD_DEVICE_MAGIC;
}
static OldBuffer* AsBuffer(kestrel_plugin_buffer_t* b) {
  OldBuffer* buf = (OldBuffer*)b;
  return buf != NULL && buf->magic == OLD_BUFFER_MAGIC ? buf : NULL;
}

static kestrel_plugin_status_t* Init(const kestrel_plugin_option_t* o, size_t n) {
  (void)o;
  (void)n;
  ++g_init_calls;
  return NULL;
}
static void Shutdown(void) { g_init_calls = 0; }
static uint32_t DeviceCount(char* reason, size_t cap) {
  (void)reason;
  (void)cap;
  return 1;
}
static kestrel_plugin_status_t* Caps(uint32_t index, kestrel_device_caps_t* caps) {
  if (index != 0 || caps == NULL) return Err(KESTREL_PLUGIN_OUT_OF_RANGE, "no such device");
  if (caps->struct_size < sizeof(kestrel_device_caps_t)) {
    return Err(KESTREL_PLUGIN_INVALID_ARGUMENT, "caps too small");
  }
  memset((char*)caps + sizeof(uint32_t), 0, sizeof(kestrel_device_caps_t) - sizeof(uint32_t));
  caps->kind = KESTREL_DEVICE_KIND_CPU;
  strcpy(caps->name, "old11");
  snprintf(caps->description, sizeof caps->description, "ABI 1.1 test plugin, init called %d time(s)",
           g_init_calls);
  caps->memory_bytes = 1u << 20;
  caps->host_visible = 0;
  caps->dtype_mask = KESTREL_DTYPE_BIT(KESTREL_DTYPE_F32);
  caps->weight_dtype_mask = KESTREL_DTYPE_BIT(KESTREL_DTYPE_F32);
  return NULL;
}
static kestrel_plugin_status_t* Open(uint32_t index, kestrel_plugin_device_t** out) {
  if (index != 0 || out == NULL) return Err(KESTREL_PLUGIN_OUT_OF_RANGE, "no such device");
  *out = (kestrel_plugin_device_t*)&g_device;
  return NULL;
}
static void Close(kestrel_plugin_device_t* d) { (void)d; }
static kestrel_plugin_status_t* Alloc(kestrel_plugin_device_t* d, uint64_t size, uint32_t flags,
                                      kestrel_plugin_buffer_t** out) {
  OldBuffer* b;
  (void)flags;
  if (!IsDevice(d) || out == NULL) return Err(KESTREL_PLUGIN_INVALID_ARGUMENT, "bad alloc args");
  b = (OldBuffer*)calloc(1, sizeof *b);
  if (b == NULL) return Err(KESTREL_PLUGIN_RESOURCE_EXHAUSTED, "out of memory");
  b->data = (unsigned char*)malloc(size ? size : 1);
  if (b->data == NULL) {
    free(b);
    return Err(KESTREL_PLUGIN_RESOURCE_EXHAUSTED, "out of memory");
  }
  b->magic = OLD_BUFFER_MAGIC;
  b->size = size;
  *out = (kestrel_plugin_buffer_t*)b;
  return NULL;
}
static void FreeB(kestrel_plugin_device_t* d, kestrel_plugin_buffer_t* buffer) {
  OldBuffer* b = AsBuffer(buffer);
  (void)d;
  if (b == NULL) return;
  free(b->data);
  b->magic = 0;
  free(b);
}
static int InBuffer(const OldBuffer* b, uint64_t off, uint64_t size) {
  return b != NULL && off <= b->size && size <= b->size - off;
}
static kestrel_plugin_status_t* Write(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* s,
                                      kestrel_plugin_buffer_t* dst, uint64_t off, const void* src,
                                      uint64_t size) {
  OldBuffer* b = AsBuffer(dst);
  if (!IsDevice(d) || s != NULL || !InBuffer(b, off, size)) {
    return Err(KESTREL_PLUGIN_INVALID_ARGUMENT, "bad write");
  }
  if (size) memcpy(b->data + off, src, size);
  return NULL;
}
static kestrel_plugin_status_t* Read(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* s,
                                     kestrel_plugin_buffer_t* src, uint64_t off, void* dst,
                                     uint64_t size) {
  OldBuffer* b = AsBuffer(src);
  if (!IsDevice(d) || s != NULL || !InBuffer(b, off, size)) {
    return Err(KESTREL_PLUGIN_INVALID_ARGUMENT, "bad read");
  }
  if (size) memcpy(dst, b->data + off, size);
  return NULL;
}
static kestrel_plugin_status_t* Copy(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* s,
                                     kestrel_plugin_buffer_t* src, uint64_t so,
                                     kestrel_plugin_buffer_t* dst, uint64_t dof, uint64_t size) {
  OldBuffer* a = AsBuffer(src);
  OldBuffer* b = AsBuffer(dst);
  if (!IsDevice(d) || s != NULL || !InBuffer(a, so, size) || !InBuffer(b, dof, size)) {
    return Err(KESTREL_PLUGIN_INVALID_ARGUMENT, "bad copy");
  }
  if (size) memmove(b->data + dof, a->data + so, size);
  return NULL;
}
static kestrel_plugin_status_t* Prepare(kestrel_plugin_device_t* d, const kestrel_tensor_desc_t* t,
                                        const void* p, uint64_t n, kestrel_plugin_weight_t** w) {
  (void)d; (void)t; (void)p; (void)n; (void)w;
  return Err(KESTREL_PLUGIN_UNIMPLEMENTED, "old11 prepares no weights");
}
static void Release(kestrel_plugin_device_t* d, kestrel_plugin_weight_t* w) {
  (void)d;
  (void)w;
}
static int64_t Elements(const kestrel_tensor_desc_t* t) {
  int64_t n = 1;
  uint32_t r;
  for (r = 0; r < t->rank && r < KESTREL_MAX_DIMS; ++r) n *= t->dims[r];
  return n;
}
/* F32 ADD over same-shaped packed tensors; anything else is not ours. */
static int IsOurAdd(const kestrel_op_desc_t* op) {
  uint32_t i;
  if (op->kind != KESTREL_OP_ADD || op->op_version != 1 || op->n_inputs != 2 ||
      op->n_outputs != 1) {
    return 0;
  }
  for (i = 0; i < 3; ++i) {
    const kestrel_tensor_desc_t* t = i < 2 ? &op->inputs[i].desc : &op->outputs[0].desc;
    if (t->dtype != KESTREL_DTYPE_F32 || Elements(t) != Elements(&op->inputs[0].desc)) return 0;
  }
  return 1;
}
static kestrel_plugin_status_t* Query(kestrel_plugin_device_t* d, const kestrel_op_desc_t* op,
                                      kestrel_op_support_t* out) {
  if (!IsDevice(d) || op == NULL || out == NULL) return Err(KESTREL_PLUGIN_INVALID_ARGUMENT, "bad query");
  out->level = IsOurAdd(op) ? KESTREL_OP_SUPPORTED : KESTREL_OP_UNSUPPORTED;
  out->workspace_bytes = 0;
  return NULL;
}
static kestrel_plugin_status_t* Execute(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* s,
                                        const kestrel_op_desc_t* op, kestrel_plugin_buffer_t* ws) {
  const int64_t n = op != NULL ? Elements(&op->inputs[0].desc) : 0;
  const uint64_t bytes = (uint64_t)n * sizeof(float);
  OldBuffer *a, *b, *o;
  int64_t i;
  (void)ws;
  if (!IsDevice(d) || s != NULL || op == NULL || !IsOurAdd(op)) {
    return Err(KESTREL_PLUGIN_UNIMPLEMENTED, "old11 runs only F32 ADD");
  }
  a = AsBuffer(op->inputs[0].buffer);
  b = AsBuffer(op->inputs[1].buffer);
  o = AsBuffer(op->outputs[0].buffer);
  if (!InBuffer(a, op->inputs[0].offset, bytes) || !InBuffer(b, op->inputs[1].offset, bytes) ||
      !InBuffer(o, op->outputs[0].offset, bytes)) {
    return Err(KESTREL_PLUGIN_OUT_OF_RANGE, "ADD argument outside its buffer");
  }
  for (i = 0; i < n; ++i) {
    float x, y, z;
    memcpy(&x, a->data + op->inputs[0].offset + 4 * i, 4);
    memcpy(&y, b->data + op->inputs[1].offset + 4 * i, 4);
    z = x + y;
    memcpy(o->data + op->outputs[0].offset + 4 * i, &z, 4);
  }
  return NULL;
}

static const kestrel_plugin_api_t kTable = {
    sizeof(kestrel_plugin_api_t), KESTREL_PLUGIN_API_MAJOR, KESTREL_PLUGIN_API_MINOR, 0,
    "old11", "1.1.0-test",
    Init, Shutdown, DeviceCount, Caps, Open, Close,
    Alloc, FreeB, Write, Read, Copy, NULL,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    Prepare, Release, Query, Execute,
    NULL /* device_set_options */};

KESTREL_PLUGIN_EXPORT kestrel_plugin_status_t* kestrel_plugin_get_api(
    const kestrel_host_api_t* host, uint16_t host_major, uint16_t host_minor,
    const kestrel_plugin_api_t** out) {
  (void)host_minor;
  if (out != NULL) *out = NULL;
  if (host == NULL || host->struct_size < sizeof(kestrel_host_api_t)) return NULL;
  g_host = host;
  if (host_major != KESTREL_PLUGIN_API_MAJOR) {
    return Err(KESTREL_PLUGIN_FAILED_PRECONDITION, "old11: other major version");
  }
  if (out == NULL) return Err(KESTREL_PLUGIN_INVALID_ARGUMENT, "out is NULL");
  *out = &kTable;
  return NULL;
}
