"""Drawing the objects of a scene: vehicles, people, street furniture, vegetation.

A mixin of :class:`.scene._Scene`.
"""
from __future__ import annotations

from typing import Any, Dict

import numpy as np

from .classes import _BUS, _CAR, _PERSON, _POLE, _SIGN, _VEGETATION
from .primitives import _capsule, _clip01, _frac, _round_box


class _ObjectsMixin:
    """Drawing the placed objects: cars, buses, pedestrians, lamps, sign poles and signs, trees and
    bushes (each a callable queued by :class:`_LayoutMixin`).
    """

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
