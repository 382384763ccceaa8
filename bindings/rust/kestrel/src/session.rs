//! `Session`: one sequence with its own KV cache and sampler; `CancelHandle` stops its generate
//! from another thread.
use std::any::Any;
use std::ffi::{c_void, CString};
use std::os::raw::c_char;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::ptr::{self, NonNull};
use std::sync::{Arc, Mutex};

use kestrel_sys as sys;

use crate::error::{check, Code, Error, Result};
use crate::model::Model;
use crate::util::{c_string, read_buffer};

/// The token id the streaming callback gets with the final flush of held-back text.
pub const TOKEN_NONE: i32 = sys::KESTREL_TOKEN_NONE;

/// Sampling settings (`kestrel_sampler_options_t`). `Default` gives the library's defaults
/// (temperature 0.8, top-k 40, top-p 0.95, min-p 0.05, no repetition penalty, seed 0xC0FFEE).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SamplerOptions {
    /// 0 = greedy (argmax, ties to the lowest id).
    pub temperature: f32,
    /// 0 = off.
    pub top_k: i32,
    /// 1 = off; in (0, 1].
    pub top_p: f32,
    /// 0 = off; in [0, 1].
    pub min_p: f32,
    /// 1.0 = off; > 0.
    pub repetition_penalty: f32,
    /// Last tokens the penalty looks at; 0 = off.
    pub repetition_window: i32,
    pub seed: u64,
}

impl Default for SamplerOptions {
    fn default() -> SamplerOptions {
        let mut raw: sys::kestrel_sampler_options_t = unsafe { std::mem::zeroed() };
        unsafe { sys::kestrel_sampler_options_init(&mut raw) };
        SamplerOptions {
            temperature: raw.temperature,
            top_k: raw.top_k,
            top_p: raw.top_p,
            min_p: raw.min_p,
            repetition_penalty: raw.repetition_penalty,
            repetition_window: raw.repetition_window,
            seed: raw.seed,
        }
    }
}

impl SamplerOptions {
    /// Greedy decoding: temperature 0 (argmax), the other settings at their defaults.
    pub fn greedy() -> SamplerOptions {
        SamplerOptions {
            temperature: 0.0,
            ..SamplerOptions::default()
        }
    }

    pub(crate) fn to_raw(&self) -> sys::kestrel_sampler_options_t {
        let mut raw: sys::kestrel_sampler_options_t = unsafe { std::mem::zeroed() };
        unsafe { sys::kestrel_sampler_options_init(&mut raw) };
        raw.temperature = self.temperature;
        raw.top_k = self.top_k;
        raw.top_p = self.top_p;
        raw.min_p = self.min_p;
        raw.repetition_penalty = self.repetition_penalty;
        raw.repetition_window = self.repetition_window;
        raw.seed = self.seed;
        raw
    }
}

/// Element type of a session's KV cache (`KESTREL_KV_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvType {
    /// 4 bytes per element, the reference numerics (the default).
    F32,
    /// 2 bytes per element (IEEE binary16): half the KV memory; logits differ by rounding.
    F16,
}

impl KvType {
    pub(crate) fn to_raw(self) -> u64 {
        match self {
            KvType::F32 => u64::from(sys::KESTREL_KV_F32),
            KvType::F16 => u64::from(sys::KESTREL_KV_F16),
        }
    }
}

/// Speculative decoding method (`kestrel_spec_method_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecMethod {
    Off,
    Auto,
    Draft,
    SelfDraft,
    Ngram,
    Lookahead,
    Medusa,
    Eagle,
}

impl SpecMethod {
    fn to_raw(self) -> u32 {
        match self {
            SpecMethod::Off => sys::KESTREL_SPEC_OFF,
            SpecMethod::Auto => sys::KESTREL_SPEC_AUTO,
            SpecMethod::Draft => sys::KESTREL_SPEC_DRAFT,
            SpecMethod::SelfDraft => sys::KESTREL_SPEC_SELF,
            SpecMethod::Ngram => sys::KESTREL_SPEC_NGRAM,
            SpecMethod::Lookahead => sys::KESTREL_SPEC_LOOKAHEAD,
            SpecMethod::Medusa => sys::KESTREL_SPEC_MEDUSA,
            SpecMethod::Eagle => sys::KESTREL_SPEC_EAGLE,
        }
    }
    fn from_raw(v: u32) -> SpecMethod {
        match v {
            1 => SpecMethod::Auto,
            2 => SpecMethod::Draft,
            3 => SpecMethod::SelfDraft,
            4 => SpecMethod::Ngram,
            5 => SpecMethod::Lookahead,
            6 => SpecMethod::Medusa,
            7 => SpecMethod::Eagle,
            _ => SpecMethod::Off,
        }
    }
}

/// Speculative decoding of a session (`kestrel_speculative_options_t`). Greedy output stays
/// token-identical and sampled output keeps the model's distribution; only the speed changes.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct SpeculativeOptions {
    pub method: Option<SpecMethod>,
    /// Longest draft path per step; 0 = 5.
    pub max_draft_tokens: u32,
    /// Most draft tokens per step; 0 = the method's own.
    pub tree_budget: u32,
    /// [`SpecMethod::Draft`]: a model with the same vocab (the session keeps it alive).
    pub draft_model: Option<Model>,
    /// Medusa / EAGLE heads file.
    pub heads_path: Option<String>,
    /// [`SpecMethod::SelfDraft`]: layers run; 0 = half.
    pub self_draft_layers: u32,
}

impl std::fmt::Debug for SpeculativeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpeculativeOptions")
            .field("method", &self.method)
            .field("max_draft_tokens", &self.max_draft_tokens)
            .field("tree_budget", &self.tree_budget)
            .field("draft_model", &self.draft_model.as_ref().map(|m| m.as_ptr()))
            .field("heads_path", &self.heads_path)
            .field("self_draft_layers", &self.self_draft_layers)
            .finish()
    }
}

impl PartialEq for SpeculativeOptions {
    fn eq(&self, o: &SpeculativeOptions) -> bool {
        self.method == o.method
            && self.max_draft_tokens == o.max_draft_tokens
            && self.tree_budget == o.tree_budget
            && self.draft_model.as_ref().map(|m| m.as_ptr()) == o.draft_model.as_ref().map(|m| m.as_ptr())
            && self.heads_path == o.heads_path
            && self.self_draft_layers == o.self_draft_layers
    }
}

impl SpeculativeOptions {
    pub fn new(method: SpecMethod) -> SpeculativeOptions {
        SpeculativeOptions { method: Some(method), ..Default::default() }
    }
    pub fn max_draft_tokens(mut self, n: u32) -> SpeculativeOptions {
        self.max_draft_tokens = n;
        self
    }
    pub fn draft_model(mut self, model: &Model) -> SpeculativeOptions {
        self.draft_model = Some(model.clone());
        self
    }
}

/// What speculative decoding did in a session's last generate (`kestrel_speculative_stats_t`).
#[derive(Clone, Debug, PartialEq)]
pub struct SpeculativeStats {
    /// The controller's current choice.
    pub method: SpecMethod,
    pub draft_tokens: u32,
    pub steps: u64,
    pub plain_steps: u64,
    pub drafted: u64,
    pub accepted: u64,
    pub mean_accepted: f64,
    pub propose_ms: f64,
    pub verify_ms: f64,
    pub drafted_by_method: [u64; 8],
    pub accepted_by_method: [u64; 8],
}

/// Options of [`Session::new`] (`kestrel_session_options_t`).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SessionOptions {
    /// Tokens of context (prompt + generated); 0 = the model's trained context.
    pub context_length: u32,
    /// Tokens per KV block (default 16).
    pub kv_block_size: u32,
    /// Sampling; `None` = [`SamplerOptions::default`].
    pub sampler: Option<SamplerOptions>,
    /// Worker threads for plugins that use them; 0 = the plugin decides.
    pub n_threads: u32,
    /// Element type of the KV cache (default [`KvType::F32`]).
    pub kv_type: KvType,
    /// Speculative decoding; `None` (default) = off.
    pub speculative: Option<SpeculativeOptions>,
}

impl Default for SessionOptions {
    fn default() -> SessionOptions {
        let mut raw: sys::kestrel_session_options_t = unsafe { std::mem::zeroed() };
        unsafe { sys::kestrel_session_options_init(&mut raw) };
        SessionOptions {
            context_length: raw.context_length,
            kv_block_size: raw.kv_block_size,
            sampler: None,
            n_threads: raw.n_threads,
            kv_type: if raw.kv_type == u64::from(sys::KESTREL_KV_F16) { KvType::F16 } else { KvType::F32 },
            speculative: None,
        }
    }
}

impl SessionOptions {
    pub fn context_length(mut self, n: u32) -> SessionOptions {
        self.context_length = n;
        self
    }

    pub fn sampler(mut self, sampler: SamplerOptions) -> SessionOptions {
        self.sampler = Some(sampler);
        self
    }

    pub fn n_threads(mut self, n: u32) -> SessionOptions {
        self.n_threads = n;
        self
    }

    pub fn kv_type(mut self, kv_type: KvType) -> SessionOptions {
        self.kv_type = kv_type;
        self
    }

    pub fn speculative(mut self, spec: SpeculativeOptions) -> SessionOptions {
        self.speculative = Some(spec);
        self
    }
}

/// Options of [`Session::generate`] (`kestrel_generate_options_t`).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct GenerateOptions {
    /// Default 128.
    pub max_new_tokens: u32,
    /// Generation stops when one of these appears; it and what follows are never delivered.
    pub stop_strings: Vec<String>,
    /// Prepend BOS when the model asks for it (text prompts only). Default true.
    pub add_bos: bool,
    /// false (default): start from an empty KV cache; true: continue after what the session holds.
    pub keep_context: bool,
    /// Texts of control tokens in a text prompt (`<|im_start|>`, ...) become those tokens, as a
    /// chat-formatted prompt needs. Default false.
    pub parse_special: bool,
    /// Constrained output: a GBNF grammar (llama.cpp's format, from its `root` rule); only text it
    /// allows is generated (docs/CONSTRAINED_OUTPUT.md). At most one of `grammar`/`json_schema`.
    pub grammar: Option<String>,
    /// Constrained output: a JSON schema (JSON text) of the supported subset; unsupported
    /// keywords are an `InvalidArgument` error naming them.
    pub json_schema: Option<String>,
}

impl Default for GenerateOptions {
    fn default() -> GenerateOptions {
        let mut raw: sys::kestrel_generate_options_t = unsafe { std::mem::zeroed() };
        unsafe { sys::kestrel_generate_options_init(&mut raw) };
        GenerateOptions {
            max_new_tokens: raw.max_new_tokens,
            stop_strings: Vec::new(),
            add_bos: raw.add_bos,
            keep_context: raw.keep_context,
            parse_special: raw.parse_special != 0,
            grammar: None,
            json_schema: None,
        }
    }
}

impl GenerateOptions {
    pub fn max_new_tokens(mut self, n: u32) -> GenerateOptions {
        self.max_new_tokens = n;
        self
    }

    pub fn stop_string(mut self, stop: impl Into<String>) -> GenerateOptions {
        self.stop_strings.push(stop.into());
        self
    }

    pub fn keep_context(mut self, keep: bool) -> GenerateOptions {
        self.keep_context = keep;
        self
    }

    pub fn add_bos(mut self, add: bool) -> GenerateOptions {
        self.add_bos = add;
        self
    }

    pub fn parse_special(mut self, parse: bool) -> GenerateOptions {
        self.parse_special = parse;
        self
    }

    /// Constrains the output to a GBNF grammar.
    pub fn grammar(mut self, gbnf: impl Into<String>) -> GenerateOptions {
        self.grammar = Some(gbnf.into());
        self
    }

    /// Constrains the output to a JSON schema (JSON text; `{"type":"object"}`: any object).
    pub fn json_schema(mut self, schema: impl Into<String>) -> GenerateOptions {
        self.json_schema = Some(schema.into());
        self
    }
}

/// Why a generation ended (`kestrel_stop_reason_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StopReason {
    None,
    /// The model produced an end-of-generation token.
    Eos,
    MaxTokens,
    StopString,
    /// The streaming closure returned false.
    Callback,
    ContextFull,
    Cancelled,
    /// A reason this version of the bindings does not know.
    Other(u32),
}

impl StopReason {
    pub(crate) fn from_raw(raw: sys::kestrel_stop_reason_t) -> StopReason {
        match raw {
            sys::KESTREL_STOP_NONE => StopReason::None,
            sys::KESTREL_STOP_EOS => StopReason::Eos,
            sys::KESTREL_STOP_MAX_TOKENS => StopReason::MaxTokens,
            sys::KESTREL_STOP_STOP_STRING => StopReason::StopString,
            sys::KESTREL_STOP_CALLBACK => StopReason::Callback,
            sys::KESTREL_STOP_CONTEXT_FULL => StopReason::ContextFull,
            sys::KESTREL_STOP_CANCELLED => StopReason::Cancelled,
            other => StopReason::Other(other),
        }
    }
}

/// Counters and speed of one generation (`kestrel_generate_stats_t`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GenerateStats {
    pub n_prompt_tokens: u32,
    pub n_generated_tokens: u32,
    pub prefill_ms: f64,
    pub decode_ms: f64,
    pub prefill_tokens_per_s: f64,
    pub decode_tokens_per_s: f64,
    pub stop_reason: StopReason,
}

/// A prompt: text (tokenized by the model, BOS per [`GenerateOptions::add_bos`]) or token ids
/// (used as given).
#[derive(Clone, Copy, Debug)]
pub enum Prompt<'a> {
    Text(&'a str),
    Tokens(&'a [i32]),
}

impl<'a> From<&'a str> for Prompt<'a> {
    fn from(text: &'a str) -> Prompt<'a> {
        Prompt::Text(text)
    }
}

impl<'a> From<&'a String> for Prompt<'a> {
    fn from(text: &'a String) -> Prompt<'a> {
        Prompt::Text(text)
    }
}

impl<'a> From<&'a [i32]> for Prompt<'a> {
    fn from(tokens: &'a [i32]) -> Prompt<'a> {
        Prompt::Tokens(tokens)
    }
}

impl<'a> From<&'a Vec<i32>> for Prompt<'a> {
    fn from(tokens: &'a Vec<i32>) -> Prompt<'a> {
        Prompt::Tokens(tokens)
    }
}

impl<'a, const N: usize> From<&'a [i32; N]> for Prompt<'a> {
    fn from(tokens: &'a [i32; N]) -> Prompt<'a> {
        Prompt::Tokens(tokens)
    }
}

/// What a `CancelHandle` shares with its session: the session pointer while the session lives,
/// NULL after. The mutex makes "cancel" and "destroy" exclusive, so a cancel never touches a
/// destroyed session.
struct CancelTarget {
    session: Mutex<*mut sys::kestrel_session_t>,
}

// SAFETY: the pointer is only passed to kestrel_session_cancel ("any thread, any time"), and only
// while the mutex is held and the session is alive.
unsafe impl Send for CancelTarget {}
unsafe impl Sync for CancelTarget {}

/// Cancels the running generate of one session from any thread (`kestrel_session_cancel`).
///
/// `Send + Sync + Clone`, and it may outlive its session: it does not keep the session alive, and
/// once the session is dropped [`CancelHandle::cancel`] does nothing and returns false. A cancel
/// with no generate running is not remembered (it does not affect the next generate).
#[derive(Clone)]
pub struct CancelHandle {
    target: Arc<CancelTarget>,
}

impl CancelHandle {
    /// Asks the session's running generate to stop after the current step (it then returns
    /// `Err` with [`Code::Cancelled`]). Returns false if the session no longer exists.
    pub fn cancel(&self) -> bool {
        let session = self
            .target
            .session
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if session.is_null() {
            return false;
        }
        // SAFETY: the session is alive while the mutex is held (Session::drop takes it first).
        unsafe { sys::kestrel_session_cancel(*session) };
        true
    }

    /// Whether the session still exists.
    pub fn is_alive(&self) -> bool {
        !self
            .target
            .session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_null()
    }
}

impl std::fmt::Debug for CancelHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelHandle")
            .field("alive", &self.is_alive())
            .finish()
    }
}

/// One conversation (sequence): its KV cache and sampler.
///
/// `Send` but not `Sync`: a session may move between threads but is used by one thread at a time
/// (the C rule); `&mut self` on the calls that change it enforces that. To stop a generate from
/// another thread, take a [`CancelHandle`] first. The session holds a reference to its model.
pub struct Session {
    raw: NonNull<sys::kestrel_session_t>,
    cancel: Arc<CancelTarget>,
    model: Model,
}

// SAFETY: session.h: single-user, "one thread at a time" — moving it to another thread is fine;
// it is not Sync (NonNull is !Sync and no Sync impl is given).
unsafe impl Send for Session {}

impl Session {
    /// A session over `model` (which it keeps alive); reserves the KV cache.
    /// Errors: `InvalidArgument` (a bad option, named with its value), `ResourceExhausted`.
    pub fn new(model: &Model, options: &SessionOptions) -> Result<Session> {
        let mut raw_options: sys::kestrel_session_options_t = unsafe { std::mem::zeroed() };
        unsafe { sys::kestrel_session_options_init(&mut raw_options) };
        raw_options.context_length = options.context_length;
        raw_options.kv_block_size = options.kv_block_size;
        raw_options.n_threads = options.n_threads;
        raw_options.kv_type = options.kv_type.to_raw();
        let sampler = options.sampler.as_ref().map(SamplerOptions::to_raw);
        if let Some(s) = &sampler {
            raw_options.sampler = s; // copied during create
        }
        let heads = match options.speculative.as_ref().and_then(|s| s.heads_path.as_ref()) {
            Some(p) => Some(std::ffi::CString::new(p.as_str()).map_err(|_| {
                Error::new(Code::InvalidArgument, "speculative heads_path contains a NUL byte")
            })?),
            None => None,
        };
        let mut spec: sys::kestrel_speculative_options_t = unsafe { std::mem::zeroed() };
        unsafe { sys::kestrel_speculative_options_init(&mut spec) };
        if let Some(s) = &options.speculative {
            spec.method = s.method.unwrap_or(SpecMethod::Off).to_raw();
            spec.max_draft_tokens = s.max_draft_tokens;
            spec.tree_budget = s.tree_budget;
            spec.self_draft_layers = s.self_draft_layers;
            if let Some(m) = &s.draft_model {
                spec.draft_model = m.as_ptr(); // retained by the session
            }
            if let Some(h) = &heads {
                spec.heads_path = h.as_ptr(); // copied during create
            }
            raw_options.speculative = &spec;
        }
        let mut raw = ptr::null_mut();
        check(unsafe { sys::kestrel_session_create(model.as_ptr(), &raw_options, &mut raw) })?;
        let raw = NonNull::new(raw).ok_or_else(|| {
            Error::new(Code::Internal, "kestrel_session_create returned no session")
        })?;
        Ok(Session {
            raw,
            cancel: Arc::new(CancelTarget {
                session: Mutex::new(raw.as_ptr()),
            }),
            model: model.clone(),
        })
    }

    /// The raw handle, for calls into `kestrel_sys`; valid while this `Session` lives.
    pub fn as_ptr(&self) -> *mut sys::kestrel_session_t {
        self.raw.as_ptr()
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// A handle that cancels this session's running generate from any thread.
    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle {
            target: self.cancel.clone(),
        }
    }

    /// Generates from `prompt` (text or token ids), calling `on_token(token, text)` on this thread
    /// for every generated token, in order. `text` is the text that became final with the token
    /// (possibly empty: incomplete UTF-8 and possible stop-string starts are held back); a final
    /// call with token [`TOKEN_NONE`] may flush held-back text. Return false to stop
    /// ([`StopReason::Callback`]). A panic in the closure stops generation and is resumed here.
    ///
    /// Errors: `InvalidArgument` (empty prompt, prompt longer than the context), `OutOfRange`
    /// (token id), `Cancelled` (a [`CancelHandle`] was used).
    pub fn generate<'p, F>(
        &mut self,
        prompt: impl Into<Prompt<'p>>,
        options: &GenerateOptions,
        mut on_token: F,
    ) -> Result<GenerateStats>
    where
        F: FnMut(i32, &str) -> bool,
    {
        self.generate_impl(
            prompt.into(),
            options,
            Some(&mut |token, bytes: &[u8]| on_token(token, &String::from_utf8_lossy(bytes))),
        )
    }

    /// [`Session::generate`] with the raw bytes of each piece of text.
    pub fn generate_bytes<'p, F>(
        &mut self,
        prompt: impl Into<Prompt<'p>>,
        options: &GenerateOptions,
        mut on_token: F,
    ) -> Result<GenerateStats>
    where
        F: FnMut(i32, &[u8]) -> bool,
    {
        self.generate_impl(prompt.into(), options, Some(&mut on_token))
    }

    /// Generates and returns the whole text (no streaming).
    pub fn generate_text<'p>(
        &mut self,
        prompt: impl Into<Prompt<'p>>,
        options: &GenerateOptions,
    ) -> Result<(String, GenerateStats)> {
        let mut text = Vec::new();
        let stats = self.generate_bytes(prompt, options, |_, piece| {
            text.extend_from_slice(piece);
            true
        })?;
        Ok((String::from_utf8_lossy(&text).into_owned(), stats))
    }

    fn generate_impl(
        &mut self,
        prompt: Prompt<'_>,
        options: &GenerateOptions,
        on_token: Option<&mut TokenFn<'_>>,
    ) -> Result<GenerateStats> {
        let stops: Vec<CString> = options
            .stop_strings
            .iter()
            .map(|s| c_string("stop string", s))
            .collect::<Result<_>>()?;
        let stop_ptrs: Vec<*const c_char> = stops.iter().map(|s| s.as_ptr()).collect();

        let mut raw_options: sys::kestrel_generate_options_t = unsafe { std::mem::zeroed() };
        unsafe { sys::kestrel_generate_options_init(&mut raw_options) };
        raw_options.max_new_tokens = options.max_new_tokens;
        raw_options.stop_strings = if stop_ptrs.is_empty() {
            ptr::null()
        } else {
            stop_ptrs.as_ptr()
        };
        raw_options.n_stop_strings = stop_ptrs.len();
        raw_options.add_bos = options.add_bos;
        raw_options.keep_context = options.keep_context;
        raw_options.parse_special = options.parse_special as u64;
        let grammar = options.grammar.as_deref().map(|g| c_string("grammar", g)).transpose()?;
        let json_schema = options.json_schema.as_deref().map(|j| c_string("json_schema", j)).transpose()?;
        raw_options.grammar = grammar.as_ref().map_or(ptr::null(), |g| g.as_ptr());
        raw_options.json_schema = json_schema.as_ref().map_or(ptr::null(), |j| j.as_ptr());
        let mut state = TokenState {
            f: on_token,
            panic: None,
        };
        if state.f.is_some() {
            raw_options.on_token = Some(token_trampoline);
            raw_options.user_data = &mut state as *mut TokenState as *mut c_void;
        }

        let mut stats: sys::kestrel_generate_stats_t = unsafe { std::mem::zeroed() };
        stats.struct_size = std::mem::size_of::<sys::kestrel_generate_stats_t>() as u32;
        // SAFETY: every pointer is valid for the call; the callback runs on this thread.
        let status = unsafe {
            match prompt {
                Prompt::Text(text) => sys::kestrel_session_generate(
                    self.raw.as_ptr(),
                    text.as_ptr() as *const c_char,
                    text.len(),
                    &raw_options,
                    &mut stats,
                ),
                Prompt::Tokens(tokens) => sys::kestrel_session_generate_tokens(
                    self.raw.as_ptr(),
                    tokens.as_ptr(),
                    tokens.len(),
                    &raw_options,
                    &mut stats,
                ),
            }
        };
        if let Some(payload) = state.panic.take() {
            if !status.is_null() {
                unsafe { sys::kestrel_status_free(status) };
            }
            resume_unwind(payload);
        }
        check(status)?;
        Ok(GenerateStats {
            n_prompt_tokens: stats.n_prompt_tokens,
            n_generated_tokens: stats.n_generated_tokens,
            prefill_ms: stats.prefill_ms,
            decode_ms: stats.decode_ms,
            prefill_tokens_per_s: stats.prefill_tokens_per_s,
            decode_tokens_per_s: stats.decode_tokens_per_s,
            stop_reason: StopReason::from_raw(stats.stop_reason),
        })
    }

    // ---- Low level: the KV cache and logits ----

    /// Appends `tokens` to the context (one forward step) and computes the logits of the last
    /// position. Errors: `InvalidArgument` (no tokens, context overflow), `OutOfRange` (id).
    pub fn decode(&mut self, tokens: &[i32]) -> Result<()> {
        check(unsafe {
            sys::kestrel_session_decode(self.raw.as_ptr(), tokens.as_ptr(), tokens.len())
        })
    }

    /// The last decoded position's logits (vocab_size values).
    /// Errors: `FailedPrecondition` if nothing was decoded since creation or truncation.
    pub fn logits(&self) -> Result<Vec<f32>> {
        read_buffer(|buffer, capacity, required| unsafe {
            sys::kestrel_session_get_logits(self.raw.as_ptr(), buffer, capacity, required)
        })
    }

    /// Tokens held in the KV cache.
    /// What speculative decoding did in the last generate (zeros when it is off).
    pub fn speculative_stats(&self) -> Result<SpeculativeStats> {
        let mut c: sys::kestrel_speculative_stats_t = unsafe { std::mem::zeroed() };
        c.struct_size = std::mem::size_of::<sys::kestrel_speculative_stats_t>() as u32;
        check(unsafe { sys::kestrel_session_speculative_stats(self.raw.as_ptr(), &mut c) })?;
        Ok(SpeculativeStats {
            method: SpecMethod::from_raw(c.method),
            draft_tokens: c.draft_tokens,
            steps: c.steps,
            plain_steps: c.plain_steps,
            drafted: c.drafted,
            accepted: c.accepted,
            mean_accepted: c.mean_accepted,
            propose_ms: c.propose_ms,
            verify_ms: c.verify_ms,
            drafted_by_method: c.drafted_by_method,
            accepted_by_method: c.accepted_by_method,
        })
    }

    pub fn token_count(&self) -> usize {
        unsafe { sys::kestrel_session_token_count(self.raw.as_ptr()) }
    }

    /// Keeps only the first `n_tokens` tokens of the KV cache. Errors: `OutOfRange`.
    pub fn truncate(&mut self, n_tokens: usize) -> Result<()> {
        check(unsafe { sys::kestrel_session_truncate(self.raw.as_ptr(), n_tokens) })
    }

    /// Samples one token from the last logits with the session's sampler.
    /// Errors: `FailedPrecondition` if there are no logits.
    pub fn sample(&mut self) -> Result<i32> {
        let mut token = 0i32;
        check(unsafe { sys::kestrel_session_sample(self.raw.as_ptr(), &mut token) })?;
        Ok(token)
    }

    /// The session state (`kestrel_session_save_state`): model fingerprint, tokens, sampler and
    /// RNG state, KV cache. Restore it with [`Session::load_state`] in any process.
    pub fn save_state(&mut self) -> Result<Vec<u8>> {
        read_buffer(|buffer: *mut u8, capacity, required| unsafe {
            sys::kestrel_session_save_state(self.raw.as_ptr(), buffer as *mut _, capacity, required)
        })
    }

    /// Restores a saved state into this session (same model and KV type). Then generating with
    /// an empty token prompt and `keep_context` continues where the saved session was.
    /// Errors (the session unchanged): `DataLoss` / `InvalidArgument` (damaged, truncated),
    /// `Unimplemented` (another format version), `FailedPrecondition` (another model, KV type).
    pub fn load_state(&mut self, state: &[u8]) -> Result<()> {
        check(unsafe {
            sys::kestrel_session_load_state(self.raw.as_ptr(), state.as_ptr() as *const _, state.len())
        })
    }

    /// [`Session::save_state`] to a file (written to `<path>.tmp`, renamed when complete).
    pub fn save_state_file(&mut self, path: impl AsRef<std::path::Path>) -> Result<()> {
        let path = state_path(path.as_ref())?;
        check(unsafe { sys::kestrel_session_save_state_file(self.raw.as_ptr(), path.as_ptr()) })
    }

    /// [`Session::load_state`] from a file.
    pub fn load_state_file(&mut self, path: impl AsRef<std::path::Path>) -> Result<()> {
        let path = state_path(path.as_ref())?;
        check(unsafe { sys::kestrel_session_load_state_file(self.raw.as_ptr(), path.as_ptr()) })
    }
}

fn state_path(path: &std::path::Path) -> Result<std::ffi::CString> {
    let s = path.to_str().ok_or_else(|| {
        crate::Error::new(crate::Code::InvalidArgument, format!("state path is not valid UTF-8: {path:?}"))
    })?;
    crate::util::c_string("state path", s)
}

impl Drop for Session {
    fn drop(&mut self) {
        // Detach the cancel handles first: after this no cancel can reach the session.
        *self
            .cancel
            .session
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = ptr::null_mut();
        // SAFETY: we own the session and nothing else uses it any more.
        unsafe { sys::kestrel_session_destroy(self.raw.as_ptr()) };
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("raw", &self.raw)
            .field("tokens", &self.token_count())
            .finish()
    }
}

/// The streaming closure as the trampoline sees it: token id and raw text bytes.
type TokenFn<'f> = dyn FnMut(i32, &[u8]) -> bool + 'f;

struct TokenState<'a, 'f> {
    f: Option<&'a mut TokenFn<'f>>,
    panic: Option<Box<dyn Any + Send>>,
}

unsafe extern "C" fn token_trampoline(
    user_data: *mut c_void,
    token: i32,
    text: *const c_char,
    length: usize,
) -> bool {
    // SAFETY: user_data is the TokenState on the stack of generate_impl, on this same thread.
    let state = &mut *(user_data as *mut TokenState);
    if state.panic.is_some() {
        return false;
    }
    let Some(f) = state.f.as_mut() else {
        return true;
    };
    let bytes: &[u8] = if text.is_null() || length == 0 {
        &[]
    } else {
        std::slice::from_raw_parts(text as *const u8, length)
    };
    match catch_unwind(AssertUnwindSafe(|| f(token, bytes))) {
        Ok(keep_going) => keep_going,
        Err(payload) => {
            state.panic = Some(payload);
            false
        }
    }
}
