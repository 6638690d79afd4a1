"""Provenance recorded with every result: versions, git state, host, time."""
from __future__ import annotations

import datetime as _dt
import functools
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Dict, Optional, Tuple

REPO_ROOT = Path(__file__).resolve().parent.parent
_PACKAGES = ('torch', 'mmcv', 'mmengine', 'mmsegmentation', 'numpy')


@functools.lru_cache(maxsize=1)
def package_versions() -> Dict[str, str]:
    versions = {'python': platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def git_state(root: Path = REPO_ROOT) -> Tuple[Optional[str], Optional[bool]]:
    """``(sha, dirty)`` of the repository, or ``(None, None)`` outside a git checkout."""
    try:
        sha = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=root, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'], cwd=root,
                                capture_output=True, text=True, timeout=10, check=True).stdout
        return sha, bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')


def hostname() -> str:
    return socket.gethostname()
