"""High-dimensional Gaussian filtering on the permutohedral lattice, in pure PyTorch.

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
   lattice but never exchange mass. Sorting the codes (``torch.sort`` +
   ``unique_consecutive``) numbers the occupied vertices: this replaces the hash table. A
   neighbour's code differs from the vertex's by an offset that depends only on the direction
   and the remainder, so ``torch.searchsorted`` finds each vertex's neighbour along each of the
   d+1 lattice directions in one vectorised lookup; the opposite neighbour is its inverse map.
4. **Splat** values onto the vertices with the barycentric weights, **blur** with
   ``[1/2, 1, 1/2]`` along each lattice direction in turn (missing neighbours contribute zero),
   **slice** back with the same barycentric weights and the scale ``alpha = 1 / (1 + 2^-d)``.
   (In a fully occupied lattice the d+1 blurs give a vertex the weight ``1 + 2^-d`` onto itself,
   so ``alpha`` makes it exactly 1, matching ``exp(0) = 1`` in (1); DenseCRF calls it "a magic
   scaling constant".) The three steps are stored as sparse CSR matrices, ``splat (M, N)``,
   ``blur_j (M, M)`` (at most 3 entries a row) and ``slice (N, M)``, and applied with sparse x
   dense products over all channels at once: cost O(N (d+1)^2 C) per filter, memory O(N (d+1)).
   There are no Python loops over pixels or vertices.

Every step is linear in the values ``v``, and the lattice depends only on the features, so one
:class:`PermutohedralLattice` is built per image (batch) and reused for every channel and every
mean-field iteration. The transpose of the filter is the same filter with the blur directions in
reverse order (each blur matrix is symmetric); the backward pass uses exactly that (as crfasrnn's
``compute(..., reverse=true)``), so gradients with respect to ``v`` are exact for the
approximate operator, cost one more filtering, and keep no intermediate tensors.

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
from typing import Optional

import torch
from torch import Tensor

__all__ = ['PermutohedralLattice', 'dense_gaussian_filter', 'dense_kernel', 'permutohedral_filter']

_NORM_EPS = 1e-20  # as crfasrnn: norm = 1 / (filter(ones) + 1e-20)


def _csr(crow: Tensor, col: Tensor, val: Tensor, size) -> Tensor:
    """A CSR matrix from valid (sorted, distinct per row) indices, without the beta warning.

    Indices are stored as int32 when they fit (half the memory of int64, and a little faster)."""
    if max(int(crow[-1]), *size) < 2 ** 31:
        crow, col = crow.int(), col.int()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)
        return torch.sparse_csr_tensor(crow, col, val, size, check_invariants=False)


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
        gt = diff.unsqueeze(1) > diff.unsqueeze(2)  # [p, i, j] = diff_j > diff_i
        gt |= (diff.unsqueeze(1) == diff.unsqueeze(2)) & torch.ones(
            d1, d1, dtype=torch.bool, device=dev).tril(-1)  # j < i with a tie
        rank = gt.sum(2) + total.unsqueeze(1)
        del gt
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
        # sub[p, r] = sum_i S_i [rank_i >= d + 1 - r]
        by_rank = torch.zeros((p, d1 + 1), dtype=torch.long, device=dev)
        by_rank.scatter_add_(1, rank[:, :d], strides_t.expand(p, d))
        sub = torch.flip(torch.cumsum(torch.flip(by_rank, [1]), 1), [1])  # sum over ranks >= t
        r_idx = torch.arange(d1, device=dev)
        codes = (base.unsqueeze(1) - sub[:, d1 - r_idx]) * d1 + r_idx  # (P, d+1)
        del by_rank, sub, base, rank, q0

        sorted_codes, perm = torch.sort(codes.reshape(-1), stable=True)
        uniq, counts = torch.unique_consecutive(sorted_codes, return_counts=True)
        del sorted_codes, codes
        m = uniq.numel()
        self.num_vertices = m
        vertex_sorted = torch.repeat_interleave(torch.arange(m, device=dev), counts)
        offsets = torch.empty_like(vertex_sorted)
        offsets[perm] = vertex_sorted
        offsets = offsets.view(p, d1)  # vertex index of each (pixel, simplex vertex)

        # Splat matrix (M, P): rows in code order; stable sort keeps pixel columns ascending.
        flat_w = weights.reshape(-1)
        crow = torch.zeros(m + 1, dtype=torch.long, device=dev)
        crow[1:] = torch.cumsum(counts, 0)
        self.splat = _csr(crow, torch.div(perm, d1, rounding_mode='floor'), flat_w[perm], (m, p))
        # Slice matrix (P, M): each pixel's d+1 vertices, columns sorted.
        cols, order = torch.sort(offsets, dim=1)
        self.slice = _csr(torch.arange(0, p * d1 + 1, d1, device=dev), cols.reshape(-1),
                          torch.gather(weights, 1, order).reshape(-1), (p, m))
        del perm, offsets, weights, vertex_sorted, flat_w, cols, order

        # Neighbours along lattice direction j: every key coordinate -1 except coordinate j,
        # +d (for j = d only the implied coordinate moves, so all are -1), and the opposite.
        # The code moves by an amount that depends only on the remainder r (S_d := 0):
        #   minus side n1: r >= 1: (d+1) S_j - 1;  r = 0: -(d+1) sum_{i != j} S_i + d
        # The plus side is the inverse map (n2(n1(a)) = a), so one lookup per direction
        # suffices. Queries grouped by remainder class are ascending, which keeps
        # searchsorted cache friendly.
        rem = uniq % d1
        order = torch.argsort(rem, stable=True)
        uniq_o = uniq[order]
        rem_o = rem[order]
        total_s = sum(strides)
        rows = torch.arange(m, device=dev)
        missing = torch.full((m,), -1, dtype=torch.long, device=dev)
        unit = torch.tensor([0.5, 1.0, 0.5], dtype=dtype, device=dev).expand(m, 3)
        self.blur = []
        for j in range(d1):
            s_j = strides[j] if j < d else 0
            delta = torch.tensor([-d1 * (total_s - s_j) + d] + [d1 * s_j - 1] * d, device=dev)
            query = uniq_o + delta[rem_o]
            pos = torch.searchsorted(uniq, query).clamp_(max=m - 1)
            found = uniq[pos] == query
            n1 = missing.clone()
            n1[order] = torch.where(found, pos, missing)
            n2 = torch.cat([missing, missing[:1]])
            n2[torch.where(found, pos, torch.full_like(pos, m))] = order
            n2 = n2[:m]
            # CSR rows {n1, self, n2}: sort the three columns, drop missing (-1 sorts first).
            cand, perm3 = torch.sort(torch.stack([n1, rows, n2], 1), dim=1)
            vals = torch.gather(unit, 1, perm3)
            keep = cand >= 0
            crow = torch.zeros(m + 1, dtype=torch.long, device=dev)
            crow[1:] = torch.cumsum(keep.sum(1), 0)
            sel = torch.nonzero(keep.view(-1)).squeeze(1)
            self.blur.append(_csr(crow, cand.view(-1)[sel], vals.reshape(-1)[sel], (m, m)))
        self.alpha = 1.0 / (1.0 + 2.0 ** (-d))
        ones = torch.ones((n, 1, h, w), dtype=dtype, device=dev)
        self.norm = 1.0 / (self._filter(ones, reverse=False) + _NORM_EPS)

    # -- filtering ---------------------------------------------------------------------------
    def _filter(self, values: Tensor, reverse: bool) -> Tensor:
        """Raw lattice filter (no autograd bookkeeping); ``reverse`` gives the transpose."""
        n, c, h, w = values.shape
        if (h, w) != (self.height, self.width):
            raise ValueError(f'values are {h}x{w} but the lattice was built for '
                             f'{self.height}x{self.width}')
        if n == self.batch:
            flat = values.permute(0, 2, 3, 1).reshape(-1, c)  # (P, C)
        elif self.batch == 1:  # one lattice for every image (e.g. the spatial kernel)
            flat = values.permute(2, 3, 0, 1).reshape(-1, n * c)
        else:
            raise ValueError(f'values have batch {n}, lattice has {self.batch}')
        in_dtype = flat.dtype
        grid = self.splat @ flat.to(self.dtype).contiguous()
        blurs = reversed(self.blur) if reverse else self.blur
        for blur in blurs:
            grid = blur @ grid
        out = (self.slice @ grid).mul_(self.alpha).to(in_dtype)
        if n == self.batch:
            return out.view(n, h, w, c).permute(0, 3, 1, 2)
        return out.view(h, w, n, c).permute(2, 3, 0, 1)

    def filter(self, values: Tensor, normalize: bool = False) -> Tensor:
        """Gaussian-filter ``values`` ``(N, C, H, W)``; differentiable with respect to ``values``.

        Args:
            values: Maps to filter. ``N`` must equal the lattice's batch, or the lattice was built
                from one image and is then applied to every image.
            normalize: Multiply by ``1 / (filter(ones) + 1e-20)`` (DenseCRF / crfasrnn).
        """
        out = _LatticeFilter.apply(values, self, False)
        if normalize:
            out = out * self.norm.to(out.dtype)
        return out


class _LatticeFilter(torch.autograd.Function):
    """Linear lattice filter; its adjoint is the filter with the blur order reversed."""

    @staticmethod
    def forward(ctx, values: Tensor, lattice: PermutohedralLattice, reverse: bool) -> Tensor:
        ctx.lattice = lattice
        ctx.reverse = reverse
        return lattice._filter(values, reverse).contiguous()

    @staticmethod
    def backward(ctx, grad: Tensor):
        return _LatticeFilter.apply(grad.contiguous(), ctx.lattice, not ctx.reverse), None, None


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
