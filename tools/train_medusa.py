#!/usr/bin/env python3
"""Self-distils Medusa-1 heads for a model from text the model generates itself.

  train_medusa.py -m MODEL.gguf -o HEADS.gguf [--heads 3] [--sequences 64] [--tokens 96]
                  [--prompt TEXT]... [--epochs 30] [--device cpu] [--lib build/lib/libkestrel.so]

1. Generation: the model continues each seed prompt (several sampling seeds per prompt,
   temperature 0.8) through the public C API (ctypes over libkestrel.so).
2. Features: each generated sequence is decoded once more in one step and
   kestrel_session_get_hidden returns the final hidden state h_t (after the output norm) of every
   position t.
3. Training (NumPy, no framework): head k (k = 0 .. K-1) learns to predict the model's own token
   at t + 2 + k from h_t (the base head predicts t + 1):
       h_k = h + SiLU(W_k h + b_k),   logits = W_out h_k
   with the model's output matrix W_out frozen (read from the GGUF: F32 or F16 `output.weight`,
   else the tied `token_embd.weight`), cross-entropy, Adam, W_k and b_k starting at 0 (so each head
   starts as the base head, as in the Medusa paper).
4. Output: the sidecar GGUF that kestrel_speculative_options_t.heads_path reads
   (general.architecture = "medusa", medusa.n_heads / n_embd / n_vocab, F32 tensors
   medusa.<k>.weight [D, D] and medusa.<k>.bias [D]; docs/SPECULATIVE.md).

Prints the held-out top-1 accuracy of each head (what acceptance to expect) as it trains.
"""
import argparse
import ctypes
import os
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

    def tokenize(self, text):
        b = text.encode()
        need = ctypes.c_size_t()
        self.check(self.lib.kestrel_tokenize(self.model, b, len(b), True, None, 0, ctypes.byref(need)))
        out = (ctypes.c_int32 * need.value)()
        self.check(self.lib.kestrel_tokenize(self.model, b, len(b), True, out, need.value,
                                             ctypes.byref(need)))
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


def read_output_matrix(path):
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
    name = "output.weight" if "output.weight" in tensors else "token_embd.weight"
    dims, t, o = tensors[name]
    n = dims[0] * dims[1]
    if t == 0:
        w = np.frombuffer(data, dtype=np.float32, count=n, offset=base + o)
    elif t == 1:
        w = np.frombuffer(data, dtype=np.float16, count=n, offset=base + o).astype(np.float32)
    else:
        sys.exit(f"train_medusa: '{name}' has ggml type {t}; only F32 and F16 output matrices are read")
    return w.reshape(dims[1], dims[0]).copy()  # [V, D]


def write_heads(path, weights, biases, n_vocab):
    D = weights[0].shape[0]
    kv = [("general.architecture", 8, "medusa"), ("medusa.n_heads", 4, len(weights)),
          ("medusa.n_embd", 4, D), ("medusa.n_vocab", 4, n_vocab)]
    tensors = []
    for k in range(len(weights)):
        tensors.append((f"medusa.{k}.weight", [D, D], weights[k].astype(np.float32)))
        tensors.append((f"medusa.{k}.bias", [D], biases[k].astype(np.float32)))

    def s(x):
        b = x.encode()
        return struct.pack("<Q", len(b)) + b

    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv)))
    for key, t, v in kv:
        out += s(key) + struct.pack("<I", t) + (s(v) if t == 8 else struct.pack("<I", v))
    offset = 0
    for name, dims, arr in tensors:
        out += s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", 0, offset)
        offset += (arr.nbytes + 31) // 32 * 32
    out += b"\0" * ((32 - len(out) % 32) % 32)
    for _, _, arr in tensors:
        b = arr.tobytes()
        out += b + b"\0" * ((32 - len(b) % 32) % 32)
    with open(path, "wb") as f:
        f.write(out)


# ---- Training -----------------------------------------------------------------------------------


def train_head(H, Y, Wout, epochs, lr, batch, rng, log):
    """H [N, D] hidden states, Y [N] target ids; returns W [D, D], b [D], held-out accuracy."""
    N, D = H.shape
    perm = rng.permutation(N)
    n_val = max(1, N // 10)
    val, tr = perm[:n_val], perm[n_val:]
    W = np.zeros((D, D), np.float32)
    b = np.zeros(D, np.float32)
    mW, vW, mb, vb = np.zeros_like(W), np.zeros_like(W), np.zeros_like(b), np.zeros_like(b)
    step = 0

    def forward(h):
        z = h @ W.T + b
        sig = 1.0 / (1.0 + np.exp(-z))
        return z, sig, h + z * sig

    def accuracy(idx):
        _, _, hk = forward(H[idx])
        return float(np.mean(np.argmax(hk @ Wout.T, axis=1) == Y[idx]))

    base = accuracy(val)
    for epoch in range(epochs):
        rng.shuffle(tr)
        for i in range(0, len(tr), batch):
            idx = tr[i:i + batch]
            h, y = H[idx], Y[idx]
            z, sig, hk = forward(h)
            logits = hk @ Wout.T
            logits -= logits.max(axis=1, keepdims=True)
            p = np.exp(logits)
            p /= p.sum(axis=1, keepdims=True)
            p[np.arange(len(y)), y] -= 1.0
            p /= len(y)
            dz = (p @ Wout) * (sig + z * sig * (1.0 - sig))
            gW, gb = dz.T @ h, dz.sum(axis=0)
            step += 1
            for g, m, v, prm in ((gW, mW, vW, W), (gb, mb, vb, b)):
                m *= 0.9
                m += 0.1 * g
                v *= 0.999
                v += 0.001 * g * g
                prm -= lr * (m / (1 - 0.9 ** step)) / (np.sqrt(v / (1 - 0.999 ** step)) + 1e-8)
        if log and (epoch + 1) % max(1, epochs // 5) == 0:
            print(f"    epoch {epoch + 1}: held-out top-1 {accuracy(val):.3f}", flush=True)
    return W, b, base, accuracy(val)


DEFAULT_PROMPTS = ["Once upon a time", "One day", "There was a little", "The sun was", "Lily and Tom",
                   "A big dog", "In the park", "Mom said"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--heads", type=int, default=3)
    ap.add_argument("--sequences", type=int, default=64, help="generated sequences (seeds x prompts)")
    ap.add_argument("--tokens", type=int, default=96, help="tokens generated per sequence")
    ap.add_argument("--prompt", action="append", help="seed prompt (repeatable)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--device", default="")
    ap.add_argument("--lib", default=os.path.join(os.path.dirname(__file__), "..", "build", "lib", "libkestrel.so"))
    a = ap.parse_args()

    k = Kestrel(a.lib)
    k.open(a.model, a.device)
    prompts = [k.tokenize(p) for p in (a.prompt or DEFAULT_PROMPTS)]
    ctx = max(len(p) for p in prompts) + a.tokens + 1
    feats, toks = [], []
    print(f"train_medusa: generating {a.sequences} sequences of {a.tokens} tokens", flush=True)
    for i in range(a.sequences):
        s = k.session(ctx, seed=1000 + i, temperature=0.8)
        prompt = prompts[i % len(prompts)]
        seq = prompt + k.generate(s, prompt, a.tokens)
        feats.append(k.hidden_states(s, seq))
        toks.append(np.array(seq, np.int64))
        k.lib.kestrel_session_destroy(s)
    Wout = read_output_matrix(a.model)
    weights, biases = [], []
    rng = np.random.default_rng(0)
    for head in range(a.heads):
        off = 2 + head  # h_t predicts the token at t + 2 + head
        H = np.concatenate([f[:len(f) - off] for f in feats if len(f) > off])
        Y = np.concatenate([t[off:] for t in toks if len(t) > off])
        print(f"train_medusa: head {head + 1} (token t+{off}): {len(Y)} examples", flush=True)
        W, b, before, after = train_head(H, Y, Wout, a.epochs, a.lr, 256, rng, log=True)
        print(f"train_medusa: head {head + 1}: held-out top-1 {before:.3f} (untrained) -> {after:.3f}",
              flush=True)
        weights.append(W)
        biases.append(b)
    write_heads(a.output, weights, biases, Wout.shape[0])
    print(f"train_medusa: wrote {a.output}")


if __name__ == "__main__":
    main()
