#!/usr/bin/env python3
"""burnbert and Hugging Face Trainer (PyTorch) on the identical job, same machine, same run:
all-MiniLM-L6-v2, the first N SST-2 training rows, 1 epoch, batch 32, max_len 128, dynamic
padding, fp32, AdamW 5e-5 (wd 0.01, not on bias/LayerNorm), 10% warmup then cosine, grad-norm 1.0,
seed 42. Prints samples/s of each, their ratio, the peak memory of each, and both dev
accuracies.

    python3 benches/side_by_side.py [--rows 2000] [--burnbert target/release/burnbert] \
        [--extra="--backend tch" ...] [--cuda] [--keep DIR]

Each `--extra` is one burnbert run (flags as one string); the Trainer runs once. Peak memory is
the process's RSS on CPU; with `--cuda` the Trainer runs on the GPU and peak memory is the GPU's
(nvidia-smi's memory.used over the run, minus what was used before it). `--keep DIR` keeps each
burnbert run's output (model, metrics, logs) as DIR/1, DIR/2, ….

Needs torch, transformers and accelerate. Build burnbert first (cargo build --release, with the
backend feature you want to measure).
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HF_JOB = r'''
import csv, json, sys, time
import numpy as np, torch
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding,
                          Trainer, TrainingArguments)
model_dir, train_path, dev_path, rows, out = sys.argv[1:6]
def read(path, n=None):
    with open(path, encoding="utf-8") as f:
        r = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(r)
        data = [(t, int(l)) for t, l in r]
    return data[:n] if n else data
tok = AutoTokenizer.from_pretrained(model_dir)
class DS(torch.utils.data.Dataset):
    def __init__(self, rows): self.enc = [dict(tok(t, truncation=True, max_length=128), labels=l) for t, l in rows]
    def __len__(self): return len(self.enc)
    def __getitem__(self, i): return self.enc[i]
train, dev = DS(read(train_path, int(rows))), DS(read(dev_path))
model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
args = TrainingArguments(output_dir=out, per_device_train_batch_size=32, per_device_eval_batch_size=64,
    learning_rate=5e-5, weight_decay=0.01, warmup_steps=0.1, lr_scheduler_type="cosine", num_train_epochs=1,
    max_grad_norm=1.0, seed=42, report_to=[], save_strategy="no", logging_strategy="no",
    use_cpu=not torch.cuda.is_available())
def metrics(p): return {"accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())}
trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=dev,
                  data_collator=DataCollatorWithPadding(tok), compute_metrics=metrics)
result = trainer.train()
ev = trainer.evaluate()
print(json.dumps({"samples_per_second": result.metrics["train_samples_per_second"], "accuracy": ev["eval_accuracy"]}))
'''


class GpuPeak:
    """Polls nvidia-smi's memory.used while a run lasts; the peak minus the level before it."""

    def __init__(self):
        self.base = self.used()
        self.peak = self.base
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.poll, daemon=True)

    @staticmethod
    def used():
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, check=True).stdout
        return float(out.split()[0])

    def poll(self):
        while not self.done.wait(0.1):
            self.peak = max(self.peak, self.used())

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()

    def mb(self):
        return self.peak - self.base


def run_measured(cmd, cuda, **kwargs):
    """Runs cmd; returns (process, peak MB): GPU memory with cuda, else the child's peak RSS
    (through /usr/bin/time when present)."""
    if cuda:
        with GpuPeak() as gpu:
            proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
        return proc, gpu.mb()
    if os.path.exists("/usr/bin/time"):
        cmd = ["/usr/bin/time", "-f", "PEAK_KB %M"] + cmd
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    peak = float("nan")
    for line in proc.stderr.splitlines():
        if line.startswith("PEAK_KB "):
            peak = int(line.split()[1]) / 1024
    return proc, peak


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--burnbert", default=os.path.join(ROOT, "target", "release", "burnbert"))
    parser.add_argument("--extra", action="append",
                        help='burnbert train flags of one run, as one string: --extra="--backend tch"; repeatable')
    parser.add_argument("--cuda", action="store_true", help="Trainer on the GPU; GPU peak memory")
    parser.add_argument("--keep", help="keep each burnbert run's output directory as KEEP/1, KEEP/2, ...")
    parser.add_argument("--timeout", type=float, help="seconds one burnbert run may take (it is then reported as such)")
    args = parser.parse_args()
    extras = args.extra or [""]
    model_dir = subprocess.run([args.burnbert, "fetch-model", "sentence-transformers/all-MiniLM-L6-v2"],
                               check=True, capture_output=True, text=True).stdout.strip()
    train = os.path.join(ROOT, "data/glue/sst2/train.tsv")
    dev = os.path.join(ROOT, "data/glue/sst2/dev.tsv")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, extra in enumerate(extras):
            out = os.path.join(args.keep or tmp, str(n + 1))
            cmd = [args.burnbert, "train", "--config", os.path.join(ROOT, "config/default.toml"),
                   "--max-train-samples", str(args.rows), "--no-tui", "--log-every", "100000",
                   "--output", out] + shlex.split(extra)
            name = f"burnbert {extra}".strip()
            try:
                proc, peak = run_measured(cmd, args.cuda, cwd=ROOT, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                print(f"{name}: over {args.timeout:.0f} s, left out", file=sys.stderr, flush=True)
                continue
            if proc.returncode != 0:
                print(f"{name}: failed: {proc.stderr[-2000:]}", file=sys.stderr, flush=True)
                continue
            summary = {}
            for line in proc.stdout.splitlines():
                parts = line.rsplit(None, 1)
                if len(parts) == 2:
                    summary[parts[0].strip()] = parts[1]
            rows.append((name, float(summary["train samples/s"]), peak, float(summary["eval accuracy"])))
            print(f"{name}: {rows[-1][1]:.1f} samples/s, peak {peak:.0f} MB, dev accuracy {rows[-1][3]:.4f}",
                  file=sys.stderr, flush=True)
        hf_cmd = [sys.executable, "-c", HF_JOB, model_dir, train, dev, str(args.rows), os.path.join(tmp, "hf")]
        proc, hf_peak = run_measured(hf_cmd, args.cuda)
        if proc.returncode != 0:
            sys.exit(proc.stderr[-2000:])
        hf = json.loads(proc.stdout.strip().splitlines()[-1])
    where = "GPU" if args.cuda else "CPU"
    print(f"job: all-MiniLM-L6-v2, {args.rows} SST-2 rows, 1 epoch, batch 32, max_len 128, fp32; "
          f"{os.cpu_count()} CPUs; Trainer on {where}")
    memory = "peak GPU MB" if args.cuda else "peak RSS MB"
    print(f"{'':40}{'samples/s':>12}{memory:>14}{'dev accuracy':>14}")
    for name, sps, peak, acc in rows:
        print(f"{name:40}{sps:>12.1f}{peak:>14.0f}{acc:>14.4f}")
    print(f"{'transformers Trainer':40}{hf['samples_per_second']:>12.1f}{hf_peak:>14.0f}{hf['accuracy']:>14.4f}")
    for name, sps, peak, _ in rows:
        print(f"ratio {name} / PyTorch: {sps / hf['samples_per_second']:.2f}x samples/s, "
              f"{peak / hf_peak:.2f}x peak memory")


if __name__ == "__main__":
    main()
