"""Shared fixtures: toy models, a tiny mmseg segmentor config and a tiny synthetic dataset.

Nothing here downloads: weights are random (seeded) and the dataset is generated.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
# Small tensors: one thread is fastest and immune to contention with other processes.
torch.set_num_threads(1)

NUM_CLASSES = 19

TINY_CONFIG = '''
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_val=0, seg_pad_val=255),
    pretrained='open-mmlab://resnet18_v1c',
    backbone=dict(type='ResNetV1c', depth=18, stem_channels=8, base_channels=4, num_stages=4,
                  out_indices=(0, 1, 2, 3), dilations=(1, 1, 2, 4), strides=(1, 2, 1, 1),
                  norm_cfg=norm_cfg, norm_eval=False, style='pytorch', contract_dilation=True),
    decode_head=dict(type='FCNHead', in_channels=32, in_index=3, channels=16, num_convs=1,
                     concat_input=False, dropout_ratio=0.1, num_classes={num_classes},
                     norm_cfg=norm_cfg, align_corners=False,
                     loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
'''


class ToySegmenter(nn.Module):
    """A small CNN obeying the pixel-space contract: (N,3,H,W) in [0,255] → (N,C,H,W) logits."""

    def __init__(self, num_classes: int = 5, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, num_classes, 3, padding=1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        self.eval()

    def forward(self, x):
        x = (x - 127.5) / 64.0
        return self.conv2(torch.tanh(self.conv1(x)))


class CountingModel(nn.Module):
    """Wraps a model and counts the forward passes that will be back-propagated to the input."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.grad_calls = 0

    def forward(self, x):
        if torch.is_grad_enabled() and x.requires_grad:
            self.grad_calls += 1
        return self.model(x)


@pytest.fixture
def toy_model():
    return ToySegmenter()


@pytest.fixture
def toy_images():
    g = torch.Generator().manual_seed(1)
    return torch.rand((2, 3, 12, 16), generator=g) * 255


def write_tiny_config(path: Path, num_classes: int = NUM_CLASSES) -> Path:
    path.write_text(TINY_CONFIG.replace('{num_classes}', str(num_classes)))
    return path


@pytest.fixture(scope='session')
def tiny_config(tmp_path_factory) -> Path:
    return write_tiny_config(tmp_path_factory.mktemp('cfg') / 'tiny_fcn.py')


@pytest.fixture(scope='session')
def tiny_checkpoint(tmp_path_factory, tiny_config) -> Path:
    """Random (seeded) weights of the tiny config, saved as a plain state dict."""
    from model_zoo.builder import build_segmentor
    torch.manual_seed(0)
    model = build_segmentor(tiny_config)
    path = tmp_path_factory.mktemp('ckpt') / 'tiny_fcn.pth'
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope='session')
def tiny_checkpoint_diverse(tmp_path_factory, tiny_checkpoint) -> Path:
    """The tiny weights with a re-drawn, larger classifier: predicts several classes per image
    (the random tiny model predicts one class everywhere, too little for target-map tests)."""
    state = torch.load(tiny_checkpoint, weights_only=True)
    g = torch.Generator().manual_seed(1)
    state['decode_head.conv_seg.bias'].zero_()
    state['decode_head.conv_seg.weight'] = torch.randn(state['decode_head.conv_seg.weight'].shape,
                                                       generator=g) * 5
    path = tmp_path_factory.mktemp('ckpt') / 'tiny_fcn_diverse.pth'
    torch.save(state, path)
    return path


@pytest.fixture(scope='session')
def synthetic_root(tmp_path_factory) -> Path:
    from benchmark.datasets.synthetic import ensure_synthetic_cityscapes
    return ensure_synthetic_cityscapes(tmp_path_factory.mktemp('data') / 'synth', seed=0,
                                       num_train=2, num_val=4, size=(64, 32), progress=False)
