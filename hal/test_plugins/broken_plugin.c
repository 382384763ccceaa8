/* A plugin that is broken in exactly one way, chosen at compile time by BROKEN_MODE, used to show
 * the host skips it with a reason instead of crashing:
 *   1 other major version   2 NULL required slot   3 init fails   4 zero devices
 *   5 no entry symbol       6 get_api returns an error status */
#include <string.h>

/* Modes 5 and 6 never hand out the table, so its slot functions go unused there. */
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-variable"

#include "kestrel/plugin_api.h"

static const kestrel_host_api_t* g_host;

static kestrel_plugin_status_t* Fail(const char* msg) {
  return g_host->status_create(g_host->host_ctx, KESTREL_PLUGIN_INTERNAL, msg, strlen(msg));
}
static kestrel_plugin_status_t* Init(const kestrel_plugin_option_t* o, size_t n) {
  (void)o;
  (void)n;
#if BROKEN_MODE == 3
  return Fail("simulated init failure: no license");
#else
  return NULL;
#endif
}
static uint32_t DeviceCount(char* reason, size_t cap) {
#if BROKEN_MODE == 4
  strncpy(reason, "simulated: no accelerator present", cap - 1);
  return 0;
#else
  (void)reason;
  (void)cap;
  return 1;
#endif
}
static kestrel_plugin_status_t* Caps(uint32_t i, kestrel_device_caps_t* c) {
  (void)i;
  (void)c;
  return Fail("not a real device");
}
static kestrel_plugin_status_t* Open(uint32_t i, kestrel_plugin_device_t** d) {
  (void)i;
  (void)d;
  return Fail("not a real device");
}
static void Close(kestrel_plugin_device_t* d) { (void)d; }
static kestrel_plugin_status_t* Alloc(kestrel_plugin_device_t* d, uint64_t s, uint32_t f,
                                      kestrel_plugin_buffer_t** b) {
  (void)d; (void)s; (void)f; (void)b;
  return Fail("unused");
}
static void FreeB(kestrel_plugin_device_t* d, kestrel_plugin_buffer_t* b) { (void)d; (void)b; }
static kestrel_plugin_status_t* Write(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* s,
                                      kestrel_plugin_buffer_t* b, uint64_t o, const void* p,
                                      uint64_t n) {
  (void)d; (void)s; (void)b; (void)o; (void)p; (void)n;
  return Fail("unused");
}
static kestrel_plugin_status_t* Read(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* s,
                                     kestrel_plugin_buffer_t* b, uint64_t o, void* p, uint64_t n) {
  (void)d; (void)s; (void)b; (void)o; (void)p; (void)n;
  return Fail("unused");
}
static kestrel_plugin_status_t* Copy(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* s,
                                     kestrel_plugin_buffer_t* a, uint64_t ao,
                                     kestrel_plugin_buffer_t* b, uint64_t bo, uint64_t n) {
  (void)d; (void)s; (void)a; (void)ao; (void)b; (void)bo; (void)n;
  return Fail("unused");
}
static kestrel_plugin_status_t* Prep(kestrel_plugin_device_t* d, const kestrel_tensor_desc_t* t,
                                     const void* p, uint64_t n, kestrel_plugin_weight_t** w) {
  (void)d; (void)t; (void)p; (void)n; (void)w;
  return Fail("unused");
}
static void Rel(kestrel_plugin_device_t* d, kestrel_plugin_weight_t* w) { (void)d; (void)w; }
static kestrel_plugin_status_t* Query(kestrel_plugin_device_t* d, const kestrel_op_desc_t* op,
                                      kestrel_op_support_t* s) {
  (void)d; (void)op;
  s->level = KESTREL_OP_UNSUPPORTED;
  return NULL;
}
static kestrel_plugin_status_t* Exec(kestrel_plugin_device_t* d, kestrel_plugin_stream_t* s,
                                     const kestrel_op_desc_t* op, kestrel_plugin_buffer_t* w) {
  (void)d; (void)s; (void)op; (void)w;
  return Fail("unused");
}

static kestrel_plugin_api_t g_api;

#if BROKEN_MODE != 5
KESTREL_PLUGIN_EXPORT kestrel_plugin_status_t* kestrel_plugin_get_api(
    const kestrel_host_api_t* host, uint16_t major, uint16_t minor,
    const kestrel_plugin_api_t** out) {
  (void)major;
  (void)minor;
  g_host = host;
#if BROKEN_MODE == 6
  *out = NULL;
  return Fail("simulated get_api failure");
#endif
  memset(&g_api, 0, sizeof(g_api));
  g_api.struct_size = sizeof(g_api);
  g_api.major = BROKEN_MODE == 1 ? KESTREL_PLUGIN_API_MAJOR + 1 : KESTREL_PLUGIN_API_MAJOR;
  g_api.minor = 7;
  g_api.name = BROKEN_NAME;
  g_api.version = "0.0-test";
  g_api.init = Init;
  g_api.device_count = DeviceCount;
  g_api.device_get_caps = Caps;
  g_api.device_open = Open;
  g_api.device_close = Close;
  g_api.buffer_alloc = Alloc;
  g_api.buffer_free = FreeB;
  g_api.buffer_write = Write;
  g_api.buffer_read = Read;
  g_api.buffer_copy = Copy;
  g_api.weight_prepare = Prep;
  g_api.weight_release = Rel;
  g_api.op_query = Query;
  g_api.op_execute = BROKEN_MODE == 2 ? NULL : Exec;
  *out = &g_api;
  return NULL;
}
#else
KESTREL_PLUGIN_EXPORT int kestrel_plugin_wrong_symbol(void) { return 0; }
#endif
