"""Dilated-Net (model_zoo/models/dilated_net.py): front-end layout, context module with identity
initialisation (basic and large), parameter counts, Caffe names, pixel-space contract."""
from pathlib import Path

import pytest
import torch

import model_zoo.models.dilated_net  # noqa: F401  (registers DilatedContextHead)
import model_zoo.models.vgg  # noqa: F401  (registers VGG16)
from model_zoo import PixelSpaceModel
from model_zoo.builder import build_segmentor
from model_zoo.zoo import count_parameters
from model_zoo.models.dilated_net import ContextModule, caffe_dilation_key_map, identity_init_weight

CONFIGS = Path(__file__).resolve().parents[3] / 'model_zoo' / 'configs' / 'dilatednet'
VGG16_FULLY_CONV = 134_260_544   # torchvision vgg16 without its 1000-way classifier
DEMOS = ['dilatednet-front_vgg16-w8-d8_1.5k_synthcity-256x128.py',
         'dilatednet-context_vgg16-w8-d8_1.5k_synthcity-256x128.py']


def meta_build(name):
    with torch.device('meta'):
        return build_segmentor(CONFIGS / name)


@pytest.mark.parametrize('dataset,nc,context_layers', [('cityscapes-512x1024', 19, 9),
                                                       ('voc12aug-512x512', 21, 7)])
def test_full_size_parameter_counts(dataset, nc, context_layers):
    front = meta_build(f'dilatednet-front_vgg16-d8_{dataset}.py')
    context = meta_build(f'dilatednet-context_vgg16-d8_{dataset}.py')
    n_front, n_context = count_parameters(front), count_parameters(context)
    assert n_front == VGG16_FULLY_CONV + 4096 * nc + nc           # VGG-16 + `final`
    assert abs(n_front - 134e6) / 134e6 < 0.01
    extra = n_context - n_front                                   # basic module: C -> C layers
    assert extra == context_layers * (9 * nc * nc + nc) + nc * nc + nc
    assert 0.02e6 < extra < 0.04e6
    # Arnab et al. 2018, Sec. 5.2: Dilated-Net "has 512.6 MB in parameters (using 32-bit floats)"
    assert round(n_context * 4 / 2 ** 20, 1) == 512.6
    bb = front.backbone
    assert not hasattr(bb, 'pool4') and not hasattr(bb, 'pool5')
    assert bb.conv5_3.conv.dilation == (2, 2) and bb.conv4_3.conv.dilation == (1, 1)
    assert bb.fc6.conv.kernel_size == (7, 7) and bb.fc6.conv.dilation == (4, 4)
    dilations = [c.dilation[0] for c in context.decode_head.context.convs]
    assert dilations == ([1, 1, 2, 4, 8, 16, 32, 64, 1] if nc == 19 else [1, 1, 2, 4, 8, 16, 1])


def test_large_context_module_parameters_and_identity():
    C = 21
    large = ContextModule(C, (1, 1, 2, 4, 8, 16, 1), multipliers=(2, 2, 4, 8, 16, 32, 32))
    widths = [c.out_channels for c in large.convs] + [large.final.out_channels]
    assert widths == [2 * C, 2 * C, 4 * C, 8 * C, 16 * C, 32 * C, 32 * C, C]   # paper, Table 1
    x = torch.relu(torch.randn(2, C, 20, 24))
    with torch.no_grad():
        torch.testing.assert_close(large(x), x, rtol=1e-4, atol=1e-4)


def test_basic_context_identity_init_and_receptive_field():
    C = 5
    module = ContextModule(C, (1, 1, 2, 4, 8, 16, 1))
    x = torch.randn(1, C, 80, 80)
    with torch.no_grad():
        torch.testing.assert_close(module(x), torch.relu(x))   # identity on truncated scores
        # with other (positive, so no unit is cut by a ReLU) weights, one input pixel reaches a
        # 1 + 2 * (1+1+2+4+8+16+1) = 67 px window
        g = torch.Generator().manual_seed(0)
        for conv in module.convs:
            conv.weight.uniform_(0.01, 0.1, generator=g)
            conv.bias.fill_(0.5)
        x = torch.zeros(1, C, 80, 80)
        base = module(x)
        x[0, :, 40, 40] = 1.0
        changed = (module(x) - base).abs().amax(1)[0] > 0
    rows = changed.any(1).nonzero().flatten()
    assert rows.min() == 40 - 33 and rows.max() == 40 + 33


def test_identity_init_with_noise_breaks_ties_only_off_pattern():
    w = identity_init_weight(4, 2, 2, 3, noise_std=1e-3, generator=torch.Generator().manual_seed(0))
    centre = w[:, :, 1, 1]
    assert torch.allclose(centre[[0, 1], 0], torch.tensor([0.5, 0.5]))
    assert torch.allclose(centre[[2, 3], 1], torch.tensor([0.5, 0.5]))
    assert 0 < float(w[0, 1, 1, 1].abs()) < 0.01 and float(w[:, :, 0, 0].abs().max()) < 0.01


def test_identity_init_survives_mmengine_init_weights():
    torch.manual_seed(0)
    seg = build_segmentor(CONFIGS / DEMOS[1])
    seg.init_weights()
    ctx = seg.decode_head.context
    scores = torch.relu(torch.randn(1, 19, 16, 32))
    with torch.no_grad():
        torch.testing.assert_close(ctx(scores), scores)


def test_caffe_key_maps_cover_every_parameter():
    for name, layers in (('dilatednet-front_vgg16-d8_voc12aug-512x512.py', 0),
                         ('dilatednet-context_vgg16-d8_voc12aug-512x512.py', 7),
                         ('dilatednet-context_vgg16-d8_cityscapes-512x1024.py', 9)):
        model = meta_build(name)
        prefixes = {k.rsplit('.', 1)[0] for k in model.state_dict()}
        assert set(caffe_dilation_key_map(layers).values()) == prefixes, name
    keys = caffe_dilation_key_map(9)
    assert keys['ctx_conv7_1'] == 'decode_head.context.convs.7'   # dilation 64 in dilation10
    assert keys['ctx_fc1'] == 'decode_head.context.convs.8' and keys['final'] == 'decode_head.conv_seg'


@pytest.mark.parametrize('name', DEMOS)
def test_demo_configs_small_stride_8_and_pixel_contract(name):
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
    seg = build_segmentor(CONFIGS / DEMOS[1])
    seg.init_weights()
    seg.train()
    seg(torch.randn(2, 3, 64, 96), mode='tensor').square().mean().backward()
    assert [n for n, p in seg.named_parameters() if p.grad is None] == []
