#!/usr/bin/env bash
# One GPU session's checks (<= 10 minutes on one H100/H200; each step has its own timeout and a
# failed step does not stop the later ones). Run from the repository root:
#
#     OUT=/some/dir bash scripts/gpu_check.sh        # results: $OUT/*.json, $OUT/*.log
#
# 1. environment (torch/CUDA/GPU; which optional test dependencies exist on the box)
# 2. the tests with CUDA branches (tests/test_optimized_paths.py runs every check on cuda too)
#    plus the search/model tests, if pytest and scikit-image are installed
# 3. python -m ttsr.bench --device cuda --preset gpu --packed 4: reference vs optimised for
#    every size, 4 packed trials at 160 px, and the table against the targets
# 4. the ablation at 160 px batch 8, including torch.compile
# 5. the data loader's samples/s (the whole-epoch target includes loading)
#
# Needs only PyTorch (+ torchvision, which ttsr.vgg imports): no Ray, no MLflow.
set -uo pipefail
OUT="${OUT:-gpu_check_out}"
mkdir -p "$OUT"
PY="${PYTHON:-python}"
export PYTHONPATH="${PWD}${PYTHONPATH:+:$PYTHONPATH}"
START=$(date +%s)
status=0

step() {  # step NAME TIMEOUT_S COMMAND...
    local name=$1 limit=$2
    shift 2
    echo
    echo "=== $name (timeout ${limit}s, $(( $(date +%s) - START ))s elapsed) ==="
    timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
    local rc=${PIPESTATUS[0]}
    if [ "$rc" -ne 0 ]; then
        echo "!!! $name failed (rc $rc)"
        status=1
    fi
}

step env 60 "$PY" - <<'PYEOF'
import importlib.util, platform, torch
print("python", platform.python_version(), "| torch", torch.__version__, "| cuda", torch.version.cuda)
print("gpu:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NONE")
for m in ("torchvision", "numpy", "PIL", "pytest", "skimage", "ray", "mlflow"):
    print(f"  {m:12s}", "yes" if importlib.util.find_spec(m) else "no")
assert torch.cuda.is_available(), "no CUDA device"
PYEOF
if [ "$status" -ne 0 ]; then
    echo "no usable CUDA device: nothing else to check"
    exit 1
fi

if "$PY" -c "import pytest, skimage, PIL" 2>/dev/null; then
    step tests 90 "$PY" -m pytest -q -x -m "not slow" -p no:cacheprovider \
        tests/test_optimized_paths.py tests/test_search.py tests/test_model.py
else
    echo "=== tests skipped: pytest / scikit-image / Pillow not installed on this machine ==="
fi

step bench 240 "$PY" -m ttsr.bench --device cuda --preset gpu --packed 4 --json "$OUT/bench.json"

step ablation 180 "$PY" -m ttsr.bench --device cuda --preset gpu --cases rec-160-b8 \
    --no-compare --ablate --compile --json "$OUT/ablation.json"

if "$PY" -c "import PIL, skimage, pyarrow" 2>/dev/null; then
    step loader 30 "$PY" -m ttsr.data bench --sizes 160 --workers 0 4 8 --seconds 4
else
    echo "=== loader bench skipped: Pillow / scikit-image / pyarrow not installed ==="
fi

echo
echo "=== done in $(( $(date +%s) - START ))s; results in $OUT (status $status) ==="
exit $status
