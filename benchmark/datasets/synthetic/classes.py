"""Classes, label ids and file naming of the synthetic dataset (the Cityscapes conventions)."""
from __future__ import annotations

from typing import Tuple


#: Version of the generator's output; bump it whenever a generated file could change.
SYNTHETIC_VERSION: int = 1

#: The 19 Cityscapes class names in train-id order (as mmseg's ``CityscapesDataset``).
CLASS_NAMES: Tuple[str, ...] = (
    'road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light', 'traffic sign',
    'vegetation', 'terrain', 'sky', 'person', 'rider', 'car', 'truck', 'bus', 'train',
    'motorcycle', 'bicycle')

_ROAD, _SIDEWALK, _BUILDING, _WALL, _FENCE, _POLE = 0, 1, 2, 3, 4, 5
_SIGN, _VEGETATION, _TERRAIN, _SKY, _PERSON, _CAR, _BUS = 7, 8, 9, 10, 11, 13, 15
_IGNORE = 255

#: The train ids :func:`generate_scene` can produce (plus 255 for the ego-vehicle hood).
USED_TRAIN_IDS: Tuple[int, ...] = (_ROAD, _SIDEWALK, _BUILDING, _WALL, _FENCE, _POLE, _SIGN,
                                   _VEGETATION, _TERRAIN, _SKY, _PERSON, _CAR, _BUS)

IMG_SUFFIX = '_leftImg8bit.png'
SEG_MAP_SUFFIX = '_gtFine_labelTrainIds.png'
_SPLITS = ('train', 'val')
_CITIES = {'train': ('synthville', 'pixelburg', 'randomstadt'),
           'val': ('procgenham', 'noiseford')}
_FRAME = 19  # Cityscapes' annotated frames are the 20th of each snippet (..._000019)
_MANIFEST = 'manifest.json'
