#!/usr/bin/env python3
"""Same-build A/B of cpu plugin files by CPU time, for a shared machine (record: docs/perf/models.md).

    scripts/bench_plugin_ab.py NAME=PLUGIN.so NAME=PLUGIN.so ... [--build DIR] [--rounds R]
                               [--threads T] [--model GGUF]

Each round runs, per plugin (KESTREL_PLUGIN_PATH=PLUGIN.so, alternated), `kestrel bench -m MODEL
-t T --device cpu --reps 1 --warmup 0` three times: -p 128 -n 8, -p 128 -n 264 and -p 8 -n 8, and
reads each process's user + system CPU time (os.wait4). Decode ms per token = (second - first) /
256, prefill ms per token = (first - third) / 120: model loading and repacking cancel out. CPU time
is not inflated by other jobs taking turns on the cores (wall time is, at a load of 10-20 on 2
cores); memory stalls still count. With --threads 1 no worker spins. Keep a baseline plugin by
copying build/lib/kestrel/plugins/libkestrel_plugin_cpu.so aside before rebuilding. Prints every
round, then medians and minimums per plugin; the last line is JSON.
"""
import argparse
import json
import os
import statistics
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_seconds(args, plugin, prompt, decode):
    env = dict(os.environ, KESTREL_PLUGIN_PATH=plugin)
    cmd = [f"{args.build}/bin/kestrel", "bench", "-m", args.model, "-p", str(prompt), "-n", str(decode), "-t",
           str(args.threads), "--device", "cpu", "--reps", "1", "--warmup", "0", "--json"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"failed ({status}): KESTREL_PLUGIN_PATH={plugin} {' '.join(cmd)}")
    return usage.ru_utime + usage.ru_stime


def main():
    p = argparse.ArgumentParser()
    p.add_argument("plugins", nargs="+", help="NAME=path/to/libkestrel_plugin_cpu.so")
    p.add_argument("--build", default=os.path.join(ROOT, "build"))
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--threads", type=int, default=1)
    cache = os.environ.get("KESTREL_MODEL_CACHE", os.path.expanduser("~/.cache/kestrel/models"))
    p.add_argument("--model", default=os.path.join(cache, "SmolLM2-135M-Instruct.Q4_1.gguf"))
    args = p.parse_args()
    plugins = dict(v.split("=", 1) for v in args.plugins)
    res = {k: {"decode_ms": [], "prefill_ms": []} for k in plugins}
    for r in range(args.rounds):
        for name, plugin in plugins.items():
            a = cpu_seconds(args, plugin, 128, 8)
            b = cpu_seconds(args, plugin, 128, 264)
            c = cpu_seconds(args, plugin, 8, 8)
            res[name]["decode_ms"].append((b - a) / 256 * 1e3)
            res[name]["prefill_ms"].append((a - c) / 120 * 1e3)
        print(f"round {r}: " + ", ".join(f"{k} decode {v['decode_ms'][-1]:.3f} prefill {v['prefill_ms'][-1]:.3f}"
                                         for k, v in res.items()), flush=True)
    summary = {}
    for name, v in res.items():
        summary[name] = {key: {"median": statistics.median(x), "min": min(x), "all": x} for key, x in v.items()}
        print(f"{name}: decode CPU ms/token median {summary[name]['decode_ms']['median']:.3f} "
              f"min {summary[name]['decode_ms']['min']:.3f} | prefill CPU ms/token median "
              f"{summary[name]['prefill_ms']['median']:.3f} min {summary[name]['prefill_ms']['min']:.3f}")
    print(json.dumps({"model": args.model, "threads": args.threads, "rounds": args.rounds, "results": summary}))


if __name__ == "__main__":
    main()
