#!/usr/bin/env python3
"""Benchmark of `kestrel serve`: streaming clients over loopback, 1 vs C at once (docs/perf/serve.md).

    bench_serve.py KESTREL MODEL [-t 2] [-n 64] [--concurrency 1,32] [--reps 1] [--json]

Starts `kestrel serve -m MODEL --port 0 -t T --max-concurrency max(C)`, then per concurrency C
sends C streamed /v1/completions requests at once (the 12 prompts of `kestrel bench --engine`,
cycled; temperature 0.8, seed = request index; max_tokens N) from C client threads, each a plain
HTTP/1.1 connection reading the server-sent events (http.client: a light client, so the client
takes little CPU from the server on a small machine). Per run: tokens/s = completion tokens of
all requests / wall time from the first send to the last [DONE]; time to first token = send ->
first event with text, per request (p50, p99). The median run of --reps is reported, and the
ratio tokens/s(C) / tokens/s(1). Each run is preceded by one untimed request.
"""
import argparse
import http.client
import json
import statistics
import subprocess
import sys
import threading
import time

PROMPTS = ["Once upon a time", "Lily wanted to", "The little dog", "One day, a girl named",
           "Tom and his mom", "The sun was", "There was a big", "A cat sat on",
           "Ben liked to play with", "In the park, a bird", "Mom said that", "The red ball"]


def stream_request(host, port, model, prompt, max_tokens, seed, out):
    body = json.dumps({"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.8,
                       "seed": seed, "stream": True, "stream_options": {"include_usage": True}})
    conn = http.client.HTTPConnection(host, port, timeout=3600)
    start = time.perf_counter()
    conn.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        out.update(error=f"HTTP {resp.status}: {resp.read()[:200]!r}")
        return
    first = None
    tokens = 0
    for raw in resp:
        line = raw.decode().strip()
        if not line.startswith("data: "):
            continue
        data = line[6:]
        if data == "[DONE]":
            break
        event = json.loads(data)
        if event.get("usage"):
            tokens = event["usage"]["completion_tokens"]
        for choice in event.get("choices", []):
            if choice.get("text") and first is None:
                first = time.perf_counter() - start
    out.update(ttft=first, tokens=tokens, end=time.perf_counter())
    conn.close()


def run(host, port, model, concurrency, max_tokens):
    results = [dict() for _ in range(concurrency)]
    threads = [threading.Thread(target=stream_request,
                                args=(host, port, model, PROMPTS[i % len(PROMPTS)], max_tokens, i, results[i]))
               for i in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise RuntimeError(errors[0])
    wall = max(r["end"] for r in results) - start
    tokens = sum(r["tokens"] for r in results)
    ttft = sorted(r["ttft"] for r in results if r["ttft"] is not None)
    p99 = ttft[min(len(ttft) - 1, int(round(0.99 * (len(ttft) - 1))))]
    return {"concurrency": concurrency, "tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall,
            "ttft_p50_ms": statistics.median(ttft) * 1000, "ttft_p99_ms": p99 * 1000}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kestrel")
    ap.add_argument("model")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-n", type=int, default=64)
    ap.add_argument("--concurrency", default="1,32")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    levels = [int(c) for c in a.concurrency.split(",")]
    server = subprocess.Popen([a.kestrel, "serve", "-m", a.model, "--port", "0", "-t", str(a.threads),
                               "--max-concurrency", str(max(levels))],
                              stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        if "listening on http://" not in line:
            raise RuntimeError(f"kestrel serve did not start: {line!r}")
        host, port = line.split("http://")[1].split()[0].rsplit(":", 1)
        model = line.split("model '")[1].split("'")[0]
        report = {"model": a.model, "threads": a.threads, "n": a.n, "reps": a.reps, "runs": []}
        for c in levels:
            runs = []
            for _ in range(a.reps):
                run(host, int(port), model, 1, 4)  # untimed warm-up
                r = run(host, int(port), model, c, a.n)
                print(f"serve: concurrency {c}: {r['tokens_per_s']:.2f} tokens/s ({r['tokens']} tokens in "
                      f"{r['wall_s']:.1f} s), time to first token p50 {r['ttft_p50_ms']:.0f} ms, "
                      f"p99 {r['ttft_p99_ms']:.0f} ms", file=sys.stderr)
                runs.append(r)
            runs.sort(key=lambda r: r["tokens_per_s"])
            report["runs"].append(runs[len(runs) // 2])
        base = report["runs"][0]["tokens_per_s"]
        for r in report["runs"]:
            r["speedup_vs_1"] = r["tokens_per_s"] / base
        print(json.dumps(report) if a.json else "\n".join(
            f"concurrency {r['concurrency']:>3}: {r['tokens_per_s']:8.2f} tokens/s  x{r['speedup_vs_1']:.2f}  "
            f"TTFT p50 {r['ttft_p50_ms']:.0f} ms p99 {r['ttft_p99_ms']:.0f} ms" for r in report["runs"]))
    finally:
        server.terminate()
        server.wait(timeout=60)


if __name__ == "__main__":
    main()
