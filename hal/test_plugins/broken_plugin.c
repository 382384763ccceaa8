/* A minimal but correct plugin, optionally broken in exactly one way (BROKEN_MODE), for the
 * loader tests and the conformance kit's own tests: one device (BROKEN_NAME) whose memory is a
 * 64 MiB budget, not host-visible; synchronous; prepared weights are copies; it runs F32 ADD and
 * reports everything else UNSUPPORTED. It compiles against today's plugin_api.h and against the
 * frozen 1.1 header (tests/abi/old_plugin_headers), which is how the 1.1 plugin "old11" is built.
 *   0 no defect                1 other major version   2 NULL required slot   3 init fails
 *   4 zero devices             5 no entry symbol       6 get_api returns an error status
 *   7 ADD off by 1e-3 relative (outside the f32 tier) */
/* Mode 5 never hands out the table, so its slot functions go unused there. */
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-const-variable"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kestrel/plugin_api.h"

#ifndef BROKEN_MODE
#define BROKEN_MODE 0
#endif
#ifndef BROKEN_NAME
#define BROKEN_NAME "test_plugin"
#endif
#define MEMORY_BYTES (64u << 20)

#define TEST_DEVICE_MAGIC 0x4F4C4444u
#define TEST_BUFFER_MAGIC 0x4F4C4442u

typedef struct {
  uint32_t magic;
} TestDevice;

typedef struct {
  uint32_t magic;
  uint64_t size;
  unsigned char* data;
} TestBuffer;

static const kestrel_host_api_t* g_host;
static uint64_t g_memory_used;
static int g_init_calls;
static TestDevice g_device = {TEST_DEVICE_MAGIC};

static kestrel_plugin_status_t* Err(kestrel_plugin_status_code_t code, const char* msg) {
  return g_host->status_create(g_host->host_ctx, code, msg, strlen(msg));
}
static int IsDevice(kestrel_plugin_device_t* d) {
  return d != NULL && ((TestDevice*)d)->magic == TEST_DEVICE_MAGIC;
}
static TestBuffer* AsBuffer(kestrel_plugin_buffer_t* b) {
  TestBuffer* buf = (TestBuffer*)b;
  return buf != NULL && buf->magic == TEST_BUFFER_MAGIC ? buf : NULL;
}

static kestrel_plugin_status_t* Init(const kestrel_plugin_option_t* o, size_t n) {
  (void)o;
  (void)n;
#if BROKEN_MODE == 3
  return Err(KESTREL_PLUGIN_INTERNAL, "simulated init failure: no license");
#endif
  ++g_init_calls;
  return NULL;
}
static void Shutdown(void) { g_init_calls = 0; }
static uint32_t DeviceCount(char* reason, size_t cap) {
#if BROKEN_MODE == 4
  if (reason != NULL && cap > 0) {
    strncpy(reason, "simulated: no accelerator present", cap - 1);
    reason[cap - 1] = '\0';
  }
  return 0;
#else
  (void)reason;
  (void)cap;
  return 1;
#endif
}
static kestrel_plugin_status_t* Caps(uint32_t index, kestrel_device_caps_t* caps) {
  if (index != 0 || caps == NULL) return Err(KESTREL_PLUGIN_OUT_OF_RANGE, "no such device");
  if (caps->struct_size < sizeof(kestrel_device_caps_t)) {
    return Err(KESTREL_PLUGIN_INVALID_ARGUMENT, "caps too small");
  }
  memset((char*)caps + sizeof(uint32_t), 0, sizeof(kestrel_device_caps_t) - sizeof(uint32_t));
  caps->kind = KESTREL_DEVICE_KIND_CPU;
  strcpy(caps->name, BROKEN_NAME);
  snprintf(caps->description, sizeof caps->description,
           "ABI %d.%d test plugin, init called %d time(s)", KESTREL_PLUGIN_API_MAJOR,
           KESTREL_PLUGIN_API_MINOR, g_init_calls);
  caps->memory_bytes = MEMORY_BYTES;
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
  TestBuffer* b;
  (void)flags;
  if (!IsDevice(d) || out == NULL) return Err(KESTREL_PLUGIN_INVALID_ARGUMENT, "bad alloc args");
  if (size > MEMORY_BYTES - g_memory_used) {
    return Err(KESTREL_PLUGIN_RESOURCE_EXHAUSTED, "out of device memory");
  }
  b = (TestBuffer*)calloc(1, sizeof *b);
  if (b == NULL) return Err(KESTREL_PLUGIN_RESOURCE_EXHAUSTED, "out of memory");
  b->data = (unsigned char*)malloc(size ? size : 1);
  if (b->data == NULL) {
    free(b);
    return Err(KESTREL_PLUGIN_RESOURCE_EXHAUSTED, "out of memory");
  }
  b->magic = TEST_BUFFER_MAGIC;
  b->size = size;
  g_memory_used += size;
  *out = (kestrel_plugin_buffer_t*)b;
  return NULL;
}
static void FreeB(kestrel_plugin_device_t* d, kestrel_plugin_buffer_t* buffer) {
  TestBuffer* b = AsBuffer(buffer);
  (void)d;
  if (b == NULL) return;
  g_memory_used -= b->size;
  free(b->data);
  b->magic = 0;
  free(b);
}
static int InBuffer(const TestBuffer* b, uint64_t off, uint64_t size) {
  return b != NULL && off <= b->size && size <= b->size - off;
}
static kestrel_plugin_status_t* Write(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* s,
                                      kestrel_plugin_buffer_t* dst, uint64_t off, const void* src,
                                      uint64_t size) {
  TestBuffer* b = AsBuffer(dst);
  if (!IsDevice(d) || s != NULL || !InBuffer(b, off, size)) {
    return Err(KESTREL_PLUGIN_INVALID_ARGUMENT, "bad write");
  }
  if (size) memcpy(b->data + off, src, size);
  return NULL;
}
static kestrel_plugin_status_t* Read(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* s,
                                     kestrel_plugin_buffer_t* src, uint64_t off, void* dst,
                                     uint64_t size) {
  TestBuffer* b = AsBuffer(src);
  if (!IsDevice(d) || s != NULL || !InBuffer(b, off, size)) {
    return Err(KESTREL_PLUGIN_INVALID_ARGUMENT, "bad read");
  }
  if (size) memcpy(dst, b->data + off, size);
  return NULL;
}
static kestrel_plugin_status_t* Copy(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* s,
                                     kestrel_plugin_buffer_t* src, uint64_t so,
                                     kestrel_plugin_buffer_t* dst, uint64_t dof, uint64_t size) {
  TestBuffer* a = AsBuffer(src);
  TestBuffer* b = AsBuffer(dst);
  if (!IsDevice(d) || s != NULL || !InBuffer(a, so, size) || !InBuffer(b, dof, size)) {
    return Err(KESTREL_PLUGIN_INVALID_ARGUMENT, "bad copy");
  }
  if (size) memmove(b->data + dof, a->data + so, size);
  return NULL;
}
/* A prepared weight is a copy of the bytes (the device runs no op that reads weights). */
static kestrel_plugin_status_t* Prepare(kestrel_plugin_device_t* d, const kestrel_tensor_desc_t* t,
                                        const void* p, uint64_t n, kestrel_plugin_weight_t** w) {
  kestrel_plugin_buffer_t* b = NULL;
  kestrel_plugin_status_t* s;
  if (t == NULL || w == NULL || (n > 0 && p == NULL)) {
    return Err(KESTREL_PLUGIN_INVALID_ARGUMENT, "weight_prepare: NULL argument");
  }
  s = Alloc(d, n, 0, &b);
  if (s != NULL) return s;
  if (n) memcpy(((TestBuffer*)b)->data, p, n);
  *w = (kestrel_plugin_weight_t*)b;
  return NULL;
}
static void Release(kestrel_plugin_device_t* d, kestrel_plugin_weight_t* w) {
  FreeB(d, (kestrel_plugin_buffer_t*)w);
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
  TestBuffer *a, *b, *o;
  int64_t i;
  (void)ws;
  if (!IsDevice(d) || s != NULL || op == NULL || !IsOurAdd(op)) {
    return Err(KESTREL_PLUGIN_UNIMPLEMENTED, BROKEN_NAME " runs only F32 ADD");
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
#if BROKEN_MODE == 7
    z *= 1.001f;
#endif
    memcpy(o->data + op->outputs[0].offset + 4 * i, &z, 4);
  }
  return NULL;
}

/* Designated initializers: the slots this plugin leaves NULL (streams, buffer_map, options, and
 * the 1.4 instance slots when built against today's header) stay zero. */
static const kestrel_plugin_api_t kTable = {
    .struct_size = sizeof(kestrel_plugin_api_t),
    .major = BROKEN_MODE == 1 ? KESTREL_PLUGIN_API_MAJOR + 1 : KESTREL_PLUGIN_API_MAJOR,
    .minor = BROKEN_MODE == 1 ? 7 : KESTREL_PLUGIN_API_MINOR,
    .name = BROKEN_NAME,
    .version = "0.1.0-test",
    .init = Init,
    .shutdown = Shutdown,
    .device_count = DeviceCount,
    .device_get_caps = Caps,
    .device_open = Open,
    .device_close = Close,
    .buffer_alloc = Alloc,
    .buffer_free = FreeB,
    .buffer_write = Write,
    .buffer_read = Read,
    .buffer_copy = Copy,
    .weight_prepare = Prepare,
    .weight_release = Release,
    .op_query = Query,
    .op_execute = BROKEN_MODE == 2 ? NULL : Execute,
};

#if BROKEN_MODE != 5
KESTREL_PLUGIN_EXPORT kestrel_plugin_status_t* kestrel_plugin_get_api(
    const kestrel_host_api_t* host, uint16_t host_major, uint16_t host_minor,
    const kestrel_plugin_api_t** out) {
  (void)host_minor;
  if (out != NULL) *out = NULL;
  if (host == NULL || host->struct_size < sizeof(kestrel_host_api_t) ||
      host->status_create == NULL) {
    return NULL;
  }
  g_host = host;
#if BROKEN_MODE == 6
  return Err(KESTREL_PLUGIN_INTERNAL, "simulated get_api failure");
#endif
  if (host_major != KESTREL_PLUGIN_API_MAJOR) {
    return Err(KESTREL_PLUGIN_FAILED_PRECONDITION, BROKEN_NAME ": other major version");
  }
  if (out == NULL) return Err(KESTREL_PLUGIN_INVALID_ARGUMENT, "out is NULL");
  *out = &kTable;
  return NULL;
}
#else
KESTREL_PLUGIN_EXPORT int kestrel_plugin_wrong_symbol(void) { return 0; }
#endif
