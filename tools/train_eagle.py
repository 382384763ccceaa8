#!/usr/bin/env python3
"""Self-distils an EAGLE-style draft head for a model from text the model generates itself.

  train_eagle.py -m MODEL.gguf -o HEAD.gguf [--sequences 64] [--tokens 96] [--window 16]
                 [--prompt TEXT]... [--prompt-file FILE]... [--draft-vocab 8192]
                 [--ff 2] [--heads 4] [--epochs 40] [--device cpu] [--lib build/lib/libkestrel.so]
  train_eagle.py --check-gradients      (compares the hand-written backward pass with finite
                                         differences on a small random problem, then exits)

1. Generation and features as train_medusa.py (heads_common.py): each generated sequence is
   decoded once more in one step and kestrel_session_get_hidden returns the final hidden state f_p
   (after the output norm) of every position p.
2. The head (runtime/speculative/eagle_proposer.h) is one decoder layer without norms:
       u_p = W_fc [e(x_p); f_{p-1}] + b_fc
       h_p = u_p + W_o MHA(W_q u_p; W_k u_j, W_v u_j for j in the last `window` positions <= p)
       y_p = h_p + W_down SiLU(W_up h_p)
   trained, on windows of `window` consecutive positions (teacher forcing), to make W_out y_p
   pick the model's own greedy token after p (cross-entropy against argmax W_out f_p) and y_p
   match f_p (mean squared error, weight --feature-weight). W_out and the embeddings are the
   model's (frozen); Adam. It starts as "f^_p = f_{p-1}" (W_fc passes the hidden state through,
   W_o and W_down are zero), i.e. as a Medusa head without training. With --draft-vocab K
   (default 8192, what the runtime's EAGLE proposer scores: runtime/speculative/draft_vocab.h)
   the cross-entropy's softmax runs over the first K rows of W_out only, and positions whose
   greedy token lies outside them train the feature term alone (the head cannot propose them).
3. Output: the sidecar GGUF that kestrel_speculative_options_t.heads_path reads with
   method EAGLE (tensor names in eagle_proposer.h and docs/SPECULATIVE.md).

Prints the top-1 agreement with the model's greedy token (teacher-forced) on held-out sequences (every
10th: the same prompts, other seeds) as it trains.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from heads_common import DEFAULT_PROMPTS, Kestrel, generate_features, read_matrices, write_gguf  # noqa: E402

PARAMS = ("fc", "fc_b", "wq", "wk", "wv", "wo", "up", "down")


def init_params(D, F, rng):
    fc = np.zeros((D, 2 * D), np.float32)
    fc[:, D:] = np.eye(D, dtype=np.float32)  # u_p = f_{p-1} at the start
    r = lambda *s: (rng.standard_normal(s) * 0.02).astype(np.float32)  # noqa: E731
    return {"fc": fc, "fc_b": np.zeros(D, np.float32), "wq": r(D, D), "wk": r(D, D), "wv": r(D, D),
            "wo": np.zeros((D, D), np.float32), "up": r(F, D), "down": np.zeros((D, F), np.float32)}


def forward(P, X, H):
    """X [B, T, 2D] -> (Y [B, T, D], cache for backward)."""
    B, T, _ = X.shape
    D = P["fc"].shape[0]
    dh = D // H
    U = X @ P["fc"].T + P["fc_b"]
    split = lambda M: M.reshape(B, T, H, dh).transpose(0, 2, 1, 3)  # noqa: E731
    Q, K, V = split(U @ P["wq"].T), split(U @ P["wk"].T), split(U @ P["wv"].T)
    scale = 1.0 / np.sqrt(dh)
    S = (Q @ K.transpose(0, 1, 3, 2)) * scale
    S = S + np.triu(np.full((T, T), -1e30, np.float32), 1)
    S -= S.max(axis=-1, keepdims=True)
    A = np.exp(S)
    A /= A.sum(axis=-1, keepdims=True)
    O = (A @ V).transpose(0, 2, 1, 3).reshape(B, T, D)
    Hh = U + O @ P["wo"].T
    Z = Hh @ P["up"].T
    sig = 1.0 / (1.0 + np.exp(-Z))
    G = Z * sig
    Y = Hh + G @ P["down"].T
    return Y, (X, U, Q, K, V, A, O, Hh, Z, sig, G, scale)


def loss_and_grad(P, X, Fnext, Ynext, Wout, H, feat_w, keep=None):
    """Mean cross-entropy of W_out y against Ynext (over the positions where `keep` is true, all
    when None) plus feat_w * mean squared error against Fnext."""
    Y, (X, U, Q, K, V, A, O, Hh, Z, sig, G, scale) = forward(P, X, H)
    B, T, D = Y.shape
    N = B * T
    logits = Y.reshape(N, D) @ Wout.T
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    y = Ynext.reshape(N)
    w = np.ones(N) if keep is None else keep.reshape(N).astype(p.dtype)
    n_ce = max(1.0, float(w.sum()))
    ce = float(-np.sum(w * np.log(p[np.arange(N), y] + 1e-30)) / n_ce)
    diff = Y - Fnext
    mse = float(np.mean(diff * diff))
    p[np.arange(N), y] -= 1.0
    p *= w[:, None] / n_ce
    dY = (p @ Wout).reshape(B, T, D) + feat_w * 2.0 * diff / diff.size
    g = {}
    flat = lambda M: M.reshape(-1, M.shape[-1])  # noqa: E731
    g["down"] = flat(dY).T @ flat(G)
    dG = dY @ P["down"]
    dZ = dG * (sig * (1.0 + Z * (1.0 - sig)))
    g["up"] = flat(dZ).T @ flat(Hh)
    dH = dY + dZ @ P["up"]
    g["wo"] = flat(dH).T @ flat(O)
    Hn = Q.shape[1]
    dh = D // Hn
    dO = (dH @ P["wo"]).reshape(B, T, Hn, dh).transpose(0, 2, 1, 3)
    dA = dO @ V.transpose(0, 1, 3, 2)
    dV = A.transpose(0, 1, 3, 2) @ dO
    dS = A * (dA - np.sum(dA * A, axis=-1, keepdims=True)) * scale
    dQ = dS @ K
    dK = dS.transpose(0, 1, 3, 2) @ Q
    merge = lambda M: M.transpose(0, 2, 1, 3).reshape(B, T, D)  # noqa: E731
    dQ, dK, dV = merge(dQ), merge(dK), merge(dV)
    g["wq"], g["wk"], g["wv"] = flat(dQ).T @ flat(U), flat(dK).T @ flat(U), flat(dV).T @ flat(U)
    dU = dH + dQ @ P["wq"] + dK @ P["wk"] + dV @ P["wv"]
    g["fc"] = flat(dU).T @ flat(X)
    g["fc_b"] = flat(dU).sum(axis=0)
    return ce + feat_w * mse, g


def check_gradients():
    rng = np.random.default_rng(1)
    D, F, H, V, B, T = 8, 12, 2, 11, 2, 5
    P = init_params(D, F, rng)
    for k in PARAMS:  # away from the special start so every path carries gradient
        P[k] = (P[k] + rng.standard_normal(P[k].shape) * 0.3).astype(np.float64)
    Wout = rng.standard_normal((V, D))
    X = rng.standard_normal((B, T, 2 * D))
    Fn = rng.standard_normal((B, T, D))
    Yn = rng.integers(0, V, (B, T))
    keep = rng.random((B, T)) < 0.7  # as --draft-vocab leaves some targets out
    _, g = loss_and_grad(P, X, Fn, Yn, Wout, H, 0.5, keep)
    worst = 0.0
    for k in PARAMS:
        flat = P[k].reshape(-1)
        for i in rng.choice(flat.size, min(6, flat.size), replace=False):
            old = flat[i]
            flat[i] = old + 1e-6
            lp, _ = loss_and_grad(P, X, Fn, Yn, Wout, H, 0.5, keep)
            flat[i] = old - 1e-6
            lm, _ = loss_and_grad(P, X, Fn, Yn, Wout, H, 0.5, keep)
            flat[i] = old
            num = (lp - lm) / 2e-6
            ana = g[k].reshape(-1)[i]
            err = abs(num - ana) / max(1e-6, abs(num) + abs(ana))
            worst = max(worst, err)
            if err > 1e-4:
                print(f"check_gradients: {k}[{i}] analytic {ana:.6g} numeric {num:.6g}")
    print(f"check_gradients: worst relative error {worst:.2e}")
    return worst < 1e-4


def windows(feats, toks, embd, Wout, T):
    """Training windows of T positions p (1 <= p < len - 0): inputs [e(x_p); f_{p-1}], targets
    f_p and the model's greedy token after p; and each window's sequence index."""
    Xs, Fs, Ys, Ss = [], [], [], []
    for i, (f, t) in enumerate(zip(feats, toks)):
        n = len(t)
        greedy = np.argmax(f @ Wout.T, axis=1)
        X = np.concatenate([embd[t[1:]], f[:-1]], axis=1)  # position p = 1 .. n-1
        Fn, Yn = f[1:], greedy[1:]
        for s in range(0, max(1, n - 1 - T + 1), max(1, T // 2)):
            if s + T > n - 1:
                break
            Xs.append(X[s:s + T])
            Fs.append(Fn[s:s + T])
            Ys.append(Yn[s:s + T])
            Ss.append(i)
    return np.stack(Xs), np.stack(Fs), np.stack(Ys), np.array(Ss)


def train(P, X, Fn, Yn, Seq, Wout, H, a, rng):
    """Wout: the draft vocab's rows; targets outside them (Yn >= len(Wout)) train the feature
    term only and count as misses in the held-out top-1 (the runtime cannot propose them)."""
    K = Wout.shape[0]
    keep = Yn < K
    Yk = np.where(keep, Yn, 0)
    # Held out: whole sequences (every 10th), not windows: windows of one sequence overlap, so a
    # window split would score text the head was trained on.
    held = Seq % 10 == 9 if Seq.max() >= 9 else Seq == Seq.max()
    val, tr = np.flatnonzero(held), np.flatnonzero(~held)
    if len(tr) == 0:
        tr = val
    m = {k: np.zeros_like(v) for k, v in P.items()}
    v2 = {k: np.zeros_like(v) for k, v in P.items()}

    def accuracy():
        Y, _ = forward(P, X[val], H)
        return float(np.mean(np.argmax(Y @ Wout.T, axis=-1) == Yn[val]))

    before = accuracy()
    step = 0
    for epoch in range(a.epochs):
        rng.shuffle(tr)
        total = 0.0
        for i in range(0, len(tr), a.batch):
            idx = tr[i:i + a.batch]
            loss, g = loss_and_grad(P, X[idx], Fn[idx], Yk[idx], Wout, H, a.feature_weight, keep[idx])
            total += loss * len(idx)
            step += 1
            for k in PARAMS:
                m[k] = 0.9 * m[k] + 0.1 * g[k]
                v2[k] = 0.999 * v2[k] + 0.001 * g[k] * g[k]
                P[k] -= (a.lr * (m[k] / (1 - 0.9 ** step)) /
                         (np.sqrt(v2[k] / (1 - 0.999 ** step)) + 1e-8)).astype(np.float32)
        if (epoch + 1) % max(1, a.epochs // 5) == 0:
            print(f"    epoch {epoch + 1}: loss {total / len(tr):.4f}, held-out top-1 {accuracy():.3f}",
                  flush=True)
    return before, accuracy()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model")
    ap.add_argument("-o", "--output")
    ap.add_argument("--sequences", type=int, default=64, help="generated sequences (seeds x prompts)")
    ap.add_argument("--tokens", type=int, default=96, help="tokens generated per sequence")
    ap.add_argument("--prompt", action="append", help="seed prompt (repeatable)")
    ap.add_argument("--prompt-file", action="append",
                    help="seed prompt read from a file, control tokens parsed (chat-formatted; repeatable)")
    ap.add_argument("--draft-vocab", type=int, default=8192,
                    help="softmax over the first K ids, as the runtime's EAGLE proposer scores (0: whole vocab)")
    ap.add_argument("--window", type=int, default=16, help="attention span in positions")
    ap.add_argument("--heads", type=int, default=4, help="attention heads (divides n_embd)")
    ap.add_argument("--ff", type=int, default=2, help="feed-forward width in multiples of n_embd")
    ap.add_argument("--feature-weight", type=float, default=1.0)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch", type=int, default=32, help="windows per step")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--device", default="")
    ap.add_argument("--lib", default=os.path.join(os.path.dirname(__file__), "..", "build", "lib", "libkestrel.so"))
    ap.add_argument("--check-gradients", action="store_true")
    a = ap.parse_args()
    if a.check_gradients:
        sys.exit(0 if check_gradients() else 1)
    if not a.model or not a.output:
        ap.error("-m and -o are required")

    k = Kestrel(a.lib)
    k.open(a.model, a.device)
    prompts = [k.tokenize(p) for p in (a.prompt or ([] if a.prompt_file else DEFAULT_PROMPTS))]
    for path in a.prompt_file or []:
        with open(path, encoding="utf-8") as f:
            prompts.append(k.tokenize(f.read(), special=True))
    print(f"train_eagle: generating {a.sequences} sequences of {a.tokens} tokens", flush=True)
    feats, toks = generate_features(k, prompts, a.sequences, a.tokens)
    mats = read_matrices(a.model, ["output.weight", "token_embd.weight"])
    if "token_embd.weight" not in mats:
        sys.exit("train_eagle: the model has no token_embd.weight")
    embd = mats["token_embd.weight"]
    Wout = mats.get("output.weight", embd)
    V, D = Wout.shape
    if D % a.heads:
        sys.exit(f"train_eagle: --heads {a.heads} does not divide n_embd {D}")
    X, Fn, Yn, Seq = windows(feats, toks, embd, Wout, a.window)
    K = min(a.draft_vocab, V) if a.draft_vocab > 0 else V
    print(f"train_eagle: {len(X)} windows of {a.window} positions (n_embd {D}, vocab {V}); "
          f"{np.mean(Yn < K):.3f} of the targets are in the draft vocab of {K}", flush=True)
    rng = np.random.default_rng(0)
    P = init_params(D, a.ff * D, rng)
    before, after = train(P, X, Fn, Yn, Seq, np.ascontiguousarray(Wout[:K]), a.heads, a, rng)
    print(f"train_eagle: held-out top-1 {before:.3f} (untrained) -> {after:.3f}", flush=True)
    F = a.ff * D
    kv = [("general.architecture", "eagle"), ("eagle.n_embd", D), ("eagle.n_vocab", V),
          ("eagle.n_head", a.heads), ("eagle.n_ff", F), ("eagle.window", a.window)]
    tensors = [("eagle.fc.weight", [2 * D, D], P["fc"]), ("eagle.fc.bias", [D], P["fc_b"]),
               ("eagle.attn_q.weight", [D, D], P["wq"]), ("eagle.attn_k.weight", [D, D], P["wk"]),
               ("eagle.attn_v.weight", [D, D], P["wv"]), ("eagle.attn_output.weight", [D, D], P["wo"]),
               ("eagle.ffn_up.weight", [D, F], P["up"]), ("eagle.ffn_down.weight", [F, D], P["down"])]
    write_gguf(a.output, kv, tensors)
    print(f"train_eagle: wrote {a.output}")


if __name__ == "__main__":
    main()
