"""Finishing a scene: haze, ego-vehicle hood and photometric variation (a mixin of :class:`.scene._Scene`).
"""
from __future__ import annotations

import numpy as np

from .classes import _IGNORE, _SKY
from .primitives import _clip01
from .palette import _vehicle_colour


class _PhotometricMixin:
    """Finishing: atmospheric haze, the ego-vehicle hood (label 255) and the photometric jitter,
    blur and noise of the image (labels stay exact).
    """

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
