#!/usr/bin/env python3
"""Self-distils Medusa-1 heads for a model from text the model generates itself.

  train_medusa.py -m MODEL.gguf -o HEADS.gguf [--heads 3] [--sequences 64] [--tokens 96]
                  [--prompt TEXT]... [--prompt-file FILE]... [--draft-vocab 8192] [--epochs 30]
                  [--device cpu] [--lib build/lib/libkestrel.so]

1. Generation: the model continues each seed prompt (several sampling seeds per prompt,
   temperature 0.8) through the public C API (ctypes over libkestrel.so).
2. Features: each generated sequence is decoded once more in one step and
   kestrel_session_get_hidden returns the final hidden state h_t (after the output norm) of every
   position t.
3. Training (NumPy, no framework): head k (k = 0 .. K-1) learns to predict the model's own token
   at t + 2 + k from h_t (the base head predicts t + 1):
       h_k = h + SiLU(W_k h + b_k),   logits = W_out h_k
   with the model's output matrix W_out frozen (read from the GGUF: `output.weight` in any format,
   quantized ones through gguf-py,
   else the tied `token_embd.weight`), cross-entropy, Adam, W_k and b_k starting at 0 (so each head
   starts as the base head, as in the Medusa paper). With --draft-vocab K (default 8192, what the
   runtime's heads score: runtime/speculative/draft_vocab.h) the softmax runs over the first K ids
   (the tokenizer's merge order) and targets outside them are left out, as the heads never propose
   them; 0 trains over the whole vocab.
4. Output: the sidecar GGUF that kestrel_speculative_options_t.heads_path reads
   (general.architecture = "medusa", medusa.n_heads / n_embd / n_vocab, F32 tensors
   medusa.<k>.weight [D, D] and medusa.<k>.bias [D]; docs/SPECULATIVE.md).

Prints the held-out top-1 accuracy of each head (what acceptance to expect) as it trains.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from heads_common import DEFAULT_PROMPTS, Kestrel, generate_features, read_output_matrix, write_gguf  # noqa: E402

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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--heads", type=int, default=3)
    ap.add_argument("--sequences", type=int, default=64, help="generated sequences (seeds x prompts)")
    ap.add_argument("--tokens", type=int, default=96, help="tokens generated per sequence")
    ap.add_argument("--prompt", action="append", help="seed prompt (repeatable)")
    ap.add_argument("--prompt-file", action="append",
                    help="seed prompt read from a file, control tokens parsed (chat-formatted; repeatable)")
    ap.add_argument("--draft-vocab", type=int, default=8192,
                    help="softmax over the first K ids, as the runtime's heads score (0: whole vocab)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--device", default="")
    ap.add_argument("--lib", default=os.path.join(os.path.dirname(__file__), "..", "build", "lib", "libkestrel.so"))
    a = ap.parse_args()

    k = Kestrel(a.lib)
    k.open(a.model, a.device)
    prompts = [k.tokenize(p) for p in (a.prompt or ([] if a.prompt_file else DEFAULT_PROMPTS))]
    for path in a.prompt_file or []:
        with open(path, encoding="utf-8") as f:
            prompts.append(k.tokenize(f.read(), special=True))
    print(f"train_medusa: generating {a.sequences} sequences of {a.tokens} tokens", flush=True)
    feats, toks = generate_features(k, prompts, a.sequences, a.tokens)
    Wout_full = read_output_matrix(a.model)
    K = min(a.draft_vocab, Wout_full.shape[0]) if a.draft_vocab > 0 else Wout_full.shape[0]
    Wout = np.ascontiguousarray(Wout_full[:K])
    weights, biases = [], []
    rng = np.random.default_rng(0)
    for head in range(a.heads):
        off = 2 + head  # h_t predicts the token at t + 2 + head
        H = np.concatenate([f[:len(f) - off] for f in feats if len(f) > off])
        Y = np.concatenate([t[off:] for t in toks if len(t) > off])
        keep = Y < K  # targets the draft vocab can propose
        print(f"train_medusa: head {head + 1}: {keep.mean():.3f} of the targets are in the draft vocab "
              f"of {K}", flush=True)
        H, Y = H[keep], Y[keep]
        print(f"train_medusa: head {head + 1} (token t+{off}): {len(Y)} examples", flush=True)
        W, b, before, after = train_head(H, Y, Wout, a.epochs, a.lr, 256, rng, log=True)
        print(f"train_medusa: head {head + 1}: held-out top-1 {before:.3f} (untrained) -> {after:.3f}",
              flush=True)
        weights.append(W)
        biases.append(b)
    D = weights[0].shape[0]
    kv = [("general.architecture", "medusa"), ("medusa.n_heads", len(weights)), ("medusa.n_embd", D),
          ("medusa.n_vocab", Wout_full.shape[0])]
    tensors = []
    for i in range(len(weights)):
        tensors.append((f"medusa.{i}.weight", [D, D], weights[i]))
        tensors.append((f"medusa.{i}.bias", [D], biases[i]))
    write_gguf(a.output, kv, tensors)
    print(f"train_medusa: wrote {a.output}")


if __name__ == "__main__":
    main()
