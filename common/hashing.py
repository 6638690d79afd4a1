"""sha256 digests of bytes and files (checkpoints, per-image files, dataset images)."""
from __future__ import annotations

import hashlib
import os
from typing import Union

__all__ = ['sha256_bytes', 'sha256_file']

_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Union[str, os.PathLike]) -> str:
    """Hex sha256 digest of the file at ``path``, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(_CHUNK), b''):
            h.update(chunk)
    return h.hexdigest()
