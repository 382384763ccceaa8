#!/usr/bin/env python3
"""What the heads trainers (train_medusa.py, train_eagle.py) share: the public C API through ctypes
(generation, hidden states), reading a model's matrices from its GGUF (quantized ones through gguf-py), writing a heads GGUF."""
import ctypes
import struct
import sys

import numpy as np

# ---- The C API through ctypes -------------------------------------------------------------------


class SamplerOptions(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32), ("temperature", ctypes.c_float),
                ("top_k", ctypes.c_int32), ("top_p", ctypes.c_float), ("min_p", ctypes.c_float),
                ("repetition_penalty", ctypes.c_float), ("repetition_window", ctypes.c_int32),
                ("seed", ctypes.c_uint64)]


class SessionOptions(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32), ("context_length", ctypes.c_uint32),
                ("kv_block_size", ctypes.c_uint32), ("sampler", ctypes.POINTER(SamplerOptions)),
                ("n_threads", ctypes.c_uint32), ("kv_type", ctypes.c_uint64)]


class ModelOptions(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32), ("device", ctypes.c_char_p),
                ("use_mmap", ctypes.c_bool)]


class GenerateOptions(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32), ("max_new_tokens", ctypes.c_uint32),
                ("stop_strings", ctypes.c_void_p), ("n_stop_strings", ctypes.c_size_t),
                ("on_token", ctypes.c_void_p), ("user_data", ctypes.c_void_p),
                ("add_bos", ctypes.c_bool), ("keep_context", ctypes.c_bool)]


TOKEN_FN = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.c_int32, ctypes.c_char_p,
                            ctypes.c_size_t)


class TokenizeOptions(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32), ("add_special", ctypes.c_bool), ("parse_special", ctypes.c_bool)]


class Kestrel:
    def __init__(self, lib_path):
        self.lib = ctypes.CDLL(lib_path)
        L = self.lib
        L.kestrel_status_message.restype = ctypes.c_char_p
        for name in ("kestrel_runtime_create", "kestrel_model_load", "kestrel_session_create",
                     "kestrel_session_generate_tokens", "kestrel_session_decode",
                     "kestrel_session_truncate", "kestrel_session_get_hidden",
                     "kestrel_session_get_logits", "kestrel_tokenize"):
            getattr(L, name).restype = ctypes.c_void_p

    def check(self, status):
        if status:
            msg = self.lib.kestrel_status_message(ctypes.c_void_p(status)).decode()
            self.lib.kestrel_status_free(ctypes.c_void_p(status))
            raise RuntimeError(msg)

    def open(self, model_path, device):
        self.rt = ctypes.c_void_p()
        self.check(self.lib.kestrel_runtime_create(None, ctypes.byref(self.rt)))
        mo = ModelOptions()
        self.lib.kestrel_model_options_init_sized(ctypes.byref(mo), ctypes.sizeof(mo))
        if device:
            mo.device = device.encode()
        self.model = ctypes.c_void_p()
        p = model_path.encode()
        self.check(self.lib.kestrel_model_load(self.rt, p, len(p), ctypes.byref(mo),
                                               ctypes.byref(self.model)))

    def session(self, ctx, seed, temperature):
        so = SamplerOptions()
        self.lib.kestrel_sampler_options_init_sized(ctypes.byref(so), ctypes.sizeof(so))
        so.seed = seed
        so.temperature = temperature
        opts = SessionOptions()
        self.lib.kestrel_session_options_init_sized(ctypes.byref(opts), ctypes.sizeof(opts))
        opts.context_length = ctx
        opts.sampler = ctypes.pointer(so)
        s = ctypes.c_void_p()
        self.check(self.lib.kestrel_session_create(self.model, ctypes.byref(opts), ctypes.byref(s)))
        return s

    def tokenize(self, text, special=False):
        """special: control-token texts (<|im_start|>, ...) become those tokens (chat prompts)."""
        b = text.encode()
        o = TokenizeOptions()
        self.lib.kestrel_tokenize_options_init_sized(ctypes.byref(o), ctypes.sizeof(o))
        o.parse_special = special
        need = ctypes.c_size_t()
        self.check(self.lib.kestrel_tokenize_with_options(self.model, b, len(b), ctypes.byref(o), None, 0,
                                                          ctypes.byref(need)))
        out = (ctypes.c_int32 * need.value)()
        self.check(self.lib.kestrel_tokenize_with_options(self.model, b, len(b), ctypes.byref(o), out,
                                                          need.value, ctypes.byref(need)))
        return list(out)

    def generate(self, session, prompt, n):
        got = []

        def on_token(_user, token, _text, _len):
            if token >= 0:
                got.append(token)
            return True

        cb = TOKEN_FN(on_token)
        g = GenerateOptions()
        self.lib.kestrel_generate_options_init_sized(ctypes.byref(g), ctypes.sizeof(g))
        g.max_new_tokens = n
        g.on_token = ctypes.cast(cb, ctypes.c_void_p)
        ids = (ctypes.c_int32 * len(prompt))(*prompt)
        self.check(self.lib.kestrel_session_generate_tokens(session, ids, len(prompt), ctypes.byref(g), None))
        return got

    def hidden_states(self, session, tokens):
        """Decodes `tokens` in one step from an empty context; the hidden state of every position."""
        self.check(self.lib.kestrel_session_truncate(session, 0))
        ids = (ctypes.c_int32 * len(tokens))(*tokens)
        self.check(self.lib.kestrel_session_decode(session, ids, len(tokens)))
        need = ctypes.c_size_t()
        self.check(self.lib.kestrel_session_get_hidden(session, 0, None, 0, ctypes.byref(need)))
        buf = (ctypes.c_float * need.value)()
        self.check(self.lib.kestrel_session_get_hidden(session, 0, buf, need.value, ctypes.byref(need)))
        return np.frombuffer(buf, dtype=np.float32).reshape(len(tokens), -1).copy()


# ---- GGUF: the output matrix in, the heads out -------------------------------------------------

GGUF_TYPES = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def read_matrices(path, wanted):
    """{name: [rows, row length] f32} for each name in `wanted` the file has (F32, F16, or any
    quantized type gguf-py dequantizes)."""
    with open(path, "rb") as f:
        data = f.read()
    off = 0

    def take(fmt):
        nonlocal off
        v = struct.unpack_from("<" + fmt, data, off)
        off += struct.calcsize("<" + fmt)
        return v[0]

    def string():
        nonlocal off
        n = take("Q")
        s = data[off:off + n].decode("utf-8", "replace")
        off += n
        return s

    def value(t):
        if t == 8:
            return string()
        if t == 9:
            et, n = take("I"), take("Q")
            return [value(et) for _ in range(n)]
        return take(GGUF_TYPES[t])

    assert data[:4] == b"GGUF", "not a GGUF file"
    off = 4
    take("I")  # version
    n_tensors, n_kv = take("Q"), take("Q")
    align = 32
    for _ in range(n_kv):
        k = string()
        v = value(take("I"))
        if k == "general.alignment":
            align = v
    tensors = {}
    for _ in range(n_tensors):
        name = string()
        dims = [take("Q") for _ in range(take("I"))]
        t = take("I")
        tensors[name] = (dims, t, take("Q"))
    base = (off + align - 1) // align * align
    out = {}
    for name in wanted:
        if name not in tensors:
            continue
        dims, t, o = tensors[name]
        n = dims[0] * dims[1]
        if t == 0:
            w = np.frombuffer(data, dtype=np.float32, count=n, offset=base + o)
        elif t == 1:
            w = np.frombuffer(data, dtype=np.float16, count=n, offset=base + o).astype(np.float32)
        else:
            w = dequantize(data, base + o, t, n, name)
        out[name] = w.reshape(dims[1], dims[0]).copy()
    return out


def dequantize(data, offset, ggml_type, n, name):
    """A quantized matrix (Q8_0, Q4_1, K-quants, ...) through gguf-py's dequantization (the formats'
    reference, scripts/install_py_deps.sh), which the runtime's plugin SDK matches bit for bit."""
    try:
        from gguf import GGMLQuantizationType
        from gguf.constants import GGML_QUANT_SIZES
        from gguf.quants import dequantize as gguf_dequantize
    except ImportError:
        sys.exit(f"'{name}' has ggml type {ggml_type}: reading a quantized matrix needs gguf-py "
                 "(scripts/install_py_deps.sh)")
    qt = GGMLQuantizationType(ggml_type)
    block, block_bytes = GGML_QUANT_SIZES[qt]
    raw = np.frombuffer(data, dtype=np.uint8, count=n // block * block_bytes, offset=offset)
    return gguf_dequantize(raw, qt).astype(np.float32).reshape(-1)


def read_output_matrix(path):
    """The output matrix [V, D]: output.weight, else the tied token_embd.weight."""
    m = read_matrices(path, ["output.weight", "token_embd.weight"])
    return m["output.weight"] if "output.weight" in m else m["token_embd.weight"]


def write_gguf(path, kv, tensors):
    """kv: (key, value) with str or int (u32) values; tensors: (name, ggml dims, f32 array)."""

    def s(x):
        b = x.encode()
        return struct.pack("<Q", len(b)) + b

    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv)))
    for key, v in kv:
        out += s(key) + (struct.pack("<I", 8) + s(v) if isinstance(v, str) else struct.pack("<II", 4, v))
    offset = 0
    for name, dims, arr in tensors:
        out += s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", 0, offset)
        offset += (arr.nbytes + 31) // 32 * 32
    out += b"\0" * ((32 - len(out) % 32) % 32)
    for _, _, arr in tensors:
        b = np.ascontiguousarray(arr, dtype=np.float32).tobytes()
        out += b + b"\0" * ((32 - len(b) % 32) % 32)
    with open(path, "wb") as f:
        f.write(out)


def generate_features(k, prompts, n_sequences, n_tokens, temperature=0.8):
    """The model continues each prompt (seeds 1000 + i); returns (hidden states [T, D], ids [T])."""
    ctx = max(len(p) for p in prompts) + n_tokens + 1
    feats, toks = [], []
    for i in range(n_sequences):
        s = k.session(ctx, seed=1000 + i, temperature=temperature)
        prompt = prompts[i % len(prompts)]
        seq = prompt + k.generate(s, prompt, n_tokens)
        feats.append(k.hidden_states(s, seq))
        toks.append(np.array(seq, np.int64))
        k.lib.kestrel_session_destroy(s)
    return feats, toks


DEFAULT_PROMPTS = ["Once upon a time", "One day", "There was a little", "The sun was", "Lily and Tom",
                   "A big dog", "In the park", "Mom said"]
