"""Dilated-Net: the VGG-16 front-end and the context module of Yu & Koltun 2016.

Yu & Koltun 2016, *Multi-Scale Context Aggregation by Dilated Convolutions*, ICLR,
https://arxiv.org/abs/1511.07122 (code and Caffe models: https://github.com/fyu/dilation, MIT).

**Front-end** (Sec. 4): VGG-16 with pool4 and pool5 removed, conv5 dilated by 2 and fc6 (7x7)
dilated by 4, so the output stride is 8; a 1x1 classifier ``final`` on fc7. The backbone part is
:class:`~model_zoo.models.vgg.VGG16` configured with ``pools=((2, 2),) * 3 + (None, None)``,
``dilations=(1, 1, 1, 1, 2)``, ``fc6_dilation=4`` (see ``configs/_base_/models/dilatednet_vgg16.py``);
this head holds ``final`` (as ``conv_seg``) and the optional context module.

**Context module** (Sec. 3, Table 1): on the C class-score maps of the front-end, 3x3
convolutions with exponentially increasing dilation, each followed by ReLU (truncation), then a
1x1 convolution back to C channels::

    scores ─► 3x3 d1 ─► 3x3 d1 ─► 3x3 d2 ─► 3x3 d4 ─► 3x3 d8 ─► 3x3 d16 ─► 3x3 d1 ─► 1x1 ─► scores

``context_dilations=(1, 1, 2, 4, 8, 16, 1)`` is the 8-layer module of the paper and of the released
VOC model (``dilation8``); the released Cityscapes model (``dilation10``) uses
``(1, 1, 2, 4, 8, 16, 32, 64, 1)``. ``context_multipliers`` gives each 3x3 layer's width in units
of C: all 1 is the **basic** module (the released models); ``(2, 2, 4, 8, 16, 32, 32)`` is the
**large** module. Both are identity-initialised (Sec. 3): with ``c_i`` channels in and ``c_{i+1}``
out, ``k(t, a -> b) = C / c_{i+1}`` if ``t = 0`` and ``floor(a C / c_i) = floor(b C / c_{i+1})``,
else ``eps ~ N(0, sigma^2)`` (``sigma = init_noise_std``; 0 gives the exact identity of the basic
module), so that at initialisation the module passes ``max(scores, 0)`` through unchanged.

Caffe -> mmseg names: ``final`` -> ``decode_head.conv_seg``; ``ctx_conv1_1, ctx_conv1_2,
ctx_conv2_1 ... ctx_fc1`` -> ``decode_head.context.convs.{0..L-1}``; ``ctx_final`` ->
``decode_head.context.final`` (see :func:`caffe_dilation_key_map`). The fixed bilinear
``ctx_upsample`` deconvolution is mmseg's final bilinear resize. The released models use valid
convolutions on a reflection-padded input; here everything is same-padded (no crops needed).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS
from torch import nn

from .vgg import caffe_vgg16_key_map


def identity_init_weight(out_channels: int, in_channels: int, num_classes: int, kernel_size: int,
                         noise_std: float = 0.0, generator: Optional[torch.Generator] = None
                         ) -> torch.Tensor:
    """Yu & Koltun's identity initialisation (their Eq. 4 and 5) of a ``(out, in, k, k)`` kernel."""
    a = torch.arange(in_channels)
    b = torch.arange(out_channels)
    same_group = (b[:, None] * num_classes // out_channels) == (a[None, :] * num_classes // in_channels)
    weight = torch.randn(out_channels, in_channels, kernel_size, kernel_size,
                         generator=generator) * noise_std
    c = kernel_size // 2
    centre = weight[:, :, c, c]
    weight[:, :, c, c] = torch.where(same_group, torch.full_like(centre, num_classes / out_channels),
                                     centre)
    return weight


class ContextModule(nn.Module):
    """The context module: dilated 3x3 convolutions + ReLU, then a 1x1 back to the classes.

    Args:
        num_classes: C, channels of the input and output score maps.
        dilations: Dilation of each 3x3 layer.
        multipliers: Width of each 3x3 layer in units of C (``None`` = all 1, the basic module).
        init_noise_std: Std of the noise added off the identity pattern at initialisation.
    """

    def __init__(self, num_classes: int, dilations: Sequence[int],
                 multipliers: Optional[Sequence[int]] = None, init_noise_std: float = 0.0):
        super().__init__()
        multipliers = tuple(multipliers) if multipliers is not None else (1,) * len(dilations)
        if len(multipliers) != len(dilations):
            raise ValueError(f'context_multipliers {multipliers} needs one entry per dilation {dilations}')
        self.num_classes = num_classes
        self.init_noise_std = float(init_noise_std)
        self.convs = nn.ModuleList()
        channels = num_classes
        for d, m in zip(dilations, multipliers):
            self.convs.append(nn.Conv2d(channels, num_classes * m, 3, padding=d, dilation=d))
            channels = num_classes * m
        self.final = nn.Conv2d(channels, num_classes, 1)
        self.init_weights()

    def init_weights(self) -> None:
        """Identity initialisation (re-applied by mmengine's ``init_weights`` after parents')."""
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for conv in list(self.convs) + [self.final]:
                conv.weight.copy_(identity_init_weight(conv.out_channels, conv.in_channels,
                                                       self.num_classes, conv.kernel_size[0],
                                                       self.init_noise_std, g))
                conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = F.relu(conv(x))
        return self.final(x)


@MODELS.register_module()
class DilatedContextHead(BaseDecodeHead):
    """Dilated-Net head: front-end classifier (``final``) + optional context module.

    Args:
        in_channels: Channels of fc7 (4096).
        context_dilations: Dilations of the context module's 3x3 layers; ``()`` = front-end only.
        context_multipliers: Widths of those layers in units of ``num_classes`` (``None`` =
            basic module; ``(2, 2, 4, 8, 16, 32, 32)`` = large module).
        init_noise_std: Noise of the identity initialisation (paper: sigma << C / c_{i+1}).
        **kwargs: :class:`BaseDecodeHead` arguments; ``channels`` is ``in_channels`` (``final``
            is ``conv_seg`` on fc7); ``dropout_ratio`` applies before ``final`` (the front-end's
            drop7 lives in the backbone, so configs set 0).
    """

    def __init__(self,
                 in_channels: int,
                 context_dilations: Sequence[int] = (),
                 context_multipliers: Optional[Sequence[int]] = None,
                 init_noise_std: float = 0.0,
                 **kwargs):
        super().__init__(in_channels=in_channels, channels=in_channels, **kwargs)
        self.context = (ContextModule(self.out_channels, context_dilations, context_multipliers,
                                      init_noise_std) if len(context_dilations) else None)

    def forward(self, inputs) -> torch.Tensor:
        """Class scores at the front-end's stride (8), refined by the context module if present."""
        x = self.cls_seg(self._transform_inputs(inputs))
        return self.context(x) if self.context is not None else x


def caffe_dilation_key_map(context_layers: int = 0, prefix: str = '') -> Dict[str, str]:
    """Caffe layer names of fyu/dilation models -> parameter prefixes (append ``.weight``/``.bias``).

    ``context_layers`` is the number of 3x3 context layers (7 for ``dilation8``, 9 for
    ``dilation10``, 0 for the front-end only): ``ctx_conv1_1, ctx_conv1_2, ctx_conv2_1, ...,
    ctx_fc1`` then ``ctx_final``.
    """
    out = caffe_vgg16_key_map(prefix=f'{prefix}backbone.')
    out['final'] = f'{prefix}decode_head.conv_seg'
    if context_layers:
        names = ['ctx_conv1_1', 'ctx_conv1_2'] + [f'ctx_conv{i}_1' for i in range(2, context_layers - 1)]
        names.append('ctx_fc1')
        for i, name in enumerate(names):
            out[name] = f'{prefix}decode_head.context.convs.{i}'
        out['ctx_final'] = f'{prefix}decode_head.context.final'
    return out
