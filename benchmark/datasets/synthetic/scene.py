"""The scene renderer: camera, z-buffered painting, and :func:`generate_scene`.

The drawing is split by job over mixins (:mod:`.layout`, :mod:`.scenery`, :mod:`.objects`,
:mod:`.photometric`); the methods run in the order of :meth:`_Scene.render`, and every random draw
comes from the one generator passed in, so a scene is a deterministic function of its state.
"""
from __future__ import annotations

from typing import Any, Callable, List, Tuple

import numpy as np

from .classes import _SKY
from .primitives import _Noise
from .layout import _LayoutMixin
from .scenery import _SceneryMixin
from .objects import _ObjectsMixin
from .photometric import _PhotometricMixin


class _Scene(_LayoutMixin, _SceneryMixin, _ObjectsMixin, _PhotometricMixin):
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
