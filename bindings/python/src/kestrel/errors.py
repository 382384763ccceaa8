"""Kestrel statuses as Python exceptions: kestrel.Error carries the status code and the library's
message (which names the bad input); one subclass per code, e.g. kestrel.NotFoundError."""
import enum

from . import _native as n


class Code(enum.IntEnum):
    """kestrel_status_code_t (numbered like absl::StatusCode)."""
    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15


class Error(Exception):
    """A failed Kestrel call. str(e) is "CODE_NAME: message"."""

    code = Code.UNKNOWN

    def __init__(self, message, code=None):
        if code is not None:
            self.code = code
        self.message = message
        super().__init__(f"{self.code.name}: {message}")


class CancelledError(Error):
    code = Code.CANCELLED


class InvalidArgumentError(Error, ValueError):
    code = Code.INVALID_ARGUMENT


class DeadlineExceededError(Error, TimeoutError):
    code = Code.DEADLINE_EXCEEDED


class NotFoundError(Error, LookupError):
    code = Code.NOT_FOUND


class ResourceExhaustedError(Error, MemoryError):
    code = Code.RESOURCE_EXHAUSTED


class FailedPreconditionError(Error):
    code = Code.FAILED_PRECONDITION


class OutOfRangeError(Error, IndexError):
    code = Code.OUT_OF_RANGE


class UnimplementedError(Error, NotImplementedError):
    code = Code.UNIMPLEMENTED


class InternalError(Error):
    code = Code.INTERNAL


class DataLossError(Error):
    code = Code.DATA_LOSS


_BY_CODE = {c.code: c for c in (CancelledError, InvalidArgumentError, DeadlineExceededError,
                                NotFoundError, ResourceExhaustedError, FailedPreconditionError,
                                OutOfRangeError, UnimplementedError, InternalError, DataLossError)}


def error_from_code(code, message):
    try:
        code = Code(code)
    except ValueError:
        return Error(message, Code.UNKNOWN)
    cls = _BY_CODE.get(code, Error)
    return cls(message) if cls is not Error else Error(message, code)


def take(status):
    """Turns a kestrel_status_t* (an int address, or None for OK) into an exception to raise, or
    None; frees the status."""
    if not status:
        return None
    code = n.kestrel_status_code(status)
    message = (n.kestrel_status_message(status) or b"").decode("utf-8", "replace")
    n.kestrel_status_free(status)
    return error_from_code(code, message)


def check(status):
    """Raises the error of a non-NULL status (freeing it)."""
    e = take(status)
    if e is not None:
        raise e
