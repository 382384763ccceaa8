//! `Engine`: many concurrent requests over one model (`kestrel/engine.h`: continuous batching,
//! chunked prefill, prefix cache, copy-on-write forks, preemption).
//!
//! ```no_run
//! use kestrel::{Engine, EngineOptions, RequestOptions, SamplerOptions};
//!
//! let model = kestrel::Runtime::new()?.load_model("stories260K.gguf")?;
//! let engine = Engine::new(&model, &EngineOptions::default())?;
//! engine.start()?; // an engine thread; without it, wait() and streams step on the caller's thread
//! let options = RequestOptions::default().max_new_tokens(32).sampler(SamplerOptions::greedy());
//! for piece in engine.stream("Once upon a time", &options)? {
//!     print!("{}", piece?.text);
//! }
//! # Ok::<(), kestrel::Error>(())
//! ```
use std::any::Any;
use std::collections::HashMap;
use std::ffi::{c_void, CString};
use std::os::raw::c_char;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kestrel_sys as sys;

use crate::error::{check, Code, Error, Result};
use crate::model::Model;
use crate::session::{KvType, Prompt, SamplerOptions, StopReason};
use crate::util::{c_string, read_buffer};

/// A request's id (> 0), unique within its engine.
pub type RequestId = u64;

/// Options of [`Engine::new`] (`kestrel_engine_options_t`); `Default` gives the library's.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct EngineOptions {
    /// Bytes of KV cache on the model's device; 0 = enough for `max_sequences` full contexts.
    pub kv_cache_bytes: u64,
    /// Tokens per KV block, a power of two (default 2).
    pub kv_block_size: u32,
    /// Token budget of one step (default 512).
    pub max_batch_tokens: u32,
    /// Sequences holding KV at once (default 16).
    pub max_sequences: u32,
    /// Reuse KV blocks across requests with the same prefix (default true).
    pub prefix_cache: bool,
    /// Tokens of context per sequence; 0 = the model's trained context.
    pub context_length: u32,
    /// Worker threads for plugins that use them; 0 = the plugin decides.
    pub n_threads: u32,
    pub kv_type: KvType,
}

impl Default for EngineOptions {
    fn default() -> EngineOptions {
        let mut raw: sys::kestrel_engine_options_t = unsafe { std::mem::zeroed() };
        unsafe { sys::kestrel_engine_options_init(&mut raw) };
        EngineOptions {
            kv_cache_bytes: raw.kv_cache_bytes,
            kv_block_size: raw.kv_block_size,
            max_batch_tokens: raw.max_batch_tokens,
            max_sequences: raw.max_sequences,
            prefix_cache: raw.prefix_cache,
            context_length: raw.context_length,
            n_threads: raw.n_threads,
            kv_type: if raw.kv_type == u64::from(sys::KESTREL_KV_F16) { KvType::F16 } else { KvType::F32 },
        }
    }
}

impl EngineOptions {
    pub fn kv_cache_bytes(mut self, bytes: u64) -> EngineOptions {
        self.kv_cache_bytes = bytes;
        self
    }
    pub fn kv_block_size(mut self, tokens: u32) -> EngineOptions {
        self.kv_block_size = tokens;
        self
    }
    pub fn max_sequences(mut self, n: u32) -> EngineOptions {
        self.max_sequences = n;
        self
    }
    pub fn prefix_cache(mut self, on: bool) -> EngineOptions {
        self.prefix_cache = on;
        self
    }
    pub fn context_length(mut self, n: u32) -> EngineOptions {
        self.context_length = n;
        self
    }
    pub fn n_threads(mut self, n: u32) -> EngineOptions {
        self.n_threads = n;
        self
    }
    pub fn kv_type(mut self, kv_type: KvType) -> EngineOptions {
        self.kv_type = kv_type;
        self
    }
}

/// Options of one request (`kestrel_engine_request_options_t`); `Default` gives the library's.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RequestOptions {
    /// Per sample; default 128.
    pub max_new_tokens: u32,
    /// `None` = [`SamplerOptions::default`]; sample i of n uses seed + i.
    pub sampler: Option<SamplerOptions>,
    pub stop_strings: Vec<String>,
    /// Higher runs first (default 0).
    pub priority: i32,
    /// Samples of the one prompt, sharing its KV blocks (default 1).
    pub n: u32,
    /// Prepend BOS when the model asks for it (text prompts only). Default true.
    pub add_bos: bool,
    /// Constrained output of every sample: a GBNF grammar (see `GenerateOptions::grammar`).
    pub grammar: Option<String>,
    /// Constrained output of every sample: a JSON schema (JSON text).
    pub json_schema: Option<String>,
}

impl Default for RequestOptions {
    fn default() -> RequestOptions {
        let mut raw: sys::kestrel_engine_request_options_t = unsafe { std::mem::zeroed() };
        unsafe { sys::kestrel_engine_request_options_init(&mut raw) };
        RequestOptions {
            max_new_tokens: raw.max_new_tokens,
            sampler: None,
            stop_strings: Vec::new(),
            priority: raw.priority,
            n: raw.n,
            add_bos: raw.add_bos,
            grammar: None,
            json_schema: None,
        }
    }
}

impl RequestOptions {
    pub fn max_new_tokens(mut self, n: u32) -> RequestOptions {
        self.max_new_tokens = n;
        self
    }
    pub fn sampler(mut self, sampler: SamplerOptions) -> RequestOptions {
        self.sampler = Some(sampler);
        self
    }
    pub fn stop_string(mut self, stop: impl Into<String>) -> RequestOptions {
        self.stop_strings.push(stop.into());
        self
    }
    pub fn priority(mut self, priority: i32) -> RequestOptions {
        self.priority = priority;
        self
    }
    pub fn n(mut self, n: u32) -> RequestOptions {
        self.n = n;
        self
    }
    pub fn add_bos(mut self, add: bool) -> RequestOptions {
        self.add_bos = add;
        self
    }
    pub fn grammar(mut self, gbnf: impl Into<String>) -> RequestOptions {
        self.grammar = Some(gbnf.into());
        self
    }
    pub fn json_schema(mut self, schema: impl Into<String>) -> RequestOptions {
        self.json_schema = Some(schema.into());
        self
    }
}

/// Where a request is (`kestrel_request_state_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestState {
    Waiting,
    Running,
    Finished,
    Failed,
    Cancelled,
    /// A state this version of the bindings does not know.
    Other(u32),
}

impl RequestState {
    fn from_raw(raw: u32) -> RequestState {
        match raw {
            sys::KESTREL_REQUEST_WAITING => RequestState::Waiting,
            sys::KESTREL_REQUEST_RUNNING => RequestState::Running,
            sys::KESTREL_REQUEST_FINISHED => RequestState::Finished,
            sys::KESTREL_REQUEST_FAILED => RequestState::Failed,
            sys::KESTREL_REQUEST_CANCELLED => RequestState::Cancelled,
            other => RequestState::Other(other),
        }
    }

    /// Finished, failed or cancelled.
    pub fn is_done(self) -> bool {
        matches!(self, RequestState::Finished | RequestState::Failed | RequestState::Cancelled)
    }
}

/// One sample of a request, done or not (`kestrel_engine_result_t`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RequestResult {
    pub state: RequestState,
    /// `None` unless the request failed or was cancelled.
    pub error_code: Option<Code>,
    pub stop_reason: StopReason,
    pub n_samples: u32,
    pub n_prompt_tokens: u32,
    pub n_generated_tokens: u32,
    pub n_cached_prompt_tokens: u32,
    pub n_preemptions: u32,
    pub queue_ms: f64,
    pub time_to_first_token_ms: f64,
    pub total_ms: f64,
}

/// Engine counters (`kestrel_engine_stats_t`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EngineStats {
    pub n_running: u32,
    pub n_waiting: u32,
    pub n_finished: u64,
    pub kv_blocks_total: u32,
    pub kv_blocks_used: u32,
    pub kv_blocks_free: u32,
    pub kv_blocks_cached: u32,
    pub kv_block_size: u32,
    pub prefix_cache_lookups: u64,
    pub prefix_cache_hits: u64,
    pub prefix_cache_hit_rate: f64,
    pub prefill_tokens_computed: u64,
    pub prefill_tokens_reused: u64,
    pub decode_tokens: u64,
    pub generated_tokens: u64,
    pub steps: u64,
    pub preemptions: u64,
    pub busy_ms: f64,
    pub tokens_per_s: f64,
    pub kv_waste_fraction: f64,
}

/// What [`Engine::complete`] returns (sample 0).
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    pub text: String,
    pub tokens: Vec<i32>,
    pub result: RequestResult,
}

/// One item of a [`TokenStream`]: a generated token and the text that became final with it
/// (possibly empty). The last item may have `token == TOKEN_NONE`: held-back text flushed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamPiece {
    pub sample: u32,
    pub token: i32,
    pub text: String,
}

type EngineTokenFn = dyn FnMut(u32, i32, &[u8]) -> bool + Send;

/// A request's streaming closure and the panic it may have raised. Boxed, so its address (the
/// callback's user_data) stays put; freed at release or engine drop, after which the engine
/// makes no further call.
struct Sink {
    f: Mutex<Box<EngineTokenFn>>,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

unsafe extern "C" fn engine_token_trampoline(
    user_data: *mut c_void,
    _request: sys::kestrel_request_id_t,
    sample: u32,
    token: i32,
    text: *const c_char,
    length: usize,
) -> bool {
    // SAFETY: user_data is a Sink kept alive by the engine's table until the request is released.
    let sink = &*(user_data as *const Sink);
    let bytes: &[u8] = if text.is_null() || length == 0 {
        &[]
    } else {
        std::slice::from_raw_parts(text as *const u8, length)
    };
    let mut f = sink.f.lock().unwrap_or_else(|e| e.into_inner());
    match catch_unwind(AssertUnwindSafe(|| (*f)(sample, token, bytes))) {
        Ok(keep_going) => keep_going,
        Err(payload) => {
            let mut panic = sink.panic.lock().unwrap_or_else(|e| e.into_inner());
            if panic.is_none() {
                *panic = Some(payload);
            }
            false
        }
    }
}

/// The serving engine: `Send + Sync`; every method takes `&self` and may be called from any
/// thread. Streaming closures run on the thread that runs the step (the engine thread after
/// [`Engine::start`], else the caller of `step`/`wait`/a stream's `next`); from inside one do not
/// call `step`, `wait` or `complete` on the same engine. Keeps its model alive. Dropping it stops
/// the engine thread and drops every request.
pub struct Engine {
    raw: NonNull<sys::kestrel_engine_t>,
    model: Model,
    sinks: Mutex<HashMap<RequestId, Box<Sink>>>,
    threaded: AtomicBool,
}

// SAFETY: engine.h: "every engine function may be called from any thread at any time, except
// kestrel_engine_destroy" (Drop, which has the engine exclusively). Sinks hold Send closures.
unsafe impl Send for Engine {}
unsafe impl Sync for Engine {}

impl Engine {
    /// An engine over `model` with its KV pool on the model's device.
    /// Errors: `InvalidArgument` (a bad option, named with its value), `ResourceExhausted`.
    pub fn new(model: &Model, options: &EngineOptions) -> Result<Engine> {
        let mut o: sys::kestrel_engine_options_t = unsafe { std::mem::zeroed() };
        unsafe { sys::kestrel_engine_options_init(&mut o) };
        o.kv_cache_bytes = options.kv_cache_bytes;
        o.kv_block_size = options.kv_block_size;
        o.max_batch_tokens = options.max_batch_tokens;
        o.max_sequences = options.max_sequences;
        o.prefix_cache = options.prefix_cache;
        o.context_length = options.context_length;
        o.n_threads = options.n_threads;
        o.kv_type = options.kv_type.to_raw();
        let mut raw = ptr::null_mut();
        check(unsafe { sys::kestrel_engine_create(model.as_ptr(), &o, &mut raw) })?;
        let raw = NonNull::new(raw)
            .ok_or_else(|| Error::new(Code::Internal, "kestrel_engine_create returned no engine"))?;
        Ok(Engine {
            raw,
            model: model.clone(),
            sinks: Mutex::new(HashMap::new()),
            threaded: AtomicBool::new(false),
        })
    }

    /// The raw handle, valid while this `Engine` lives.
    pub fn as_ptr(&self) -> *mut sys::kestrel_engine_t {
        self.raw.as_ptr()
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Queues a request without streaming. Errors: `InvalidArgument` (empty prompt, bad option,
    /// prompt too long for the context), `ResourceExhausted` (one sample needs more KV blocks
    /// than the pool has), `OutOfRange` (a token id).
    pub fn submit<'p>(&self, prompt: impl Into<Prompt<'p>>, options: &RequestOptions) -> Result<RequestId> {
        self.submit_impl(prompt.into(), options, None)
    }

    /// Queues a request whose tokens are streamed to `on_token(sample, token, text)` as they are
    /// generated (and once more with [`crate::TOKEN_NONE`] to flush held-back text). Return false
    /// to stop that sample. A panic in the closure stops the request's samples and is resumed by
    /// [`Engine::wait`] on it.
    pub fn submit_with<'p, F>(&self, prompt: impl Into<Prompt<'p>>, options: &RequestOptions, mut on_token: F) -> Result<RequestId>
    where
        F: FnMut(u32, i32, &str) -> bool + Send + 'static,
    {
        let f: Box<EngineTokenFn> =
            Box::new(move |sample, token, bytes: &[u8]| on_token(sample, token, &String::from_utf8_lossy(bytes)));
        self.submit_impl(prompt.into(), options, Some(f))
    }

    /// Queues a request and returns an iterator over its generated pieces (sample 0..n). Without
    /// the engine thread, `next()` runs steps on the calling thread. Dropping the stream cancels
    /// and releases the request. After the last piece the stream yields `Err` once if the request
    /// failed or was cancelled.
    pub fn stream<'p>(&self, prompt: impl Into<Prompt<'p>>, options: &RequestOptions) -> Result<TokenStream<'_>> {
        let (tx, rx) = mpsc::channel::<StreamPiece>();
        let tx = Mutex::new(tx);
        let id = self.submit_with(prompt, options, move |sample, token, text| {
            // A dropped receiver means the stream is gone; the request is being cancelled anyway.
            tx.lock()
                .unwrap_or_else(|e| e.into_inner())
                .send(StreamPiece { sample, token, text: text.to_owned() })
                .is_ok()
        })?;
        Ok(TokenStream { engine: self, id, rx, finished: false })
    }

    fn submit_impl(&self, prompt: Prompt<'_>, options: &RequestOptions, on_token: Option<Box<EngineTokenFn>>) -> Result<RequestId> {
        let stops: Vec<CString> =
            options.stop_strings.iter().map(|s| c_string("stop string", s)).collect::<Result<_>>()?;
        let stop_ptrs: Vec<*const c_char> = stops.iter().map(|s| s.as_ptr()).collect();
        let sampler = options.sampler.clone().unwrap_or_default().to_raw();
        let mut o: sys::kestrel_engine_request_options_t = unsafe { std::mem::zeroed() };
        unsafe { sys::kestrel_engine_request_options_init(&mut o) };
        o.max_new_tokens = options.max_new_tokens;
        o.sampler = &sampler;
        o.stop_strings = if stop_ptrs.is_empty() { ptr::null() } else { stop_ptrs.as_ptr() };
        o.n_stop_strings = stop_ptrs.len();
        o.priority = options.priority;
        o.n = options.n;
        o.add_bos = options.add_bos;
        let grammar = options.grammar.as_deref().map(|g| c_string("grammar", g)).transpose()?;
        let json_schema = options.json_schema.as_deref().map(|j| c_string("json_schema", j)).transpose()?;
        o.grammar = grammar.as_ref().map_or(ptr::null(), |g| g.as_ptr());
        o.json_schema = json_schema.as_ref().map_or(ptr::null(), |j| j.as_ptr());
        let sink = on_token.map(|f| Box::new(Sink { f: Mutex::new(f), panic: Mutex::new(None) }));
        if let Some(s) = &sink {
            o.on_token = Some(engine_token_trampoline);
            o.user_data = &**s as *const Sink as *mut c_void;
        }
        let mut id: RequestId = 0;
        // SAFETY: every pointer is valid for the call (the C side copies options and strings). The
        // engine thread may call the sink before we store it; it reaches it through user_data.
        let status = unsafe {
            match prompt {
                Prompt::Text(text) => sys::kestrel_engine_submit(
                    self.raw.as_ptr(),
                    text.as_ptr() as *const c_char,
                    text.len(),
                    &o,
                    &mut id,
                ),
                Prompt::Tokens(tokens) => {
                    sys::kestrel_engine_submit_tokens(self.raw.as_ptr(), tokens.as_ptr(), tokens.len(), &o, &mut id)
                }
            }
        };
        check(status)?;
        if let Some(s) = sink {
            self.sinks.lock().unwrap_or_else(|e| e.into_inner()).insert(id, s);
        }
        Ok(id)
    }

    /// One scheduling step on this thread; returns the requests still waiting or running.
    /// Errors: `FailedPrecondition` while the engine thread runs or from a streaming closure.
    pub fn step(&self) -> Result<u32> {
        let mut active = 0u32;
        check(unsafe { sys::kestrel_engine_step(self.raw.as_ptr(), &mut active) })?;
        Ok(active)
    }

    /// Starts the engine thread (a no-op if it runs).
    pub fn start(&self) -> Result<()> {
        check(unsafe { sys::kestrel_engine_start(self.raw.as_ptr()) })?;
        self.threaded.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Stops the engine thread after its current step; queued requests stay.
    pub fn stop(&self) {
        unsafe { sys::kestrel_engine_stop(self.raw.as_ptr()) };
        self.threaded.store(false, Ordering::SeqCst);
    }

    /// Waits until request `id` is done (stepping on this thread without the engine thread).
    /// `None`: no time limit. Ok(true): done; Ok(false): timed out. Errors: `Cancelled` if it
    /// was cancelled, its failure status, `NotFound` for an unknown or released id. A panic of
    /// its streaming closure is resumed here.
    pub fn wait(&self, id: RequestId, timeout: Option<Duration>) -> Result<bool> {
        let ms = timeout.map_or(-1, |t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX));
        let status = unsafe { sys::kestrel_engine_wait(self.raw.as_ptr(), id, ms) };
        if let Some(payload) = self.take_panic(id) {
            if !status.is_null() {
                unsafe { sys::kestrel_status_free(status) };
            }
            resume_unwind(payload);
        }
        match check(status) {
            Ok(()) => Ok(true),
            Err(e) if e.code() == Code::DeadlineExceeded => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until no request is waiting or running; Ok(false) on timeout.
    pub fn wait_all(&self, timeout: Option<Duration>) -> Result<bool> {
        self.wait(0, timeout) // KESTREL_ENGINE_ALL_REQUESTS
    }

    /// Cancels a request (a no-op once it is done). Any thread, closures included.
    pub fn cancel(&self, id: RequestId) -> Result<()> {
        check(unsafe { sys::kestrel_engine_cancel(self.raw.as_ptr(), id) })
    }

    /// Forgets a request (cancelling it first if needed) and drops its closure; no call of the
    /// closure happens after this returns.
    pub fn release(&self, id: RequestId) -> Result<()> {
        let r = check(unsafe { sys::kestrel_engine_release_request(self.raw.as_ptr(), id) });
        self.sinks.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        r
    }

    /// Sample `sample` of a request, done or not. Errors: `NotFound`, `OutOfRange` (sample).
    pub fn result(&self, id: RequestId, sample: u32) -> Result<RequestResult> {
        let mut r: sys::kestrel_engine_result_t = unsafe { std::mem::zeroed() };
        r.struct_size = std::mem::size_of::<sys::kestrel_engine_result_t>() as u32;
        check(unsafe { sys::kestrel_engine_request_result(self.raw.as_ptr(), id, sample, &mut r) })?;
        Ok(RequestResult {
            state: RequestState::from_raw(r.state),
            error_code: if r.status_code == sys::KESTREL_STATUS_OK {
                None
            } else {
                Some(Code::from_raw(r.status_code))
            },
            stop_reason: StopReason::from_raw(r.stop_reason),
            n_samples: r.n_samples,
            n_prompt_tokens: r.n_prompt_tokens,
            n_generated_tokens: r.n_generated_tokens,
            n_cached_prompt_tokens: r.n_cached_prompt_tokens,
            n_preemptions: r.n_preemptions,
            queue_ms: r.queue_ms,
            time_to_first_token_ms: r.time_to_first_token_ms,
            total_ms: r.total_ms,
        })
    }

    /// The generated token ids of a sample (EOS excluded), so far.
    pub fn tokens(&self, id: RequestId, sample: u32) -> Result<Vec<i32>> {
        read_buffer(|buffer, capacity, required| unsafe {
            sys::kestrel_engine_request_tokens(self.raw.as_ptr(), id, sample, buffer, capacity, required)
        })
    }

    /// The text of a sample so far (stop string excluded).
    pub fn text(&self, id: RequestId, sample: u32) -> Result<String> {
        let bytes = read_buffer(|buffer: *mut u8, capacity, required| unsafe {
            sys::kestrel_engine_request_text(self.raw.as_ptr(), id, sample, buffer as *mut c_char, capacity, required)
        })?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Engine counters (at the end of the last step; request counts are current).
    pub fn stats(&self) -> Result<EngineStats> {
        let mut s: sys::kestrel_engine_stats_t = unsafe { std::mem::zeroed() };
        s.struct_size = std::mem::size_of::<sys::kestrel_engine_stats_t>() as u32;
        check(unsafe { sys::kestrel_engine_get_stats(self.raw.as_ptr(), &mut s) })?;
        Ok(EngineStats {
            n_running: s.n_running,
            n_waiting: s.n_waiting,
            n_finished: s.n_finished,
            kv_blocks_total: s.kv_blocks_total,
            kv_blocks_used: s.kv_blocks_used,
            kv_blocks_free: s.kv_blocks_free,
            kv_blocks_cached: s.kv_blocks_cached,
            kv_block_size: s.kv_block_size,
            prefix_cache_lookups: s.prefix_cache_lookups,
            prefix_cache_hits: s.prefix_cache_hits,
            prefix_cache_hit_rate: s.prefix_cache_hit_rate,
            prefill_tokens_computed: s.prefill_tokens_computed,
            prefill_tokens_reused: s.prefill_tokens_reused,
            decode_tokens: s.decode_tokens,
            generated_tokens: s.generated_tokens,
            steps: s.steps,
            preemptions: s.preemptions,
            busy_ms: s.busy_ms,
            tokens_per_s: s.tokens_per_s,
            kv_waste_fraction: s.kv_waste_fraction,
        })
    }

    /// Submits, waits and collects sample 0, then releases the request.
    pub fn complete<'p>(&self, prompt: impl Into<Prompt<'p>>, options: &RequestOptions) -> Result<Completion> {
        let id = self.submit(prompt, options)?;
        let out = (|| {
            self.wait(id, None)?;
            Ok(Completion { text: self.text(id, 0)?, tokens: self.tokens(id, 0)?, result: self.result(id, 0)? })
        })();
        let released = self.release(id);
        let out = out?;
        released.map(|_| out)
    }

    fn take_panic(&self, id: RequestId) -> Option<Box<dyn Any + Send>> {
        let sinks = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
        let sink = sinks.get(&id)?;
        let mut panic = sink.panic.lock().unwrap_or_else(|e| e.into_inner());
        panic.take()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // SAFETY: we own the engine; destroy stops its thread and makes no callback after it,
        // so the sinks (dropped after this) are no longer referenced.
        unsafe { sys::kestrel_engine_destroy(self.raw.as_ptr()) };
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("raw", &self.raw).finish()
    }
}

/// The pieces of one streamed request ([`Engine::stream`]); releases the request when dropped.
pub struct TokenStream<'e> {
    engine: &'e Engine,
    id: RequestId,
    rx: mpsc::Receiver<StreamPiece>,
    finished: bool,
}

impl TokenStream<'_> {
    pub fn id(&self) -> RequestId {
        self.id
    }

    /// Cancels the request; the stream then ends (with `Err(Cancelled)`).
    pub fn cancel(&self) -> Result<()> {
        self.engine.cancel(self.id)
    }

    /// The request's result (sample 0), e.g. its stop reason once the stream ended.
    pub fn result(&self) -> Result<RequestResult> {
        self.engine.result(self.id, 0)
    }

    fn finish(&mut self) -> Option<Result<StreamPiece>> {
        self.finished = true;
        match self.engine.wait(self.id, None) {
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

impl Iterator for TokenStream<'_> {
    type Item = Result<StreamPiece>;

    fn next(&mut self) -> Option<Result<StreamPiece>> {
        if self.finished {
            return None;
        }
        loop {
            if let Ok(piece) = self.rx.try_recv() {
                return Some(Ok(piece));
            }
            match self.engine.result(self.id, 0) {
                Ok(r) if r.state.is_done() => {
                    // Every callback ran before the request became done: drain, then end.
                    if let Ok(piece) = self.rx.try_recv() {
                        return Some(Ok(piece));
                    }
                    return self.finish();
                }
                Ok(_) => {}
                Err(e) => {
                    self.finished = true;
                    return Some(Err(e));
                }
            }
            if self.engine.threaded.load(Ordering::SeqCst) {
                if let Ok(piece) = self.rx.recv_timeout(Duration::from_millis(20)) {
                    return Some(Ok(piece));
                }
            } else if let Err(e) = self.engine.step() {
                if e.code() != Code::FailedPrecondition {
                    self.finished = true;
                    return Some(Err(e));
                }
                std::thread::yield_now(); // another thread is stepping
            }
        }
    }
}

impl Drop for TokenStream<'_> {
    fn drop(&mut self) {
        let _ = self.engine.release(self.id);
    }
}

impl std::fmt::Debug for TokenStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenStream").field("id", &self.id).finish()
    }
}
