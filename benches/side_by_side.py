#!/usr/bin/env python3
"""burnbert and Hugging Face Trainer (PyTorch) on the identical job, same machine, same run:
all-MiniLM-L6-v2, the first N SST-2 training rows, 1 epoch, batch 32, max_len 128, dynamic
padding, fp32, AdamW 5e-5 (wd 0.01, not on bias/LayerNorm), 10% warmup then cosine, grad-norm 1.0,
seed 42. Prints, for each side, samples/s, peak memory, user and system CPU seconds, page faults,
the share of the machine's CPU time the host stole while it ran (a VM's neighbours slow both
sides, rarely alike) and dev accuracy, then the ratios. The Trainer runs twice: grouping
batches by length as burnbert does (`train_sampling_strategy="group_by_length"`, `group_by_length=True` before transformers 5),
the identical job and the ratio the README quotes; and with its default random batches, for
reference. `--no-random` skips the second.

    python3 benches/side_by_side.py [--rows 2000] [--batch-size 32] [--burnbert target/release/burnbert] \
        [--extra="--backend tch" ...] [--cuda] [--bf16] [--keep DIR]

Each `--extra` is one burnbert run (flags as one string, after `--batch-size`, so they may
override it). `--bf16` adds a grouped Trainer run with `bf16=True` (torch's autocast, the
Trainer's mixed precision), the one to hold `--mixed-precision bf16` against on a GPU. Peak memory is the process's RSS on
CPU; with `--cuda` the Trainer runs on the GPU and peak memory is the GPU's
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
model_dir, train_path, dev_path, rows, out, sampling, batch, precision = sys.argv[1:9]
def read(path, n=None):
    with open(path, encoding="utf-8") as f:
        r = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(r)
        data = [(t, int(l)) for t, l in r]
    return data[:n] if n else data
tok = AutoTokenizer.from_pretrained(model_dir)
fields = TrainingArguments.__dataclass_fields__
if sampling == "random":
    grouping = {}
elif "train_sampling_strategy" in fields:  # transformers 5
    grouping = {"train_sampling_strategy": "group_by_length"}
else:
    grouping = {"group_by_length": True}
class DS(torch.utils.data.Dataset):
    def __init__(self, rows): self.enc = [dict(tok(t, truncation=True, max_length=128), labels=l) for t, l in rows]
    def __len__(self): return len(self.enc)
    def __getitem__(self, i): return self.enc[i]
train, dev = DS(read(train_path, int(rows))), DS(read(dev_path))
model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
args = TrainingArguments(output_dir=out, per_device_train_batch_size=int(batch), per_device_eval_batch_size=64,
    learning_rate=5e-5, weight_decay=0.01, warmup_steps=0.1, lr_scheduler_type="cosine", num_train_epochs=1,
    max_grad_norm=1.0, seed=42, report_to=[], save_strategy="no", logging_strategy="no",
    use_cpu=not torch.cuda.is_available(), bf16=precision == "bf16", **grouping)
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


def cpu_ticks():
    """(stolen, all) clock ticks of the whole machine so far, from /proc/stat's `cpu` line: the
    time the hypervisor ran something else while this VM wanted its CPUs, and the total."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(t) for t in f.readline().split()[1:9]]
        return ticks[7], sum(ticks)
    except (OSError, ValueError, IndexError):
        return 0, 0


class Usage:
    """What one process used: peak memory (MB), user and system CPU seconds, page faults; and the
    share of the machine's CPU time the host stole while it ran (%)."""

    def __init__(self, rusage, peak_mb, ticks_before):
        self.peak = peak_mb if peak_mb is not None else rusage.ru_maxrss / 1024
        self.user = rusage.ru_utime
        self.system = rusage.ru_stime
        self.minor_faults = rusage.ru_minflt
        self.major_faults = rusage.ru_majflt
        stolen, total = (after - before for after, before in zip(cpu_ticks(), ticks_before))
        self.stolen = 100 * stolen / total if total else 0.0


def run_measured(cmd, cuda, timeout=None, **kwargs):
    """Runs cmd; returns (process, Usage) with the child's own rusage (os.wait4): CPU times, page
    faults and, on CPU, its peak RSS; with cuda the peak is GPU memory."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        gpu = GpuPeak() if cuda else None
        if gpu:
            gpu.__enter__()
        ticks = cpu_ticks()
        child = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, **kwargs)
        deadline = time.time() + timeout if timeout else None
        try:
            while True:
                pid, status, rusage = os.wait4(child.pid, os.WNOHANG)
                if pid:
                    break
                if deadline and time.time() > deadline:
                    child.kill()
                    os.wait4(child.pid, 0)
                    raise subprocess.TimeoutExpired(cmd, timeout)
                time.sleep(0.05)
        finally:
            if gpu:
                gpu.__exit__()
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        proc = subprocess.CompletedProcess(cmd, child.returncode, out.read(), err.read())
    return proc, Usage(rusage, gpu.mb() if gpu else None, ticks)


def cpu_model():
    """The CPU's model name, family and model number and whether it has AVX-512, as /proc/cpuinfo
    gives them (a virtual machine's name is often only "AMD EPYC"; the numbers tell generations apart)."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    if "model name" not in fields:
        return "unknown CPU"
    avx512 = "avx512f" in fields.get("flags", "").split()
    return "{} (family {}, model {}, {})".format(
        fields["model name"], fields.get("cpu family", "?"), fields.get("model", "?"),
        "AVX-512" if avx512 else "no AVX-512")


def transparent_hugepages():
    """The kernel's transparent huge page mode (always / madvise / never)."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return f.read().split("[")[1].split("]")[0]
    except (OSError, IndexError):
        return "unknown"


def print_table(rows, memory):
    print(f"{'':44}{'samples/s':>10}{memory:>13}{'user s':>9}{'sys s':>8}{'minor faults':>14}{'stolen':>8}{'dev acc':>9}")
    for name, sps, use, acc in rows:
        print(f"{name:44}{sps:>10.1f}{use.peak:>13.0f}{use.user:>9.1f}{use.system:>8.1f}"
              f"{use.minor_faults:>14,}{use.stolen:>7.1f}%{acc:>9.4f}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32,
                        help="training batch size of both sides (burnbert's --batch-size, the Trainer's per-device batch)")
    parser.add_argument("--bf16", action="store_true",
                        help="also run the grouped Trainer with bf16=True (torch autocast: its mixed precision)")
    parser.add_argument("--burnbert", default=os.path.join(ROOT, "target", "release", "burnbert"))
    parser.add_argument("--extra", action="append",
                        help='burnbert train flags of one run, as one string: --extra="--backend tch"; repeatable')
    parser.add_argument("--cuda", action="store_true", help="Trainer on the GPU; GPU peak memory")
    parser.add_argument("--no-random", action="store_true",
                        help="skip the Trainer run with its default random batches")
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
                   "--max-train-samples", str(args.rows), "--batch-size", str(args.batch_size),
                   "--no-tui", "--log-every", "100000",
                   "--output", out] + shlex.split(extra)
            name = f"burnbert {extra}".strip()
            try:
                proc, use = run_measured(cmd, args.cuda, cwd=ROOT, timeout=args.timeout)
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
            rows.append((name, float(summary["train samples/s"]), use, float(summary["eval accuracy"])))
            print(f"{name}: {rows[-1][1]:.1f} samples/s, peak {use.peak:.0f} MB, "
                  f"{use.user:.1f} s user, {use.system:.1f} s sys, {use.minor_faults:,} minor faults, "
                  f"{use.stolen:.1f}% stolen, dev accuracy {rows[-1][3]:.4f}", file=sys.stderr, flush=True)
        trainers = [("group_by_length", "fp32", "transformers Trainer, grouped by length")]
        if args.bf16:
            trainers.append(("group_by_length", "bf16", "transformers Trainer, grouped by length, bf16"))
        if not args.no_random:
            trainers.append(("random", "fp32", "transformers Trainer, random batches"))
        hf_rows = []
        for sampling, precision, name in trainers:
            hf_cmd = [sys.executable, "-c", HF_JOB, model_dir, train, dev, str(args.rows),
                      os.path.join(tmp, f"hf-{sampling}-{precision}"), sampling, str(args.batch_size), precision]
            proc, use = run_measured(hf_cmd, args.cuda)
            if proc.returncode != 0:
                sys.exit(proc.stderr[-2000:])
            hf = json.loads(proc.stdout.strip().splitlines()[-1])
            hf_rows.append((name, hf["samples_per_second"], use, hf["accuracy"]))
            print(f"{name}: {hf['samples_per_second']:.1f} samples/s, peak {use.peak:.0f} MB, "
                  f"{use.user:.1f} s user, {use.system:.1f} s sys, {use.minor_faults:,} minor faults, "
                  f"{use.stolen:.1f}% stolen", file=sys.stderr, flush=True)
    where = "GPU" if args.cuda else "CPU"
    import torch, transformers
    print(f"job: all-MiniLM-L6-v2, {args.rows} SST-2 rows, 1 epoch, batch {args.batch_size}, max_len 128, "
          f"fp32 unless a row says otherwise; Trainer on {where}")
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, transparent huge pages {transparent_hugepages()}; "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), transformers {transformers.__version__}")
    print_table(rows + hf_rows, "peak GPU MB" if args.cuda else "peak RSS MB")
    for hf_name, hf_sps, hf_use, _ in hf_rows:
        for name, sps, use, _ in rows:
            print(f"ratio {name} / {hf_name}: {sps / hf_sps:.2f}x samples/s, "
                  f"{use.peak / hf_use.peak:.2f}x peak memory, "
                  f"{(use.user + use.system) / (hf_use.user + hf_use.system):.2f}x CPU time")


if __name__ == "__main__":
    main()
