#!/usr/bin/env python3
"""Reference numbers for burnbert's training unit tests, from transformers and torch.

Run from the repository root: python3 scripts/make_train_fixtures.py
Writes tests/fixtures/train/schedules.json and tests/fixtures/train/clip.json.
"""

import json
import os

import torch
from transformers import get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "train")


def schedule(factory, lr, warmup, total):
    param = torch.nn.Parameter(torch.zeros(1))
    optim = torch.optim.AdamW([param], lr=lr)
    sched = factory(optim, num_warmup_steps=warmup, num_training_steps=total)
    values = []
    for _ in range(total):
        values.append(optim.param_groups[0]["lr"])  # the lr the next optimizer step uses
        optim.step()
        sched.step()
    return values


def main():
    os.makedirs(OUT, exist_ok=True)
    cases = []
    for lr, warmup, total in [(5e-5, 3, 20), (1e-3, 0, 7), (2e-5, 10, 100)]:
        cases.append(
            {
                "lr": lr,
                "warmup": warmup,
                "total": total,
                "cosine": schedule(get_cosine_schedule_with_warmup, lr, warmup, total),
                "linear": schedule(get_linear_schedule_with_warmup, lr, warmup, total),
            }
        )
    with open(os.path.join(OUT, "schedules.json"), "w") as f:
        json.dump(cases, f, indent=1)

    gen = torch.Generator().manual_seed(0)
    clip_cases = []
    for max_norm, scale in [(1.0, 1.0), (1.0, 0.01), (0.5, 3.0)]:
        shapes = [[4, 3], [3], [2, 2, 2]]
        params = [torch.nn.Parameter(torch.zeros(s)) for s in shapes]
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen) * scale
        before = [p.grad.clone().flatten().tolist() for p in params]
        total = torch.nn.utils.clip_grad_norm_(params, max_norm)
        clip_cases.append(
            {
                "max_norm": max_norm,
                "shapes": shapes,
                "grads": before,
                "clipped": [p.grad.flatten().tolist() for p in params],
                "total_norm": float(total),
            }
        )
    with open(os.path.join(OUT, "clip.json"), "w") as f:
        json.dump(clip_cases, f, indent=1)
    print("written", OUT)


if __name__ == "__main__":
    main()
