"""PixelSpaceModel: normalisation, channel order, resize, padding and slide inference."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from model_zoo import PixelSpaceModel
from model_zoo.builder import build_segmentor


@pytest.fixture(scope='module')
def segmentor(tiny_config):
    torch.manual_seed(0)
    return build_segmentor(tiny_config)


def test_contract_shape_eval_and_gradient(segmentor):
    model = PixelSpaceModel.from_segmentor(segmentor)
    assert not model.training and not segmentor.training
    x = (torch.rand(2, 3, 40, 56) * 255).requires_grad_(True)
    logits = model(x)
    assert logits.shape == (2, 19, 40, 56)
    logits.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in segmentor.parameters())   # frozen weights


def test_matches_mmseg_preprocessor_and_tensor_mode(segmentor):
    """Same logits as mmseg's data_preprocessor (BGR uint8 in) + mode='tensor' + bilinear resize."""
    model = PixelSpaceModel.from_segmentor(segmentor)
    assert model.input_order == 'rgb'
    rgb = torch.randint(0, 256, (1, 3, 32, 48)).float()
    bgr = rgb.flip(1)   # what mmseg's loader produces
    data = segmentor.data_preprocessor({'inputs': [bgr[0].to(torch.uint8)], 'data_samples': None})
    with torch.no_grad():
        raw = segmentor(data['inputs'], mode='tensor')
        expected = F.interpolate(raw, size=(32, 48), mode='bilinear', align_corners=False)
        torch.testing.assert_close(model(rgb), expected)


def test_bgr_networks_get_bgr():
    class Echo(nn.Module):
        def forward(self, x, mode='tensor'):
            return x
    model = PixelSpaceModel(Echo(), mean=[1.0, 2.0, 3.0], std=[2.0, 2.0, 2.0], input_order='bgr')
    x = torch.zeros(1, 3, 2, 2)
    x[:, 0] = 10  # red channel
    out = model(x)
    assert torch.allclose(out[0, 2], torch.full((2, 2), (10 - 3.0) / 2))  # red lands last (BGR)
    assert torch.allclose(out[0, 0], torch.full((2, 2), (0 - 1.0) / 2))


def test_padding_to_size_divisor_is_cropped():
    class Shape(nn.Module):
        def forward(self, x, mode='tensor'):
            self.seen = x.shape
            return x[:, :2]
    seg = Shape()
    model = PixelSpaceModel(seg, size_divisor=16)
    out = model(torch.ones(1, 3, 20, 30))
    assert seg.seen[-2:] == (32, 32) and out.shape == (1, 2, 20, 30)


def test_slide_equals_whole_for_pointwise_model():
    class Pointwise(nn.Module):
        def forward(self, x, mode='tensor'):
            return torch.cat([x[:, :1] * 2, -x[:, 1:2]], 1)
    whole = PixelSpaceModel(Pointwise())
    slide = PixelSpaceModel(Pointwise(), mode='slide', crop_size=(8, 8), stride=(5, 6))
    x = torch.rand(2, 3, 17, 23) * 255
    torch.testing.assert_close(slide(x), whole(x))


def test_counters(segmentor):
    model = PixelSpaceModel.from_segmentor(segmentor)
    with torch.no_grad():
        model(torch.zeros(3, 3, 16, 16))
    model(torch.zeros(2, 3, 16, 16, requires_grad=True))
    assert model.forward_images == 5 and model.gradient_images == 2


def test_rejects_bad_shape(segmentor):
    with pytest.raises(ValueError, match=r'\(N, 3, H, W\)'):
        PixelSpaceModel.from_segmentor(segmentor)(torch.zeros(3, 16, 16))


def test_input_gradient_check_finds_every_non_finite_value_and_only_those():
    """The hook sums first and checks elementwise only when the sum is not finite: a NaN or an Inf
    anywhere is caught, and finite gradients whose sum overflows float32 are let through."""
    from common.errors import ModelError
    model = PixelSpaceModel(nn.Identity())
    huge = torch.full((2, 3, 4, 5), 3e38)
    assert not torch.isfinite(huge.sum())
    model._check_gradient(huge)                      # finite elements: no error
    model._check_gradient(-huge)
    for bad in (float('nan'), float('inf'), -float('inf')):
        for where in ((0, 0, 0, 0), (1, 2, 3, 4)):
            g = torch.zeros(2, 3, 4, 5)
            g[where] = bad
            with pytest.raises(ModelError, match='non-finite input gradient'):
                model._check_gradient(g)
            g = huge.clone()
            g[where] = bad
            with pytest.raises(ModelError, match='non-finite input gradient'):
                model._check_gradient(g)


def test_non_finite_input_gradient_stops_the_backward_pass():
    class Sqrt(nn.Module):
        def forward(self, x, mode='tensor'):
            return torch.cat([x[:, :1].sqrt(), -x[:, 1:2]], 1)   # d sqrt(x)/dx = inf at 0
    from common.errors import ModelError
    model = PixelSpaceModel(Sqrt())
    x = torch.rand(1, 3, 6, 7) * 255 + 1
    y = x.clone().requires_grad_(True)
    model(y).sum().backward()
    assert torch.isfinite(y.grad).all()
    x[0, 0, 2, 3] = 0.0
    x.requires_grad_(True)
    with pytest.raises(ModelError, match='non-finite input gradient'):
        model(x).sum().backward()


def test_predicted_labels_are_the_argmax_also_on_ties_and_non_finite_values():
    from model_zoo.pixel_model import channel_argmax
    g = torch.Generator().manual_seed(0)
    logits = torch.randint(0, 3, (4, 19, 9, 11), generator=g).float()     # many ties
    logits[0, 2, 1, 1] = float('nan')
    logits[1, :, 2, 2] = float('nan')
    logits[2, 5, 3, 3] = float('inf')
    logits[3, 7, 4, 4] = -float('inf')
    assert torch.equal(channel_argmax(logits), logits.argmax(dim=1))
    logits = torch.randn(2, 5, 7, 3, generator=g)
    assert torch.equal(channel_argmax(logits), logits.argmax(dim=1))

    class Fixed(nn.Module):
        def forward(self, x, mode='tensor'):
            return torch.cat([x[:, :1], x[:, :1], x[:, 1:2]], 1)     # classes 0 and 1 always tie
    x = torch.rand(2, 3, 6, 7) * 255
    pred = PixelSpaceModel(Fixed()).predict_labels(x)
    assert pred.dtype == torch.int64 and torch.equal(pred, PixelSpaceModel(Fixed())(x).argmax(1))
    assert set(pred.unique().tolist()) <= {0, 2}
