"""Evaluation datasets through mmsegmentation's dataset classes.

A suite names its dataset with a dict; :func:`build_eval_dataset` turns it into an
:class:`EvalDataset` that yields ``(image, label, image_id)`` with the image a float RGB tensor
``(3, H, W)`` in [0, 255] (the pixel-space contract) and the label an int64 tensor ``(H, W)`` of
train ids (255 = ignore).

Supported ``type`` values:

* ``synthetic_cityscapes`` – the embedded default: generated on first use into a cache directory
  (see :mod:`benchmark.datasets.synthetic`), then read by mmseg's ``CityscapesDataset``.
* ``cityscapes`` – Cityscapes ``leftImg8bit``/``gtFine`` with ``*_labelTrainIds.png`` (create them
  with cityscapesscripts), resized to 1024×512 by default as in Arnab et al. (bilinear for images,
  nearest for labels).
* ``voc`` – Pascal VOC 2012 ``JPEGImages``/``SegmentationClass``, ``ImageSets/Segmentation/val.txt``
  or any image-list file (for example Arnab et al.'s 346-image reduced validation set).

Any of them accepts ``image_list`` (a text file of image ids, one per line, as mmseg's ``ann_file``;
blank lines and surrounding spaces are ignored, Windows line endings are fine, an id listed twice is
refused), ``num_images`` (keep the first N images in sorted order; at most the number of images
there are) and ``resize`` (two positive ints, mmcv's ``Resize(scale=..., keep_ratio=True)``: the
image is scaled with its aspect ratio kept until its long side fits the first and its short side
the second number).

Paths: a relative ``data_root`` (and the synthetic dataset's ``root``) is resolved against the
repository root (:data:`benchmark.provenance.REPO_ROOT`), never against the directory a command is
started from. A relative ``image_list`` is looked up under ``data_root`` first (mmseg's convention
for ``ann_file``, used by ``arnab2018_voc.py``) and then under the repository root.

Checks. When the dataset is built, every selected sample's image and label file is opened with PIL
to read its header only (no pixel decoding) and its last bytes are checked for the PNG/JPEG end
marker, so a missing, empty, truncated or corrupt file, a label map whose size differs from its
image's, a colour-coded (RGB) or otherwise non-single-channel label map and a JPEG label map fail
before any model is built. When a sample is loaded (:meth:`EvalDataset.__getitem__`; the runner
loads every image for the clean pass before any attack) its label ids are checked against the
dataset's classes (ids ``0..C-1`` and the ignore index 255), before any resize.

What mmseg does with label files (mmseg 1.2.2, ``LoadAnnotations._load_seg_map``): it decodes with
``mmcv.imfrombytes(..., flag='unchanged', backend='pillow')``, so a palette ('P') PNG gives its
palette indices (VOC's class ids), an 'L' PNG its grey values, and a 16-bit PNG stays ``uint16``;
then it casts with ``.astype(np.uint8)``, which silently wraps 16-bit ids modulo 256. That is why
16-bit label files are checked here on their raw values (they are accepted only when every id fits
in 8 bits, where the cast is lossless). ``reduce_zero_label`` is ``False`` for both
``CityscapesDataset`` and ``PascalVOCDataset``: ids are used as stored, 255 stays the ignore index.
The label map is loaded before ``Resize`` in the pipeline, so mmseg's ``Resize`` (mmcv's, applied
to every map in ``seg_fields``, which ``LoadAnnotations`` fills) scales the image bilinearly and the
label map with nearest-neighbour interpolation to the same size.
"""
from __future__ import annotations

import hashlib
import logging
import numbers
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import DatasetError
from ..provenance import REPO_ROOT

logger = logging.getLogger(__name__)

CITYSCAPES_LAYOUT = """\
  <data_root>/
    leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png
  (make the labelTrainIds files with cityscapesscripts' createTrainIdLabelImgs)"""

VOC_LAYOUT = """\
  <data_root>/                        (e.g. data/VOCdevkit/VOC2012)
    JPEGImages/<id>.jpg
    SegmentationClass/<id>.png        (palette PNGs, 255 = boundary/ignore)
    ImageSets/Segmentation/val.txt    (or your own list, e.g. the 346-image reduced val set)"""

DATASET_TYPES = ('synthetic_cityscapes', 'cityscapes', 'voc')
IGNORE_INDEX = 255
# Label modes PIL reports for PNGs: 8-bit maps are read as they are; 16/32-bit integer maps are
# read by mmseg too, but cast to uint8, so their raw ids are checked when a sample is loaded.
_LABEL_MODES_8BIT = ('L', 'P')
_LABEL_MODES_WIDE = ('I', 'I;16', 'I;16L', 'I;16B', 'I;16N')
_RELATIVE_NOTE = 'relative paths are resolved against the repository root {root}'
_MAX_LISTED = 5


@dataclass
class EvalDataset:
    """A list of evaluation samples produced by an mmseg dataset and its test pipeline.

    ``label_modes`` maps the mmseg index of every sample whose label PNG is not 8-bit to its PIL
    mode; those labels are checked on their raw values when loaded (mmseg casts them to uint8).
    """

    name: str
    split: str
    root: Optional[str]
    class_names: Tuple[str, ...]
    mmseg_dataset: object = field(repr=False)
    indices: List[int] = field(repr=False)
    label_modes: Dict[int, str] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def image_ids(self) -> List[str]:
        return [self._image_id(i) for i in self.indices]

    def image_ids_sha256(self) -> str:
        """Identity of the image list (records of a different list are never mixed)."""
        return hashlib.sha256('\n'.join(self.image_ids()).encode()).hexdigest()

    def _image_id(self, index: int) -> str:
        info = self.mmseg_dataset.get_data_info(index)
        img_dir = Path(self.mmseg_dataset.data_prefix.get('img_path', ''))
        path = Path(info['img_path'])
        try:
            return str(path.relative_to(img_dir))
        except ValueError:
            return path.name

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, torch.Tensor, str]:
        """Load sample ``i`` through the mmseg pipeline, checking its label before any resize.

        Raises:
            DatasetError: a file cannot be decoded, the decoded image and label differ in size,
                or the label holds ids outside the dataset's classes.
        """
        index = self.indices[i]
        results = self._load(index)
        img = results['img']                      # H x W x 3, BGR (OpenCV), uint8
        label = results['gt_seg_map']             # H x W
        image = torch.from_numpy(np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1))).float()
        return image, torch.from_numpy(label.astype(np.int64)), self._image_id(index)

    def _load(self, index: int) -> dict:
        """Run the mmseg test pipeline transform by transform (mmseg's ``prepare_data``), so the
        label map is checked right after it is loaded and before ``Resize`` changes it."""
        info = self.mmseg_dataset.get_data_info(index)
        img_path, seg_path = info['img_path'], info.get('seg_map_path')
        results = info
        checked = False
        for transform in self.mmseg_dataset.pipeline.transforms:
            image_loaded = 'img' in results
            try:
                out = transform(results)
            except _decode_errors() as e:
                path, what = (seg_path, 'label map') if image_loaded else (img_path, 'image')
                # mmcv asserts when OpenCV returns no image; its message only repeats the path
                detail = ('OpenCV could not decode it' if isinstance(e, AssertionError)
                          else f'{type(e).__name__}: {e}')
                raise DatasetError(f'cannot decode {what} {path}: {detail}. The file may be '
                                   'truncated or corrupt; expected a readable '
                                   + ('PNG' if what == 'label map' else 'image') + ' file') from None
            if out is None:
                raise DatasetError(f'cannot load image {img_path} (the mmseg pipeline returned no '
                                   'data); expected a readable image file')
            results = out
            if not checked and 'gt_seg_map' in results:
                self._check_label(index, results, img_path, seg_path)
                checked = True
        return results

    def _check_label(self, index: int, results: dict, img_path: str, seg_path: str) -> None:
        label = results['gt_seg_map']
        img_hw = tuple(results['img'].shape[:2])
        if label.ndim != 2 or tuple(label.shape) != img_hw:
            raise DatasetError(
                f'label map {seg_path} decodes to shape {tuple(label.shape)} but its image '
                f'{img_path} to {img_hw} (height, width); expected a single-channel label map of '
                "the image's size (an image with an EXIF orientation tag is rotated when decoded)")
        mode = self.label_modes.get(index)
        if mode is not None:
            _check_wide_label(Path(seg_path), mode, self.name, self.num_classes)
        counts = np.bincount(label.ravel(), minlength=256) if label.dtype == np.uint8 else \
            np.bincount(label.astype(np.int64).ravel().clip(0))
        present = np.flatnonzero(counts)
        bad = [int(v) for v in present if v >= self.num_classes and v != IGNORE_INDEX]
        if bad:
            raise DatasetError(_bad_ids_message(Path(seg_path), bad, self.name, self.num_classes))

    def batches(self, batch_size: int, start: int = 0) -> Iterator[Tuple[torch.Tensor, torch.Tensor, List[str]]]:
        """Yield batches of consecutive images with equal size (a size change starts a new batch)."""
        images, labels, ids = [], [], []
        for i in range(start, len(self)):
            image, label, image_id = self[i]
            if images and (len(images) == batch_size or image.shape != images[0].shape):
                yield torch.stack(images), torch.stack(labels), ids
                images, labels, ids = [], [], []
            images.append(image)
            labels.append(label)
            ids.append(image_id)
        if images:
            yield torch.stack(images), torch.stack(labels), ids


def _decode_errors() -> Tuple[type, ...]:
    """What decoding a broken file raises: PIL (OSError, SyntaxError, ValueError), mmcv's
    ``assert img is not None`` after OpenCV returns nothing, and OpenCV's own error type."""
    errors: Tuple[type, ...] = (OSError, SyntaxError, ValueError, EOFError, AssertionError)
    try:
        import cv2
        errors += (cv2.error,)
    except ImportError:  # pragma: no cover - mmcv depends on OpenCV
        pass
    return errors


def _classes_text(kind: str, num_classes: int) -> str:
    if kind == 'voc':
        return f'the {num_classes} Pascal VOC classes 0-{num_classes - 1} (255 = boundary/ignore)'
    return f'the {num_classes} Cityscapes train ids 0-{num_classes - 1} (255 = ignore)'


def _list_values(values: Sequence, limit: int = 10) -> str:
    shown = ', '.join(str(v) for v in values[:limit])
    return shown + (f' and {len(values) - limit} more' if len(values) > limit else '')


def _bad_ids_message(path: Path, bad: List[int], kind: str, num_classes: int) -> str:
    msg = (f'label map {path} holds ids {_list_values(bad)}, outside '
           f'{_classes_text(kind, num_classes)}.')
    if kind == 'voc':
        return msg + (' Expected SegmentationClass PNGs of class indices (palette mode, as in '
                      'VOC2012; SegmentationObject PNGs hold instance numbers, not classes)')
    if max(bad) <= 33:
        msg += (' This looks like a Cityscapes *_gtFine_labelIds.png file (label ids 0-33) given '
                'instead of *_gtFine_labelTrainIds.png.')
    return msg + (" Expected train-id maps (*_gtFine_labelTrainIds.png, made with cityscapesscripts' "
                  'createTrainIdLabelImgs)')


def _check_wide_label(path: Path, mode: str, kind: str, num_classes: int) -> None:
    """Refuse a 16/32-bit label map whose ids do not fit in 8 bits (mmseg would wrap them)."""
    from PIL import Image
    with Image.open(path) as im:
        raw = np.asarray(im)
    low, high = int(raw.min()), int(raw.max())
    if low < 0 or high > 255:
        raise DatasetError(
            f'label map {path} is a 16-bit image (PIL mode {mode}) with ids from {low} to {high}; '
            f'label maps must be 8-bit PNGs (mode L or P) of {"class" if kind == "voc" else "train"} '
            f'ids: {_classes_text(kind, num_classes)}. '
            'mmseg reads it and casts it to 8 bits, which would wrap these ids modulo 256 '
            '(Cityscapes *_instanceIds.png files are 16-bit instance ids, not labels)')


def _pipeline(resize: Optional[Sequence[int]]) -> List[dict]:
    """The test pipeline: the label map is loaded before ``Resize`` so it is resized with it
    (bilinear for the image, nearest for the label map; mmseg's ``Resize``)."""
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations')]
    if resize is not None:
        pipeline.append(dict(type='Resize', scale=tuple(resize), keep_ratio=True))
    return pipeline


def _resolve(value, option: str) -> Tuple[Path, str]:
    """A user path and how to name it in messages (relative paths are anchored at REPO_ROOT)."""
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise DatasetError(f'{option} must be a path (a non-empty string), got {value!r}')
    path = Path(value).expanduser()
    if path.is_absolute():
        return path, str(path)
    # normpath only tidies 'a/../b' for messages and records (REPO_ROOT itself is resolved)
    return Path(os.path.normpath(REPO_ROOT / path)), f'{path} ({_RELATIVE_NOTE.format(root=REPO_ROOT)})'


def _check_dir(path: Path, what: str, layout: str, shown: Optional[str] = None) -> None:
    shown = shown or str(path)
    if path.is_file():
        raise DatasetError(f'{what} {shown} is a file, not a folder. Expected this layout:\n{layout}')
    if not path.is_dir():
        raise DatasetError(f'{what} directory {shown} does not exist. Expected this layout:\n{layout}')


def _subfolders(path: Path) -> List[str]:
    return sorted(p.name for p in path.iterdir() if p.is_dir()) if path.is_dir() else []


def _check_resize(value) -> Optional[Tuple[int, int]]:
    if value is None:
        return None
    ok = (isinstance(value, (tuple, list)) and len(value) == 2
          and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in value))
    if not ok:
        raise DatasetError(f'resize must be two positive integers (long side, short side), e.g. '
                           f'(1024, 512), or None for the original size; got {value!r}')
    return int(value[0]), int(value[1])


def _check_num_images(value) -> Optional[int]:
    if value is None:
        return None
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise DatasetError(f'num_images must be a positive integer (or omitted for all images), '
                           f'got {value!r}')
    return int(value)


def _find_image_list(value, data_root: Path) -> Path:
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise DatasetError(f'image_list must be a path (a non-empty string), got {value!r}')
    path = Path(value).expanduser()
    candidates = [path] if path.is_absolute() else [data_root / path, REPO_ROOT / path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    folder = next((c for c in candidates if c.is_dir()), None)
    if folder is not None:
        raise DatasetError(f'image list {folder} is a folder; expected a text file with one image '
                           'id per line')
    if path.is_absolute():
        where = f'{path} does not exist'
    else:
        where = (f'{value} does not exist: neither {candidates[0]} nor {candidates[1]} is a file (a '
                 'relative image_list is looked up under data_root, then under the repository root)')
    raise DatasetError(f'image list {where}; expected a text file with one image id per line (the '
                       'path relative to the image folder, without suffix)')


def _read_image_list(path: Path) -> List[str]:
    """The ids of an image list, as mmseg reads them (each line stripped), blank lines dropped.

    mmseg's ``BaseSegDataset.load_data_list`` reads the ``ann_file`` with mmengine's
    ``list_from_file`` (text mode, so ``\\r\\n`` becomes ``\\n``) and strips each line, but keeps
    blank lines as samples with an empty name; those are left out of the selection here.
    """
    data = path.read_bytes()
    if data.startswith(b'\xef\xbb\xbf'):
        raise DatasetError(f'image list {path} starts with a UTF-8 byte-order mark, which mmseg '
                           'would read as part of the first image id; expected plain text (save '
                           'it as UTF-8 without BOM)')
    try:
        text = data.decode('utf-8')
    except UnicodeDecodeError as e:
        raise DatasetError(f'image list {path} is not a UTF-8 text file ({e.reason} at byte '
                           f'{e.start}); expected one image id per line') from None
    ids = [line.strip() for line in text.splitlines()]
    ids = [i for i in ids if i]
    if not ids:
        raise DatasetError(f'image list {path} names no image ids (it is empty or has only blank '
                           'lines); expected one image id per line')
    counts = Counter(ids)
    dups = [i for i, n in counts.items() if n > 1]
    if dups:
        raise DatasetError(f'image list {path} names {_list_values(dups, _MAX_LISTED)} more than '
                           'once; each image must be listed once (a duplicate would count it '
                           'twice in every metric)')
    return ids


def _select_listed(dataset, ids: List[str], list_path: Path) -> List[int]:
    """mmseg indices of the listed ids (every id must name an existing image)."""
    img_dir = dataset.data_prefix.get('img_path', '')
    suffix = dataset.img_suffix
    wanted = {os.path.join(img_dir, i + suffix): i for i in ids}
    missing = [i for p, i in wanted.items() if not os.path.isfile(p)]
    if missing:
        hint = ''
        if any(i.endswith(suffix) or i.endswith(Path(suffix).suffix) for i in missing):
            hint = f' (give ids without the {suffix!r} suffix)'
        raise DatasetError(
            f'image list {list_path} names {len(missing)} image id(s) with no image in {img_dir}: '
            f'{_list_values(missing, _MAX_LISTED)}; expected {img_dir}/<id>{suffix} for every '
            f'id{hint}')
    by_path = {dataset.get_data_info(k)['img_path']: k for k in range(len(dataset))}
    unmatched = [i for p, i in wanted.items() if p not in by_path]
    if unmatched:  # pragma: no cover - mmseg builds the same paths from the same lines
        raise DatasetError(f'image list {list_path}: mmseg did not read the ids '
                           f'{_list_values(unmatched, _MAX_LISTED)}; expected one id per line')
    return [by_path[p] for p in wanted]


def _probe(path: Path, what: str) -> Tuple[Tuple[int, int], str, Optional[str]]:
    """``(size, mode, format)`` from an image file's header, plus its end marker.

    Reads the header and the last bytes only (no pixel decoding): a missing, empty, corrupt or
    truncated file is reported here, when the dataset is built, before any model is built.
    """
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            size, mode, fmt = im.size, im.mode, im.format
    except FileNotFoundError:
        raise DatasetError(f'{what} {path} does not exist; expected one for every image') from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        if path.is_file() and path.stat().st_size == 0:
            detail = 'the file is empty'
        elif isinstance(e, UnidentifiedImageError):  # its message only repeats the path
            detail = 'PIL does not recognise it as an image (a corrupt file, or not an image)'
        else:
            detail = f'{type(e).__name__}: {e}'
        raise DatasetError(f'cannot read {what} {path}: {detail}; expected a readable image file '
                           '(copy or extract it again)') from None
    # PIL reads only the header; a truncated file misses its end marker (PNG IEND chunk, JPEG
    # EOI), so checking the last bytes finds it without decoding the pixels.
    marker = {'PNG': (b'IEND', 64), 'JPEG': (b'\xff\xd9', 4096)}.get(fmt)
    if marker is not None:
        with open(path, 'rb') as f:
            f.seek(max(0, path.stat().st_size - marker[1]))
            tail = f.read()
        if marker[0] not in tail:
            raise DatasetError(f'{what} {path} is truncated: the {fmt} file ends before its end '
                               f'marker; expected a complete {fmt} file (copy or extract it again)')
    return size, mode, fmt


def _check_files(dataset, indices: Sequence[int], kind: str) -> Dict[int, str]:
    """Header checks of every selected sample; returns the indices with 16/32-bit labels."""
    wide = {}
    expected = ('a single-channel 8-bit PNG (mode L or P) of '
                + ('class ids' if kind == 'voc' else 'train ids'))
    example = ('SegmentationClass/<id>.png (palette PNGs)' if kind == 'voc'
               else '*_gtFine_labelTrainIds.png')
    for index in indices:
        info = dataset.get_data_info(index)
        img_path, seg_path = Path(info['img_path']), Path(info['seg_map_path'])
        img_size, _, _ = _probe(img_path, 'image')
        seg_size, mode, fmt = _probe(seg_path, 'label map')
        if fmt != 'PNG':
            raise DatasetError(f'label map {seg_path} is a {fmt} file; expected {expected} (lossy '
                               'formats change the ids)')
        if mode in ('RGB', 'RGBA'):
            culprit = ('a VOC label saved as RGB colours instead of palette indices' if kind == 'voc'
                       else 'e.g. a *_gtFine_color.png file')
            raise DatasetError(f'label map {seg_path} is a colour-coded {mode} image ({culprit}); '
                               f'expected {expected}, as {example}')
        if mode in _LABEL_MODES_WIDE:
            wide[index] = mode
        elif mode not in _LABEL_MODES_8BIT:
            raise DatasetError(f'label map {seg_path} has PIL mode {mode}; expected {expected}')
        if seg_size != img_size:
            raise DatasetError(
                f'label map {seg_path} is {seg_size[0]}x{seg_size[1]} (width x height) but its '
                f'image {img_path} is {img_size[0]}x{img_size[1]}; expected a label map of the '
                "image's size (resize both with the dataset's resize option, not the files)")
    return wide


def build_eval_dataset(spec: dict) -> EvalDataset:
    """Build the evaluation dataset a suite describes.

    Args:
        spec: ``dict(type=..., data_root=..., split='val', image_list=None, num_images=None,
            resize=...)``; ``synthetic_cityscapes`` also takes ``seed``, ``num_train``,
            ``num_val``, ``size`` and ``root`` (cache directory). Relative paths are resolved
            against the repository root (see the module docstring).

    Raises:
        DatasetError: unknown type or option, missing directories (with the expected layout), an
            unknown split, a bad ``resize``/``num_images``/``image_list``, no images, or image and
            label files that are unreadable or do not fit each other.
    """
    spec = dict(spec)
    kind = spec.pop('type', None)
    if kind not in DATASET_TYPES:
        raise DatasetError(f'unknown dataset type {kind!r}; expected one of {", ".join(DATASET_TYPES)}')
    split = spec.pop('split', 'val')
    if not isinstance(split, str) or not split or '/' in split:
        raise DatasetError(f"split must be the name of a split folder or list, e.g. 'val' or 'train', "
                           f'got {split!r}')
    image_list = spec.pop('image_list', None)
    num_images = _check_num_images(spec.pop('num_images', None))

    if kind in ('synthetic_cityscapes', 'cityscapes'):
        if kind == 'synthetic_cityscapes':
            from .synthetic import ensure_synthetic_cityscapes
            params = {k: spec.pop(k) for k in ('seed', 'num_train', 'num_val') if k in spec}
            for k, v in params.items():
                if isinstance(v, bool) or not isinstance(v, int) or v < (0 if k == 'seed' else 1):
                    raise DatasetError(f'built-in synthetic dataset: {k} must be an integer '
                                       f'{">= 0" if k == "seed" else "> 0"}, got {v!r}')
            if 'size' in spec:
                size = spec.pop('size')
                if (not isinstance(size, (list, tuple)) or len(size) != 2
                        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
                    raise DatasetError('built-in synthetic dataset: size must be (width, height), two '
                                       f'positive integers such as (256, 128), got {size!r}')
                params['size'] = tuple(size)
            root = spec.pop('root', None)
            if root is not None:
                root = _resolve(root, 'root')[0]
            try:
                data_root = ensure_synthetic_cityscapes(root, **params)
            except (ValueError, FileExistsError) as e:
                raise DatasetError(f'built-in synthetic dataset: {e}') from None
            except OSError as e:
                raise DatasetError(f'built-in synthetic dataset: cannot write it ({e.strerror}: '
                                   f'{e.filename}); it is generated into $SEGBENCH_CACHE (default '
                                   '~/.cache/segbench) or the `root` the suite gives: point either at '
                                   'a writable directory') from None
            data_root, shown = Path(data_root), str(data_root)
            resize = _check_resize(spec.pop('resize', None))
        else:
            if 'data_root' not in spec:
                raise DatasetError('the cityscapes dataset needs data_root. Expected this layout:\n'
                                   + CITYSCAPES_LAYOUT)
            data_root, shown = _resolve(spec.pop('data_root'), 'data_root')
            resize = _check_resize(spec.pop('resize', (1024, 512)))
        _check_dir(data_root, 'Cityscapes data_root', CITYSCAPES_LAYOUT, shown)
        _check_dir(data_root / 'leftImg8bit', 'Cityscapes image', CITYSCAPES_LAYOUT)
        _check_split(data_root / 'leftImg8bit', split, 'Cityscapes')
        _check_dir(data_root / 'gtFine' / split, 'Cityscapes label', CITYSCAPES_LAYOUT)
        cfg = dict(type='CityscapesDataset', data_root=str(data_root),
                   data_prefix=dict(img_path=f'leftImg8bit/{split}', seg_map_path=f'gtFine/{split}'),
                   pipeline=_pipeline(resize), test_mode=True, serialize_data=False)
        layout = CITYSCAPES_LAYOUT
    else:
        if 'data_root' not in spec:
            raise DatasetError('the voc dataset needs data_root. Expected this layout:\n' + VOC_LAYOUT)
        data_root, shown = _resolve(spec.pop('data_root'), 'data_root')
        resize = _check_resize(spec.pop('resize', None))
        _check_dir(data_root, 'Pascal VOC data_root', VOC_LAYOUT, shown)
        _check_dir(data_root / 'JPEGImages', 'Pascal VOC image', VOC_LAYOUT)
        _check_dir(data_root / 'SegmentationClass', 'Pascal VOC label', VOC_LAYOUT)
        if image_list is None:
            lists = data_root / 'ImageSets' / 'Segmentation'
            if not (lists / f'{split}.txt').is_file():
                found = sorted(p.stem for p in lists.glob('*.txt')) if lists.is_dir() else []
                raise DatasetError(
                    f'Pascal VOC split {split!r} not found: no image list {lists / f"{split}.txt"}; '
                    + (f'the splits there are: {", ".join(found)}' if found else
                       f'{lists} holds no image lists')
                    + ' (or give your own list with image_list=...). Expected this layout:\n'
                    + VOC_LAYOUT)
            image_list = f'ImageSets/Segmentation/{split}.txt'
        cfg = dict(type='PascalVOCDataset', data_root=str(data_root),
                   data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
                   pipeline=_pipeline(resize), test_mode=True, serialize_data=False)
        layout = VOC_LAYOUT
    if spec:
        raise DatasetError(f'unknown dataset option(s) for {kind}: {", ".join(sorted(spec))}')
    listed = None
    if image_list is not None:
        list_path = _find_image_list(image_list, data_root)
        listed = _read_image_list(list_path)
        cfg['ann_file'] = str(list_path)

    from mmengine.registry import DefaultScope
    from mmseg.registry import DATASETS
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope('mmseg'):
        try:
            dataset = DATASETS.build(cfg)
        except (FileNotFoundError, OSError, AssertionError) as e:
            raise DatasetError(f'cannot read the {kind} dataset at {shown}: {e}') from None
    if listed is not None:
        order = _select_listed(dataset, listed, list_path)
    else:
        order = list(range(len(dataset)))
    if not order:
        raise DatasetError(f'no images found for the {kind} dataset at {shown} (split {split!r}). '
                           f'Expected this layout:\n{layout}')
    order.sort(key=lambda i: dataset.get_data_info(i)['img_path'])
    if num_images is not None:
        if num_images > len(order):
            raise DatasetError(
                f'num_images={num_images} but the {kind} dataset at {data_root} (split {split!r}) '
                f'has only {len(order)} images; to evaluate all of them omit num_images, '
                f'otherwise ask for at most {len(order)}')
        order = order[:num_images]
    label_modes = _check_files(dataset, order, kind)
    logger.debug('%s %s: %d images, file headers checked', kind, split, len(order))
    return EvalDataset(name=kind, split=split, root=str(data_root),
                       class_names=tuple(dataset.metainfo['classes']), mmseg_dataset=dataset,
                       indices=order, label_modes=label_modes)


def _check_split(images: Path, split: str, what: str) -> None:
    """An unknown split names the split folders that exist."""
    if (images / split).is_dir():
        return
    found = _subfolders(images)
    raise DatasetError(f'{what} split {split!r} not found: no folder {images / split}; '
                       + (f'the splits there are: {", ".join(found)}' if found else
                          f'{images} has no split folders')
                       + '. Expected this layout:\n' + CITYSCAPES_LAYOUT)
