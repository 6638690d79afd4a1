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
"""
from __future__ import annotations

import colorsys
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
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np
from PIL import Image

__all__ = [
    'SYNTHETIC_VERSION', 'CLASS_NAMES', 'USED_TRAIN_IDS', 'generate_scene',
    'write_synthetic_cityscapes', 'ensure_synthetic_cityscapes',
]

logger = logging.getLogger(__name__)

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
_FAR = 3000.0  # metres; depth of "infinitely far" things other than the sky


# ----------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------

def _hsv(h: float, s: float, v: float) -> np.ndarray:
    """RGB colour (float32, 0..1) from HSV components (hue wraps, s and v are clipped)."""
    s = min(max(s, 0.0), 1.0)
    v = min(max(v, 0.0), 1.0)
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), np.float32)


def _clip01(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 1.0)


def _frac(x: np.ndarray) -> np.ndarray:
    return x - np.floor(x)


def _fade(period_px: np.ndarray) -> np.ndarray:
    """Contrast weight of a periodic pattern whose period spans ``period_px`` pixels (anti-alias)."""
    return _clip01((period_px - 2.5) / 4.0)


def _capsule(u: np.ndarray, v: np.ndarray, u0: float, v0: float, u1: float, v1: float,
             radius: float) -> np.ndarray:
    """Points within ``radius`` of the segment (u0, v0)-(u1, v1)."""
    du, dv = u1 - u0, v1 - v0
    t = np.clip(((u - u0) * du + (v - v0) * dv) / (du * du + dv * dv + 1e-9), 0.0, 1.0)
    return (u - u0 - t * du) ** 2 + (v - v0 - t * dv) ** 2 <= radius * radius


def _round_box(au: np.ndarray, v: np.ndarray, hw: float, v0: float, v1: float,
               r: float) -> np.ndarray:
    """Symmetric box ``|u| <= hw, v0 <= v <= v1`` with rounded corners (``au = |u|``)."""
    inside = (au <= hw) & (v >= v0) & (v <= v1)
    r = min(r, hw, (v1 - v0) / 2)
    cu = au - (hw - r)
    cv = np.maximum(v - (v1 - r), (v0 + r) - v)
    corner = (cu > 0) & (cv > 0) & (cu * cu + cv * cv > r * r)
    return inside & ~corner


class _Noise:
    """Smooth value noise on a periodic random lattice, evaluated at arbitrary coordinates."""

    def __init__(self, rng: np.random.Generator, size: int = 64) -> None:
        self.size = size
        self.table = rng.random((size, size), dtype=np.float32)
        # wrapped copy with one extra row/column, flattened: corner lookups need no modulo
        self._flat = np.pad(self.table, ((0, 1), (0, 1)), mode='wrap').ravel()

    def __call__(self, u: Any, v: Any) -> np.ndarray:
        u = np.asarray(u, np.float32)
        v = np.asarray(v, np.float32)
        iu = np.floor(u)
        iv = np.floor(v)
        fu = u - iu
        fv = v - iv
        fu = fu * fu * (3.0 - 2.0 * fu)
        fv = fv * fv * (3.0 - 2.0 * fv)
        n = self.size
        idx = (iv.astype(np.int32) % n) * (n + 1) + iu.astype(np.int32) % n
        t = self._flat
        a = t.take(idx)
        b = t.take(idx + 1)
        c = t.take(idx + (n + 1))
        d = t.take(idx + (n + 2))
        top = a + (b - a) * fu
        return top + (c + (d - c) * fu - top) * fv

    def fbm(self, u: Any, v: Any, octaves: int = 3, gain: float = 0.5) -> np.ndarray:
        """Fractal sum of ``octaves`` noise layers, normalised to about [0, 1]."""
        u = np.asarray(u, np.float32)
        v = np.asarray(v, np.float32)
        total = 0.0
        amp = 1.0
        norm = 0.0
        for o in range(octaves):
            scale = float(2 ** o)
            total = total + amp * self(u * scale + 17.31 * o, v * scale + 31.17 * o)
            norm += amp
            amp *= gain
        return total / norm

    def cell(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """A random value in [0, 1) per integer cell (i, j)."""
        n = self.size
        return self.table[np.asarray(i, np.int64) % n, np.asarray(j, np.int64) % n]


# ----------------------------------------------------------------------------------------------
# palettes
# ----------------------------------------------------------------------------------------------

def _facade_colour(r: np.random.Generator) -> np.ndarray:
    k = r.random()
    if k < 0.28:   # sand / beige
        return _hsv(r.uniform(0.06, 0.13), r.uniform(0.12, 0.4), r.uniform(0.5, 0.85))
    if k < 0.52:   # grey / white
        return _hsv(r.random(), r.uniform(0.0, 0.07), r.uniform(0.35, 0.88))
    if k < 0.72:   # brick
        return _hsv(r.uniform(-0.01, 0.05), r.uniform(0.35, 0.65), r.uniform(0.3, 0.6))
    if k < 0.9:    # pastel
        return _hsv(r.random(), r.uniform(0.12, 0.35), r.uniform(0.5, 0.85))
    return _hsv(r.uniform(0.05, 0.12), r.uniform(0.1, 0.35), r.uniform(0.18, 0.36))  # dark


def _wall_colour(r: np.random.Generator) -> np.ndarray:
    if r.random() < 0.45:
        return _facade_colour(r)
    return _hsv(r.uniform(0.05, 0.15), r.uniform(0.0, 0.12), r.uniform(0.35, 0.72))  # concrete


def _leaf_colour(r: np.random.Generator) -> np.ndarray:
    if r.random() < 0.1:  # autumn / dry
        return _hsv(r.uniform(0.07, 0.14), r.uniform(0.4, 0.7), r.uniform(0.3, 0.55))
    return _hsv(r.uniform(0.17, 0.36), r.uniform(0.3, 0.72), r.uniform(0.2, 0.5))


def _terrain_colour(r: np.random.Generator) -> np.ndarray:
    if r.random() < 0.3:  # dirt / dry grass
        return _hsv(r.uniform(0.06, 0.13), r.uniform(0.2, 0.5), r.uniform(0.3, 0.55))
    return _hsv(r.uniform(0.15, 0.32), r.uniform(0.25, 0.62), r.uniform(0.28, 0.6))


def _vehicle_colour(r: np.random.Generator) -> np.ndarray:
    k = r.random()
    if k < 0.2:
        return _hsv(0.0, 0.0, r.uniform(0.78, 0.95))  # white
    if k < 0.4:
        return _hsv(0.6, 0.05, r.uniform(0.04, 0.14))  # black
    if k < 0.6:
        return _hsv(r.uniform(0.5, 0.65), r.uniform(0.0, 0.08), r.uniform(0.35, 0.7))  # grey/silver
    return _hsv(r.random(), r.uniform(0.35, 0.85), r.uniform(0.25, 0.8))


def _cloth_colour(r: np.random.Generator) -> np.ndarray:
    k = r.random()
    if k < 0.35:
        return _hsv(r.random(), r.uniform(0.0, 0.15), r.uniform(0.05, 0.35))  # dark
    if k < 0.55:
        return _hsv(r.uniform(0.58, 0.65), r.uniform(0.3, 0.7), r.uniform(0.2, 0.55))  # denim
    if k < 0.7:
        return _hsv(r.uniform(0.07, 0.12), r.uniform(0.15, 0.45), r.uniform(0.4, 0.75))  # beige
    return _hsv(r.random(), r.uniform(0.3, 0.9), r.uniform(0.3, 0.9))


def _metal_colour(r: np.random.Generator) -> np.ndarray:
    k = r.random()
    if k < 0.45:
        return _hsv(r.uniform(0.5, 0.65), r.uniform(0.0, 0.1), r.uniform(0.3, 0.62))  # grey
    if k < 0.7:
        return _hsv(0.0, 0.0, r.uniform(0.06, 0.18))  # black
    if k < 0.88:
        return _hsv(r.uniform(0.3, 0.45), r.uniform(0.3, 0.6), r.uniform(0.15, 0.35))  # dark green
    return _hsv(r.uniform(0.06, 0.1), r.uniform(0.3, 0.6), r.uniform(0.25, 0.45))  # rusty brown


# ----------------------------------------------------------------------------------------------
# the scene renderer
# ----------------------------------------------------------------------------------------------

class _Scene:
    """Renders one street scene. World: X lateral (right +), Y up (ground 0), Z depth (metres)."""

    def __init__(self, rng: np.random.Generator, height: int, width: int) -> None:
        r = rng
        self.rng = r
        self.H, self.W = height, width
        self.px = max(1.0, min(height / 128.0, width / 256.0))  # pixel scale vs. 256x128
        self.f = width * r.uniform(0.85, 1.1)
        self.hc = r.uniform(1.3, 1.75)
        self.yh = height * r.uniform(0.36, 0.5)
        self.xv = width * r.uniform(0.34, 0.66)
        self.noise = _Noise(r)
        self.ys = np.arange(height, dtype=np.float32) + 0.5
        self.xs = np.arange(width, dtype=np.float32) + 0.5
        self.img = np.zeros((height, width, 3), np.float32)
        self.lab = np.full((height, width), _SKY, np.uint8)
        self.zb = np.full((height, width), np.inf, np.float32)
        self.objects: List[Tuple[float, int, Callable[[], None]]] = []
        self.footprints: List[Tuple[float, float, float, float]] = []
        self.ground_shadows: List[Tuple[float, float, float, float, float]] = []

    # -- projection helpers -------------------------------------------------------------------

    def _frontal(self, X: float, Z: float, u0: float, u1: float, v0: float, v1: float):
        """Pixel window of a camera-facing rectangle standing on the ground at (X, Z).

        Returns ``(slices, u, v, p)`` with local metric coordinates ``u`` (1, w) lateral from X and
        ``v`` (h, 1) height above ground, and ``p`` pixels per metre; None when off-screen.
        """
        if Z <= 0.3:
            return None
        p = self.f / Z
        xc = self.xv + X * p
        yg = self.yh + self.hc * p
        c0 = max(int(np.floor(xc + u0 * p)), 0)
        c1 = min(int(np.ceil(xc + u1 * p)) + 1, self.W)
        r0 = max(int(np.floor(yg - v1 * p)), 0)
        r1 = min(int(np.ceil(yg - v0 * p)) + 1, self.H)
        if c0 >= c1 or r0 >= r1:
            return None
        u = ((self.xs[c0:c1] - xc) / p)[None, :]
        v = ((yg - self.ys[r0:r1]) / p)[:, None]
        return (slice(r0, r1), slice(c0, c1)), u, v, p

    def _plane(self, Xp: float, Z0: float, Z1: float, Ytop: float):
        """Pixel window of the vertical plane ``X = Xp`` (parallel to the road), ``Z0 <= Z <= Z1``.

        Returns ``(slices, Zc, Y, valid)``: per-column depth ``Zc`` (1, w), per-pixel height ``Y``
        (h, w) and the columns inside the depth range ``valid`` (1, w); None when off-screen.
        """
        if abs(Xp) < 0.05:
            return None
        Z0 = max(Z0, 0.3)
        xa = self.xv + self.f * Xp / Z0
        xb = self.xv + self.f * Xp / Z1
        c0 = max(int(np.floor(min(xa, xb))), 0)
        c1 = min(int(np.ceil(max(xa, xb))) + 1, self.W)
        if c0 >= c1:
            return None
        dx = self.xs[c0:c1] - self.xv
        with np.errstate(divide='ignore', invalid='ignore'):
            Zc = self.f * Xp / dx
        valid = np.isfinite(Zc) & (Zc >= Z0) & (Zc <= Z1)
        if not valid.any():
            return None
        Zc = np.where(valid, Zc, Z1).astype(np.float32)
        zmin = float(Zc[valid].min())
        r0 = max(int(np.floor(self.yh - self.f * (Ytop - self.hc) / zmin)), 0)
        r1 = min(int(np.ceil(self.yh + self.f * self.hc / zmin)) + 1, self.H)
        if r0 >= r1:
            return None
        Y = self.hc - (self.ys[r0:r1, None] - self.yh) * Zc[None, :] / self.f
        return (slice(r0, r1), slice(c0, c1)), Zc[None, :], Y, valid[None, :]

    def _paint(self, sl, mask: np.ndarray, z: Any, colour: Any, label: Any,
               alpha: Any = None) -> None:
        """Z-buffered write of colour/label where ``mask`` and nearer than what is there.

        ``colour`` (and ``alpha``) are arrays broadcastable to the window, or callables that take a
        selector ``sel(array) -> array[written pixels]`` and return values for the written pixels
        only (so that textures are evaluated where they are visible).
        """
        zb = self.zb[sl]
        z = np.asarray(z, np.float32)
        m = mask & (z < zb)
        if not m.any():
            return

        def sel(arr: Any) -> Any:
            arr = np.asarray(arr)
            if arr.ndim == 0:
                return arr
            return np.broadcast_to(arr, m.shape + arr.shape[m.ndim:])[m]

        zb[m] = sel(z)
        lab = self.lab[sl]
        lab[m] = label if np.ndim(label) == 0 else sel(label)
        img = self.img[sl]
        col = colour(sel) if callable(colour) else sel(colour)
        col = np.broadcast_to(col, (int(m.sum()), 3))
        if alpha is not None:
            a = (alpha(sel) if callable(alpha) else sel(alpha))
            a = np.broadcast_to(a, (col.shape[0],))[:, None]
            col = a * col + (1.0 - a) * img[m]
        img[m] = col

    def _occupied(self, x0: float, x1: float, z0: float, z1: float) -> bool:
        for a0, a1, b0, b1 in self.footprints:
            if x0 < a1 and a0 < x1 and z0 < b1 and b0 < z1:
                return True
        return False

    def _in_gap(self, Z: float, margin: float = 0.5) -> bool:
        return any(a - margin < Z < b + margin for a, b in self.gaps)

    # -- layout ---------------------------------------------------------------------------------

    def _layout(self) -> None:
        r = self.rng
        weather = r.choice(3, p=[0.5, 0.35, 0.15])  # sunny, overcast, dusk
        self.weather = int(weather)
        self.sun_side = float(r.choice([-1.0, 1.0]))
        if weather == 0:
            self.shadow = r.uniform(0.42, 0.62)
            self.facade_shade = {self.sun_side: r.uniform(0.6, 0.78), -self.sun_side: r.uniform(0.98, 1.1)}
        elif weather == 1:
            self.shadow = 1.0
            self.facade_shade = {-1.0: r.uniform(0.8, 0.95), 1.0: r.uniform(0.8, 0.95)}
        else:
            self.shadow = r.uniform(0.6, 0.75)
            self.facade_shade = {self.sun_side: r.uniform(0.55, 0.7), -self.sun_side: r.uniform(0.85, 1.0)}

        # road
        width = r.uniform(6.0, 15.0)
        left = -r.uniform(1.4, min(width - 1.4, 7.5))
        self.edge = {-1.0: left, 1.0: left + width}
        n_lanes = max(1, int(round(width / r.uniform(2.9, 3.6))))
        self.lane_w = width / n_lanes
        self.n_lanes = n_lanes
        self.sw = {}
        self.strip = {}
        self.Xf = {}
        self.Xb = {}
        self.beyond = {}
        for s in (-1.0, 1.0):
            sw = r.uniform(1.6, 4.5) if r.random() < 0.9 else 0.0
            strip = r.uniform(0.8, 4.0) if (sw == 0.0 or r.random() < 0.5) else 0.0
            self.sw[s] = sw
            self.strip[s] = strip
            self.Xf[s] = self.edge[s] + s * (sw + strip)
            self.Xb[s] = self.Xf[s] + s * (r.uniform(0.0, 1.0) if r.random() < 0.5 else r.uniform(1.0, 8.0))
            self.beyond[s] = _TERRAIN if r.random() < 0.55 else _SIDEWALK

        # intersections / T-junction
        self.gaps: List[Tuple[float, float]] = []
        self.t_end: Optional[float] = None
        k = r.random()
        if k < 0.22:
            self.t_end = r.uniform(30.0, 110.0)
            cw = r.uniform(7.0, 14.0)
            self.gaps.append((self.t_end - 2.5 - cw, self.t_end + 1e4))
        elif k < 0.55:
            z1 = r.uniform(12.0, 70.0)
            self.gaps.append((z1, z1 + r.uniform(7.0, 15.0)))
        self.crosswalk = None
        if self.gaps and r.random() < 0.7:
            z1 = self.gaps[0][0]
            self.crosswalk = (z1 - r.uniform(4.0, 5.0), z1 - r.uniform(0.8, 1.5))
        elif r.random() < 0.15:
            z = r.uniform(10.0, 40.0)
            self.crosswalk = (z, z + r.uniform(3.0, 4.0))
        self.z_back = r.uniform(180.0, 500.0)
        self.z_obj_max = (self.t_end - 3.0) if self.t_end else 110.0

        # layers of facades
        self.back = {s: self._segments(
            [(1, 0.66), (2, 0.22), (0, 0.12)],
            {1: (8.0, 35.0), 2: (10.0, 40.0), 0: (5.0, 25.0)}, s, back=True) for s in (-1.0, 1.0)}
        front_p = r.uniform(0.2, 0.8)
        self.front = {s: self._segments(
            [(0, 1 - front_p), (3, front_p * 0.4), (4, front_p * 0.35), (5, front_p * 0.25)],
            {0: (5.0, 30.0), 3: (6.0, 30.0), 4: (6.0, 30.0), 5: (5.0, 25.0)}, s, back=False)
            for s in (-1.0, 1.0)}

    def _segments(self, choices, lengths, side: float, back: bool) -> Dict[str, np.ndarray]:
        """Random sequence of facade segments along Z for one side, with the gaps cut out."""
        r = self.rng
        kinds = [c[0] for c in choices]
        cum = np.cumsum([c[1] for c in choices])
        cum = cum / cum[-1]
        z_to = self.z_back + 20.0 if back else 250.0
        segs: List[List[float]] = []
        z = 0.3
        while z < z_to:
            k = kinds[min(int(np.searchsorted(cum, r.random(), side='right')), len(kinds) - 1)]
            length = r.uniform(*lengths[k])
            segs.append([z, z + length, k])
            z += length
        for a, b in self.gaps:
            out = []
            for s0, s1, k in segs:
                if s1 <= a or s0 >= b:
                    out.append([s0, s1, k])
                    continue
                if s0 < a:
                    out.append([s0, a, k])
                if s1 > b:
                    out.append([b, s1, k])
            out.append([a, b, 0])
            segs = sorted(out)
        n = len(segs)
        S: Dict[str, np.ndarray] = {
            'start': np.array([s[0] for s in segs], np.float32),
            'end': np.array([s[1] for s in segs], np.float32),
            'kind': np.array([s[2] for s in segs], np.int64),
        }
        h = np.zeros(n, np.float32)
        col = np.zeros((n, 3), np.float32)
        glass = np.zeros((n, 3), np.float32)
        fh, gf, ws, wf, hf, shop, style, p1, p2 = (np.ones(n, np.float32) for _ in range(9))
        for i, k in enumerate(S['kind']):
            if k == 1:  # building
                h[i] = r.uniform(7.0, 30.0) if r.random() < 0.85 else r.uniform(30.0, 50.0)
                col[i] = _facade_colour(r)
                fh[i] = r.uniform(2.8, 3.7)
                gf[i] = r.uniform(3.2, 4.8)
                ws[i] = r.uniform(1.8, 3.6)
                wf[i] = r.uniform(0.35, 0.7)
                hf[i] = r.uniform(0.4, 0.62)
                shop[i] = float(r.random() < 0.5)
                glass[i] = _hsv(r.uniform(0.5, 0.65), r.uniform(0.05, 0.35), r.uniform(0.1, 0.4))
                style[i] = r.integers(0, 1000)
            elif k == 2:  # row of trees
                h[i] = r.uniform(5.0, 13.0)
                col[i] = _leaf_colour(r)
                p1[i] = r.uniform(1.8, 3.2)   # crown bottom
                p2[i] = r.uniform(4.0, 9.0)   # trunk spacing
                glass[i] = _hsv(r.uniform(0.06, 0.1), r.uniform(0.2, 0.5), r.uniform(0.15, 0.35))
            elif k == 3:  # wall
                h[i] = r.uniform(0.8, 2.8)
                col[i] = _wall_colour(r)
                style[i] = float(r.random() < 0.6)
                p1[i] = r.uniform(0.35, 0.7)   # block length
                p2[i] = r.uniform(0.18, 0.35)  # block height
            elif k == 4:  # fence
                h[i] = r.uniform(1.0, 2.2)
                style[i] = r.integers(0, 3)   # 0 bars, 1 mesh, 2 planks
                col[i] = _metal_colour(r) if style[i] != 2 else _hsv(
                    r.uniform(0.05, 0.1), r.uniform(0.3, 0.6), r.uniform(0.25, 0.6))
                p1[i] = r.uniform(0.12, 0.25)  # bar spacing
                p2[i] = r.uniform(2.0, 3.0)    # post spacing
            elif k == 5:  # hedge
                h[i] = r.uniform(0.7, 2.0)
                col[i] = _leaf_colour(r)
        S.update(h=h, col=col, glass=glass, fh=fh, gf=gf, ws=ws, wf=wf, hf=hf, shop=shop,
                 style=style, p1=p1, p2=p2)
        return S

    def _segment_at(self, S: Dict[str, np.ndarray], Z: np.ndarray) -> np.ndarray:
        return np.clip(np.searchsorted(S['start'], Z, side='right') - 1, 0, len(S['start']) - 1)

    # -- object placement -----------------------------------------------------------------------

    def _add(self, Z: float, fn: Callable[[], None]) -> None:
        self.objects.append((Z, len(self.objects), fn))

    def _place_objects(self) -> None:
        r = self.rng
        zmax = self.z_obj_max
        # moving vehicles in lanes
        centres = [self.edge[-1.0] + self.lane_w * (k + 0.5) for k in range(self.n_lanes)]
        two_way = r.random() < 0.7
        parked = {s: (r.random() < 0.5 and self.n_lanes >= 2) for s in (-1.0, 1.0)}
        for k, xc in enumerate(centres):
            if (k == 0 and parked[-1.0]) or (k == self.n_lanes - 1 and parked[1.0]):
                continue
            oncoming = two_way and xc < -self.lane_w * 0.5
            for _ in range(r.poisson(1.3)):
                self._try_vehicle(xc + r.uniform(-0.35, 0.35), r.uniform(6.0, min(zmax, 90.0)),
                                  oncoming, bus=False)
        if r.random() < 0.5:  # a bus (a few attempts to find a free spot)
            for _ in range(3):
                k = int(r.integers(0, self.n_lanes))
                xc = centres[k]
                if self._try_vehicle(xc + r.uniform(-0.2, 0.2), r.uniform(7.0, max(min(zmax, 60.0), 7.5)),
                                     two_way and xc < -self.lane_w * 0.5, bus=True):
                    break
        # parked cars along the curbs
        for s in (-1.0, 1.0):
            if not parked[s]:
                continue
            z = r.uniform(2.0, 12.0)
            while z < min(zmax, 80.0):
                L = r.uniform(3.8, 4.8)
                if r.random() < 0.75 and not self._in_gap(z, 1.0) and not self._in_gap(z + L, 1.0):
                    w = r.uniform(1.65, 1.9)
                    self._try_vehicle(self.edge[s] - s * (w / 2 + r.uniform(0.15, 0.4)), z,
                                      bool(r.random() < 0.2), bus=False, dims=(w, L))
                z += L + r.uniform(0.8, 5.0)
        # pedestrians on the sidewalks
        for _ in range(int(r.poisson(r.uniform(2.0, 8.0)))):
            s = float(r.choice([-1.0, 1.0]))
            width = self.sw[s] if self.sw[s] > 0.9 else self.strip[s]
            if width <= 0.9:
                continue
            Z = min(3.0 + r.exponential(8.0), 40.0, zmax)
            X = self.edge[s] + s * r.uniform(0.35, width - 0.3)
            self._try_person(X, Z)
            if r.random() < 0.35:  # a companion
                self._try_person(X + r.uniform(-0.8, 0.8), Z + r.uniform(-1.0, 1.0))
        # pedestrians crossing
        if self.crosswalk is not None and r.random() < 0.6:
            za, zb = self.crosswalk
            for _ in range(int(r.integers(1, 5))):
                self._try_person(r.uniform(self.edge[-1.0], self.edge[1.0]), r.uniform(za, zb),
                                 side_view=True)
        # street lamps
        for s in (-1.0, 1.0):
            if r.random() < 0.75:
                X = self.edge[s] + s * (r.uniform(0.3, 0.7) if self.sw[s] > 0 else 0.4)
                z = r.uniform(2.0, 20.0)
                step = r.uniform(16.0, 35.0)
                params = dict(h=r.uniform(5.0, 9.0), w=r.uniform(0.13, 0.24), arm=r.uniform(0.6, 2.0),
                              col=_metal_colour(r))
                while z < min(zmax, 160.0):
                    if not self._in_gap(z):
                        sign = self._sign_params() if r.random() < 0.3 else None
                        self._add_lamp(X, z, s, params, sign)
                    z += step
        # sign poles
        for _ in range(int(r.integers(1, 4))):
            s = float(r.choice([-1.0, 1.0]))
            Z = r.uniform(3.5, min(zmax, 60.0))
            if self._in_gap(Z):
                continue
            X = self.edge[s] + s * r.uniform(0.25, 0.7)
            self._add_signpole(X, Z)
        for a, _b in self.gaps:  # signs at the corners of an intersection
            for s in (-1.0, 1.0):
                if r.random() < 0.5 and a - 1.5 > 3.0:
                    self._add_signpole(self.edge[s] + s * r.uniform(0.3, 0.7), a - r.uniform(0.5, 1.5))
        # trees along the sidewalks / terrain strips and bushes
        for s in (-1.0, 1.0):
            if r.random() < 0.45:
                if self.strip[s] > 1.2:
                    X = self.edge[s] + s * (self.sw[s] + self.strip[s] / 2)
                elif self.sw[s] > 2.0:
                    X = self.Xf[s] - s * 0.7
                else:
                    continue
                z = r.uniform(2.0, 15.0)
                step = r.uniform(7.0, 15.0)
                leaf = _leaf_colour(r)
                while z < min(zmax, 130.0):
                    if not self._in_gap(z, 2.0):
                        self._add_tree(X + r.uniform(-0.2, 0.2), z, leaf)
                    z += step * r.uniform(0.8, 1.2)
            if self.strip[s] > 0.8:
                for _ in range(int(r.poisson(2.0))):
                    z = r.uniform(3.0, min(zmax, 60.0))
                    if not self._in_gap(z, 1.0):
                        self._add_bush(self.edge[s] + s * (self.sw[s] + r.uniform(0.3, self.strip[s])), z)

    def _try_vehicle(self, X: float, Z: float, oncoming: bool, bus: bool,
                     dims: Optional[Tuple[float, float]] = None) -> bool:
        r = self.rng
        if bus:
            w, L, h = r.uniform(2.45, 2.55), r.uniform(10.0, 13.0), r.uniform(2.9, 3.3)
        else:
            w, L = dims if dims else (r.uniform(1.65, 1.95), r.uniform(3.8, 4.8))
            h = r.uniform(1.35, 1.55) if r.random() < 0.7 else r.uniform(1.55, 1.85)
        if Z > self.z_obj_max - L or self._in_gap(Z, 0.0) and r.random() < 0.5:
            return False
        if self._occupied(X - w / 2 - 0.3, X + w / 2 + 0.3, Z - 1.0, Z + L + 1.0):
            return False
        self.footprints.append((X - w / 2, X + w / 2, Z, Z + L))
        self.ground_shadows.append((X, Z + L / 2, w / 2 + 0.35, L / 2 + 0.4, 0.45))
        col = _vehicle_colour(r) if not bus else (
            _hsv(0, 0, r.uniform(0.8, 0.95)) if r.random() < 0.4 else _hsv(
                r.choice([0.0, 0.12, 0.6, 0.35]) + r.uniform(-0.02, 0.02), r.uniform(0.5, 0.85),
                r.uniform(0.45, 0.85)))
        prm = dict(X=X, Z=Z, w=w, L=L, h=h, col=col, oncoming=oncoming,
                   glass=_hsv(r.uniform(0.5, 0.65), r.uniform(0.1, 0.4), r.uniform(0.08, 0.25)),
                   plate=float(r.random() < 0.8), bumper=float(r.random() < 0.5),
                   stripe=_vehicle_colour(r), tone=r.uniform(0.8, 1.1))
        self._add(Z, (lambda: self._draw_bus(prm)) if bus else (lambda: self._draw_car(prm)))
        return True

    def _try_person(self, X: float, Z: float, side_view: Optional[bool] = None) -> None:
        r = self.rng
        if Z < 2.5 or Z > self.z_obj_max:
            return
        if self._occupied(X - 0.25, X + 0.25, Z - 0.25, Z + 0.25):
            return
        self.footprints.append((X - 0.25, X + 0.25, Z - 0.25, Z + 0.25))
        self.ground_shadows.append((X, Z, 0.35, 0.3, 0.6))
        if side_view is None:
            side_view = r.random() < 0.3
        hp = r.uniform(1.45, 1.95)
        prm = dict(X=X, Z=Z, hp=hp, k=hp / 1.75 * r.uniform(0.9, 1.15), side=bool(side_view),
                   stride=r.uniform(0.1, 0.35) * float(r.choice([-1.0, 1.0])),
                   top=_cloth_colour(r), bottom=_cloth_colour(r),
                   skin=_hsv(r.uniform(0.04, 0.09), r.uniform(0.25, 0.6), r.uniform(0.3, 0.9)),
                   hair=_hsv(r.uniform(0.05, 0.1), r.uniform(0.2, 0.6), r.uniform(0.05, 0.6)),
                   coat=bool(r.random() < 0.25), bag=bool(r.random() < 0.3),
                   bagcol=_cloth_colour(r), feet=r.uniform(0.05, 0.12))
        self._add(Z, lambda: self._draw_person(prm))

    def _sign_params(self) -> Dict[str, Any]:
        r = self.rng
        return dict(kind=int(r.integers(0, 7)), size=r.uniform(0.55, 0.9), back=bool(r.random() < 0.2),
                    metal=_hsv(0.6, 0.03, r.uniform(0.45, 0.7)), info=_hsv(
                        float(r.choice([0.6, 0.35])), r.uniform(0.6, 0.9), r.uniform(0.35, 0.7)),
                    symbol=int(r.integers(0, 3)))

    def _add_lamp(self, X: float, Z: float, s: float, params: Dict[str, Any],
                  sign: Optional[Dict[str, Any]]) -> None:
        prm = dict(params, X=X, Z=Z, s=s, sign=sign, sign_h=self.rng.uniform(2.3, 3.0))
        self._add(Z, lambda: self._draw_lamp(prm))

    def _add_signpole(self, X: float, Z: float) -> None:
        r = self.rng
        signs = [self._sign_params()]
        if r.random() < 0.3:
            signs.append(self._sign_params())
        prm = dict(X=X, Z=Z, h=r.uniform(2.0, 3.0), w=r.uniform(0.06, 0.1), col=_metal_colour(r),
                   signs=signs)
        self._add(Z, lambda: self._draw_signpole(prm))

    def _add_tree(self, X: float, Z: float, leaf: np.ndarray) -> None:
        r = self.rng
        prm = dict(X=X, Z=Z, trunk=r.uniform(1.6, 3.2), tw=r.uniform(0.2, 0.4), ru=r.uniform(1.2, 2.8),
                   rv=r.uniform(1.3, 3.0), conifer=bool(r.random() < 0.15),
                   leaf=leaf * r.uniform(0.85, 1.15), bark=_hsv(r.uniform(0.05, 0.1), r.uniform(0.2, 0.5),
                                                                 r.uniform(0.15, 0.4)),
                   seed=r.uniform(0, 1000))
        self._add(Z, lambda: self._draw_tree(prm))

    def _add_bush(self, X: float, Z: float) -> None:
        r = self.rng
        prm = dict(X=X, Z=Z, ru=r.uniform(0.4, 1.2), rv=r.uniform(0.3, 0.9), leaf=_leaf_colour(r),
                   seed=r.uniform(0, 1000))
        self._add(Z, lambda: self._draw_bush(prm))

    # -- background layers ----------------------------------------------------------------------

    def _sky(self) -> None:
        r = self.rng
        n = self.noise
        if self.weather == 0:
            top = _hsv(r.uniform(0.55, 0.62), r.uniform(0.4, 0.75), r.uniform(0.6, 0.92))
            hor = _hsv(r.uniform(0.54, 0.6), r.uniform(0.08, 0.3), r.uniform(0.85, 1.0))
            cover = r.uniform(0.0, 0.6)
        elif self.weather == 1:
            v = r.uniform(0.55, 0.85)
            top = _hsv(r.uniform(0.55, 0.65), r.uniform(0.0, 0.1), v)
            hor = _hsv(r.uniform(0.55, 0.65), r.uniform(0.0, 0.06), min(v + 0.12, 1.0))
            cover = r.uniform(0.3, 1.0)
        else:
            top = _hsv(r.uniform(0.6, 0.7), r.uniform(0.3, 0.5), r.uniform(0.35, 0.6))
            hor = _hsv(r.uniform(0.03, 0.1), r.uniform(0.35, 0.65), r.uniform(0.75, 0.95))
            cover = r.uniform(0.0, 0.5)
        self.haze_colour = hor.copy()
        rows = min(self.H, int(np.ceil(self.yh)) + 2)  # the ground covers everything below
        ys = self.ys[:rows]
        t = _clip01(ys / max(self.yh, 1.0))[:, None, None] ** 0.8
        sky = top * (1 - t) + hor * t
        cu = self.xs[None, :] / self.W * 5.0
        cv = ys[:, None] / self.H * 9.0
        cloud = _clip01((n.fbm(cu + 200.0, cv, 3) - (0.75 - 0.4 * cover)) * 4.0)[..., None]
        cloud_col = (hor * 1.05 if self.weather == 2 else np.float32(0.92)) * (
            0.85 + 0.2 * n(cu * 4 + 50, cv * 4))[..., None]
        self.img[:] = hor
        self.img[:rows] = sky * (1 - cloud * 0.85) + cloud_col * cloud * 0.85

    def _backdrop(self) -> None:
        """Far skyline (buildings and trees) at depth z_back, seen through the street's end."""
        r = self.rng
        n = self.noise
        Zb = self.z_back
        Xl = (0.0 - self.xv) * Zb / self.f
        Xr = (self.W - self.xv) * Zb / self.f
        starts, heights, kinds, cols = [], [], [], []
        x = Xl - r.uniform(0, 20)
        while x < Xr:
            k = r.random()
            kind = _BUILDING if k < 0.6 else (_VEGETATION if k < 0.9 else 0)
            starts.append(x)
            heights.append(r.uniform(6, 30) if kind == _BUILDING else r.uniform(5, 16))
            kinds.append(kind)
            cols.append(_facade_colour(r) if kind == _BUILDING else _leaf_colour(r))
            x += r.uniform(8.0, 45.0)
        starts_a = np.array(starts, np.float32)
        Xc = (self.xs - self.xv) * Zb / self.f
        idx = np.clip(np.searchsorted(starts_a, Xc, side='right') - 1, 0, len(starts) - 1)
        hgt = np.array(heights, np.float32)[idx]
        kind = np.array(kinds, np.int64)[idx]
        veg = kind == _VEGETATION
        hgt = hgt + veg * 3.0 * (n.fbm(Xc * 0.3 + 500.0, 3.0, 2) - 0.5)
        Y = self.hc - (self.ys[:, None] - self.yh) * Zb / self.f
        mask = (kind[None, :] > 0) & (Y <= hgt[None, :])
        col = np.array(cols, np.float32)[idx][None, :, :] * (
            0.85 + 0.3 * n.fbm(Xc[None, :] * 0.5, Y * 0.5 + 900.0, 2))[..., None]
        label = np.where(veg, _VEGETATION, _BUILDING).astype(np.uint8)[None, :]
        full = (slice(0, self.H), slice(0, self.W))
        self._paint(full, mask, np.float32(Zb), col, label)

    def _ground(self) -> None:
        r = self.rng
        n = self.noise
        r0 = int(np.searchsorted(self.ys, self.yh + 0.3))
        if r0 >= self.H:
            return
        D = (self.ys[r0:] - self.yh)[:, None]
        Z = np.minimum(self.f * self.hc / D, _FAR) * np.ones((1, self.W), np.float32)
        X = (self.xs[None, :] - self.xv) * self.hc / D
        label = np.full(Z.shape, _ROAD, np.uint8)
        curb = np.zeros(Z.shape, bool)
        for s in (-1.0, 1.0):
            out = s * (X - self.edge[s])
            sw, strip = self.sw[s], self.strip[s]
            label[(out > 0) & (out <= sw)] = _SIDEWALK
            if sw > 0:
                curb |= (out > 0) & (out <= min(sw, 0.2))
            label[(out > sw) & (out <= sw + strip)] = _TERRAIN
            label[out > sw + strip] = self.beyond[s]
            outside = out > 0
            for a, b in self.gaps:
                label[outside & (Z >= a) & (Z <= b)] = _ROAD
                curb[(Z >= a) & (Z <= b)] = False
        if self.t_end is not None:
            label[Z > self.t_end - 2.5] = _SIDEWALK
            curb |= (Z > self.t_end - 2.5) & (Z < self.t_end - 2.3)

        # shadows on the ground (multiplicative, with a bluish tint)
        shade = np.ones(Z.shape, np.float32)
        if self.shadow < 1.0:
            s = self.sun_side
            S = self.back[s]
            idx = self._segment_at(S, Z)
            tall = (S['kind'][idx] == 1) & (S['h'][idx] > 5.0)
            reach = r.uniform(2.0, 14.0)
            shade = np.where(tall & (s * X > s * self.Xb[s] - reach), np.float32(self.shadow), shade)
            if r.random() < 0.35:  # dappled shadows of trees somewhere out of view
                dap = _clip01((n.fbm(X * 0.4 + 1000, Z * 0.4, 2) - 0.55) * 6.0)
                shade = shade * (1 - (1 - self.shadow) * dap)
        for xc, zc, rx, rz, strength in self.ground_shadows:
            d2 = ((X - xc) / rx) ** 2 + ((Z - zc) / rz) ** 2
            shade = shade * (1 - strength * _clip01((1.0 - d2) * 2.5) * min(1.0, 0.6 + self.shadow))
        tint = np.array([0.92, 0.96, 1.08], np.float32)
        light = shade[..., None] * (tint * (1 - shade[..., None]) + shade[..., None])
        fpx = Z / self.f          # metres per pixel across
        fpz = Z / D               # metres per pixel along depth
        sl = (slice(r0, self.H), slice(0, self.W))

        # road: asphalt + repairs + markings (all labelled road)
        road_col = _hsv(r.uniform(0.05, 0.65), r.uniform(0.0, 0.08), r.uniform(0.2, 0.45))
        paint = _hsv(0.13, r.uniform(0.0, 0.1), r.uniform(0.75, 0.95))
        yellow = _hsv(r.uniform(0.11, 0.14), r.uniform(0.6, 0.85), r.uniform(0.7, 0.9))
        lw = r.uniform(0.06, 0.1)
        dash_p, dash_l = r.uniform(6.0, 12.0), r.uniform(2.0, 4.0)
        dash_o = r.uniform(0, dash_p)
        lines = []  # (lateral position, dashed, yellow)
        centre_k = self.n_lanes // 2 if (self.n_lanes >= 2 and r.random() < 0.25) else -1
        for k in range(1, self.n_lanes):
            lines.append((self.edge[-1.0] + k * self.lane_w, k != centre_k, k == centre_k))
        if r.random() < 0.6:
            for s in (-1.0, 1.0):
                lines.append((self.edge[s] - s * 0.35, False, False))

        def road(sel):
            x, z, fx = sel(X), sel(Z), sel(fpx)
            tex = 0.86 + 0.28 * n.fbm(x * 1.3, z * 1.3, 2)
            patch = _clip01((n.fbm(x * 0.25 + 300.0, z * 0.25, 2) - 0.62) * 8.0)
            col = road_col * (tex * (1 - 0.18 * patch))[..., None]
            cover = np.zeros(x.shape, np.float32)
            is_yellow = np.zeros(x.shape, bool)
            for xk, dashed, yel in lines:
                c = _clip01((lw - np.abs(x - xk)) / fx + 0.5) * np.minimum(1.0, 2 * lw / fx)
                if dashed:
                    c = c * (_frac((z + dash_o) / dash_p) * dash_p < dash_l)
                if yel:
                    is_yellow |= c > 0
                cover = np.maximum(cover, c)
            if self.t_end is None:  # no lane lines across a junction
                for a, b in self.gaps:
                    cover = cover * ~((z > a) & (z < b))
            if self.crosswalk is not None:
                za, zb = self.crosswalk
                stripe = (np.abs(_frac((x - self.edge[-1.0]) / 1.0) - 0.5) < 0.25) * _fade(1.0 / fx)
                cover = np.maximum(cover, stripe * ((z >= za) & (z <= zb)) * 0.95)
            wear = 0.7 + 0.3 * n(x * 2.0 + 40.0, z * 0.7)
            mark = np.where(is_yellow[..., None], yellow, paint) * wear[..., None]
            col = col * (1 - cover[..., None]) + mark * cover[..., None]
            return col * sel(light)

        # sidewalk: tiles + curb
        sw_k = r.random()
        if sw_k < 0.6:
            sw_col = _hsv(r.random(), r.uniform(0.0, 0.06), r.uniform(0.38, 0.72))
        elif sw_k < 0.85:
            sw_col = _hsv(r.uniform(0.0, 0.1), r.uniform(0.15, 0.4), r.uniform(0.4, 0.7))
        else:
            sw_col = road_col * r.uniform(1.0, 1.25)
        tile = r.uniform(0.3, 0.8)

        def sidewalk(sel):
            x, z, fx, fz = sel(X), sel(Z), sel(fpx), sel(fpz)
            tx, tz = x / tile, z / tile
            dx = (0.5 - np.abs(_frac(tx) - 0.5)) * tile   # distance to the nearest joint (metres)
            dz = (0.5 - np.abs(_frac(tz) - 0.5)) * tile
            lx = _clip01((0.025 - dx) / fx + 0.5) * _fade(tile / fx)
            lz = _clip01((0.025 - dz) / fz + 0.5) * _fade(tile / fz)
            line = np.maximum(lx, lz)
            var = 0.92 + 0.16 * n.cell(np.floor(tx), np.floor(tz) + 11) * _fade(tile / np.maximum(fx, fz))
            col = sw_col * (var * (0.9 + 0.2 * n.fbm(x * 0.8 + 70, z * 0.8, 2)) * (1 - 0.35 * line))[..., None]
            col = np.where(sel(curb)[..., None], sw_col * 1.25 * (0.9 + 0.1 * n(x * 3, z * 3))[..., None], col)
            return col * sel(light)

        # terrain: grass / dirt
        t_col = _terrain_colour(r)
        t_col2 = _terrain_colour(r)

        def terrain(sel):
            x, z = sel(X), sel(Z)
            mix = _clip01((n.fbm(x * 0.3 + 600.0, z * 0.3, 2) - 0.45) * 3.0)[..., None]
            tex = 0.72 + 0.56 * n.fbm(x * 3.0 + 800, z * 3.0, 3)
            return (t_col * (1 - mix) + t_col2 * mix) * tex[..., None] * sel(light)

        for cls, fn in ((_ROAD, road), (_SIDEWALK, sidewalk), (_TERRAIN, terrain)):
            self._paint(sl, label == cls, Z, fn, cls)

    # -- facades ----------------------------------------------------------------------------------

    def _facade_texture(self, a: np.ndarray, Y: np.ndarray, fp: np.ndarray, P: Dict[str, np.ndarray]) -> np.ndarray:
        """Building facade colour at along-facade coordinate ``a`` and height ``Y`` (metres)."""
        n = self.noise
        base = P['col'] * (0.86 + 0.28 * n.fbm(a * 0.5 + P['style'], Y * 0.5, 3))[..., None]
        above = Y - P['gf']
        fy = above / P['fh']
        fi = np.floor(fy)
        fy = fy - fi
        fx = a / P['ws']
        ci = np.floor(fx)
        fx = fx - ci
        win = (above > 0) & (Y < P['h'] - 1.0) & (np.abs(fx - 0.5) < P['wf'] / 2) & (fy > 0.3) & (fy < 0.3 + P['hf'])
        fade = _fade(P['ws'] / fp) * _fade(P['fh'] / fp)
        lit = n.cell(fi + P['style'], ci)
        glass = P['glass'] * (0.6 + 0.8 * lit)[..., None] + np.float32(0.12) * (lit > 0.93)[..., None]
        alpha = win * fade + (1 - fade) * (above > 0) * (Y < P['h'] - 1.0) * P['wf'] * P['hf'] * 0.6
        col = base * (1 - alpha[..., None]) + glass * alpha[..., None]
        ledge = (above > 0) & (fy < 0.05) & (fade > 0.5)
        col = col * np.where(ledge, 0.85, 1.0)[..., None]
        # shop fronts on the ground floor
        sx = _frac(a / (P['ws'] * 1.6))
        shopwin = (P['shop'] > 0.5) & (Y > 0.35) & (Y < P['gf'] - 0.7) & (np.abs(sx - 0.5) < 0.4)
        sfade = _fade(P['ws'] * 1.6 / fp)
        shop = col * (1 - 0.75 * sfade[..., None]) + P['glass'] * 0.75 * sfade[..., None]
        col = np.where(shopwin[..., None], shop, col)
        col = col * np.where(Y > P['h'] - 0.45, 0.78, 1.0)[..., None]   # cornice
        return col

    def _gather(self, S: Dict[str, np.ndarray], idx: np.ndarray) -> Dict[str, np.ndarray]:
        return {k: v[idx] for k, v in S.items()}

    def _leaves(self, u: np.ndarray, v: np.ndarray, col: np.ndarray, seed: Any = 0.0) -> np.ndarray:
        n = self.noise
        lv = n.fbm(u * 2.3 + seed, v * 2.3 + 300.0, 3)
        speck = n(u * 7.0 + seed, v * 7.0)
        return col * (0.35 + 1.1 * lv ** 1.4 + 0.2 * (speck - 0.5))[..., None]

    def _back_layer(self, s: float) -> None:
        S = self.back[s]
        top = float(S['h'].max()) + 3.0
        win = self._plane(self.Xb[s], 0.3, self.z_back, top)
        if win is None:
            return
        sl, Zc, Y, valid = win
        idx = self._segment_at(S, Zc)
        P = self._gather(S, idx)
        a = Zc - P['start']
        fp = Zc / self.f
        n = self.noise
        shade = self.facade_shade[s]
        # buildings
        mb = valid & (P['kind'] == 1) & (Y >= 0) & (Y <= P['h'])
        if mb.any():
            self._paint(sl, mb, Zc, lambda sel: self._facade_texture(
                sel(a), sel(Y), sel(fp), {k: sel(v) for k, v in P.items()}) * shade, _BUILDING)
        # rows of trees
        top_v = P['h'] + 2.5 * (n.fbm(Zc * 0.25 + 77.0 * s, 5.0, 3) - 0.5) * 2
        bot_v = P['p1'] + 0.8 * (n(Zc * 0.6 + 9.0 * s, 13.0) - 0.5)
        trunk_w = np.maximum(0.3, 3.0 * self.px * fp)
        trunk = np.abs(_frac(a / np.maximum(P['p2'], 1.0)) - 0.5) * P['p2'] < trunk_w / 2
        crown = (Y < top_v) & (Y > bot_v)
        mt = valid & (P['kind'] == 2) & (Y >= 0) & (crown | (trunk & (Y <= bot_v + 0.5)))
        if mt.any():
            def trees(sel):
                z, y = sel(Zc), sel(Y)
                leaf = self._leaves(z, y, sel(P['col']), 40.0 * s) * (
                    0.7 + 0.3 * _clip01((y - sel(bot_v)) / 3.0))[..., None]
                bark = sel(P['glass']) * (0.8 + 0.3 * n(z * 5, y * 0.5))[..., None]
                return np.where(sel(crown)[..., None], leaf, bark) * (0.5 + 0.5 * shade)
            self._paint(sl, mt, Zc, trees, _VEGETATION)
        # frontal faces of corner buildings behind an intersection
        for _a0, b0 in self.gaps:
            if self.t_end is not None:
                continue
            i = int(self._segment_at(S, np.float32(b0 + 0.01)))
            if S['kind'][i] != 1:
                continue
            P1 = {k: v[i] for k, v in S.items()}
            win2 = self._frontal(self.Xb[s], b0, -200.0 if s < 0 else 0.0, 200.0 if s > 0 else 0.0, 0.0, float(P1['h']))
            if win2 is None:
                continue
            sl2, u, v, p = win2
            m = (s * u >= 0) & (v >= 0) & (v <= P1['h'])
            k = 1.0 if self.weather != 0 else 0.9
            self._paint(sl2, m, np.float32(b0), lambda sel: self._facade_texture(
                sel(u), sel(v), np.float32(1.0 / p), P1) * k, _BUILDING)

    def _end_building(self) -> None:
        """The building closing a T-junction, facing the camera across the whole street."""
        if self.t_end is None:
            return
        r = self.rng
        Ze = self.t_end
        win = self._frontal(0.0, Ze, -500.0, 500.0, 0.0, 60.0)
        if win is None:
            return
        sl, u, v, p = win
        starts, rows = [], []
        x = float(u.min()) - r.uniform(0, 10)
        while x < float(u.max()):
            starts.append(x)
            kind = 1 if r.random() < 0.85 else 2
            rows.append(dict(kind=kind, h=r.uniform(8.0, 28.0) if kind == 1 else r.uniform(5, 11),
                             col=_facade_colour(r) if kind == 1 else _leaf_colour(r),
                             fh=r.uniform(2.8, 3.7), gf=r.uniform(3.2, 4.8), ws=r.uniform(1.8, 3.6),
                             wf=r.uniform(0.35, 0.7), hf=r.uniform(0.4, 0.62), shop=float(r.random() < 0.5),
                             glass=_hsv(r.uniform(0.5, 0.65), r.uniform(0.05, 0.35), r.uniform(0.1, 0.4)),
                             style=float(r.integers(0, 1000))))
            x += r.uniform(8.0, 30.0)
        S = {k: np.array([row[k] for row in rows], np.float32) for k in rows[0]}
        S['start'] = np.array(starts, np.float32)
        idx = np.clip(np.searchsorted(S['start'], u, side='right') - 1, 0, len(starts) - 1)
        P = self._gather(S, idx)
        hh = P['h'] + (P['kind'] == 2) * 2.0 * (self.noise.fbm(u * 0.3 + 99.0, 1.0, 2) - 0.5)
        m = (v >= 0) & (v <= hh)

        def colour(sel):
            uu, vv = sel(u), sel(v)
            Ps = {k: sel(val) for k, val in P.items()}
            col = self._facade_texture(uu - Ps['start'], vv, np.float32(1.0 / p), Ps)
            leaf = self._leaves(uu, vv, Ps['col'], 123.0)
            return np.where((Ps['kind'] == 2)[..., None], leaf, col) * 0.95
        lab = np.where(P['kind'] == 2, _VEGETATION, _BUILDING).astype(np.uint8)
        self._paint(sl, m, np.float32(Ze), colour, lab)

    def _front_layer(self, s: float) -> None:
        S = self.front[s]
        if not np.any(S['kind'] > 0):
            return
        win = self._plane(self.Xf[s], 0.3, 250.0, 4.0)
        if win is None:
            return
        sl, Zc, Y, valid = win
        idx = self._segment_at(S, Zc)
        P = self._gather(S, idx)
        a = Zc - P['start']
        fp = Zc / self.f
        n = self.noise
        shade = self.facade_shade[s]
        base = (Y >= 0) & valid
        # walls
        mw = base & (P['kind'] == 3) & (Y <= P['h'])
        if mw.any():
            def wall(sel):
                aa, y, f = sel(a), sel(Y), sel(fp)
                Ps = {k: sel(v) for k, v in P.items()}
                p1, p2 = np.maximum(Ps['p1'], 0.1), np.maximum(Ps['p2'], 0.1)
                row = np.floor(y / p2)
                off = np.where(row % 2 == 0, 0.0, 0.5)
                bx = (0.5 - np.abs(_frac(aa / p1 + off) - 0.5)) * p1
                by = (0.5 - np.abs(_frac(y / p2) - 0.5)) * p2
                mortar = np.maximum(_clip01((0.02 - bx) / f + 0.5), _clip01((0.02 - by) / f + 0.5))
                mortar = mortar * _fade(p2 / f) * (Ps['style'] > 0.5)
                stain = n.fbm(aa * 0.8 + 5.0, y * 0.25, 2)
                tex = (0.8 + 0.35 * n.fbm(aa * 1.5 + 3.0, y * 1.5, 3)) * (0.9 + 0.2 * stain)
                col = Ps['col'] * (tex * (1 - 0.3 * mortar))[..., None]
                return col * np.where(y > Ps['h'] - 0.15, 1.22, 1.0)[..., None] * shade  # coping
            self._paint(sl, mw, Zc, wall, _WALL)
        # fences (see-through: blended over what is behind them)
        mf = base & (P['kind'] == 4) & (Y <= P['h'])
        if mf.any():
            def fence_alpha(sel):
                aa, y, f = sel(a), sel(Y), sel(fp)
                sp, style, h, post_sp = np.maximum(sel(P['p1']), 0.05), sel(P['style']), sel(P['h']), sel(P['p2'])
                bar = (0.5 - np.abs(_frac(aa / sp) - 0.5)) * sp
                bars = _clip01((0.025 - bar) / f + 0.5)
                cov_bars = bars * _fade(sp / f) + (1 - _fade(sp / f)) * 0.35
                mesh = (np.abs(_frac((aa + y) / 0.08) - 0.5) < 0.15) | (np.abs(_frac((aa - y) / 0.08) - 0.5) < 0.15)
                cov_mesh = np.where(_fade(0.08 / f) > 0.5, mesh * 0.7, 0.5)
                plank = (0.5 - np.abs(_frac(aa / 0.15) - 0.5)) * 0.15
                cov_plank = 0.95 - 0.5 * _clip01((0.01 - plank) / f + 0.5) * _fade(0.15 / f)
                alpha = np.where(style == 0, cov_bars, np.where(style == 1, cov_mesh, cov_plank))
                post = (0.5 - np.abs(_frac(aa / post_sp) - 0.5)) * post_sp < np.maximum(0.04, 1.0 * f)
                rail = (y > h - 0.08) | ((y > 0.12) & (y < 0.2))
                alpha = np.where(post | (rail & (style != 1)), 1.0, alpha)
                return np.maximum(alpha, 0.45).astype(np.float32)

            def fence(sel):
                return sel(P['col']) * (0.85 + 0.3 * n(sel(a) * 2.0, sel(Y) * 2.0))[..., None] * shade
            self._paint(sl, mf, Zc, fence, _FENCE, alpha=fence_alpha)
        # hedges
        top = P['h'] + 0.25 * (n.fbm(Zc * 0.9 + 31.0 * s, 2.0, 2) - 0.5) * 2
        mh = base & (P['kind'] == 5) & (Y <= top)
        if mh.any():
            def hedge(sel):
                z, y = sel(Zc), sel(Y)
                return self._leaves(z, y, sel(P['col']), 55.0 * s) * (
                    0.75 + 0.25 * _clip01(y / np.maximum(sel(top), 0.1)))[..., None] * (0.5 + 0.5 * shade)
            self._paint(sl, mh, Zc, hedge, _VEGETATION)

    # -- objects ----------------------------------------------------------------------------------

    def _draw_car(self, o: Dict[str, Any]) -> None:
        X, Z, w, L, h = o['X'], o['Z'], o['w'], o['L'], o['h']
        col = o['col'] * o['tone']
        n = self.noise
        # side face, visible when the car is off the camera's axis
        Xs = X + w / 2 if X + w / 2 < -0.05 else (X - w / 2 if X - w / 2 > 0.05 else None)
        if Xs is not None:
            win = self._plane(Xs, Z, Z + L, h + 0.1)
            if win is not None:
                sl, Zc, Y, valid = win
                a = Zc - Z
                rr = _clip01((Y - 0.95) / (h - 0.95))
                if o['oncoming']:
                    lo, hi = L * (0.38 + 0.12 * rr), L * (0.88 - 0.1 * rr)
                else:
                    lo, hi = L * (0.12 + 0.1 * rr), L * (0.62 - 0.12 * rr)
                body = (Y >= 0.2) & (Y <= 0.98) & (a >= 0) & (a <= L)
                body &= ~((Y > 0.78) & ((a < 0.12) | (a > L - 0.12)))
                cabin = (Y > 0.95) & (Y <= h) & (a >= lo) & (a <= hi)
                w1, w2 = (0.2 * L, 0.8 * L)
                wheel = ((a - w1) ** 2 + (Y - 0.32) ** 2 <= 0.32 ** 2) | ((a - w2) ** 2 + (Y - 0.32) ** 2 <= 0.32 ** 2)
                hub = ((a - w1) ** 2 + (Y - 0.32) ** 2 <= 0.14 ** 2) | ((a - w2) ** 2 + (Y - 0.32) ** 2 <= 0.14 ** 2)
                window = (cabin & (Y > 1.02) & (Y < h - 0.07) & (a > lo + 0.12) & (a < hi - 0.12)
                          & (np.abs(a - (lo + hi) / 2) > 0.06))
                mask = valid & (body | cabin | wheel)
                c = col * 0.85 * (0.8 + 0.3 * _clip01(Y / h))[..., None]
                c = np.where(window[..., None], o['glass'] * (1.0 + 0.6 * _clip01((Y - 1.0) / (h - 1.0)))[..., None], c)
                c = np.where(wheel[..., None], np.where(hub[..., None], np.float32(0.45), np.float32(0.06)), c)
                self._paint(sl, mask, Zc, c, _CAR)
        win = self._frontal(X, Z, -w / 2, w / 2, 0.0, h)
        if win is None:
            return
        sl, u, v, _p = win
        au = np.abs(u)
        vv = np.broadcast_to(v, (v.shape[0], u.shape[1]))
        body = _round_box(au, vv, w / 2, 0.2, 0.98, 0.15)
        rr = _clip01((vv - 0.92) / (h - 0.92))
        hwc = w / 2 * 0.92 - rr * w * 0.14
        cabin = (vv >= 0.92) & (vv <= h) & (au <= hwc)
        cabin &= ~((vv > h - 0.1) & (au > hwc - 0.1) & ((au - (hwc - 0.1)) ** 2 + (vv - (h - 0.1)) ** 2 > 0.01))
        wheels = (au >= w / 2 - 0.32) & (au <= w / 2 - 0.04) & (vv >= 0) & (vv <= 0.3)
        mask = body | cabin | wheels
        shade = 0.8 + 0.3 * _clip01(vv / h)
        c = col * shade[..., None] * (0.95 + 0.1 * n(u * 4, vv * 4))[..., None]
        window = cabin & (vv > 1.0) & (vv < h - 0.07) & (au < hwc - 0.08)
        c = np.where(window[..., None], o['glass'] * (1.0 + 0.8 * _clip01((vv - 1.0) / (h - 1.0)))[..., None], c)
        if o['oncoming']:
            lights = (au >= w / 2 - 0.38) & (au <= w / 2 - 0.06) & (vv >= 0.62) & (vv <= 0.74)
            grille = (au < 0.4) & (vv > 0.4) & (vv < 0.6)
            plate = (au < 0.26) & (vv > 0.25) & (vv < 0.36)
            c = np.where(grille[..., None], np.float32(0.08), c)
            c = np.where(lights[..., None], np.array([0.9, 0.9, 0.82], np.float32), c)
        else:
            lights = (au >= w / 2 - 0.32) & (au <= w / 2 - 0.06) & (vv >= 0.68) & (vv <= 0.84)
            plate = (au < 0.26) & (vv > 0.42) & (vv < 0.53)
            c = np.where(lights[..., None], np.array([0.75, 0.06, 0.05], np.float32), c)
        if o['plate'] > 0.5:
            c = np.where(plate[..., None], np.array([0.88, 0.88, 0.85], np.float32), c)
        if o['bumper'] > 0.5:
            c = np.where(((vv >= 0.2) & (vv <= 0.34))[..., None], np.float32(0.1), c)
        c = np.where(wheels[..., None], np.float32(0.05), c)
        self._paint(sl, mask, np.float32(Z), c, _CAR)

    def _draw_bus(self, o: Dict[str, Any]) -> None:
        X, Z, w, L, h = o['X'], o['Z'], o['w'], o['L'], o['h']
        col = o['col'] * o['tone']
        stripe = o['stripe']
        Xs = X + w / 2 if X + w / 2 < -0.05 else (X - w / 2 if X - w / 2 > 0.05 else None)
        if Xs is not None:
            win = self._plane(Xs, Z, Z + L, h + 0.1)
            if win is not None:
                sl, Zc, Y, valid = win
                a = Zc - Z
                body = (Y >= 0.3) & (Y <= h) & (a >= 0) & (a <= L)
                w1, w2 = 2.3, L - 2.8
                wheel = ((a - w1) ** 2 + (Y - 0.5) ** 2 <= 0.5 ** 2) | ((a - w2) ** 2 + (Y - 0.5) ** 2 <= 0.5 ** 2)
                band = (Y > 1.25) & (Y < h - 0.35) & (a > 0.3) & (a < L - 0.3)
                pillar = (0.5 - np.abs(_frac(a / 1.45) - 0.5)) * 1.45 < np.maximum(0.07, 0.5 * Zc / self.f)
                c = col * 0.88 * (0.85 + 0.2 * _clip01(Y / h))[..., None]
                c = np.where(((Y > 0.6) & (Y < 0.9))[..., None], stripe, c)
                glass = o['glass'] * (1.0 + 0.5 * _clip01((Y - 1.25) / 1.4))[..., None]
                c = np.where((band & ~pillar)[..., None], glass, c)
                c = np.where(wheel[..., None], np.float32(0.06), c)
                self._paint(sl, valid & (body | wheel), Zc, c, _BUS)
        win = self._frontal(X, Z, -w / 2, w / 2, 0.0, h)
        if win is None:
            return
        sl, u, v, _p = win
        au = np.abs(u)
        vv = np.broadcast_to(v, (v.shape[0], u.shape[1]))
        body = _round_box(au, vv, w / 2, 0.3, h, 0.2)
        wheels = (au >= w / 2 - 0.4) & (au <= w / 2 - 0.05) & (vv >= 0) & (vv <= 0.35)
        c = col * (0.85 + 0.2 * _clip01(vv / h))[..., None]
        c = np.where(((vv > 0.6) & (vv < 0.9))[..., None], stripe, c)
        if o['oncoming']:
            glass = (au < w / 2 - 0.12) & (vv > 1.05) & (vv < h - 0.35)
            display = (au < w / 2 - 0.25) & (vv >= h - 0.32) & (vv < h - 0.1)
            lights = (au > w / 2 - 0.4) & (au < w / 2 - 0.1) & (vv > 0.45) & (vv < 0.6)
            c = np.where(display[..., None], np.array([0.1, 0.08, 0.02], np.float32), c)
            c = np.where(lights[..., None], np.array([0.9, 0.9, 0.8], np.float32), c)
        else:
            glass = (au < w / 2 - 0.2) & (vv > h - 1.2) & (vv < h - 0.3)
            lights = (au > w / 2 - 0.3) & (au < w / 2 - 0.08) & (vv > 0.5) & (vv < 1.0)
            c = np.where(lights[..., None], np.array([0.75, 0.07, 0.05], np.float32), c)
        c = np.where(glass[..., None], o['glass'] * (1.0 + 0.6 * _clip01((vv - 1.0) / (h - 1.0)))[..., None], c)
        c = np.where(wheels[..., None], np.float32(0.05), c)
        self._paint(sl, body | wheels, np.float32(Z), c, _BUS)

    def _draw_person(self, o: Dict[str, Any]) -> None:
        X, Z, hp, k = o['X'], o['Z'], o['hp'], o['k']
        st = o['stride'] if o['side'] else 0.0
        win = self._frontal(X, Z, -0.5 - abs(st), 0.5 + abs(st), 0.0, hp + 0.05)
        if win is None:
            return
        sl, u, v, p = win
        u = np.broadcast_to(u, (v.shape[0], u.shape[1]))
        v = np.broadcast_to(v, u.shape)
        minr = 0.6 / p
        hip = 0.5 * hp
        sh = 0.82 * hp
        if o['side']:
            rl = max(0.07 * k, minr)
            legs = _capsule(u, v, 0.0, hip, st, 0.06, rl) | _capsule(u, v, 0.0, hip, -st * 0.8, 0.06, rl)
            half_top, half_hip = 0.13 * k, 0.12 * k
            arms = _capsule(u, v, 0.0, sh - 0.03, -st * 0.6, 0.48 * hp, max(0.045 * k, minr))
        else:
            rl = max(0.065 * k, minr)
            spread = 0.02 + abs(o['stride']) * 0.1
            legs = _capsule(u, v, -0.08 * k, hip, -0.09 * k - spread, 0.06, rl) | _capsule(
                u, v, 0.08 * k, hip, 0.09 * k + spread, 0.06, rl)
            half_top, half_hip = 0.21 * k, 0.16 * k
            rad = max(0.045 * k, minr)
            arms = _capsule(u, v, -0.2 * k, sh - 0.04, -0.24 * k, 0.47 * hp, rad) | _capsule(
                u, v, 0.2 * k, sh - 0.04, 0.24 * k, 0.47 * hp, rad)
        t = _clip01((v - hip) / (sh - hip))
        half = half_hip + (half_top - half_hip) * t
        torso = (v >= hip - 0.03) & (v <= sh + 0.02) & (np.abs(u) <= np.maximum(half, minr))
        if o['coat']:
            t2 = _clip01((v - 0.3 * hp) / (sh - 0.3 * hp))
            torso |= (v >= 0.3 * hp) & (v <= sh) & (np.abs(u) <= half_top * (1.1 - 0.15 * t2))
        shoulders = _capsule(u, v, -half_top + 0.04 * k, sh - 0.02, half_top - 0.04 * k, sh - 0.02, max(0.05 * k, minr))
        hc = hp - 0.115 * k
        head = (u / max(0.085 * k, minr)) ** 2 + ((v - hc) / (0.118 * k)) ** 2 <= 1.0
        neck = (np.abs(u) <= max(0.04 * k, minr)) & (v >= sh - 0.02) & (v <= hc)
        bag = np.zeros_like(head)
        if o['bag']:
            bag = (u >= 0.18 * k) & (u <= 0.34 * k) & (v >= 0.42 * hp) & (v <= 0.6 * hp)
        mask = legs | torso | arms | shoulders | head | neck | bag
        c = np.broadcast_to(o['bottom'], u.shape + (3,))
        c = np.where((torso | shoulders | arms)[..., None], o['top'], c)
        c = np.where(((v < 0.5 * hp) & arms)[..., None], o['skin'], c)
        c = np.where((head | neck)[..., None], o['skin'], c)
        hair = head & (v > hc + 0.02 * k)
        c = np.where(hair[..., None], o['hair'], c)
        c = np.where((legs & (v < 0.07))[..., None], np.float32(o['feet']), c)
        c = np.where(bag[..., None], o['bagcol'], c)
        c = c * (0.85 + 0.3 * self.noise(u * 6 + X, v * 6))[..., None]
        self._paint(sl, mask, np.float32(Z), c, _PERSON)

    def _pole_shade(self, u: np.ndarray, half: float) -> np.ndarray:
        return (0.7 + 0.5 * (1 - _clip01(np.abs(u / half + 0.3)) ** 2))[..., None]

    def _draw_lamp(self, o: Dict[str, Any]) -> None:
        X, Z, s = o['X'], o['Z'], o['s']
        toward = -s  # direction of the road in u
        win = self._frontal(X, Z, -o['arm'] - 1.0, o['arm'] + 1.0, 0.0, o['h'] + 0.6)
        if win is None:
            return
        sl, u, v, p = win
        u = np.broadcast_to(u, (v.shape[0], u.shape[1]))
        v = np.broadcast_to(v, u.shape)
        half = max(o['w'], 3.0 * self.px / p) / 2
        thick = max(0.1, 2.0 * self.px / p)
        pole = (np.abs(u) <= half) & (v <= o['h'])
        tu = u * toward
        arm = (tu >= 0) & (tu <= o['arm']) & (np.abs(v - (o['h'] - 0.2 + 0.2 * tu / o['arm'])) <= thick / 2)
        head = (np.abs(tu - o['arm']) <= max(0.3, 2.0 * self.px / p)) & (v <= o['h'] + 0.05) & (
            v >= o['h'] - max(0.2, 2.0 * self.px / p))
        mask = pole | arm | head
        c = o['col'] * self._pole_shade(u, half)
        c = np.where((head & ~pole)[..., None], o['col'] * 0.6 + 0.25, c)
        self._paint(sl, mask, np.float32(Z), c, _POLE)
        if o['sign'] is not None:
            self._draw_sign(X + toward * (half + 0.02), Z - 0.03, o['sign_h'], o['sign'])

    def _draw_signpole(self, o: Dict[str, Any]) -> None:
        X, Z = o['X'], o['Z']
        win = self._frontal(X, Z, -0.2, 0.2, 0.0, o['h'])
        if win is None:
            return
        sl, u, v, p = win
        half = max(o['w'], 3.0 * self.px / p) / 2
        vv = np.broadcast_to(v, (v.shape[0], u.shape[1]))
        mask = (np.abs(u) <= half) & (vv <= o['h'])
        self._paint(sl, mask, np.float32(Z), o['col'] * self._pole_shade(np.broadcast_to(u, vv.shape), half), _POLE)
        top = o['h']
        for sign in o['signs']:
            size = max(sign['size'], 8.0 * self.px / p)
            self._draw_sign(X, Z - 0.03, top, sign)
            top -= size + 0.05

    def _draw_sign(self, X: float, Z: float, v_top: float, o: Dict[str, Any]) -> None:
        """A traffic sign whose top edge is at height ``v_top``, centred on X."""
        p = self.f / Z
        size = max(o['size'], 8.0 * self.px / p)
        r = size / 2
        kind = o['kind']
        wide = 1.5 if kind == 5 else 1.0
        cv = v_top - r
        win = self._frontal(X, Z, -r * wide - 0.1, r * wide + 0.1, cv - r - 0.1, v_top + 0.1)
        if win is None:
            return
        sl, u, v, p = win
        du = np.broadcast_to(u, (v.shape[0], u.shape[1]))
        dv = np.broadcast_to(v - cv, du.shape)

        def shape(scale: float) -> np.ndarray:
            rr = r * scale
            if kind in (0, 1):
                return du ** 2 + dv ** 2 <= rr ** 2
            if kind in (2, 3):
                side = 2.1 * rr
                ht = side * 0.866
                d = dv if kind == 2 else -dv
                return (d >= -ht / 3) & (np.abs(du) <= (2 * ht / 3 - d) / ht * side / 2)
            if kind == 4:
                return np.abs(du) + np.abs(dv) <= rr * 1.2
            if kind == 5:
                return (np.abs(du) <= rr * wide) & (np.abs(dv) <= rr * 0.75)
            return np.maximum(np.maximum(np.abs(du), np.abs(dv)), (np.abs(du) + np.abs(dv)) / 1.414) <= rr

        outer = shape(1.0)
        if o['back']:
            c = np.broadcast_to(o['metal'], du.shape + (3,))
            self._paint(sl, outer, np.float32(Z), c, _SIGN)
            return
        inner = shape(0.74)
        white = np.array([0.92, 0.92, 0.9], np.float32)
        red = np.array([0.78, 0.08, 0.08], np.float32)
        blue = np.array([0.08, 0.25, 0.7], np.float32)
        yellow = np.array([0.95, 0.78, 0.1], np.float32)
        black = np.array([0.06, 0.06, 0.06], np.float32)
        fg = {0: (red, white, black), 1: (blue, blue, white), 2: (red, white, black),
              3: (red, white, white), 4: (white, yellow, black), 5: (white, o['info'], white),
              6: (red, red, white)}[kind]
        symbol = np.zeros_like(outer)
        if o['symbol'] == 0:
            symbol = (np.abs(dv) < 0.1 * r) & (np.abs(du) < 0.45 * r * wide)
        elif o['symbol'] == 1:
            symbol = (np.abs(du) < 0.1 * r) & (np.abs(dv) < 0.4 * r)
        elif kind == 5:
            symbol = ((np.abs(_frac(dv / (0.3 * r)) - 0.5) < 0.15) & (np.abs(du) < 0.6 * r * wide)
                      & (np.abs(dv) < 0.45 * r))
        c = np.where(inner[..., None], fg[1], fg[0])
        c = np.where((symbol & inner)[..., None], fg[2], c)
        self._paint(sl, outer, np.float32(Z), c, _SIGN)

    def _draw_tree(self, o: Dict[str, Any]) -> None:
        X, Z = o['X'], o['Z']
        ru, rv = o['ru'], o['rv']
        cv = o['trunk'] + rv * 0.85
        win = self._frontal(X, Z, -ru * 1.4, ru * 1.4, 0.0, cv + rv * 1.4)
        if win is None:
            return
        sl, u, v, p = win
        u = np.broadcast_to(u, (v.shape[0], u.shape[1]))
        v = np.broadcast_to(v, u.shape)
        n = self.noise
        seed = o['seed']
        rag = 0.35 * (n.fbm(u * 1.2 + seed, v * 1.2, 2) - 0.5) * 2 + 0.12 * (n(u * 5 + seed, v * 5) - 0.5)
        if o['conifer']:
            t = _clip01((v - o['trunk'] * 0.6) / (2.6 * rv))
            crown = (v >= o['trunk'] * 0.6) & (np.abs(u) <= ru * (1 - t) * (1 + rag)) & (t < 1)
        else:
            d = np.sqrt((u / ru) ** 2 + ((v - cv) / rv) ** 2)
            crown = d < 1.0 + rag
        tw = max(o['tw'], 3.0 * self.px / p) / 2
        trunk = (np.abs(u - 0.05 * (v / cv) * np.sin(seed)) <= tw) & (v <= cv)
        mask = crown | trunk

        def colour(sel):
            uu, vv = sel(u), sel(v)
            depth_shade = 0.7 + 0.35 * _clip01((vv - (cv - rv)) / (2 * rv))
            leaf = self._leaves(uu, vv, o['leaf'], seed) * depth_shade[..., None]
            bark = o['bark'] * (0.8 + 0.3 * n(uu * 8, vv * 2))[..., None]
            return np.where(sel(crown)[..., None], leaf, bark)
        self._paint(sl, mask, np.float32(Z), colour, _VEGETATION)

    def _draw_bush(self, o: Dict[str, Any]) -> None:
        X, Z, ru, rv = o['X'], o['Z'], o['ru'], o['rv']
        win = self._frontal(X, Z, -ru * 1.3, ru * 1.3, 0.0, rv * 2.2)
        if win is None:
            return
        sl, u, v, _p = win
        u = np.broadcast_to(u, (v.shape[0], u.shape[1]))
        v = np.broadcast_to(v, u.shape)
        n = self.noise
        d = np.sqrt((u / ru) ** 2 + ((v - rv * 0.8) / rv) ** 2)
        mask = (d < 1.0 + 0.3 * (n.fbm(u * 2 + o['seed'], v * 2, 2) - 0.5) * 2) & (v >= 0)
        self._paint(sl, mask, np.float32(Z - 0.01), self._leaves(u, v, o['leaf'], o['seed']), _VEGETATION)

    # -- finishing --------------------------------------------------------------------------------

    def _haze(self) -> None:
        r = self.rng
        zh = r.uniform(60.0, 150.0) if r.random() < 0.2 else r.uniform(150.0, 600.0)
        m = self.lab != _SKY
        # never wash things out completely: far buildings must stay distinguishable from the sky
        t = np.maximum(np.exp(-np.where(m, self.zb, 0.0) / zh), 0.4)[..., None].astype(np.float32)
        self.img = np.where(m[..., None], self.img * t + self.haze_colour * (1 - t), self.img)

    def _hood(self) -> None:
        r = self.rng
        if r.random() >= 0.3:
            return
        H, W = self.H, self.W
        base = H * (1 - r.uniform(0.07, 0.16))
        xc = W * r.uniform(0.4, 0.6)
        top = base + H * r.uniform(0.03, 0.08) * ((self.xs - xc) / (W / 2)) ** 2
        mask = self.ys[:, None] >= top[None, :]
        col = _vehicle_colour(r) * 0.7
        t = _clip01((self.ys[:, None] - top[None, :]) / (H * 0.12))
        refl = self.haze_colour * 0.35 * np.exp(-(((self.xs[None, :] - xc) / (W * 0.25)) ** 2))[..., None]
        c = col * (0.6 + 0.5 * t)[..., None] + refl * (1 - t)[..., None]
        c = c * (0.95 + 0.1 * self.noise(self.xs[None, :] * 0.05, self.ys[:, None] * 0.05))[..., None]
        self.img = np.where(mask[..., None], c, self.img)
        self.lab[mask] = _IGNORE
        self.zb[mask] = 0.0

    def _photometric(self) -> np.ndarray:
        r = self.rng
        img = self.img
        if self.weather == 2:
            img = img * np.array([1.08, 0.95, 0.82], np.float32)
        img = img * r.uniform(0.75, 1.25)
        mean = img.mean()
        img = (img - mean) * r.uniform(0.75, 1.2) + mean
        grey = img.mean(axis=2, keepdims=True)
        img = grey + (img - grey) * r.uniform(0.6, 1.3)
        wb = r.uniform(-0.07, 0.07)
        img = img * np.array([1 + wb, 1.0, 1 - wb], np.float32)
        img = _clip01(img) ** r.uniform(0.85, 1.15)
        yy = (self.ys[:, None] / self.H - 0.5) * 2
        xx = (self.xs[None, :] / self.W - 0.5) * 2
        img = img * (1 - r.uniform(0.0, 0.25) * (xx * xx + yy * yy) / 2)[..., None]
        if r.random() < 0.6:  # [1, 2, 1] blur
            img = np.concatenate([img[:, :1], img, img[:, -1:]], axis=1)
            img = 0.25 * img[:, :-2] + 0.5 * img[:, 1:-1] + 0.25 * img[:, 2:]
            img = np.concatenate([img[:1], img, img[-1:]], axis=0)
            img = 0.25 * img[:-2] + 0.5 * img[1:-1] + 0.25 * img[2:]
        img = img + r.standard_normal(img.shape, dtype=np.float32) * np.float32(r.uniform(1.0, 5.0) / 255.0)
        return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)

    def render(self) -> Tuple[np.ndarray, np.ndarray]:
        self._layout()
        self._place_objects()
        self._sky()
        self._backdrop()
        self._ground()
        for s in (-1.0, 1.0):
            self._back_layer(s)
        self._end_building()
        for s in (-1.0, 1.0):
            self._front_layer(s)
        for _z, _i, draw in sorted(self.objects, key=lambda t: (-t[0], t[1])):
            draw()
        self._haze()
        self._hood()
        image = self._photometric()
        return image, self.lab.copy()


def generate_scene(rng: np.random.Generator, height: int, width: int) -> Tuple[np.ndarray, np.ndarray]:
    """Render one random street scene.

    Args:
        rng: The random generator; the scene is a deterministic function of its state.
        height: Image height in pixels (at least 32).
        width: Image width in pixels (at least 32).

    Returns:
        ``(image, label)``: ``image`` uint8 ``(height, width, 3)`` RGB and ``label`` uint8
        ``(height, width)`` of Cityscapes train ids (see :data:`USED_TRAIN_IDS`), 255 = ignore.
    """
    height, width = int(height), int(width)
    if height < 32 or width < 32:
        raise ValueError(f'scene size must be at least 32x32 pixels, got {width}x{height}')
    return _Scene(rng, height, width).render()


# ----------------------------------------------------------------------------------------------
# writing the dataset
# ----------------------------------------------------------------------------------------------

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
