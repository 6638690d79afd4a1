"""Scene layout: the street and the objects placed on it (a mixin of :class:`.scene._Scene`)."""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from .classes import _SIDEWALK, _TERRAIN
from .palette import (_cloth_colour, _facade_colour, _hsv, _leaf_colour, _metal_colour, _vehicle_colour,
                      _wall_colour)


class _LayoutMixin:
    """Where things are: the street layout (road, sidewalks, building and tree rows, gaps) and the
    objects placed on it (vehicles, people, lamps, signs, trees, bushes), each queued for drawing
    back to front.
    """

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
