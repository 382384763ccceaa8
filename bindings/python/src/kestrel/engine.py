"""Engine: many concurrent requests over one model (continuous batching, prefix cache,
copy-on-write forks, preemption), as in kestrel/engine.h."""
import ctypes
import enum
import queue
import threading
from dataclasses import dataclass

from . import _native as native
from ._util import (NativeObject, c_strings, constraint_strings, kv_type_value, read_bytes, read_ints,
                    token_array)
from .errors import Code, CancelledError, check, error_from_code, take
from .session import TOKEN_NONE, make_sampler, stop_reason


class RequestState(enum.IntEnum):
    WAITING = 0
    RUNNING = 1
    FINISHED = 2
    FAILED = 3
    CANCELLED = 4


@dataclass(frozen=True)
class RequestResult:
    state: RequestState
    status_code: Code
    stop_reason: object
    n_samples: int
    n_prompt_tokens: int
    n_generated_tokens: int
    n_cached_prompt_tokens: int
    n_preemptions: int
    queue_ms: float
    time_to_first_token_ms: float
    total_ms: float

    @property
    def done(self):
        return self.state in (RequestState.FINISHED, RequestState.FAILED, RequestState.CANCELLED)


@dataclass(frozen=True)
class EngineStats:
    n_running: int
    n_waiting: int
    n_finished: int
    kv_blocks_total: int
    kv_blocks_used: int
    kv_blocks_free: int
    kv_blocks_cached: int
    kv_block_size: int
    prefix_cache_lookups: int
    prefix_cache_hits: int
    prefix_cache_hit_rate: float
    prefill_tokens_computed: int
    prefill_tokens_reused: int
    decode_tokens: int
    generated_tokens: int
    steps: int
    preemptions: int
    busy_ms: float
    tokens_per_s: float
    kv_waste_fraction: float


@dataclass
class EngineCompletion:
    text: str
    tokens: list
    result: RequestResult


class Engine(NativeObject):
    """The serving engine over `model`. Thread-safe: every method may be called from any thread.

    Options (the library's defaults when None): kv_cache_bytes, kv_block_size, max_batch_tokens,
    max_sequences, prefix_cache, context_length, n_threads, kv_type ("f32"/"f16").
    Without start(), requests advance only while someone calls step(), Request.wait() or iterates
    a stream (they step on the calling thread); after start() an engine thread runs them, and
    on_token callbacks run there.
    """

    _destroy = native.kestrel_engine_destroy

    def __init__(self, model, kv_cache_bytes=None, kv_block_size=None, max_batch_tokens=None,
                 max_sequences=None, prefix_cache=None, context_length=None, n_threads=None,
                 kv_type="f32"):
        self._model = model
        self._lock = threading.Lock()
        self._callbacks = {}  # request id -> ctypes callback, alive until release
        self._threaded = False
        o = native.new(native.EngineOptions, native.kestrel_engine_options_init_sized)
        for name, value in (("kv_cache_bytes", kv_cache_bytes), ("kv_block_size", kv_block_size),
                            ("max_batch_tokens", max_batch_tokens), ("max_sequences", max_sequences),
                            ("prefix_cache", prefix_cache), ("context_length", context_length),
                            ("n_threads", n_threads)):
            if value is not None:
                setattr(o, name, value)
        o.kv_type = kv_type_value(kv_type)
        handle = ctypes.c_void_p()
        check(native.kestrel_engine_create(model.handle, ctypes.byref(o), ctypes.byref(handle)))
        self._handle = handle

    def close(self):
        """Stops the engine thread and drops every request (no callback after this)."""
        super().close()
        self._callbacks.clear()

    @property
    def model(self):
        return self._model

    def start(self):
        check(native.kestrel_engine_start(self.handle))
        self._threaded = True

    def stop(self):
        if self._handle:
            native.kestrel_engine_stop(self._handle)
        self._threaded = False

    def step(self):
        """One scheduling step on this thread; returns the requests still waiting or running."""
        active = ctypes.c_uint32(0)
        check(native.kestrel_engine_step(self.handle, ctypes.byref(active)))
        return active.value

    def submit(self, prompt, max_new_tokens=128, stop=None, priority=0, n=1, add_bos=True,
               on_token=None, sampler=None, grammar=None, json_schema=None, **sampler_kwargs):
        """Queues a request; returns its Request. `prompt`: str, or token ids (used as given).
        `on_token(sample, token, text) -> bool` (optional) runs on the thread that steps; False
        stops that sample. Sampler fields as keywords (temperature=0 is greedy, seed, ...).
        `grammar` (GBNF) or `json_schema` (dict or JSON text) constrains every sample's output
        (see Session.generate)."""
        grammar_c, schema_c = constraint_strings(grammar, json_schema)
        c_sampler = make_sampler(sampler, sampler_kwargs).to_c()
        keep, stops, n_stops = c_strings(stop if not isinstance(stop, str) else [stop], "stop")
        o = native.new(native.RequestOptions, native.kestrel_engine_request_options_init_sized)
        o.max_new_tokens = max_new_tokens if max_new_tokens >= 0 else 0xFFFFFFFF
        o.sampler = ctypes.pointer(c_sampler)
        if n_stops:
            o.stop_strings = ctypes.cast(stops, ctypes.POINTER(ctypes.c_char_p))
            o.n_stop_strings = n_stops
        o.priority = priority
        o.n = n
        o.add_bos = add_bos
        o.grammar, o.json_schema = grammar_c, schema_c  # read during submit
        request = Request(self)
        c_fn = None
        if on_token is not None:
            errors = request._callback_errors  # not the request itself: no reference cycle

            def trampoline(_user, _id, sample, token, text, length):
                try:
                    data = ctypes.string_at(text, length) if length else b""
                    return bool(on_token(sample, token, data.decode("utf-8", "replace")))
                except BaseException as e:
                    errors.append(e)
                    return False
            c_fn = native.ENGINE_TOKEN_FN(trampoline)
            o.on_token = c_fn
        rid = ctypes.c_uint64(0)
        if isinstance(prompt, (str, bytes)):
            p = prompt.encode("utf-8") if isinstance(prompt, str) else prompt
            status = native.kestrel_engine_submit(self.handle, p, len(p), ctypes.byref(o), ctypes.byref(rid))
        else:
            arr, count = token_array(prompt)
            status = native.kestrel_engine_submit_tokens(self.handle, arr, count, ctypes.byref(o),
                                                    ctypes.byref(rid))
        del keep
        check(status)
        request.id = rid.value
        if c_fn is not None:
            with self._lock:
                self._callbacks[request.id] = c_fn
        return request

    def stream(self, prompt, **options):
        """Submits a request and returns a RequestStream: an iterator of its text pieces (sample
        0..n-1 interleaved; .pieces holds (sample, token, text) of each). Leaving it early
        cancels and releases the request; a cancelled request ends with CancelledError."""
        return RequestStream(self, prompt, options)

    def complete(self, prompt, **options):
        """Submit, wait, collect sample 0 and release."""
        request = self.submit(prompt, **options)
        try:
            request.wait()
            return EngineCompletion(request.text(), request.tokens(), request.result())
        finally:
            request.release()

    def stats(self):
        s = native.new(native.EngineStats)
        check(native.kestrel_engine_get_stats(self.handle, ctypes.byref(s)))
        return EngineStats(*(getattr(s, f) for f, _ in native.EngineStats._fields_[1:]))

    def _forget(self, request_id):
        with self._lock:
            self._callbacks.pop(request_id, None)


class Request:
    """One submitted request. Released (cancelled first if running) by release() or when it is
    garbage collected."""

    def __init__(self, engine):
        self._engine = engine
        self.id = 0
        self._released = False
        self._callback_errors = []

    def wait(self, timeout=None):
        """Waits until done (stepping on this thread without the engine thread). Returns True when
        done, False on timeout (seconds). Raises CancelledError if it was cancelled, the request's
        failure, or the exception its on_token callback raised."""
        ms = -1 if timeout is None else max(0, int(timeout * 1000))
        err = take(native.kestrel_engine_wait(self._engine.handle, self.id, ms))
        if self._callback_errors:
            raise self._callback_errors[0]
        if err is not None:
            if err.code == Code.DEADLINE_EXCEEDED:
                return False
            raise err
        return True

    def cancel(self):
        check(native.kestrel_engine_cancel(self._engine.handle, self.id))

    def release(self):
        if self._released or not self._engine._handle:
            return
        self._released = True
        try:
            check(native.kestrel_engine_release_request(self._engine._handle, self.id))
        finally:
            self._engine._forget(self.id)

    __del__ = release

    def result(self, sample=0):
        r = native.new(native.EngineResult)
        check(native.kestrel_engine_request_result(self._engine.handle, self.id, sample, ctypes.byref(r)))
        try:
            code = Code(r.status_code)
        except ValueError:
            code = r.status_code
        return RequestResult(RequestState(r.state), code, stop_reason(r.stop_reason), r.n_samples,
                             r.n_prompt_tokens, r.n_generated_tokens, r.n_cached_prompt_tokens,
                             r.n_preemptions, r.queue_ms, r.time_to_first_token_ms, r.total_ms)

    def tokens(self, sample=0):
        return read_ints(lambda buf, cap, req: native.kestrel_engine_request_tokens(
            self._engine.handle, self.id, sample, buf, cap, req), 64)

    def text(self, sample=0):
        return read_bytes(lambda buf, cap, req: native.kestrel_engine_request_text(
            self._engine.handle, self.id, sample, buf, cap, req), 256).decode("utf-8", "replace")


class RequestStream:
    """Iterator over the text pieces of one engine request (Engine.stream)."""

    def __init__(self, engine, prompt, options):
        self._engine = engine
        self._queue = queue.Queue()
        self.pieces = []
        self._finished = False

        pieces = self._queue  # not self: no reference cycle through the engine's callback table

        def on_token(sample, token, text):
            pieces.put((sample, token, text))
            return True

        self.request = engine.submit(prompt, on_token=on_token, **options)

    def __iter__(self):
        return self

    def _next_item(self):
        while True:
            try:
                return self._queue.get_nowait()
            except queue.Empty:
                pass
            if self.request.result().done:
                try:  # every callback ran before the request became done
                    return self._queue.get_nowait()
                except queue.Empty:
                    return None
            if self._engine._threaded:
                try:
                    return self._queue.get(timeout=0.05)
                except queue.Empty:
                    continue
            try:
                self._engine.step()
            except Exception as e:
                if getattr(e, "code", None) != Code.FAILED_PRECONDITION:
                    raise
                threading.Event().wait(0.001)  # someone else is stepping

    def __next__(self):
        while not self._finished:
            item = self._next_item()
            if item is None:
                self._finished = True
                self.request.wait()  # raises CancelledError / the failure / a callback error
                break
            sample, token, text = item
            self.pieces.append(item)
            if text:
                return text
        raise StopIteration

    def result(self, sample=0):
        return self.request.result(sample)

    def cancel(self):
        """Cancels the request; the iteration then ends with CancelledError."""
        self.request.cancel()

    def close(self):
        self._finished = True
        if hasattr(self, "request"):
            self.request.release()

    __del__ = close

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


__all__ = ["Engine", "Request", "RequestStream", "RequestState", "RequestResult", "EngineStats",
           "EngineCompletion", "TOKEN_NONE", "CancelledError", "error_from_code"]
