#!/usr/bin/env bash
# One-command set-up: creates .venv/ in the repository root with everything the benchmark needs.
# Safe to run again: each step is skipped when what it installs is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
MMCV_VERSION=2.1.0

if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi
PY=.venv/bin/python
PIP=(.venv/bin/python -m pip --disable-pip-version-check)

if ! $PY -c "import torch" 2>/dev/null; then
    # CPU build; never let a later step replace it (no torchvision anywhere in our requirements).
    echo "[setup] installing torch==$TORCH_VERSION"
    "${PIP[@]}" install "torch==$TORCH_VERSION"
fi

if ! $PY -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'" 2>/dev/null; then
    # mmcv 2.1.0 ships no wheel for this torch: build it with its compiled ops (about 13 min on
    # 2 cores the first time; pip caches the wheel so later runs take seconds).
    echo "[setup] building mmcv==$MMCV_VERSION with ops (first time: ~15 minutes)"
    "${PIP[@]}" install "setuptools<70" ninja psutil wheel
    MMCV_WITH_OPS=1 "${PIP[@]}" install --no-build-isolation "mmcv==$MMCV_VERSION"
fi

"${PIP[@]}" install -q -r requirements.txt
# Editable install so `benchmark`, `model_zoo`, `attacks`, `leaderboard` import from anywhere.
"${PIP[@]}" install -q --no-deps --no-build-isolation -e .

$PY - <<'PY'
import torch, mmcv, mmengine, mmseg
import mmcv.ops  # noqa: F401  (mmseg needs the compiled ops)
print(f"[setup] ok: torch {torch.__version__}, mmcv {mmcv.__version__}, "
      f"mmengine {mmengine.__version__}, mmseg {mmseg.__version__}")
PY
