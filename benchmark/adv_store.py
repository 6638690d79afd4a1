"""The adversarial-example store: lossless, compact, resumable storage of generated attacks.

Generating adversarial images is the expensive stage of the benchmark; evaluating them on a model is
a forward pass. This store keeps what generation produced, so every target (the source itself for a
white-box cell, other models for transfer) is evaluated from the same stored images, and an
interrupted generation resumes at the first image that is not stored.

**What is stored.** The perturbation ``δ = adv − images`` of each batch, in the smallest
representation whose round trip is *bit-exact*, checked when writing: ``images + decode(encode(δ))``
computed in float32 must have the same bits as ``adv``. The candidates, smallest first:

==================  ==========================================================================
``int8``            ``δ · 2^j`` as integers, ``2^j`` the smallest power of two that makes every
                    element an integer (``j = 0``: integer perturbations, e.g. Arnab et al.'s
                    α = 1 iterates; ``j = 2``: the ε = 0.25 grid). A power of two, so the
                    decoding ``q · 2^-j`` is exact.
``uint8`` palette   indices into the batch's distinct δ values (at most 256), e.g. MI-FGSM's sums
                    of ``±ε/steps``, which lie on no power-of-two grid.
``int16``           as ``int8``, for ``|δ · 2^j| ≤ 32767``.
``float16``         only when the round trip is exact.
``uint16`` palette  up to 65536 distinct values (SegPGD's and CosPGD's sums of ``±2.55``), or
or ``float32``      δ itself when ``images + δ`` gives ``adv`` back: whichever deflates smaller.
``float32`` +       float addition is not always invertible (``a + (b − a)`` may differ from
patch               ``b``, e.g. a small adversarial value over a bright clean pixel loses its low
                    bits in δ; ``0 + (−0 − 0)`` is ``+0``): the elements whose round trip fails are
                    stored verbatim (flat index + ``adv`` value).
``adv`` float32     ``adv`` itself, when the patch would be larger than it.
==================  ==========================================================================

The arrays are compressed (``np.savez_compressed``'s format, deflate, with fixed zip dates so the
same batch always gives the same bytes). Measured on two 128×256 images and the toy model of the
tests, in bytes per image (float32: 393,216): Iterative FGSM ε = 8 (Arnab et al.) ``int8`` 27,986
(2.3 bits per pixel and channel; checked in ``tests/test_benchmark/test_adv_store.py``); Iterative
FGSM II ε = 8 30.8 K; FGSM ε = 8 16.1 K; FGSM and Iterative FGSM ε = 0.25 ``int8/2^2`` 16.1 K;
Iterative FGSM ε = 32 52.3 K; MI-FGSM ε = 8 ``uint8`` palette 38.3 K; SegPGD and CosPGD ε = 8
``uint16`` palette 33.6 K and 28.9 K; PGD ε = 8 (random start) ``float32`` 200 K.

**Layout** (under ``$SEGBENCH_CACHE/adversarial``, default ``~/.cache/segbench/adversarial``, out of
git; result records stay in ``results/``)::

    <root>/<dataset>/<source>/<attack>_eps<ε>_x<scale>_<key hash>/
        key.json                        # the group's key (AdvKey.to_dict()) and its hash
        batch_<hash of image ids>.npz   # payload, image ids, per-image sha256 of the clean images
        batch_<hash of image ids>.json  # image ids, shape, encoding, sha256 and size of the .npz

Each batch has its own small manifest (``.json``) instead of one manifest per group that every batch
would rewrite: writers of different batches (``torchrun`` ranks, two processes sharing a cache)
never touch the same file, and a batch is stored exactly when its manifest is. Path components
that are not plain names (``crfrnn:unaries``, ``ens(a+b)``) become ``<sanitised>-<8 hex digits>``;
the key itself is in ``key.json``.

**Promises.**

* *Atomic and resumable.* Files are written by :mod:`common.atomic` (temporary file + rename, the
  record store's ``.<name>.XXXXXXXX.tmp`` names, so :func:`common.atomic.find_temporary`, the
  record store's sweeping and ``tools/validate_results.py`` recognise them). The ``.npz`` is renamed
  into place before its manifest, so a killed write leaves at most a temporary file or an ``.npz``
  without manifest, and the batch counts as missing (:meth:`AdversarialStore.missing`).
* *Verified on read.* The ``.npz``'s sha256 must equal its manifest's, and its image ids and
  encoding must equal the manifest's; the clean images given to :meth:`AdversarialStore.get` must
  have the sha256 recorded when the batch was written (``images + δ`` is only ``adv`` for those
  images). Anything else is a :class:`~common.errors.ResultsError` naming the file, never silently
  wrong images.

Only numpy, :mod:`common` and the standard library are imported at module level (torch only when
given torch tensors).
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import re
import shutil
import zipfile
import zlib
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from common.atomic import (atomic_write_bytes, check_writable_dir, commit, find_temporary,
                           remove_quietly, write_temporary)
from common.errors import ModelError, ResultsError
from common.hashing import sha256_bytes
from common.names import NAME_PATTERN, canonical, canonical_json

__all__ = ['AdvKey', 'AdversarialStore', 'Encoded', 'encode', 'decode', 'default_root',
           'FORMAT_VERSION']

logger = logging.getLogger(__name__)

#: Version of the on-disk format (in every manifest; a reader refuses other versions).
FORMAT_VERSION = 1
#: Largest ``j`` tried for a ``2^-j`` grid (finer grids are stored as floats).
MAX_GRID_LOG2 = 24
KEY_FILE = 'key.json'
_BATCH = re.compile(r'^batch_[0-9a-f]{16}\.json$')

ArrayLike = Any  # a torch.Tensor or a numpy array


def default_root() -> Path:
    """``$SEGBENCH_CACHE/adversarial`` (``~/.cache/segbench/adversarial`` when unset).

    Read here rather than through ``model_zoo.builder.cache_dir`` so that the store does not import
    the model zoo; the default is the same.
    """
    cache = os.environ.get('SEGBENCH_CACHE')
    base = Path(cache).expanduser() if cache else Path.home() / '.cache' / 'segbench'
    return base / 'adversarial'


def _component(name: str, what: str) -> str:
    """``name`` as a path component: itself if it is a plain name, else sanitised + 8 hex digits."""
    if not isinstance(name, str) or not name:
        raise ValueError(f'{what} must be a non-empty string, got {name!r}')
    if NAME_PATTERN.match(name) and name not in ('.', '..'):
        return name
    safe = re.sub(r'[^A-Za-z0-9_.+-]+', '_', name).strip('._+-')[:64] or 'x'
    return f'{safe}-{hashlib.sha256(name.encode()).hexdigest()[:8]}'


def _number(x: float) -> str:
    return f'{float(x):g}'.replace('.', 'p').replace('-', 'm')


# -- keys ----------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class AdvKey:
    """Everything that determines a set of adversarial images, except the image itself.

    Attributes:
        dataset: The suite's dataset key string.
        source: The source id (``fcn8s_vgg16-w8_synthcity``, ``deeplab@s0.5``, ``crfrnn:unaries``,
            ``ens(a+b)``).
        attack: Attack name (``ifgsm``).
        params: The attack's parameters (JSON-able; hashed as canonical JSON, so ``8`` and ``8.0``
            and the order of keys do not matter). Targets, masks and seeds belong here.
        epsilon: ε in 0–255 pixel units.
        scale: Input scale of the source (1.0: full resolution).
        label_source: ``'prediction'`` or ``'ground_truth'``: the labels the attack ascends on.
        source_digest: Optional identity of the source's weights (e.g. the checkpoint sha256): when
            given, retrained weights under the same source name get a new group instead of
            reusing images generated with the old ones.
    """

    dataset: str
    source: str
    attack: str
    params: Dict[str, Any]
    epsilon: float
    scale: float = 1.0
    label_source: str = 'prediction'
    source_digest: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        return {'dataset': self.dataset, 'source': self.source, 'attack': self.attack,
                'params': canonical(dict(self.params)), 'epsilon': float(self.epsilon),
                'scale': float(self.scale), 'label_source': self.label_source,
                'source_digest': self.source_digest}

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> 'AdvKey':
        return cls(**d)

    @property
    def key_hash(self) -> str:
        """16 hex digits of sha256 over the canonical key."""
        return hashlib.sha256(canonical_json(self.to_dict()).encode()).hexdigest()[:16]

    def relative_dir(self) -> Path:
        """The group's folder relative to the store root."""
        group = (f'{_component(self.attack, "attack")}_eps{_number(self.epsilon)}'
                 f'_x{_number(self.scale)}_{self.key_hash}')
        return Path(_component(self.dataset, 'dataset'), _component(self.source, 'source'), group)

    def describe(self) -> str:
        scale = '' if float(self.scale) == 1.0 else f' at scale {self.scale:g}'
        return f'{self.attack} ε={self.epsilon:g} from {self.source}{scale} on {self.dataset}'


# -- encoding ------------------------------------------------------------------------------------

@dataclasses.dataclass
class Encoded:
    """One batch's perturbation in its stored form.

    Attributes:
        payload: ``'delta'`` (``adv = images + values · 2^-grid_log2``, or ``images +
            palette[values]``) or ``'adv'`` (the images).
        dtype: numpy dtype name of ``values`` (``int8``, ``int16``, ``uint8``, ``uint16``,
            ``float16``, ``float32``).
        grid_log2: ``j`` of the ``2^-j`` grid of integer payloads (0 for floats).
        values: The stored array, shape ``(N, ...)`` like the images.
        patch_index: Flat indices whose element is stored verbatim (float32 δ that does not round
            trip there), or None.
        patch_value: The ``adv`` values at ``patch_index``.
        palette: For ``uint8``/``uint16`` values: the float32 δ each index stands for.
    """

    payload: str
    dtype: str
    grid_log2: int
    values: np.ndarray
    patch_index: Optional[np.ndarray] = None
    patch_value: Optional[np.ndarray] = None
    palette: Optional[np.ndarray] = None

    @property
    def patched(self) -> int:
        return 0 if self.patch_index is None else int(self.patch_index.size)

    def describe(self) -> Dict[str, Any]:
        return {'payload': self.payload, 'dtype': self.dtype, 'grid_log2': self.grid_log2,
                'palette': 0 if self.palette is None else int(self.palette.size),
                'patched': self.patched}


def _bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint32)


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-exact equality of two float32 arrays (``-0.0`` differs from ``0.0``, NaNs compare)."""
    return a.shape == b.shape and np.array_equal(_bits(a), _bits(b))


def _grid_log2_of_bits(delta: np.ndarray) -> Optional[int]:
    """Smallest ``j ≥ 0`` with every element of ``delta · 2^j`` an integer (None above 2^24).

    From each float32's bits, in int32 arithmetic (no float64 copy of a large batch): a finite
    ``x = M · 2^(E − 150)`` with the integer significand ``M`` (implicit bit included, ``E ≥ 1``);
    stripping its trailing zero bits gives ``x = odd · 2^p``, and ``j = max(0, −min p)``.
    """
    b = np.ascontiguousarray(delta, dtype=np.float32).view(np.int32).reshape(-1) & 0x7FFFFFFF
    b = b[b != 0]
    if b.size == 0:
        return 0
    exponent = b >> 23
    significand = b & 0x7FFFFF
    significand[exponent > 0] |= 0x800000  # normal numbers carry an implicit leading bit
    lowest = significand & -significand
    trailing = np.frexp(lowest.astype(np.float32))[1] - 1  # log2 of a power of two, exact
    p = np.maximum(exponent, 1) - 150 + trailing
    j = max(0, -int(p.min()))
    return j if j <= MAX_GRID_LOG2 else None


def _grid_log2(delta: np.ndarray) -> Optional[int]:
    """:func:`_grid_log2_of_bits` of ``delta``, fast for large batches.

    The grid of a sample of the elements is a lower bound of the whole batch's; when every element
    of ``delta · 2^j`` is an integer for that ``j`` (one pass: the usual case), it is the answer,
    otherwise the bits of every element decide. A sample on no grid means the batch is on none.
    """
    flat = np.ascontiguousarray(delta, dtype=np.float32).reshape(-1)
    j = _grid_log2_of_bits(flat[::max(1, flat.size // 65536)])
    if j is None:
        return None
    q = flat * np.float32(2.0 ** j)  # exact: a power of two
    if np.array_equal(q, np.rint(q)):
        return j
    return _grid_log2_of_bits(flat)


def _deflated_size(enc: Encoded) -> int:
    """Bytes of ``enc``'s arrays deflated as in the stored file (``savez_compressed``'s level)."""
    size = len(zlib.compress(enc.values.tobytes(), 6))
    return size + (0 if enc.palette is None else len(zlib.compress(enc.palette.tobytes(), 6)))


def decode(enc: Encoded, images: np.ndarray) -> np.ndarray:
    """The adversarial images of ``enc`` over ``images`` (float32, same shape), in float32."""
    images = np.asarray(images, dtype=np.float32)
    if enc.payload == 'adv':
        return np.array(enc.values, dtype=np.float32, copy=True)
    if enc.palette is not None:
        delta = enc.palette[enc.values]
    elif enc.dtype in ('int8', 'int16'):
        delta = enc.values.astype(np.float32) * np.float32(2.0 ** -enc.grid_log2)  # exact
    else:
        delta = enc.values.astype(np.float32)
    out = images + delta
    if enc.patch_index is not None and enc.patch_index.size:
        flat = out.reshape(-1)
        flat[enc.patch_index] = enc.patch_value
    return out


def encode(images: np.ndarray, adv: np.ndarray) -> Encoded:
    """The smallest representation of ``adv − images`` whose round trip is bit-exact.

    Every candidate is checked by decoding it and comparing the bits with ``adv``; the first that
    matches is taken, in the order of their bytes per element: ``int8`` on the coarsest ``2^-j``
    grid of δ; ``uint8`` indices into a palette of at most 256 distinct δ values (MI-FGSM's
    ``±ε/steps`` sums); ``int16`` on the grid; ``float16``; then ``uint16`` palette indices
    (SegPGD's and CosPGD's ``±2.55`` sums) or ``float32``, whichever deflates smaller (a table of
    up to 65536 values is not negligible). If even float32 δ does not give ``adv`` back (nor,
    then, any palette of its values), the failing elements are patched, or ``adv`` is stored
    whole when that is smaller.

    Args:
        images: Clean images, float32 ``(N, ...)``.
        adv: Adversarial images, float32, same shape.
    """
    images = np.ascontiguousarray(images, dtype=np.float32)
    adv = np.ascontiguousarray(adv, dtype=np.float32)
    delta = adv - images

    def exact(enc: Encoded) -> Optional[Encoded]:
        return enc if _same_bits(decode(enc, images), adv) else None

    j = _grid_log2(delta)
    q = delta * np.float32(2.0 ** j) if j is not None else None  # exact: a power of two
    peak = float(np.abs(q).max()) if q is not None and q.size else 0.0

    def grid(dtype) -> Optional[Encoded]:
        if q is None or peak > np.iinfo(dtype).max:
            return None
        return exact(Encoded('delta', np.dtype(dtype).name, j, q.astype(dtype)))

    palette_cache: List[Tuple[np.ndarray, np.ndarray]] = []

    def palette(dtype) -> Optional[Encoded]:
        size = np.iinfo(dtype).max + 1
        sample = _bits(delta).reshape(-1)[::max(1, delta.size // (4 * size))]
        if sample.size > size and np.unique(sample).size > size:
            return None  # more distinct values in a sample already (cheap for large batches)
        if not palette_cache:  # distinct bit patterns, so -0.0 stays apart from 0.0
            keys, index = np.unique(_bits(delta), return_inverse=True)
            palette_cache.append((keys.view(np.float32), index.reshape(delta.shape)))
        values, index = palette_cache[0]
        if values.size > size:
            return None
        return exact(Encoded('delta', np.dtype(dtype).name, 0, index.astype(dtype), palette=values))

    def half() -> Optional[Encoded]:
        with np.errstate(over='ignore'):
            h = delta.astype(np.float16)
        return exact(Encoded('delta', 'float16', 0, h)) if np.isfinite(h).all() else None

    for candidate in (lambda: grid(np.int8), lambda: palette(np.uint8), lambda: grid(np.int16),
                      half):
        enc = candidate()
        if enc is not None:
            return enc
    out = images + delta
    bad = np.flatnonzero(_bits(out).reshape(-1) != _bits(adv).reshape(-1))
    if bad.size == 0:
        plain, enc = Encoded('delta', 'float32', 0, delta), palette(np.uint16)
        # a palette of up to 65536 float32 values is no longer negligible: compare compressed sizes
        return plain if enc is None or _deflated_size(plain) <= _deflated_size(enc) else enc
    index_dtype = np.uint32 if adv.size < 2 ** 32 else np.int64
    if bad.size * (np.dtype(index_dtype).itemsize + 4) >= adv.nbytes // 2:
        return Encoded('adv', 'float32', 0, adv)
    delta.reshape(-1)[bad] = 0  # stored verbatim below; zeros compress better
    return Encoded('delta', 'float32', 0, delta, bad.astype(index_dtype), adv.reshape(-1)[bad])


# -- the store -----------------------------------------------------------------------------------

def _as_numpy(x: ArrayLike, what: str) -> np.ndarray:
    if hasattr(x, 'detach'):  # a torch tensor
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.dtype != np.float32:
        raise ValueError(f'{what} must be float32 (pixel values 0-255), got {x.dtype}')
    return np.ascontiguousarray(x)


def _image_digests(images: np.ndarray) -> List[str]:
    return [sha256_bytes(img.tobytes()) for img in images]


def _check_ids(image_ids: Sequence[str], n: Optional[int] = None) -> List[str]:
    ids = list(image_ids)
    if not all(isinstance(i, str) and i for i in ids):
        raise ValueError('image ids must be non-empty strings')
    if len(set(ids)) != len(ids):
        raise ValueError('image ids of a batch must be unique')
    if n is not None and len(ids) != n:
        raise ValueError(f'{len(ids)} image ids for a batch of {n} images')
    return ids


def _batch_stem(image_ids: Sequence[str]) -> str:
    return 'batch_' + hashlib.sha256('\n'.join(image_ids).encode()).hexdigest()[:16]


@dataclasses.dataclass
class _Batch:
    manifest_path: Path
    manifest: Dict[str, Any]

    @property
    def npz_path(self) -> Path:
        return self.manifest_path.parent / self.manifest['file']


class AdversarialStore:
    """Stores adversarial images as lossless, compressed perturbations (see the module docstring).

    Args:
        root: The store's folder; default :func:`default_root`.

    Example:
        >>> store = AdversarialStore()
        >>> key = AdvKey('synthcity_val', 'fcn8s_vgg16-w8_synthcity', 'ifgsm', {'alpha': 1}, 8.0)
        >>> todo = store.missing(key, ids)              # what still needs generating
        >>> store.put(key, ids, images, adv)            # one batch, atomically
        >>> adv = store.get(key, ids, images)           # bit-identical to what was put
    """

    def __init__(self, root: Optional[Union[str, os.PathLike]] = None):
        self.root = Path(root) if root is not None else default_root()
        self._index: Dict[Path, Dict[str, _Batch]] = {}  # group dir -> manifest name -> batch
        self._keys_checked: set = set()

    # -- locations ---------------------------------------------------------------------------

    def group_dir(self, key: AdvKey) -> Path:
        """The folder of one key's batches."""
        return self.root / key.relative_dir()

    def check_writable(self) -> None:
        """Raise :class:`ResultsError` unless the root is a writable directory (created if
        missing)."""
        check_writable_dir(self.root, 'the adversarial-example store')

    # -- writing -----------------------------------------------------------------------------

    def put(self, key: AdvKey, image_ids: Sequence[str], images: ArrayLike, adv: ArrayLike) -> Path:
        """Store one batch of adversarial images (atomically); returns its manifest's path.

        Storing the same image ids again replaces that batch.

        Args:
            key: What generated them.
            image_ids: One id per image, unique.
            images: Clean images, float32 ``(N, 3, H, W)`` in [0, 255] (tensor or array).
            adv: Adversarial images, same shape and dtype.

        Raises:
            ModelError: ``adv`` holds NaN or infinite values.
            ResultsError: the store cannot be written (names the path).
        """
        images = _as_numpy(images, 'images')
        adv = _as_numpy(adv, 'adversarial images')
        if images.shape != adv.shape or images.ndim < 1:
            raise ValueError(f'images {images.shape} and adversarial images {adv.shape} differ '
                             'in shape')
        ids = _check_ids(image_ids, len(images))
        if not np.isfinite(adv).all():
            raise ModelError(f'the adversarial images of {key.describe()} hold NaN or infinite '
                             f'values (images {ids[0]}...); refusing to store them. Check the '
                             'source model for NaN logits or gradients.')
        enc = encode(images, adv)  # checked there: decode(enc, images) has the bits of adv
        arrays = {'values': enc.values, 'image_ids': np.array(ids),
                  'image_sha256': np.array(_image_digests(images))}
        if enc.patch_index is not None:
            arrays.update(patch_index=enc.patch_index, patch_value=enc.patch_value)
        if enc.palette is not None:
            arrays['palette'] = enc.palette
        data = _npz_bytes(arrays)
        directory = self.group_dir(key)
        stem = _batch_stem(ids)
        manifest = {'format': FORMAT_VERSION, 'key_hash': key.key_hash, 'image_ids': ids,
                    'shape': list(adv.shape), 'encoding': enc.describe(), 'file': f'{stem}.npz',
                    'sha256': sha256_bytes(data), 'bytes': len(data)}
        self._write_key(key, directory)
        npz_path, json_path = directory / f'{stem}.npz', directory / f'{stem}.json'
        json_data = (json.dumps(manifest, indent=1) + '\n').encode()
        # the .npz first: a manifest never names a file that is not there yet; replacing a batch
        # retires its manifest first, so no crash leaves an old manifest beside a new .npz
        tmp_npz = write_temporary(npz_path, data)
        try:
            tmp_json = write_temporary(json_path, json_data)
        except BaseException:
            remove_quietly(tmp_npz)
            raise
        commit([(tmp_npz, npz_path), (tmp_json, json_path)],
               retire=json_path if json_path.exists() else None)
        self._index.setdefault(directory, {})[json_path.name] = _Batch(json_path, manifest)
        logger.debug('stored %d adversarial images of %s as %s (%d bytes)', len(ids),
                     key.describe(), enc.describe(), len(data))
        return json_path

    def _write_key(self, key: AdvKey, directory: Path) -> None:
        path = directory / KEY_FILE
        if directory in self._keys_checked:
            return
        if path.is_file():
            self._check_key(key, directory)
        else:
            data = json.dumps({'format': FORMAT_VERSION, 'key': key.to_dict(),
                               'key_hash': key.key_hash}, indent=1, sort_keys=True) + '\n'
            atomic_write_bytes(path, data.encode())
            self._keys_checked.add(directory)

    def _check_key(self, key: AdvKey, directory: Path) -> None:
        if directory in self._keys_checked:
            return
        path = directory / KEY_FILE
        try:
            stored = json.loads(path.read_text())
            same = (stored.get('format') == FORMAT_VERSION and
                    canonical_json(stored.get('key')) == canonical_json(key.to_dict()))
        except (OSError, ValueError) as e:
            raise ResultsError(f'{path}: cannot be read ({e}); expected the JSON key of the '
                               'adversarial examples stored beside it. Delete the folder to '
                               'generate them again.') from None
        if not same:
            raise ResultsError(f'{path}: holds another key than {key.describe()} (format '
                               f'{stored.get("format")!r}, key {stored.get("key")!r}); the file '
                               'was edited or written by another version. Delete the folder to '
                               'generate them again.')
        self._keys_checked.add(directory)

    # -- the index ---------------------------------------------------------------------------

    def _batches(self, key: AdvKey) -> List[_Batch]:
        """Manifests of the group, read once per process and refreshed when files appear/go."""
        directory = self.group_dir(key)
        try:
            names = sorted(n for n in os.listdir(directory) if _BATCH.match(n))
        except FileNotFoundError:
            self._index.pop(directory, None)
            return []
        except OSError as e:
            raise ResultsError(f'cannot list {directory}: {e.strerror or e}') from None
        cached = self._index.setdefault(directory, {})
        for gone in set(cached) - set(names):
            del cached[gone]
        for name in names:
            if name in cached:
                continue
            path = directory / name
            try:
                manifest = json.loads(path.read_text())
            except FileNotFoundError:
                continue  # replaced or removed meanwhile
            except (OSError, ValueError) as e:
                raise ResultsError(f'{path}: cannot be read as a batch manifest ({e}); delete it '
                                   'and its .npz to generate the batch again.') from None
            problem = self._manifest_problem(key, manifest, name)
            if problem:
                raise ResultsError(f'{path}: {problem}; delete it and its .npz to generate the '
                                   'batch again.')
            cached[name] = _Batch(path, manifest)
        if names:
            self._check_key(key, directory)
        return [cached[n] for n in names if n in cached]

    @staticmethod
    def _manifest_problem(key: AdvKey, m: Any, name: str) -> Optional[str]:
        if not isinstance(m, dict):
            return 'not a JSON object'
        if m.get('format') != FORMAT_VERSION:
            return f'format {m.get("format")!r}, expected {FORMAT_VERSION}'
        if m.get('key_hash') != key.key_hash:
            return f'key hash {m.get("key_hash")!r} is not the folder\'s {key.key_hash}'
        ids = m.get('image_ids')
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            return 'image_ids is not a non-empty list of strings'
        if f'{_batch_stem(ids)}.json' != name:
            return 'its image ids do not match its file name'
        if m.get('file') != f'{_batch_stem(ids)}.npz' or not isinstance(m.get('sha256'), str):
            return 'file or sha256 missing or wrong'
        return None

    def stored_ids(self, key: AdvKey) -> List[str]:
        """Ids of every image stored under ``key`` (sorted): named by a manifest whose ``.npz`` is
        there (a batch file deleted by hand is generated again; its content is verified on read)."""
        return sorted({i for b in self._batches(key) if b.npz_path.is_file()
                       for i in b.manifest['image_ids']})

    def missing(self, key: AdvKey, image_ids: Sequence[str]) -> List[str]:
        """The ids of ``image_ids`` (in their order) that are not stored under ``key``.

        An interrupted generation resumes by generating exactly these. A batch counts as stored
        when its manifest is (its ``.npz`` is renamed into place first); its content is verified
        when it is read.
        """
        have = set(self.stored_ids(key))
        return [i for i in image_ids if i not in have]

    def has(self, key: AdvKey, image_ids: Sequence[str]) -> bool:
        """Whether every image of ``image_ids`` is stored under ``key``."""
        return not self.missing(key, image_ids)

    # -- reading -----------------------------------------------------------------------------

    def _load(self, batch: _Batch) -> Tuple[Encoded, List[str], List[str]]:
        """Read and verify one batch file: ``(encoding, image ids, clean-image sha256s)``."""
        path, m = batch.npz_path, batch.manifest
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ResultsError(f'{path}: cannot be read ({e.strerror or e}); the batch named by '
                               f'{batch.manifest_path.name} is missing. Delete the manifest to '
                               'generate it again.') from None
        if sha256_bytes(data) != m['sha256']:
            raise ResultsError(f'{path}: its sha256 is not the one in {batch.manifest_path.name}: '
                               'the file was truncated or edited. Delete both files to generate '
                               'the batch again.')
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, zipfile.BadZipFile, KeyError) as e:
            raise ResultsError(f'{path}: cannot be loaded as numpy arrays ({e})') from None
        enc_info = m['encoding']
        values = arrays.get('values')
        ids = [str(i) for i in arrays.get('image_ids', [])]
        if (values is None or ids != m['image_ids'] or list(values.shape) != m['shape']
                or values.dtype.name != enc_info.get('dtype')
                or enc_info.get('payload') not in ('delta', 'adv')):
            raise ResultsError(f'{path}: its arrays do not match {batch.manifest_path.name} '
                               '(image ids, shape or encoding); delete both to generate the batch '
                               'again.')
        enc = Encoded(enc_info['payload'], enc_info['dtype'], int(enc_info.get('grid_log2', 0)),
                      values, arrays.get('patch_index'), arrays.get('patch_value'),
                      arrays.get('palette'))
        if (enc.palette is None) != (not enc_info.get('palette')) or \
                (enc.palette is not None and enc.palette.size != enc_info['palette']):
            raise ResultsError(f'{path}: its palette does not match {batch.manifest_path.name}; '
                               'delete both to generate the batch again.')
        return enc, ids, [str(s) for s in arrays['image_sha256']]

    def get(self, key: AdvKey, image_ids: Sequence[str], images: ArrayLike) -> ArrayLike:
        """The stored adversarial images of ``image_ids``, rebuilt as ``images + δ`` bit for bit.

        Any subset of the stored images can be read, in any order and across batches.

        Args:
            key: What generated them.
            image_ids: The ids wanted.
            images: Their clean images (float32 ``(N, 3, H, W)``, in the order of ``image_ids``),
                the same the adversarial images were generated from.

        Returns:
            The adversarial images: a tensor on ``images``' device if ``images`` is a tensor, a
            numpy array otherwise.

        Raises:
            ResultsError: an image is not stored, a batch file is missing, truncated or edited, or
                a clean image differs from the one its perturbation was computed for.
        """
        as_torch = hasattr(images, 'detach')
        clean = _as_numpy(images, 'images')
        ids = _check_ids(image_ids, len(clean))
        where: Dict[str, _Batch] = {}
        for batch in self._batches(key):
            for i in batch.manifest['image_ids']:
                where.setdefault(i, batch)
        absent = [i for i in ids if i not in where]
        if absent:
            raise ResultsError(f'{len(absent)} of {len(ids)} images are not stored for '
                               f'{key.describe()} in {self.group_dir(key)} (first: {absent[0]}); '
                               'generate them first (AdversarialStore.missing lists them).')
        out = np.empty_like(clean)
        wanted = {i: n for n, i in enumerate(ids)}
        groups: Dict[Path, Tuple[_Batch, List[str]]] = {}
        for i in ids:
            groups.setdefault(where[i].manifest_path, (where[i], []))[1].append(i)
        for batch, members in groups.values():
            try:
                enc, batch_ids, digests = self._load(batch)
            except ResultsError:
                # another process may have replaced the batch since it was indexed: re-read its
                # manifest once; the same manifest means the file itself is damaged
                self._index.get(batch.manifest_path.parent, {}).pop(batch.manifest_path.name, None)
                fresh = {b.manifest_path: b for b in self._batches(key)}.get(batch.manifest_path)
                if fresh is None or fresh.manifest == batch.manifest:
                    raise
                batch = fresh
                enc, batch_ids, digests = self._load(batch)
            rows = [batch_ids.index(i) for i in members]
            dest = [wanted[i] for i in members]
            if list(clean.shape[1:]) != batch.manifest['shape'][1:]:
                raise ResultsError(f'{batch.npz_path}: stores images of shape '
                                   f'{batch.manifest["shape"][1:]}, the clean images given are '
                                   f'{list(clean.shape[1:])}; the dataset or its loading changed. '
                                   'Delete the folder to generate them again.')
            full = np.zeros(batch.manifest['shape'], dtype=np.float32)
            full[rows] = clean[dest]
            for r, i in zip(rows, members):
                if sha256_bytes(full[r].tobytes()) != digests[r]:
                    raise ResultsError(
                        f'{batch.npz_path}: the clean image {i} given now differs from the one its '
                        'adversarial perturbation was computed for (the dataset changed, or images '
                        'were loaded differently); delete the folder to generate them again.')
            if enc.payload == 'delta' and enc.patch_index is None:  # decode the rows wanted
                adv = decode(Encoded('delta', enc.dtype, enc.grid_log2, enc.values[rows],
                                     palette=enc.palette), full[rows])
            else:  # patches index the whole batch (rows not wanted decode over zeros, unused)
                adv = decode(enc, full)[rows]
            out[dest] = adv
        if as_torch:
            import torch
            return torch.from_numpy(out).to(images.device)
        return out

    def verify(self, key: AdvKey) -> int:
        """Read every batch of ``key`` (sha256, arrays against manifests); returns the image count.

        Raises:
            ResultsError: the first batch that fails.
        """
        n = 0
        for batch in self._batches(key):
            n += len(self._load(batch)[1])
        return n

    # -- sizes -------------------------------------------------------------------------------

    def keys(self) -> List[AdvKey]:
        """Every key with a group folder under the root (read from the ``key.json`` files), sorted
        by folder.

        Raises:
            ResultsError: a ``key.json`` cannot be read or does not hold a key.
        """
        keys = []
        for path in sorted(self.root.glob(f'*/*/*/{KEY_FILE}')):
            try:
                keys.append(AdvKey.from_dict(json.loads(path.read_text())['key']))
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise ResultsError(f'{path}: cannot be read as the key of stored adversarial '
                                   f'examples ({type(e).__name__}: {e}); delete its folder to '
                                   'generate them again.') from None
        return keys

    def stats(self, key: Optional[AdvKey] = None) -> Dict[str, Any]:
        """Sizes from the manifests, for one key or (``None``) the whole store.

        Returns:
            ``images`` (of the key; summed over keys for the store), ``batches``, ``bytes`` (the
            ``.npz`` files), ``total_bytes`` (every file, manifests and ``key.json`` included),
            ``bytes_per_image`` (``bytes / images``), ``encodings`` (batches per encoding, e.g.
            ``{'delta int8': 3, 'delta int8/2^2': 1}``) and ``keys`` (1 for a key).
        """
        keys = [key] if key is not None else self.keys()
        images = batches = payload = 0
        encodings: Dict[str, int] = {}
        for k in keys:
            found = self._batches(k)
            images += len({i for b in found for i in b.manifest['image_ids']})
            batches += len(found)
            payload += sum(int(b.manifest['bytes']) for b in found)
            for b in found:
                e = b.manifest['encoding']
                name = f'{e["payload"]} {e["dtype"]}' + \
                    (f'/2^{e["grid_log2"]}' if e['grid_log2'] else '') + \
                    (f' palette {e["palette"]}' if e['palette'] else '') + \
                    (f' +{e["patched"]} patched' if e['patched'] else '')
                encodings[name] = encodings.get(name, 0) + 1
        total = _tree_size(self.group_dir(key) if key is not None else self.root)
        return {'keys': len(keys), 'images': images, 'batches': batches, 'bytes': payload,
                'total_bytes': total, 'bytes_per_image': payload / images if images else 0.0,
                'encodings': encodings}

    def size_bytes(self, prefix: Optional[Union[AdvKey, str, os.PathLike]] = None) -> int:
        """Bytes of every file under the root, or under ``prefix``: a key (its group), or a path
        relative to the root (``'<dataset>'``, ``'<dataset>/<source>'``)."""
        if prefix is None:
            base = self.root
        elif isinstance(prefix, AdvKey):
            base = self.group_dir(prefix)
        else:
            base = self.root / prefix
        return _tree_size(base)

    # -- maintenance -------------------------------------------------------------------------

    def sweep_temporary(self, key: Optional[AdvKey] = None) -> List[Path]:
        """Remove temporary files left by killed writes (in one group, or anywhere under the root),
        and ``.npz`` files that no manifest names (a write killed between its two renames).

        Call it only when no other process writes there (e.g. while holding the runner's lock):
        a live writer's temporary file would be removed too. Returns the removed paths.
        """
        base = self.group_dir(key) if key is not None else self.root
        if not base.exists():
            return []
        doomed = list(find_temporary(base))
        for npz in base.rglob('batch_*.npz'):
            if not npz.with_suffix('.json').exists():
                doomed.append(npz)
        removed = []
        for path in doomed:
            try:
                path.unlink()
                removed.append(path)
            except FileNotFoundError:
                pass
        if removed:
            logger.info('removed %d files of interrupted writes under %s', len(removed), base)
        return removed

    def discard(self, key: AdvKey) -> None:
        """Remove everything stored under ``key`` (``--force``: generate again)."""
        directory = self.group_dir(key)
        self._index.pop(directory, None)
        self._keys_checked.discard(directory)
        shutil.rmtree(directory, ignore_errors=True)


def _npz_bytes(arrays: Dict[str, np.ndarray]) -> bytes:
    """``np.savez_compressed``'s format (``np.load`` reads it), but the same bytes for the same
    arrays: the zip entries carry a fixed date instead of the time of writing, so a resumed
    generation ends with exactly the files of an uninterrupted one."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w', compression=zipfile.ZIP_DEFLATED) as zf:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f'{name}.npy', date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, 'w', force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(array), allow_pickle=False)
    return buf.getvalue()


def _tree_size(base: Path) -> int:
    if base.is_file():
        return base.stat().st_size
    total = 0
    for dirpath, _, files in os.walk(base):
        for name in files:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:
                pass
    return total
