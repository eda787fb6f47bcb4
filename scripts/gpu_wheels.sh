#!/usr/bin/env bash
# The wheels the GPU machine lacks, for its Python, into a git-ignored folder:
#
#     bash scripts/gpu_wheels.sh            # Python 3.12 (the GPU machine): .gpu_wheels/py312
#     bash scripts/gpu_wheels.sh 3.11       # another Python, e.g. this machine's for --rehearse
#
# pydantic (TrainConfig) and its compiled core (manylinux x86-64, for that Python), plus
# annotated-types, typing-inspection and typing-extensions, at the versions installed here when
# pydantic is installed here. Bring them along as an ignored path of the working tree (the
# device tool's `carry`: [".gpu_wheels/py312"], ~2.5 MB) and point the check at them:
#
#     WHEELS=.gpu_wheels/py312 bash scripts/gpu_check.sh
set -euo pipefail
VERSION="${1:-3.12}"
PY="${PYTHON:-python}"
DEST=".gpu_wheels/py${VERSION/./}"
mkdir -p "$DEST"
# Pin to this environment's versions where it has them (what the tests here ran with).
SPECS=$("$PY" - <<'PYEOF'
from importlib.metadata import PackageNotFoundError, version
for name in ("pydantic", "pydantic-core", "annotated-types", "typing-inspection",
             "typing-extensions"):
    try:
        print(f"{name}=={version(name)}")
    except PackageNotFoundError:
        print(name)
PYEOF
)
# shellcheck disable=SC2086
"$PY" -m pip download -q --only-binary=:all: --no-deps --implementation cp \
    --python-version "$VERSION" --platform manylinux2014_x86_64 -d "$DEST" $SPECS
ls "$DEST"
echo "wheels for Python $VERSION in $DEST: carry it, then WHEELS=$DEST bash scripts/gpu_check.sh"
