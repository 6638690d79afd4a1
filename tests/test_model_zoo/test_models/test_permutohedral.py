"""Permutohedral-lattice Gaussian filter: fidelity to DenseCRF's algorithm, to the exact filter,
exactness properties (constants, adjoint, batch separation) and gradients."""
import math

import numpy as np
import pytest
import torch

import model_zoo.models.permutohedral as permutohedral
from model_zoo.models.permutohedral import (PermutohedralLattice, dense_gaussian_filter,
                                            dense_kernel, permutohedral_filter)


def reference_lattice_filter(feat: np.ndarray, vals: np.ndarray) -> np.ndarray:
    """Scalar transcription of DenseCRF / crfasrnn's ``ModifiedPermutohedral`` (non-SSE ``init``
    and ``seqCompute``, caffe-crfrnn/src/caffe/util/modified_permutohedral.cpp), with a dict as
    the hash table. ``feat``: (P, d), ``vals``: (P, C) -> (P, C)."""
    n, d = feat.shape
    d1 = d + 1
    canonical = [[i if j <= d - i else i - d1 for j in range(d1)] for i in range(d1)]
    inv_std = math.sqrt(2.0 / 3.0) * d1
    scale = [inv_std / math.sqrt((i + 2) * (i + 1)) for i in range(d)]
    table = {}
    offset = np.zeros((n, d1), dtype=np.int64)
    bary_all = np.zeros((n, d1))
    for k in range(n):
        f = feat[k]
        elev = [0.0] * d1
        sm = 0.0
        for j in range(d, 0, -1):
            cf = f[j - 1] * scale[j - 1]
            elev[j] = sm - j * cf
            sm += cf
        elev[0] = sm
        rem0 = [0.0] * d1
        s = 0.0
        for i in range(d1):
            v = elev[i] / d1
            up, down = math.ceil(v) * d1, math.floor(v) * d1
            rem0[i] = up if up - elev[i] < elev[i] - down else down
            s += rem0[i] / d1
        s = int(round(s))
        rank = [0] * d1
        for i in range(d):
            di = elev[i] - rem0[i]
            for j in range(i + 1, d1):
                if di < elev[j] - rem0[j]:
                    rank[i] += 1
                else:
                    rank[j] += 1
        for i in range(d1):
            rank[i] += s
            if rank[i] < 0:
                rank[i] += d1
                rem0[i] += d1
            elif rank[i] > d:
                rank[i] -= d1
                rem0[i] -= d1
        bary = [0.0] * (d1 + 1)
        for i in range(d1):
            v = (elev[i] - rem0[i]) / d1
            bary[d - rank[i]] += v
            bary[d - rank[i] + 1] -= v
        bary[0] += 1.0 + bary[d1]
        for r in range(d1):
            key = tuple(int(round(rem0[i])) + canonical[r][rank[i]] for i in range(d))
            offset[k, r] = table.setdefault(key, len(table))
            bary_all[k, r] = bary[r]
    keys = sorted(table, key=table.get)
    m = len(keys)
    values = np.zeros((m + 1, vals.shape[1]))  # row 0: missing neighbour
    for k in range(n):
        for r in range(d1):
            values[offset[k, r] + 1] += bary_all[k, r] * vals[k]
    for j in range(d1):
        new = values.copy()
        for i, key in enumerate(keys):
            n1 = [x - 1 for x in key]
            n2 = [x + 1 for x in key]
            if j < d:
                n1[j] = key[j] + d
                n2[j] = key[j] - d
            a = table.get(tuple(n1), -1) + 1
            b = table.get(tuple(n2), -1) + 1
            new[i + 1] = values[i + 1] + 0.5 * (values[a] + values[b])
        values = new
    alpha = 1.0 / (1 + 2.0 ** (-d))
    out = np.zeros_like(vals, dtype=np.float64)
    for k in range(n):
        for r in range(d1):
            out[k] += bary_all[k, r] * values[offset[k, r] + 1] * alpha
    return out


def pixel_grid(h, w, dtype=torch.float32):
    yy, xx = torch.meshgrid(torch.arange(h, dtype=dtype), torch.arange(w, dtype=dtype),
                            indexing='ij')
    return torch.stack([xx, yy]).unsqueeze(0)


def piecewise_image(h, w, noise=0.0, seed=0):
    """Three flat colour regions plus optional Gaussian noise, RGB 0-255, (1, 3, h, w)."""
    g = torch.Generator().manual_seed(seed)
    img = torch.zeros(1, 3, h, w)
    img[..., :, : w // 2] = torch.tensor([200., 40, 60]).view(1, 3, 1, 1)
    img[..., :, w // 2:] = torch.tensor([30., 120, 220]).view(1, 3, 1, 1)
    img[..., h // 2:, w // 3:] = torch.tensor([90., 90, 90]).view(1, 3, 1, 1)
    return (img + noise * torch.randn(img.shape, generator=g)).clamp(0, 255)


def rel_err(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize('d', [1, 2, 3, 5])
@pytest.mark.parametrize('spread', [1.0, 4.0, 20.0])
def test_matches_scalar_densecrf_algorithm(d, spread):
    """The vectorised lattice is DenseCRF's algorithm: same vertices, weights, blur and slice."""
    g = torch.Generator().manual_seed(d * 100 + int(spread))
    feats = torch.rand((2, d, 4, 5), generator=g, dtype=torch.float64) * spread
    vals = torch.rand((2, 3, 4, 5), generator=g, dtype=torch.float64)
    out = PermutohedralLattice(feats).filter(vals)
    for b in range(2):
        ref = reference_lattice_filter(feats[b].flatten(1).T.numpy(), vals[b].flatten(1).T.numpy())
        np.testing.assert_allclose(out[b].flatten(1).T.numpy(), ref, rtol=1e-10, atol=1e-12)


def test_dense_oracle_by_hand():
    feats = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64).view(1, 1, 1, 3)
    vals = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64).view(1, 1, 1, 3)
    out = dense_gaussian_filter(feats, vals).flatten()
    e = lambda x: math.exp(-x * x / 2)  # noqa: E731
    assert out[0].item() == pytest.approx(1 + 2 * e(1) + 4 * e(3))
    assert out[1].item() == pytest.approx(e(1) + 2 + 4 * e(2))
    no_self = dense_gaussian_filter(feats, vals, exclude_self=True).flatten()
    assert no_self[2].item() == pytest.approx(e(3) + 2 * e(2))
    norm = dense_gaussian_filter(feats, vals, normalize=True).flatten()
    assert norm[0].item() == pytest.approx((1 + 2 * e(1) + 4 * e(3)) / (1 + e(1) + e(3)))


def test_spatial_kernel_close_to_exact():
    """d = 2 lattice on a pixel grid at crfasrnn's θγ = 3 (points 1/3 σ apart: the dense regime).

    Tolerance: the lattice's effective kernel is a sum of [1 2 1] blurs, not exactly a Gaussian;
    after normalisation it deviates by < 1 % (relative L2) on random values; we allow 2 %."""
    g = torch.Generator().manual_seed(0)
    feats = pixel_grid(14, 18) / 3.0
    vals = torch.rand((2, 4, 14, 18), generator=g)
    lattice = PermutohedralLattice(feats)  # one lattice, applied to both images
    out = lattice.filter(vals, normalize=True)
    ref = dense_gaussian_filter(feats, vals, normalize=True)
    assert rel_err(out, ref) < 0.02


@pytest.mark.parametrize('theta_alpha,theta_beta,noise,tol', [
    (160.0, 3.0, 0.0, 0.01),   # crfasrnn's bandwidths, flat regions: near exact
    (160.0, 3.0, 1.0, 0.04),   # colour noise of 1/3 θβ: still dense
    (5.0, 13.0, 3.0, 0.04),
])
def test_bilateral_kernel_close_to_exact(theta_alpha, theta_beta, noise, tol):
    """Normalised 5-D bilateral filtering vs the exact filter on a 16x24 image.

    Measured errors (relative L2) are 0.05 %, 1-3 % and 1.4 % for these cases; the tolerances
    leave ~2x headroom. (Where the pixels' features are 1-3 σ apart the lattice is coarser: up
    to ~20 %, e.g. θβ = 3 with noise of 10 grey levels; that is the approximation DenseCRF and
    crfasrnn make too, which the test above pins down exactly.)"""
    h, w = 16, 24
    img = piecewise_image(h, w, noise)
    feats = torch.cat([pixel_grid(h, w) / theta_alpha, img / theta_beta], 1)
    g = torch.Generator().manual_seed(1)
    q = torch.softmax(2 * torch.randn((1, 5, h, w), generator=g), 1)
    out = PermutohedralLattice(feats).filter(q, normalize=True)
    ref = dense_gaussian_filter(feats, q, normalize=True)
    assert rel_err(out, ref) < tol


@pytest.mark.parametrize('spread', [0.5, 3.0, 30.0])
def test_normalised_constant_is_exact(spread):
    g = torch.Generator().manual_seed(2)
    feats = torch.rand((2, 5, 9, 11), generator=g) * spread
    const = torch.full((2, 3, 9, 11), 7.25)
    out = permutohedral_filter(feats, const, normalize=True)
    torch.testing.assert_close(out, const, rtol=1e-5, atol=1e-5)
    # and the normalised output is a convex combination: within the values' range
    vals = torch.rand((2, 3, 9, 11), generator=g)
    out = permutohedral_filter(feats, vals, normalize=True)
    assert out.min() >= vals.min() - 1e-5 and out.max() <= vals.max() + 1e-5


def test_adjoint_is_backward_and_gradcheck():
    """The backward pass is the exact transpose (reverse blur order) of the forward operator."""
    g = torch.Generator().manual_seed(3)
    feats = torch.rand((1, 3, 5, 6), generator=g, dtype=torch.float64) * 3
    lattice = PermutohedralLattice(feats)
    v = torch.rand((1, 2, 5, 6), generator=g, dtype=torch.float64)
    u = torch.rand((1, 2, 5, 6), generator=g, dtype=torch.float64)
    # autograd's vector-Jacobian product equals L^T u, with L assembled column by column
    p = 30
    basis = torch.eye(p, dtype=torch.float64).view(p, 1, 5, 6)
    mat = lattice.filter(basis).reshape(p, p).T  # column j = L e_j
    vv = v.clone().requires_grad_(True)
    (lattice.filter(vv) * u).sum().backward()
    expected = (mat.T @ u.reshape(2, p).T).T.reshape(1, 2, 5, 6)
    torch.testing.assert_close(vv.grad, expected, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(mat, mat.T)  # the operator is not symmetric: order matters
    assert torch.autograd.gradcheck(lambda x: lattice.filter(x, normalize=True), (vv,))
    assert torch.autograd.gradgradcheck(lambda x: lattice.filter(x), (vv,))


def test_batch_images_do_not_mix_and_shared_lattice_broadcasts():
    g = torch.Generator().manual_seed(4)
    feats = torch.rand((3, 5, 6, 7), generator=g) * 2
    feats[1] = feats[0]  # identical features in two images must still not exchange mass
    vals = torch.rand((3, 4, 6, 7), generator=g)
    joint = permutohedral_filter(feats, vals, normalize=True)
    for b in range(3):
        single = permutohedral_filter(feats[b:b + 1], vals[b:b + 1], normalize=True)
        torch.testing.assert_close(joint[b:b + 1], single, rtol=1e-5, atol=1e-6)
    shared = PermutohedralLattice(feats[:1]).filter(vals, normalize=True)
    for b in range(3):
        torch.testing.assert_close(
            shared[b:b + 1], permutohedral_filter(feats[:1], vals[b:b + 1], normalize=True),
            rtol=1e-5, atol=1e-6)


def test_linear_size_and_errors():
    feats = torch.rand(1, 5, 20, 30) * 3
    lattice = PermutohedralLattice(feats)
    assert lattice.num_vertices <= 6 * 600
    assert lattice.splat._nnz() == 6 * 600 and lattice.slice._nnz() == 6 * 600
    assert all(b._nnz() <= 3 * lattice.num_vertices for b in lattice.blur)
    with pytest.raises(ValueError, match='built for'):
        lattice.filter(torch.rand(1, 2, 10, 30))
    with pytest.raises(ValueError, match='batch'):
        PermutohedralLattice(torch.rand(2, 2, 4, 4)).filter(torch.rand(3, 1, 4, 4))
    with pytest.raises(ValueError, match='too large'):
        PermutohedralLattice(torch.rand(1, 5, 4, 4) * 1e9)
    with pytest.raises(ValueError, match='not finite'):
        PermutohedralLattice(torch.full((1, 2, 4, 4), float('nan')))


def test_dense_kernel_exclude_self():
    feats = torch.rand(1, 2, 3, 4)
    k = dense_kernel(feats)
    assert torch.allclose(torch.diagonal(k[0]), torch.ones(12, dtype=k.dtype))
    assert torch.allclose(torch.diagonal(dense_kernel(feats, exclude_self=True)[0]),
                          torch.zeros(12, dtype=k.dtype))


# -- fast paths: NumPy construction, folded normalisation, multiplied-out operator ---------------
def _matrices(lattice):
    return [lattice.splat, lattice.slice, *lattice.blur]


def _csr_parts(mat):
    return mat.crow_indices().long(), mat.col_indices().long(), mat.values()


def _feature_cases(dtype):
    g = torch.Generator().manual_seed(5)
    return [(torch.rand(2, 5, 9, 11, generator=g) * 4).to(dtype),               # batch, d = 5
            torch.randint(0, 3, (1, 3, 8, 9), generator=g).to(dtype),          # many ties
            (torch.rand(1, 2, 12, 7, generator=g) * 2).to(dtype),
            (torch.rand(1, 1, 5, 6, generator=g) * 3).to(dtype),               # d = 1
            (torch.rand(1, 5, 10, 12, generator=g) * 30).to(dtype)]            # sparse lattice


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_numpy_and_torch_construction_agree(monkeypatch, dtype):
    """On CPU the lattice is built with NumPy sorts/searches; the torch ops (used on other
    devices) must give exactly the same matrices, and both valid CSR (sorted, distinct columns)."""
    for feats in _feature_cases(dtype):
        fast = PermutohedralLattice(feats)
        monkeypatch.setattr(permutohedral, '_USE_NUMPY', False)
        slow = PermutohedralLattice(feats)
        monkeypatch.setattr(permutohedral, '_USE_NUMPY', True)
        assert fast.num_vertices == slow.num_vertices
        for a, b in zip(_matrices(fast), _matrices(slow)):
            for x, y in zip(_csr_parts(a), _csr_parts(b)):
                assert torch.equal(x, y)
            torch._validate_sparse_csr_tensor_args(*_csr_parts(a), a.shape)
        assert torch.equal(fast.norm, slow.norm)


def test_folded_normalisations_match_explicit_scaling():
    """Normalisations folded into the splat/slice weights equal scaling around the raw filter,
    and their backward passes are exact (gradcheck through the transposed chains)."""
    g = torch.Generator().manual_seed(6)
    feats = torch.rand((1, 5, 6, 7), generator=g, dtype=torch.float64) * 3
    lattice = PermutohedralLattice(feats)
    v = torch.rand((1, 3, 6, 7), generator=g, dtype=torch.float64, requires_grad=True)
    raw = lattice.operator('none')(v)
    torch.testing.assert_close(raw, dense_like_chain(lattice, v), rtol=1e-12, atol=1e-12)
    norm = lattice.norm
    torch.testing.assert_close(lattice.operator('mean')(v), raw * norm, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(lattice.filter(v, normalize=True), raw * norm, rtol=1e-12,
                               atol=1e-14)
    s = norm.sqrt()
    torch.testing.assert_close(lattice.operator('symmetric')(v),
                               lattice.operator('none')(v * s) * s, rtol=1e-12, atol=1e-14)
    for name in ('none', 'mean', 'symmetric'):
        assert torch.autograd.gradcheck(lambda x: lattice.operator(name)(x), (v,))
    with pytest.raises(ValueError, match='normalization'):
        lattice.operator('other')


def dense_like_chain(lattice, v):
    """alpha slice B_d ... B_0 splat v with dense matrices."""
    n, c, h, w = v.shape
    x = v.permute(0, 2, 3, 1).reshape(-1, c)
    x = lattice.splat.to_dense() @ x
    for b in lattice.blur:
        x = b.to_dense() @ x
    x = lattice.alpha * (lattice.slice.to_dense() @ x)
    return x.reshape(n, h, w, c).permute(0, 3, 1, 2)


@pytest.mark.parametrize('normalization', ['none', 'mean', 'symmetric'])
def test_multiplied_out_operator_matches_chain(monkeypatch, normalization):
    """A sparse lattice (few shared vertices) filters with the chain multiplied out into one
    (P, P) matrix: same outputs and gradients as the chain of d + 3 products."""
    g = torch.Generator().manual_seed(7)
    feats = torch.rand((2, 5, 8, 9), generator=g, dtype=torch.float64) * 30
    monkeypatch.setattr(permutohedral, '_COMPOSE_MIN_VERTICES_PER_POINT', float('inf'))
    chain = PermutohedralLattice(feats)
    monkeypatch.setattr(permutohedral, '_COMPOSE_MIN_VERTICES_PER_POINT', 0.0)
    comp = PermutohedralLattice(feats)
    assert chain.composed() is None and chain.composed(True) is None
    assert comp.composed() is not None
    torch.testing.assert_close(comp.composed(True).to_dense(), comp.composed().to_dense().T)
    v = torch.rand((2, 3, 8, 9), generator=g, dtype=torch.float64)
    u = torch.rand((2, 3, 8, 9), generator=g, dtype=torch.float64)
    outs, grads = [], []
    for lattice in (chain, comp):
        x = v.clone().requires_grad_(True)
        out = lattice.operator(normalization)(x)
        (out * u).sum().backward()
        outs.append(out.detach())
        grads.append(x.grad)
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-12, atol=1e-14)


def test_multiplied_out_operator_abandoned_for_dense_kernels(monkeypatch):
    """A smooth (spatial) lattice's multiplied-out kernel has far more entries than the chain:
    the attempt stops and the chain is used."""
    monkeypatch.setattr(permutohedral, '_COMPOSE_MIN_VERTICES_PER_POINT', 0.0)
    ys, xs = torch.meshgrid(torch.arange(20.), torch.arange(30.), indexing='ij')
    lattice = PermutohedralLattice(torch.stack([xs, ys]).unsqueeze(0) / 3.0)
    assert lattice.composed() is None and lattice.composed(True) is None
    v = torch.rand(1, 2, 20, 30)
    torch.testing.assert_close(lattice.filter(v), dense_like_chain(lattice, v))


def test_flat_operator_broadcasts_one_lattice_over_images():
    """apply_flat on (N H W, C) rows with a lattice built from one image filters each image."""
    g = torch.Generator().manual_seed(8)
    lattice = PermutohedralLattice(torch.rand((1, 3, 5, 6), generator=g) * 2)
    vals = torch.rand((3, 2, 5, 6), generator=g)
    op = lattice.operator('mean')
    flat = op.apply_flat(vals.permute(0, 2, 3, 1).reshape(-1, 2))
    for b in range(3):
        torch.testing.assert_close(flat[b * 30:(b + 1) * 30].T.reshape(1, 2, 5, 6),
                                   op(vals[b:b + 1]))
    with pytest.raises(ValueError, match='batch'):
        PermutohedralLattice(torch.rand(2, 2, 4, 4)).operator().apply_flat(torch.rand(48, 1))
