"""Colour palettes of the renderer (deliberately overlapping between classes, see the package docstring).
"""
from __future__ import annotations

import colorsys

import numpy as np


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    """RGB colour (float32, 0..1) from HSV components (hue wraps, s and v are clipped)."""
    s = min(max(s, 0.0), 1.0)
    v = min(max(v, 0.0), 1.0)
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), np.float32)


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
