#!/usr/bin/env python3
"""burnbert and Hugging Face Trainer (PyTorch) on the identical job, same machine, same run:
all-MiniLM-L6-v2, the first N SST-2 training rows, 1 epoch, batch 32, max_len 128, dynamic
padding, fp32, AdamW 5e-5 (wd 0.01, not on bias/LayerNorm), 10% warmup then cosine, grad-norm 1.0,
seed 42. Prints samples/s of each, their ratio, the peak memory (RSS) of each, and both dev
accuracies.

    python3 benches/side_by_side.py [--rows 2000] [--burnbert target/release/burnbert] [--features ...]

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
    max_grad_norm=1.0, seed=42, report_to=[], save_strategy="no", logging_strategy="no", use_cpu=True)
def metrics(p): return {"accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())}
trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=dev,
                  data_collator=DataCollatorWithPadding(tok), compute_metrics=metrics)
result = trainer.train()
ev = trainer.evaluate()
print(json.dumps({"samples_per_second": result.metrics["train_samples_per_second"], "accuracy": ev["eval_accuracy"]}))
'''


def peak_mb(cmd):
    """Runs under /usr/bin/time -v when present, for the child's own peak RSS."""
    if os.path.exists("/usr/bin/time"):
        return ["/usr/bin/time", "-f", "PEAK_KB %M"] + cmd
    return cmd


def parse_peak(stderr_or_out):
    for line in stderr_or_out.splitlines():
        if line.startswith("PEAK_KB "):
            return int(line.split()[1]) / 1024
    return float("nan")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--burnbert", default=os.path.join(ROOT, "target", "release", "burnbert"))
    parser.add_argument("--extra", default="", help='extra burnbert train flags, one string: --extra="--backend tch"')
    args = parser.parse_args()
    model_dir = subprocess.run([args.burnbert, "fetch-model", "sentence-transformers/all-MiniLM-L6-v2"],
                               check=True, capture_output=True, text=True).stdout.strip()
    train = os.path.join(ROOT, "data/glue/sst2/train.tsv")
    dev = os.path.join(ROOT, "data/glue/sst2/dev.tsv")
    with tempfile.TemporaryDirectory() as tmp:
        ours_cmd = peak_mb([args.burnbert, "train", "--config", os.path.join(ROOT, "config/default.toml"),
                            "--max-train-samples", str(args.rows), "--no-tui", "--log-every", "100000",
                            "--output", os.path.join(tmp, "burnbert")] + shlex.split(args.extra))
        proc = subprocess.run(ours_cmd, capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            sys.exit(proc.stderr[-2000:])
        ours_peak = parse_peak(proc.stderr)
        summary = {}
        for line in proc.stdout.splitlines():
            parts = line.rsplit(None, 1)
            if len(parts) == 2:
                summary[parts[0].strip()] = parts[1]
        ours = {"samples_per_second": float(summary["train samples/s"]),
                "accuracy": float(summary["eval accuracy"])}
        hf_cmd = peak_mb([sys.executable, "-c", HF_JOB, model_dir, train, dev, str(args.rows), os.path.join(tmp, "hf")])
        proc = subprocess.run(hf_cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(proc.stderr[-2000:])
        hf_peak = parse_peak(proc.stderr)
        hf = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"job: all-MiniLM-L6-v2, {args.rows} SST-2 rows, 1 epoch, batch 32, max_len 128, fp32; "
          f"{os.cpu_count()} CPUs; burnbert flags: {args.extra or '(default backend)'}")
    print(f"{'':24}{'samples/s':>12}{'peak RSS MB':>14}{'dev accuracy':>14}")
    print(f"{'burnbert':24}{ours['samples_per_second']:>12.1f}{ours_peak:>14.0f}{ours['accuracy']:>14.4f}")
    print(f"{'transformers Trainer':24}{hf['samples_per_second']:>12.1f}{hf_peak:>14.0f}{hf['accuracy']:>14.4f}")
    print(f"ratio burnbert / PyTorch: {ours['samples_per_second'] / hf['samples_per_second']:.2f}x samples/s, "
          f"{ours_peak / hf_peak:.2f}x peak memory")


if __name__ == "__main__":
    main()
