"""The dataset cache: :func:`ensure_synthetic_cityscapes` finds a generated dataset (checking its
manifest) or generates it on first use.
"""
from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Dict, Optional, Tuple, Union

from .classes import _MANIFEST, _SPLITS, SYNTHETIC_VERSION
from .writer import _check_size, _params, write_synthetic_cityscapes


def _default_root(seed: int, num_train: int, num_val: int, size: Tuple[int, int]) -> pathlib.Path:
    cache = os.environ.get('SEGBENCH_CACHE')
    base = pathlib.Path(cache).expanduser() if cache else pathlib.Path.home() / '.cache' / 'segbench'
    w, h = size
    return base / f'synthetic_cityscapes_v{SYNTHETIC_VERSION}_s{seed}_{w}x{h}_{num_train}-{num_val}'


def _mismatch(root: pathlib.Path, wanted: Dict[str, Any]) -> Optional[str]:
    """Why the dataset at ``root`` is not the requested one (None when it is)."""
    path = root / _MANIFEST
    if not path.is_file():
        return f'{root} exists but has no {_MANIFEST} (not a complete synthetic dataset)'
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return f'{path} cannot be read ({e})'
    diffs = [f'{k}: found {found.get(k)!r}, requested {v!r}' for k, v in wanted.items() if found.get(k) != v]
    if diffs:
        return f'{root} holds a different synthetic dataset ({"; ".join(diffs)})'
    missing = [e[key] for split in _SPLITS for e in found.get('splits', {}).get(split, [])
               for key in ('image', 'label') if not (root / e[key]).is_file()]
    if missing:
        return f'{root} is incomplete: {len(missing)} file(s) listed in {_MANIFEST} are missing, e.g. {missing[0]}'
    return None


def ensure_synthetic_cityscapes(root: Optional[Union[str, os.PathLike]] = None, *, seed: int = 0,
                                num_train: int = 300, num_val: int = 60,
                                size: Tuple[int, int] = (256, 128),
                                progress: bool = True) -> pathlib.Path:
    """Return the synthetic dataset directory, generating the dataset on first use.

    Args:
        root: Dataset directory. Default: ``$SEGBENCH_CACHE`` (or ``~/.cache/segbench``) /
            ``synthetic_cityscapes_v{SYNTHETIC_VERSION}_s{seed}_{w}x{h}_{num_train}-{num_val}``.
        seed: Dataset seed.
        num_train: Number of training images.
        num_val: Number of validation images.
        size: ``(width, height)`` of every image.
        progress: Show progress while generating.

    Returns:
        The dataset directory (with ``leftImg8bit/``, ``gtFine/`` and ``manifest.json``).

    Raises:
        ValueError: ``root`` exists (and is not an empty directory) but has no manifest, a
            manifest with other parameters (version, seed, counts or size) or missing files.
    """
    w, h = _check_size(size)
    root = pathlib.Path(root).expanduser() if root is not None else _default_root(seed, num_train, num_val, (w, h))
    wanted = _params(seed, num_train, num_val, (w, h))
    hint = 'delete it or choose another root'
    if root.exists() and not (root.is_dir() and not any(root.iterdir())):  # an empty dir is filled
        why = _mismatch(root, wanted)
        if why is not None:
            raise ValueError(f'{why}; {hint}')
        return root
    try:
        return write_synthetic_cityscapes(root, seed=seed, num_train=num_train, num_val=num_val,
                                          size=(w, h), progress=progress)
    except FileExistsError:
        # another process finished the same dataset first
        why = _mismatch(root, wanted)
        if why is not None:
            raise ValueError(f'{why}; {hint}') from None
        return root
