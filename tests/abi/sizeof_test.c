/* The released (v0.1) layout of every public C API struct on x86-64 LP64 (System V ABI), frozen.
 *
 * Public structs are append-only (GUIDE.md, "C ABI rules"): a field may only be added at the end,
 * and clients built against an older header pass a smaller struct_size. Reordering, resizing or
 * inserting a field silently breaks every compiled client; these compile-time checks make such a
 * change fail the build instead. Appending a field changes only that struct's sizeof: update the
 * KESTREL_CHECK_SIZE line and add a KESTREL_CHECK_OFFSET line for the new field, and never edit
 * an existing offset.
 *
 * Values recorded from the v0.1 headers with GCC 12 / Clang 14 on x86-64 Linux. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kestrel/kestrel.h"

#if defined(__x86_64__) && defined(__LP64__)

#define KESTREL_CHECK_SIZE(type, size) \
  _Static_assert(sizeof(type) == (size), "sizeof(" #type ") changed: released layout broken")
#define KESTREL_CHECK_OFFSET(type, field, offset)                  \
  _Static_assert(offsetof(type, field) == (offset), "offsetof(" #type ", " #field \
                 ") changed: released layout broken")

/* Enums stored in public structs or passed by value must stay int-sized. */
KESTREL_CHECK_SIZE(kestrel_status_code_t, 4);
KESTREL_CHECK_SIZE(kestrel_log_level_t, 4);
KESTREL_CHECK_SIZE(kestrel_device_kind_t, 4);
KESTREL_CHECK_SIZE(kestrel_stop_reason_t, 4);
KESTREL_CHECK_SIZE(bool, 1);

/* runtime.h */
KESTREL_CHECK_SIZE(kestrel_runtime_options_t, 40);
KESTREL_CHECK_OFFSET(kestrel_runtime_options_t, struct_size, 0);
KESTREL_CHECK_OFFSET(kestrel_runtime_options_t, plugin_path, 8);
KESTREL_CHECK_OFFSET(kestrel_runtime_options_t, log_callback, 16);
KESTREL_CHECK_OFFSET(kestrel_runtime_options_t, log_user_data, 24);
KESTREL_CHECK_OFFSET(kestrel_runtime_options_t, log_level, 32);
KESTREL_CHECK_SIZE(kestrel_plugin_info_t, 56);
KESTREL_CHECK_OFFSET(kestrel_plugin_info_t, struct_size, 0);
KESTREL_CHECK_OFFSET(kestrel_plugin_info_t, name, 8);
KESTREL_CHECK_OFFSET(kestrel_plugin_info_t, path, 16);
KESTREL_CHECK_OFFSET(kestrel_plugin_info_t, version, 24);
KESTREL_CHECK_OFFSET(kestrel_plugin_info_t, loaded, 32);
KESTREL_CHECK_OFFSET(kestrel_plugin_info_t, skip_reason, 40);
KESTREL_CHECK_OFFSET(kestrel_plugin_info_t, api_major, 48);
KESTREL_CHECK_OFFSET(kestrel_plugin_info_t, api_minor, 50);
KESTREL_CHECK_OFFSET(kestrel_plugin_info_t, device_count, 52);
KESTREL_CHECK_SIZE(kestrel_device_info_t, 72);
KESTREL_CHECK_OFFSET(kestrel_device_info_t, struct_size, 0);
KESTREL_CHECK_OFFSET(kestrel_device_info_t, name, 8);
KESTREL_CHECK_OFFSET(kestrel_device_info_t, plugin, 16);
KESTREL_CHECK_OFFSET(kestrel_device_info_t, description, 24);
KESTREL_CHECK_OFFSET(kestrel_device_info_t, kind, 32);
KESTREL_CHECK_OFFSET(kestrel_device_info_t, memory_bytes, 40);
KESTREL_CHECK_OFFSET(kestrel_device_info_t, host_visible, 48);
KESTREL_CHECK_OFFSET(kestrel_device_info_t, async, 49);
KESTREL_CHECK_OFFSET(kestrel_device_info_t, dtype_mask, 56);
KESTREL_CHECK_OFFSET(kestrel_device_info_t, weight_dtype_mask, 64);

/* model.h */
KESTREL_CHECK_SIZE(kestrel_model_options_t, 72);
KESTREL_CHECK_OFFSET(kestrel_model_options_t, struct_size, 0);
KESTREL_CHECK_OFFSET(kestrel_model_options_t, device, 8);
KESTREL_CHECK_OFFSET(kestrel_model_options_t, use_mmap, 16);
KESTREL_CHECK_OFFSET(kestrel_model_options_t, progress_callback, 24);
KESTREL_CHECK_OFFSET(kestrel_model_options_t, progress_user_data, 32);
KESTREL_CHECK_OFFSET(kestrel_model_options_t, metadata_only, 40);
KESTREL_CHECK_OFFSET(kestrel_model_options_t, memory_budget, 48);
KESTREL_CHECK_OFFSET(kestrel_model_options_t, expert_cache_policy, 56);
KESTREL_CHECK_OFFSET(kestrel_model_options_t, plan_context_length, 60);
KESTREL_CHECK_OFFSET(kestrel_model_options_t, plan_sequences, 64);
KESTREL_CHECK_OFFSET(kestrel_model_options_t, offload_flags, 68);
/* offload.h */
KESTREL_CHECK_SIZE(kestrel_memory_plan_info_t, 168);
KESTREL_CHECK_OFFSET(kestrel_memory_plan_info_t, device, 8);
KESTREL_CHECK_OFFSET(kestrel_memory_plan_info_t, experts_offloaded, 48);
KESTREL_CHECK_OFFSET(kestrel_memory_plan_info_t, expert_bytes, 56);
KESTREL_CHECK_OFFSET(kestrel_memory_plan_info_t, device_total_bytes, 112);
KESTREL_CHECK_OFFSET(kestrel_memory_plan_info_t, streamed_bytes, 120);
KESTREL_CHECK_OFFSET(kestrel_memory_plan_info_t, stream_prefetch_distance, 140);
KESTREL_CHECK_OFFSET(kestrel_memory_plan_info_t, host_resident_bytes, 144);
KESTREL_CHECK_OFFSET(kestrel_memory_plan_info_t, host_resident_tensors, 152);
KESTREL_CHECK_OFFSET(kestrel_memory_plan_info_t, stream_staging_bytes, 160);
KESTREL_CHECK_SIZE(kestrel_memory_stats_t, 104);
KESTREL_CHECK_OFFSET(kestrel_memory_stats_t, device, 8);
KESTREL_CHECK_OFFSET(kestrel_memory_stats_t, streamed_bytes_copied, 64);
KESTREL_CHECK_OFFSET(kestrel_memory_stats_t, stream_copy_wait_seconds, 72);
KESTREL_CHECK_OFFSET(kestrel_memory_stats_t, stream_file_bytes_read, 80);
KESTREL_CHECK_OFFSET(kestrel_memory_stats_t, stream_io_mode, 96);
KESTREL_CHECK_SIZE(kestrel_offload_stats_t, 128);
KESTREL_CHECK_OFFSET(kestrel_offload_stats_t, expert_hits, 8);
KESTREL_CHECK_OFFSET(kestrel_offload_stats_t, disk_read_seconds, 32);
KESTREL_CHECK_OFFSET(kestrel_offload_stats_t, io_mode, 72);
KESTREL_CHECK_OFFSET(kestrel_offload_stats_t, expert_slots, 80);
KESTREL_CHECK_OFFSET(kestrel_offload_stats_t, expert_prefetches, 88);
KESTREL_CHECK_OFFSET(kestrel_offload_stats_t, expert_prefetch_wait_seconds, 104);
KESTREL_CHECK_OFFSET(kestrel_offload_stats_t, expert_host_runs, 112);
KESTREL_CHECK_OFFSET(kestrel_offload_stats_t, expert_host_seconds, 120);
KESTREL_CHECK_SIZE(kestrel_model_info_t, 152);
KESTREL_CHECK_OFFSET(kestrel_model_info_t, struct_size, 0);
KESTREL_CHECK_OFFSET(kestrel_model_info_t, architecture, 8);
KESTREL_CHECK_OFFSET(kestrel_model_info_t, name, 16);
KESTREL_CHECK_OFFSET(kestrel_model_info_t, device, 24);
KESTREL_CHECK_OFFSET(kestrel_model_info_t, n_params, 32);
KESTREL_CHECK_OFFSET(kestrel_model_info_t, weight_bytes, 40);
KESTREL_CHECK_OFFSET(kestrel_model_info_t, n_layers, 48);
KESTREL_CHECK_OFFSET(kestrel_model_info_t, n_heads, 52);
KESTREL_CHECK_OFFSET(kestrel_model_info_t, n_kv_heads, 56);
KESTREL_CHECK_OFFSET(kestrel_model_info_t, n_embd, 60);
KESTREL_CHECK_OFFSET(kestrel_model_info_t, n_ff, 64);
KESTREL_CHECK_OFFSET(kestrel_model_info_t, head_dim, 68);
KESTREL_CHECK_OFFSET(kestrel_model_info_t, context_length, 72);
KESTREL_CHECK_OFFSET(kestrel_model_info_t, vocab_size, 76);
KESTREL_CHECK_OFFSET(kestrel_model_info_t, bos_id, 80);
KESTREL_CHECK_OFFSET(kestrel_model_info_t, eos_id, 84);
KESTREL_CHECK_OFFSET(kestrel_model_info_t, unk_id, 88);
KESTREL_CHECK_OFFSET(kestrel_model_info_t, pad_id, 92);
KESTREL_CHECK_OFFSET(kestrel_model_info_t, add_bos, 96);
KESTREL_CHECK_OFFSET(kestrel_model_info_t, rope_freq_base, 100);
KESTREL_CHECK_OFFSET(kestrel_model_info_t, rms_norm_eps, 104);
KESTREL_CHECK_OFFSET(kestrel_model_info_t, n_tensors, 108);
KESTREL_CHECK_OFFSET(kestrel_model_info_t, n_experts, 112);
KESTREL_CHECK_OFFSET(kestrel_model_info_t, n_experts_used, 116);
KESTREL_CHECK_OFFSET(kestrel_model_info_t, tokenizer_model, 120);
KESTREL_CHECK_OFFSET(kestrel_model_info_t, tokenizer_pre, 128);
KESTREL_CHECK_OFFSET(kestrel_model_info_t, has_chat_template, 136);
KESTREL_CHECK_OFFSET(kestrel_model_info_t, runnable, 137);
KESTREL_CHECK_OFFSET(kestrel_model_info_t, unsupported, 144);
KESTREL_CHECK_SIZE(kestrel_tensor_type_summary_t, 40);
KESTREL_CHECK_OFFSET(kestrel_tensor_type_summary_t, struct_size, 0);
KESTREL_CHECK_OFFSET(kestrel_tensor_type_summary_t, type_name, 8);
KESTREL_CHECK_OFFSET(kestrel_tensor_type_summary_t, n_tensors, 16);
KESTREL_CHECK_OFFSET(kestrel_tensor_type_summary_t, n_elements, 24);
KESTREL_CHECK_OFFSET(kestrel_tensor_type_summary_t, n_bytes, 32);
/* model.h, tokenizer options, tokenizer info and chat templates (new in 0.2) */
KESTREL_CHECK_SIZE(kestrel_tokenize_options_t, 8);
KESTREL_CHECK_OFFSET(kestrel_tokenize_options_t, add_special, 4);
KESTREL_CHECK_OFFSET(kestrel_tokenize_options_t, parse_special, 5);
KESTREL_CHECK_SIZE(kestrel_tokenizer_info_t, 72);
KESTREL_CHECK_OFFSET(kestrel_tokenizer_info_t, kind, 8);
KESTREL_CHECK_OFFSET(kestrel_tokenizer_info_t, pre_tokenizer, 16);
KESTREL_CHECK_OFFSET(kestrel_tokenizer_info_t, vocab_size, 24);
KESTREL_CHECK_OFFSET(kestrel_tokenizer_info_t, bos_id, 28);
KESTREL_CHECK_OFFSET(kestrel_tokenizer_info_t, eos_id, 32);
KESTREL_CHECK_OFFSET(kestrel_tokenizer_info_t, add_bos, 36);
KESTREL_CHECK_OFFSET(kestrel_tokenizer_info_t, add_eos, 37);
KESTREL_CHECK_OFFSET(kestrel_tokenizer_info_t, n_end_of_generation, 40);
KESTREL_CHECK_OFFSET(kestrel_tokenizer_info_t, chat_template, 48);
KESTREL_CHECK_OFFSET(kestrel_tokenizer_info_t, chat_template_family, 56);
KESTREL_CHECK_OFFSET(kestrel_tokenizer_info_t, chat_template_error, 64);
KESTREL_CHECK_SIZE(kestrel_chat_message_t, 32);
KESTREL_CHECK_OFFSET(kestrel_chat_message_t, role, 0);
KESTREL_CHECK_OFFSET(kestrel_chat_message_t, role_length, 8);
KESTREL_CHECK_OFFSET(kestrel_chat_message_t, content, 16);
KESTREL_CHECK_OFFSET(kestrel_chat_message_t, content_length, 24);
KESTREL_CHECK_SIZE(kestrel_chat_template_options_t, 24);
KESTREL_CHECK_OFFSET(kestrel_chat_template_options_t, add_generation_prompt, 4);
KESTREL_CHECK_OFFSET(kestrel_chat_template_options_t, template_text, 8);
KESTREL_CHECK_OFFSET(kestrel_chat_template_options_t, template_length, 16);

/* session.h */
KESTREL_CHECK_SIZE(kestrel_sampler_options_t, 64);  /* 40 in 0.1 */
KESTREL_CHECK_OFFSET(kestrel_sampler_options_t, struct_size, 0);
KESTREL_CHECK_OFFSET(kestrel_sampler_options_t, temperature, 4);
KESTREL_CHECK_OFFSET(kestrel_sampler_options_t, top_k, 8);
KESTREL_CHECK_OFFSET(kestrel_sampler_options_t, top_p, 12);
KESTREL_CHECK_OFFSET(kestrel_sampler_options_t, min_p, 16);
KESTREL_CHECK_OFFSET(kestrel_sampler_options_t, repetition_penalty, 20);
KESTREL_CHECK_OFFSET(kestrel_sampler_options_t, repetition_window, 24);
KESTREL_CHECK_OFFSET(kestrel_sampler_options_t, seed, 32);
KESTREL_CHECK_OFFSET(kestrel_sampler_options_t, logit_bias, 40);
KESTREL_CHECK_OFFSET(kestrel_sampler_options_t, n_logit_bias, 48);
KESTREL_CHECK_OFFSET(kestrel_sampler_options_t, ignore_eos, 56);
KESTREL_CHECK_SIZE(kestrel_logit_bias_t, 8);
KESTREL_CHECK_SIZE(kestrel_token_logprob_t, 8);
KESTREL_CHECK_SIZE(kestrel_session_options_t, 48);  /* 32 in 0.1, 40 with kv_type */
KESTREL_CHECK_OFFSET(kestrel_session_options_t, struct_size, 0);
KESTREL_CHECK_OFFSET(kestrel_session_options_t, context_length, 4);
KESTREL_CHECK_OFFSET(kestrel_session_options_t, kv_block_size, 8);
KESTREL_CHECK_OFFSET(kestrel_session_options_t, sampler, 16);
KESTREL_CHECK_OFFSET(kestrel_session_options_t, n_threads, 24);
KESTREL_CHECK_OFFSET(kestrel_session_options_t, kv_type, 32);
KESTREL_CHECK_OFFSET(kestrel_session_options_t, speculative, 40);
KESTREL_CHECK_OFFSET(kestrel_engine_request_options_t, add_bos, 56);
KESTREL_CHECK_OFFSET(kestrel_engine_request_options_t, parse_special, 64);
KESTREL_CHECK_OFFSET(kestrel_engine_request_options_t, speculative, 72);
KESTREL_CHECK_OFFSET(kestrel_engine_request_options_t, n_probs, 80);
KESTREL_CHECK_OFFSET(kestrel_engine_request_options_t, on_logprobs, 88);
KESTREL_CHECK_OFFSET(kestrel_engine_request_options_t, grammar, 96);
KESTREL_CHECK_OFFSET(kestrel_engine_request_options_t, json_schema, 104);
KESTREL_CHECK_SIZE(kestrel_engine_request_options_t, 112);  /* 64 in 0.1, 96 with on_logprobs */
KESTREL_CHECK_SIZE(kestrel_embed_options_t, 12);
KESTREL_CHECK_OFFSET(kestrel_embed_options_t, pooling, 4);
KESTREL_CHECK_OFFSET(kestrel_embed_options_t, add_bos, 8);
KESTREL_CHECK_OFFSET(kestrel_embed_options_t, parse_special, 9);
KESTREL_CHECK_SIZE(kestrel_speculative_options_t, 40);
KESTREL_CHECK_OFFSET(kestrel_speculative_options_t, method, 4);
KESTREL_CHECK_OFFSET(kestrel_speculative_options_t, max_draft_tokens, 8);
KESTREL_CHECK_OFFSET(kestrel_speculative_options_t, tree_budget, 12);
KESTREL_CHECK_OFFSET(kestrel_speculative_options_t, draft_model, 16);
KESTREL_CHECK_OFFSET(kestrel_speculative_options_t, heads_path, 24);
KESTREL_CHECK_OFFSET(kestrel_speculative_options_t, self_draft_layers, 32);
KESTREL_CHECK_OFFSET(kestrel_speculative_stats_t, steps, 16);
KESTREL_CHECK_OFFSET(kestrel_speculative_stats_t, mean_accepted, 48);
KESTREL_CHECK_OFFSET(kestrel_speculative_stats_t, steps_by_method, 72);
KESTREL_CHECK_OFFSET(kestrel_speculative_stats_t, probes, 264);
KESTREL_CHECK_OFFSET(kestrel_speculative_stats_t, acceptance_by_method, 296);
KESTREL_CHECK_SIZE(kestrel_speculative_stats_t, 368);
_Static_assert(KESTREL_SPEC_OFF == 0 && KESTREL_SPEC_AUTO == 1 && KESTREL_SPEC_DRAFT == 2 &&
                   KESTREL_SPEC_SELF == 3 && KESTREL_SPEC_NGRAM == 4 &&
                   KESTREL_SPEC_LOOKAHEAD == 5 && KESTREL_SPEC_MEDUSA == 6 &&
                   KESTREL_SPEC_EAGLE == 7,
               "speculative methods renumbered");
KESTREL_CHECK_SIZE(kestrel_generate_options_t, 88);  /* 48 in 0.1, 72 with on_logprobs */
KESTREL_CHECK_OFFSET(kestrel_generate_options_t, grammar, 72);
KESTREL_CHECK_OFFSET(kestrel_generate_options_t, json_schema, 80);
KESTREL_CHECK_OFFSET(kestrel_generate_options_t, struct_size, 0);
KESTREL_CHECK_OFFSET(kestrel_generate_options_t, max_new_tokens, 4);
KESTREL_CHECK_OFFSET(kestrel_generate_options_t, stop_strings, 8);
KESTREL_CHECK_OFFSET(kestrel_generate_options_t, n_stop_strings, 16);
KESTREL_CHECK_OFFSET(kestrel_generate_options_t, on_token, 24);
KESTREL_CHECK_OFFSET(kestrel_generate_options_t, user_data, 32);
KESTREL_CHECK_OFFSET(kestrel_generate_options_t, add_bos, 40);
KESTREL_CHECK_OFFSET(kestrel_generate_options_t, keep_context, 41);
KESTREL_CHECK_OFFSET(kestrel_generate_options_t, parse_special, 48);
KESTREL_CHECK_OFFSET(kestrel_generate_options_t, n_probs, 56);
KESTREL_CHECK_OFFSET(kestrel_generate_options_t, on_logprobs, 64);
KESTREL_CHECK_SIZE(kestrel_generate_stats_t, 56);
KESTREL_CHECK_OFFSET(kestrel_generate_stats_t, struct_size, 0);
KESTREL_CHECK_OFFSET(kestrel_generate_stats_t, n_prompt_tokens, 4);
KESTREL_CHECK_OFFSET(kestrel_generate_stats_t, n_generated_tokens, 8);
KESTREL_CHECK_OFFSET(kestrel_generate_stats_t, prefill_ms, 16);
KESTREL_CHECK_OFFSET(kestrel_generate_stats_t, decode_ms, 24);
KESTREL_CHECK_OFFSET(kestrel_generate_stats_t, prefill_tokens_per_s, 32);
KESTREL_CHECK_OFFSET(kestrel_generate_stats_t, decode_tokens_per_s, 40);
KESTREL_CHECK_OFFSET(kestrel_generate_stats_t, stop_reason, 48);
KESTREL_CHECK_SIZE(kestrel_engine_options_t, 64);  /* 40 in 0.1, 48 in 0.2 */
KESTREL_CHECK_OFFSET(kestrel_engine_options_t, struct_size, 0);
KESTREL_CHECK_OFFSET(kestrel_engine_options_t, kv_cache_bytes, 8);
KESTREL_CHECK_OFFSET(kestrel_engine_options_t, kv_block_size, 16);
KESTREL_CHECK_OFFSET(kestrel_engine_options_t, max_batch_tokens, 20);
KESTREL_CHECK_OFFSET(kestrel_engine_options_t, max_sequences, 24);
KESTREL_CHECK_OFFSET(kestrel_engine_options_t, prefix_cache, 28);
KESTREL_CHECK_OFFSET(kestrel_engine_options_t, context_length, 32);
KESTREL_CHECK_OFFSET(kestrel_engine_options_t, n_threads, 36);
KESTREL_CHECK_OFFSET(kestrel_engine_options_t, kv_type, 40);
KESTREL_CHECK_OFFSET(kestrel_engine_options_t, kv_swap_bytes, 48);
KESTREL_CHECK_OFFSET(kestrel_engine_options_t, kv_swap_policy, 56);
_Static_assert(KESTREL_KV_F32 == 0 && KESTREL_KV_F16 == 1, "KV types renumbered");

/* kestrel/package.h (since 0.3). */
KESTREL_CHECK_SIZE(kestrel_pack_options_t, 48);
KESTREL_CHECK_OFFSET(kestrel_pack_options_t, struct_size, 0);
KESTREL_CHECK_OFFSET(kestrel_pack_options_t, devices, 8);
KESTREL_CHECK_OFFSET(kestrel_pack_options_t, n_devices, 16);
KESTREL_CHECK_OFFSET(kestrel_pack_options_t, draft_path, 24);
KESTREL_CHECK_OFFSET(kestrel_pack_options_t, progress_callback, 32);
KESTREL_CHECK_OFFSET(kestrel_pack_options_t, progress_user_data, 40);

/* Values of released enumerators are part of the ABI too. */
_Static_assert(KESTREL_STATUS_INVALID_ARGUMENT == 3 && KESTREL_STATUS_DATA_LOSS == 15,
               "status codes renumbered");
_Static_assert(KESTREL_LOG_DEBUG == 0 && KESTREL_LOG_OFF == 4, "log levels renumbered");
_Static_assert(KESTREL_DEVICE_CPU == 1 && KESTREL_DEVICE_ACCELERATOR == 4,
               "device kinds renumbered");
_Static_assert(KESTREL_STOP_NONE == 0 && KESTREL_STOP_EOS == 1 && KESTREL_STOP_MAX_TOKENS == 2 &&
                   KESTREL_STOP_STOP_STRING == 3 && KESTREL_STOP_CALLBACK == 4 &&
                   KESTREL_STOP_CONTEXT_FULL == 5 && KESTREL_STOP_CANCELLED == 6,
               "stop reasons renumbered");
_Static_assert(KESTREL_DTYPE_MASK_F32 == (UINT64_C(1) << 1) &&
                   KESTREL_DTYPE_MASK_Q8_0 == (UINT64_C(1) << 16) &&
                   KESTREL_DTYPE_MASK_Q4_0 == (UINT64_C(1) << 17),
               "dtype mask bits renumbered");
_Static_assert(KESTREL_DTYPE_MASK_Q4_1 == (UINT64_C(1) << 18) &&
                   KESTREL_DTYPE_MASK_Q6_K == (UINT64_C(1) << 25),
               "dtype mask bits renumbered (GGUF formats since 0.2)");

int main(void) {
  puts("sizeof_test: released v0.1 layouts hold (checked at compile time)");
  return 0;
}

#else /* not x86-64 LP64 */

int main(void) {
  puts("sizeof_test: layouts are recorded for x86-64 LP64 only; skipped");
  return 77; /* ctest SKIP_RETURN_CODE */
}

#endif
