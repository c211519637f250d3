#!/usr/bin/env python3
"""`burnbert serve` under load, beside transformers' pipeline("text-classification"), in one
invocation on one machine.

    python3 benches/serve_bench.py --burnbert target/release/burnbert --model RUN_DIR [--texts 512]

RUN_DIR is a classifier directory transformers can load (a `burnbert train` output). The script
starts the server on a free port, sends the first N SST-2 dev sentences one per request from 1,
16 and 64 concurrent clients (threads, keep-alive connections), and prints requests/s, texts/s and
the p50/p99 latency of each; then runs transformers' pipeline on the same texts (batch_size 1, its
default, and 32) and prints texts/s; then the ratio at concurrency 64. Machine, CPU model and
versions are printed first: numbers from different machines do not compare.
"""

import argparse
import http.client
import json
import os
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benches"))
from side_by_side import cpu_model  # noqa: E402


def sentences(n):
    with open(os.path.join(ROOT, "data", "glue", "sst2", "dev.tsv"), encoding="utf-8") as f:
        next(f)
        return [line.split("\t")[0] for _, line in zip(range(n), f)]


def start_server(burnbert, model):
    proc = subprocess.Popen(
        [burnbert, "serve", "--model", model, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = proc.stdout.readline()
    url = line.strip().rsplit(" ", 1)[-1]
    host, port = url.replace("http://", "").split(":")
    return proc, host, int(port)


def drive(host, port, texts, concurrency):
    """Every text once, one per request, from `concurrency` threads; returns latencies, seconds."""
    latencies = []
    lock = threading.Lock()
    next_index = [0]

    def client():
        conn = http.client.HTTPConnection(host, port)
        mine = []
        while True:
            with lock:
                i = next_index[0]
                next_index[0] += 1
            if i >= len(texts):
                break
            body = json.dumps({"inputs": texts[i]})
            t = time.perf_counter()
            conn.request("POST", "/predict", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            assert response.status == 200, response.status
            mine.append(time.perf_counter() - t)
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, time.perf_counter() - start


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--burnbert", default=os.path.join(ROOT, "target", "release", "burnbert"))
    parser.add_argument("--model", required=True, help="classifier directory (a burnbert train output)")
    parser.add_argument("--texts", type=int, default=512)
    args = parser.parse_args()

    import torch
    import transformers

    texts = sentences(args.texts)
    print(
        f"machine: {cpu_model()}, {os.cpu_count()} CPUs; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), transformers {transformers.__version__}"
    )
    print(f"job: {len(texts)} SST-2 dev sentences, one per request; model {args.model}")
    proc, host, port = start_server(args.burnbert, args.model)
    rows = {}
    try:
        drive(host, port, texts[:32], 4)  # warm-up
        for concurrency in (1, 16, 64):
            latencies, seconds = drive(host, port, texts, concurrency)
            rows[concurrency] = len(texts) / seconds
            print(
                f"burnbert serve, concurrency {concurrency:>2}: {len(texts) / seconds:8.1f} requests/s "
                f"{len(texts) / seconds:8.1f} texts/s  p50 {percentile(latencies, 0.5) * 1000:7.1f} ms  "
                f"p99 {percentile(latencies, 0.99) * 1000:7.1f} ms"
            )
    finally:
        proc.terminate()
        proc.wait()

    pipe = transformers.pipeline("text-classification", model=args.model, device="cpu")
    pipe(texts[:8])  # warm-up
    pipeline_rates = {}
    for batch_size in (1, 32):
        start = time.perf_counter()
        pipe(texts, batch_size=batch_size, truncation=True)
        rate = len(texts) / (time.perf_counter() - start)
        pipeline_rates[batch_size] = rate
        print(f"transformers pipeline, batch_size {batch_size:>2}: {rate:8.1f} texts/s")
    best = max(pipeline_rates.values())
    print(
        f"ratio burnbert serve at concurrency 64 / pipeline: {rows[64] / pipeline_rates[1]:.2f}x "
        f"(batch_size 1), {rows[64] / pipeline_rates[32]:.2f}x (batch_size 32), {rows[64] / best:.2f}x (its best)"
    )


if __name__ == "__main__":
    main()
