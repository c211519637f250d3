#!/usr/bin/env python3
"""Round trip with Python transformers: a model saved by `burnbert train` loads with
AutoModelForSequenceClassification/AutoTokenizer, and its probabilities agree with
`burnbert predict` within 1e-4.

    python3 scripts/check_roundtrip.py RUN_DIR [--burnbert PATH] [--max-len 128]

With `--peft BASE` (a LoRA run), transformers instead loads the base model BASE with the PEFT
adapter the run wrote in RUN_DIR/adapter (`PeftModel.from_pretrained`), and that must agree with
`burnbert predict` on the merged model in RUN_DIR.

Needs torch and transformers (and peft for --peft). Exits non-zero when the two disagree.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--burnbert", default=os.path.join(ROOT, "target", "release", "burnbert"))
    parser.add_argument("--max-len", type=int, default=128)
    parser.add_argument("--peft", metavar="BASE", help="check RUN_DIR/adapter on the base model BASE")
    args = parser.parse_args()

    with open(os.path.join(ROOT, "tests", "fixtures", "inputs.json"), encoding="utf-8") as f:
        inputs = json.load(f)

    model = AutoModelForSequenceClassification.from_pretrained(args.model).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if args.peft:
        from peft import PeftModel

        config = model.config
        base = AutoModelForSequenceClassification.from_pretrained(
            args.peft, num_labels=config.num_labels, id2label=config.id2label, label2id=config.label2id
        )
        model = PeftModel.from_pretrained(base, os.path.join(args.model, "adapter")).eval()
        print(f"peft loaded the adapter of {args.model} on {args.peft}")
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    print(f"transformers loaded {type(model).__name__} with labels {labels}")

    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "in.jsonl")
        with open(src, "w", encoding="utf-8") as f:
            for row in inputs:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        out = subprocess.run(
            [args.burnbert, "predict", "--model", args.model, "--input", src, "--max-len", str(args.max_len)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    ours = [json.loads(line) for line in out.splitlines() if line.strip()]

    worst = 0.0
    for row, pred in zip(inputs, ours):
        enc = tokenizer(row["text"], row.get("text_pair"), truncation="longest_first", max_length=args.max_len,
                        return_tensors="pt")
        with torch.no_grad():
            probs = torch.softmax(model(**enc).logits[0], -1).tolist()
        theirs = dict(zip(labels, probs))
        diff = max(abs(theirs[k] - pred["scores"][k]) for k in labels)
        worst = max(worst, diff)
        same = max(theirs, key=theirs.get) == pred["label"]
        print(f"{row['text'][:40]!r:44} transformers {max(theirs, key=theirs.get)!r:6} burnbert {pred['label']!r:6}"
              f" max|Δp| {diff:.2e}{'' if same else '  LABEL DIFFERS'}")
    print(f"{len(inputs)} inputs, worst probability difference {worst:.2e}")
    if worst > 1e-4 or len(ours) != len(inputs):
        print("FAIL: burnbert and transformers disagree", file=sys.stderr)
        sys.exit(1)
    print("OK: the saved model loads in transformers and agrees with burnbert predict within 1e-4")


if __name__ == "__main__":
    main()
