#!/usr/bin/env bash
# The GPU check behind the README's "On a GPU" numbers: on a CUDA machine with PyTorch, runs
#  1. benches/side_by_side.py --cuda --bf16: burnbert on tch (CUDA; f32, and mixed bf16: f32
#     master weights, bf16 products) and on wgpu (Vulkan; dynamic padding, then batches padded to
#     a multiple of 32 tokens), then Hugging Face Trainer on the same GPU in fp32 and with
#     bf16=True, on the SST-2 job of the Performance section (batch 32);
#  1b. the same for tch and the Trainer at each batch size of SWEEP (default "128 256"; small
#     models are launch-bound at 32), on SWEEP_ROWS rows (default 8000); SWEEP="" skips it;
#  1c. where a tch step's time goes (--profile-steps 40: forward, backward, optimizer), in f32 and
#     in mixed bf16;
#  2. predict on the first 256 SST-2 dev rows with the model the tch run trained, on ndarray (CPU),
#     tch (CUDA) and wgpu (GPU), in f32 and in f16/bf16 where the device computes in them, each
#     compared with transformers (fp32, CPU) on the same saved model.
#
#   BURNBERT=path/to/burnbert (built with --features wgpu,tch) benches/gpu_check.sh [OUT_DIR]
#
# ROWS (training rows of step 1, default 2000), DEV_ROWS (default 256), TCH_DEVICE and WGPU_DEVICE (default
# gpu:0) shrink or move it, e.g. for a dry run on a CPU; RUN_TIMEOUT (240) and PREDICT_TIMEOUT (120)
# bound each training and each prediction run, in seconds.
# tch needs a libtorch of the same version as the one burnbert was built against, with CUDA:
# TORCH_LIB (default: the lib folder of python3's torch) goes on LD_LIBRARY_PATH. The model comes
# from `burnbert fetch-model` (set HF_HUB_CACHE / HF_HUB_OFFLINE=1 for a local copy).
set -uo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$(mktemp -d)}"
mkdir -p "$out"
bin="${BURNBERT:?set BURNBERT to the burnbert binary}"
rows="${ROWS:-2000}" dev_rows="${DEV_ROWS:-256}" tch="${TCH_DEVICE:-gpu:0}" wgpu="${WGPU_DEVICE:-gpu:0}"
torch_lib="${TORCH_LIB:-$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')}"
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'

echo "== 1. side by side on the GPU"
python3 "$root/benches/side_by_side.py" --burnbert "$bin" --rows "$rows" --cuda --bf16 --no-random \
  --timeout "${RUN_TIMEOUT:-240}" --keep "$out/runs" \
  --extra="--backend tch --device $tch" \
  --extra="--backend tch --device $tch --mixed-precision bf16" \
  --extra="--backend wgpu --device $wgpu" \
  --extra="--backend wgpu --device $wgpu --pad-to-multiple-of 32"

for batch in ${SWEEP-128 256}; do
  echo "== 1b. batch $batch"
  python3 "$root/benches/side_by_side.py" --burnbert "$bin" --rows "${SWEEP_ROWS:-8000}" --batch-size "$batch" \
    --cuda --bf16 --no-random --timeout "${RUN_TIMEOUT:-240}" \
    --extra="--backend tch --device $tch" \
    --extra="--backend tch --device $tch --mixed-precision bf16"
done

echo "== 1c. step profile"
for precision in no bf16; do
  timeout "${RUN_TIMEOUT:-240}" "$bin" train --backend tch --device "$tch" --max-train-samples "$rows" \
    --mixed-precision "$precision" --profile-steps 40 --no-tui --log-every 100000 \
    --output "$out/profile-$precision" 2>"$out/profile-$precision.err" | grep -E "step profile|train samples/s" \
    || echo "mixed precision $precision: failed: $(tail -n 1 "$out/profile-$precision.err")"
done

echo "== 2. predictions across backends and precisions"
model="$out/runs/1"
head -n "$((dev_rows + 1))" "$root/data/glue/sst2/dev.tsv" >"$out/dev.tsv"
runs=("ndarray cpu f32" "tch $tch f32" "tch $tch bf16" "tch $tch f16" "wgpu $wgpu f32" "wgpu $wgpu f16")
for run in "${runs[@]}"; do
  read -r backend device precision <<<"$run"
  name="$backend-${device/:/}-$precision"
  start=$(date +%s%N)
  if timeout "${PREDICT_TIMEOUT:-120}" "$bin" predict --model "$model" --input "$out/dev.tsv" --output "$out/$name.jsonl" \
    --text-column sentence --backend "$backend" --device "$device" --precision "$precision" 2>"$out/$name.err"; then
    echo "$name: $(( ($(date +%s%N) - start) / 1000000 )) ms"
  else
    echo "$name: failed: $(grep -v '^\s*$' "$out/$name.err" | tail -n 1)"
  fi
done
python3 - "$model" "$out" <<'EOF'
import csv, glob, json, os, sys
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
model_dir, out = sys.argv[1:3]
with open(os.path.join(out, "dev.tsv"), encoding="utf-8") as f:
    rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32).eval()
labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
with torch.no_grad():
    probs = torch.cat([model(**tok([r[0] for r in rows[i:i + 32]], padding=True, truncation=True,
                                   max_length=512, return_tensors="pt")).logits.softmax(-1)
                       for i in range(0, len(rows), 32)])
gold = [int(r[1]) for r in rows]
print(f"transformers (CPU, fp32): accuracy {float((probs.argmax(-1) == torch.tensor(gold)).float().mean()):.4f}")
for path in sorted(glob.glob(os.path.join(out, "*-*-*.jsonl"))):
    ours = torch.tensor([[json.loads(line)["scores"][l] for l in labels] for line in open(path)])
    diff = float((ours - probs).abs().max())
    agree = float((ours.argmax(-1) == probs.argmax(-1)).float().mean())
    print(f"{os.path.basename(path)[:-6]:22} max |p - p_transformers| {diff:.2e}, same label {agree:.4f}")
EOF
