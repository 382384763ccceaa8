//! `.kpkg` model packages (`kestrel/package.h`): write one from a GGUF (optionally with a draft
//! model and the prepared weights of devices), describe one, and see how a model's weights were
//! prepared. [`crate::Runtime::load_model`] reads a package like a GGUF.
use std::ffi::CString;
use std::path::Path;
use std::ptr;

use kestrel_sys as sys;

use crate::error::{check, Code, Error, Result};
use crate::util::{c_string, read_buffer};
use crate::{Model, Runtime};

fn c_path(what: &str, path: &Path) -> Result<CString> {
    c_string(what, path.to_str().ok_or_else(|| {
        Error::new(Code::InvalidArgument, format!("{what} is not valid UTF-8: {path:?}"))
    })?)
}

/// What [`write_package`] puts in the package besides the model.
#[derive(Debug, Clone, Default)]
pub struct PackOptions {
    /// Devices ("cpu") whose prepared weights the package carries.
    pub devices: Vec<String>,
    /// A draft model GGUF carried in the package.
    pub draft: Option<std::path::PathBuf>,
}

/// Writes the package `output` from the GGUF `model` (written to `<output>.tmp`, renamed when
/// complete). Errors: see `kestrel_package_write`.
pub fn write_package(
    runtime: &Runtime,
    model: impl AsRef<Path>,
    output: impl AsRef<Path>,
    options: &PackOptions,
) -> Result<()> {
    let model = c_path("model path", model.as_ref())?;
    let output = c_path("output path", output.as_ref())?;
    let devices = options
        .devices
        .iter()
        .map(|d| c_string("device", d))
        .collect::<Result<Vec<_>>>()?;
    let device_ptrs: Vec<*const std::os::raw::c_char> = devices.iter().map(|d| d.as_ptr()).collect();
    let draft = options.draft.as_deref().map(|p| c_path("draft path", p)).transpose()?;
    let mut raw: sys::kestrel_pack_options_t = unsafe { std::mem::zeroed() };
    unsafe { sys::kestrel_pack_options_init(&mut raw) };
    raw.devices = if device_ptrs.is_empty() { ptr::null() } else { device_ptrs.as_ptr() };
    raw.n_devices = device_ptrs.len();
    raw.draft_path = draft.as_ref().map_or(ptr::null(), |d| d.as_ptr());
    check(unsafe {
        sys::kestrel_package_write(runtime.as_ptr(), model.as_ptr(), output.as_ptr(), &raw)
    })
}

/// The package's JSON description (`kestrel_package_describe`); `verify_checksums` reads every
/// section and fails with `DataLoss` naming a damaged one.
pub fn describe_package(path: impl AsRef<Path>, verify_checksums: bool) -> Result<String> {
    let path = c_path("package path", path.as_ref())?;
    let bytes = read_buffer(|buffer: *mut u8, capacity, required| unsafe {
        sys::kestrel_package_describe(path.as_ptr(), verify_checksums, buffer as *mut _, capacity, required)
    })?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// How many of `model`'s weights came from a package's prepared weights (`.0`) and how many the
/// plugin prepared at load (`.1`).
pub fn weight_sources(model: &Model) -> Result<(u32, u32)> {
    let (mut imported, mut prepared) = (0u32, 0u32);
    check(unsafe { sys::kestrel_model_weight_sources(model.as_ptr(), &mut imported, &mut prepared) })?;
    Ok((imported, prepared))
}
