#!/usr/bin/env bash
# One prepared GPU check, in one call, under 8 minutes on one H100/H200-class GPU. It prints a
# markdown table for BENCHMARKS.md:
#   1. the suite's CUDA-only tests (bf16 autocast, channels_last, attribution on the GPU);
#   2. `netviz train --config configs/mnist-fast.toml` on the GPU (the whole split on the device):
#      the time to 99 % from summary.json;
#   3. integrated gradients, Grad-CAM and Score-CAM on a ResNet-50 at 224 x 224, batch 256, beside
#      Captum and grad-cam on the same GPU (scripts/bench_gpu.py);
#   4. `netviz report --all` of the trained run.
# `--cpu` runs the same steps on the CPU at a small size (CI runs it: the script has no typo).
#
#   NETVIZ_DATA=../shared/data bash scripts/gpu_check.sh [--cpu]
set -uo pipefail
cd "$(dirname "$0")/.."

mode=gpu
if [ "${1:-}" = "--cpu" ]; then mode=cpu; fi
export NETVIZ_DATA="${NETVIZ_DATA:-$(cd .. && pwd)/shared/data}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
rows=()

# run NAME COMMAND...: time it, keep its output, add a row with its last line
run() {
    local name="$1"; shift
    local start end status
    start=$(date +%s.%N)
    if "$@" >"$work/$name.log" 2>&1; then status=ok; else status="FAILED ($?)"; fi
    end=$(date +%s.%N)
    local secs; secs=$(python3 -c "print(f'{$end - $start:.1f}')")
    local last; last=$(grep -v '^\s*$' "$work/$name.log" | tail -n 1 | cut -c1-160 | tr '|' '/')
    rows+=("| $name | $status | $secs s | $last |")
    if [ "$status" != ok ]; then tail -n 20 "$work/$name.log" >&2; fi
}

if [ "$mode" = gpu ]; then
    device=cuda
    python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'" || exit 2
    name=$(python -c "import torch; print(torch.cuda.get_device_name(0))")
    if ls "$NETVIZ_DATA"/MNIST/raw/train-images-idx3-ubyte* >/dev/null 2>&1; then
        splits=()
    else
        splits=(--train-split 'test[:8000]' --eval-split 'test[8000:]' --epochs 3)  # no train split here
    fi
    bench=(--device cuda --model resnet50 --size 224 --images 256 --scorecam-images 8 --batch 256 --repeats 3)
else
    device=cpu
    name="CPU ($(nproc) cores)"
    splits=(--train-split 'test[:2000]' --eval-split 'test[2000:3000]')
    bench=(--device cpu --model resnet18 --size 64 --images 2 --scorecam-images 1 --batch 8 --repeats 1)
fi

run "CUDA-only tests" python -m pytest -q -m cuda tests/test_cuda.py
run "train mnist-fast" netviz train --config configs/mnist-fast.toml "${splits[@]}" --device "$device" \
    --runs-dir "$work/runs" --name fast --seed 1 --quiet
to99=$(python -c "
import json, sys
s = json.load(open('$work/runs/fast/summary.json'))
m = s['milestones'].get('0.99')
print(f\"99 % after {m['seconds']:.1f} s\" if m else f\"best {s['best_eval_acc']:.4f} after {s['seconds']:.1f} s (no 99 %)\")
" 2>/dev/null || echo "no summary")
rows+=("| mnist-fast: time to 99 % | | | $to99 |")
run "attribution vs peers" python scripts/bench_gpu.py "${bench[@]}"
run "report --all" netviz report "$work/runs/fast" --all --device "$device" --quiet

echo
echo "## gpu_check.sh ($mode): $name, $(date -u +%Y-%m-%d)"
echo
echo "| check | status | seconds | result |"
echo "|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "bench_gpu.py:"
echo
grep '^|' "$work/attribution vs peers.log" || true
failed=$(printf '%s\n' "${rows[@]}" | grep -c FAILED || true)
exit $(( failed > 0 ? 1 : 0 ))
