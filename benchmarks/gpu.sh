#!/usr/bin/env bash
# The GPU rows, in one short run on a lent CUDA machine (the workplace's `device` tool; nothing else needs a GPU):
# the CUDA tests, latency targeting (latency_target.py part A) with the models, profiles and timings on the GPU,
# and the 2:4 speed benchmark. Run from the repository root with the project's dependencies importable
# (torch-pruning from wheels in .whl/ when the machine has no index). Results land in benchmarks/results/; when
# $OUT is set they are also packed into $OUT/gpu_results.tgz after every step, so a step cut off by its time limit
# (or the whole run cut off) still leaves the earlier steps' results. The steps' limits add up to 7 minutes.
set -u
cd "$(dirname "$0")/.."
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
export SECATEURS_CACHE="${SECATEURS_CACHE:-/tmp/secateurs-cache}"
STEMS=()
pack() {
  [ -n "${OUT:-}" ] || return 0
  local files=()
  for s in "${STEMS[@]}"; do files+=(benchmarks/results/"$s".json benchmarks/results/"$s".md); done
  tar czf "$OUT"/gpu_results.tgz --ignore-failed-read "${files[@]}" 2>/dev/null || true
}
step() {  # step SECONDS STEM COMMAND...: run with a time limit, then pack what exists so far
  local limit=$1 stem=$2; shift 2
  [ "$stem" = - ] || STEMS+=("$stem")
  echo "== $(date +%T) $* (limit ${limit} s)"
  timeout "$limit" "$@" || echo "== exit status $?"
  pack
}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader || true
python3 -c "import torch, torch_pruning; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0), 'torch_pruning', torch_pruning.__version__)"
step 40 - python3 -m pytest -q -p no:cacheprovider tests/unit/test_cuda.py tests/unit/test_semi_structured.py -rs
# 2:4 first: its later code (20 ms blocks, failure fallback, whole-model check) has not run on a GPU
step 60 semi_structured_speed_cuda python3 benchmarks/semi_structured_speed.py --budget-s 0.5 \
  --batches 1 64 1024 8192 --stem semi_structured_speed_cuda
# Latency targets where a GPU is not launch-bound. At 32x32, batches 1 / 64 / 256, no width moved VGG-16's or
# MobileNetV2's latency and ResNet-56's by at most 13.5 % (latency_target_a_cuda*.md, ac9d848), so every target was
# refused; those rows are not rerun. Large batches of the 32x32 models and torchvision's at 224^2 in float16 (the
# GPU's usual dtype) and float32.
step 120 latency_target_a_cuda_b2048 python3 benchmarks/latency_target.py --part A --device cuda --batches 2048 \
  --threads 1 --models-a vgg16 resnet56 --dtype float16 --stem latency_target_a_cuda_b2048
step 200 latency_target_a_cuda_tv python3 benchmarks/latency_target.py --part A --device cuda --batches 32 \
  --threads 1 --models-a tv:resnet50 tv:mobilenet_v2 --stem latency_target_a_cuda_tv
exit 0
