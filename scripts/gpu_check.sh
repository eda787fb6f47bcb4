#!/usr/bin/env bash
# One GPU session's checks, <= 10 minutes on one H100/H200: the step timeouts add up to 550 s
# (expected ~6 min); a failed or timed-out step does not stop the later ones, and every
# benchmark writes its JSON as it goes, so a step cut short keeps what it measured. Run from the
# repository root (benchmarks/ is not installed; `python -m benchmarks...` finds it there):
#
#     OUT=/some/dir bash scripts/gpu_check.sh        # results: $OUT/*.json, *.log, summary.md
#
#  1. env        torch/CUDA/GPU, the packages, nvidia-cuda-mps-control
#  2. tests      the CUDA branches (-m "not slow"): fused search, the benchmark's trainer vs the
#                training run's (tests/test_step.py), optimised vs reference path, the model
#                (checkpointed activations need less peak memory)
#  3. bench      the gpu preset's reference path vs study config at 160 (rec b8, all b9, infer
#                b8), 512 b8 and 1024 b8, and 512 / 1024 b8 with checkpoint_activations; the
#                targets table (bench.json). Not here, for time: rec-256/384-b8, rec-1024-b1
#                (`--cases` of the gpu preset)
#  4. packed     1, 2, 4 concurrent 160-px trials, aggregate img/s (packed.json)
#  5. packed-mps the same under the CUDA MPS daemon (scripts/mps.sh), if it can be started
#  6. ablation   rec-160-b8 from the reference path to the default one change at a time, then
#                chunked search, bf16 search, checkpoint_activations each alone (ablation.json)
#  7. compile    rec-160-b8 default vs + torch.compile, twice, each in a fresh process: the
#                first compiles cold, the second finds the FX graph cache (warm-up seconds =
#                the compile cost of a trial) (compile.json)
#  8. search     benchmarks/search_bench.py: dense / chunked / fused at 160x8, 512x8, 1024x1
#  9. loader     the training loader's samples/s with 0 / 4 / 8 workers (built-in sample set)
# 10. summary    $OUT/summary.md: the tables of docs/BENCHMARKS.md "GPU figures", filled in
#
# Needs PyTorch (with Triton, as the CUDA wheels ship it), numpy, Pillow, PyYAML, tqdm and
# pydantic (TrainConfig), plus pytest and scikit-image for the tests and pyarrow for the loader;
# no Ray, no MLflow. A box without pydantic (or another of them): WHEELS=DIR installs the wheels
# in DIR (pydantic, pydantic-core, annotated-types, typing-inspection for the box's Python) into
# a temporary site-packages first, without the network.
set -uo pipefail
OUT="${OUT:-gpu_check_out}"
mkdir -p "$OUT"
PY="${PYTHON:-python}"
WORK="$(mktemp -d)"
export PYTHONPATH="${PWD}${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export TORCHINDUCTOR_CACHE_DIR="$WORK/inductor"  # empty: step 7's first compile is cold
START=$(date +%s)
status=0

if [ -n "${WHEELS:-}" ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$WORK/site" "$WHEELS"/*.whl \
        && export PYTHONPATH="$WORK/site:$PYTHONPATH"
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

BENCH=("$PY" -m benchmarks.train_step --device cuda --preset gpu)

step env 10 "$PY" - <<'PYEOF'
import importlib.util, os, platform, shutil, torch
print("python", platform.python_version(), "| torch", torch.__version__, "| cuda", torch.version.cuda)
print("gpu:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NONE")
print("cpus:", len(os.sched_getaffinity(0)), "| OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS"))
print("nvidia-cuda-mps-control:", shutil.which("nvidia-cuda-mps-control") or "not found")
needed = ("torchvision", "numpy", "PIL", "yaml", "tqdm", "pydantic", "triton")
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
    step tests 45 "$PY" -m pytest -q -m "not slow" -p no:cacheprovider -k "cuda or fused" \
        tests/test_fused_search.py tests/test_step.py tests/test_optimized_paths.py \
        tests/test_model.py
else
    echo "=== tests skipped: pytest / scikit-image / Pillow / pyarrow not installed ==="
fi

step bench 140 "${BENCH[@]}" --json "$OUT/bench.json" --cases \
    rec-160-b8,all-160-b9,infer-160-b8,rec-512-b8,rec-512-b8-ckpt,rec-1024-b8,rec-1024-b8-ckpt

PACKED=("${BENCH[@]}" --cases rec-160-b8 --no-compare --packed 1,2,4 --warmup 3 --steps 10)
step packed 60 "${PACKED[@]}" --json "$OUT/packed.json"

# The MPS daemon for the next step only; the trap stops it whatever happens.
export CUDA_MPS_PIPE_DIRECTORY="$WORK/mps/pipe" CUDA_MPS_LOG_DIRECTORY="$WORK/mps/log"
if bash scripts/mps.sh start; then
    trap 'bash scripts/mps.sh stop' EXIT
    step packed-mps 60 "${PACKED[@]}" --json "$OUT/packed-mps.json"
    bash scripts/mps.sh stop && trap - EXIT
    cp -r "$CUDA_MPS_LOG_DIRECTORY" "$OUT/mps-log" 2>/dev/null
else
    echo "=== packed-mps skipped: the MPS control daemon could not be started ==="
fi
unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY

step ablation 50 "${BENCH[@]}" --cases rec-160-b8 --no-compare --ablate --warmup 2 --steps 8 \
    --options chunked-search,bf16-search,checkpoint --json "$OUT/ablation.json"

step compile 150 "${BENCH[@]}" --cases rec-160-b8 --no-compare --options compile,compile \
    --isolate process --warmup 3 --steps 10 --json "$OUT/compile.json"

step search 20 "$PY" benchmarks/search_bench.py --device cuda --tf32 --warmup 1 --repeat 3 \
    --json "$OUT/search.json"

if "$PY" -c "import PIL, skimage, pyarrow" 2>/dev/null; then
    step loader 15 "$PY" -m benchmarks.loader --sizes 160 --workers 0 4 8 --seconds 2
else
    echo "=== loader bench skipped: Pillow / scikit-image / pyarrow not installed ==="
fi

"$PY" -m benchmarks.summary "$OUT" > "$OUT/summary.md" 2> "$OUT/summary.log" \
    && echo && cat "$OUT/summary.md"

echo
echo "=== done in $(( $(date +%s) - START ))s; results in $OUT (status $status) ==="
exit $status
