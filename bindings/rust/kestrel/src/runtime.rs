//! `Runtime`: the root object; discovers and loads the device plugins.
use std::ffi::c_void;
use std::os::raw::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::ptr::{self, NonNull};
use std::sync::Arc;

use kestrel_sys as sys;

use crate::error::{check, Code, Error, Result};
use crate::model::{ExpertCachePolicy, Model, ModelOptions};
use crate::util::{c_string, string_from};

/// Severity of a library log line (`kestrel_log_level_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Debug,
    Info,
    Warning,
    Error,
    /// As a threshold: no logging at all.
    Off,
}

impl LogLevel {
    fn to_raw(self) -> sys::kestrel_log_level_t {
        match self {
            LogLevel::Debug => sys::KESTREL_LOG_DEBUG,
            LogLevel::Info => sys::KESTREL_LOG_INFO,
            LogLevel::Warning => sys::KESTREL_LOG_WARNING,
            LogLevel::Error => sys::KESTREL_LOG_ERROR,
            LogLevel::Off => sys::KESTREL_LOG_OFF,
        }
    }

    fn from_raw(raw: sys::kestrel_log_level_t) -> LogLevel {
        match raw {
            sys::KESTREL_LOG_DEBUG => LogLevel::Debug,
            sys::KESTREL_LOG_INFO => LogLevel::Info,
            sys::KESTREL_LOG_WARNING => LogLevel::Warning,
            sys::KESTREL_LOG_OFF => LogLevel::Off,
            _ => LogLevel::Error,
        }
    }
}

/// The user's log callback. Shared (`Arc`) by the runtime and every model and session made from
/// it, because the library may log from them after the runtime itself is gone.
type LogFn = dyn Fn(LogLevel, &str) + Send + Sync;
pub(crate) struct LogSink(Box<LogFn>);

unsafe extern "C" fn log_trampoline(
    user_data: *mut c_void,
    level: sys::kestrel_log_level_t,
    message: *const c_char,
    length: usize,
) {
    // SAFETY: user_data is the LogSink the Arc keeps alive; message/length valid for the call.
    let sink = &*(user_data as *const LogSink);
    let bytes: &[u8] = if message.is_null() || length == 0 {
        &[]
    } else {
        std::slice::from_raw_parts(message as *const u8, length)
    };
    let text = String::from_utf8_lossy(bytes);
    // A panic must not unwind into C; a panicking logger loses that line.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        (sink.0)(LogLevel::from_raw(level), &text)
    }));
}

/// Options of [`Runtime::with_options`]. `Default` gives the library's defaults.
#[derive(Default)]
pub struct RuntimeOptions {
    plugin_path: Option<String>,
    log_level: Option<LogLevel>,
    log: Option<Arc<LogSink>>,
}

impl std::fmt::Debug for RuntimeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeOptions")
            .field("plugin_path", &self.plugin_path)
            .field("log_level", &self.log_level)
            .field("log_callback", &self.log.is_some())
            .finish()
    }
}

impl RuntimeOptions {
    pub fn new() -> RuntimeOptions {
        RuntimeOptions::default()
    }

    /// Where to look for plugins: a ':'-separated list of folders and/or plugin files. Default:
    /// `$KESTREL_PLUGIN_PATH`, else the plugin folder next to the library.
    pub fn plugin_path(mut self, path: impl Into<String>) -> RuntimeOptions {
        self.plugin_path = Some(path.into());
        self
    }

    /// Lines below `level` are not produced. Default: [`LogLevel::Warning`].
    pub fn log_level(mut self, level: LogLevel) -> RuntimeOptions {
        self.log_level = Some(level);
        self
    }

    /// Receives every log line at or above the level, on whichever thread produced it (possibly
    /// several at once). Without a callback the library logs nothing.
    pub fn log_callback(
        mut self,
        f: impl Fn(LogLevel, &str) + Send + Sync + 'static,
    ) -> RuntimeOptions {
        self.log = Some(Arc::new(LogSink(Box::new(f))));
        self
    }
}

/// Kind of a device (`kestrel_device_kind_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    Cpu,
    Gpu,
    Npu,
    Accelerator,
    /// A kind this version of the bindings does not know.
    Other(u32),
}

impl DeviceKind {
    fn from_raw(raw: sys::kestrel_device_kind_t) -> DeviceKind {
        match raw {
            sys::KESTREL_DEVICE_CPU => DeviceKind::Cpu,
            sys::KESTREL_DEVICE_GPU => DeviceKind::Gpu,
            sys::KESTREL_DEVICE_NPU => DeviceKind::Npu,
            sys::KESTREL_DEVICE_ACCELERATOR => DeviceKind::Accelerator,
            other => DeviceKind::Other(other),
        }
    }
}

/// A plugin found on the plugin path, loaded or skipped (`kestrel_plugin_info_t`).
#[derive(Clone, Debug)]
pub struct PluginInfo {
    pub name: String,
    pub path: String,
    pub version: String,
    pub loaded: bool,
    /// Why the plugin was skipped; empty when loaded.
    pub skip_reason: String,
    pub api_major: u16,
    pub api_minor: u16,
    pub device_count: u32,
}

/// A usable device (`kestrel_device_info_t`).
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    /// As used in [`ModelOptions::device`], e.g. "ref", "cpu", "cuda:0".
    pub name: String,
    pub plugin: String,
    pub description: String,
    pub kind: DeviceKind,
    pub memory_bytes: u64,
    pub host_visible: bool,
    pub is_async: bool,
    /// `kestrel_sys::KESTREL_DTYPE_MASK_*` bits it computes with.
    pub dtype_mask: u64,
    /// `kestrel_sys::KESTREL_DTYPE_MASK_*` bits it accepts as weights.
    pub weight_dtype_mask: u64,
}

/// The root object: loads the device plugins and loads models.
///
/// `Send + Sync`: the C runtime may be used from any number of threads at once. Models keep what
/// they need of it alive, so a `Runtime` may be dropped before its models and sessions.
pub struct Runtime {
    raw: NonNull<sys::kestrel_runtime_t>,
    log: Option<Arc<LogSink>>,
}

// SAFETY: runtime.h: "a runtime may be used from any number of threads at once".
unsafe impl Send for Runtime {}
unsafe impl Sync for Runtime {}

impl Runtime {
    /// A runtime with the default options (plugins from `$KESTREL_PLUGIN_PATH` or next to the
    /// library, no logging).
    pub fn new() -> Result<Runtime> {
        Runtime::with_options(RuntimeOptions::default())
    }

    pub fn with_options(options: RuntimeOptions) -> Result<Runtime> {
        // SAFETY: a zeroed struct is filled by kestrel_runtime_options_init.
        let mut raw_options: sys::kestrel_runtime_options_t = unsafe { std::mem::zeroed() };
        unsafe { sys::kestrel_runtime_options_init(&mut raw_options) };
        let plugin_path = options
            .plugin_path
            .as_deref()
            .map(|p| c_string("plugin path", p))
            .transpose()?;
        if let Some(p) = &plugin_path {
            raw_options.plugin_path = p.as_ptr(); // copied during create
        }
        if let Some(level) = options.log_level {
            raw_options.log_level = level.to_raw();
        }
        if let Some(sink) = &options.log {
            raw_options.log_callback = Some(log_trampoline);
            raw_options.log_user_data = Arc::as_ptr(sink) as *mut c_void;
        }
        let mut raw = ptr::null_mut();
        // SAFETY: options and out pointer are valid for the call.
        check(unsafe { sys::kestrel_runtime_create(&raw_options, &mut raw) })?;
        let raw = NonNull::new(raw).ok_or_else(|| {
            Error::new(Code::Internal, "kestrel_runtime_create returned no runtime")
        })?;
        Ok(Runtime {
            raw,
            log: options.log,
        })
    }

    /// The raw handle, for calls into `kestrel_sys`. Owned by this `Runtime`.
    pub fn as_ptr(&self) -> *mut sys::kestrel_runtime_t {
        self.raw.as_ptr()
    }

    /// Every plugin found on the plugin path, loaded or skipped (with the reason).
    pub fn plugins(&self) -> Result<Vec<PluginInfo>> {
        let count = unsafe { sys::kestrel_runtime_plugin_count(self.raw.as_ptr()) };
        (0..count)
            .map(|i| {
                let mut info: sys::kestrel_plugin_info_t = unsafe { std::mem::zeroed() };
                info.struct_size = std::mem::size_of::<sys::kestrel_plugin_info_t>() as u32;
                check(unsafe {
                    sys::kestrel_runtime_plugin_info(self.raw.as_ptr(), i, &mut info)
                })?;
                // SAFETY: strings valid while the runtime exists; copied here.
                unsafe {
                    Ok(PluginInfo {
                        name: string_from(info.name),
                        path: string_from(info.path),
                        version: string_from(info.version),
                        loaded: info.loaded,
                        skip_reason: string_from(info.skip_reason),
                        api_major: info.api_major,
                        api_minor: info.api_minor,
                        device_count: info.device_count,
                    })
                }
            })
            .collect()
    }

    /// The usable devices of all loaded plugins.
    pub fn devices(&self) -> Result<Vec<DeviceInfo>> {
        let count = unsafe { sys::kestrel_runtime_device_count(self.raw.as_ptr()) };
        (0..count)
            .map(|i| {
                let mut info: sys::kestrel_device_info_t = unsafe { std::mem::zeroed() };
                info.struct_size = std::mem::size_of::<sys::kestrel_device_info_t>() as u32;
                check(unsafe {
                    sys::kestrel_runtime_device_info(self.raw.as_ptr(), i, &mut info)
                })?;
                unsafe {
                    Ok(DeviceInfo {
                        name: string_from(info.name),
                        plugin: string_from(info.plugin),
                        description: string_from(info.description),
                        kind: DeviceKind::from_raw(info.kind),
                        memory_bytes: info.memory_bytes,
                        host_visible: info.host_visible,
                        is_async: info.async_,
                        dtype_mask: info.dtype_mask,
                        weight_dtype_mask: info.weight_dtype_mask,
                    })
                }
            })
            .collect()
    }

    /// Loads a GGUF model onto the default device (the first of the preferred order cpu, ref).
    /// Errors: `NotFound` (file, device), `InvalidArgument` / `DataLoss` / `Unimplemented` for a
    /// bad file (the message names the field), `ResourceExhausted`.
    pub fn load_model(&self, path: impl AsRef<Path>) -> Result<Model> {
        self.load_model_with(path, &ModelOptions::default())
    }

    pub fn load_model_with(&self, path: impl AsRef<Path>, options: &ModelOptions) -> Result<Model> {
        self.load(path.as_ref(), options, None)
    }

    /// Like [`Runtime::load_model_with`], reporting progress in [0, 1] to `progress` on this
    /// thread; returning false from it cancels the load (`Code::Cancelled`).
    pub fn load_model_with_progress(
        &self,
        path: impl AsRef<Path>,
        options: &ModelOptions,
        mut progress: impl FnMut(f32) -> bool,
    ) -> Result<Model> {
        self.load(path.as_ref(), options, Some(&mut progress))
    }

    fn load(
        &self,
        path: &Path,
        options: &ModelOptions,
        progress: Option<&mut dyn FnMut(f32) -> bool>,
    ) -> Result<Model> {
        let path_bytes = path_bytes(path);
        let mut raw_options: sys::kestrel_model_options_t = unsafe { std::mem::zeroed() };
        unsafe { sys::kestrel_model_options_init(&mut raw_options) };
        let device = options
            .device
            .as_deref()
            .map(|d| c_string("device", d))
            .transpose()?;
        if let Some(d) = &device {
            raw_options.device = d.as_ptr();
        }
        raw_options.use_mmap = options.use_mmap;
        raw_options.metadata_only = options.metadata_only;
        let budget = options
            .memory_budget
            .as_deref()
            .map(|b| c_string("memory_budget", b))
            .transpose()?;
        if let Some(b) = &budget {
            raw_options.memory_budget = b.as_ptr();
        }
        raw_options.expert_cache_policy = match options.expert_cache_policy {
            ExpertCachePolicy::Lru => sys::KESTREL_EXPERT_CACHE_LRU,
            ExpertCachePolicy::Lfu => sys::KESTREL_EXPERT_CACHE_LFU,
        };
        raw_options.plan_context_length = options.plan_context_length;
        raw_options.plan_sequences = options.plan_sequences;
        raw_options.offload_flags = options.offload_flags;
        let mut state = ProgressState {
            f: progress,
            panic: None,
        };
        if state.f.is_some() {
            raw_options.progress_callback = Some(progress_trampoline);
            raw_options.progress_user_data = &mut state as *mut ProgressState as *mut c_void;
        }
        let mut raw = ptr::null_mut();
        let status = unsafe {
            sys::kestrel_model_load(
                self.raw.as_ptr(),
                path_bytes.as_ptr() as *const c_char,
                path_bytes.len(),
                &raw_options,
                &mut raw,
            )
        };
        if let Some(payload) = state.panic.take() {
            if let Some(raw) = NonNull::new(raw) {
                unsafe { sys::kestrel_model_release(raw.as_ptr()) };
            }
            std::panic::resume_unwind(payload);
        }
        check(status)?;
        let raw = NonNull::new(raw)
            .ok_or_else(|| Error::new(Code::Internal, "kestrel_model_load returned no model"))?;
        // SAFETY: we own the one reference kestrel_model_load returned.
        Ok(unsafe { Model::from_raw(raw, self.log.clone()) })
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // SAFETY: we own the runtime; models and sessions keep their own references inside.
        unsafe { sys::kestrel_runtime_destroy(self.raw.as_ptr()) };
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("raw", &self.raw).finish()
    }
}

struct ProgressState<'a> {
    f: Option<&'a mut dyn FnMut(f32) -> bool>,
    panic: Option<Box<dyn std::any::Any + Send>>,
}

unsafe extern "C" fn progress_trampoline(user_data: *mut c_void, progress: f32) -> bool {
    // SAFETY: user_data is the ProgressState on the stack of `Runtime::load` (same thread).
    let state = &mut *(user_data as *mut ProgressState);
    let Some(f) = state.f.as_mut() else {
        return true;
    };
    match catch_unwind(AssertUnwindSafe(|| f(progress))) {
        Ok(keep_going) => keep_going,
        Err(payload) => {
            state.panic = Some(payload);
            false
        }
    }
}

#[cfg(unix)]
fn path_bytes(path: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str().as_bytes().to_vec()
}

#[cfg(not(unix))]
fn path_bytes(path: &Path) -> Vec<u8> {
    path.to_string_lossy().into_owned().into_bytes()
}
