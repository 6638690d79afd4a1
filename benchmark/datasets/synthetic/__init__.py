"""Procedurally generated street scenes in the Cityscapes layout (the benchmark's embedded dataset).

Why this exists
---------------
The machines this benchmark has to run on (developer boxes, CI) cannot download anything but
packages: no pretrained weights, no Cityscapes, no Pascal VOC. To still be able to train small
segmentation models and attack them, the benchmark ships a *generator* instead of data. It draws
deterministic, roughly Cityscapes-like street scenes and writes them in the exact folder layout and
label encoding that mmsegmentation's ``CityscapesDataset`` reads (``*_leftImg8bit.png`` images and
``*_gtFine_labelTrainIds.png`` labels with Cityscapes *train ids*, 255 = ignore), so every code path
that works on the synthetic data also works on real Cityscapes.

What a scene contains
---------------------
Every scene is rendered with a pin-hole camera over a flat ground plane (random camera height,
focal length, horizon row and vanishing point) and a z-buffer, so that geometry, occlusion and
object sizes are consistent with depth:

* sky (clear, overcast or dusk; clouds), a hazy far skyline of buildings and trees;
* a road in perspective with dashed/solid lane markings and crosswalks (labelled road), curbs and
  tiled sidewalks, grass or dirt terrain strips, sometimes an intersection or a T-junction closed
  by a building;
* building facades with perspective-correct window grids, shop fronts and cornices (many colours
  and heights), rows of trees, low walls, fences (bars, mesh or planks) and hedges in front of them;
* street lamps and sign poles (poles at least 3 px wide), traffic signs of several shapes and
  colour schemes (also seen from the back), free-standing trees and bushes;
* pedestrians (head, torso, arms, legs; front or side view; random clothing), cars (rear, front and
  side faces, wheels, lights, windows; random colours) and buses, drawn at many depths;
* photometric variation: sun shadows of buildings and vehicles, dappled shadows, atmospheric haze,
  exposure/contrast/saturation/white-balance jitter, vignetting, blur and Gaussian noise (image
  only: labels are exact), and in about 30 % of the images an ego-vehicle hood at the bottom
  labelled 255 as in Cityscapes.

Palettes deliberately overlap (walls use facade colours, terrain and vegetation share greens,
vehicles and clothing take any colour, sidewalks can be asphalt-grey), so a model has to use shape,
texture and context rather than colour thresholds. The data are meant to be learnable by a small
(0.5-2 M parameter, output stride 8) network on a CPU in minutes, not to be realistic.

Determinism
-----------
Image ``i`` of split ``s`` (0 = train, 1 = val) is drawn from
``numpy.random.default_rng([seed, s, i])`` and saved as a PNG without metadata, so the files are
byte-identical for the same arguments (and the same numpy/zlib), independently of how many images
are generated. :data:`SYNTHETIC_VERSION` must be bumped whenever the output changes; it is part of
the default cache directory name and of ``manifest.json``.

Files
-----
One job each: :mod:`.classes` (class names, train ids, file naming), :mod:`.palette` (colours),
:mod:`.primitives` (shapes, anti-aliasing, value noise), :mod:`.scene` (camera, z-buffer,
:func:`generate_scene`) drawing through :mod:`.layout` (where things are), :mod:`.scenery` (sky,
ground, buildings, fences), :mod:`.objects` (vehicles, people, street furniture, vegetation) and
:mod:`.photometric` (haze, hood, image jitter); :mod:`.writer` (PNG files, Cityscapes layout,
manifest, worker processes) and :mod:`.cache` (:func:`ensure_synthetic_cityscapes`). Only the
writer and the cache touch files.
"""
from __future__ import annotations

from .cache import ensure_synthetic_cityscapes
from .classes import CLASS_NAMES, IMG_SUFFIX, SEG_MAP_SUFFIX, SYNTHETIC_VERSION, USED_TRAIN_IDS
from .scene import generate_scene
from .writer import write_synthetic_cityscapes

__all__ = [
    'SYNTHETIC_VERSION', 'CLASS_NAMES', 'USED_TRAIN_IDS', 'generate_scene',
    'write_synthetic_cityscapes', 'ensure_synthetic_cityscapes',
]
