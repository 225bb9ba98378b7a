#!/usr/bin/env bash
# The GPU checks of a lent CUDA machine, as one run (issue 11 item 10): the tiny-model suite on CUDA in fp16 and
# in bf16, then 50 FBDD steps with EMA and mixed precision plus 50 HFA steps (benchmarks/smoke_train_gpu.py) in
# bf16 and in fp16. Prints the device and every figure; logs go to $OUT (or ./gpu-checks) when set.
#
#   bash benchmarks/gpu_checks.sh            # in the repository root, python3 holding torch with CUDA
#
# Packages the machine lacks can come as wheels in .whl/ (installed into /tmp/site first).
set -uo pipefail
out=${OUT:-gpu-checks}
mkdir -p "$out"
py=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/protocol:$PWD/backend:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$py" - <<'PY' | tee "$out/device.txt"
import torch, diffusers, transformers
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, diffusers {diffusers.__version__}, "
      f"transformers {transformers.__version__}")
print("device:", torch.cuda.get_device_name() if torch.cuda.is_available() else "NO CUDA")
PY
status=0
extra=(-rfE --tb=short)  # plus a per-test limit and workers where the plugins are there: a hung test must not eat the run
"$py" -c "import pytest_timeout" 2>/dev/null && extra+=(--timeout 100)
"$py" -c "import xdist" 2>/dev/null && extra+=(-n "${WORKERS:-4}")
"$py" -m layeringdiff prepare >/dev/null 2>&1  # numba kernels compiled once, not by both suites at the same time
set -m  # background jobs keep SIGINT (a script ignores it in them otherwise)
for dtype in fp16 bf16; do  # both at once: a GPU machine has the cores; SIGINT at the limit still prints failures
  LAYERINGDIFF_TEST_DEVICE=cuda LAYERINGDIFF_TEST_DTYPE=$dtype timeout -s INT -k 20 "${SUITE_S:-300}" "$py" -m pytest \
    -q -p no:cacheprovider --durations=5 "${extra[@]}" tests/models >"$out/suite-$dtype.log" 2>&1 &
done
wait
for dtype in fp16 bf16; do
  echo "== tiny-model suite on cuda/$dtype"
  grep -v -e Warning -e warner -e "bringing up" "$out/suite-$dtype.log" | tail -40
  grep -q " passed" "$out/suite-$dtype.log" && ! grep -q -E "[0-9]+ (failed|error)" "$out/suite-$dtype.log" || status=1
done
[ "${TRAIN:-1}" = 1 ] || exit $status
for precision in bf16 fp16; do
  echo "== smoke_train_gpu.py --precision $precision (50 steps, EMA 0.999)"
  timeout "${TRAIN_S:-150}" "$py" benchmarks/smoke_train_gpu.py --steps 50 --ema 0.999 --precision "$precision" \
    2>&1 | tee "$out/train-$precision.log" | grep -v Warning | tail -6
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
done
exit $status
