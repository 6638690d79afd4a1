"""Full-size configs inheriting mmseg's own (ICNet-R50, PSPNet-R101 on Cityscapes): build without
downloads, SyncBN replaced, pixel-space contract on a tiny input."""
import pytest
import torch
from torch import nn

from model_zoo import PixelSpaceModel
from model_zoo.builder import build_segmentor

CONFIGS = {
    'model_zoo/configs/icnet/icnet_r50-d8_4xb2-160k_cityscapes-832x832.py': ('ICNet', 50),
    'model_zoo/configs/pspnet/pspnet_r101-d8_4xb2-80k_cityscapes-512x1024.py': ('ResNetV1c', 101),
}


def _resnet(backbone: nn.Module) -> nn.Module:
    return getattr(backbone, 'backbone', backbone)   # ICNet wraps its ResNet


@pytest.mark.parametrize('config', sorted(CONFIGS))
def test_builds_and_obeys_pixel_contract(config):
    backbone_type, depth = CONFIGS[config]
    torch.manual_seed(0)
    segmentor = build_segmentor(config)
    assert type(segmentor.backbone).__name__ == backbone_type
    assert _resnet(segmentor.backbone).depth == depth
    assert segmentor.decode_head.num_classes == 19
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in segmentor.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in segmentor.modules())
    model = PixelSpaceModel.from_segmentor(segmentor)
    assert model.num_classes == 19
    x = (torch.rand(1, 3, 64, 96) * 255).requires_grad_(True)
    logits = model(x)
    assert logits.shape == (1, 19, 64, 96)
    logits.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with torch.no_grad():
        torch.testing.assert_close(model(x), logits.detach(), rtol=0, atol=0)   # eval mode: deterministic
