"""Session: one sequence (conversation) with its own KV cache and sampler."""
import ctypes
import enum
import queue
import threading
from dataclasses import dataclass, field

from . import _native as n
from ._util import (NativeObject, SamplerOptions, c_strings, constraint_strings, kv_type_value,
                    token_array)
from .errors import CancelledError, FailedPreconditionError, check, take

TOKEN_NONE = -1  # the token id of a final flush of held-back text


class StopReason(enum.IntEnum):
    NONE = 0
    EOS = 1
    MAX_TOKENS = 2
    STOP_STRING = 3
    CALLBACK = 4
    CONTEXT_FULL = 5
    CANCELLED = 6


def stop_reason(value):
    try:
        return StopReason(value)
    except ValueError:
        return value


@dataclass(frozen=True)
class GenerateStats:
    n_prompt_tokens: int
    n_generated_tokens: int
    prefill_ms: float
    decode_ms: float
    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    stop_reason: StopReason


@dataclass
class Completion:
    text: str
    tokens: list = field(default_factory=list)
    stats: GenerateStats = None


def make_sampler(sampler, sampler_kwargs):
    """A SamplerOptions from `sampler` and keyword overrides (temperature=0, seed=1, ...)."""
    s = SamplerOptions(**vars(sampler)) if sampler is not None else SamplerOptions()
    for k, v in sampler_kwargs.items():
        if not hasattr(s, k):
            raise TypeError(f"unknown sampler option {k!r}")
        setattr(s, k, v)
    return s


class Session(NativeObject):
    """One conversation over a model. Use from one thread at a time (cancel: any thread).

    Options: context_length (0: the model's), kv_block_size, n_threads (0: automatic),
    kv_type ("f32" or "f16"), sampler (a SamplerOptions) and/or its fields as keywords
    (temperature=0 is greedy, top_k, top_p, min_p, repetition_penalty, repetition_window, seed).
    """

    _destroy = n.kestrel_session_destroy

    def __init__(self, model, context_length=0, kv_block_size=None, n_threads=0, kv_type="f32",
                 sampler=None, **sampler_kwargs):
        self._model = model  # keeps the model (and its runtime's log callback) alive
        self.sampler = make_sampler(sampler, sampler_kwargs)
        c_sampler = self.sampler.to_c()
        o = n.new(n.SessionOptions, n.kestrel_session_options_init_sized)
        o.context_length = context_length
        if kv_block_size is not None:
            o.kv_block_size = kv_block_size
        o.n_threads = n_threads
        o.kv_type = kv_type_value(kv_type)
        o.sampler = ctypes.pointer(c_sampler)
        handle = ctypes.c_void_p()
        check(n.kestrel_session_create(model.handle, ctypes.byref(o), ctypes.byref(handle)))
        self._handle = handle
        self._busy = threading.Lock()

    @property
    def model(self):
        return self._model

    @property
    def token_count(self):
        """Tokens in the KV cache."""
        return n.kestrel_session_token_count(self.handle)

    def cancel(self):
        """Stops a running generate after the current step (any thread)."""
        if self._handle:
            n.kestrel_session_cancel(self._handle)

    def generate(self, prompt, max_new_tokens=128, stop=None, add_bos=True, keep_context=False,
                 grammar=None, json_schema=None):
        """Streams the generation of `prompt` (str, or a list of token ids used as given):
        an iterator of text pieces, as they are produced.

            for text in session.generate("Once upon a time", max_new_tokens=64):
                print(text, end="", flush=True)

        The returned TextStream also has .tokens, .stats (after the end), .cancel(); leaving the
        loop early (break, close(), garbage collection) cancels the generation. Errors (an empty
        prompt, a prompt longer than the context, ...) are raised by the iteration.

        Constrained output (docs/CONSTRAINED_OUTPUT.md): `grammar` (GBNF text) or `json_schema`
        (a dict or JSON text of the supported subset) lets only matching text be generated; a
        bad one raises InvalidArgumentError naming the line and column or the keyword."""
        constraint = constraint_strings(grammar, json_schema)
        return TextStream(self, prompt, max_new_tokens, stop, add_bos, keep_context, constraint)

    def complete(self, prompt, max_new_tokens=128, stop=None, add_bos=True, keep_context=False,
                 grammar=None, json_schema=None):
        """Generates without streaming: a Completion with text, tokens and stats."""
        pieces, tokens = [], []

        def on_token(token, data):
            if token != TOKEN_NONE:
                tokens.append(token)
            pieces.append(data)
            return True

        stats = self._run(prompt, max_new_tokens, stop, add_bos, keep_context,
                          constraint_strings(grammar, json_schema), on_token)
        return Completion(b"".join(pieces).decode("utf-8", "replace"), tokens, stats)

    def generate_text(self, prompt, **options):
        """The generated text alone (see complete)."""
        return self.complete(prompt, **options).text

    def _run(self, prompt, max_new_tokens, stop, add_bos, keep_context, constraint, on_token):
        """Runs kestrel_session_generate on this thread; on_token(token, bytes) -> bool."""
        if not self._busy.acquire(blocking=False):
            raise FailedPreconditionError("the session is already generating (one user at a time)")
        try:
            keep, stops, n_stops = c_strings(stop if not isinstance(stop, str) else [stop], "stop")
            o = n.new(n.GenerateOptions, n.kestrel_generate_options_init_sized)
            o.max_new_tokens = max_new_tokens if max_new_tokens >= 0 else 0xFFFFFFFF
            if n_stops:
                o.stop_strings = ctypes.cast(stops, ctypes.POINTER(ctypes.c_char_p))
                o.n_stop_strings = n_stops
            o.add_bos = add_bos
            o.keep_context = keep_context
            o.grammar, o.json_schema = constraint  # bytes kept alive by `constraint`
            raised = []

            def trampoline(_user, token, text, length):
                try:
                    return bool(on_token(token, ctypes.string_at(text, length) if length else b""))
                except BaseException as e:
                    raised.append(e)
                    return False

            c_fn = n.TOKEN_FN(trampoline)
            o.on_token = c_fn
            st = n.new(n.GenerateStats)
            if isinstance(prompt, (str, bytes)):
                p = prompt.encode("utf-8") if isinstance(prompt, str) else prompt
                status = n.kestrel_session_generate(self.handle, p, len(p), ctypes.byref(o),
                                                    ctypes.byref(st))
            else:
                arr, count = token_array(prompt)
                status = n.kestrel_session_generate_tokens(self.handle, arr, count, ctypes.byref(o),
                                                           ctypes.byref(st))
            err = take(status)
            del keep
            if raised:
                raise raised[0]
            if err is not None:
                raise err
            return GenerateStats(st.n_prompt_tokens, st.n_generated_tokens, st.prefill_ms,
                                 st.decode_ms, st.prefill_tokens_per_s, st.decode_tokens_per_s,
                                 stop_reason(st.stop_reason))
        finally:
            self._busy.release()


_DONE = object()


class _StreamState:
    """What the helper thread shares with its TextStream (not the stream itself: no reference
    cycle, so leaving a loop early frees the stream, and cancels, at once)."""

    def __init__(self):
        self.queue = queue.Queue()
        self.cancelled = threading.Event()
        self.stats = None
        self.error = None


def _generate_in_thread(state, session, args):
    def on_token(token, data):
        state.queue.put((token, data))
        return not state.cancelled.is_set()

    try:
        state.stats = session._run(*args, on_token)
    except BaseException as e:
        state.error = e
    state.queue.put(_DONE)


class TextStream:
    """Iterator over the text of one Session.generate; the generation runs on a helper thread."""

    def __init__(self, session, prompt, max_new_tokens, stop, add_bos, keep_context,
                 constraint=(None, None)):
        self._session = session
        self._state = _StreamState()
        self._finished = False
        self.tokens = []
        self._thread = threading.Thread(
            target=_generate_in_thread, name="kestrel-generate", daemon=True,
            args=(self._state, session,
                  (prompt, max_new_tokens, stop, add_bos, keep_context, constraint)))
        self._thread.start()

    @property
    def stats(self):
        """GenerateStats once the stream has ended, else None."""
        return self._state.stats

    def __iter__(self):
        return self

    def __next__(self):
        while not self._finished:
            item = self._state.queue.get()
            if item is _DONE:
                self._finished = True
                self._thread.join()
                if self._state.error is not None:
                    raise self._state.error
                if self._state.cancelled.is_set():
                    raise CancelledError("the generation was cancelled")
                break
            token, data = item
            if token != TOKEN_NONE:
                self.tokens.append(token)
            if data:
                return data.decode("utf-8", "replace")
        raise StopIteration

    def cancel(self):
        """Stops the generation (any thread); the iteration then raises CancelledError."""
        self._state.cancelled.set()
        self._session.cancel()

    def close(self):
        """Stops the generation if it runs and waits for it; no error is raised."""
        if not getattr(self, "_finished", True):
            self._finished = True
            self._state.cancelled.set()
            self._session.cancel()
            if threading.current_thread() is not self._thread:
                self._thread.join()

    __del__ = close

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
