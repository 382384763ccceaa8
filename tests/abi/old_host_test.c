/* A host built against the frozen plugin ABI 1.1 header (old_plugin_headers/), as a Kestrel
 * release before 1.2 would be: it dlopen()s today's plugin given on the command line, hands it a
 * 1.1 host table with host_minor 1, and drives it only through the 1.1 slots (init,
 * device_count, device_get_caps, device_open, buffers, op_query / op_execute of an F32 ADD with
 * stream NULL, shutdown). A 1.4 plugin must serve such a host without its instance slots.
 *
 *   old_host_test <plugin.so>      exit 0: pass, 1: fail (the reason on stderr)
 */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kestrel/plugin_api.h"

#if KESTREL_PLUGIN_API_MINOR != 1
#error "old_host_test.c must be compiled against the frozen 1.1 header (tests/abi/old_plugin_headers)"
#endif

struct kestrel_plugin_status {
  int code;
  char message[512];
};

static int g_log_lines;

static void HostLog(void* ctx, kestrel_plugin_log_level_t level, const char* msg, size_t len) {
  (void)ctx;
  (void)level;
  (void)msg;
  (void)len;
  ++g_log_lines;
}
static void* HostAlloc(void* ctx, size_t size, size_t alignment) {
  void* p = NULL;
  (void)ctx;
  if (alignment < sizeof(void*)) alignment = sizeof(void*);
  return posix_memalign(&p, alignment, size ? size : 1) == 0 ? p : NULL;
}
static void HostFree(void* ctx, void* p) {
  (void)ctx;
  free(p);
}
static kestrel_plugin_status_t* HostStatus(void* ctx, kestrel_plugin_status_code_t code,
                                           const char* msg, size_t len) {
  kestrel_plugin_status_t* s = (kestrel_plugin_status_t*)calloc(1, sizeof *s);
  (void)ctx;
  if (s == NULL) return NULL;
  s->code = (int)code;
  if (len >= sizeof s->message) len = sizeof s->message - 1;
  if (msg != NULL) memcpy(s->message, msg, len);
  return s;
}

static int Ok(kestrel_plugin_status_t* s, const char* what) {
  if (s == NULL) return 1;
  fprintf(stderr, "FAIL: %s: code %d: %s\n", what, s->code, s->message);
  free(s);
  return 0;
}

static kestrel_tensor_arg_t Arg(kestrel_plugin_buffer_t* b, int64_t n) {
  kestrel_tensor_arg_t a;
  memset(&a, 0, sizeof a);
  a.desc.struct_size = sizeof(kestrel_tensor_desc_t);
  a.desc.dtype = KESTREL_DTYPE_F32;
  a.desc.rank = 2;
  a.desc.dims[0] = 1;
  a.desc.dims[1] = n;
  a.buffer = b;
  return a;
}

int main(int argc, char** argv) {
  enum { N = 8 };
  kestrel_host_api_t host = {sizeof(kestrel_host_api_t), KESTREL_PLUGIN_API_MAJOR, 1, 0, NULL,
                             HostLog, HostAlloc, HostFree, HostStatus};
  const kestrel_plugin_api_t* api = NULL;
  kestrel_plugin_get_api_fn get_api;
  kestrel_plugin_device_t* dev = NULL;
  kestrel_plugin_buffer_t *a = NULL, *b = NULL, *o = NULL;
  kestrel_device_caps_t caps;
  kestrel_op_support_t support = {sizeof(kestrel_op_support_t), 0, 0};
  kestrel_tensor_arg_t in[2], out[1];
  kestrel_op_desc_t op;
  float x[N], y[N], z[N];
  char reason[256] = {0};
  void* lib;
  int i;

  if (argc != 2) {
    fprintf(stderr, "usage: old_host_test <plugin.so>\n");
    return 2;
  }
  lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (lib == NULL) {
    fprintf(stderr, "FAIL: dlopen: %s\n", dlerror());
    return 1;
  }
  *(void**)(&get_api) = dlsym(lib, KESTREL_PLUGIN_ENTRY_SYMBOL);
  if (get_api == NULL) {
    fprintf(stderr, "FAIL: no %s\n", KESTREL_PLUGIN_ENTRY_SYMBOL);
    return 1;
  }
  if (!Ok(get_api(&host, KESTREL_PLUGIN_API_MAJOR, 1, &api), "get_api")) return 1;
  if (api == NULL || api->major != KESTREL_PLUGIN_API_MAJOR || api->struct_size < 8) {
    fprintf(stderr, "FAIL: no usable table\n");
    return 1;
  }
  /* A 1.1 host reads only what its own table has: a longer (newer) table is fine. */
  if (api->struct_size < offsetof(kestrel_plugin_api_t, op_execute) + sizeof(void*)) {
    fprintf(stderr, "FAIL: table shorter than 1.0\n");
    return 1;
  }
  printf("plugin '%s' %s speaks plugin ABI %u.%u (table %u bytes); this host speaks 1.1 (%u)\n",
         api->name, api->version, api->major, api->minor, api->struct_size,
         (unsigned)sizeof(kestrel_plugin_api_t));
  if (!Ok(api->init(NULL, 0), "init")) return 1;
  if (api->device_count(reason, sizeof reason) == 0) {
    fprintf(stderr, "FAIL: no devices: %s\n", reason);
    return 1;
  }
  memset(&caps, 0, sizeof caps);
  caps.struct_size = sizeof caps;
  if (!Ok(api->device_get_caps(0, &caps), "device_get_caps")) return 1;
  if (!Ok(api->device_open(0, &dev), "device_open")) return 1;
  if (!Ok(api->buffer_alloc(dev, N * 4, 0, &a), "buffer_alloc a") ||
      !Ok(api->buffer_alloc(dev, N * 4, 0, &b), "buffer_alloc b") ||
      !Ok(api->buffer_alloc(dev, N * 4, 0, &o), "buffer_alloc out")) {
    return 1;
  }
  for (i = 0; i < N; ++i) {
    x[i] = (float)i * 0.5f;
    y[i] = 3.0f - (float)i;
    z[i] = -1.0f;
  }
  if (!Ok(api->buffer_write(dev, NULL, a, 0, x, sizeof x), "buffer_write a") ||
      !Ok(api->buffer_write(dev, NULL, b, 0, y, sizeof y), "buffer_write b")) {
    return 1;
  }
  in[0] = Arg(a, N);
  in[1] = Arg(b, N);
  out[0] = Arg(o, N);
  memset(&op, 0, sizeof op);
  op.struct_size = sizeof op;
  op.kind = KESTREL_OP_ADD;
  op.op_version = 1;
  op.n_inputs = 2;
  op.n_outputs = 1;
  op.inputs = in;
  op.outputs = out;
  if (!Ok(api->op_query(dev, &op, &support), "op_query")) return 1;
  if (support.level == KESTREL_OP_UNSUPPORTED) {
    fprintf(stderr, "FAIL: device '%s' does not claim F32 ADD\n", caps.name);
    return 1;
  }
  if (!Ok(api->op_execute(dev, NULL, &op, NULL), "op_execute")) return 1;
  if (!Ok(api->buffer_read(dev, NULL, o, 0, z, sizeof z), "buffer_read")) return 1;
  for (i = 0; i < N; ++i) {
    if (z[i] != x[i] + y[i]) {
      fprintf(stderr, "FAIL: out[%d] = %g, want %g\n", i, z[i], x[i] + y[i]);
      return 1;
    }
  }
  api->buffer_free(dev, a);
  api->buffer_free(dev, b);
  api->buffer_free(dev, o);
  api->device_close(dev);
  if (api->shutdown != NULL) api->shutdown();
  printf("PASS: device '%s' ran ADD for a 1.1 host (%d log line(s) through the 1.1 host table)\n",
         caps.name, g_log_lines);
  return 0;
}
