#!/usr/bin/env python3
"""Fused Q/K/V and gate/up matmuls (issue 16) against separate ones, alternated in one run
(record: docs/perf/models.md, "Session 5: fused matmuls").

    scripts/bench_fusion.py [--build DIR] [--baseline BIN] [--rounds R] [--prompt N] [--decode N]
                            [--threads T] [--device cpu] [--no-tinyllama]

Per round and model it runs `kestrel bench -m M -p N -n N -t T --device D --reps 1 --warmup 1 --json`
as: "fused" (this build), "separate" (this build with KESTREL_FUSED_MATMULS=0, the same binary
with fusion off) and, with --baseline, "baseline" (another build's kestrel, e.g. main's), in turn.
Models: SmolLM2-135M-Instruct.Q4_1 from $KESTREL_MODEL_CACHE (default ~/.cache/kestrel/models)
and a TinyLlama-1.1B-shape Q4_0 file written by `kestrel-synth --shape tinyllama-1.1b --type Q4_0
--seed 1` into a temporary folder (deleted afterwards). Prints the per-round figures, medians and
the ratios to "separate" (and "baseline"), also of the CPU seconds each run took (user + sys,
less disturbed than wall time on a shared machine); the last line is a JSON object with all of it.
"""
import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bench(binary, model, args, fuse):
    env = dict(os.environ)
    env.pop("KESTREL_FUSED_MATMULS", None)
    if not fuse:
        env["KESTREL_FUSED_MATMULS"] = "0"
    cmd = [binary, "bench", "-m", model, "-p", str(args.prompt), "-n", str(args.decode), "-t",
           str(args.threads), "--device", args.device, "--reps", "1", "--warmup", "1", "--json"]
    print("$ " + ("" if fuse else "KESTREL_FUSED_MATMULS=0 ") + " ".join(shlex.quote(c) for c in cmd),
          flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    j = json.loads(out.strip().splitlines()[-1])
    # CPU seconds of the whole run (load, warm-up, prefill, decode): less sensitive than wall time
    # to other processes on a shared machine, though not to the cache and frequency they disturb.
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return j["prefill_tokens_per_s"], j["decode_tokens_per_s"], cpu


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--build", default=os.path.join(ROOT, "build"))
    p.add_argument("--baseline", default="", help="another build's kestrel binary (e.g. main's)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--prompt", type=int, default=64)
    p.add_argument("--decode", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-tinyllama", action="store_true")
    args = p.parse_args()
    kestrel = os.path.join(args.build, "bin", "kestrel")
    cache = os.environ.get("KESTREL_MODEL_CACHE", os.path.expanduser("~/.cache/kestrel/models"))
    tmp = tempfile.TemporaryDirectory()
    models = {"SmolLM2-135M Q4_1": os.path.join(cache, "SmolLM2-135M-Instruct.Q4_1.gguf")}
    if not args.no_tinyllama:
        tl = os.path.join(tmp.name, "tinyllama-q4_0.gguf")
        subprocess.run([os.path.join(args.build, "bin", "kestrel-synth"), "--shape", "tinyllama-1.1b",
                        "--type", "Q4_0", "--seed", "1", "-o", tl], check=True, capture_output=True)
        models["TinyLlama-1.1B-shape Q4_0"] = tl
    runs = [("fused", kestrel, True), ("separate", kestrel, False)]
    if args.baseline:
        runs.append(("baseline", args.baseline, True))
    res = {m: {name: {"prefill": [], "decode": [], "cpu_s": []} for name, _, _ in runs} for m in models}
    for r in range(args.rounds):
        for m, path in models.items():
            for name, binary, fuse in runs:
                pp, tg, cpu = bench(binary, path, args, fuse)
                res[m][name]["prefill"].append(pp)
                res[m][name]["decode"].append(tg)
                res[m][name]["cpu_s"].append(cpu)
                print(f"round {r} {m} {name}: prefill {pp:.1f} t/s, decode {tg:.2f} t/s, "
                      f"cpu {cpu:.2f} s", flush=True)
    summary = {"load_average": os.getloadavg(), "rounds": args.rounds, "prompt": args.prompt,
               "decode": args.decode, "threads": args.threads, "device": args.device, "models": {}}
    for m in models:
        med = {name: {k: statistics.median(v) for k, v in res[m][name].items()} for name in res[m]}
        s = {"median": med, "per_round": res[m]}
        for base in ("separate", "baseline"):
            if base in med:
                s[f"fused_over_{base}"] = {k: med["fused"][k] / med[base][k]
                                           for k in ("prefill", "decode", "cpu_s")}
        summary["models"][m] = s
        print(f"{m}: " + ", ".join(f"{n} decode {med[n]['decode']:.2f} prefill {med[n]['prefill']:.1f} "
                                   f"cpu {med[n]['cpu_s']:.2f} s" for n in med), flush=True)
        for base in ("separate", "baseline"):
            if base in med:
                f = s[f"fused_over_{base}"]
                print(f"  fused / {base}: decode x{f['decode']:.3f}, prefill x{f['prefill']:.3f}, "
                      f"cpu time x{f['cpu_s']:.3f}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
