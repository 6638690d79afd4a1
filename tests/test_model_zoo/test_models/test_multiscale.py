"""Multiscale segmentor (model_zoo/models/multiscale.py): fusion equals max/mean over separately
computed per-scale logits, single-scale test scales, MSc training losses, predict, pixel contract."""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

import model_zoo.models.deeplabv2  # noqa: F401  (registers ASPPV2Head)
import model_zoo.models.multiscale  # noqa: F401  (registers MultiScaleEncoderDecoder)
from model_zoo import PixelSpaceModel
from model_zoo.builder import build_segmentor
from model_zoo.models.multiscale import MultiScaleEncoderDecoder

CONFIGS = Path(__file__).resolve().parents[3] / 'model_zoo' / 'configs' / 'deeplabv2'
MSC = CONFIGS / 'deeplabv2-aspp-msc_r18-w16-d8_1.5k_synthcity-256x128.py'
SINGLE = CONFIGS / 'deeplabv2-aspp_r18-w16-d8_1.5k_synthcity-256x128.py'
H, W = 64, 96


@pytest.fixture(scope='module')
def models():
    """The multiscale demo model and a plain EncoderDecoder holding the same weights."""
    torch.manual_seed(0)
    msc = build_segmentor(MSC)
    plain = build_segmentor(SINGLE)
    plain.load_state_dict(msc.state_dict())
    assert type(plain).__name__ == 'EncoderDecoder' and isinstance(msc, MultiScaleEncoderDecoder)
    return msc.eval(), plain.eval()


@pytest.fixture(scope='module')
def images():
    g = torch.Generator().manual_seed(3)
    return torch.randn(2, 3, H, W, generator=g)


def per_scale_logits(plain, x, scales=(0.5, 0.75, 1.0)):
    """Each scale run separately through the plain model, upsampled to the 1.0 branch's size."""
    out = []
    ref = plain(x, mode='tensor').shape[-2:]
    for s in scales:
        xs = x if s == 1 else F.interpolate(x, size=(round(H * s), round(W * s)), mode='bilinear',
                                            align_corners=False)
        out.append(F.interpolate(plain(xs, mode='tensor'), size=ref, mode='bilinear', align_corners=False))
    return torch.stack(out)


def test_max_fusion_equals_per_pixel_max_over_scales(models, images):
    msc, plain = models
    with torch.no_grad():
        fused = msc(images, mode='tensor')
        per = per_scale_logits(plain, images)
    assert fused.shape == (2, 19, H // 8, W // 8)
    torch.testing.assert_close(fused, per.amax(0))
    winners = per.argmax(0).unique()
    assert len(winners) > 1   # the max really mixes scales, so the test can tell them apart


def test_mean_fusion_equals_average(models, images):
    msc, plain = models
    msc.fusion = 'mean'
    try:
        with torch.no_grad():
            torch.testing.assert_close(msc(images, mode='tensor'), per_scale_logits(plain, images).mean(0))
    finally:
        msc.fusion = 'max'


@pytest.mark.parametrize('scale', [0.5, 0.75, 1.0])
def test_single_scale_evaluation(models, images, scale):
    msc, plain = models
    name = f'deeplabv2-aspp-msc_r18-w16-d8_1.5k_synthcity-256x128_test-s{int(scale * 100)}.py'
    test_model = build_segmentor(CONFIGS / name)
    assert test_model.test_scales == (scale,) and test_model.scales == (0.5, 0.75, 1.0)
    test_model.load_state_dict(msc.state_dict())
    xs = images if scale == 1 else F.interpolate(images, size=(round(H * scale), round(W * scale)),
                                                 mode='bilinear', align_corners=False)
    with torch.no_grad():
        torch.testing.assert_close(test_model(images, mode='tensor'), plain(xs, mode='tensor'))
    # through the pixel-space wrapper the logits come back at the image size, gradients reach it
    pixel = PixelSpaceModel.from_segmentor(test_model)
    x = (torch.rand(1, 3, H, W) * 255).requires_grad_(True)
    out = pixel(x)
    assert out.shape == (1, 19, H, W)
    out.logsumexp(1).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def samples(labels):
    out = []
    for lab in labels:
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=lab[None])
        s.set_metainfo(dict(img_shape=(H, W), pad_shape=(H, W), ori_shape=(H, W)))
        out.append(s)
    return out


def test_msc_training_losses(models, images):
    msc, _ = models
    labels = torch.randint(0, 19, (2, H, W))
    labels[:, :4] = 255   # ignored pixels
    data = samples(labels)
    msc.eval()            # same BN statistics as the tensor-mode reference below
    losses = msc.loss(images, data)
    assert {k for k in losses if 'loss' in k} == {
        'decode_50pct.loss_ce', 'decode_75pct.loss_ce', 'decode_100pct.loss_ce', 'decode.loss_ce'}

    def ce(logits):   # mmseg's default: ignored pixels count in the mean (avg_non_ignore=False)
        up = F.interpolate(logits, size=(H, W), mode='bilinear', align_corners=False)
        return F.cross_entropy(up, labels, ignore_index=255, reduction='sum') / labels.numel()

    with torch.no_grad():
        per = msc.scale_logits(images, (0.5, 0.75, 1.0))
        torch.testing.assert_close(losses['decode.loss_ce'], ce(msc(images, mode='tensor')))
        for s, logits in zip((50, 75, 100), per):
            torch.testing.assert_close(losses[f'decode_{s}pct.loss_ce'], ce(logits))
    # a training step reaches every parameter
    msc.train()
    msc.zero_grad()
    total = sum(v for k, v in msc.loss(images, data).items() if 'loss' in k)
    total.backward()
    assert [n for n, p in msc.named_parameters() if p.grad is None] == []
    assert all(torch.isfinite(p.grad).all() for p in msc.parameters())
    msc.zero_grad()
    msc.eval()

    msc.scale_losses = False
    try:
        assert {k for k in msc.loss(images, data) if 'loss' in k} == {'decode.loss_ce'}
    finally:
        msc.scale_losses = True


def test_predict_returns_fused_prediction_at_image_size(models, images):
    msc, _ = models
    # mmseg's inference reads test_cfg.mode as an attribute (a ConfigDict, as the Runner builds it)
    msc.test_cfg = ConfigDict(msc.test_cfg)
    with torch.no_grad():
        results = msc.predict(images)
        expected = F.interpolate(msc(images, mode='tensor'), size=(H, W), mode='bilinear',
                                 align_corners=False)
    assert len(results) == 2 and results[0].pred_sem_seg.data.shape == (1, H, W)
    torch.testing.assert_close(results[1].seg_logits.data, expected[1])
    assert torch.equal(results[1].pred_sem_seg.data[0], expected[1].argmax(0))


def test_pixel_contract_gradient_through_all_scales(models):
    msc, _ = models
    model = PixelSpaceModel.from_segmentor(msc)
    x = (torch.rand(1, 3, H, W) * 255).requires_grad_(True)
    logits = model(x)
    assert logits.shape == (1, 19, H, W)
    logits.logsumexp(1).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with torch.no_grad():
        torch.testing.assert_close(model(x), logits.detach())   # deterministic in eval mode
    for p in msc.parameters():   # PixelSpaceModel froze the shared fixture's weights
        p.requires_grad_(True)


def test_invalid_arguments(models):
    cfg = dict(type='ResNetV1c', depth=18, stem_channels=8, base_channels=4)
    head = dict(type='ASPPV2Head', in_channels=32, in_index=3, num_classes=3)
    with pytest.raises(ValueError, match='fusion'):
        MultiScaleEncoderDecoder(backbone=cfg, decode_head=head, fusion='median')
    with pytest.raises(ValueError, match='test_scales'):
        MultiScaleEncoderDecoder(backbone=cfg, decode_head=head, test_scales=())
