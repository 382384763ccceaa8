"""Kestrel: an embeddable LLM inference SDK, from Python (ctypes over the stable C ABI).

    import kestrel
    rt = kestrel.Runtime()
    model = rt.load_model("stories260K.gguf")
    session = model.new_session(temperature=0)
    for text in session.generate("Once upon a time", max_new_tokens=64):
        print(text, end="", flush=True)

    engine = model.new_engine()          # many concurrent requests over one model
    engine.start()
    for text in engine.stream("Once upon a time", max_new_tokens=64, temperature=0):
        print(text, end="")

Names follow the Rust crate (Runtime, Model, Session, Engine). Errors are kestrel.Error
subclasses carrying the library's code and message. The library is found through
KESTREL_LIBRARY, KESTREL_LIB_DIR, the folder recorded at install, pkg-config or the loader path
(see kestrel._native).
"""
from . import _native
from ._util import SamplerOptions
from .engine import (Engine, EngineCompletion, EngineStats, Request, RequestResult, RequestState,
                     RequestStream)
from .errors import (CancelledError, Code, DataLossError, DeadlineExceededError, Error,
                     FailedPreconditionError, InternalError, InvalidArgumentError, NotFoundError,
                     OutOfRangeError, ResourceExhaustedError, UnimplementedError)
from .model import (OFFLOAD_FLAG_MISS_FETCH, OFFLOAD_FLAG_MISS_ON_HOST, OFFLOAD_FLAG_NO_DIRECT_IO,
                    OFFLOAD_FLAG_NO_PREFETCH, ExpertLayerStats,
                    MemoryPlan, MemoryStats, Model, ModelInfo, OffloadStats)
from .runtime import DeviceInfo, LogLevel, PluginInfo, Runtime
from .session import TOKEN_NONE, Completion, GenerateStats, Session, StopReason, TextStream

__version__ = "0.2.0"
LIBRARY_PATH = _native.LIBRARY_PATH


def version():
    """The loaded library's version, "MAJOR.MINOR.PATCH"."""
    return _native.kestrel_version().decode()


def version_number():
    return _native.kestrel_version_number()


__all__ = [name for name in dir() if not name.startswith("_")]
