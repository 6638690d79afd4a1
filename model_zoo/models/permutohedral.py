"""High-dimensional Gaussian filtering on the permutohedral lattice, in PyTorch.

Adams, Baek & Davis 2010, "Fast High-Dimensional Filtering Using the Permutohedral Lattice",
https://graphics.stanford.edu/papers/permutohedral/ . The filter computes, for every pixel ``i``,

    out_i = sum_j exp(-|f_i - f_j|^2 / 2) v_j                                   (1)

approximately, in time linear in the number of pixels, for features ``f`` that are already divided
by their bandwidths (e.g. ``(x/θα, y/θα, r/θβ, g/θβ, b/θβ)`` for DenseCRF's bilateral kernel).

Algorithm (the same steps, constants and vertex order as Krähenbühl & Koltun's DenseCRF and
crfasrnn's ``ModifiedPermutohedral`` (caffe-crfrnn/src/caffe/util/modified_permutohedral.cpp),
vectorised over all pixels instead of looping):

1. **Embed.** Each feature ``f`` (scaled by ``sqrt(2/3) (d+1)`` so that the lattice blur below has
   a standard deviation of one feature unit) is lifted onto the hyperplane ``H_d`` of R^{d+1}
   whose coordinates sum to zero (``E f``, Adams et al. p. 5).
2. **Enclosing simplex.** Round to the nearest remainder-0 lattice point, sort the differences
   (rank), wrap the rank back into ``[0, d]``: this names the d+1 vertices of the enclosing
   simplex; the barycentric coordinates (p. 10) are the interpolation weights.
3. **Hash.** Each vertex is an integer key (d coordinates, all congruent mod d+1; the last
   coordinate is implied by the zero sum), encoded as one int64: the remainder, the quotients in
   mixed radix over their ranges, and the image index, so that the images of a batch share one
   lattice but never exchange mass. Sorting the codes (with each entry's pixel and simplex slot
   packed into the low bits, so that one sort of distinct int64 values gives the stable order) and
   ``unique_consecutive`` number the occupied vertices: this replaces the hash table. A
   neighbour's code differs from the vertex's by an offset that depends only on the direction
   and the remainder, so a ``searchsorted`` of each remainder class's codes (shifted) in the
   target class finds every vertex's neighbour along each of the d+1 lattice directions; the
   opposite neighbour is its inverse map. On CPU the sorts, searches and boolean selections of
   this construction use NumPy (identical results, several times faster than the torch ops on one
   thread; ``_USE_NUMPY = False`` forces the torch ops).
4. **Splat** values onto the vertices with the barycentric weights, **blur** with
   ``[1/2, 1, 1/2]`` along each lattice direction in turn (missing neighbours contribute zero),
   **slice** back with the same barycentric weights and the scale ``alpha = 1 / (1 + 2^-d)``.
   (In a fully occupied lattice the d+1 blurs give a vertex the weight ``1 + 2^-d`` onto itself,
   so ``alpha`` makes it exactly 1, matching ``exp(0) = 1`` in (1); DenseCRF calls it "a magic
   scaling constant".) The three steps are stored as sparse CSR matrices, ``splat (M, N)``,
   ``blur_j (M, M)`` (at most 3 entries a row) and ``slice (N, M)``, and applied with sparse x
   dense products over all channels at once, values laid out as ``(N, C)`` (pixels as rows):
   cost O(N (d+1)^2 C) per filter, memory O(N (d+1)). There are no Python loops over pixels or
   vertices. Each product is ``torch.addmm(out, A, x, beta=0, out=out)`` into a fresh buffer,
   which on CPU is about 3x faster than ``A @ x`` (that zero-fills a result and copies it once
   more around MKL's product) with identical numbers.

Every step is linear in the values ``v``, and the lattice depends only on the features, so one
:class:`PermutohedralLattice` is built per image (batch) and reused for every channel and every
mean-field iteration. The transpose of the filter is the same filter with the blur directions in
reverse order (each blur matrix is symmetric); the backward pass uses exactly that (as crfasrnn's
``compute(..., reverse=true)``), so gradients with respect to ``v`` are exact for the
approximate operator, cost one more filtering, and keep no intermediate tensors.
:class:`LatticeOperator` (from :meth:`PermutohedralLattice.operator`) is the filter with a
normalisation (below) and ``alpha`` folded into the values of the splat and slice matrices, so a
normalised filtering is d+3 sparse products and nothing else. When few points share a vertex
(images of pixel noise), the whole chain is multiplied out once into a sparse ``(N, N)`` matrix
that is then barely denser than the splat matrix (:meth:`PermutohedralLattice.composed`).

Normalisation (DenseCRF / crfasrnn): the lattice also filters an all-ones image once, and
``normalize=True`` multiplies the output by ``1 / (filter(1) + 1e-20)``, i.e. each output is a
kernel-weighted *average*. This removes most of the lattice's approximation error (its effective
kernel's overall scale varies with where a point falls in its simplex, and the normalisation
cancels that to first order) and makes filtering a constant image return that constant exactly.

Self-contribution: DenseCRF's mean-field message is ``sum_{j != i} k(f_i, f_j) Q_j``. Neither
Krähenbühl & Koltun's code nor crfasrnn subtracts the ``j = i`` term: they filter ``Q`` with the
self term included (weight 1 in (1); on the lattice a point's weight onto itself is at most 1,
less where its simplex's neighbours are unoccupied) and divide by the filtered ones-image, which
includes it too. We do the same. In the mean-field update this adds a
positive multiple of ``Q_i`` itself to the message, i.e. a mild damping towards the current
marginals; it also makes the kernel matrix positive semi-definite, which is what guarantees that
parallel mean-field updates do not increase the free energy (Krähenbühl & Koltun, ICML 2013).

:func:`dense_gaussian_filter` computes (1) exactly in O(N^2) memory and time: a reference for
tests on tiny images only.
"""
from __future__ import annotations

import math
import warnings
from typing import Dict, Optional

import numpy as np
import torch
from torch import Tensor

__all__ = ['LatticeOperator', 'PermutohedralLattice', 'dense_gaussian_filter', 'dense_kernel',
           'permutohedral_filter']

_NORM_EPS = 1e-20  # as crfasrnn: norm = 1 / (filter(ones) + 1e-20)
# Use NumPy's sort and searchsorted for CPU tensors in the lattice construction (same results
# as the torch ops, several times faster on one thread); False forces the torch ops.
_USE_NUMPY = True
# Lattices with at least this many vertices per point (few points share a vertex, e.g. images of
# pixel noise) apply the filter as one multiplied-out sparse (P, P) matrix instead of the chain
# of d + 3 products; see PermutohedralLattice.composed.
_COMPOSE_MIN_VERTICES_PER_POINT = 5.0


def _csr(crow: Tensor, col: Tensor, val: Tensor, size) -> Tensor:
    """A CSR matrix from valid (sorted, distinct per row) indices, without the beta warning.

    Indices are stored as int32 when they fit (half the memory of int64, and a little faster)."""
    if max(int(crow[-1]), *size) < 2 ** 31:
        crow, col = crow.int(), col.int()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)
        return torch.sparse_csr_tensor(crow, col, val, size, check_invariants=False)


def _sort_with_payload(key: Tensor, bound: int, payload: Optional[Tensor] = None,
                       payload_bound: Optional[int] = None):
    """Stable sort of a 1-D int64 ``key`` (``0 <= key < bound``), carrying ``payload`` along.

    ``payload`` (default: the element index, i.e. the permutation is returned) must be
    non-negative, below ``payload_bound`` and increasing along ``key``'s original order. On CPU,
    when the two fit in 63 bits, sorts ``(key << bits) | payload`` with NumPy's (SIMD) sort:
    the packed values are distinct and the payload is increasing, so the order is exactly the
    stable one, several times faster than ``torch.sort`` on one thread."""
    if payload is None:
        payload = torch.arange(key.numel(), device=key.device)
        payload_bound = key.numel()
    bits = max(1, (payload_bound - 1).bit_length())
    if _USE_NUMPY and key.device.type == 'cpu' and bound < 2 ** (63 - bits):
        packed = torch.from_numpy(np.sort(((key << bits) | payload).numpy()))
        return packed >> bits, packed & ((1 << bits) - 1)
    sorted_key, perm = torch.sort(key, stable=True)
    return sorted_key, payload.index_select(0, perm)


def _sort(x: Tensor) -> Tensor:
    """Sorted values of a 1-D int64 tensor; NumPy's (SIMD) sort on CPU."""
    if _USE_NUMPY and x.device.type == 'cpu':
        return torch.from_numpy(np.sort(x.numpy()))
    return torch.sort(x)[0]


def _masked_select(x: Tensor, mask: Tensor) -> Tensor:
    """``torch.masked_select``; NumPy's boolean indexing (about 3x faster) on CPU."""
    if _USE_NUMPY and x.device.type == 'cpu':
        return torch.from_numpy(x.numpy()[mask.numpy()])
    return torch.masked_select(x, mask)


def _searchsorted(sorted_seq: Tensor, query: Tensor) -> Tensor:
    """``torch.searchsorted`` for 1-D int64 tensors; NumPy's (about 3x faster) on CPU."""
    if _USE_NUMPY and sorted_seq.device.type == 'cpu':
        return torch.from_numpy(np.searchsorted(sorted_seq.numpy(), query.numpy()))
    return torch.searchsorted(sorted_seq, query)


class PermutohedralLattice:
    """A permutohedral lattice built from per-pixel features; filters any number of value maps.

    Args:
        features: ``(N, d, H, W)`` per-pixel feature vectors, already divided by their bandwidths.
            The ``N`` images share one lattice whose vertices never mix across images.
            Float64 features build the lattice in float64 (as in the tests), others in float32
            (as DenseCRF's ``float``).

    Attributes:
        num_vertices: Number of occupied lattice vertices ``M`` (over the whole batch).
        norm: ``(N, 1, H, W)`` normalisation ``1 / (filter(ones) + 1e-20)``.

    The lattice is stored as sparse matrices: ``splat`` ``(M, P)`` and ``slice`` ``(P, M)``
    (``d+1`` barycentric weights per pixel) and one blur matrix ``(M, M)`` per lattice direction
    (``1`` on the diagonal, ``1/2`` for each of the two neighbours that exist), so filtering is
    ``alpha * slice @ B_d @ ... @ B_0 @ splat @ values``, computed right to left.

    Example:
        >>> feats = torch.rand(1, 5, 32, 48) * 4
        >>> lat = PermutohedralLattice(feats)
        >>> out = lat.filter(torch.rand(1, 21, 32, 48), normalize=True)  # (1, 21, 32, 48)
    """

    def __init__(self, features: Tensor):
        if features.dim() != 4:
            raise ValueError(f'features must be (N, d, H, W), got {tuple(features.shape)}')
        n, d, h, w = features.shape
        if d < 1:
            raise ValueError('features need at least one channel')
        self.batch, self.d, self.height, self.width = n, d, h, w
        self.num_points = p = n * h * w
        dev = features.device
        dtype = torch.float64 if features.dtype == torch.float64 else torch.float32
        self.dtype = dtype
        f = features.detach().to(dtype).permute(0, 2, 3, 1).reshape(-1, d)
        d1 = d + 1

        # 1. Elevate onto the hyperplane:
        #    elev[0] = sum_k cf_k; elev[j] = sum_{k>=j} cf_k - j cf_{j-1}.
        inv_std = math.sqrt(2.0 / 3.0) * d1
        scale = torch.tensor([inv_std / math.sqrt((i + 1) * (i + 2)) for i in range(d)],
                             dtype=dtype, device=dev)
        cf = f * scale
        suffix = torch.flip(torch.cumsum(torch.flip(cf, [1]), 1), [1])  # suffix[:, k] = sum_{m>=k}
        suffix_next = torch.cat([suffix[:, 1:], cf.new_zeros((p, 1))], 1)  # sum_{m>=j}, j=1..d
        elev = torch.cat([suffix[:, :1],
                          suffix_next - torch.arange(1, d1, dtype=dtype, device=dev) * cf], 1)
        del cf, suffix, suffix_next
        limit = 2.0 ** (48 if dtype == torch.float64 else 20)  # keep rounding exact
        if not bool(torch.isfinite(elev).all()) or float(elev.abs().max()) >= limit:
            raise ValueError('features are not finite or too large for the lattice (|Ef| >= '
                             f'{limit:g}); are they divided by their bandwidths?')

        # 2. Nearest remainder-0 point (ties round down, as DenseCRF) and the simplex (rank =
        #    position of each coordinate's remainder in decreasing order, ties by index).
        rem0q = torch.ceil(elev / d1 - 0.5)  # rem0 / (d+1)
        total = rem0q.sum(1).round().long()
        diff = elev - rem0q * d1
        # rank_i = #{j: diff_j > diff_i} + #{j < i: diff_j == diff_i}, one pair (i < j) at a
        # time on contiguous columns: j counts for i iff diff_j > diff_i, else i counts for j.
        diff_t = diff.t().contiguous()
        rank_t = total.unsqueeze(0).repeat(d1, 1)  # (d+1, P)
        for i in range(d1):
            for j in range(i + 1, d1):
                j_first = diff_t[j] > diff_t[i]
                rank_t[i] += j_first
                rank_t[j] += ~j_first
        rank = rank_t.t()
        del diff_t, rank_t
        wrap = (rank > d).long() - (rank < 0).long()  # rank and rem0 wrap back into [0, d]
        rank -= d1 * wrap
        rem0q -= wrap.to(dtype)
        diff = elev - rem0q * d1
        del elev

        # Barycentric coordinates (Adams et al. p. 10).
        v = diff / d1
        bary = torch.zeros((p, d1 + 1), dtype=dtype, device=dev)
        bary.scatter_add_(1, d - rank, v)
        bary.scatter_add_(1, d - rank + 1, -v)
        bary[:, 0] += 1.0 + bary[:, d1]
        weights = bary[:, :d1].contiguous()  # (P, d+1)
        del bary, v, diff

        # 3. Hash. Vertex r of the simplex has key_i = rem0_i + canonical[r, rank_i] (i < d; the
        #    last coordinate is implied), canonical[r, k] = r if k <= d - r else r - (d+1). All
        #    coordinates of a key are congruent to r mod (d+1), so the key is stored as the
        #    remainder r plus the quotients q_i = rem0_i/(d+1) - [rank_i > d - r] in mixed radix
        #    (with margins so that neighbours' codes are valid too), above them the image index:
        #    code = (d+1) * (b * S_b + sum_i (q_i - qmin_i) S_i) + r.
        q0 = rem0q[:, :d].round().long()  # (P, d)
        del rem0q
        qmin = q0.amin(0) - 2
        radix = q0.amax(0) + 2 - qmin
        strides = [1] * d
        for i in range(d - 2, -1, -1):
            strides[i] = strides[i + 1] * int(radix[i + 1])
        stride_b = strides[0] * int(radix[0])
        if float(stride_b) * n * d1 >= 2.0 ** 62:
            raise ValueError('lattice key range too large for int64 codes; are the features '
                             'divided by their bandwidths?')
        strides_t = torch.tensor(strides, dtype=torch.long, device=dev)
        img = torch.arange(n, device=dev).repeat_interleave(h * w)
        base = img * stride_b + ((q0 - qmin) * strides_t).sum(1)  # (P,)
        # sub[p, r] = sum_i S_i [rank_i >= d + 1 - r]: a cumulative sum over ranks d, d-1, ...
        by_rank = torch.zeros((p, d1 + 1), dtype=torch.long, device=dev)
        by_rank.scatter_add_(1, d1 - rank[:, :d], strides_t.expand(p, d))
        sub = torch.cumsum(by_rank[:, :d1], 1)
        codes = (base.unsqueeze(1) - sub) * d1 + torch.arange(d1, device=dev)  # (P, d+1)
        # Along r the codes decrease (each step subtracts the stride of the coordinate of rank
        # d - r), except for the step that passes the implied coordinate d (stride 0), where
        # only r grows: the ascending order of a pixel's d+1 vertices is r = d, d-1, ..., 0
        # with the pair (d - rank_d, d - rank_d + 1) kept in increasing r (if rank_d >= 1).
        k_idx = torch.arange(d1, device=dev)
        rank_d = rank[:, d:]
        slot_order = (d - k_idx) - (k_idx == rank_d - 1).long() + \
            ((k_idx == rank_d) & (rank_d >= 1)).long()  # (P, d+1) slots by ascending code
        del by_rank, sub, base, rank, q0, rank_d

        # Number the occupied vertices in code order: one sort of the (P (d+1)) codes, with
        # (pixel, slot) as the payload, so each vertex's pixels come out ascending.
        sb = max(1, d.bit_length())  # bits for the slot r <= d
        pix_slot = (torch.arange(p, device=dev).unsqueeze(1) << sb) | torch.arange(d1, device=dev)
        sorted_codes, pix_slot = _sort_with_payload(codes.reshape(-1), n * stride_b * d1,
                                                    pix_slot.reshape(-1), p << sb)
        uniq, vertex_sorted, counts = torch.unique_consecutive(
            sorted_codes, return_inverse=True, return_counts=True)
        del sorted_codes, codes
        m = uniq.numel()
        self.num_vertices = m
        pixel_sorted = pix_slot >> sb
        flat_sorted = pixel_sorted * d1 + (pix_slot & ((1 << sb) - 1))  # pixel * (d+1) + slot
        del pix_slot
        offsets = torch.empty_like(vertex_sorted)
        offsets.scatter_(0, flat_sorted, vertex_sorted)
        offsets = offsets.view(p, d1)  # vertex index of each (pixel, simplex vertex)

        # Splat matrix (M, P): rows in code order, pixel columns ascending.
        flat_w = weights.reshape(-1)
        crow = torch.zeros(m + 1, dtype=torch.long, device=dev)
        torch.cumsum(counts, 0, out=crow[1:])
        self.splat = _csr(crow, pixel_sorted, flat_w.index_select(0, flat_sorted), (m, p))
        # Slice matrix (P, M): each pixel's d+1 vertices, columns ascending (vertex numbers
        # follow the codes, whose order within a pixel is slot_order).
        self.slice = _csr(torch.arange(0, p * d1 + 1, d1, device=dev),
                          torch.gather(offsets, 1, slot_order).reshape(-1),
                          torch.gather(weights, 1, slot_order).reshape(-1), (p, m))
        del offsets, weights, vertex_sorted, flat_w, pixel_sorted, flat_sorted, slot_order

        # Neighbours along lattice direction j: every key coordinate -1 except coordinate j,
        # +d (for j = d only the implied coordinate moves, so all are -1), and the opposite.
        # The code moves by an amount that depends only on the remainder r (S_d := 0):
        #   minus side: r >= 1: (d+1) S_j - 1 (to remainder r - 1);
        #               r = 0:  -(d+1) sum_{i != j} S_i + d (to remainder d).
        # The plus side is the inverse map, so one lookup per direction finds every pair. The
        # vertices of each remainder class, in code order, are a sorted array, and a class's
        # queries (its codes plus a constant) are looked up in the target class only.
        if m >= 2 ** 31:
            raise ValueError('too many lattice vertices')
        rem = uniq % d1
        rem_sorted, order = _sort_with_payload(rem, d1)  # remainder classes, codes ascending
        uniq_o = uniq.index_select(0, order)
        bounds = [0] + torch.cumsum(torch.bincount(rem_sorted, minlength=d1), 0).tolist()
        del rem, rem_sorted
        total_s = sum(strides)
        vbits = max(1, (m - 1).bit_length())
        rows = torch.arange(m, device=dev)
        self_keys = (rows << vbits) | rows
        self.blur = []
        for j in range(d1):
            s_j = strides[j] if j < d else 0
            src, dst = [], []
            for r in range(d1):
                t = (r - 1) % d1
                (r0, r1), (t0, t1) = bounds[r:r + 2], bounds[t:t + 2]
                if r0 == r1 or t0 == t1:
                    continue
                query = uniq_o[r0:r1] + ((d1 * s_j - 1) if r else (-d1 * (total_s - s_j) + d))
                target = uniq_o[t0:t1]
                pos = _searchsorted(target, query).clamp_(max=t1 - t0 - 1)
                found = target.index_select(0, pos) == query
                src.append(_masked_select(order[r0:r1], found))
                dst.append(order[t0:t1].index_select(0, _masked_select(pos, found)))
            a, b = torch.cat(src), torch.cat(dst)  # b is a's neighbour on the minus side
            # CSR of B_j = I + (E + E^T) / 2: sort the (row, column) pairs packed in an int64.
            keys = _sort(torch.cat([self_keys, (a << vbits) | b, (b << vbits) | a]))
            row, col = keys >> vbits, keys & ((1 << vbits) - 1)
            crow = torch.zeros(m + 1, dtype=torch.long, device=dev)
            torch.cumsum(torch.bincount(row, minlength=m), 0, out=crow[1:])
            vals = torch.where(row == col, 1.0, 0.5).to(dtype)
            self.blur.append(_csr(crow, col, vals, (m, m)))
        del order, uniq_o, rows, self_keys
        self.alpha = 1.0 / (1.0 + 2.0 ** (-d))
        self._operators: Dict[str, LatticeOperator] = {}
        ones = torch.ones((p, 1), dtype=dtype, device=dev)
        raw = _chain(self.splat, self.blur, self.slice, ones, self.alpha)
        self.norm = (1.0 / (raw + _NORM_EPS)).view(n, 1, h, w)
        self._composed: Dict[bool, Optional[Tensor]] = {}
        if m < _COMPOSE_MIN_VERTICES_PER_POINT * p:
            self._composed = {False: None, True: None}

    def composed(self, transpose: bool = False) -> Optional[Tensor]:
        """``slice B_d ... B_0 splat`` (without ``alpha``) multiplied out into one sparse
        ``(P, P)`` matrix (``transpose``: its transpose), or None.

        Worth it only when few points share a vertex, so that the product stays about as sparse
        as the factors (an image of pixel noise: about 3 entries a row instead of the chain's
        ~60 nonzeros and ~40 rows per pixel; a natural image's multiplied-out kernel has
        thousands a row). Tried once, on first use, only for lattices with at least
        ``_COMPOSE_MIN_VERTICES_PER_POINT`` vertices per point, and abandoned as soon as an
        intermediate product grows beyond twice the rows the chain processes."""
        if False not in self._composed:
            limit = 2 * ((len(self.blur) + 1) * self.num_vertices + self.num_points)
            x = self.splat
            for f in [*self.blur, self.slice]:
                x = f @ x
                if x._nnz() > limit:
                    x = None
                    break
            if x is None:
                self._composed = {False: None, True: None}
            else:
                self._composed[False] = _csr(x.crow_indices(), x.col_indices(), x.values(),
                                             x.shape)
        if transpose not in self._composed:
            xt = self._composed[False].t().to_sparse_csr()
            self._composed[True] = _csr(xt.crow_indices(), xt.col_indices(), xt.values(),
                                        xt.shape)
        return self._composed[transpose]

    # -- filtering ---------------------------------------------------------------------------
    def operator(self, normalization: str = 'none') -> 'LatticeOperator':
        """The lattice filter with a normalisation folded into its splat and slice weights.

        ``'none'``: ``L v``; ``'mean'``: ``D L v`` (DenseCRF / crfasrnn, ``D = diag(norm)``);
        ``'symmetric'``: ``D^1/2 L D^1/2 v``. Built once per lattice and normalisation.
        """
        op = self._operators.get(normalization)
        if op is None:
            norm = self.norm.reshape(-1)
            if normalization == 'none':
                op = LatticeOperator(self)
            elif normalization == 'mean':
                op = LatticeOperator(self, scale_out=norm)
            elif normalization == 'symmetric':
                op = LatticeOperator(self, scale_in=norm.sqrt(), scale_out=norm.sqrt())
            else:
                raise ValueError(f"normalization must be 'none', 'mean' or 'symmetric', "
                                 f'got {normalization!r}')
            self._operators[normalization] = op
        return op

    def _check_values(self, values: Tensor) -> None:
        n, _, h, w = values.shape
        if (h, w) != (self.height, self.width):
            raise ValueError(f'values are {h}x{w} but the lattice was built for '
                             f'{self.height}x{self.width}')
        if n != self.batch and self.batch != 1:
            raise ValueError(f'values have batch {n}, lattice has {self.batch}')

    def filter(self, values: Tensor, normalize: bool = False) -> Tensor:
        """Gaussian-filter ``values`` ``(N, C, H, W)``; differentiable with respect to ``values``.

        Args:
            values: Maps to filter. ``N`` must equal the lattice's batch, or the lattice was built
                from one image and is then applied to every image.
            normalize: Multiply by ``1 / (filter(ones) + 1e-20)`` (DenseCRF / crfasrnn).
        """
        return self.operator('mean' if normalize else 'none')(values)


def _spmm(mat: Tensor, x: Tensor, alpha: float = 1.0) -> Tensor:
    """``alpha * mat @ x`` for a sparse CSR ``mat`` and a dense contiguous ``x``.

    ``torch.addmm(out, mat, x, beta=0, out=out)`` into an uninitialised buffer (``beta=0``
    ignores its contents): about 3x faster on CPU than ``mat @ x``, which zero-fills a result
    and copies it once more around MKL's sparse product. The numbers are identical."""
    out = x.new_empty((mat.shape[0], x.shape[1]))
    return torch.addmm(out, mat, x, beta=0, alpha=alpha, out=out)


def _chain(splat: Tensor, blurs, slice_: Tensor, x: Tensor, alpha: float = 1.0) -> Tensor:
    """``alpha * slice @ blurs[-1] @ ... @ blurs[0] @ splat @ x`` on a ``(P, K)`` matrix."""
    grid = _spmm(splat, x)
    for blur in blurs:
        grid = _spmm(blur, grid)
    return _spmm(slice_, grid, alpha)


def _scaled_csr(mat: Tensor, row_scale: Optional[Tensor] = None,
                col_scale: Optional[Tensor] = None) -> Tensor:
    """``diag(row_scale) @ mat @ diag(col_scale)`` for a CSR matrix (same sparsity pattern)."""
    crow, col, val = mat.crow_indices(), mat.col_indices(), mat.values()
    if row_scale is not None:
        counts = (crow[1:] - crow[:-1]).long()
        val = val * torch.repeat_interleave(row_scale.to(val.dtype), counts)
    if col_scale is not None:
        val = val * col_scale.to(val.dtype)[col.long()]
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)
        return torch.sparse_csr_tensor(crow, col, val, mat.shape, check_invariants=False)


class LatticeOperator:
    """``diag(s_out) L diag(s_in)`` for the lattice filter ``L``, applied to ``(P, K)`` matrices.

    ``L = alpha slice B_d ... B_0 splat``; its transpose is ``alpha splat^T B_0 ... B_d
    slice^T`` with ``splat^T = slice`` and symmetric ``B_j``, i.e. the same chain with the blur
    order reversed. The diagonal scalings (and ``alpha``) are folded into the values of the
    splat and slice matrices, separately for the operator and its transpose, so a filtering is
    ``d + 3`` sparse products and nothing else. Obtain it from
    :meth:`PermutohedralLattice.operator`.
    """

    def __init__(self, lattice: PermutohedralLattice, scale_in: Optional[Tensor] = None,
                 scale_out: Optional[Tensor] = None):
        self.lattice = lattice
        a = lattice.alpha
        out_a = torch.full((lattice.num_points,), a, dtype=lattice.dtype,
                           device=lattice.norm.device)
        if scale_out is not None:
            out_a = out_a * scale_out.to(lattice.dtype)
        # forward: diag(s_out) alpha slice B.. splat diag(s_in)
        self._splat = _scaled_csr(lattice.splat, col_scale=scale_in) if scale_in is not None \
            else lattice.splat
        self._slice = _scaled_csr(lattice.slice, row_scale=out_a)
        # transpose: diag(s_in) slice B^T.. splat diag(alpha s_out)
        self._splat_t = _scaled_csr(lattice.splat, col_scale=out_a)
        self._slice_t = _scaled_csr(lattice.slice, row_scale=scale_in) if scale_in is not None \
            else lattice.slice
        self._scale_in, self._scale_out = scale_in, out_a
        self._composed: Dict[bool, Tensor] = {}

    def _composed_matrix(self, transpose: bool) -> Optional[Tensor]:
        """The multiplied-out operator (or transpose) with its scalings, if the lattice has it."""
        if transpose not in self._composed:
            mat = self.lattice.composed(transpose)
            if mat is None:
                return None
            rows, cols = (self._scale_in, self._scale_out) if transpose else \
                (self._scale_out, self._scale_in)
            self._composed[transpose] = _scaled_csr(mat, row_scale=rows, col_scale=cols)
        return self._composed[transpose]

    def _run(self, x: Tensor, transpose: bool) -> Tensor:
        """Raw operator (or its transpose) on ``x`` ``(R, K)``, no autograd bookkeeping.

        ``R`` is the lattice's number of points, or a multiple of it when the lattice was built
        from one image (then every image's block of rows is filtered alike)."""
        lat = self.lattice
        rows, k = x.shape
        p = lat.num_points
        if rows == p:
            flat = x
        elif lat.batch == 1 and rows % p == 0:
            flat = x.reshape(rows // p, p, k).transpose(0, 1).reshape(p, -1)
        else:
            raise ValueError(f'values have {rows} rows (pixels x batch), the lattice has {p} '
                             f'points (batch {lat.batch})')
        flat = flat.to(lat.dtype).contiguous()
        composed = self._composed_matrix(transpose)
        if composed is not None:
            out = _spmm(composed, flat)
        elif transpose:
            out = _chain(self._splat_t, lat.blur[::-1], self._slice_t, flat)
        else:
            out = _chain(self._splat, lat.blur, self._slice, flat)
        out = out.to(x.dtype)
        if rows != p:
            out = out.reshape(p, rows // p, k).transpose(0, 1).reshape(rows, k)
        return out

    def apply_flat(self, x: Tensor) -> Tensor:
        """Filter ``x`` ``(R, K)`` (rows: pixels in ``(image, y, x)`` order, columns: channels);
        differentiable with respect to ``x``, backward = the transpose operator."""
        return _LatticeFilter.apply(x, self, False)

    def __call__(self, values: Tensor) -> Tensor:
        """Filter ``values`` ``(N, C, H, W)``."""
        if values.dim() != 4:
            raise ValueError(f'values must be (N, C, H, W), got {tuple(values.shape)}')
        self.lattice._check_values(values)
        n, c, h, w = values.shape
        out = self.apply_flat(values.permute(0, 2, 3, 1).reshape(-1, c))
        return out.view(n, h, w, c).permute(0, 3, 1, 2).contiguous()


class _LatticeFilter(torch.autograd.Function):
    """Linear lattice operator on ``(R, K)``; its adjoint is the transpose chain."""

    @staticmethod
    def forward(ctx, values: Tensor, op: LatticeOperator, transpose: bool) -> Tensor:
        ctx.op = op
        ctx.transpose = transpose
        return op._run(values, transpose)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return _LatticeFilter.apply(grad.contiguous(), ctx.op, not ctx.transpose), None, None


def permutohedral_filter(features: Tensor, values: Tensor, normalize: bool = False) -> Tensor:
    """One-shot lattice filter: ``PermutohedralLattice(features).filter(values, normalize)``."""
    return PermutohedralLattice(features).filter(values, normalize=normalize)


def dense_gaussian_filter(features: Tensor, values: Tensor, normalize: bool = False,
                          exclude_self: bool = False,
                          kernel_matrix: Optional[Tensor] = None) -> Tensor:
    """Exact O(N^2) Gaussian filter (1): the reference for tests on tiny images only.

    Args:
        features: ``(N, d, H, W)`` features divided by their bandwidths (or ``(1, d, H, W)`` for
            all images).
        values: ``(N, C, H, W)``.
        normalize: Divide by the filtered ones-image (with the same ``exclude_self`` choice).
        exclude_self: Sum over ``j != i`` only (DenseCRF's message definition).
        kernel_matrix: Optional precomputed ``(N or 1, P, P)`` kernel (from :func:`dense_kernel`).
    """
    k = dense_kernel(features, exclude_self) if kernel_matrix is None else kernel_matrix
    n, c, h, w = values.shape
    v = values.reshape(n, c, h * w).to(k.dtype)
    out = torch.matmul(v, k.transpose(1, 2))  # (N, C, P): out_i = sum_j K_ij v_j
    if normalize:
        out = out / (k.sum(2).unsqueeze(1) + _NORM_EPS)
    return out.reshape(n, c, h, w).to(values.dtype)


def dense_kernel(features: Tensor, exclude_self: bool = False) -> Tensor:
    """``(N, P, P)`` matrix ``exp(-|f_i - f_j|^2 / 2)`` of the pixels of each image."""
    f = features.flatten(2).transpose(1, 2).to(torch.float64)  # (N, P, d)
    sq = (f.unsqueeze(2) - f.unsqueeze(1)).pow(2).sum(-1)
    k = torch.exp(-0.5 * sq)
    if exclude_self:
        k = k - torch.eye(k.shape[-1], dtype=k.dtype, device=k.device)
    return k
