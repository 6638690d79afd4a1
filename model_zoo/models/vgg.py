"""VGG-16 as a dense-prediction backbone (FCN, DeepLab v1/v2, Dilated-Net).

Simonyan & Zisserman 2015, *Very Deep Convolutional Networks for Large-Scale Image Recognition*,
https://arxiv.org/abs/1409.1556, with the fully connected layers cast as convolutions as in
Long et al. 2015 (FCN, https://arxiv.org/abs/1411.4038).

The five convolution stages (conv1_1 ... conv5_3, 3x3, ReLU) are each followed by an optional max
pool; ``fc6`` and ``fc7`` are convolutions. Everything is configurable so that one class covers
the segmentation networks built on VGG-16:

==============================  =================================  =========================
network                         pools (kernel, stride)              conv5 / fc6
==============================  =================================  =========================
FCN-32s/16s/8s                  (2, 2) x 5                          1 / 7x7, dilation 1, 4096
DeepLab-LargeFOV (v1)           (3, 2) x 3, (3, 1) x 2              2 / 3x3, dilation 12, 1024
DeepLab v2 ASPP (VGG)           (3, 2) x 3, (3, 1) x 2              2 / no fc (fc6 in the head)
Dilated-Net front-end           (2, 2) x 3, pool4/pool5 removed     2 / 7x7, dilation 4, 4096
==============================  =================================  =========================

Padding: every convolution is "same"-padded (``dilation * (kernel - 1) // 2``) and the pools use
floor mode, so with 2x2 pools a map at stride ``s`` has size ``floor(H / s)`` (each map is exactly
half of the previous one, or half + 1 row/column for odd sizes) and its pixel ``i`` is centred on
input pixel ``s * i + (s - 1) / 2``: the ``align_corners=False`` geometry that mmseg's bilinear
resizes assume. The original Caffe models instead padded the input by 100 pixels (FCN) or used
valid convolutions on a reflection-padded input (Dilated-Net) and cropped afterwards; with
same-padding no crop offsets are needed. Ported weights are unaffected (the parameters are the
same); only the handling of the image border differs.

Parameter names follow the Caffe layer names, so weights map one-to-one:

* Caffe (``VGG_ILSVRC_16_layers``, FCN, DeepLab, Dilated-Net): layer ``convX_Y`` ->
  ``backbone.convX_Y.conv.{weight,bias}`` (blobs[0] -> weight, blobs[1] -> bias); ``fc6`` /
  ``fc7`` -> ``backbone.fc6.conv.*`` / ``backbone.fc7.conv.*`` (Caffe's fully convolutional
  models store them already as ``(4096, 512, 7, 7)`` and ``(4096, 4096, 1, 1)``).
  See :func:`caffe_vgg16_key_map`.
* torchvision ``vgg16``: ``features.{0,2,5,7,10,12,14,17,19,21,24,26,28}`` -> ``conv1_1 ...
  conv5_3``; ``classifier.0`` (Linear 25088 -> 4096) -> ``fc6`` reshaped to ``(4096, 512, 7, 7)``;
  ``classifier.3`` -> ``fc7`` reshaped to ``(4096, 4096, 1, 1)``; ``classifier.6`` (ImageNet
  classes) is dropped. See :func:`convert_torchvision_vgg16`. torchvision weights expect RGB input
  normalised with the ImageNet mean/std; Caffe weights expect BGR input minus the mean pixel
  (std 1): choose the config's ``data_preprocessor`` accordingly.
* With ``norm_cfg`` set (e.g. ``BN``, as torchvision's ``vgg16_bn``) each ``convX_Y`` also has a
  ``bn`` sub-module; plain VGG-16 has none.

Call graph::

    x ─► [conv1_1, conv1_2] ─► pool1 ─► ... ─► [conv5_1..3] ─► pool5 ─► fc6 ─► drop ─► fc7 ─► drop
              outputs indexed 0..4 = stage outputs (after its pool, if any), 5 = fc7
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from mmseg.registry import MODELS
from torch import nn

#: torchvision ``vgg16().features`` indices of the 13 convolutions, in order.
TORCHVISION_VGG16_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)


def vgg_conv_names(num_convs: Sequence[int] = (2, 2, 3, 3, 3)) -> List[str]:
    """Caffe names of the convolution layers, e.g. ``['conv1_1', 'conv1_2', ..., 'conv5_3']``."""
    return [f'conv{s + 1}_{i + 1}' for s, n in enumerate(num_convs) for i in range(n)]


@MODELS.register_module()
class VGG16(BaseModule):
    """VGG-16 backbone for semantic segmentation with fully convolutional fc6/fc7.

    Args:
        in_channels: Input image channels.
        base_channels: Width of stage 1; stages have ``(1, 2, 4, 8, 8) * base_channels`` channels
            (64 gives the original VGG-16).
        num_convs: Number of 3x3 convolutions per stage (``(2, 2, 3, 3, 3)`` is VGG-16).
        dilations: Dilation of the 3x3 convolutions of each stage (DeepLab and Dilated-Net use
            ``(1, 1, 1, 1, 2)``).
        pools: Per stage ``(kernel_size, stride)`` of the max pool after it, or ``None`` to remove
            that pool (Dilated-Net removes pool4 and pool5). Padding is ``(kernel_size - 1) // 2``.
        ceil_mode: Pool with ceil instead of floor (Caffe rounds up). Floor keeps the sizes of
            consecutive maps exactly 2:1 or 2:1+1, which the FCN skip head relies on.
        fc_channels: Output channels of ``fc6`` and ``fc7``; ``()`` builds no fc layers (DeepLab v2
            ASPP puts its fc6/fc7 in the head).
        fc6_kernel_size: 7 (FCN, Dilated-Net: the converted ImageNet fc6) or 3 (DeepLab-LargeFOV).
        fc6_dilation: Dilation of fc6 (Dilated-Net 4, DeepLab-LargeFOV 12).
        fc_dropout: Dropout probability after the ReLUs of fc6 and fc7 (0.5 in all the papers).
        out_indices: Which maps to return: 0-4 are the outputs of stages 1-5 (after their pool, if
            present; so 2 = pool3, 3 = pool4, 4 = pool5), 5 is fc7.
        norm_cfg: Normalisation after every convolution (``None`` = plain VGG-16).
        act_cfg: Activation after every convolution.
        init_cfg: mmengine initialisation config (default: Kaiming for convolutions, as ConvModule).
    """

    def __init__(self,
                 in_channels: int = 3,
                 base_channels: int = 64,
                 num_convs: Sequence[int] = (2, 2, 3, 3, 3),
                 dilations: Sequence[int] = (1, 1, 1, 1, 1),
                 pools: Sequence[Optional[Tuple[int, int]]] = ((2, 2),) * 5,
                 ceil_mode: bool = False,
                 fc_channels: Sequence[int] = (4096, 4096),
                 fc6_kernel_size: int = 7,
                 fc6_dilation: int = 1,
                 fc_dropout: float = 0.5,
                 out_indices: Sequence[int] = (2, 3, 5),
                 norm_cfg: Optional[dict] = None,
                 act_cfg: Optional[dict] = dict(type='ReLU'),
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        num_stages = len(num_convs)
        if len(dilations) != num_stages or len(pools) != num_stages:
            raise ValueError(f'num_convs, dilations and pools need one entry per stage, got '
                             f'{len(num_convs)}, {len(dilations)} and {len(pools)}')
        if len(fc_channels) not in (0, 2):
            raise ValueError(f'fc_channels must have 0 or 2 entries (fc6, fc7), got {fc_channels}')
        num_outputs = num_stages + (1 if fc_channels else 0)
        if not out_indices or any(not 0 <= i < num_outputs for i in out_indices):
            raise ValueError(f'out_indices {out_indices} must lie in [0, {num_outputs}): 0-'
                             f'{num_stages - 1} are stage outputs' + (', 5 is fc7' if fc_channels else ''))
        self.num_convs = tuple(num_convs)
        self.out_indices = tuple(out_indices)
        self.stage_channels = tuple(base_channels * min(2 ** s, 8) for s in range(num_stages))
        self.pool_names: List[Optional[str]] = []
        conv_kw = dict(norm_cfg=norm_cfg, act_cfg=act_cfg)
        channels = in_channels
        for s in range(num_stages):
            for i in range(num_convs[s]):
                d = dilations[s]
                self.add_module(f'conv{s + 1}_{i + 1}', ConvModule(
                    channels, self.stage_channels[s], 3, padding=d, dilation=d, **conv_kw))
                channels = self.stage_channels[s]
            if pools[s] is None:
                self.pool_names.append(None)
            else:
                k, stride = pools[s]
                self.add_module(f'pool{s + 1}', nn.MaxPool2d(k, stride, padding=(k - 1) // 2,
                                                             ceil_mode=ceil_mode))
                self.pool_names.append(f'pool{s + 1}')
        self.with_fc = bool(fc_channels)
        if self.with_fc:
            pad = fc6_dilation * (fc6_kernel_size - 1) // 2
            self.fc6 = ConvModule(channels, fc_channels[0], fc6_kernel_size, padding=pad,
                                  dilation=fc6_dilation, **conv_kw)
            self.fc7 = ConvModule(fc_channels[0], fc_channels[1], 1, **conv_kw)
            self.drop = nn.Dropout(fc_dropout) if fc_dropout > 0 else nn.Identity()
        self.out_channels = tuple(list(self.stage_channels) + list(fc_channels[1:]))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Return the maps selected by ``out_indices`` (see the class docstring)."""
        outs = []
        last = max(self.out_indices)
        for s, n in enumerate(self.num_convs):
            for i in range(n):
                x = getattr(self, f'conv{s + 1}_{i + 1}')(x)
            if self.pool_names[s] is not None:
                x = getattr(self, self.pool_names[s])(x)
            outs.append(x)
            if len(outs) > last:
                break
        if last == len(self.num_convs):
            x = self.drop(self.fc6(x))
            outs.append(self.drop(self.fc7(x)))
        return tuple(outs[i] for i in self.out_indices)


def caffe_vgg16_key_map(prefix: str = 'backbone.', with_fc: bool = True,
                        num_convs: Sequence[int] = (2, 2, 3, 3, 3)) -> Dict[str, str]:
    """Map Caffe layer names to this module's parameter prefixes.

    ``{'conv1_1': 'backbone.conv1_1.conv', ..., 'fc7': 'backbone.fc7.conv'}``: append ``.weight``
    for Caffe ``blobs[0]`` and ``.bias`` for ``blobs[1]``. Valid for the fully convolutional Caffe
    models of FCN (``fcn8s-heavy-pascal``), DeepLab and Dilated-Net, whose fc6/fc7 blobs are
    already 4-D. (Reading ``.caffemodel`` files needs Caffe's protobuf schema and is not done here.)
    """
    names = vgg_conv_names(num_convs) + (['fc6', 'fc7'] if with_fc else [])
    return {n: f'{prefix}{n}.conv' for n in names}


def convert_torchvision_vgg16(state_dict: Mapping[str, torch.Tensor], backbone: VGG16,
                              prefix: str = '') -> Dict[str, torch.Tensor]:
    """Convert a torchvision ``vgg16`` state dict into this backbone's keys.

    The 13 ``features`` convolutions are renamed; ``classifier.0`` / ``classifier.3`` (Linear) are
    reshaped into the backbone's fc6 / fc7 convolutions when the backbone has them with matching
    sizes (7x7 fc6: ``(4096, 25088) -> (4096, 512, 7, 7)``, exactly the conversion of FCN).
    ``classifier.6`` (ImageNet classifier) is dropped. Shapes are taken from ``backbone``, so the
    same function converts reduced-width models saved in torchvision's layout.

    Args:
        state_dict: torchvision VGG-16 parameters (``features.*``, ``classifier.*``).
        backbone: The target backbone (only its parameter shapes are read).
        prefix: Prefix of the returned keys (``'backbone.'`` to load into a segmentor).

    Returns:
        A state dict for ``backbone`` (``strict=True`` when the backbone has fc layers and plain
        convolutions; without fc layers the fc entries are omitted).
    """
    if backbone.num_convs != (2, 2, 3, 3, 3):
        raise ValueError('only VGG-16 (num_convs=(2, 2, 3, 3, 3)) has torchvision indices')
    own = backbone.state_dict()
    out: Dict[str, torch.Tensor] = {}
    for idx, name in zip(TORCHVISION_VGG16_CONV_INDICES, vgg_conv_names()):
        for p in ('weight', 'bias'):
            out[f'{prefix}{name}.conv.{p}'] = state_dict[f'features.{idx}.{p}']
    if backbone.with_fc:
        for src, dst in (('classifier.0', 'fc6'), ('classifier.3', 'fc7')):
            target = own[f'{dst}.conv.weight'].shape
            weight = state_dict[f'{src}.weight']
            if weight.numel() != target.numel():
                raise ValueError(f'{src}.weight {tuple(weight.shape)} cannot become {dst} '
                                 f'{tuple(target)} (fc6 must be 7x7 with the full 4096 channels)')
            out[f'{prefix}{dst}.conv.weight'] = weight.reshape(target)
            out[f'{prefix}{dst}.conv.bias'] = state_dict[f'{src}.bias']
    return out
