#!/usr/bin/env python3
"""Decode and prefill speed of the issue-12 models on the cpu plugin next to llama.cpp's llama-bench,
alternated in one run (record: docs/perf/models.md).

    scripts/bench_models.py [--build DIR] [--rounds R] [--threads T] [--prompt N] [--decode N] [--tinyllama]
                            [--llama-args '--poll 0'] [--kestrel-args '--kv-type f16'] [--only NAME]

Models: $KESTREL_MODEL_CACHE (default ~/.cache/kestrel/models) SmolLM2-135M-Instruct.Q4_1.gguf and
gemma-3-270m-q4_k_m.gguf; with --tinyllama also a TinyLlama-1.1B-shape Q4_K_M file written by
`kestrel-synth --shape tinyllama-1.1b --type Q4_K_M --seed 1` into a temporary folder (speed does
not depend on the weight values) and deleted afterwards.
Each round runs, per model, `kestrel bench -m M -p N -n N -t T --device cpu --reps 1 --warmup 1
--json` (+ --kestrel-args) then `llama-bench -m M -t T -p N -n N -r 1 -o json` ($LLAMA_BENCH, default
/opt/llamacpp/build-native/bin/llama-bench; it does its own warm-up run). Printed: every command,
the per-round figures, and the medians over rounds with the ratio Kestrel / llama.cpp. The last
line is a JSON object with all of it.
"""
import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_json(cmd):
    print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out[out.index("["):] if out.lstrip().startswith("[") else out.strip().splitlines()[-1])


def kestrel(args, model):
    j = run_json([f"{args.build}/bin/kestrel", "bench", "-m", model, "-p", str(args.prompt), "-n", str(args.decode),
                  "-t", str(args.threads), "--device", "cpu", "--reps", "1", "--warmup", "1", "--json"]
                 + shlex.split(args.kestrel_args))
    return j["prefill_tokens_per_s"], j["decode_tokens_per_s"]


def llamacpp(args, model):
    j = run_json([args.llama_bench, "-m", model, "-t", str(args.threads), "-p", str(args.prompt), "-n",
                  str(args.decode), "-r", "1", "-o", "json"] + shlex.split(args.llama_args))
    pp = next(r["avg_ts"] for r in j if r["n_prompt"] > 0 and r["n_gen"] == 0)
    tg = next(r["avg_ts"] for r in j if r["n_gen"] > 0 and r["n_prompt"] == 0)
    return pp, tg


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--build", default=os.path.join(ROOT, "build"))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prompt", type=int, default=128)
    p.add_argument("--decode", type=int, default=32)
    p.add_argument("--tinyllama", action="store_true")
    p.add_argument("--llama-args", default="", help="extra llama-bench flags, e.g. '--poll 0'")
    p.add_argument("--kestrel-args", default="",
                   help="extra kestrel bench flags, e.g. '--kv-type f16' (llama.cpp's KV cache is F16 by default)")
    p.add_argument("--only", default="", help="run only the models whose name contains this")
    p.add_argument("--llama-bench", default=os.environ.get("LLAMA_BENCH", "/opt/llamacpp/build-native/bin/llama-bench"))
    args = p.parse_args()
    cache = os.environ.get("KESTREL_MODEL_CACHE", os.path.expanduser("~/.cache/kestrel/models"))
    models = {"SmolLM2-135M-Instruct Q4_1": os.path.join(cache, "SmolLM2-135M-Instruct.Q4_1.gguf"),
              "Gemma 3 270M Q4_K_M": os.path.join(cache, "gemma-3-270m-q4_k_m.gguf")}
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    print("cpu: " + next((l.split(":", 1)[1].strip() for l in cpu.splitlines() if l.startswith("Model name")), "?"))
    print("load: " + open("/proc/loadavg").read().strip())
    with tempfile.TemporaryDirectory() as tmp:
        if args.tinyllama:
            path = os.path.join(tmp, "tinyllama-q4_k_m.gguf")
            cmd = [f"{args.build}/bin/kestrel-synth", "--shape", "tinyllama-1.1b", "--type", "Q4_K_M", "--seed", "1",
                   "-o", path, "--quiet"]
            print("$ " + " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)
            models["TinyLlama-1.1B-shape Q4_K_M (synthetic)"] = path
        results = {}
        for name, path in models.items():
            if args.only and args.only not in name:
                continue
            if not os.path.exists(path):
                print(f"skipped (missing): {path}")
                continue
            rows = {"kestrel_prefill": [], "kestrel_decode": [], "llamacpp_prefill": [], "llamacpp_decode": []}
            for r in range(args.rounds):
                kp, kd = kestrel(args, path)
                lp, ld = llamacpp(args, path)
                for key, v in zip(rows, (kp, kd, lp, ld)):
                    rows[key].append(round(v, 2))
                print(f"{name} round {r + 1}: kestrel prefill {kp:.1f} decode {kd:.1f} | "
                      f"llama.cpp prefill {lp:.1f} decode {ld:.1f} tok/s", flush=True)
            med = {k: statistics.median(v) for k, v in rows.items()}
            med["prefill_ratio"] = round(med["kestrel_prefill"] / med["llamacpp_prefill"], 3)
            med["decode_ratio"] = round(med["kestrel_decode"] / med["llamacpp_decode"], 3)
            print(f"{name} median: prefill {med['kestrel_prefill']} vs {med['llamacpp_prefill']} "
                  f"(x{med['prefill_ratio']}), decode {med['kestrel_decode']} vs {med['llamacpp_decode']} "
                  f"(x{med['decode_ratio']})", flush=True)
            results[name] = {"rounds": rows, "median": med}
    print("load: " + open("/proc/loadavg").read().strip())
    print(json.dumps({"threads": args.threads, "llama_args": args.llama_args, "kestrel_args": args.kestrel_args, "n_prompt": args.prompt, "n_decode": args.decode,
                      "rounds": args.rounds, "results": results}))


if __name__ == "__main__":
    sys.exit(main())
