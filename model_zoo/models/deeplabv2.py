"""DeepLab v2 Atrous Spatial Pyramid Pooling head (ASPP-v2).

Chen, Papandreou, Kokkinos, Murphy & Yuille 2016/2018, *DeepLab: Semantic Image Segmentation with
Deep Convolutional Nets, Atrous Convolution, and Fully Connected CRFs*,
https://arxiv.org/abs/1606.00915 (code: https://bitbucket.org/aquariusjay/deeplab-public-ver2).

Unlike the ASPP of DeepLab v3 (mmseg's ``ASPPHead``: feature branches concatenated, batch norm,
image pooling), ASPP-v2 runs parallel atrous branches that each predict **class scores**, and sums
them (the ``Eltwise SUM`` of ``fc8_*``)::

    x ─┬─► branch(rate 6)  ─► scores ─┐
       ├─► branch(rate 12) ─► scores ─┤
       ├─► branch(rate 18) ─► scores ─┼─► sum ─► logits (stride 8)
       └─► branch(rate 24) ─► scores ─┘

* ResNet-101 (``num_convs=0``): each branch is one 3x3 atrous convolution from the res5 features
  to the classes (Caffe ``fc1_voc12_c0 ... c3`` -> ``decode_head.branches.{0..3}.cls``).
* VGG-16 "DeepLab-ASPP" (``num_convs=2``, ``channels=1024``): each branch is fc6 (3x3, atrous,
  1024) -> ReLU -> dropout -> fc7 (1x1, 1024) -> ReLU -> dropout -> fc8 (1x1, classes), on pool5
  of a VGG-16 with pool4/pool5 at stride 1 and conv5 at dilation 2 (Caffe ``fc6_{1..4}``,
  ``fc7_{1..4}``, ``fc8_voc12_{1..4}`` -> ``decode_head.branches.{0..3}.convs.0.conv``,
  ``.convs.1.conv``, ``.cls``). See :func:`caffe_aspp_v2_key_map`.

The multiscale (MSc) DeepLab v2 model is :class:`~model_zoo.models.multiscale.MultiScaleEncoderDecoder`
around an encoder-decoder with this head.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
from mmcv.cnn import ConvModule
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS
from torch import nn


class ASPPV2Branch(nn.Module):
    """One ASPP-v2 branch: ``num_convs`` hidden convolutions (the first atrous) + a classifier."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, dilation: int,
                 num_convs: int, kernel_size: int, dropout: float, conv_cfg: Optional[dict],
                 norm_cfg: Optional[dict], act_cfg: Optional[dict], init_std: float):
        super().__init__()
        pad = dilation * (kernel_size - 1) // 2
        self.convs = nn.ModuleList()
        for i in range(num_convs):
            first = i == 0
            self.convs.append(ConvModule(in_channels if first else channels, channels,
                                         kernel_size if first else 1, padding=pad if first else 0,
                                         dilation=dilation if first else 1, conv_cfg=conv_cfg,
                                         norm_cfg=norm_cfg, act_cfg=act_cfg))
        self.dropout = nn.Dropout(dropout) if dropout > 0 and num_convs else nn.Identity()
        if num_convs:
            self.cls = nn.Conv2d(channels, num_classes, 1)
        else:
            self.cls = nn.Conv2d(in_channels, num_classes, kernel_size, padding=pad, dilation=dilation)
        nn.init.normal_(self.cls.weight, 0, init_std)
        nn.init.zeros_(self.cls.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = self.dropout(conv(x))
        return self.cls(x)


@MODELS.register_module()
class ASPPV2Head(BaseDecodeHead):
    """DeepLab v2 ASPP head: parallel atrous branches producing class scores, summed.

    Args:
        in_channels: Channels of the input feature map (2048 for ResNet-101 res5, 512 for VGG pool5).
        channels: Hidden width of the branches when ``num_convs > 0`` (1024 for DeepLab-ASPP VGG).
        dilations: Atrous rates of the branches (ASPP-L: ``(6, 12, 18, 24)``; ASPP-S: ``(2, 4, 8, 12)``).
        num_convs: Hidden convolutions per branch before the classifier: 0 (ResNet: one atrous
            conv to the classes) or 2 (VGG: fc6 atrous + fc7 1x1).
        kernel_size: Kernel of the atrous convolution (3).
        init_std: Std of the Gaussian initialisation of the classifiers (0.01 as DeepLab's fc8).
        **kwargs: :class:`BaseDecodeHead` arguments. ``dropout_ratio`` is the (element-wise, as
            Caffe) dropout after each hidden convolution; it is unused when ``num_convs=0``.

    The head has no ``conv_seg``: the classifiers are ``branches.{i}.cls``.
    """

    def __init__(self,
                 in_channels: int,
                 channels: int = 1024,
                 dilations: Sequence[int] = (6, 12, 18, 24),
                 num_convs: int = 0,
                 kernel_size: int = 3,
                 init_std: float = 0.01,
                 init_cfg: Optional[dict] = None,
                 **kwargs):
        super().__init__(in_channels=in_channels, channels=channels, init_cfg=init_cfg, **kwargs)
        del self.conv_seg   # each branch has its own classifier
        self.dilations = tuple(dilations)
        self.branches = nn.ModuleList(
            ASPPV2Branch(self.in_channels, channels, self.out_channels, d, num_convs, kernel_size,
                         self.dropout_ratio, self.conv_cfg, self.norm_cfg, self.act_cfg, init_std)
            for d in self.dilations)

    def branch_outputs(self, inputs) -> list:
        """Class scores of every branch (before summation), for inspection and tests."""
        x = self._transform_inputs(inputs)
        return [branch(x) for branch in self.branches]

    def forward(self, inputs) -> torch.Tensor:
        """Sum of the branches' class scores, ``(N, num_classes, h, w)``."""
        x = self._transform_inputs(inputs)
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out


def caffe_aspp_v2_key_map(num_convs: int, num_branches: int = 4, dataset: str = 'voc12',
                          prefix: str = 'decode_head.') -> Dict[str, str]:
    """Caffe layer names of DeepLab v2's ASPP -> parameter prefixes of :class:`ASPPV2Head`.

    ResNet-101 (``num_convs=0``): ``fc1_voc12_c{i}`` -> ``branches.{i}.cls``. VGG-16
    (``num_convs=2``): ``fc6_{i+1}`` / ``fc7_{i+1}`` / ``fc8_voc12_{i+1}`` -> ``branches.{i}.convs.0.conv``
    / ``.convs.1.conv`` / ``.cls``. Append ``.weight`` / ``.bias``.
    """
    out = {}
    for i in range(num_branches):
        if num_convs == 0:
            out[f'fc1_{dataset}_c{i}'] = f'{prefix}branches.{i}.cls'
        else:
            out[f'fc6_{i + 1}'] = f'{prefix}branches.{i}.convs.0.conv'
            out[f'fc7_{i + 1}'] = f'{prefix}branches.{i}.convs.1.conv'
            out[f'fc8_{dataset}_{i + 1}'] = f'{prefix}branches.{i}.cls'
    return out
