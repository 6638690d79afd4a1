"""FCN-32s/16s/8s skip head (model_zoo/models/fcn_vgg.py) on VGG-16 and ResNet: structure, sizes,
upsampling, parameter counts, pixel-space contract."""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import model_zoo.models.fcn_vgg  # noqa: F401  (registers FCNSkipHead)
import model_zoo.models.vgg  # noqa: F401  (registers VGG16)
from model_zoo import PixelSpaceModel
from model_zoo.builder import build_segmentor
from model_zoo.zoo import count_parameters
from model_zoo.models.fcn_vgg import FCNSkipHead, bilinear_upsample_weight, caffe_fcn_key_map

CONFIGS = Path(__file__).resolve().parents[3] / 'model_zoo' / 'configs'
FULL_VGG = {f'fcn{v}s_vgg16_{ds}.py': (v, nc) for v in (8, 16, 32)
            for ds, nc in (('cityscapes-512x1024', 19), ('voc12aug-512x512', 21))}
FULL_R101 = {'fcn8s_r101_cityscapes-512x1024.py': 19, 'fcn8s_r101_voc12aug-512x512.py': 21}
DEMOS = ['fcn_vgg/fcn8s_vgg16-w8_1.5k_synthcity-256x128.py',
         'fcn_vgg/fcn16s_vgg16-w8_1.5k_synthcity-256x128.py',
         'fcn_vgg/fcn32s_vgg16-w8_1.5k_synthcity-256x128.py',
         'fcn_r101/fcn8s_r18-w16_1.5k_synthcity-256x128.py']
VGG16_FULLY_CONV = 134_260_544   # torchvision vgg16 without its 1000-way classifier


def meta_build(path):
    with torch.device('meta'):
        return build_segmentor(path)


def head(n_inputs, upsample='learned', num_classes=5):
    chans = (6, 8, 10)[-n_inputs:]
    torch.manual_seed(0)
    h = FCNSkipHead(in_channels=chans, in_index=list(range(3 - n_inputs, 3)), upsample=upsample,
                    num_classes=num_classes, dropout_ratio=0.0).eval()
    with torch.no_grad():   # FCN zero-initialises the skip scores; make them matter for the tests
        for conv in h.score_skips:
            conv.weight.normal_()
    return h


def feats(batch=1, h=16, w=24):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(batch, c, h // s, w // s, generator=g) for c, s in ((6, 1), (8, 2), (10, 4))]


@pytest.mark.parametrize('name', sorted(FULL_VGG))
def test_full_size_vgg_configs_parameter_counts(name):
    variant, nc = FULL_VGG[name]
    model = meta_build(CONFIGS / 'fcn_vgg' / name)
    n = count_parameters(model)
    up = nc * nc * 16                            # one 4x4 bilinear-initialised deconvolution
    head_params = {32: 4097 * nc,                # score_fr
                   16: 4097 * nc + 513 * nc + up,
                   8: 4097 * nc + 513 * nc + 257 * nc + 2 * up}[variant]
    assert n == VGG16_FULLY_CONV + head_params
    assert abs(n - 134.5e6) / 134.5e6 < 0.01     # Long et al.: FCN-VGG16 has 134 M parameters
    assert model.decode_head.out_channels == nc
    assert len(model.decode_head.score_skips) == {32: 0, 16: 1, 8: 2}[variant]


@pytest.mark.parametrize('name', sorted(FULL_R101))
def test_full_size_resnet101_configs(name):
    model = meta_build(CONFIGS / 'fcn_r101' / name)
    n = count_parameters(model)
    backbone = sum(p.numel() for p in model.backbone.parameters())
    assert 42.4e6 < backbone < 42.8e6            # ResNet-101-V1c without its classifier
    assert abs(n - 42.6e6) / 42.6e6 < 0.02, n
    assert model.backbone.strides == (1, 2, 2, 2) and model.decode_head.in_channels == [512, 1024, 2048]
    assert model.decode_head.out_channels == FULL_R101[name]


def test_caffe_key_map_covers_fcn8s():
    model = meta_build(CONFIGS / 'fcn_vgg' / 'fcn8s_vgg16_voc12aug-512x512.py')
    prefixes = {k.rsplit('.', 1)[0] for k in model.state_dict()}
    assert set(caffe_fcn_key_map(2).values()) == prefixes
    assert caffe_fcn_key_map(2)['score_pool3'] == 'decode_head.score_skips.1'
    assert caffe_fcn_key_map(2)['upscore_pool4'] == 'decode_head.upsamples.1'
    assert set(caffe_fcn_key_map(0)) == set(caffe_fcn_key_map(2)) - {
        'score_pool4', 'score_pool3', 'upscore2', 'upscore_pool4'}


def test_skip_structure_pool3_only_reaches_fcn8s():
    """Changing pool3 changes FCN-8s only; changing pool4 changes FCN-8s and FCN-16s, not 32s."""
    heads = {8: head(3), 16: head(2), 32: head(1)}
    base = feats()
    out = {v: h(base) for v, h in heads.items()}
    assert out[8].shape[-2:] == (16, 24) and out[16].shape[-2:] == (8, 12) and out[32].shape[-2:] == (4, 6)
    for changed, affected in ((0, {8}), (1, {8, 16}), (2, {8, 16, 32})):
        other = [f.clone() for f in base]
        other[changed] += torch.randn_like(other[changed])
        for v, h in heads.items():
            assert (not torch.equal(h(other), out[v])) == (v in affected), (changed, v)


def test_skip_scores_start_at_zero_so_fcn8s_starts_as_fcn32s():
    h = FCNSkipHead(in_channels=(6, 8, 10), in_index=(0, 1, 2), num_classes=5, dropout_ratio=0.0,
                    upsample='bilinear').eval()
    x = feats()
    coarse = h.cls_seg(x[2])
    expected = F.interpolate(F.interpolate(coarse, size=(8, 12), mode='bilinear'), size=(16, 24),
                             mode='bilinear')
    torch.testing.assert_close(h(x), expected)
    assert h.upsamples is None and all(not c.weight.detach().any() for c in h.score_skips)


def test_learned_upsampling_is_bilinear_at_initialisation():
    w = bilinear_upsample_weight(3, 4)
    assert w.shape == (3, 3, 4, 4) and float(w[0, 1].abs().sum()) == 0     # per-class only
    x = torch.randn(2, 3, 6, 7)
    up = F.conv_transpose2d(x, w, stride=2, padding=1)
    ref = F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=False)
    torch.testing.assert_close(up[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1])  # equal away from the border
    h = head(3)
    for up_layer in h.upsamples:
        torch.testing.assert_close(up_layer.weight, bilinear_upsample_weight(5, 4))


def test_odd_sizes_need_no_crops():
    h = head(3)
    x = [torch.randn(1, 6, 17, 25), torch.randn(1, 8, 8, 12), torch.randn(1, 10, 4, 6)]
    assert h(x).shape == (1, 5, 17, 25)


def test_skip_scales_and_validation():
    with pytest.raises(ValueError, match='skip_scales'):
        FCNSkipHead(in_channels=(6, 8, 10), in_index=(0, 1, 2), num_classes=5, skip_scales=(0.01,))
    with pytest.raises(ValueError, match='upsample'):
        FCNSkipHead(in_channels=(8, 10), in_index=(1, 2), num_classes=5, upsample='nearest')
    h = head(3)
    scaled = head(3)
    scaled.skip_scales = (0.01, 1e-4)
    with torch.no_grad():
        for a, b, s in zip(h.score_skips, scaled.score_skips, (0.01, 1e-4)):
            b.weight.copy_(a.weight / s)
    torch.testing.assert_close(scaled(feats()), h(feats()), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('config', DEMOS)
def test_demo_configs_small_and_pixel_contract(config):
    torch.manual_seed(0)
    seg = build_segmentor(CONFIGS / config)
    assert count_parameters(seg) < 1.5e6
    model = PixelSpaceModel.from_segmentor(seg)
    assert model.num_classes == 19
    x = (torch.rand(2, 3, 64, 96) * 255).requires_grad_(True)
    logits = model(x)
    assert logits.shape == (2, 19, 64, 96)
    logits.logsumexp(1).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with torch.no_grad():
        torch.testing.assert_close(model(x), logits.detach())   # eval mode: deterministic


def test_demo_training_step_reaches_every_parameter():
    torch.manual_seed(0)
    seg = build_segmentor(CONFIGS / DEMOS[0])
    seg.init_weights()
    seg.train()
    out = seg(torch.randn(2, 3, 64, 96), mode='tensor')
    assert out.shape == (2, 19, 8, 12)                         # FCN-8s: stride 8
    out.square().mean().backward()
    missing = [n for n, p in seg.named_parameters() if p.grad is None]
    assert missing == []
