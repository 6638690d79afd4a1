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

Any of them accepts ``image_list`` (a text file of image ids, one per line, as mmseg's ``ann_file``)
and ``num_images`` (keep the first N images in sorted order).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import DatasetError

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


@dataclass
class EvalDataset:
    """A list of evaluation samples produced by an mmseg dataset and its test pipeline."""

    name: str
    split: str
    root: Optional[str]
    class_names: Tuple[str, ...]
    mmseg_dataset: object = field(repr=False)
    indices: List[int] = field(repr=False)

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
        index = self.indices[i]
        results = self.mmseg_dataset[index]
        img = results['img']                      # H x W x 3, BGR (OpenCV), uint8
        label = results['gt_seg_map']             # H x W
        image = torch.from_numpy(np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1))).float()
        return image, torch.from_numpy(label.astype(np.int64)), self._image_id(index)

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


def _pipeline(resize: Optional[Sequence[int]]):
    pipeline = [dict(type='LoadImageFromFile')]
    if resize is not None:
        pipeline.append(dict(type='Resize', scale=tuple(resize), keep_ratio=True))
    pipeline.append(dict(type='LoadAnnotations'))
    return pipeline


def _check_dir(path: Path, what: str, layout: str) -> None:
    if not path.is_dir():
        raise DatasetError(f'{what} directory {path} does not exist. Expected this layout:\n{layout}')


def build_eval_dataset(spec: dict) -> EvalDataset:
    """Build the evaluation dataset a suite describes.

    Args:
        spec: ``dict(type=..., data_root=..., split='val', image_list=None, num_images=None,
            resize=...)``; ``synthetic_cityscapes`` also takes ``seed``, ``num_train``,
            ``num_val``, ``size`` and ``root`` (cache directory).

    Raises:
        DatasetError: unknown type, missing directories (with the expected layout) or no images.
    """
    spec = dict(spec)
    kind = spec.pop('type', None)
    if kind not in DATASET_TYPES:
        raise DatasetError(f'unknown dataset type {kind!r}; expected one of {", ".join(DATASET_TYPES)}')
    split = spec.pop('split', 'val')
    image_list = spec.pop('image_list', None)
    num_images = spec.pop('num_images', None)

    from mmengine.registry import DefaultScope
    from mmseg.registry import DATASETS
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)

    if kind in ('synthetic_cityscapes', 'cityscapes'):
        if kind == 'synthetic_cityscapes':
            from .synthetic import ensure_synthetic_cityscapes
            params = {k: spec.pop(k) for k in ('seed', 'num_train', 'num_val') if k in spec}
            if 'size' in spec:
                params['size'] = tuple(spec.pop('size'))
            try:
                data_root = ensure_synthetic_cityscapes(spec.pop('root', None), **params)
            except (ValueError, FileExistsError) as e:
                raise DatasetError(f'built-in synthetic dataset: {e}') from None
            resize = spec.pop('resize', None)
        else:
            if 'data_root' not in spec:
                raise DatasetError('the cityscapes dataset needs data_root. Expected this layout:\n'
                                   + CITYSCAPES_LAYOUT)
            data_root = Path(spec.pop('data_root')).expanduser()
            resize = spec.pop('resize', (1024, 512))
        data_root = Path(data_root)
        _check_dir(data_root, 'Cityscapes data_root', CITYSCAPES_LAYOUT)
        _check_dir(data_root / 'leftImg8bit' / split, 'Cityscapes image', CITYSCAPES_LAYOUT)
        _check_dir(data_root / 'gtFine' / split, 'Cityscapes label', CITYSCAPES_LAYOUT)
        cfg = dict(type='CityscapesDataset', data_root=str(data_root),
                   data_prefix=dict(img_path=f'leftImg8bit/{split}', seg_map_path=f'gtFine/{split}'),
                   pipeline=_pipeline(resize), test_mode=True, serialize_data=False)
    else:
        if 'data_root' not in spec:
            raise DatasetError('the voc dataset needs data_root. Expected this layout:\n' + VOC_LAYOUT)
        data_root = Path(spec.pop('data_root')).expanduser()
        resize = spec.pop('resize', None)
        _check_dir(data_root, 'Pascal VOC data_root', VOC_LAYOUT)
        _check_dir(data_root / 'JPEGImages', 'Pascal VOC image', VOC_LAYOUT)
        _check_dir(data_root / 'SegmentationClass', 'Pascal VOC label', VOC_LAYOUT)
        if image_list is None:
            image_list = f'ImageSets/Segmentation/{split}.txt'
        cfg = dict(type='PascalVOCDataset', data_root=str(data_root),
                   data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
                   pipeline=_pipeline(resize), test_mode=True, serialize_data=False)
    if spec:
        raise DatasetError(f'unknown dataset option(s) for {kind}: {", ".join(sorted(spec))}')
    if image_list is not None:
        list_path = Path(image_list)
        if not list_path.is_absolute():
            list_path = data_root / list_path
        if not list_path.is_file():
            raise DatasetError(f'image list {list_path} does not exist; expected a text file with one '
                               'image id per line (path relative to the image folder, no suffix)')
        cfg['ann_file'] = str(list_path)
    with DefaultScope.overwrite_default_scope('mmseg'):
        try:
            dataset = DATASETS.build(cfg)
        except (FileNotFoundError, OSError) as e:
            raise DatasetError(f'cannot read the {kind} dataset at {data_root}: {e}') from None
    if len(dataset) == 0:
        layout = VOC_LAYOUT if kind == 'voc' else CITYSCAPES_LAYOUT
        raise DatasetError(f'no images found for the {kind} dataset at {data_root} (split {split!r}). '
                           f'Expected this layout:\n{layout}')
    order = sorted(range(len(dataset)), key=lambda i: dataset.get_data_info(i)['img_path'])
    if num_images is not None:
        if not isinstance(num_images, int) or num_images < 1:
            raise DatasetError(f'num_images must be a positive integer, got {num_images!r}')
        order = order[:num_images]
    return EvalDataset(name=kind, split=split, root=str(data_root),
                       class_names=tuple(dataset.metainfo['classes']), mmseg_dataset=dataset,
                       indices=order)
