//! `Error`: a Kestrel status (code + message) as a Rust error.
use std::ffi::CStr;
use std::fmt;

use kestrel_sys as sys;

/// The canonical status codes of the C API (`kestrel_status_code_t`, numbered like
/// `absl::StatusCode`). A code this version does not know maps to [`Code::Unknown`]; the raw
/// value stays available through [`Error::raw_code`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Code {
    Cancelled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    Unimplemented,
    Internal,
    Unavailable,
    DataLoss,
}

impl Code {
    pub(crate) fn from_raw(raw: u32) -> Code {
        match raw {
            sys::KESTREL_STATUS_CANCELLED => Code::Cancelled,
            sys::KESTREL_STATUS_INVALID_ARGUMENT => Code::InvalidArgument,
            sys::KESTREL_STATUS_DEADLINE_EXCEEDED => Code::DeadlineExceeded,
            sys::KESTREL_STATUS_NOT_FOUND => Code::NotFound,
            sys::KESTREL_STATUS_ALREADY_EXISTS => Code::AlreadyExists,
            sys::KESTREL_STATUS_PERMISSION_DENIED => Code::PermissionDenied,
            sys::KESTREL_STATUS_RESOURCE_EXHAUSTED => Code::ResourceExhausted,
            sys::KESTREL_STATUS_FAILED_PRECONDITION => Code::FailedPrecondition,
            sys::KESTREL_STATUS_ABORTED => Code::Aborted,
            sys::KESTREL_STATUS_OUT_OF_RANGE => Code::OutOfRange,
            sys::KESTREL_STATUS_UNIMPLEMENTED => Code::Unimplemented,
            sys::KESTREL_STATUS_INTERNAL => Code::Internal,
            sys::KESTREL_STATUS_UNAVAILABLE => Code::Unavailable,
            sys::KESTREL_STATUS_DATA_LOSS => Code::DataLoss,
            _ => Code::Unknown,
        }
    }

    fn to_raw(self) -> u32 {
        match self {
            Code::Cancelled => sys::KESTREL_STATUS_CANCELLED,
            Code::Unknown => sys::KESTREL_STATUS_UNKNOWN,
            Code::InvalidArgument => sys::KESTREL_STATUS_INVALID_ARGUMENT,
            Code::DeadlineExceeded => sys::KESTREL_STATUS_DEADLINE_EXCEEDED,
            Code::NotFound => sys::KESTREL_STATUS_NOT_FOUND,
            Code::AlreadyExists => sys::KESTREL_STATUS_ALREADY_EXISTS,
            Code::PermissionDenied => sys::KESTREL_STATUS_PERMISSION_DENIED,
            Code::ResourceExhausted => sys::KESTREL_STATUS_RESOURCE_EXHAUSTED,
            Code::FailedPrecondition => sys::KESTREL_STATUS_FAILED_PRECONDITION,
            Code::Aborted => sys::KESTREL_STATUS_ABORTED,
            Code::OutOfRange => sys::KESTREL_STATUS_OUT_OF_RANGE,
            Code::Unimplemented => sys::KESTREL_STATUS_UNIMPLEMENTED,
            Code::Internal => sys::KESTREL_STATUS_INTERNAL,
            Code::Unavailable => sys::KESTREL_STATUS_UNAVAILABLE,
            Code::DataLoss => sys::KESTREL_STATUS_DATA_LOSS,
        }
    }

    /// The C name of the code, e.g. `"NOT_FOUND"` (`kestrel_status_code_name`).
    pub fn name(self) -> &'static str {
        // SAFETY: kestrel_status_code_name returns static NUL-terminated storage, never NULL.
        unsafe { CStr::from_ptr(sys::kestrel_status_code_name(self.to_raw())) }
            .to_str()
            .unwrap_or("UNKNOWN_CODE")
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A failed Kestrel call: the status code and the library's message, which names the bad input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    code: Code,
    raw_code: u32,
    message: String,
}

impl Error {
    /// An error made on the Rust side (e.g. a string with an interior NUL byte).
    pub fn new(code: Code, message: impl Into<String>) -> Error {
        Error {
            code,
            raw_code: code.to_raw(),
            message: message.into(),
        }
    }

    pub fn code(&self) -> Code {
        self.code
    }

    /// The numeric code as the library returned it.
    pub fn raw_code(&self) -> u32 {
        self.raw_code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// Takes ownership of a non-NULL status: copies code and message, then frees it.
    ///
    /// # Safety
    /// `status` must be a live status returned by the library and not used afterwards.
    pub(crate) unsafe fn from_status(status: *mut sys::kestrel_status_t) -> Error {
        let raw_code = sys::kestrel_status_code(status);
        let message = CStr::from_ptr(sys::kestrel_status_message(status))
            .to_string_lossy()
            .into_owned();
        sys::kestrel_status_free(status);
        Error {
            code: Code::from_raw(raw_code),
            raw_code,
            message,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Turns a returned `kestrel_status_t*` into a `Result` (NULL is success), freeing the status.
pub(crate) fn check(status: *mut sys::kestrel_status_t) -> Result<()> {
    if status.is_null() {
        Ok(())
    } else {
        // SAFETY: a non-NULL status returned by the library, owned by us from here on.
        Err(unsafe { Error::from_status(status) })
    }
}
