//! Small helpers shared by the modules: C strings in and out, the buffer + required-size pattern.
use std::ffi::{CStr, CString};
use std::os::raw::c_char;

use kestrel_sys as sys;

use crate::error::{check, Code, Error, Result};

/// Copies a NUL-terminated C string (NULL gives "").
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string valid for the call.
pub(crate) unsafe fn string_from(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// Bytes as a `String`; invalid UTF-8 (possible with byte tokens) becomes U+FFFD.
pub(crate) fn string_from_bytes(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// A NUL-terminated copy of `s` for fields the C API reads as C strings.
pub(crate) fn c_string(what: &str, s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| {
        Error::new(
            Code::InvalidArgument,
            format!("{what} contains a NUL byte: {s:?}"),
        )
    })
}

/// Runs a C call that follows the buffer convention (buffer, capacity, out_required): measures
/// first, then fills a buffer of the required size. Retries if the size grew in between.
pub(crate) fn read_buffer<T: Copy + Default>(
    mut call: impl FnMut(*mut T, usize, *mut usize) -> *mut sys::kestrel_status_t,
) -> Result<Vec<T>> {
    let mut required = 0usize;
    check(call(std::ptr::null_mut(), 0, &mut required))?;
    loop {
        let mut buffer = vec![T::default(); required];
        if required == 0 {
            return Ok(buffer);
        }
        let mut needed = 0usize;
        let status = call(buffer.as_mut_ptr(), buffer.len(), &mut needed);
        if status.is_null() {
            buffer.truncate(needed);
            return Ok(buffer);
        }
        // SAFETY: a non-NULL status from the library.
        let code = unsafe { sys::kestrel_status_code(status) };
        if code == sys::KESTREL_STATUS_OUT_OF_RANGE && needed > required {
            unsafe { sys::kestrel_status_free(status) };
            required = needed;
            continue;
        }
        return check(status).map(|_| Vec::new());
    }
}
