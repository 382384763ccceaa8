#!/usr/bin/env python3
"""Small-batch matmul cost ratios, time(T) / time(T=1), from tests/bench/cpu_matmul_bench.

Runs the benchmark's BM_SmallBatch (one TinyLlama weight shape, DRAM-sized working set) and/or
BM_DecodeSweep (all the GEMVs of a TinyLlama decode step) several times, alternating the plugin
folders given (e.g. this build's and a baseline build's copy), takes the median real time of each
benchmark per folder, and prints time(T)/time(1) for every (format, shape) and folder, so that a
kernel change is judged against its baseline measured in the same run on the same (possibly
shared) machine. Example (docs/perf/cpu-kernels.md):

  scripts/small_batch_ratios.py --plugins build/lib/kestrel/plugins \\
      --plugins /tmp/base/plugins --filter 'BM_SmallBatch/17/2048/2048/[0-9]+/2/' --reps 5
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys

DTYPES = {16: "Q8_0", 17: "Q4_0", 18: "Q4_1", 23: "Q4_K", 25: "Q6_K", 1: "F16", 0: "F32"}


def run_once(bench, plugins, flt, min_time, field):
    env = dict(os.environ, KESTREL_PLUGIN_DIR=plugins)
    out = subprocess.run([bench, "--benchmark_filter=" + flt, "--benchmark_format=json",
                          "--benchmark_min_time=%g" % min_time],
                         env=env, check=True, capture_output=True, text=True).stdout
    times = {}
    for b in json.loads(out)["benchmarks"]:
        if "error_occurred" in b and b["error_occurred"]:
            sys.exit("benchmark %s failed: %s" % (b["name"], b.get("error_message", "")))
        times[b["name"]] = (b[field], b["time_unit"])
    return times


def key_of(name):
    """(group key without T, T): BM_SmallBatch/dtype/n/k/T/thr, BM_DecodeSweep/dtype/thr/T."""
    parts = name.split("/")
    if parts[0] == "BM_SmallBatch":
        dt, n, k, t, thr = (int(p) for p in parts[1:6])
        return ("%s %dx%d, %d thr" % (DTYPES.get(dt, str(dt)), n, k, thr), t)
    if parts[0] == "BM_DecodeSweep":
        dt, thr, t = (int(p) for p in parts[1:4])
        return ("%s decode sweep, %d thr" % (DTYPES.get(dt, str(dt)), thr), t)
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--bench", default="build/bin/cpu_matmul_bench")
    ap.add_argument("--plugins", action="append", required=True,
                    help="plugin folder (repeat: the first is 'new', later ones are baselines)")
    ap.add_argument("--filter", default="BM_SmallBatch/17/2048/2048/[0-9]+/2/",
                    help="Google Benchmark regex (BM_SmallBatch and/or BM_DecodeSweep)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=0.3)
    ap.add_argument("--cpu-time", action="store_true",
                    help="compare the benchmarks' CPU time (1-thread runs on a shared machine)")
    ap.add_argument("--json", help="write the medians and ratios here")
    a = ap.parse_args()

    samples = {p: {} for p in a.plugins}
    units = {}
    for rep in range(a.reps):
        order = a.plugins if rep % 2 == 0 else list(reversed(a.plugins))
        for p in order:
            for name, (t, unit) in run_once(a.bench, p, a.filter, a.min_time,
                                                 "cpu_time" if a.cpu_time else "real_time").items():
                samples[p].setdefault(name, []).append(t)
                units[name] = unit
    result = {}
    for p in a.plugins:
        groups = {}
        for name, ts in samples[p].items():
            k = key_of(name)
            if k:
                groups.setdefault(k[0], {})[k[1]] = statistics.median(ts)
                groups[k[0]].setdefault("unit", units[name])
        result[p] = groups
    print("load average: %s" % " ".join(open("/proc/loadavg").read().split()[:3]))
    for p in a.plugins:
        print("\n## %s (median of %d: %s at T=1, then time(T)/time(1))"
              % (p, a.reps, "CPU time" if a.cpu_time else "wall time"))
        for g, by_t in sorted(result[p].items()):
            ts = sorted(t for t in by_t if t != "unit")
            if 1 not in ts:
                continue
            ratios = "  ".join("T=%d %.2fx" % (t, by_t[t] / by_t[1]) for t in ts if t != 1)
            print("%-30s %9.1f %s  %s" % (g, by_t[1], by_t["unit"], ratios))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"reps": a.reps, "filter": a.filter,
                       "median_real_time": {p: {g: {str(t): v for t, v in bt.items()}
                                                for g, bt in r.items()} for p, r in result.items()}},
                      f, indent=1)


if __name__ == "__main__":
    main()
