"""Model: a loaded model, immutable and thread-safe, shared by sessions and engines."""
import ctypes
from dataclasses import dataclass, fields

from . import _native as n
from ._util import NativeObject, read_bytes, read_ints, token_array
from .errors import check


@dataclass(frozen=True)
class ModelInfo:
    architecture: str
    name: str
    device: str
    n_params: int
    weight_bytes: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    n_embd: int
    n_ff: int
    head_dim: int
    context_length: int
    vocab_size: int
    bos_id: int
    eos_id: int
    add_bos: bool


def _s(b):
    return (b or b"").decode("utf-8", "replace")


def _copy(cls, struct, **override):
    """A dataclass `cls` from the ctypes struct's fields of the same names."""
    return cls(**{f.name: override[f.name] if f.name in override else getattr(struct, f.name)
                  for f in fields(cls)})


# Offload flags (kestrel_model_options_t.offload_flags, Runtime.load_model(offload_flags=...)).
OFFLOAD_FLAG_NO_DIRECT_IO = 1
OFFLOAD_FLAG_NO_PREFETCH = 2
OFFLOAD_FLAG_MISS_FETCH = 4
OFFLOAD_FLAG_MISS_ON_HOST = 8


@dataclass(frozen=True)
class MemoryPlan:
    """The plan of a model loaded with a memory budget (kestrel_memory_plan_info_t)."""
    device: str
    device_budget_bytes: int
    host_budget_bytes: int
    resident_bytes: int
    resident_tensors: int
    offloaded_tensors: int
    experts_offloaded: bool
    expert_bytes: int
    expert_slot_bytes: int
    experts_total: int
    expert_slots: int
    expert_cache_bytes: int
    kv_bytes: int
    kv_tokens: int
    n_streamed_layers: int
    host_swap_bytes: int
    device_total_bytes: int
    streamed_bytes: int
    stream_ring_bytes: int
    stream_slots: int
    stream_prefetch_distance: int
    host_resident_bytes: int
    host_resident_tensors: int


@dataclass(frozen=True)
class ExpertLayerStats:
    hits: int
    misses: int


@dataclass(frozen=True)
class OffloadStats:
    """The expert cache's statistics (kestrel_offload_stats_t); `layers`: every MoE layer's."""
    expert_hits: int
    expert_misses: int
    disk_bytes_read: int
    disk_read_seconds: float
    expert_cache_bytes: int
    expert_cache_peak_bytes: int
    expert_cache_budget_bytes: int
    n_layers: int
    policy: str  # "lru" or "lfu"
    io_mode: str
    expert_slots: int
    expert_prefetch_buffers: int
    expert_prefetches: int
    expert_prefetch_hits: int
    expert_prefetch_wait_seconds: float
    expert_host_runs: int
    expert_host_seconds: float
    layers: tuple


@dataclass(frozen=True)
class MemoryStats:
    """What moved through the model's device (kestrel_memory_stats_t)."""
    device: str
    device_bytes: int
    device_peak_bytes: int
    host_to_device_bytes: int
    device_to_host_bytes: int
    expert_bytes_read: int
    expert_read_seconds: float
    streamed_bytes_copied: int
    stream_copy_wait_seconds: float


class Model(NativeObject):
    """Made by Runtime.load_model. Reference-counted in C: every session and engine holds it."""

    _destroy = n.kestrel_model_release

    def __init__(self, handle, log_sink=None):
        self._handle = handle
        self._log = log_sink  # the runtime's log callback must outlive every user of it

    def info(self):
        i = n.new(n.ModelInfo)
        check(n.kestrel_model_get_info(self.handle, ctypes.byref(i)))
        s = lambda b: (b or b"").decode("utf-8", "replace")  # noqa: E731
        return ModelInfo(s(i.architecture), s(i.name), s(i.device), i.n_params, i.weight_bytes,
                         i.n_layers, i.n_heads, i.n_kv_heads, i.n_embd, i.n_ff, i.head_dim,
                         i.context_length, i.vocab_size, i.bos_id, i.eos_id, i.add_bos)

    def tokenize(self, text, add_bos=True):
        b = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        return read_ints(lambda buf, cap, req: n.kestrel_tokenize(self.handle, b, len(b), add_bos,
                                                                  buf, cap, req), len(b) + 2)

    def detokenize(self, tokens, remove_leading_space=False):
        arr, count = token_array(tokens)
        data = read_bytes(lambda buf, cap, req: n.kestrel_detokenize(
            self.handle, arr, count, remove_leading_space, buf, cap, req), count * 8 + 16)
        return data.decode("utf-8", "replace")

    def token_to_piece(self, token):
        """The bytes one token contributes (may be part of a UTF-8 character)."""
        return read_bytes(lambda buf, cap, req: n.kestrel_token_to_piece(self.handle, token, buf,
                                                                         cap, req), 16)

    def new_session(self, **options):
        """A Session over this model; see Session for the options."""
        from .session import Session
        return Session(self, **options)

    def new_engine(self, **options):
        """An Engine (many concurrent requests) over this model; see Engine for the options."""
        from .engine import Engine
        return Engine(self, **options)

    def memory_plan(self):
        """The MemoryPlan; FailedPreconditionError for a model loaded without a memory budget."""
        p = n.new(n.MemoryPlanInfo)
        check(n.kestrel_model_get_memory_plan(self.handle, ctypes.byref(p)))
        return _copy(MemoryPlan, p, device=_s(p.device))

    def offload_stats(self):
        """OffloadStats of the expert cache; FailedPreconditionError without one."""
        st = n.new(n.OffloadStats)
        check(n.kestrel_model_get_offload_stats(self.handle, ctypes.byref(st)))
        layers = []
        for layer in range(st.n_layers):
            hits, misses = ctypes.c_uint64(), ctypes.c_uint64()
            check(n.kestrel_model_get_expert_layer_stats(self.handle, layer, ctypes.byref(hits),
                                                         ctypes.byref(misses)))
            layers.append(ExpertLayerStats(hits.value, misses.value))
        return _copy(OffloadStats, st, policy="lfu" if st.policy == 1 else "lru",
                     io_mode=_s(st.io_mode), layers=tuple(layers))

    def reset_offload_stats(self):
        """Zeroes the hit, miss and read-ahead counts."""
        check(n.kestrel_model_reset_offload_stats(self.handle))

    def memory_stats(self):
        """MemoryStats of the model's device (any model)."""
        st = n.new(n.MemoryStats)
        check(n.kestrel_model_get_memory_stats(self.handle, ctypes.byref(st)))
        return _copy(MemoryStats, st, device=_s(st.device))
