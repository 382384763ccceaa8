//! Safe Rust API for Kestrel, an embeddable LLM inference SDK, over its stable C ABI
//! (`kestrel-sys`).
//!
//! ```no_run
//! use kestrel::{GenerateOptions, Runtime, SamplerOptions, SessionOptions};
//!
//! let runtime = Runtime::new()?;
//! let model = runtime.load_model("stories260K.gguf")?;
//! let mut session = model.new_session_with(&SessionOptions::default().sampler(SamplerOptions::greedy()))?;
//! let options = GenerateOptions::default().max_new_tokens(32);
//! session.generate("Once upon a time", &options, |_token, text| {
//!     print!("{text}");
//!     true // keep going
//! })?;
//! # Ok::<(), kestrel::Error>(())
//! ```
//!
//! Many concurrent requests over one model go through an [`Engine`] (continuous batching,
//! prefix cache): `engine.stream(prompt, &options)?` iterates over the generated pieces.
//!
//! Threads: [`Runtime`], [`Model`] and [`Engine`] are `Send + Sync` (the C objects are thread-safe);
//! [`Session`] is `Send` but not `Sync` (one user at a time); [`CancelHandle`] is `Send + Sync`
//! and stops a running [`Session::generate`] from another thread. Errors are [`Error`] values
//! with a [`Code`] and the library's message. Ownership follows the C API: a `Model` is
//! reference-counted (`Clone` retains), a `Session` keeps its model alive, and any drop order is
//! safe.
//!
//! Cancelling from another thread:
//!
//! ```no_run
//! # let model = kestrel::Runtime::new()?.load_model("stories260K.gguf")?;
//! let mut session = model.new_session()?;
//! let cancel = session.cancel_handle(); // Send + Sync + Clone; may outlive the session
//! std::thread::spawn(move || {
//!     std::thread::sleep(std::time::Duration::from_secs(1));
//!     cancel.cancel(); // generate below returns Err with Code::Cancelled
//! });
//! let result = session.generate("Once upon a time", &Default::default(), |_, text| {
//!     print!("{text}");
//!     true
//! });
//! # let _ = result;
//! # Ok::<(), kestrel::Error>(())
//! ```
//!
//! A `Session` cannot be shared between threads (it is not `Sync`):
//!
//! ```compile_fail
//! fn assert_sync<T: Sync>() {}
//! assert_sync::<kestrel::Session>();
//! ```
#![warn(missing_debug_implementations)]

mod engine;
mod error;
mod model;
pub mod package;
mod runtime;
mod session;
mod util;

pub use engine::{
    Completion, Engine, EngineOptions, EngineStats, RequestId, RequestOptions, RequestResult, RequestState,
    StreamPiece, TokenStream,
};
pub use error::{Code, Error, Result};
pub use model::{
    ChatMessage, ChatTemplateOptions, ExpertCachePolicy, ExpertLayerStats, MemoryPlan, MemoryStats, Model,
    ModelInfo, ModelOptions, OffloadStats, TensorTypeSummary, TokenizerInfo, OFFLOAD_FLAG_MISS_FETCH,
    OFFLOAD_FLAG_MISS_ON_HOST, OFFLOAD_FLAG_NO_DIRECT_IO, OFFLOAD_FLAG_NO_PREFETCH,
};
pub use runtime::{DeviceInfo, DeviceKind, LogLevel, PluginInfo, Runtime, RuntimeOptions};
pub use session::{
    CancelHandle, GenerateOptions, GenerateStats, KvType, Prompt, SamplerOptions, Session, SessionOptions,
    SpecMethod, SpeculativeOptions, SpeculativeStats, StopReason, TOKEN_NONE,
};

/// Raw bindings, for what the safe API does not cover.
pub use kestrel_sys as sys;

/// The loaded library's version, "MAJOR.MINOR.PATCH".
pub fn version() -> &'static str {
    // SAFETY: static NUL-terminated storage, never NULL.
    unsafe { std::ffi::CStr::from_ptr(sys::kestrel_version()) }
        .to_str()
        .unwrap_or("")
}

/// The loaded library's version as MAJOR * 10000 + MINOR * 100 + PATCH.
pub fn version_number() -> u32 {
    unsafe { sys::kestrel_version_number() }
}

/// The version of the headers these bindings were generated from.
pub const HEADER_VERSION_NUMBER: u32 = sys::KESTREL_VERSION_NUMBER;

#[cfg(test)]
mod static_checks {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}

    #[test]
    fn thread_traits() {
        assert_send_sync::<Runtime>();
        assert_send_sync::<Model>();
        assert_send::<Session>();
        assert_send_sync::<CancelHandle>();
        assert_send_sync::<Engine>();
        assert_send_sync::<Error>();
    }
}
