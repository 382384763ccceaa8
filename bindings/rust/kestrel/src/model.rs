//! `Model`: weights on a device plus their tokenizer; immutable and shared.
use std::os::raw::c_char;
use std::ptr::NonNull;
use std::sync::Arc;

use kestrel_sys as sys;

use crate::engine::{Engine, EngineOptions};
use crate::error::{check, Result};
use crate::runtime::LogSink;
use crate::session::{Session, SessionOptions};
use crate::util::{read_buffer, string_from, string_from_bytes};

/// Options of [`crate::Runtime::load_model_with`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ModelOptions {
    /// Device name ("ref", "cpu", "opencl:1", ...). `None`: the first device of the preferred
    /// plugin order cpu, ref.
    pub device: Option<String>,
    /// Map the file instead of reading it (default true).
    pub use_mmap: bool,
    /// Read the metadata only (`kestrel_model_options_t.metadata_only`, default false): any
    /// readable GGUF loads, no weights are prepared, [`ModelInfo::runnable`] and
    /// [`ModelInfo::unsupported`] say what this build cannot run; tokenizing and chat templates
    /// work when its tokenizer is supported; sessions and engines refuse it.
    pub metadata_only: bool,
    /// Memory budgets "DEVICE=SIZE[,...]" (`kestrel_model_options_t.memory_budget`, e.g.
    /// "host=60%"); `None`: everything resident. See `kestrel/offload.h`.
    pub memory_budget: Option<String>,
    /// Which cached expert a miss replaces (default LRU).
    pub expert_cache_policy: ExpertCachePolicy,
    /// KV tokens per sequence the plan reserves (0: the trained context).
    pub plan_context_length: u32,
    /// Sequences the plan reserves KV for (0 or 1: one).
    pub plan_sequences: u32,
    /// `KESTREL_OFFLOAD_FLAG_*` bits ([`OFFLOAD_FLAG_NO_DIRECT_IO`], [`OFFLOAD_FLAG_NO_PREFETCH`]).
    pub offload_flags: u32,
}

/// Read experts with pread, not O_DIRECT.
pub const OFFLOAD_FLAG_NO_DIRECT_IO: u32 = sys::KESTREL_OFFLOAD_FLAG_NO_DIRECT_IO;
/// Do not read the next layer's likely experts ahead.
pub const OFFLOAD_FLAG_NO_PREFETCH: u32 = sys::KESTREL_OFFLOAD_FLAG_NO_PREFETCH;
/// A miss always fetches the expert into the device's cache.
pub const OFFLOAD_FLAG_MISS_FETCH: u32 = sys::KESTREL_OFFLOAD_FLAG_MISS_FETCH;
/// A miss always runs on the host device (when the model's device is not the host).
pub const OFFLOAD_FLAG_MISS_ON_HOST: u32 = sys::KESTREL_OFFLOAD_FLAG_MISS_ON_HOST;

/// Which cached expert a miss replaces (`kestrel_expert_cache_policy_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpertCachePolicy {
    /// The one used longest ago.
    Lru,
    /// The one used least often since load (ties: longest ago).
    Lfu,
}

/// The plan of a model loaded with a memory budget (`kestrel_memory_plan_info_t`).
#[derive(Clone, Debug)]
pub struct MemoryPlan {
    pub device: String,
    pub device_budget_bytes: u64,
    pub host_budget_bytes: u64,
    pub resident_bytes: u64,
    pub resident_tensors: u32,
    pub offloaded_tensors: u32,
    pub experts_offloaded: bool,
    pub expert_bytes: u64,
    pub expert_slot_bytes: u64,
    pub experts_total: u32,
    pub expert_slots: u32,
    pub expert_cache_bytes: u64,
    pub kv_bytes: u64,
    pub kv_tokens: u32,
    pub n_streamed_layers: u32,
    pub host_swap_bytes: u64,
    pub device_total_bytes: u64,
    pub streamed_bytes: u64,
    pub stream_ring_bytes: u64,
    pub stream_slots: u32,
    pub stream_prefetch_distance: u32,
    pub host_resident_bytes: u64,
    pub host_resident_tensors: u32,
}

/// Hits and misses of one MoE layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExpertLayerStats {
    pub hits: u64,
    pub misses: u64,
}

/// The expert cache's statistics (`kestrel_offload_stats_t`) with every layer's counts.
#[derive(Clone, Debug)]
pub struct OffloadStats {
    pub expert_hits: u64,
    pub expert_misses: u64,
    pub disk_bytes_read: u64,
    pub disk_read_seconds: f64,
    pub expert_cache_bytes: u64,
    pub expert_cache_peak_bytes: u64,
    pub expert_cache_budget_bytes: u64,
    pub n_layers: u32,
    pub policy: ExpertCachePolicy,
    pub io_mode: String,
    pub expert_slots: u32,
    pub expert_prefetch_buffers: u32,
    pub expert_prefetches: u64,
    pub expert_prefetch_hits: u64,
    pub expert_prefetch_wait_seconds: f64,
    pub expert_host_runs: u64,
    pub expert_host_seconds: f64,
    /// `n_layers` entries.
    pub layers: Vec<ExpertLayerStats>,
}

/// What moved through the model's device (`kestrel_memory_stats_t`).
#[derive(Clone, Debug)]
pub struct MemoryStats {
    pub device: String,
    pub device_bytes: u64,
    pub device_peak_bytes: u64,
    pub host_to_device_bytes: u64,
    pub device_to_host_bytes: u64,
    pub expert_bytes_read: u64,
    pub expert_read_seconds: f64,
    pub streamed_bytes_copied: u64,
    pub stream_copy_wait_seconds: f64,
}

/// One message of a conversation for [`Model::apply_chat_template`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatMessage {
    /// "system", "user", "assistant", ...
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// Options of [`Model::apply_chat_template_with`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ChatTemplateOptions {
    /// End with what opens the assistant's turn (default true).
    pub add_generation_prompt: bool,
    /// `None`: the model's `tokenizer.chat_template`; otherwise this Jinja template.
    pub template: Option<String>,
}

impl Default for ChatTemplateOptions {
    fn default() -> ChatTemplateOptions {
        ChatTemplateOptions {
            add_generation_prompt: true,
            template: None,
        }
    }
}

impl ChatTemplateOptions {
    pub fn add_generation_prompt(mut self, add: bool) -> ChatTemplateOptions {
        self.add_generation_prompt = add;
        self
    }

    pub fn template(mut self, template: impl Into<String>) -> ChatTemplateOptions {
        self.template = Some(template.into());
        self
    }
}

/// The model's tokenizer and chat template (`kestrel_tokenizer_info_t`).
#[derive(Clone, Debug)]
pub struct TokenizerInfo {
    /// "spm" or "bpe".
    pub kind: String,
    /// BPE: `tokenizer.ggml.pre` as used; SPM: "".
    pub pre_tokenizer: String,
    pub vocab_size: u32,
    pub bos_id: i32,
    pub eos_id: i32,
    pub add_bos: bool,
    pub add_eos: bool,
    pub n_end_of_generation: u32,
    /// `tokenizer.chat_template` ("" if none).
    pub chat_template: String,
    /// "chatml", "llama3", "gemma", "mistral", "phi3", "other", or "" if none.
    pub chat_template_family: String,
    /// "" if the template renders, else why not.
    pub chat_template_error: String,
}

impl Default for ModelOptions {
    fn default() -> ModelOptions {
        let mut raw: sys::kestrel_model_options_t = unsafe { std::mem::zeroed() };
        unsafe { sys::kestrel_model_options_init(&mut raw) };
        ModelOptions {
            device: None,
            use_mmap: raw.use_mmap,
            metadata_only: raw.metadata_only,
            memory_budget: None,
            expert_cache_policy: ExpertCachePolicy::Lru,
            plan_context_length: raw.plan_context_length,
            plan_sequences: raw.plan_sequences,
            offload_flags: raw.offload_flags,
        }
    }
}

impl ModelOptions {
    pub fn device(mut self, device: impl Into<String>) -> ModelOptions {
        self.device = Some(device.into());
        self
    }

    pub fn use_mmap(mut self, use_mmap: bool) -> ModelOptions {
        self.use_mmap = use_mmap;
        self
    }

    pub fn metadata_only(mut self, metadata_only: bool) -> ModelOptions {
        self.metadata_only = metadata_only;
        self
    }

    pub fn memory_budget(mut self, budget: impl Into<String>) -> ModelOptions {
        self.memory_budget = Some(budget.into());
        self
    }

    pub fn expert_cache_policy(mut self, policy: ExpertCachePolicy) -> ModelOptions {
        self.expert_cache_policy = policy;
        self
    }

    pub fn plan_context_length(mut self, tokens: u32) -> ModelOptions {
        self.plan_context_length = tokens;
        self
    }

    pub fn plan_sequences(mut self, sequences: u32) -> ModelOptions {
        self.plan_sequences = sequences;
        self
    }

    pub fn offload_flags(mut self, flags: u32) -> ModelOptions {
        self.offload_flags = flags;
        self
    }
}

/// Model metadata (`kestrel_model_info_t`).
#[derive(Clone, Debug)]
pub struct ModelInfo {
    pub architecture: String,
    pub name: String,
    /// The device the model runs on.
    pub device: String,
    pub n_params: u64,
    pub weight_bytes: u64,
    pub n_layers: u32,
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub n_embd: u32,
    pub n_ff: u32,
    pub head_dim: u32,
    pub context_length: u32,
    pub vocab_size: u32,
    pub bos_id: i32,
    pub eos_id: i32,
    pub unk_id: i32,
    /// -1 if none.
    pub pad_id: i32,
    pub add_bos: bool,
    pub rope_freq_base: f32,
    pub rms_norm_eps: f32,
    pub n_tensors: u32,
    /// Experts per layer (0: dense) and experts used per token.
    pub n_experts: u32,
    pub n_experts_used: u32,
    /// `tokenizer.ggml.model` ("llama", "gpt2", ...) and `.pre`.
    pub tokenizer_model: String,
    pub tokenizer_pre: String,
    pub has_chat_template: bool,
    /// False only for a metadata-only model this build cannot run; `unsupported` says why.
    pub runnable: bool,
    pub unsupported: Vec<String>,
}

/// How many tensors of one type the model file holds (`kestrel_tensor_type_summary_t`).
#[derive(Clone, Debug)]
pub struct TensorTypeSummary {
    pub type_name: String,
    pub n_tensors: u32,
    pub n_elements: u64,
    pub n_bytes: u64,
}

/// A loaded model. Immutable; `Clone` takes another reference (`kestrel_model_retain`), `Drop`
/// releases one. `Send + Sync`: every model function of the C API is thread-safe.
pub struct Model {
    raw: NonNull<sys::kestrel_model_t>,
    log: Option<Arc<LogSink>>,
}

// SAFETY: model.h: "Every model function is thread-safe"; retain/release are thread-safe.
unsafe impl Send for Model {}
unsafe impl Sync for Model {}

impl Model {
    /// # Safety
    /// `raw` is a live model whose one reference passes to the new `Model`.
    pub(crate) unsafe fn from_raw(
        raw: NonNull<sys::kestrel_model_t>,
        log: Option<Arc<LogSink>>,
    ) -> Model {
        Model { raw, log }
    }

    /// The raw handle, for calls into `kestrel_sys`; valid while this `Model` lives.
    pub fn as_ptr(&self) -> *mut sys::kestrel_model_t {
        self.raw.as_ptr()
    }

    fn as_const(&self) -> *const sys::kestrel_model_t {
        self.raw.as_ptr()
    }

    /// The memory plan; `Code::FailedPrecondition` for a model loaded without a budget.
    pub fn memory_plan(&self) -> Result<MemoryPlan> {
        let mut p: sys::kestrel_memory_plan_info_t = unsafe { std::mem::zeroed() };
        p.struct_size = std::mem::size_of::<sys::kestrel_memory_plan_info_t>() as u32;
        check(unsafe { sys::kestrel_model_get_memory_plan(self.as_const(), &mut p) })?;
        Ok(MemoryPlan {
            // SAFETY: valid while the model lives; copied here.
            device: unsafe { string_from(p.device) },
            device_budget_bytes: p.device_budget_bytes,
            host_budget_bytes: p.host_budget_bytes,
            resident_bytes: p.resident_bytes,
            resident_tensors: p.resident_tensors,
            offloaded_tensors: p.offloaded_tensors,
            experts_offloaded: p.experts_offloaded,
            expert_bytes: p.expert_bytes,
            expert_slot_bytes: p.expert_slot_bytes,
            experts_total: p.experts_total,
            expert_slots: p.expert_slots,
            expert_cache_bytes: p.expert_cache_bytes,
            kv_bytes: p.kv_bytes,
            kv_tokens: p.kv_tokens,
            n_streamed_layers: p.n_streamed_layers,
            host_swap_bytes: p.host_swap_bytes,
            device_total_bytes: p.device_total_bytes,
            streamed_bytes: p.streamed_bytes,
            stream_ring_bytes: p.stream_ring_bytes,
            stream_slots: p.stream_slots,
            stream_prefetch_distance: p.stream_prefetch_distance,
            host_resident_bytes: p.host_resident_bytes,
            host_resident_tensors: p.host_resident_tensors,
        })
    }

    /// The expert cache's statistics; `Code::FailedPrecondition` without one.
    pub fn offload_stats(&self) -> Result<OffloadStats> {
        let mut s: sys::kestrel_offload_stats_t = unsafe { std::mem::zeroed() };
        s.struct_size = std::mem::size_of::<sys::kestrel_offload_stats_t>() as u32;
        check(unsafe { sys::kestrel_model_get_offload_stats(self.as_const(), &mut s) })?;
        let mut layers = Vec::with_capacity(s.n_layers as usize);
        for l in 0..s.n_layers {
            let mut e = ExpertLayerStats::default();
            check(unsafe {
                sys::kestrel_model_get_expert_layer_stats(
                    self.as_const(),
                    l,
                    &mut e.hits,
                    &mut e.misses,
                )
            })?;
            layers.push(e);
        }
        Ok(OffloadStats {
            expert_hits: s.expert_hits,
            expert_misses: s.expert_misses,
            disk_bytes_read: s.disk_bytes_read,
            disk_read_seconds: s.disk_read_seconds,
            expert_cache_bytes: s.expert_cache_bytes,
            expert_cache_peak_bytes: s.expert_cache_peak_bytes,
            expert_cache_budget_bytes: s.expert_cache_budget_bytes,
            n_layers: s.n_layers,
            policy: if s.policy == sys::KESTREL_EXPERT_CACHE_LFU {
                ExpertCachePolicy::Lfu
            } else {
                ExpertCachePolicy::Lru
            },
            // SAFETY: valid while the model lives; copied here.
            io_mode: unsafe { string_from(s.io_mode) },
            expert_slots: s.expert_slots,
            expert_prefetch_buffers: s.expert_prefetch_buffers,
            expert_prefetches: s.expert_prefetches,
            expert_prefetch_hits: s.expert_prefetch_hits,
            expert_prefetch_wait_seconds: s.expert_prefetch_wait_seconds,
            expert_host_runs: s.expert_host_runs,
            expert_host_seconds: s.expert_host_seconds,
            layers,
        })
    }

    /// Zeroes the hit, miss and read-ahead counts.
    pub fn reset_offload_stats(&self) -> Result<()> {
        check(unsafe { sys::kestrel_model_reset_offload_stats(self.as_ptr()) })
    }

    /// What moved through the model's device (any model).
    pub fn memory_stats(&self) -> Result<MemoryStats> {
        let mut s: sys::kestrel_memory_stats_t = unsafe { std::mem::zeroed() };
        s.struct_size = std::mem::size_of::<sys::kestrel_memory_stats_t>() as u32;
        check(unsafe { sys::kestrel_model_get_memory_stats(self.as_const(), &mut s) })?;
        Ok(MemoryStats {
            // SAFETY: valid while the model lives; copied here.
            device: unsafe { string_from(s.device) },
            device_bytes: s.device_bytes,
            device_peak_bytes: s.device_peak_bytes,
            host_to_device_bytes: s.host_to_device_bytes,
            device_to_host_bytes: s.device_to_host_bytes,
            expert_bytes_read: s.expert_bytes_read,
            expert_read_seconds: s.expert_read_seconds,
            streamed_bytes_copied: s.streamed_bytes_copied,
            stream_copy_wait_seconds: s.stream_copy_wait_seconds,
        })
    }

    pub fn info(&self) -> Result<ModelInfo> {
        let mut i: sys::kestrel_model_info_t = unsafe { std::mem::zeroed() };
        i.struct_size = std::mem::size_of::<sys::kestrel_model_info_t>() as u32;
        check(unsafe { sys::kestrel_model_get_info(self.as_const(), &mut i) })?;
        // SAFETY: strings valid while the model lives; copied here.
        unsafe {
            Ok(ModelInfo {
                architecture: string_from(i.architecture),
                name: string_from(i.name),
                device: string_from(i.device),
                n_params: i.n_params,
                weight_bytes: i.weight_bytes,
                n_layers: i.n_layers,
                n_heads: i.n_heads,
                n_kv_heads: i.n_kv_heads,
                n_embd: i.n_embd,
                n_ff: i.n_ff,
                head_dim: i.head_dim,
                context_length: i.context_length,
                vocab_size: i.vocab_size,
                bos_id: i.bos_id,
                eos_id: i.eos_id,
                unk_id: i.unk_id,
                pad_id: i.pad_id,
                add_bos: i.add_bos,
                rope_freq_base: i.rope_freq_base,
                rms_norm_eps: i.rms_norm_eps,
                n_tensors: i.n_tensors,
                n_experts: i.n_experts,
                n_experts_used: i.n_experts_used,
                tokenizer_model: string_from(i.tokenizer_model),
                tokenizer_pre: string_from(i.tokenizer_pre),
                has_chat_template: i.has_chat_template,
                runnable: i.runnable,
                unsupported: string_from(i.unsupported)
                    .lines()
                    .map(str::to_owned)
                    .collect(),
            })
        }
    }

    /// Tensor counts and sizes per tensor type ("F32", "Q4_0", ...).
    pub fn tensor_types(&self) -> Result<Vec<TensorTypeSummary>> {
        let count = unsafe { sys::kestrel_model_tensor_type_count(self.as_const()) };
        (0..count)
            .map(|index| {
                let mut s: sys::kestrel_tensor_type_summary_t = unsafe { std::mem::zeroed() };
                s.struct_size = std::mem::size_of::<sys::kestrel_tensor_type_summary_t>() as u32;
                check(unsafe {
                    sys::kestrel_model_tensor_type_summary(self.as_const(), index, &mut s)
                })?;
                Ok(TensorTypeSummary {
                    type_name: unsafe { string_from(s.type_name) },
                    n_tensors: s.n_tensors,
                    n_elements: s.n_elements,
                    n_bytes: s.n_bytes,
                })
            })
            .collect()
    }

    /// Token ids of `text`; `add_bos` prepends BOS when the model's metadata asks for it.
    pub fn tokenize(&self, text: &str, add_bos: bool) -> Result<Vec<i32>> {
        read_buffer(|buffer, capacity, required| unsafe {
            sys::kestrel_tokenize(
                self.as_const(),
                text.as_ptr() as *const c_char,
                text.len(),
                add_bos,
                buffer,
                capacity,
                required,
            )
        })
    }

    /// The bytes of a token sequence (control tokens give none). With `remove_leading_space` the
    /// space the tokenizer puts in front of a text is dropped, so
    /// `detokenize(tokenize(s, _), true) == s`. Errors: `OutOfRange` for an id outside the vocab.
    pub fn detokenize_bytes(&self, tokens: &[i32], remove_leading_space: bool) -> Result<Vec<u8>> {
        let bytes: Vec<c_char> = read_buffer(|buffer, capacity, required| unsafe {
            sys::kestrel_detokenize(
                self.as_const(),
                tokens.as_ptr(),
                tokens.len(),
                remove_leading_space,
                buffer,
                capacity,
                required,
            )
        })?;
        Ok(bytes.into_iter().map(|b| b as u8).collect())
    }

    /// [`Model::detokenize_bytes`] as a `String`; invalid UTF-8 (possible with byte tokens) is
    /// replaced by U+FFFD.
    pub fn detokenize(&self, tokens: &[i32], remove_leading_space: bool) -> Result<String> {
        Ok(string_from_bytes(self.detokenize_bytes(tokens, remove_leading_space)?))
    }

    /// The bytes one token contributes to a text (may be part of a UTF-8 character).
    pub fn token_to_piece(&self, token: i32) -> Result<Vec<u8>> {
        let bytes: Vec<c_char> = read_buffer(|buffer, capacity, required| unsafe {
            sys::kestrel_token_to_piece(self.as_const(), token, buffer, capacity, required)
        })?;
        Ok(bytes.into_iter().map(|b| b as u8).collect())
    }

    /// Token ids of `text` with both switches: `add_special` (BOS/EOS as the vocab asks) and
    /// `parse_special` (texts of control tokens such as `<|im_start|>` become those tokens).
    pub fn tokenize_special(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<i32>> {
        let mut o: sys::kestrel_tokenize_options_t = unsafe { std::mem::zeroed() };
        unsafe { sys::kestrel_tokenize_options_init(&mut o) };
        o.add_special = add_special;
        o.parse_special = parse_special;
        read_buffer(|buffer, capacity, required| unsafe {
            sys::kestrel_tokenize_with_options(
                self.as_const(),
                text.as_ptr() as *const c_char,
                text.len(),
                &o,
                buffer,
                capacity,
                required,
            )
        })
    }

    /// Like [`Model::token_to_piece`]; with `special`, control tokens give their text.
    pub fn token_to_piece_special(&self, token: i32, special: bool) -> Result<Vec<u8>> {
        let bytes: Vec<c_char> = read_buffer(|buffer, capacity, required| unsafe {
            sys::kestrel_token_to_piece_special(self.as_const(), token, special, buffer, capacity, required)
        })?;
        Ok(bytes.into_iter().map(|b| b as u8).collect())
    }

    /// The tokenizer's kind, special ids and chat template.
    pub fn tokenizer_info(&self) -> Result<TokenizerInfo> {
        let mut i: sys::kestrel_tokenizer_info_t = unsafe { std::mem::zeroed() };
        i.struct_size = std::mem::size_of::<sys::kestrel_tokenizer_info_t>() as u32;
        check(unsafe { sys::kestrel_model_get_tokenizer_info(self.as_const(), &mut i) })?;
        // SAFETY: strings valid while the model lives; copied here.
        unsafe {
            Ok(TokenizerInfo {
                kind: string_from(i.kind),
                pre_tokenizer: string_from(i.pre_tokenizer),
                vocab_size: i.vocab_size,
                bos_id: i.bos_id,
                eos_id: i.eos_id,
                add_bos: i.add_bos,
                add_eos: i.add_eos,
                n_end_of_generation: i.n_end_of_generation,
                chat_template: string_from(i.chat_template),
                chat_template_family: string_from(i.chat_template_family),
                chat_template_error: string_from(i.chat_template_error),
            })
        }
    }

    /// The ids that end a generation (EOS, `<|im_end|>`, `<end_of_turn>`, ...), ascending.
    pub fn end_of_generation_tokens(&self) -> Result<Vec<i32>> {
        read_buffer(|buffer, capacity, required| unsafe {
            sys::kestrel_model_end_of_generation_tokens(self.as_const(), buffer, capacity, required)
        })
    }

    /// The prompt text for `messages` with the model's chat template, ending with the assistant's
    /// turn opened. Tokenize it with `parse_special` ([`Model::tokenize_special`]).
    pub fn apply_chat_template(&self, messages: &[ChatMessage]) -> Result<String> {
        self.apply_chat_template_with(messages, &ChatTemplateOptions::default())
    }

    /// [`Model::apply_chat_template`] with options. Errors: `NotFound` (no template),
    /// `InvalidArgument` (template syntax), `Unimplemented` (outside the Jinja subset),
    /// `FailedPrecondition` (the template refuses the conversation).
    pub fn apply_chat_template_with(
        &self,
        messages: &[ChatMessage],
        options: &ChatTemplateOptions,
    ) -> Result<String> {
        let list: Vec<sys::kestrel_chat_message_t> = messages
            .iter()
            .map(|m| sys::kestrel_chat_message_t {
                role: m.role.as_ptr() as *const c_char,
                role_length: m.role.len(),
                content: m.content.as_ptr() as *const c_char,
                content_length: m.content.len(),
            })
            .collect();
        let mut o: sys::kestrel_chat_template_options_t = unsafe { std::mem::zeroed() };
        unsafe { sys::kestrel_chat_template_options_init(&mut o) };
        o.add_generation_prompt = options.add_generation_prompt;
        if let Some(t) = &options.template {
            o.template_text = t.as_ptr() as *const c_char;
            o.template_length = t.len();
        }
        let bytes: Vec<c_char> = read_buffer(|buffer, capacity, required| unsafe {
            sys::kestrel_model_apply_chat_template(
                self.as_const(),
                list.as_ptr(),
                list.len(),
                &o,
                buffer,
                capacity,
                required,
            )
        })?;
        Ok(string_from_bytes(bytes.into_iter().map(|b| b as u8).collect()))
    }

    /// A session with default options (sampler defaults: temperature 0.8, top-k 40, ...).
    pub fn new_session(&self) -> Result<Session> {
        Session::new(self, &SessionOptions::default())
    }

    pub fn new_session_with(&self, options: &SessionOptions) -> Result<Session> {
        Session::new(self, options)
    }

    /// A serving engine over this model with default options (see [`Engine::new`]).
    pub fn new_engine(&self) -> Result<Engine> {
        Engine::new(self, &EngineOptions::default())
    }

    /// A serving engine over this model.
    pub fn new_engine_with(&self, options: &EngineOptions) -> Result<Engine> {
        Engine::new(self, options)
    }
}

impl Clone for Model {
    fn clone(&self) -> Model {
        // SAFETY: a live model; the new reference is owned by the clone.
        unsafe { sys::kestrel_model_retain(self.raw.as_ptr()) };
        Model {
            raw: self.raw,
            log: self.log.clone(),
        }
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        // SAFETY: releases the reference this value owns.
        unsafe { sys::kestrel_model_release(self.raw.as_ptr()) };
    }
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("raw", &self.raw).finish()
    }
}
