#!/usr/bin/env bash
# The GPU rows, in one short run on a lent CUDA machine (the workplace's `device` tool; nothing else needs a GPU):
# the CUDA test of to_semi_structured, the 2:4 speed benchmark, and latency targeting (latency_target.py part A)
# with the models, profiles and timings on the GPU. Run from the repository root with the project's dependencies
# importable (torch-pruning from wheels in .whl/ when the machine has no index); results land in
# benchmarks/results/ and, when $OUT is set, are copied there. Each step has its own time limit so one slow step
# cannot take the others' results with it; the steps' limits add up to under 9 minutes.
set -u
cd "$(dirname "$0")/.."
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
export SECATEURS_CACHE="${SECATEURS_CACHE:-/tmp/secateurs-cache}"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader || true
python3 -c "import torch, torch_pruning; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0), 'torch_pruning', torch_pruning.__version__)"
timeout 60 python3 -m pytest -q -p no:cacheprovider tests/unit/test_semi_structured.py -rs
timeout 90 python3 benchmarks/semi_structured_speed.py --stem semi_structured_speed_cuda
timeout 330 python3 benchmarks/latency_target.py --part A --device cuda --batches 1 64 --threads 1 \
  --stem latency_target_a_cuda
timeout 120 python3 benchmarks/latency_target.py --part A --device cuda --batches 256 --threads 1 \
  --models-a resnet56 mobilenetv2 --stem latency_target_a_cuda_b256
if [ -n "${OUT:-}" ]; then
  cp benchmarks/results/semi_structured_speed_cuda.* benchmarks/results/latency_target_a_cuda*.* "$OUT"/ 2>/dev/null
fi
exit 0
