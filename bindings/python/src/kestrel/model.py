"""Model: a loaded model, immutable and thread-safe, shared by sessions and engines."""
import ctypes
from dataclasses import dataclass

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
