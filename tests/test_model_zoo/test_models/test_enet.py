"""E-Net (model_zoo/models/enet.py): Table 1 layout, parameter count, pixel-space contract, training step."""
import pytest
import torch
from torch import nn

import model_zoo.models.enet  # noqa: F401  (registers ENet / ENetHead)
from model_zoo import PixelSpaceModel
from model_zoo.builder import build_segmentor
from model_zoo.models.enet import ENet, ENetBottleneck

DEMO = 'model_zoo/configs/enet/enet_1.5k_synthcity-256x128.py'
BASE = 'model_zoo/configs/_base_/models/enet.py'
FULL = 'model_zoo/configs/enet/enet_4xb2-adam-80k_cityscapes-512x1024.py'
PAPER_PARAMETERS = 0.37e6   # Paszke et al. 2016, Table 3 (0.37 M); Arnab et al.: 1.5 MB of float32


@pytest.fixture(scope='module')
def full():
    """The full-width model (the base model config that FULL inherits; needs no mmseg:: lookup)."""
    torch.manual_seed(0)
    return build_segmentor(BASE)


def test_parameter_count_matches_paper(full):
    n = sum(p.numel() for p in full.parameters())
    assert abs(n - PAPER_PARAMETERS) / PAPER_PARAMETERS < 0.05, n
    half = ENet(widen_factor=0.5)
    n_half = sum(p.numel() for p in half.parameters())
    assert 0.2 < n_half / sum(p.numel() for p in full.backbone.parameters()) < 0.3   # ~ widen_factor**2


def test_table1_layout(full):
    net = full.backbone
    assert net.initial.conv.out_channels == 13 and net.initial.conv.stride == (2, 2)
    assert [len(net.stage1), len(net.stage2), len(net.stage3), len(net.stage4), len(net.stage5)] == [4, 8, 8, 2, 1]

    def main_convs(block: ENetBottleneck):
        convs = [m for m in block.extension if isinstance(m, nn.Conv2d)]
        return convs[1:-1]   # between the 1x1 projection and the 1x1 expansion

    expected = [((3, 3), 1), ((3, 3), 2), ((5, 1), 1), ((3, 3), 4), ((3, 3), 1), ((3, 3), 8), ((5, 1), 1), ((3, 3), 16)]
    for stage in (net.stage2, net.stage3):
        got = [(main_convs(b)[0].kernel_size, main_convs(b)[0].dilation[0]) for b in stage]
        assert got == expected
        asym = [main_convs(b)[1].kernel_size for b in stage if len(main_convs(b)) == 2]
        assert asym == [(1, 5), (1, 5)]
    for down, (cin, cout) in ((net.down1, (16, 64)), (net.down2, (64, 128))):
        convs = [m for m in down.extension if isinstance(m, nn.Conv2d)]
        assert convs[0].kernel_size == (2, 2) and convs[0].stride == (2, 2)
        assert (convs[0].in_channels, convs[0].out_channels, convs[-1].out_channels) == (cin, cout // 4, cout)
    # PReLU in the encoder, ReLU in the decoder; spatial dropout 0.01 in stage 1, 0.1 from 2.0 on
    assert isinstance(net.stage1[0].act, nn.PReLU) and isinstance(net.stage4[0].act, nn.ReLU)
    drop = lambda b: [m.p for m in b.extension if isinstance(m, nn.Dropout2d)]  # noqa: E731
    assert drop(net.down1) == drop(net.stage1[3]) == [0.01]
    assert drop(net.down2) == drop(net.stage3[7]) == [0.1]
    assert drop(net.stage4[0]) == [] and drop(net.stage5[0]) == []
    assert isinstance(full.decode_head.full_conv, nn.ConvTranspose2d)
    assert full.decode_head.full_conv.stride == (2, 2) and full.decode_head.full_conv.out_channels == 19


def test_feature_shapes_and_pooling_indices(full):
    x = torch.randn(1, 3, 64, 96)
    seen = {}
    hook = full.backbone.down2.register_forward_hook(lambda m, i, o: seen.__setitem__('down2', o))
    with torch.no_grad():
        feats = full.backbone(x)
    hook.remove()
    out, indices = seen['down2']
    assert out.shape == (1, 128, 8, 12) and indices.shape == (1, 64, 8, 12)
    assert feats[0].shape == (1, 16, 32, 48)
    with pytest.raises(ValueError, match='divisible by 8'):
        full.backbone(torch.randn(1, 3, 60, 96))


@pytest.mark.parametrize('config', [DEMO, FULL])
def test_pixel_model_contract(config):
    torch.manual_seed(0)
    model = PixelSpaceModel.from_segmentor(build_segmentor(config))
    assert model.num_classes == 19 and model.size_divisor == 8
    x = (torch.rand(2, 3, 30, 44) * 255).requires_grad_(True)   # not a multiple of 8: padded inside
    logits = model(x)
    assert logits.shape == (2, 19, 30, 44)
    logits.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)   # eval: no dropout


def test_tensor_mode_returns_full_resolution_logits(full):
    full.eval()
    with torch.no_grad():
        out = full(torch.randn(2, 3, 32, 64), mode='tensor')
    assert out.shape == (2, 19, 32, 64)


def test_training_step_reaches_every_parameter():
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    torch.manual_seed(0)
    model = build_segmentor(DEMO).train()
    x = torch.randn(2, 3, 32, 64)
    samples = []
    for _ in range(2):
        s = SegDataSample(gt_sem_seg=PixelData(data=torch.randint(0, 19, (1, 32, 64))))
        s.set_metainfo(dict(img_shape=(32, 64), pad_shape=(32, 64)))
        samples.append(s)
    losses = model.loss(x, samples)
    loss = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(loss)
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not no_grad
    # spatial dropout is active in training mode only
    with torch.no_grad():
        assert not torch.equal(model(x, mode='tensor'), model(x, mode='tensor'))
