"""Drawing primitives of the renderer: anti-aliasing weights, capsules and rounded boxes, value noise.
"""
from __future__ import annotations

from typing import Any

import numpy as np


_FAR = 3000.0  # metres; depth of "infinitely far" things other than the sky


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
