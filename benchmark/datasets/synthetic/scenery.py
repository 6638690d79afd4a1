"""Static scenery of a scene: sky, backdrop, ground, buildings, walls, fences.

A mixin of :class:`.scene._Scene`.
"""
from __future__ import annotations

from typing import Any, Dict

import numpy as np

from .classes import _BUILDING, _FENCE, _ROAD, _SIDEWALK, _TERRAIN, _VEGETATION, _WALL
from .primitives import _clip01, _fade, _FAR, _frac
from .palette import _facade_colour, _hsv, _leaf_colour, _terrain_colour


class _SceneryMixin:
    """The static scenery: sky, far backdrop, ground plane (road, markings, sidewalks, terrain),
    building facades and tree rows, the building closing the street, walls, fences and hedges.
    """

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
