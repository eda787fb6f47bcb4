#!/usr/bin/env bash
# The README's first command on a plain install: `pip install -c constraints.txt -e .` (no
# extras) into a fresh virtualenv, then a tracked `python -m ttsr.train` and the main job
# (`python tune/run.py --study loss-weights`), as a user runs them from the repository root.
# Fails if the product imports at run time anything that only an extra (the tests') brings in.
# CI runs it after the README's test command (.ci/run); ~7 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --upgrade pip
"$work/venv/bin/pip" install -q -c constraints.txt -e .
py="$work/venv/bin/python"
for extra in pytest moto torchvision xdist playwright; do
    if "$py" -c "import $extra" 2>/dev/null; then
        echo "plain install check: $extra is importable without the test extra" >&2
        exit 1
    fi
done

echo "=== python -m ttsr.train, tracked ==="
"$py" -m ttsr.train --size 32 --n-feats 8 --num-res-blocks 1+1+1+1 --fraction 0.05 \
    --batch-size 2 --val-limit 2 --epochs 1 --device cpu --no-progress \
    --out "$work/train" --mlflow-uri "sqlite:///$work/train.db"
"$py" - "$work/train.db" <<'PYEOF'
import sys

from mlflow import MlflowClient

client = MlflowClient(f"sqlite:///{sys.argv[1]}")
(run,) = client.search_runs([client.get_experiment_by_name("ttsr").experiment_id])
assert run.info.status == "FINISHED", run.info.status
assert "val_psnr" in run.data.metrics and "system/cpu_utilization_percentage" in run.data.metrics
print(f"tracked run {run.info.run_id}: {run.info.status}, val_psnr {run.data.metrics['val_psnr']:.2f}")
PYEOF

echo "=== python tune/run.py --study loss-weights ==="
# its stores in the temporary folder, not the checkout; otherwise the README's command
"$py" tune/run.py --study loss-weights --ray-temp-dir "$work/ray" \
    --mlflow-uri "sqlite:///$work/mlflow.db" --storage "$work/ray_results"
