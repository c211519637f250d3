#!/usr/bin/env bash
# libtorch calls a training step makes on the tch backend: each is one kernel launch or more on
# a GPU, where a small model's step is bound by launches, so the count measured on a CPU says
# what a change saves there. Counts the calls into torch-sys's C wrappers (`atg_*`) with perf
# uprobes over a 30-step and a 15-step run of the SST-2 job and divides the difference by 15
# (model loading and evaluation cancel out), then lists the most frequent calls (TOP, default 15).
# Usage: benches/torch_calls.sh BURNBERT_BINARY   (a --features tch build; needs perf and root,
# LIBTORCH's lib/ on LD_LIBRARY_PATH)
set -euo pipefail
bin="$(realpath "$1")"
group="torch_calls_$$"
out="$(mktemp -d)"
trap 'perf probe -q -d "$group:*" 2>/dev/null || true; rm -rf "$out"' EXIT
head -33 "$(dirname "$0")/../data/glue/sst2/dev.tsv" > "$out/dev.tsv"
for f in $(perf probe -x "$bin" --funcs 2>/dev/null | grep '^atg_' | grep -v '\.cold'); do
  perf probe -q -x "$bin" --add "$group:$f=$f" 2>/dev/null || true
done
for rows in 480 960; do
  perf stat -x, -e "$group:*" -o "$out/$rows.csv" "$bin" train --backend tch \
    --max-train-samples "$rows" --valid "$out/dev.tsv" --no-tui --output "$out/run$rows" >/dev/null
done
python3 - "$out" <<'EOF'
import csv, os, sys
def counts(path):
    found = {}
    for row in csv.reader(open(path)):
        if len(row) > 3 and row[0].strip().isdigit():
            name = row[2].split(":")[-1]
            found[name] = found.get(name, 0) + int(row[0])
    return found
short, long = counts(f"{sys.argv[1]}/480.csv"), counts(f"{sys.argv[1]}/960.csv")
step = {k: (long.get(k, 0) - short.get(k, 0)) / 15 for k in set(short) | set(long)}
# Calls that make a view, change metadata or allocate: no kernel launch on a GPU.
views = {"atg_reshape", "atg_view", "atg_as_strided", "atg_transpose", "atg_narrow", "atg_slice",
         "atg_detach", "atg_set_requires_grad", "atg_broadcast_to", "atg_expand", "atg_permute",
         "atg_unsqueeze", "atg_squeeze", "atg_empty", "atg_select"}
print(f"libtorch calls a training step: {sum(step.values()):.0f}, "
      f"of which not views (kernel launches on a GPU): {sum(n for k, n in step.items() if k not in views):.0f}")
for name, n in sorted(step.items(), key=lambda kv: -kv[1])[:int(os.environ.get("TOP", 15))]:
    print(f"  {n:7.0f}  {name}")
EOF
