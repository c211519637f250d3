#!/usr/bin/env python3
"""Training on files larger than memory: for synthetic labelled TSV files of 10k, 100k, 1M and
10M rows (20-word windows of the SST-2 training text), burnbert trains all-MiniLM-L6-v2 for a fixed
number of optimizer steps (--max-steps, batch 32, max_len 128) and this script prints, per file:

- time to the first step: from the process start to the end of the first optimizer step (the
  indexing pass included; a second run of the same file reuses the cached index),
- peak RSS of the whole process (ru_maxrss from wait4),
- steps/s over the training steps (burnbert's own train samples/s / batch size),
- user and system CPU seconds and page faults,

with the CPU model, in one invocation. The row index is cached in a fresh directory
(BURNBERT_CACHE) per invocation, so the first run of each file is a cold start.

    python3 benches/scale_bench.py [--rows 10000,100000,1000000,10000000] [--steps 30]
        [--burnbert target/release/burnbert] [--dir DIR] [--keep-files]

Build burnbert first (cargo build --release). Files go to --dir (default: a temporary
directory; 10M rows are about 1.1 GB) and are removed at the end unless --keep-files.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from side_by_side import cpu_model  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SST2 = os.path.join(ROOT, "data", "glue", "sst2")


def generate(path, rows, words=20):
    """`rows` labelled rows of `words` words each: windows of the SST-2 training text taken at
    a stride, labelled with the label of the sentence each starts in. Every row has the same
    number of words, so the batches (and the activations' memory) look alike whatever the
    file's size, and the rows are distinct."""
    with open(os.path.join(SST2, "train.tsv"), encoding="utf-8") as f:
        next(f)
        stream, labels = [], []
        for line in f:
            text, label = line.rstrip("\n").split("\t")
            for word in text.split():
                stream.append(word)
                labels.append(label)
    n = len(stream) - words
    with open(path, "w", encoding="utf-8") as out:
        out.write("sentence\tlabel\n")
        chunk = []
        for i in range(rows):
            start = (i * 7919) % n
            chunk.append(" ".join(stream[start:start + words]) + "\t" + labels[start] + "\n")
            if len(chunk) == 100_000:
                out.write("".join(chunk))
                chunk = []
        out.write("".join(chunk))


def run(binary, train, steps, cache, out):
    """Runs one training; returns (seconds to the first step, peak RSS MB, steps/s, user s,
    system s, major+minor page faults, exit code)."""
    cmd = [binary, "train", "--train", train,
           "--valid", os.path.join(SST2, "dev.tsv"), "--max-eval-samples", "64",
           "--text-column", "sentence", "--max-steps", str(steps), "--batch-size", "32",
           "--max-len", "128", "--no-tui", "--log-every", "1", "--output", out]
    env = dict(os.environ, BURNBERT_CACHE=cache)
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            text=True, cwd=ROOT)
    first_step, rate, lines = None, None, []
    for line in proc.stdout:
        lines.append(line)
        if first_step is None and re.match(r"step 1/\d+ ", line):
            first_step = time.monotonic() - start
        m = re.match(r"train samples/s\s+([0-9.]+)", line)
        if m:
            rate = float(m.group(1))
    _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.stderr.write("".join(lines[-20:]))
    return (first_step, usage.ru_maxrss / 1024, (rate or 0) / 32, usage.ru_utime,
            usage.ru_stime, usage.ru_majflt + usage.ru_minflt, code)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="10000,100000,1000000,10000000")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--burnbert", default=os.path.join(ROOT, "target", "release", "burnbert"))
    parser.add_argument("--dir", default=None)
    parser.add_argument("--keep-files", action="store_true")
    parser.add_argument("--generate", nargs=2, metavar=("PATH", "ROWS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        generate(args.generate[0], int(args.generate[1]))
        return
    work = args.dir or tempfile.mkdtemp(prefix="burnbert-scale-")
    os.makedirs(work, exist_ok=True)
    # A fresh cache and fresh run directories per invocation: each file's first run is cold.
    cache = tempfile.mkdtemp(prefix="burnbert-cache-", dir=work)
    runs = tempfile.mkdtemp(prefix="runs-", dir=work)
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical cores; burnbert: {args.burnbert}; "
          f"{args.steps} optimizer steps of batch 32 per run")
    header = (f"{'rows':>10} {'file MB':>8} {'run':>7} {'first step s':>12} {'peak RSS MB':>11} "
              f"{'steps/s':>7} {'user s':>7} {'sys s':>6} {'faults':>9}")
    print(header)
    for rows in [int(r) for r in args.rows.split(",")]:
        path = os.path.join(work, f"train-{rows}.tsv")
        if not os.path.exists(path):
            # In a child process: this one stays small, and so does the RSS its children start
            # with (wait4 counts the forked image before exec).
            subprocess.run([sys.executable, os.path.abspath(__file__), "--generate", path,
                            str(rows)], check=True)
        size = os.path.getsize(path) / 1e6
        for kind in ["cold", "cached"]:
            out = os.path.join(runs, f"{rows}-{kind}")
            first, rss, rate, user, system, faults, code = run(
                args.burnbert, path, args.steps, cache, out)
            first = f"{first:.1f}" if first is not None else "-"
            print(f"{rows:>10} {size:>8.0f} {kind:>7} {first:>12} {rss:>11.0f} {rate:>7.2f} "
                  f"{user:>7.1f} {system:>6.1f} {faults:>9}" + ("" if code == 0 else f"  exit {code}"),
                  flush=True)
        if not args.keep_files:
            os.remove(path)


if __name__ == "__main__":
    main()
