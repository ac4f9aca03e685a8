#!/bin/bash
# How much disk a torch-free install takes, against installs with torch, and that the
# torch-free one translates an exported model:
#
#   bash benchmarks/install_size.sh EXPORTED_DIR [WORK_DIR]
#
# Builds three virtualenvs under WORK_DIR (default benchmarks/results/install-size):
#   runtime  rnnseq without its dependencies, then numpy, pyyaml, sentencepiece, onnxruntime
#   torch    the same runtime path with torch (CPU build) and safetensors instead of onnxruntime
#   full     rnnseq with all its declared dependencies (training, metrics, TensorBoard)
# and prints each one's size (du of the whole virtualenv) and its largest packages.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
exported=${1:?usage: install_size.sh EXPORTED_DIR [WORK_DIR]}
work=${2:-$root/benchmarks/results/install-size}
python=${PYTHON:-python3}
rm -rf "$work" && mkdir -p "$work"
venv() { "$python" -m venv "$work/$1" && "$work/$1/bin/pip" install -q --upgrade pip; }

venv runtime
"$work/runtime/bin/pip" install -q --no-deps "$root"
"$work/runtime/bin/pip" install -q numpy pyyaml sentencepiece onnxruntime
venv torch
"$work/torch/bin/pip" install -q torch==2.13.0
"$work/torch/bin/pip" install -q --no-deps "$root"
"$work/torch/bin/pip" install -q numpy pyyaml sentencepiece safetensors
venv full
"$work/full/bin/pip" install -q torch==2.13.0
"$work/full/bin/pip" install -q "$root"

printf 'ein mann fährt fahrrad .\nzwei hunde spielen im schnee .\n' > "$work/in.txt"
"$work/runtime/bin/rnnseq" translate "$exported" -i "$work/in.txt" -o "$work/out.txt" --beam 5
if "$work/runtime/bin/python" -c "import torch" 2>/dev/null; then
    echo "the runtime virtualenv has torch: the measurement is wrong" >&2; exit 1
fi
echo "runtime virtualenv (no torch) translated:"; cat "$work/out.txt"
echo
echo "| virtualenv | size | largest packages |"
echo "| --- | ---: | --- |"
for name in runtime torch full; do
    site=$(echo "$work/$name"/lib/python3*/site-packages)
    top=$(du -sm "$site"/* | sort -rn | awk 'NR <= 3 {n=split($2,p,"/"); printf "%s %d MB, ", p[n], $1}')
    echo "| $name | $(du -sm "$work/$name" | cut -f1) MB | ${top%, } |"
done
