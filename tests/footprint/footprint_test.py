#!/usr/bin/env python3
"""Footprint of a small generation from the command line (ctest footprint_cli_test).

    footprint_test.py PROBE KESTREL MODEL [--runs N] [--sanitize ON|OFF] [--json]

Runs `kestrel generate -m MODEL --device cpu --no-echo -v` N times (default 3) under PROBE
(footprint_probe.c: a small parent, so the fork does not inflate the child's peak RSS) and
measures, per run, the peak RSS of the process and the time from starting it to the first byte of
generated text on its stdout. Checks (the contract of issue 18):
  - only the plugins of the asked device and the fallback (cpu, ref) are loaded (-v log lines);
  - the peak RSS is at most the model file's size + 16 MiB (not checked under sanitizers, which
    add their own shadow memory).
The time to first token is printed (median, min, max), not checked: speed is a benchmark's
business (docs/perf/footprint.md records it). Exit 0 pass, 1 fail, 77 skip (no model).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

MIB = 1024 * 1024


def run_once(probe, kestrel, model, tmpdir):
    err_path = os.path.join(tmpdir, "stderr.txt")
    out = subprocess.run(
        [probe, err_path, kestrel, "generate", "-m", model, "--device", "cpu", "-p",
         "Once upon a time", "-n", "16", "--temp", "0", "--no-echo", "-v"],
        stdout=subprocess.PIPE, check=True).stdout
    r = json.loads(out)
    with open(err_path, encoding="utf-8", errors="replace") as f:
        r["stderr"] = f.read()
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("probe")
    ap.add_argument("kestrel")
    ap.add_argument("model")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sanitize", default="OFF")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if not os.path.isfile(a.model):
        print(f"SKIP: model not found: {a.model}")
        return 77
    model_bytes = os.path.getsize(a.model)
    limit = model_bytes + 16 * MIB
    with tempfile.TemporaryDirectory() as tmpdir:
        runs = [run_once(a.probe, a.kestrel, a.model, tmpdir) for _ in range(a.runs)]
    failed = False
    for r in runs:
        if r["exit"] != 0 or r["bytes"] == 0:
            print(f"FAIL: kestrel generate exited {r['exit']}: {r['stderr']}", file=sys.stderr)
            return 1
        loaded = [line for line in r["stderr"].splitlines() if "loaded plugin '" in line]
        names = sorted(line.split("loaded plugin '")[1].split("'")[0] for line in loaded)
        if not set(names) <= {"cpu", "ref"} or "cpu" not in names:
            print(f"FAIL: plugins loaded for --device cpu: {names} (want cpu and ref only)",
                  file=sys.stderr)
            failed = True
    rss = [r["peak_rss_bytes"] for r in runs]
    ttft = [r["first_byte_ms"] for r in runs]
    summary = {
        "model_bytes": model_bytes,
        "rss_limit_bytes": limit,
        "peak_rss_bytes_max": max(rss),
        "peak_rss_bytes_median": statistics.median(rss),
        "first_token_ms_median": statistics.median(ttft),
        "first_token_ms_min": min(ttft),
        "first_token_ms_max": max(ttft),
        "runs": len(runs),
    }
    if a.json:
        print(json.dumps(summary))
    else:
        print(f"peak RSS {max(rss) / MIB:.1f} MiB (limit {limit / MIB:.1f} MiB = model "
              f"{model_bytes / MIB:.1f} MiB + 16 MiB); process start -> first token "
              f"median {summary['first_token_ms_median']:.1f} ms "
              f"(min {min(ttft):.1f}, max {max(ttft):.1f}) over {len(runs)} runs")
    if a.sanitize.upper() in ("ON", "1", "TRUE"):
        print("peak RSS not checked: sanitizer build")
    elif max(rss) > limit:
        print(f"FAIL: peak RSS {max(rss)} bytes > {limit}", file=sys.stderr)
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
