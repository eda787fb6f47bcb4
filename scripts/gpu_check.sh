#!/usr/bin/env bash
# One GPU session's checks (<= 10 minutes on one H100/H200: the step timeouts add up to 555 s;
# a failed step does not stop the later ones). Run from the repository root (benchmarks/ is not
# installed; `python -m benchmarks...` finds it there):
#
#     OUT=/some/dir bash scripts/gpu_check.sh        # results: $OUT/*.json, $OUT/*.log (7 files)
#
# 1. env: torch/CUDA/GPU, and which of the needed packages the box has
# 2. tests: the files with CUDA branches (the `device` fixtures run every check on cuda too):
#    the optimised path vs the reference path, the benchmark's trainer vs the training run's
#    (tests/test_step.py), the search and the model; -m "not slow"
# 3. bench: python -m benchmarks.train_step --device cuda --preset gpu --packed 4: the reference
#    path vs the study config for every size, 4 packed trials at 160 px, the targets table
# 4. ablation: one change at a time at 160 px batch 8, ending with torch.compile
# 5. loader: the training loader's samples/s (the whole-epoch target includes loading)
#
# Needs PyTorch, torchvision, numpy, Pillow, PyYAML, tqdm and pydantic (TrainConfig), plus
# pytest and scikit-image for the tests and pyarrow for the loader; no Ray, no MLflow. A box
# without pydantic (or another of them): WHEELS=DIR installs the wheels in DIR (pydantic,
# pydantic-core, annotated-types, typing-inspection for Python 3.12) into a temporary
# site-packages first, without the network.
set -uo pipefail
OUT="${OUT:-gpu_check_out}"
mkdir -p "$OUT"
PY="${PYTHON:-python}"
export PYTHONPATH="${PWD}${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
START=$(date +%s)
status=0

if [ -n "${WHEELS:-}" ]; then
    SITE="$(mktemp -d)/site"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$WHEELS"/*.whl \
        && export PYTHONPATH="$SITE:$PYTHONPATH"
fi

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

step env 30 "$PY" - <<'PYEOF'
import importlib.util, platform, torch
print("python", platform.python_version(), "| torch", torch.__version__, "| cuda", torch.version.cuda)
print("gpu:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NONE")
needed = ("torchvision", "numpy", "PIL", "yaml", "tqdm", "pydantic")
optional = ("pytest", "skimage", "pyarrow", "ray", "mlflow")
for m in needed + optional:
    print(f"  {m:12s}", "yes" if importlib.util.find_spec(m) else "no")
missing = [m for m in needed if importlib.util.find_spec(m) is None]
assert torch.cuda.is_available(), "no CUDA device"
assert not missing, f"missing {missing}: install them or pass WHEELS=DIR (see the header)"
PYEOF
if [ "$status" -ne 0 ]; then
    echo "no usable CUDA device or a needed package is missing: nothing else to check"
    exit 1
fi

if "$PY" -c "import pytest, skimage, PIL, pyarrow" 2>/dev/null; then
    step tests 120 "$PY" -m pytest -q -x -m "not slow" -p no:cacheprovider \
        tests/test_optimized_paths.py tests/test_step.py tests/test_search.py tests/test_model.py
else
    echo "=== tests skipped: pytest / scikit-image / Pillow / pyarrow not installed ==="
fi

step bench 210 "$PY" -m benchmarks.train_step --device cuda --preset gpu --packed 4 \
    --json "$OUT/bench.json"

step ablation 150 "$PY" -m benchmarks.train_step --device cuda --preset gpu --cases rec-160-b8 \
    --no-compare --ablate --compile --json "$OUT/ablation.json"

if "$PY" -c "import PIL, skimage, pyarrow" 2>/dev/null; then
    step loader 45 "$PY" -m benchmarks.loader --sizes 160 --workers 0 4 8 --seconds 4
else
    echo "=== loader bench skipped: Pillow / scikit-image / pyarrow not installed ==="
fi

echo
echo "=== done in $(( $(date +%s) - START ))s; results in $OUT (status $status) ==="
exit $status
