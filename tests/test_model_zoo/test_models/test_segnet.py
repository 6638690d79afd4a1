"""SegNet (model_zoo/models/segnet.py): VGG-16-BN layout, parameter count, unpooling, pixel-space contract."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import model_zoo.models.segnet  # noqa: F401  (registers SegNet / SegNetHead)
from model_zoo import PixelSpaceModel
from model_zoo.builder import build_segmentor

DEMO = 'model_zoo/configs/segnet/segnet_vgg16bn-c16_1.5k_synthcity-256x128.py'
BASE = 'model_zoo/configs/_base_/models/segnet.py'
FULL = 'model_zoo/configs/segnet/segnet_vgg16bn_4xb2-80k_cityscapes-512x1024.py'
PAPER_PARAMETERS = 29.45e6   # Badrinarayanan et al. 2017, Table 6 (29.45 M)


@pytest.fixture(scope='module')
def full():
    """The full-width model (the base model config that FULL inherits; needs no mmseg:: lookup)."""
    torch.manual_seed(0)
    return build_segmentor(BASE)


@pytest.fixture(scope='module')
def demo():
    torch.manual_seed(0)
    return build_segmentor(DEMO)


def _convs(module):
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def test_parameter_count_and_vgg16_layout(full):
    n = sum(p.numel() for p in full.parameters())
    assert abs(n - PAPER_PARAMETERS) / PAPER_PARAMETERS < 0.02, n
    enc = _convs(full.backbone.encoder)
    assert [c.out_channels for c in enc] == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert all(c.kernel_size == (3, 3) for c in enc)
    # decoder: deepest stage first, mirror image of the encoder, then the 3x3 classifier
    dec = [c for stage in reversed(full.backbone.decoder) for c in _convs(stage)] + [full.decode_head.conv_seg]
    assert [(c.in_channels, c.out_channels) for c in dec] == (
        [(512, 512)] * 3 + [(512, 512), (512, 512), (512, 256), (256, 256), (256, 256), (256, 128),
                            (128, 128), (128, 64), (64, 64), (64, 19)])
    assert full.decode_head.conv_seg.kernel_size == (3, 3)


def test_unpooling_puts_values_at_pooled_argmax(demo):
    """Each decoder stage's unpooling writes its input at the argmax of its mirrored encoder window."""
    demo.eval()
    pre_pool, unpool = {}, {}
    hooks = []
    for i, (enc, dec) in enumerate(zip(demo.backbone.encoder, demo.backbone.decoder)):
        hooks.append(enc.convs.register_forward_hook(lambda m, a, o, i=i: pre_pool.__setitem__(i, o)))
        hooks.append(dec.unpool.register_forward_hook(lambda m, a, o, i=i: unpool.__setitem__(i, (a[0], o))))
    torch.manual_seed(1)
    with torch.no_grad():
        demo.backbone(torch.randn(2, 3, 70, 100))   # odd sizes on the way down: 35x50, 17x25, 8x12, 4x6
    for h in hooks:
        h.remove()
    checked = 0
    for i in range(len(demo.backbone.encoder)):
        feat, (inp, out) = pre_pool[i], unpool[i]
        n, c, hh, ww = feat.shape
        assert out.shape == feat.shape
        ph, pw = hh // 2, ww // 2
        # windows the pooling covered (an odd last row/column is not pooled and must stay zero)
        assert not out[..., 2 * ph:, :].any() and not out[..., :, 2 * pw:].any()
        win = F.unfold(feat[..., :2 * ph, :2 * pw].reshape(n * c, 1, 2 * ph, 2 * pw), 2, stride=2)
        got = F.unfold(out[..., :2 * ph, :2 * pw].reshape(n * c, 1, 2 * ph, 2 * pw), 2, stride=2)
        val = inp.reshape(n * c, 1, ph * pw)
        top2 = win.topk(2, dim=1).values
        unique = top2[:, 0] > top2[:, 1]          # ties (e.g. ReLU zeros) have no single argmax
        expected = torch.zeros_like(win).scatter_(1, win.argmax(dim=1, keepdim=True), val)
        mask = unique.unsqueeze(1).expand_as(win)
        torch.testing.assert_close(got[mask], expected[mask], rtol=0, atol=0)
        torch.testing.assert_close(got.sum(1), val.squeeze(1), rtol=0, atol=0)   # nothing lost or moved out
        checked += int(unique.sum())
    assert checked > 1000


@pytest.mark.parametrize('config,size', [(DEMO, (35, 50)), (FULL, (32, 48))])
def test_pixel_model_contract(config, size):
    torch.manual_seed(0)
    model = PixelSpaceModel.from_segmentor(build_segmentor(config))
    assert model.num_classes == 19
    x = (torch.rand(2, 3, *size) * 255).requires_grad_(True)
    logits = model(x)
    assert logits.shape == (2, 19, *size)
    logits.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)


def test_tensor_mode_returns_full_resolution_logits(demo):
    demo.eval()
    with torch.no_grad():
        assert demo(torch.randn(1, 3, 35, 50), mode='tensor').shape == (1, 19, 35, 50)


def test_training_step_reaches_every_parameter():
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    torch.manual_seed(0)
    model = build_segmentor(DEMO).train()
    samples = []
    for _ in range(2):
        s = SegDataSample(gt_sem_seg=PixelData(data=torch.randint(0, 19, (1, 32, 64))))
        s.set_metainfo(dict(img_shape=(32, 64), pad_shape=(32, 64)))
        samples.append(s)
    losses = model.loss(torch.randn(2, 3, 32, 64), samples)
    loss = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(loss)
    loss.backward()
    assert not [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
