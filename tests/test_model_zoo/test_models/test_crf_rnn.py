"""CRF-RNN: the mean-field layer (lattice vs exact filters, free energy, iteration counts,
gradients) and the mmseg segmentor (pixel-space contract, un-normalisation, loss, configs)."""
import importlib.util
from pathlib import Path

import pytest
import torch

import model_zoo.models.crf_rnn  # noqa: F401  (registers MeanFieldCRF and CRFRNN)
from model_zoo import PixelSpaceModel
from model_zoo.builder import build_segmentor, load_config
from model_zoo.models.crf_rnn import CRFRNN, MeanFieldCRF, SeparableSpatialKernel, pixel_grid

REPO = Path(__file__).resolve().parents[3]
CONFIGS = REPO / 'model_zoo' / 'configs'
# mmengine resolves ``mmseg::`` config bases with pkg_resources, which setuptools >= 81 no longer
# ships; without it no config inheriting mmseg's bases (ours or the demo FCN's) can load.
needs_pkg_resources = pytest.mark.skipif(
    importlib.util.find_spec('pkg_resources') is None,
    reason="mmengine needs pkg_resources to resolve 'mmseg::' config bases (setuptools >= 81 "
           'removed it; pin setuptools<81)')


def piecewise_image(h, w, noise=0.0, seed=0, dtype=torch.float32):
    """Three flat colour regions (+ optional noise), RGB 0-255, (1, 3, h, w)."""
    g = torch.Generator().manual_seed(seed)
    img = torch.zeros(1, 3, h, w, dtype=dtype)
    img[..., :, : w // 2] = torch.tensor([200., 40, 60], dtype=dtype).view(1, 3, 1, 1)
    img[..., :, w // 2:] = torch.tensor([30., 120, 220], dtype=dtype).view(1, 3, 1, 1)
    img[..., h // 2:, w // 3:] = torch.tensor([90., 90, 90], dtype=dtype).view(1, 3, 1, 1)
    return (img + noise * torch.randn(img.shape, generator=g, dtype=dtype)).clamp(0, 255)


def random_unary(c, h, w, seed=1, scale=2.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn((1, c, h, w), generator=g, dtype=dtype)


# -- mean-field layer --------------------------------------------------------------------------
@pytest.mark.parametrize('kwargs,tol_logits,tol_prob', [
    (dict(), 0.06, 0.02),                                         # crfasrnn's defaults
    (dict(theta_alpha=8.0, theta_beta=13.0), 0.03, 0.005),
    (dict(spatial_filter='separable'), 0.005, 0.001),
])
def test_lattice_layer_matches_dense_layer(kwargs, tol_logits, tol_prob):
    """10 mean-field iterations with lattice filters vs the exact O(N^2) filters, 16x20 image.

    Measured: relative L2 error of the logits 3.6 %, 0.8 %, 0.08 % and mean |Δ marginal| 0.011,
    0.001, 0.0002 (the lattice's spatial kernel, d = 2, contributes most: the separable exact
    spatial kernel removes it). Tolerances leave ~1.5-5x headroom."""
    h, w, c = 16, 20, 4
    img, unary = piecewise_image(h, w), random_unary(c, h, w)
    dense_kwargs = {k: v for k, v in kwargs.items() if k != 'spatial_filter'}
    lat = MeanFieldCRF(c, **kwargs).eval()
    ref = MeanFieldCRF(c, backend='dense', **dense_kwargs).eval()
    a, b = lat(unary, img), ref(unary, img)
    a, b = a.detach(), b.detach()
    assert float((a - b).norm() / b.norm()) < tol_logits
    assert float((a.softmax(1) - b.softmax(1)).abs().mean()) < tol_prob
    assert (a.argmax(1) == b.argmax(1)).float().mean() >= 0.95
    assert not torch.allclose(a, unary)  # the CRF did change the unaries


def reference_mean_field(crf: MeanFieldCRF, unary, image, iters):
    """crfasrnn's update written directly with (N, C, H, W) maps and 1x1 convolutions."""
    spatial, bilateral = crf.kernels(image)
    logits = unary
    for _ in range(iters):
        q = torch.softmax(logits, dim=1)
        msg = crf._mix(crf.spatial_ker_weights, spatial(q)) + \
            crf._mix(crf.bilateral_ker_weights, bilateral(q))
        logits = unary - crf._mix(crf.compatibility_matrix, msg)
    return logits


@pytest.mark.parametrize('kwargs', [
    dict(),
    dict(normalization='symmetric', theta_alpha=5.0, theta_beta=20.0),
    dict(normalization='none', spatial_weight=0.3, bilateral_weight=0.2),
    dict(spatial_filter='separable'),
    dict(backend='dense', theta_alpha=5.0, theta_beta=20.0),
    dict(backend='dense', normalization='symmetric'),
])
def test_flat_mean_field_loop_matches_reference(kwargs):
    """The layer's loop on (N H W, C) matrices (compatibility folded into the kernel weights)
    equals the plain NCHW formulation, values and gradients (unary and parameters), batch of 2."""
    h, w, c = 9, 11, 4
    img = torch.cat([piecewise_image(h, w, noise=3.0, dtype=torch.float64),
                     piecewise_image(h, w, noise=8.0, seed=3, dtype=torch.float64).flip(-1)])
    unary = torch.cat([random_unary(c, h, w, dtype=torch.float64),
                       random_unary(c, h, w, seed=2, dtype=torch.float64)])
    crf = MeanFieldCRF(c, num_iter_test=4, **kwargs).double().eval()
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():  # a general (non-Potts, non-diagonal) parametrisation
        for p in crf.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    weights = torch.rand(unary.shape, generator=g, dtype=torch.float64)
    results = []
    for fn in (lambda u: crf(u, img), lambda u: reference_mean_field(crf, u, img, 4)):
        u = unary.clone().requires_grad_(True)
        crf.zero_grad()
        out = fn(u)
        (out * weights).sum().backward()
        results.append((out.detach(), u.grad, [p.grad.clone() for p in crf.parameters()]))
    (a, ga, pa), (b, gb, pb) = results
    assert a.shape == b.shape and a.is_contiguous()
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ga, gb, rtol=1e-10, atol=1e-10)
    for x, y in zip(pa, pb):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-10)


def test_separable_spatial_kernel_is_exact():
    from model_zoo.models.crf_rnn import GaussianKernel
    g = torch.Generator().manual_seed(0)
    q = torch.rand((2, 3, 11, 13), generator=g, dtype=torch.float64)
    for norm in ('mean', 'symmetric', 'none'):
        sep = SeparableSpatialKernel(11, 13, 2.0, norm, dtype=torch.float64)(q)
        dense = GaussianKernel(pixel_grid(11, 13, dtype=torch.float64) / 2.0, 'dense', norm)(q)
        torch.testing.assert_close(sep, dense, rtol=2e-3, atol=2e-3)


def free_energy(crf: MeanFieldCRF, unary, image, logits):
    """Mean-field free energy (KL up to log Z) of the dense CRF the layer runs on.

    F(Q) = -<Q, U> + 1/2 <Q, μ (W_G K_G + W_B K_B) Q> + <Q, log Q>, with the layer's kernels."""
    q = torch.softmax(logits.detach(), 1)
    spatial, bilateral = crf.kernels(image)
    msg = crf._mix(crf.spatial_ker_weights, spatial(q)) + \
        crf._mix(crf.bilateral_ker_weights, bilateral(q))
    pair = crf._mix(crf.compatibility_matrix, msg)
    pair = pair.detach()
    return float(-(q * unary).sum() + 0.5 * (q * pair).sum() + (q * torch.log(q + 1e-300)).sum())


@pytest.mark.parametrize('normalization', ['symmetric', 'none'])
def test_free_energy_does_not_increase(normalization):
    """Parallel mean-field updates never increase F for Potts compatibility (μ = -I), positive
    kernel weights and symmetric PSD kernel matrices (the self term kept, as crfasrnn does): each
    update is a concave-convex step (Krähenbühl & Koltun 2013), so no damping is needed.
    crfasrnn's row normalisation ('mean', K/K1) is not symmetric and has no such energy."""
    h, w, c = 10, 12, 3
    img = piecewise_image(h, w, noise=4.0, dtype=torch.float64)
    unary = random_unary(c, h, w, scale=1.0, dtype=torch.float64)
    weight = 0.5 if normalization == 'none' else 3.0
    crf = MeanFieldCRF(c, theta_alpha=6.0, theta_beta=20.0, theta_gamma=2.0,
                       spatial_weight=weight, bilateral_weight=weight,
                       normalization=normalization, backend='dense').eval()
    energies = [free_energy(crf, unary, img, crf(unary, img, num_iter=t)) for t in range(9)]
    diffs = [b - a for a, b in zip(energies, energies[1:])]
    assert all(d <= 1e-9 * abs(e) for d, e in zip(diffs, energies)), energies
    assert energies[-1] < energies[0] - 1e-3  # and it actually moved


def test_iteration_counts_train_vs_eval():
    h, w, c = 8, 10, 3
    img, unary = piecewise_image(h, w, noise=2.0), random_unary(c, h, w)
    crf = MeanFieldCRF(c)  # num_iter_train=5, num_iter_test=10
    assert (crf.num_iter_train, crf.num_iter_test) == (5, 10)
    crf.train()
    assert crf.num_iter == 5
    out_train = crf(unary, img)
    torch.testing.assert_close(out_train, crf(unary, img, num_iter=5))
    assert not torch.allclose(out_train, crf(unary, img, num_iter=10), atol=1e-4)
    crf.eval()
    assert crf.num_iter == 10
    torch.testing.assert_close(crf(unary, img), crf(unary, img, num_iter=10))
    assert crf(unary, img, num_iter=0) is unary
    custom = MeanFieldCRF(c, num_iter_train=2, num_iter_test=3).eval()
    torch.testing.assert_close(custom(unary, img), custom(unary, img, num_iter=3))


def test_layer_gradients_wrt_unary_and_parameters():
    """Exact gradients (float64 gradcheck through the lattice's custom backward)."""
    h, w, c = 5, 6, 3
    img = piecewise_image(h, w, noise=3.0, dtype=torch.float64)
    unary = random_unary(c, h, w, dtype=torch.float64).requires_grad_(True)
    crf = MeanFieldCRF(c, num_iter_test=3, theta_alpha=4.0, theta_beta=20.0).double().eval()
    assert torch.autograd.gradcheck(lambda u: crf(u, img), (unary,))
    crf(unary, img).softmax(1)[:, 0].sum().backward()
    for p in (crf.spatial_ker_weights, crf.bilateral_ker_weights, crf.compatibility_matrix):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_layer_rejects_bad_input():
    crf = MeanFieldCRF(3)
    with pytest.raises(ValueError, match='unary'):
        crf(torch.zeros(1, 4, 5, 5), torch.zeros(1, 3, 5, 5))
    with pytest.raises(ValueError, match='does not match'):
        crf(torch.zeros(1, 3, 5, 5), torch.zeros(1, 3, 5, 6))
    with pytest.raises(ValueError, match='normalization'):
        MeanFieldCRF(3, normalization='l1')


# -- segmentor ---------------------------------------------------------------------------------
def tiny_crfrnn_config(tmp_path, bgr_to_rgb=True, num_classes=5):
    from conftest import TINY_CONFIG
    text = TINY_CONFIG.replace('{num_classes}', str(num_classes)).replace(
        "type='EncoderDecoder',",
        "type='CRFRNN', crf=dict(type='MeanFieldCRF', num_iter_train=2, num_iter_test=4),")
    if not bgr_to_rgb:
        text = text.replace('bgr_to_rgb=True', 'bgr_to_rgb=False')
    path = tmp_path / f'tiny_crfrnn_{int(bgr_to_rgb)}.py'
    path.write_text(text)
    return path


@pytest.fixture(scope='module')
def tiny_segmentor(tmp_path_factory):
    torch.manual_seed(0)
    return build_segmentor(tiny_crfrnn_config(tmp_path_factory.mktemp('crfrnn')))


def test_pixel_space_contract(tiny_segmentor):
    """Forward + backward through PixelSpaceModel: input-size logits, finite gradient to pixels."""
    assert isinstance(tiny_segmentor, CRFRNN)
    model = PixelSpaceModel.from_segmentor(tiny_segmentor)
    assert model.num_classes == 5 and not tiny_segmentor.crf.training
    g = torch.Generator().manual_seed(0)
    x = (torch.rand((2, 3, 26, 34), generator=g) * 255).requires_grad_(True)
    logits = model(x)
    assert logits.shape == (2, 5, 26, 34)
    weights = torch.randn(logits.shape, generator=g)
    (logits * weights).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with torch.no_grad():  # deterministic in eval mode
        torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)
    # the output is the CRF's: same as running the layer on the unaries by hand
    seg = tiny_segmentor
    with torch.no_grad():
        inputs = model.normalize(x)
        unary = torch.nn.functional.interpolate(seg.decode_head(seg.extract_feat(inputs)),
                                                size=(26, 34), mode='bilinear')
        expected = seg.crf(unary, x)
        torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-4)
        assert not torch.allclose(expected, unary, atol=1e-3)


@pytest.mark.parametrize('bgr_to_rgb', [True, False])
def test_image_rgb_undoes_preprocessing(tmp_path, bgr_to_rgb):
    seg = build_segmentor(tiny_crfrnn_config(tmp_path, bgr_to_rgb))
    model = PixelSpaceModel.from_segmentor(seg)
    assert model.input_order == ('rgb' if bgr_to_rgb else 'bgr')
    x = torch.rand(1, 3, 6, 7) * 255
    x[:, 0] = 250.0  # strongly red: a channel swap would show
    torch.testing.assert_close(seg.image_rgb(model.normalize(x)), x, rtol=1e-5, atol=1e-3)


def test_predict_matches_tensor_mode(tmp_path):
    from mmengine.config import ConfigDict
    torch.manual_seed(0)
    seg = build_segmentor(tiny_crfrnn_config(tmp_path))
    # build_segmentor's sanitising leaves test_cfg a plain dict; mmseg's predict path reads
    # test_cfg.mode as an attribute, as from a config file.
    seg.test_cfg = ConfigDict(seg.test_cfg)
    model = PixelSpaceModel.from_segmentor(seg)
    x = torch.rand(1, 3, 24, 32) * 255
    with torch.no_grad():
        samples = seg.predict(model.normalize(x))
        pred = samples[0].pred_sem_seg.data[0]
        assert pred.shape == (24, 32)
        assert (pred == model(x).argmax(1)[0]).float().mean() > 0.99


def test_loss_trains_end_to_end_through_the_crf(tmp_path):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    torch.manual_seed(0)
    seg = build_segmentor(tiny_crfrnn_config(tmp_path))
    seg.train()
    assert seg.crf.training and seg.crf.num_iter == 2
    g = torch.Generator().manual_seed(0)
    inputs = torch.randn((2, 3, 24, 32), generator=g)
    samples = []
    for _ in range(2):
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=torch.randint(0, 5, (1, 24, 32), generator=g))
        s.set_metainfo(dict(img_shape=(24, 32), ori_shape=(24, 32), pad_shape=(24, 32)))
        samples.append(s)
    losses = seg.loss(inputs, samples)
    assert set(losses) >= {'decode.loss_ce', 'decode.acc_seg'}
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    for p in (seg.crf.compatibility_matrix, seg.crf.bilateral_ker_weights,
              seg.decode_head.conv_seg.weight, seg.backbone.stem[0].weight):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


# -- configs -----------------------------------------------------------------------------------
@needs_pkg_resources
def test_demo_config_is_the_demo_fcn_plus_crf():
    crf_cfg = CONFIGS / 'crfrnn' / 'crfrnn_r18-w16-d8_1.5k_synthcity-256x128.py'
    fcn_cfg = CONFIGS / 'fcn' / 'fcn_r18-w16-d8_1.5k_synthcity-256x128.py'
    crf_seg, fcn_seg = build_segmentor(crf_cfg), build_segmentor(fcn_cfg)
    assert isinstance(crf_seg, CRFRNN) and type(fcn_seg).__name__ == 'EncoderDecoder'
    crf_state, fcn_state = crf_seg.state_dict(), fcn_seg.state_dict()
    unary_keys = {k for k in crf_state if not k.startswith('crf.')}
    assert unary_keys == set(fcn_state)
    assert all(crf_state[k].shape == fcn_state[k].shape for k in unary_keys)
    crf = crf_seg.crf
    assert (crf.num_classes, crf.num_iter_train, crf.num_iter_test) == (19, 5, 10)
    assert (crf.theta_alpha, crf.theta_beta, crf.theta_gamma) == (160.0, 3.0, 3.0)
    a, b = load_config(crf_cfg), load_config(fcn_cfg)
    assert a.train_dataloader == b.train_dataloader and a.train_cfg == b.train_cfg


@needs_pkg_resources
@pytest.mark.parametrize('name,classes', [
    ('crfrnn_r50-d8_4xb2-80k_cityscapes-512x1024.py', 19),
    ('crfrnn_r50-d8_4xb4-20k_voc12aug-512x512.py', 21),
])
def test_full_size_configs(name, classes):
    cfg = load_config(CONFIGS / 'crfrnn' / name)
    assert cfg.model.type == 'CRFRNN'
    assert cfg.model.decode_head.num_classes == classes
    crf = cfg.model.crf
    assert (crf.theta_alpha, crf.theta_beta, crf.theta_gamma) == (160.0, 3.0, 3.0)
    assert (crf.num_iter_train, crf.num_iter_test) == (5, 10)
