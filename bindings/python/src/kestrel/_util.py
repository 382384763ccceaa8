"""Helpers shared by the modules: the C API's buffer convention and sampler options."""
import ctypes
from dataclasses import dataclass

from . import _native as n
from .errors import Code, check, take


def read_buffer(call, ctype, guess=256):
    """call(buffer, capacity, byref(required)) -> status, per model.h: measures, then fills."""
    capacity = guess
    for _ in range(4):
        buf = (ctype * max(capacity, 1))()
        required = ctypes.c_size_t(0)
        status = call(buf, capacity, ctypes.byref(required))
        if not status:
            return buf, required.value
        err = take(status)
        if err.code == Code.OUT_OF_RANGE and required.value > capacity:
            capacity = required.value
            continue
        raise err
    raise RuntimeError("kestrel: the required buffer size kept growing")


def read_bytes(call, guess=256):
    buf, n_bytes = read_buffer(call, ctypes.c_char, guess)
    return ctypes.string_at(buf, n_bytes)


def read_ints(call, guess=256):
    buf, count = read_buffer(call, ctypes.c_int32, guess)
    return list(buf[:count])


def c_strings(strings, what):
    """A (keepalive, array, count) triple for `const char* const*` fields."""
    encoded = []
    for s in strings or ():
        b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
        if b"\0" in b:
            raise ValueError(f"{what} contains a NUL byte: {s!r}")
        encoded.append(b)
    if not encoded:
        return encoded, None, 0
    array = (ctypes.c_char_p * len(encoded))(*encoded)
    return encoded, array, len(encoded)


def token_array(tokens):
    tokens = list(tokens)
    return (ctypes.c_int32 * max(len(tokens), 1))(*tokens), len(tokens)


def _sampler_defaults():
    s = n.new(n.SamplerOptions, n.kestrel_sampler_options_init_sized)
    return s


@dataclass
class SamplerOptions:
    """Sampling settings (kestrel_sampler_options_t); the defaults are the library's."""
    temperature: float = _sampler_defaults().temperature
    top_k: int = _sampler_defaults().top_k
    top_p: float = _sampler_defaults().top_p
    min_p: float = _sampler_defaults().min_p
    repetition_penalty: float = _sampler_defaults().repetition_penalty
    repetition_window: int = _sampler_defaults().repetition_window
    seed: int = _sampler_defaults().seed

    @staticmethod
    def greedy():
        """Temperature 0 (argmax, ties to the lowest id)."""
        return SamplerOptions(temperature=0.0)

    def to_c(self):
        s = n.new(n.SamplerOptions, n.kestrel_sampler_options_init_sized)
        s.temperature = self.temperature
        s.top_k = self.top_k
        s.top_p = self.top_p
        s.min_p = self.min_p
        s.repetition_penalty = self.repetition_penalty
        s.repetition_window = self.repetition_window
        s.seed = self.seed
        return s


KV_TYPES = {"f32": 0, "f16": 1}


def kv_type_value(kv_type):
    if kv_type not in KV_TYPES:
        raise ValueError(f"kv_type must be 'f32' or 'f16', not {kv_type!r}")
    return KV_TYPES[kv_type]


class NativeObject:
    """An owner of one C handle: close() (also on garbage collection and at the end of a `with`)
    hands it to the subclass's `_destroy` once; `handle` raises once it is closed."""

    _destroy = None  # the C function that frees the handle, set by each subclass
    _handle = None

    def close(self):
        handle = self._handle
        if handle:
            self._handle = None
            type(self)._destroy(handle)

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def handle(self):
        if not self._handle:
            raise ValueError(f"kestrel: the {type(self).__name__.lower()} is closed")
        return self._handle


__all__ = ["SamplerOptions", "check"]


def constraint_strings(grammar, json_schema):
    """(grammar, json_schema) as the C API's NUL-terminated bytes (None: unset). `json_schema`
    may be a dict (serialised) or a JSON string; `grammar` is GBNF text."""
    import json
    if grammar is not None and json_schema is not None:
        raise ValueError("give grammar or json_schema, not both")
    g = grammar.encode("utf-8") if isinstance(grammar, str) else grammar
    if json_schema is not None and not isinstance(json_schema, (str, bytes)):
        json_schema = json.dumps(json_schema)
    j = json_schema.encode("utf-8") if isinstance(json_schema, str) else json_schema
    return g, j
