"""Writing the dataset: rendering every image (in worker processes when there are many), PNG
encoding, the Cityscapes folder layout and ``manifest.json``, written into a temporary directory
that is renamed into place.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import multiprocessing
import os
import pathlib
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Dict, Iterator, List, Tuple, Union

import numpy as np
from PIL import Image

from .classes import (_CITIES, _FRAME, _IGNORE, _MANIFEST, _SPLITS, CLASS_NAMES, IMG_SUFFIX, SEG_MAP_SUFFIX,
                      SYNTHETIC_VERSION, USED_TRAIN_IDS)
from .scene import generate_scene

logger = logging.getLogger(__name__)



def _stem(split: str, i: int) -> Tuple[str, str]:
    cities = _CITIES[split]
    city = cities[i % len(cities)]
    return city, f'{city}_{i // len(cities):06d}_{_FRAME:06d}'


def _encode_png(arr: np.ndarray) -> bytes:
    """PNG bytes without optional chunks (RGB for HxWx3, greyscale 'L' for HxW uint8)."""
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format='PNG', compress_level=6)
    return buf.getvalue()


def _render_files(job: Tuple[int, int, int, int, int]) -> Tuple[bytes, bytes]:
    """Image and label PNG bytes of image ``i`` of split ``split_index`` (``job`` = seed, split, i, w, h)."""
    seed, split_index, i, w, h = job
    image, label = generate_scene(np.random.default_rng([seed, split_index, i]), h, w)
    return _encode_png(image), _encode_png(label)


def _num_workers(total: int) -> int:
    """Worker processes for generation: ``$SEGBENCH_SYNTH_WORKERS``, else up to 4 usable CPUs."""
    env = os.environ.get('SEGBENCH_SYNTH_WORKERS', '').strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            logger.warning('ignoring SEGBENCH_SYNTH_WORKERS=%r (not an integer)', env)
    if total < 32:
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 4))


def _render_all(jobs: List[Tuple[int, int, int, int, int]], workers: int) -> Iterator[Tuple[bytes, bytes]]:
    """PNG bytes for every job, in order; in forked worker processes when ``workers > 1``.

    The output does not depend on the number of workers (every image has its own generator).
    """
    pool = None
    if workers > 1 and len(jobs) > 1 and 'fork' in multiprocessing.get_all_start_methods():
        try:
            pool = ProcessPoolExecutor(min(workers, len(jobs)), mp_context=multiprocessing.get_context('fork'))
        except (OSError, ValueError, NotImplementedError) as e:  # e.g. no /dev/shm for semaphores
            logger.info('synthetic cityscapes: generating in one process (%s)', e)
            pool = None
    if pool is None:
        for job in jobs:
            yield _render_files(job)
        return
    try:
        yield from pool.map(_render_files, jobs, chunksize=4)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _check_size(size: Tuple[int, int]) -> Tuple[int, int]:
    try:
        w, h = (int(x) for x in size)
    except (TypeError, ValueError):
        raise ValueError(f'size must be (width, height), got {size!r}') from None
    if w < 32 or h < 32:
        raise ValueError(f'size must be at least (32, 32), got {size!r}')
    return w, h


def _params(seed: int, num_train: int, num_val: int, size: Tuple[int, int]) -> Dict[str, Any]:
    return {'version': SYNTHETIC_VERSION, 'seed': int(seed), 'num_train': int(num_train),
            'num_val': int(num_val), 'size': list(size)}


class _Progress:
    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self.done = total, enabled, 0
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, desc='synthetic cityscapes', unit='img')
            else:
                logger.info('generating %d synthetic street scenes', total)

    def step(self) -> None:
        self.done += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
        elif self.done % 50 == 0 or self.done == self.total:
            logger.info('synthetic cityscapes: %d/%d images', self.done, self.total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def write_synthetic_cityscapes(root: Union[str, os.PathLike], *, seed: int = 0, num_train: int = 300,
                               num_val: int = 60, size: Tuple[int, int] = (256, 128),
                               progress: bool = True) -> pathlib.Path:
    """Generate the dataset and write it under ``root`` in the Cityscapes layout.

    Layout::

        root/leftImg8bit/{train,val}/<city>/<city>_<seq:06d>_<frame:06d>_leftImg8bit.png
        root/gtFine/{train,val}/<city>/<same stem>_gtFine_labelTrainIds.png
        root/manifest.json

    The files are written into a temporary sibling directory that is renamed to ``root`` at the
    end, so an interrupted run never leaves a partial dataset at ``root``. Image ``i`` of split
    ``s`` (0 train, 1 val) comes from ``numpy.random.default_rng([seed, s, i])``, so the files do
    not depend on the counts. From 32 images on, the scenes are rendered by up to 4 forked worker
    processes (one per usable CPU; ``$SEGBENCH_SYNTH_WORKERS`` overrides the number, 1 = in
    process); the output is the same for any number of workers.

    Args:
        root: Target directory; must not exist (or be an empty directory).
        seed: Dataset seed (non-negative).
        num_train: Number of training images.
        num_val: Number of validation images.
        size: ``(width, height)`` of every image.
        progress: Show a tqdm bar (or log every 50 images when tqdm is missing).

    Returns:
        The dataset directory ``root``.

    Raises:
        FileExistsError: ``root`` exists and is not an empty directory.
        ValueError: Invalid arguments.
    """
    root = pathlib.Path(root).expanduser()
    w, h = _check_size(size)
    if int(seed) < 0 or int(num_train) < 0 or int(num_val) < 0:
        raise ValueError('seed, num_train and num_val must be non-negative')
    if root.exists():
        if root.is_dir() and not any(root.iterdir()):
            root.rmdir()
        else:
            raise FileExistsError(f'{root} already exists; delete it or choose another root')
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f'.{root.name}.tmp-', dir=root.parent))
    counts = {'train': int(num_train), 'val': int(num_val)}
    bar = _Progress(sum(counts.values()), progress)
    try:
        manifest: Dict[str, Any] = dict(_params(seed, num_train, num_val, (w, h)))
        manifest.update(name='segbench synthetic cityscapes', class_names=list(CLASS_NAMES),
                        used_train_ids=list(USED_TRAIN_IDS), ignore_index=_IGNORE,
                        img_suffix=IMG_SUFFIX, seg_map_suffix=SEG_MAP_SUFFIX, splits={})
        jobs = [(int(seed), split_index, i, w, h)
                for split_index, split in enumerate(_SPLITS) for i in range(counts[split])]
        for split in _SPLITS:
            manifest['splits'][split] = []
            for kind in ('leftImg8bit', 'gtFine'):  # mmseg expects the split folders to exist
                (tmp / kind / split).mkdir(parents=True, exist_ok=True)
        with contextlib.closing(_render_all(jobs, _num_workers(len(jobs)))) as rendered:
            for (_seed, split_index, i, _w, _h), pngs in zip(jobs, rendered):
                _store(tmp, manifest, split_index, i, pngs)
                bar.step()
        (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=1) + '\n')
        os.chmod(tmp, 0o755)  # mkdtemp makes it private
        try:
            os.rename(tmp, root)
        except OSError:
            if root.exists():  # created meanwhile by another process
                raise FileExistsError(f'{root} already exists; delete it or choose another root') from None
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        bar.close()
    return root


def _store(tmp: pathlib.Path, manifest: Dict[str, Any], split_index: int, i: int,
           pngs: Tuple[bytes, bytes]) -> None:
    """Write one image/label pair under ``tmp`` and list it in the manifest."""
    split = _SPLITS[split_index]
    city, stem = _stem(split, i)
    entry: Dict[str, str] = {'stem': stem, 'city': city}
    for key, kind, suffix, data in (('image', 'leftImg8bit', IMG_SUFFIX, pngs[0]),
                                    ('label', 'gtFine', SEG_MAP_SUFFIX, pngs[1])):
        rel = pathlib.Path(kind, split, city, stem + suffix)
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_bytes(data)
        entry[key] = rel.as_posix()
        entry[key + '_sha256'] = hashlib.sha256(data).hexdigest()
    manifest['splits'][split].append(entry)
