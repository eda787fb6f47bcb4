#!/usr/bin/env bash
# One GPU session's checks, <= 10 minutes on one H100/H200: the step timeouts add up to 470 s
# (the steps' own budget: 8 minutes); a failed or timed-out step does not stop the later ones,
# and every benchmark writes its JSON as it goes, so a step cut short keeps what it measured.
# Run from the repository root (the GPU machine runs the checkout, not an install; `python -m
# benchmarks...` finds it there):
#
#     OUT=/some/dir bash scripts/gpu_check.sh        # results: $OUT/*.json, *.log, summary.md
#     OUT=/some/dir bash scripts/gpu_check.sh --rehearse
#
# --rehearse runs every step on this CPU machine, in <= 5 minutes: tiny cases (the quick
# benchmark preset, a 32-px training run), the kernel in Triton's interpreter, the CUDA tests
# listed as not run (pytest -rs), and Python sees only what the GPU machine holds: Ray, MLflow
# and Optuna cannot be imported, pydantic only from the carried wheels (WHEELS; prepared for
# this Python by scripts/gpu_wheels.sh when not given). CI runs it (tests/test_gpu_check.py).
#
#  1. env        torch/CUDA/GPU, the packages, nvidia-cuda-mps-control
#  2. tests      the CUDA tests, slow ones included: fused search (1024 px, beyond int32
#                offsets), the fast paths' self-test with compile (compiled vs eager loss), the
#                benchmark's trainer vs the training run's, all losses in bf16 with the gradient
#                penalty (tests/test_step.py), optimised vs reference path, the model
#  3. train      `python -m ttsr.train` on the built-in sample set (paired PNGs): the self-test,
#                validation, checkpoint, sample grids; then resumed for a second epoch from the
#                checkpoint (fused-Adam state)
#  4. bench      the gpu preset's reference path vs study config at 160 (rec b8, all b9, infer
#                b8), 512 b8 and 1024 b8, and 512 / 1024 b8 with checkpoint_activations; the
#                targets table (bench.json). Not here, for time: rec-256/384-b8, rec-1024-b1
#                (`--cases` of the gpu preset)
#  5. packed     1, 2, 4 concurrent 160-px trials, aggregate img/s (packed.json)
#  6. packed-mps the same under the CUDA MPS daemon (scripts/mps.sh), if it can be started
#  7. ablation   rec-160-b8 from the reference path to the default one change at a time, then
#                chunked search, bf16 search, checkpoint_activations each alone (ablation.json)
#  8. compile    rec-160-b8 default vs + torch.compile in a fresh process, cold (an empty
#                inductor cache: warm-up seconds = the compile cost of a trial) (compile.json)
#  9. search     benchmarks/search_bench.py: dense / chunked / fused at 160x8, 512x8, 1024x1
# 10. loader     the training loader's samples/s with 0 / 4 / 8 workers (built-in sample set)
# 11. summary    $OUT/summary.md: the tables of docs/BENCHMARKS.md "GPU figures", filled in
#
# Needs PyTorch (with Triton, as the CUDA wheels ship it), numpy, Pillow, PyYAML, tqdm and
# pydantic (TrainConfig), plus pytest and scikit-image for the tests and pyarrow for the loader;
# no Ray, no MLflow. A box without pydantic (or another of them): WHEELS=DIR installs the wheels
# in DIR (scripts/gpu_wheels.sh prepares them) into a temporary site-packages first, without
# the network.
set -uo pipefail
REHEARSE=0
case "${1:-}" in
    --rehearse) REHEARSE=1 ;;
    "") ;;
    *) echo "usage: [OUT=DIR] [WHEELS=DIR] bash scripts/gpu_check.sh [--rehearse]" >&2; exit 2 ;;
esac
OUT="${OUT:-gpu_check_out}"
mkdir -p "$OUT"
PY="${PYTHON:-python}"
WORK="$(mktemp -d)"
export PYTHONPATH="${PWD}${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export TORCHINDUCTOR_CACHE_DIR="$WORK/inductor"  # empty: the compile step's compile is cold
unset MLFLOW_TRACKING_URI  # the training step tracks nothing
START=$(date +%s)
status=0

if [ "$REHEARSE" = 1 ] && [ -z "${WHEELS:-}" ]; then
    version=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    WHEELS=".gpu_wheels/py${version/./}"
    ls "$WHEELS"/pydantic_core-*.whl >/dev/null 2>&1 \
        || PYTHON="$PY" bash scripts/gpu_wheels.sh "$version" || exit 1
fi
if [ -n "${WHEELS:-}" ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$WORK/site" "$WHEELS"/*.whl \
        && export PYTHONPATH="$WORK/site:$PYTHONPATH"
fi

# What differs between the check and its rehearsal: the device and the sizes.
if [ "$REHEARSE" = 1 ]; then
    # This interpreter and its children see only what the GPU machine holds.
    mkdir -p "$WORK/gpu-machine"
    cat > "$WORK/gpu-machine/sitecustomize.py" <<'PYEOF'
"""gpu_check.sh --rehearse: no Ray, MLflow or Optuna; pydantic only from the carried wheels."""
import os
import sys
from importlib.abc import MetaPathFinder
from importlib.machinery import PathFinder

ABSENT = {"ray", "mlflow", "optuna"}
CARRIED = {"pydantic", "pydantic_core", "annotated_types", "typing_inspection"}


class GpuMachine(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in ABSENT or (top in CARRIED and name == top):
            spec = None if top in ABSENT else PathFinder.find_spec(name, [os.environ["GPU_SITE"]])
            if spec is None:
                raise ModuleNotFoundError(f"No module named {name!r} (not on the GPU machine)",
                                          name=name)
            return spec
        return None


sys.meta_path.insert(0, GpuMachine())
PYEOF
    export GPU_SITE="$WORK/site" PYTHONPATH="$WORK/gpu-machine:$PYTHONPATH"
    # torch.compile without inductor's code generation, which takes minutes on 2 CPU cores.
    export TTSR_COMPILE_BACKEND=aot_eager
    SCALE=2  # step timeouts x2: the GPU's budgets, on a shared 2-core CPU
    BENCH=("$PY" -m benchmarks.train_step --device cpu --preset quick --isolate none)
    BENCH_CASES=rec-32-b2,all-32-b2
    ONE_CASE=rec-32-b2
    FEW=(--warmup 1 --steps 1 --isolate none)
    PACK_COUNTS=(--packed 1,2)  # 4 processes on 2 cores: minutes
    TEST_SELECTION="cuda"  # every CUDA test, each listed as skipped (not run) by -rs
    TRAIN=(--device cpu --size 32 --n-feats 8 --num-res-blocks 1+1+1+1 --fraction 0.03
           --batch-size 2 --val-limit 1)
    SEARCH=(--device cpu --cases 32x1 --warmup 0 --repeat 1)
    LOADER=(--sizes 32 --workers 0 1 --seconds 1)
else
    SCALE=1
    BENCH=("$PY" -m benchmarks.train_step --device cuda --preset gpu)
    BENCH_CASES=rec-160-b8,all-160-b9,infer-160-b8,rec-512-b8,rec-512-b8-ckpt,rec-1024-b8,rec-1024-b8-ckpt
    ONE_CASE=rec-160-b8
    FEW=()
    PACK_COUNTS=()
    TEST_SELECTION="cuda or fused"
    TRAIN=(--device cuda --size 160 --fraction 0.25 --batch-size 8 --val-limit 4)
    SEARCH=(--device cuda --tf32 --warmup 1 --repeat 3)
    LOADER=(--sizes 160 --workers 0 4 8 --seconds 2)
fi

step() {  # step NAME TIMEOUT_S COMMAND...
    local name=$1 limit=$2
    shift 2
    echo
    echo "=== $name (timeout ${limit}s, $(( $(date +%s) - START ))s elapsed) ==="
    timeout "$(( limit * SCALE ))" "$@" 2>&1 | tee "$OUT/$name.log"
    local rc=${PIPESTATUS[0]}
    if [ "$rc" -ne 0 ]; then
        echo "!!! $name failed (rc $rc)"
        status=1
    fi
}

step env 30 env REHEARSE="$REHEARSE" "$PY" - <<'PYEOF'
import importlib.util, os, platform, shutil, torch
print("python", platform.python_version(), "| torch", torch.__version__, "| cuda", torch.version.cuda)
print("gpu:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NONE")
print("cpus:", len(os.sched_getaffinity(0)), "| OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS"))
print("nvidia-cuda-mps-control:", shutil.which("nvidia-cuda-mps-control") or "not found")


def present(module):
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


needed = ("numpy", "PIL", "yaml", "tqdm", "pydantic", "triton")
optional = ("pytest", "skimage", "pyarrow", "ray", "mlflow", "optuna")
for m in needed + optional:
    print(f"  {m:12s}", "yes" if present(m) else "no")
missing = [m for m in needed if not present(m)]
if os.environ["REHEARSE"] == "1":
    print("rehearsal: on the CPU, as the GPU machine's Python would see its packages")
    assert not any(present(m) for m in ("ray", "mlflow", "optuna")), "Ray/MLflow/Optuna visible"
else:
    assert torch.cuda.is_available(), "no CUDA device"
assert not missing, f"missing {missing}: install them or pass WHEELS=DIR (see the header)"
PYEOF
if [ "$status" -ne 0 ]; then
    echo "no usable CUDA device (or a rehearsal sees Ray/MLflow/Optuna) or a needed package is"
    echo "missing: nothing else to check"
    exit 1
fi

if "$PY" -c "import pytest, skimage, PIL, pyarrow" 2>/dev/null; then
    # As the GPU machine runs them: without pytest-xdist or pytest-timeout (its image has
    # neither; the rehearsal's interpreter has both), so no plugins and none of our addopts.
    step tests 90 env PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 \
        "$PY" -m pytest -o addopts= -q -rs -p no:cacheprovider -k "$TEST_SELECTION" \
        tests/test_fused_search.py tests/test_fast_paths.py tests/test_step.py \
        tests/test_optimized_paths.py tests/test_model.py
else
    echo "=== tests skipped: pytest / scikit-image / Pillow / pyarrow not installed ==="
fi

TRAIN+=(--epochs 1 --sample-every 1 --no-progress --out "$OUT/train")
step train 60 "$PY" -m ttsr.train "${TRAIN[@]}"
step resume 40 "$PY" -m ttsr.train "${TRAIN[@]}" --epochs 2 --resume "$OUT/train/checkpoints/latest"

step bench 90 "${BENCH[@]}" --json "$OUT/bench.json" --cases "$BENCH_CASES" "${FEW[@]}"

PACKED=("${BENCH[@]}" --cases "$ONE_CASE" --no-compare --packed 1,2,4 --warmup 3 --steps 10)
step packed 30 "${PACKED[@]}" "${FEW[@]}" "${PACK_COUNTS[@]}" --json "$OUT/packed.json"

# The MPS daemon for the next step only; the trap stops it whatever happens.
export CUDA_MPS_PIPE_DIRECTORY="$WORK/mps/pipe" CUDA_MPS_LOG_DIRECTORY="$WORK/mps/log"
if bash scripts/mps.sh start; then
    trap 'bash scripts/mps.sh stop' EXIT
    step packed-mps 30 "${PACKED[@]}" "${FEW[@]}" "${PACK_COUNTS[@]}" --json "$OUT/packed-mps.json"
    bash scripts/mps.sh stop && trap - EXIT
    cp -r "$CUDA_MPS_LOG_DIRECTORY" "$OUT/mps-log" 2>/dev/null
else
    echo "=== packed-mps skipped: the MPS control daemon could not be started ==="
fi
unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY

step ablation 30 "${BENCH[@]}" --cases "$ONE_CASE" --no-compare --ablate --warmup 2 --steps 8 \
    --options chunked-search,bf16-search,checkpoint "${FEW[@]}" --json "$OUT/ablation.json"

step compile 40 "${BENCH[@]}" --cases "$ONE_CASE" --no-compare --options compile \
    --isolate process --warmup 3 --steps 10 "${FEW[@]}" --json "$OUT/compile.json"

step search 15 "$PY" benchmarks/search_bench.py "${SEARCH[@]}" --json "$OUT/search.json"

if "$PY" -c "import PIL, skimage, pyarrow" 2>/dev/null; then
    step loader 15 "$PY" -m benchmarks.loader "${LOADER[@]}"
else
    echo "=== loader bench skipped: Pillow / scikit-image / pyarrow not installed ==="
fi

"$PY" -m benchmarks.summary "$OUT" > "$OUT/summary.md" 2> "$OUT/summary.log" \
    && echo && cat "$OUT/summary.md"

echo
echo "=== done in $(( $(date +%s) - START ))s; results in $OUT (status $status) ==="
exit $status
