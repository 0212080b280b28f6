#!/usr/bin/env bash
# The point-cloud table at the papers' protocol on one GPU, in one call of at most about 8 minutes:
#   OUT=gpu_out bash benchmarks/points_gpu.sh        (from the repository root of a CUDA machine)
# Writes $OUT/points_gpu.txt (and $OUT/points_gpu_device.txt).
#
# benchmarks/points.py --protocol papers: ProcShapes airplane and chair, 2048 points per cloud
# (training and evaluation), 500 training and 48 test clouds per class, seeds 0..2, both
# architectures at hidden 128 / depth 4, 2000 steps of 32 clouds each; CD on all 2048 points
# (dense float64 on the GPU), exact EMD on 256 of them (a pool of CPU processes, overlapping the
# next seed's training). Needs torch with CUDA, numpy, scipy and scikit-learn only (no trimesh, no
# POT). The latent architecture runs first (it is the faster), and after each architecture of each
# seed the tables so far are printed ("Progress"), so that a run cut short still leaves results.
# No new seed starts once TIME_BUDGET seconds would be exceeded (the last table is then printed
# with the seeds done); `timeout` sends SIGTERM at LIMIT seconds, on which the script prints the
# tables of what has finished and exits; SIGKILL follows 20 s later. Expected: 5.5 to 7.5 min in all
# (the GPU timings are estimates: this script has not run on a GPU before).
set -u
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
PY=${PYTHON:-python3}
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  $PY -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.is_available())"; } \
  2>&1 | tee "$OUT/points_gpu_device.txt"
timeout -k 20 "${LIMIT:-420}" $PY benchmarks/points.py --protocol papers --device cuda \
    --architectures "${ARCHS:-latent,transformer}" --time-budget "${TIME_BUDGET:-330}" \
    --workers "${WORKERS:-14}" ${POINTS_ARGS:-} \
    2>&1 | tee "$OUT/points_gpu.txt"
echo "exit status ${PIPESTATUS[0]} (124: stopped by the time limit, the tables above hold the finished parts)" \
  | tee -a "$OUT/points_gpu.txt"
true
