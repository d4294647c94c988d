#!/usr/bin/env bash
# KDTalker fast paths on one GPU (issue #19): equality first, then every variant timed on the same inputs.
#
#   bash scripts/gpu_kdtalker_speed.sh            # about 5 minutes on an H100/H200 (torch.compile included)
#
# Needs, in the ignored folder $KDBENCH_DEVDATA (default .devdata/, carried to the device machine):
#   crop.npz  written here by `python benchmarks/kdtalker_fps.py --random-weights --save-source-crop crop.npz`
#             (dlib crop + the reference image + the decoded driving audio: no dlib, PyAV or Pillow needed there)
#   norm.npz  KDTalker's normalisation statistics (shared/data/kdtalker/norm.npz)
# Random weights in the official formats (timings do not depend on the values). Writes $OUT/kdtalker_fps.txt and
# $OUT/kdtalker_fast_tests.txt when $OUT is set.
set -u
cd "$(dirname "$0")/.."
DATA=${KDBENCH_DEVDATA:-.devdata}
OUTDIR=${OUT:-/tmp/kdtalker-speed}
mkdir -p "$OUTDIR"
export KDBENCH_OFFLINE=1 KDBENCH_HOME=${TMPDIR:-/tmp}/kdbench-speed-home
PY=${PYTHON:-python3}
for f in "$DATA/crop.npz" "$DATA/norm.npz"; do
  [ -f "$f" ] || { echo "missing $f (see the header of $0)"; exit 2; }
done
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total,clocks.sm --format=csv
$PY -c "import torch; print('torch', torch.__version__, torch.version.cuda, torch.cuda.get_device_name())"

# 1. equality on the GPU: graph replay = eager motion (bit for bit), device uint8 = plain frames (bit for bit),
#    channels-last within one grey level (about 40 s)
KDBENCH_GPU_TESTS=1 timeout 120 $PY -m pytest -q -rs -s -k gpu tests/test_kdtalker_fast.py 2>&1 \
  | tee "$OUTDIR/kdtalker_fast_tests.txt" | tail -8

# 2. speed and frame differences of each variant against plain, one process, same inputs (about 3.5 minutes,
#    torch.compile last; --budget-s skips what would not fit). `exact` = CUDA-graph diffusion + device uint8.
timeout 300 $PY benchmarks/kdtalker_fps.py --device cuda --random-weights --source-crop "$DATA/crop.npz" \
  --norm "$DATA/norm.npz" --steps 50 --warmup 1 --repeat 2 --budget-s 230 \
  --variants plain exact exact-b32 channels-last channels-last-b32 channels-last-b64 compile 2>&1 \
  | tee "$OUTDIR/kdtalker_fps.txt" | grep -v "^\s*$" | tail -30
