#!/usr/bin/env bash
# One-command set-up: creates .venv/ in the repository root with everything the benchmark needs.
# Safe to run again: each step is skipped when what it installs is already there.
#
#   bash tools/setup.sh                                   # CPU torch 2.13.0, mmcv 2.1.0 built with its ops
#   TORCH_INDEX_URL=https://download.pytorch.org/whl/cu121 TORCH_VERSION=2.1.2 bash tools/setup.sh
#                                                         # a CUDA machine (docs/scaling.md)
#
# mmcv's compiled ops must be built for the very torch (and CUDA) of the venv. Without TORCH_*
# variables and with the default CPU torch, mmcv is built from source (pip caches the wheel).
# Otherwise (TORCH_VERSION or TORCH_INDEX_URL set, or the venv's torch is a CUDA build or another
# version) mmcv comes from OpenMMLab's prebuilt wheel for that torch and CUDA when there is one,
# else from a source build against it, with its CUDA ops when a CUDA compiler (nvcc) is found.
# Either way the last step checks that mmcv's ops load and run with this torch (on the GPU too
# when one is visible), prints torch / CUDA / mmcv, and exits 1 with what to do when they do not.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
DEFAULT_TORCH=2.13.0
REQUESTED_TORCH=${TORCH_VERSION:-}            # empty: no particular torch asked for
TORCH_INDEX_URL=${TORCH_INDEX_URL:-}
TORCH_VERSION=${TORCH_VERSION:-$DEFAULT_TORCH}
MMCV_VERSION=2.1.0
# OpenMMLab's wheel index may be out of reach (a machine that sees only PyPI): give up quickly.
MMCV_WHEEL_TIMEOUT=${MMCV_WHEEL_TIMEOUT:-15}
export MMCV_VERSION
# a torch OpenMMLab publishes mmcv 2.1.0 wheels for (cu118 and cpu exist for torch 2.1 too)
START_OVER="rm -rf .venv && TORCH_INDEX_URL=https://download.pytorch.org/whl/cu121 TORCH_VERSION=2.1.2 bash tools/setup.sh"

die() {
    echo "[setup] error: $*" >&2
    exit 1
}

if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi
PY=.venv/bin/python
PIP=(.venv/bin/python -m pip --disable-pip-version-check)
LOG_DIR=.venv/setup-logs

if ! $PY -c "import torch" 2>/dev/null; then
    if [ -n "$TORCH_INDEX_URL" ]; then
        echo "[setup] installing torch==$TORCH_VERSION from $TORCH_INDEX_URL"
        "${PIP[@]}" install "torch==$TORCH_VERSION" --index-url "$TORCH_INDEX_URL"
    else
        # CPU build; never let a later step replace it (no torchvision anywhere in our requirements).
        echo "[setup] installing torch==$TORCH_VERSION"
        "${PIP[@]}" install "torch==$TORCH_VERSION"
    fi
elif [ -n "$TORCH_INDEX_URL$REQUESTED_TORCH" ]; then
    echo "[setup] torch is already installed in .venv: TORCH_VERSION / TORCH_INDEX_URL install nothing" \
         "(the set-up never replaces an installed torch; mmcv is matched to the one there)"
fi

# What mmcv has to match: torch's version, its CUDA ("none": a CPU build), and whether a CUDA
# compiler is there to build mmcv's CUDA ops (1 or 0).
TORCH_INFO=$($PY - <<'PY'
import os
import torch
cuda = torch.version.cuda
nvcc = 0
if cuda:
    from torch.utils.cpp_extension import CUDA_HOME
    nvcc = int(bool(CUDA_HOME) and os.path.exists(os.path.join(CUDA_HOME, 'bin', 'nvcc')))
print(torch.__version__, cuda or 'none', nvcc)
PY
) || die "torch does not import in .venv (error above); rm -rf .venv and run the set-up again"
read -r TORCH_FULL TORCH_CUDA TORCH_NVCC <<<"$(echo "$TORCH_INFO" | tail -n 1)"
TORCH_BASE=${TORCH_FULL%%+*}                  # 2.1.2+cu121 -> 2.1.2
TORCH_MINOR=$(echo "$TORCH_BASE" | cut -d. -f1,2)
if [ -n "$REQUESTED_TORCH" ] && [ "$TORCH_FULL" != "$REQUESTED_TORCH" ] && [ "$TORCH_BASE" != "$REQUESTED_TORCH" ]; then
    echo "[setup] warning: .venv has torch $TORCH_FULL, not TORCH_VERSION=$REQUESTED_TORCH; mmcv is" \
         "matched to torch $TORCH_FULL. For $REQUESTED_TORCH start over: rm -rf .venv, then run this command again." >&2
fi
if $PY -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torchvision') is None)"; then
    echo "[setup] warning: torchvision is installed in .venv. The benchmark does not use it, and" \
         "installing it can make pip replace torch with the build torchvision pins (torch is now" \
         "$TORCH_FULL, CUDA $TORCH_CUDA; mmcv is matched to it below). If that is not the torch you" \
         "want: rm -rf .venv and run the set-up again, without torchvision." >&2
fi

# 1 when mmcv is matched to a torch other than the default one: prebuilt wheel first.
MATCH=0
if [ -n "$REQUESTED_TORCH$TORCH_INDEX_URL" ] || [ "$TORCH_CUDA" != none ] || [ "$TORCH_BASE" != "$DEFAULT_TORCH" ]; then
    MATCH=1
fi

# The installed mmcv in one word: ok, missing, version (another version), broken (its ops do not
# load with this torch), no-cuda-ops (a CUDA torch, mmcv built without CUDA), cuda-mismatch.
mmcv_state() {
    local out
    out=$($PY - 2>/dev/null <<'PY'
import os
try:
    import mmcv
except ModuleNotFoundError:
    print('missing')
    raise SystemExit
if mmcv.__version__ != os.environ['MMCV_VERSION']:
    print('version')
    raise SystemExit
try:
    from mmcv.ops import get_compiling_cuda_version
    built_for = get_compiling_cuda_version()
except Exception:
    print('broken')
    raise SystemExit
import torch
cuda = torch.version.cuda
if cuda and built_for == 'not available':
    print('no-cuda-ops')
elif cuda and built_for.split('.')[0] != cuda.split('.')[0]:
    print('cuda-mismatch')
else:
    print('ok')
PY
    ) || out=broken
    echo "$out" | tail -n 1
}

mmcv_source_build() {   # extra pip options in "$@"
    local force=0
    [ "$TORCH_CUDA" != none ] && [ "$TORCH_NVCC" = 1 ] && force=1
    "${PIP[@]}" install "setuptools<70" ninja psutil wheel &&
        if [ "$force" = 1 ]; then
            MMCV_WITH_OPS=1 FORCE_CUDA=1 "${PIP[@]}" install --no-build-isolation "$@" "mmcv==$MMCV_VERSION"
        else
            MMCV_WITH_OPS=1 "${PIP[@]}" install --no-build-isolation "$@" "mmcv==$MMCV_VERSION"
        fi
}

BUILD_FAILED="building mmcv==$MMCV_VERSION against torch $TORCH_FULL (CUDA $TORCH_CUDA) failed (pip's output above).
[setup] With a CUDA torch the build needs the CUDA $TORCH_CUDA toolkit (nvcc on PATH, or CUDA_HOME set);
[setup] or start over with a torch OpenMMLab has mmcv wheels for: $START_OVER"

STATE=$(mmcv_state)
if [ "$STATE" != ok ]; then
    REINSTALL=()                              # pip leaves an installed mmcv==2.1.0 alone without these
    if [ "$STATE" != missing ]; then
        echo "[setup] the installed mmcv does not fit torch $TORCH_FULL (CUDA $TORCH_CUDA): $STATE; replacing it"
        REINSTALL=(--force-reinstall --no-deps)
    fi
    DONE=0
    if [ "$MATCH" = 1 ]; then
        if [ "$TORCH_CUDA" = none ]; then TAG=cpu; else TAG=cu${TORCH_CUDA//./}; fi
        URL=https://download.openmmlab.com/mmcv/dist/$TAG/torch$TORCH_MINOR/index.html
        mkdir -p "$LOG_DIR"
        echo "[setup] looking for a prebuilt mmcv==$MMCV_VERSION for torch $TORCH_MINOR + $TAG at $URL"
        # --only-binary: never a source build from here, which could compile against another torch
        if "${PIP[@]}" install --timeout "$MMCV_WHEEL_TIMEOUT" --retries 0 --only-binary mmcv -f "$URL" \
                ${REINSTALL[@]+"${REINSTALL[@]}"} "mmcv==$MMCV_VERSION" >"$LOG_DIR/mmcv-wheel.log" 2>&1; then
            STATE=$(mmcv_state)
            if [ "$STATE" = ok ]; then
                echo "[setup] installed OpenMMLab's prebuilt mmcv wheel"
                DONE=1
            else
                echo "[setup] the prebuilt mmcv wheel does not fit this torch ($STATE); building from source"
                REINSTALL=(--force-reinstall --no-deps)
            fi
        else
            echo "[setup] no prebuilt mmcv==$MMCV_VERSION for torch $TORCH_MINOR + $TAG, or the index is" \
                 "out of reach (pip's output: $LOG_DIR/mmcv-wheel.log); building from source"
        fi
    fi
    if [ "$DONE" = 0 ] && [ "$STATE" = no-cuda-ops ] && [ "$TORCH_NVCC" = 0 ]; then
        # without a CUDA compiler a source build gives the same CPU-only ops again
        echo "[setup] keeping mmcv without CUDA ops: no CUDA compiler (nvcc) here to build them" >&2
        DONE=1
    fi
    if [ "$DONE" = 0 ]; then
        # mmcv 2.1.0 ships no wheel for the default torch: build it with its compiled ops (about 13
        # min on 2 cores the first time; pip caches the wheel so later runs take seconds).
        if [ "$TORCH_CUDA" != none ] && [ "$TORCH_NVCC" = 1 ]; then
            echo "[setup] building mmcv==$MMCV_VERSION with its CPU and CUDA $TORCH_CUDA ops (FORCE_CUDA=1; can take an hour)"
        else
            echo "[setup] building mmcv==$MMCV_VERSION with ops (first time: ~15 minutes)"
        fi
        mmcv_source_build ${REINSTALL[@]+"${REINSTALL[@]}"} || die "$BUILD_FAILED"
        STATE=$(mmcv_state)
        if [ "$STATE" != ok ] && ! { [ "$STATE" = no-cuda-ops ] && [ "$TORCH_NVCC" = 0 ]; }; then
            # pip reuses a wheel it built before, whatever torch that was built against
            echo "[setup] the mmcv wheel pip had cached was built for another torch ($STATE); building again without the cache"
            mmcv_source_build --no-cache-dir --force-reinstall --no-deps || die "$BUILD_FAILED"
        fi
    fi
fi

"${PIP[@]}" install -q -r requirements.txt
# Editable install so `benchmark`, `model_zoo`, `attacks`, `leaderboard` import from anywhere.
"${PIP[@]}" install -q --no-deps --no-build-isolation -e .

# Verification: mmcv's compiled ops load with this torch and compute: NMS of three boxes, the
# second overlapping the first with IoU 81/119 > 0.5, keeps [0, 2]; on the GPU too when one is visible.
START_OVER="$START_OVER" $PY - <<'PY'
import os
import sys

import torch


def fail(what, fix):
    print(f'[setup] error: {what}\n[setup] {fix}', file=sys.stderr)
    sys.exit(1)


start_over = 'or start over with a torch OpenMMLab publishes mmcv wheels for: ' + os.environ['START_OVER']
rebuild = ('Remove mmcv and the wheel pip cached, then run the set-up again: .venv/bin/python -m pip uninstall -y '
           'mmcv && .venv/bin/python -m pip cache remove mmcv && bash tools/setup.sh; ' + start_over)
import mmcv  # noqa: E402
import mmengine  # noqa: E402
import mmseg  # noqa: E402

cuda = torch.version.cuda
if mmcv.__version__ != os.environ['MMCV_VERSION']:
    fail(f'mmcv {mmcv.__version__} is installed; the benchmark needs {os.environ["MMCV_VERSION"]}', rebuild)
try:
    import mmcv.ops  # noqa: F401  (mmseg needs the compiled ops)
    from mmcv.ops import get_compiling_cuda_version, nms
    built_for = get_compiling_cuda_version()
except Exception as exc:
    fail(f"mmcv {mmcv.__version__}'s compiled ops do not load with torch {torch.__version__} "
         f'(CUDA {cuda or "none"}): {type(exc).__name__}: {exc}', rebuild)
built_for = None if built_for == 'not available' else built_for
triple = (f'torch {torch.__version__} (CUDA {cuda or "none"}), mmcv {mmcv.__version__} '
          f'(ops built for CUDA {built_for or "none: CPU ops only"})')
gpu = bool(cuda) and torch.cuda.is_available()
devices = ['cpu']
if cuda and built_for is None:
    if gpu:
        fail(f'{triple}: a GPU is visible but mmcv has no CUDA ops',
             f'Install the CUDA {cuda} toolkit (nvcc on PATH, or CUDA_HOME set) and run the set-up '
             f'again (it then builds mmcv with FORCE_CUDA=1), {start_over}')
    print(f"[setup] warning: {triple}: no GPU visible here and no CUDA compiler to build mmcv's CUDA "
          "ops; the zoo's models do not use them, other mmseg heads may (run the set-up where nvcc is)",
          file=sys.stderr)
elif cuda:
    if built_for.split('.')[0] != cuda.split('.')[0]:
        fail(f"{triple}: mmcv's ops were built for another CUDA than torch's", rebuild)
    if built_for.split('.')[:2] != cuda.split('.')[:2]:
        print(f'[setup] warning: {triple}: the CUDA minor versions differ (fine when the driver '
              'supports both)', file=sys.stderr)
    if gpu:
        devices.append('cuda')
    else:
        print("[setup] note: no GPU visible here, so mmcv's CUDA ops were not run", file=sys.stderr)
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.], [20., 20., 30., 30.]])
scores = torch.tensor([0.9, 0.8, 0.7])
for device in devices:
    try:
        _, keep = nms(boxes.to(device), scores.to(device), iou_threshold=0.5)
        kept = keep.cpu().tolist()
    except Exception as exc:
        fail(f'{triple}: mmcv.ops.nms fails on {device}: {type(exc).__name__}: {exc}', rebuild)
    if kept != [0, 2]:
        fail(f'{triple}: mmcv.ops.nms on {device} kept boxes {kept}, expected [0, 2]', rebuild)
print(f'[setup] {triple}; mmcv.ops.nms runs on {" and ".join(devices)}')
print(f'[setup] ok: torch {torch.__version__}, mmcv {mmcv.__version__}, '
      f'mmengine {mmengine.__version__}, mmseg {mmseg.__version__}')
PY
