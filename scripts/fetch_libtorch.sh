#!/usr/bin/env bash
# Puts a CPU libtorch 2.9.0 (the version burn-tch 0.22.1 expects) in a folder, from PyPI only:
# the `torch==2.9.0` wheel's headers and CPU libraries, plus the two small CUDA runtime libraries
# its libtorch_cpu.so links to (nvidia-cuda-runtime-cu12, nvidia-cuda-cupti-cu12). The CUDA
# libraries of the wheel are left out, so burn-tch builds for CPU only.
#
#   scripts/fetch_libtorch.sh [DIR]        (default: $HOME/.cache/burnbert-libtorch-2.9.0)
#   export LIBTORCH=DIR LD_LIBRARY_PATH=DIR/lib
#
# Prints DIR on its last line. Does nothing when DIR already holds it.
set -euo pipefail

dir="${1:-$HOME/.cache/burnbert-libtorch-2.9.0}"
if [ -f "$dir/.complete" ]; then
  echo "$dir"
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d "$work" \
  torch==2.9.0 nvidia-cuda-runtime-cu12==12.8.90 nvidia-cuda-cupti-cu12==12.8.90 >&2

# Unzip only what building and running need (about 1 GB of the 2 GB wheel).
python3 - "$work" <<'EOF'
import glob, os, sys, zipfile
work = sys.argv[1]
out = os.path.join(work, "libtorch")
keep_lib = ("libc10.so", "libtorch.so", "libtorch_cpu.so", "libgomp.so.1", "libshm.so")
for wheel in glob.glob(os.path.join(work, "*.whl")):
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            base = os.path.basename(name)
            if not base:
                continue
            if name.startswith(("torch/include/", "torch/share/")):
                target = os.path.join(out, name[len("torch/"):])
            elif name.startswith("torch/lib/") and base in keep_lib:
                target = os.path.join(out, "lib", base)
            elif name.startswith("nvidia/") and "/lib/" in name and base.startswith(("libcudart.so", "libcupti.so")):
                target = os.path.join(out, "lib", base)
            else:
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with z.open(name) as src, open(target, "wb") as dst:
                dst.write(src.read())
EOF

mkdir -p "$(dirname "$dir")"
rm -rf "$dir"
mv "$work/libtorch" "$dir"
touch "$dir/.complete"
echo "$dir"
