"""SegNet (Badrinarayanan et al. 2017) as an mmseg backbone + decode head.

Paper: V. Badrinarayanan, A. Kendall, R. Cipolla, "SegNet: A Deep Convolutional Encoder-Decoder
Architecture for Image Segmentation", TPAMI 2017, https://arxiv.org/abs/1511.00561. Reference
implementation (Caffe): https://github.com/alexgkendall/caffe-segnet (``segnet_train.prototxt``).

Layout (``c = (64, 128, 256, 512, 512)`` at full width)::

    encoder  (VGG-16-BN, 13 convs):  [conv-BN-ReLU x n_i, 2x2 max-pool keeping indices]   i = 1..5
             n = (2, 2, 3, 3, 3), channels c_i
    decoder  (mirrored):             [max-unpool with encoder i's indices, conv-BN-ReLU x n_i]  i = 5..1
             the last conv of decoder stage i maps c_i -> c_{i-1}; decoder stage 1 has one conv
             (64 -> 64) before the classifier
    classifier                       3x3 conv 64 -> num_classes (SegNet's conv1_1_D), at input size

Split into mmseg parts: :class:`SegNet` (a backbone) is encoder + decoder and returns the full-resolution
decoder features; :class:`SegNetHead` (a decode head) is the 3x3 classifier. The pooling indices stay
inside the backbone, so ``EncoderDecoder`` needs no change. Max-unpooling gets the encoder's pre-pool
size, so any input with sides of at least 32 pixels works (five 2x poolings; an odd side loses its
last row/column to a pooling, and the unpooling leaves it zero).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS
from torch import Tensor, nn


class SegNetEncoderStage(nn.Module):
    """``num_convs`` 3x3 conv-BN-ReLU layers, then a 2x2 max-pool that returns its argmax indices."""

    def __init__(self, in_channels: int, out_channels: int, num_convs: int, norm_cfg: dict,
                 act_cfg: dict):
        super().__init__()
        self.convs = nn.Sequential(*[
            ConvModule(in_channels if i == 0 else out_channels, out_channels, 3, padding=1,
                       norm_cfg=norm_cfg, act_cfg=act_cfg) for i in range(num_convs)])

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor, Tuple[int, int]]:
        """Returns the pooled map, the pooling indices and the pre-pool spatial size."""
        x = self.convs(x)
        pooled, indices = F.max_pool2d(x, 2, stride=2, return_indices=True)
        return pooled, indices, tuple(x.shape[-2:])


class SegNetDecoderStage(nn.Module):
    """Max-unpooling with the mirrored encoder stage's indices, then ``num_convs`` conv-BN-ReLU layers.

    The last conv maps ``in_channels`` to ``out_channels`` (the next-shallower encoder width).
    """

    def __init__(self, in_channels: int, out_channels: int, num_convs: int, norm_cfg: dict,
                 act_cfg: dict):
        super().__init__()
        self.unpool = nn.MaxUnpool2d(2, stride=2)
        self.convs = nn.Sequential(*[
            ConvModule(in_channels, out_channels if i == num_convs - 1 else in_channels, 3, padding=1,
                       norm_cfg=norm_cfg, act_cfg=act_cfg) for i in range(num_convs)])

    def forward(self, x: Tensor, indices: Tensor, size: Sequence[int]) -> Tensor:
        return self.convs(self.unpool(x, indices, output_size=size))


@MODELS.register_module()
class SegNet(BaseModule):
    """SegNet encoder (VGG-16-BN's 13 convs) and mirrored max-unpooling decoder.

    Args:
        in_channels: Image channels.
        stage_channels: Encoder widths (VGG-16: ``(64, 128, 256, 512, 512)``).
        stage_convs: Convs per encoder stage (VGG-16: ``(2, 2, 3, 3, 3)``).
        widen_factor: Multiplier of ``stage_channels`` (1.0 = the paper's network).
        norm_cfg: Normalisation layer config.
        act_cfg: Activation config.
        init_cfg: mmengine init config (e.g. ``Pretrained`` VGG-16-BN weights for the encoder).

    Shapes:
        ``(N, in_channels, H, W)`` -> a 1-tuple holding the decoder features ``(N, c_1, H, W)``,
        ``c_1 = round(stage_channels[0] * widen_factor)``.
    """

    def __init__(self, in_channels: int = 3,
                 stage_channels: Sequence[int] = (64, 128, 256, 512, 512),
                 stage_convs: Sequence[int] = (2, 2, 3, 3, 3), widen_factor: float = 1.0,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 act_cfg: dict = dict(type='ReLU'), init_cfg: Optional[dict] = None):
        super().__init__(init_cfg)
        if len(stage_channels) != len(stage_convs):
            raise ValueError('stage_channels and stage_convs need one entry per stage')
        widths = [max(int(round(c * widen_factor)), 1) for c in stage_channels]
        self.out_channels = widths[0]
        self.encoder = nn.ModuleList()
        prev = in_channels
        for width, n in zip(widths, stage_convs):
            self.encoder.append(SegNetEncoderStage(prev, width, n, norm_cfg, act_cfg))
            prev = width
        # decoder[i] mirrors encoder[i]; it runs deepest first. Decoder stage 1 ends at c_1 and has
        # one conv fewer than encoder stage 1: the classifier (SegNetHead) is the mirrored last conv.
        self.decoder = nn.ModuleList()
        for i, (width, n) in enumerate(zip(widths, stage_convs)):
            out = widths[i - 1] if i > 0 else widths[0]
            convs = n if i > 0 else n - 1
            self.decoder.append(SegNetDecoderStage(width, out, convs, norm_cfg, act_cfg))

    def forward(self, x: Tensor) -> Tuple[Tensor]:
        saved: List[Tuple[Tensor, Tuple[int, int]]] = []
        for stage in self.encoder:
            x, indices, size = stage(x)
            saved.append((indices, size))
        for stage, (indices, size) in zip(reversed(self.decoder), reversed(saved)):
            x = stage(x, indices, size)
        return (x,)


@MODELS.register_module()
class SegNetHead(BaseDecodeHead):
    """SegNet's classifier: a ``kernel_size`` conv (3x3 in the paper) from decoder features to logits.

    ``conv_seg`` is this conv (its weight has the classes on the first axis, as in every mmseg head).

    Args:
        in_channels: Channels of the backbone's decoder features.
        channels: Set equal to ``in_channels`` (there are no layers before the classifier).
        kernel_size: Classifier kernel size.
        **kwargs: ``BaseDecodeHead`` arguments (``num_classes``, ``loss_decode``, ...).
    """

    def __init__(self, in_channels: int, channels: int, kernel_size: int = 3, **kwargs):
        super().__init__(in_channels, channels, **kwargs)
        if self.in_channels != self.channels:
            raise ValueError(f'SegNetHead has no layers before its classifier: channels '
                             f'({self.channels}) must equal in_channels ({self.in_channels})')
        self.conv_seg = nn.Conv2d(self.channels, self.out_channels, kernel_size,
                                  padding=kernel_size // 2)

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        return self.cls_seg(self._transform_inputs(inputs))
