#!/usr/bin/env bash
# The GPU figures in one call: the CUDA tests, training throughput (with the profiler's table) and
# sampling / likelihood throughput against the CPU in the same run. From the repository root of a
# machine with CUDA:   OUT=gpu_out bash benchmarks/gpu.sh
# Each part has its own time limit, so that one slow part still leaves the others' results;
# PARTS picks some of them (default: "tests training throughput").
set -u
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  $PY -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda)"; } 2>&1 | tee "$OUT/device.txt"
PARTS=${PARTS:-tests training throughput}
[[ $PARTS == *tests* ]] && timeout "${TEST_LIMIT:-150}" $PY -m pytest -m gpu -q -p no:cacheprovider tests/test_nn.py tests/test_training.py \
    tests/test_sampling.py tests/test_estimators.py tests/test_tabular_estimator.py 2>&1 | tee "$OUT/pytest_gpu.txt"
[[ $PARTS == *training* ]] && timeout "${TRAIN_LIMIT:-150}" $PY benchmarks/training.py --device cuda --profile ${TRAIN_ARGS:-} 2>&1 | tee "$OUT/training.txt"
[[ $PARTS == *throughput* ]] && timeout "${THROUGHPUT_LIMIT:-250}" $PY benchmarks/throughput.py --devices cpu,cuda --cpu-sample-rows 5000 \
    --cpu-score-rows 200 --train-steps 200 --tabular cuda --tabular-nets "${TABULAR_NETS:-256x3x0,128x4x16}" \
    2>&1 | tee "$OUT/throughput.txt"
true
