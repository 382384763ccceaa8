//! `Model`: weights on a device plus their tokenizer; immutable and shared.
use std::os::raw::c_char;
use std::ptr::NonNull;
use std::sync::Arc;

use kestrel_sys as sys;

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
