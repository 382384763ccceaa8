/* The released layout (plugin ABI 1.0) of every struct in hal/include/kestrel/plugin_api.h on
 * x86-64 LP64, frozen; see sizeof_test.c for the rules. A separate translation unit because the
 * plugin header is meant to be used on its own (vendors include only it). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kestrel/plugin_api.h"

#if defined(__x86_64__) && defined(__LP64__)

#define KESTREL_CHECK_SIZE(type, size) \
  _Static_assert(sizeof(type) == (size), "sizeof(" #type ") changed: released layout broken")
#define KESTREL_CHECK_OFFSET(type, field, offset)                  \
  _Static_assert(offsetof(type, field) == (offset), "offsetof(" #type ", " #field \
                 ") changed: released layout broken")

KESTREL_CHECK_SIZE(kestrel_plugin_status_code_t, 4);
KESTREL_CHECK_SIZE(kestrel_plugin_log_level_t, 4);
KESTREL_CHECK_SIZE(kestrel_dtype_t, 4);

KESTREL_CHECK_SIZE(kestrel_host_api_t, 48);
KESTREL_CHECK_OFFSET(kestrel_host_api_t, struct_size, 0);
KESTREL_CHECK_OFFSET(kestrel_host_api_t, major, 2);
KESTREL_CHECK_OFFSET(kestrel_host_api_t, minor, 4);
KESTREL_CHECK_OFFSET(kestrel_host_api_t, reserved, 6);
KESTREL_CHECK_OFFSET(kestrel_host_api_t, host_ctx, 8);
KESTREL_CHECK_OFFSET(kestrel_host_api_t, log, 16);
KESTREL_CHECK_OFFSET(kestrel_host_api_t, alloc, 24);
KESTREL_CHECK_OFFSET(kestrel_host_api_t, free, 32);
KESTREL_CHECK_OFFSET(kestrel_host_api_t, status_create, 40);
KESTREL_CHECK_SIZE(kestrel_tensor_desc_t, 80);
KESTREL_CHECK_OFFSET(kestrel_tensor_desc_t, struct_size, 0);
KESTREL_CHECK_OFFSET(kestrel_tensor_desc_t, dtype, 4);
KESTREL_CHECK_OFFSET(kestrel_tensor_desc_t, rank, 8);
KESTREL_CHECK_OFFSET(kestrel_tensor_desc_t, reserved, 12);
KESTREL_CHECK_OFFSET(kestrel_tensor_desc_t, dims, 16);
KESTREL_CHECK_OFFSET(kestrel_tensor_desc_t, strides, 48);
KESTREL_CHECK_SIZE(kestrel_device_caps_t, 240);
KESTREL_CHECK_OFFSET(kestrel_device_caps_t, accuracy_tier, 232); /* since 1.4 */
KESTREL_CHECK_OFFSET(kestrel_device_caps_t, reserved2, 236);
KESTREL_CHECK_OFFSET(kestrel_device_caps_t, struct_size, 0);
KESTREL_CHECK_OFFSET(kestrel_device_caps_t, kind, 4);
KESTREL_CHECK_OFFSET(kestrel_device_caps_t, name, 8);
KESTREL_CHECK_OFFSET(kestrel_device_caps_t, description, 72);
KESTREL_CHECK_OFFSET(kestrel_device_caps_t, memory_bytes, 200);
KESTREL_CHECK_OFFSET(kestrel_device_caps_t, host_visible, 208);
KESTREL_CHECK_OFFSET(kestrel_device_caps_t, async, 209);
KESTREL_CHECK_OFFSET(kestrel_device_caps_t, reserved, 210);
KESTREL_CHECK_OFFSET(kestrel_device_caps_t, dtype_mask, 216);
KESTREL_CHECK_OFFSET(kestrel_device_caps_t, weight_dtype_mask, 224);
KESTREL_CHECK_SIZE(kestrel_op_rmsnorm_params_t, 8);
KESTREL_CHECK_OFFSET(kestrel_op_rmsnorm_params_t, struct_size, 0);
KESTREL_CHECK_OFFSET(kestrel_op_rmsnorm_params_t, eps, 4);
KESTREL_CHECK_SIZE(kestrel_op_rope_params_t, 20);
KESTREL_CHECK_OFFSET(kestrel_op_rope_params_t, struct_size, 0);
KESTREL_CHECK_OFFSET(kestrel_op_rope_params_t, style, 4);
KESTREL_CHECK_OFFSET(kestrel_op_rope_params_t, n_rot, 8);
KESTREL_CHECK_OFFSET(kestrel_op_rope_params_t, freq_base, 12);
KESTREL_CHECK_OFFSET(kestrel_op_rope_params_t, freq_scale, 16);
/* 1.3 appended window (32 -> 36 bytes); the 1.0 prefix is unchanged. */
KESTREL_CHECK_SIZE(kestrel_op_attention_params_t, 36);
KESTREL_CHECK_OFFSET(kestrel_op_attention_params_t, struct_size, 0);
KESTREL_CHECK_OFFSET(kestrel_op_attention_params_t, n_heads, 4);
KESTREL_CHECK_OFFSET(kestrel_op_attention_params_t, n_kv_heads, 8);
KESTREL_CHECK_OFFSET(kestrel_op_attention_params_t, head_dim, 12);
KESTREL_CHECK_OFFSET(kestrel_op_attention_params_t, block_size, 16);
KESTREL_CHECK_OFFSET(kestrel_op_attention_params_t, causal, 20);
KESTREL_CHECK_OFFSET(kestrel_op_attention_params_t, scale, 24);
KESTREL_CHECK_OFFSET(kestrel_op_attention_params_t, tree_mask, 28);
KESTREL_CHECK_OFFSET(kestrel_op_attention_params_t, window, 32);
KESTREL_CHECK_SIZE(kestrel_op_embedding_params_t, 8);
KESTREL_CHECK_OFFSET(kestrel_op_embedding_params_t, struct_size, 0);
KESTREL_CHECK_OFFSET(kestrel_op_embedding_params_t, scale, 4);
KESTREL_CHECK_SIZE(kestrel_op_moe_params_t, 36);
KESTREL_CHECK_OFFSET(kestrel_op_moe_params_t, struct_size, 0);
KESTREL_CHECK_OFFSET(kestrel_op_moe_params_t, n_experts, 4);
KESTREL_CHECK_OFFSET(kestrel_op_moe_params_t, top_k, 8);
KESTREL_CHECK_OFFSET(kestrel_op_moe_params_t, routing, 12);
KESTREL_CHECK_OFFSET(kestrel_op_moe_params_t, activation, 16);
KESTREL_CHECK_OFFSET(kestrel_op_moe_params_t, first_expert, 20);
KESTREL_CHECK_OFFSET(kestrel_op_moe_params_t, n_local_experts, 24);
KESTREL_CHECK_OFFSET(kestrel_op_moe_params_t, flags, 28);
KESTREL_CHECK_OFFSET(kestrel_op_moe_params_t, n_shared_experts, 32);
KESTREL_CHECK_SIZE(kestrel_tensor_arg_t, 104);
KESTREL_CHECK_OFFSET(kestrel_tensor_arg_t, desc, 0);
KESTREL_CHECK_OFFSET(kestrel_tensor_arg_t, buffer, 80);
KESTREL_CHECK_OFFSET(kestrel_tensor_arg_t, offset, 88);
KESTREL_CHECK_OFFSET(kestrel_tensor_arg_t, weight, 96);
KESTREL_CHECK_SIZE(kestrel_op_desc_t, 56);
KESTREL_CHECK_OFFSET(kestrel_op_desc_t, struct_size, 0);
KESTREL_CHECK_OFFSET(kestrel_op_desc_t, kind, 4);
KESTREL_CHECK_OFFSET(kestrel_op_desc_t, op_version, 8);
KESTREL_CHECK_OFFSET(kestrel_op_desc_t, n_inputs, 12);
KESTREL_CHECK_OFFSET(kestrel_op_desc_t, n_outputs, 16);
KESTREL_CHECK_OFFSET(kestrel_op_desc_t, reserved, 20);
KESTREL_CHECK_OFFSET(kestrel_op_desc_t, inputs, 24);
KESTREL_CHECK_OFFSET(kestrel_op_desc_t, outputs, 32);
KESTREL_CHECK_OFFSET(kestrel_op_desc_t, params, 40);
KESTREL_CHECK_OFFSET(kestrel_op_desc_t, params_size, 48);
KESTREL_CHECK_SIZE(kestrel_op_support_t, 16);
KESTREL_CHECK_OFFSET(kestrel_op_support_t, struct_size, 0);
KESTREL_CHECK_OFFSET(kestrel_op_support_t, level, 4);
KESTREL_CHECK_OFFSET(kestrel_op_support_t, workspace_bytes, 8);
KESTREL_CHECK_SIZE(kestrel_plugin_option_t, 16);
KESTREL_CHECK_OFFSET(kestrel_plugin_option_t, key, 0);
KESTREL_CHECK_OFFSET(kestrel_plugin_option_t, value, 8);
KESTREL_CHECK_SIZE(kestrel_plugin_api_t, 256);
KESTREL_CHECK_OFFSET(kestrel_plugin_api_t, device_set_options, 208); /* since 1.1 */
KESTREL_CHECK_OFFSET(kestrel_plugin_api_t, instance_create, 216);    /* since 1.4 */
KESTREL_CHECK_OFFSET(kestrel_plugin_api_t, instance_destroy, 224);
KESTREL_CHECK_OFFSET(kestrel_plugin_api_t, instance_device_count, 232);
KESTREL_CHECK_OFFSET(kestrel_plugin_api_t, instance_device_get_caps, 240);
KESTREL_CHECK_OFFSET(kestrel_plugin_api_t, instance_device_open, 248);
KESTREL_CHECK_OFFSET(kestrel_plugin_api_t, struct_size, 0);
KESTREL_CHECK_OFFSET(kestrel_plugin_api_t, major, 2);
KESTREL_CHECK_OFFSET(kestrel_plugin_api_t, minor, 4);
KESTREL_CHECK_OFFSET(kestrel_plugin_api_t, reserved, 6);
KESTREL_CHECK_OFFSET(kestrel_plugin_api_t, name, 8);
KESTREL_CHECK_OFFSET(kestrel_plugin_api_t, version, 16);
KESTREL_CHECK_OFFSET(kestrel_plugin_api_t, init, 24);
KESTREL_CHECK_OFFSET(kestrel_plugin_api_t, shutdown, 32);
KESTREL_CHECK_OFFSET(kestrel_plugin_api_t, device_count, 40);
KESTREL_CHECK_OFFSET(kestrel_plugin_api_t, device_get_caps, 48);
KESTREL_CHECK_OFFSET(kestrel_plugin_api_t, device_open, 56);
KESTREL_CHECK_OFFSET(kestrel_plugin_api_t, device_close, 64);
KESTREL_CHECK_OFFSET(kestrel_plugin_api_t, buffer_alloc, 72);
KESTREL_CHECK_OFFSET(kestrel_plugin_api_t, buffer_free, 80);
KESTREL_CHECK_OFFSET(kestrel_plugin_api_t, buffer_write, 88);
KESTREL_CHECK_OFFSET(kestrel_plugin_api_t, buffer_read, 96);
KESTREL_CHECK_OFFSET(kestrel_plugin_api_t, buffer_copy, 104);
KESTREL_CHECK_OFFSET(kestrel_plugin_api_t, buffer_map, 112);
KESTREL_CHECK_OFFSET(kestrel_plugin_api_t, stream_create, 120);
KESTREL_CHECK_OFFSET(kestrel_plugin_api_t, stream_destroy, 128);
KESTREL_CHECK_OFFSET(kestrel_plugin_api_t, stream_synchronize, 136);
KESTREL_CHECK_OFFSET(kestrel_plugin_api_t, event_record, 144);
KESTREL_CHECK_OFFSET(kestrel_plugin_api_t, stream_wait_event, 152);
KESTREL_CHECK_OFFSET(kestrel_plugin_api_t, event_synchronize, 160);
KESTREL_CHECK_OFFSET(kestrel_plugin_api_t, event_destroy, 168);
KESTREL_CHECK_OFFSET(kestrel_plugin_api_t, weight_prepare, 176);
KESTREL_CHECK_OFFSET(kestrel_plugin_api_t, weight_release, 184);
KESTREL_CHECK_OFFSET(kestrel_plugin_api_t, op_query, 192);
KESTREL_CHECK_OFFSET(kestrel_plugin_api_t, op_execute, 200);

_Static_assert(KESTREL_PLUGIN_API_MAJOR == 1, "plugin ABI major changed: update this record");
_Static_assert(KESTREL_DTYPE_F32 == 1 && KESTREL_DTYPE_Q8_0 == 16 && KESTREL_DTYPE_Q4_0 == 17,
               "dtypes renumbered");
_Static_assert(KESTREL_DTYPE_Q4_1 == 18 && KESTREL_DTYPE_Q5_0 == 19 && KESTREL_DTYPE_Q5_1 == 20 &&
                   KESTREL_DTYPE_Q2_K == 21 && KESTREL_DTYPE_Q3_K == 22 &&
                   KESTREL_DTYPE_Q4_K == 23 && KESTREL_DTYPE_Q5_K == 24 && KESTREL_DTYPE_Q6_K == 25,
               "dtypes renumbered (GGUF formats since plugin ABI 1.2)");
_Static_assert(KESTREL_OP_EMBEDDING_GATHER == 1 && KESTREL_OP_PAGED_ATTENTION == 9 &&
                   KESTREL_OP_LOGITS == 10 && KESTREL_OP_MOE == 11 &&
                   KESTREL_OP_VENDOR_BASE == 0x10000,
               "op kinds renumbered");

int main(void) {
  puts("plugin_sizeof_test: released plugin ABI 1.0-1.4 layouts hold (checked at compile time)");
  return 0;
}

#else

int main(void) {
  puts("plugin_sizeof_test: layouts are recorded for x86-64 LP64 only; skipped");
  return 77;
}

#endif
