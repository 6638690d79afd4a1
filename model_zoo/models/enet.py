"""E-Net (Paszke et al. 2016) as an mmseg backbone + decode head.

Paper: A. Paszke, A. Chaurasia, S. Kim, E. Culurciello, "ENet: A Deep Neural Network Architecture for
Real-Time Semantic Segmentation", https://arxiv.org/abs/1606.02147. Reference implementation (Torch):
https://github.com/e-lab/ENet-training.

Layout (the paper's Table 1, for a 512x512 input; ``c = (16, 64, 128)`` at full width)::

    initial              3x3 conv stride 2 (c0 - 3 filters) ‖ 2x2 max-pool  -> c0   x 256x256
    bottleneck1.0        downsampling                                      -> c1   x 128x128
    4x bottleneck1.x     regular                                           -> c1   x 128x128
    bottleneck2.0        downsampling                                      -> c2   x  64x64
    bottleneck2.1-2.8    regular, dilated 2, asymmetric 5, dilated 4,
                         regular, dilated 8, asymmetric 5, dilated 16      -> c2   x  64x64
    bottleneck3.1-3.8    stage 2 again, without bottleneck2.0              -> c2   x  64x64
    bottleneck4.0        upsampling (max-unpool with 2.0's indices)        -> c1   x 128x128
    bottleneck4.1-4.2    regular                                           -> c1   x 128x128
    bottleneck5.0        upsampling (max-unpool with 1.0's indices)        -> c0   x 256x256
    bottleneck5.1        regular                                           -> c0   x 256x256
    fullconv             2x2 transposed conv stride 2                      -> C    x 512x512

Split into mmseg parts: :class:`ENet` (a backbone) computes everything up to bottleneck5.1 and returns
those decoder features; :class:`ENetHead` (a decode head) is the final full convolution. The encoder's
pooling indices never leave the backbone, so ``EncoderDecoder`` needs no change, and the head's
classifier is the only class-count dependent layer, as for every other mmseg model.

Details that the paper leaves open follow the authors' Torch code: batch norm with ``eps=1e-3`` after
every convolution, PReLU (one slope per channel) in the encoder and ReLU in the decoder, no bias in
the 1x1 projections (and in the first of the two asymmetric convolutions), spatial dropout only in the
encoder (``p=0.01`` in stage 1, ``0.1`` from bottleneck2.0 on), and in the upsampling bottleneck a
1x1 convolution + BN on the main branch before the max-unpooling. Inputs must have sides divisible by
8 (three 2x poolings whose indices the decoder reuses); the base config pads test images with
``SegDataPreProcessor(test_cfg=dict(size_divisor=8))``.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS
from torch import Tensor, nn

#: Main convolution of bottlenecks 2.1-2.8 (and 3.1-3.8): ``(kind, dilation or kernel size)``.
STAGE2_LAYOUT: Tuple[Tuple[str, int], ...] = (
    ('regular', 1), ('dilated', 2), ('asymmetric', 5), ('dilated', 4),
    ('regular', 1), ('dilated', 8), ('asymmetric', 5), ('dilated', 16))


def _activation(kind: str, channels: int) -> nn.Module:
    """PReLU with one slope per channel (encoder) or ReLU (decoder)."""
    return nn.PReLU(channels) if kind == 'prelu' else nn.ReLU(inplace=False)


class ENetInitialBlock(nn.Module):
    """3x3 conv, stride 2, with ``out_channels - in_channels`` filters, concatenated with a 2x2 max-pool.

    Args:
        in_channels: Image channels.
        out_channels: Channels after the concatenation (16 in the paper).
        norm_cfg: Normalisation layer config.
    """

    def __init__(self, in_channels: int, out_channels: int, norm_cfg: dict):
        super().__init__()
        if out_channels <= in_channels:
            raise ValueError(f'the initial block needs more output ({out_channels}) than input '
                             f'({in_channels}) channels')
        self.conv = nn.Conv2d(in_channels, out_channels - in_channels, 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(2, stride=2)
        self.bn = build_norm_layer(norm_cfg, out_channels)[1]
        self.act = nn.PReLU(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(torch.cat([self.conv(x), self.pool(x)], dim=1)))


class ENetBottleneck(nn.Module):
    """Encoder bottleneck (regular, dilated, asymmetric or downsampling), also the decoder's regular one.

    Extension branch: 1x1 projection (2x2 stride-2 conv when downsampling) -> main conv -> 1x1
    expansion, each followed by BN (and the activation, except the last), then spatial dropout. Main
    branch: identity, or 2x2 max-pool with indices and zero-padding of the extra channels when
    downsampling. The two are added and activated.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kind: ``'regular'``, ``'dilated'``, ``'asymmetric'`` or ``'downsampling'`` (3x3 main conv).
        size: Dilation for ``'dilated'``, kernel length for ``'asymmetric'`` (5: a 5x1 then a 1x5 conv).
        projection_ratio: Internal channels = ``out_channels // projection_ratio`` (4 in the paper).
        dropout_ratio: Spatial dropout probability of the extension branch.
        activation: ``'prelu'`` (encoder) or ``'relu'`` (decoder).
        norm_cfg: Normalisation layer config.
    """

    KINDS = ('regular', 'dilated', 'asymmetric', 'downsampling')

    def __init__(self, in_channels: int, out_channels: int, kind: str = 'regular', size: int = 1,
                 projection_ratio: int = 4, dropout_ratio: float = 0.1, activation: str = 'prelu',
                 norm_cfg: dict = dict(type='BN', eps=1e-3)):
        super().__init__()
        if kind not in self.KINDS:
            raise ValueError(f'unknown bottleneck kind {kind!r}; expected one of {self.KINDS}')
        if kind != 'downsampling' and in_channels != out_channels:
            raise ValueError('only the downsampling bottleneck changes the channel count')
        self.downsample = kind == 'downsampling'
        self.extra_channels = out_channels - in_channels
        internal = max(out_channels // projection_ratio, 1)
        stride = 2 if self.downsample else 1
        layers: List[nn.Module] = [
            nn.Conv2d(in_channels, internal, stride, stride=stride, bias=False),
            build_norm_layer(norm_cfg, internal)[1], _activation(activation, internal)]
        if kind == 'asymmetric':
            pad = (size - 1) // 2
            layers += [nn.Conv2d(internal, internal, (size, 1), padding=(pad, 0), bias=False),
                       nn.Conv2d(internal, internal, (1, size), padding=(0, pad))]
        else:
            dilation = size if kind == 'dilated' else 1
            layers.append(nn.Conv2d(internal, internal, 3, padding=dilation, dilation=dilation))
        layers += [build_norm_layer(norm_cfg, internal)[1], _activation(activation, internal),
                   nn.Conv2d(internal, out_channels, 1, bias=False),
                   build_norm_layer(norm_cfg, out_channels)[1]]
        if dropout_ratio > 0:
            layers.append(nn.Dropout2d(dropout_ratio))
        self.extension = nn.Sequential(*layers)
        self.act = _activation(activation, out_channels)

    def forward(self, x: Tensor) -> Tuple[Tensor, Optional[Tensor]]:
        """Returns the output and, for a downsampling bottleneck, the max-pool indices (else None)."""
        indices = None
        main = x
        if self.downsample:
            main, indices = F.max_pool2d(x, 2, stride=2, return_indices=True)
            if self.extra_channels:
                main = F.pad(main, (0, 0, 0, 0, 0, self.extra_channels))
        return self.act(main + self.extension(x)), indices


class ENetUpsamplingBottleneck(nn.Module):
    """Decoder upsampling bottleneck: max-unpooling with the matching encoder indices.

    Main branch: 1x1 conv + BN to ``out_channels``, then max-unpool with the indices of the
    mirrored downsampling bottleneck. Extension: 1x1 projection, 3x3 transposed conv stride 2,
    1x1 expansion (BN after each, ReLU after the first two). Sum, then ReLU.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        projection_ratio: Internal channels = ``out_channels // projection_ratio``.
        norm_cfg: Normalisation layer config.
    """

    def __init__(self, in_channels: int, out_channels: int, projection_ratio: int = 4,
                 norm_cfg: dict = dict(type='BN', eps=1e-3)):
        super().__init__()
        internal = max(out_channels // projection_ratio, 1)
        self.main = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                  build_norm_layer(norm_cfg, out_channels)[1])
        self.project = nn.Sequential(nn.Conv2d(in_channels, internal, 1, bias=False),
                                     build_norm_layer(norm_cfg, internal)[1], nn.ReLU())
        self.upconv = nn.ConvTranspose2d(internal, internal, 3, stride=2, padding=1)
        self.expand = nn.Sequential(build_norm_layer(norm_cfg, internal)[1], nn.ReLU(),
                                    nn.Conv2d(internal, out_channels, 1, bias=False),
                                    build_norm_layer(norm_cfg, out_channels)[1])
        self.act = nn.ReLU()

    def forward(self, x: Tensor, indices: Tensor, output_size: Sequence[int]) -> Tensor:
        main = F.max_unpool2d(self.main(x), indices, 2, stride=2, output_size=output_size)
        ext = self.expand(self.upconv(self.project(x), output_size=output_size))
        return self.act(main + ext)


@MODELS.register_module()
class ENet(BaseModule):
    """E-Net encoder and decoder up to (not including) the final full convolution.

    Args:
        in_channels: Image channels.
        widen_factor: Multiplier of the paper's widths ``(16, 64, 128)`` (1.0 = the paper's network).
        stage1_blocks: Regular bottlenecks after bottleneck1.0 (4 in the paper).
        projection_ratio: Bottleneck channel reduction (4 in the paper).
        dropout_ratios: Spatial dropout in stage 1 and from bottleneck2.0 on ((0.01, 0.1) in the paper).
        norm_cfg: Normalisation layer config (the authors' code uses BN with eps=1e-3).
        init_cfg: mmengine init config.

    Shapes:
        ``(N, in_channels, H, W)`` with ``H`` and ``W`` divisible by 8 ->
        a 1-tuple holding the decoder features ``(N, c0, H/2, W/2)``, ``c0 = round(16 * widen_factor)``.
    """

    def __init__(self, in_channels: int = 3, widen_factor: float = 1.0, stage1_blocks: int = 4,
                 projection_ratio: int = 4, dropout_ratios: Tuple[float, float] = (0.01, 0.1),
                 norm_cfg: dict = dict(type='BN', eps=1e-3, requires_grad=True),
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg)
        c0, c1, c2 = (max(int(round(c * widen_factor)), 1) for c in (16, 64, 128))
        self.out_channels = c0
        p1, p2 = dropout_ratios
        enc = dict(projection_ratio=projection_ratio, activation='prelu', norm_cfg=norm_cfg)
        dec = dict(projection_ratio=projection_ratio, activation='relu', norm_cfg=norm_cfg,
                   dropout_ratio=0.0)
        self.initial = ENetInitialBlock(in_channels, c0, norm_cfg)
        self.down1 = ENetBottleneck(c0, c1, 'downsampling', dropout_ratio=p1, **enc)
        self.stage1 = nn.ModuleList(ENetBottleneck(c1, c1, 'regular', dropout_ratio=p1, **enc)
                                    for _ in range(stage1_blocks))
        self.down2 = ENetBottleneck(c1, c2, 'downsampling', dropout_ratio=p2, **enc)
        self.stage2 = nn.ModuleList(ENetBottleneck(c2, c2, kind, size, dropout_ratio=p2, **enc)
                                    for kind, size in STAGE2_LAYOUT)
        self.stage3 = nn.ModuleList(ENetBottleneck(c2, c2, kind, size, dropout_ratio=p2, **enc)
                                    for kind, size in STAGE2_LAYOUT)
        self.up4 = ENetUpsamplingBottleneck(c2, c1, projection_ratio, norm_cfg)
        self.stage4 = nn.ModuleList(ENetBottleneck(c1, c1, 'regular', **dec) for _ in range(2))
        self.up5 = ENetUpsamplingBottleneck(c1, c0, projection_ratio, norm_cfg)
        self.stage5 = nn.ModuleList([ENetBottleneck(c0, c0, 'regular', **dec)])

    @staticmethod
    def _run(blocks: nn.ModuleList, x: Tensor) -> Tensor:
        for block in blocks:
            x = block(x)[0]
        return x

    def forward(self, x: Tensor) -> Tuple[Tensor]:
        h, w = x.shape[-2:]
        if h % 8 or w % 8:
            raise ValueError(f'E-Net needs input sides divisible by 8, got {h}x{w}; pad the input '
                             '(SegDataPreProcessor(test_cfg=dict(size_divisor=8)) does so)')
        x = self.initial(x)
        size1 = x.shape[-2:]
        x, idx1 = self.down1(x)
        x = self._run(self.stage1, x)
        size2 = x.shape[-2:]
        x, idx2 = self.down2(x)
        x = self._run(self.stage3, self._run(self.stage2, x))
        x = self._run(self.stage4, self.up4(x, idx2, size2))
        x = self._run(self.stage5, self.up5(x, idx1, size1))
        return (x,)


@MODELS.register_module()
class ENetHead(BaseDecodeHead):
    """E-Net's final full convolution: a 2x2 transposed conv, stride 2, to class logits at input size.

    It replaces ``BaseDecodeHead.conv_seg`` by ``full_conv`` (a transposed conv, whose weight has the
    classes on its second axis). Use ``dropout_ratio=0``: E-Net has no dropout before the classifier.

    Args:
        in_channels: Channels of the backbone's decoder features.
        channels: Unused by the head's layers; kept for ``BaseDecodeHead`` (set it to ``in_channels``).
        **kwargs: ``BaseDecodeHead`` arguments (``num_classes``, ``loss_decode``, ...).

    Shapes:
        ``(N, in_channels, H/2, W/2)`` -> ``(N, num_classes, H, W)``.
    """

    def __init__(self, in_channels: int, channels: int,
                 init_cfg: Optional[dict] = dict(type='Normal', std=0.01, override=dict(name='full_conv')),
                 **kwargs):
        super().__init__(in_channels, channels, init_cfg=init_cfg, **kwargs)
        del self.conv_seg
        self.full_conv = nn.ConvTranspose2d(self.in_channels, self.out_channels, 2, stride=2)

    def cls_seg(self, feat: Tensor) -> Tensor:
        if self.dropout is not None:
            feat = self.dropout(feat)
        return self.full_conv(feat)

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        return self.cls_seg(self._transform_inputs(inputs))
