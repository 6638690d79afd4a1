"""DeepLab v2 ASPP head (model_zoo/models/deeplabv2.py) on VGG-16 and ResNet: branch sum, rates,
parameter counts, output stride, pixel-space contract."""
from pathlib import Path

import pytest
import torch

import model_zoo.models.deeplabv2  # noqa: F401  (registers ASPPV2Head)
import model_zoo.models.multiscale  # noqa: F401  (registers MultiScaleEncoderDecoder)
import model_zoo.models.vgg  # noqa: F401  (registers VGG16)
from model_zoo import PixelSpaceModel
from model_zoo.builder import build_segmentor
from model_zoo.zoo import count_parameters
from model_zoo.models.deeplabv2 import ASPPV2Head, caffe_aspp_v2_key_map

CONFIGS = Path(__file__).resolve().parents[3] / 'model_zoo' / 'configs' / 'deeplabv2'
FULL = sorted(p.name for p in CONFIGS.glob('*.py') if 'synthcity' not in p.name)
DEMOS = sorted(p.name for p in CONFIGS.glob('*synthcity*.py'))
VGG16_CONVS = 14_714_688   # conv1_1 ... conv5_3


def meta_build(name):
    with torch.device('meta'):
        return build_segmentor(CONFIGS / name)


def test_every_config_is_listed():
    assert len(FULL) == 9 and len(DEMOS) == 7   # 2 VGG, 2 R101, 2 MSc, 3 MSc test scales; VGG ft


@pytest.mark.parametrize('name', FULL)
def test_full_size_configs(name):
    model = meta_build(name)
    nc = 21 if 'voc12aug' in name else 19
    n = count_parameters(model)
    head = model.decode_head
    assert head.dilations == (6, 12, 18, 24) and head.out_channels == nc
    if '_r101-' in name:
        assert abs(n - 43.5e6) / 43.5e6 < 0.03, n                 # DeepLab v2 ResNet-101: ~42-44 M
        assert n == sum(p.numel() for p in model.backbone.parameters()) + 4 * (2048 * 9 * nc + nc)
        assert model.backbone.strides == (1, 2, 1, 1) and model.backbone.dilations == (1, 1, 2, 4)
    else:   # DeepLab-ASPP VGG-16: per branch fc6 (3x3x512x1024), fc7 (1024x1024), fc8 (1024 x C)
        assert n == VGG16_CONVS + 4 * (512 * 9 * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 * nc + nc)
        assert model.backbone.pool4.stride == 1 and model.backbone.pool5.stride == 1
        assert model.backbone.conv5_1.conv.dilation == (2, 2) and not model.backbone.with_fc
    is_msc = '-msc_' in name
    assert (type(model).__name__ == 'MultiScaleEncoderDecoder') == is_msc
    if is_msc:
        assert model.scales == (0.5, 0.75, 1.0) and model.fusion == 'max'
        expected = {'s50': (0.5,), 's75': (0.75,), 's100': (1.0,)}
        suffix = name.rsplit('test-', 1)[-1][:-3] if 'test-' in name else None
        assert model.test_scales == expected.get(suffix)


def tiny_head(num_convs, **kw):
    torch.manual_seed(0)
    return ASPPV2Head(in_channels=6, channels=8, num_convs=num_convs, num_classes=5, in_index=0,
                      dropout_ratio=0.5, **kw).eval()


@pytest.mark.parametrize('num_convs', [0, 2])
def test_output_is_sum_of_four_branches(num_convs):
    head = tiny_head(num_convs)
    x = [torch.randn(2, 6, 30, 31)]
    parts = head.branch_outputs(x)
    assert len(parts) == 4 and all(p.shape == (2, 5, 30, 31) for p in parts)
    torch.testing.assert_close(head(x), parts[0] + parts[1] + parts[2] + parts[3])
    # and each part is what the branch computes on its own, with its own rate
    for branch, rate, part in zip(head.branches, (6, 12, 18, 24), parts):
        atrous = branch.convs[0].conv if num_convs else branch.cls
        assert atrous.dilation == (rate, rate) and atrous.padding == (rate, rate)
        torch.testing.assert_close(branch(x[0]), part)
    assert not hasattr(head, 'conv_seg')


def test_branch_rates_set_receptive_field():
    """A rate-24 branch sees a pixel 24 away; a rate-6 branch does not."""
    head = ASPPV2Head(in_channels=1, num_classes=1, dilations=(6, 24), in_index=0).eval()
    x = torch.zeros(1, 1, 64, 64)
    x[0, 0, 32, 32 + 24] = 1.0
    with torch.no_grad():
        near, far = (b(x)[0, 0, 32, 32] - b.cls.bias for b in head.branches)
    assert float(near.abs()) == 0 and float(far.abs()) > 0


def test_vgg_branches_have_train_only_dropout():
    head = tiny_head(2)
    x = [torch.randn(1, 6, 9, 9)]
    torch.testing.assert_close(head(x), head(x))
    head.train()
    assert not torch.equal(head(x), head(x))
    assert isinstance(head.branches[0].dropout, torch.nn.Dropout)
    assert isinstance(tiny_head(0).branches[0].dropout, torch.nn.Identity)


def test_caffe_key_maps_cover_head_parameters():
    for num_convs in (0, 2):
        head = tiny_head(num_convs)
        prefixes = {k.rsplit('.', 1)[0] for k in head.state_dict()}
        assert set(caffe_aspp_v2_key_map(num_convs, prefix='').values()) == prefixes
    assert caffe_aspp_v2_key_map(0)['fc1_voc12_c3'] == 'decode_head.branches.3.cls'
    assert caffe_aspp_v2_key_map(2)['fc7_2'] == 'decode_head.branches.1.convs.1.conv'


@pytest.mark.parametrize('name', [d for d in DEMOS if 'test-' not in d])
def test_demo_configs_small_output_stride_8_and_pixel_contract(name):
    torch.manual_seed(0)
    seg = build_segmentor(CONFIGS / name)
    assert count_parameters(seg) < 1.5e6
    with torch.no_grad():
        assert seg(torch.zeros(1, 3, 64, 96), mode='tensor').shape == (1, 19, 8, 12)
    model = PixelSpaceModel.from_segmentor(seg)
    x = (torch.rand(2, 3, 64, 96) * 255).requires_grad_(True)
    logits = model(x)
    assert logits.shape == (2, 19, 64, 96)
    logits.logsumexp(1).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_demo_training_step_reaches_every_parameter():
    torch.manual_seed(0)
    seg = build_segmentor(CONFIGS / 'deeplabv2-aspp_vgg16-w8-d8_1.5k_synthcity-256x128.py')
    seg.init_weights()
    seg.train()
    seg(torch.randn(2, 3, 64, 96), mode='tensor').square().mean().backward()
    assert [n for n, p in seg.named_parameters() if p.grad is None] == []
