"""Runtime: the root object; finds the plugins (each loads when its device is first needed)."""
import ctypes
import enum
import threading
from dataclasses import dataclass

from . import _native as n
from ._util import NativeObject
from .errors import check


class LogLevel(enum.IntEnum):
    DEBUG = 0
    INFO = 1
    WARNING = 2
    ERROR = 3
    OFF = 4


@dataclass(frozen=True)
class PluginInfo:
    name: str
    path: str
    version: str
    loaded: bool
    skip_reason: str
    api_major: int
    api_minor: int
    device_count: int


@dataclass(frozen=True)
class DeviceInfo:
    name: str
    plugin: str
    description: str
    kind: int
    memory_bytes: int
    host_visible: bool
    is_async: bool
    dtype_mask: int
    weight_dtype_mask: int


def _s(b):
    return (b or b"").decode("utf-8", "replace")


class _LogSink:
    """Keeps the ctypes log callback alive as long as any object of the runtime may log."""

    def __init__(self, fn):
        self.fn = fn
        self.lock = threading.Lock()

        def trampoline(_user, level, message, length):
            try:
                text = ctypes.string_at(message, length).decode("utf-8", "replace") if length else ""
                self.fn(LogLevel(level) if level in LogLevel._value2member_map_ else level, text)
            except Exception:  # a log callback must not raise into the library
                pass

        self.c_fn = n.LOG_FN(trampoline)


class Runtime(NativeObject):
    """Finds the plugins (KESTREL_PLUGIN_PATH, or the folder next to libkestrel.so).

    Thread-safe. `log` is a callable(level, message) called on whichever thread logs.
    Models and sessions keep what they need alive, so the runtime may be dropped first.
    """

    _destroy = n.kestrel_runtime_destroy

    def __init__(self, plugin_path=None, log=None, log_level=LogLevel.WARNING):
        o = n.new(n.RuntimeOptions, n.kestrel_runtime_options_init_sized)
        if plugin_path is not None:
            o.plugin_path = plugin_path.encode()
        self._log = _LogSink(log) if log is not None else None
        if self._log is not None:
            o.log_callback = self._log.c_fn
        o.log_level = int(log_level)
        handle = ctypes.c_void_p()
        check(n.kestrel_runtime_create(ctypes.byref(o), ctypes.byref(handle)))
        self._handle = handle

    def plugins(self):
        """Every plugin found, loaded or skipped with the reason (loads them all)."""
        out = []
        for i in range(n.kestrel_runtime_plugin_count(self.handle)):
            p = n.new(n.PluginInfo)
            check(n.kestrel_runtime_plugin_info(self.handle, i, ctypes.byref(p)))
            out.append(PluginInfo(_s(p.name), _s(p.path), _s(p.version), p.loaded,
                                  _s(p.skip_reason), p.api_major, p.api_minor, p.device_count))
        return out

    def devices(self):
        out = []
        for i in range(n.kestrel_runtime_device_count(self.handle)):
            d = n.new(n.DeviceInfo)
            check(n.kestrel_runtime_device_info(self.handle, i, ctypes.byref(d)))
            out.append(DeviceInfo(_s(d.name), _s(d.plugin), _s(d.description), d.kind,
                                  d.memory_bytes, d.host_visible, d.async_, d.dtype_mask,
                                  d.weight_dtype_mask))
        return out

    def load_model(self, path, device=None, use_mmap=True, progress=None, metadata_only=False,
                   memory_budget=None, expert_cache_policy="lru", plan_context_length=0,
                   plan_sequences=0, offload_flags=0):
        """Loads a GGUF model. `device`: "cpu", "ref", "opencl:1", ... (None: the default).
        `progress`: callable(fraction) -> bool (False cancels). Memory offload (see
        kestrel/offload.h): `memory_budget` "DEVICE=SIZE[,...]" (e.g. "host=60%"),
        `expert_cache_policy` "lru" or "lfu", the KV the plan reserves, `offload_flags`
        (kestrel.OFFLOAD_FLAG_*). Raises NotFoundError, InvalidArgumentError, DataLossError,
        ResourceExhaustedError (a budget that cannot work), ... naming the problem."""
        from .model import Model
        if expert_cache_policy not in ("lru", "lfu"):
            raise ValueError(f"expert_cache_policy must be 'lru' or 'lfu', not {expert_cache_policy!r}")
        o = n.new(n.ModelOptions, n.kestrel_model_options_init_sized)
        if device is not None:
            o.device = device.encode()
        o.use_mmap = use_mmap
        o.metadata_only = metadata_only
        budget = memory_budget.encode() if memory_budget else None
        o.memory_budget = budget
        o.expert_cache_policy = 1 if expert_cache_policy == "lfu" else 0
        o.plan_context_length = plan_context_length
        o.plan_sequences = plan_sequences
        o.offload_flags = offload_flags
        raised = []
        if progress is not None:
            def trampoline(_user, fraction):
                try:
                    return bool(progress(fraction))
                except BaseException as e:  # re-raised below
                    raised.append(e)
                    return False
            o.progress_callback = n.PROGRESS_FN(trampoline)
        p = str(path).encode()
        handle = ctypes.c_void_p()
        status = n.kestrel_model_load(self.handle, p, len(p), ctypes.byref(o), ctypes.byref(handle))
        if raised:
            from .errors import take
            take(status)
            if handle:
                n.kestrel_model_release(handle)
            raise raised[0]
        check(status)
        return Model(handle, self._log)
