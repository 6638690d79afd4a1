"""FCN-32s / FCN-16s / FCN-8s skip-fusion decode head (Long et al. 2015).

Long, Shelhamer & Darrell 2015, *Fully Convolutional Networks for Semantic Segmentation*,
https://arxiv.org/abs/1411.4038 (code: https://github.com/shelhamer/fcn.berkeleyvision.org).

The head scores the coarsest feature map (``fc7`` on VGG-16; the last ResNet stage for FCN-ResNet)
with a 1x1 convolution (``score_fr``), then repeatedly upsamples the scores 2x and adds the 1x1
scores of the next finer skip feature map (``pool4``, then ``pool3``)::

    fc7 ─► score_fr ─► up2 ─► (+) ◄─ score_pool4 ◄─ pool4         FCN-16s stops here (stride 16)
                               └─► up2 ─► (+) ◄─ score_pool3 ◄─ pool3   FCN-8s (stride 8)

The number of inputs decides the variant: ``in_channels=(4096,)`` is FCN-32s, ``(512, 4096)`` is
FCN-16s, ``(256, 512, 4096)`` is FCN-8s (inputs ordered fine -> coarse, as mmseg's
``multiple_select`` input transform delivers them).

Design choices (documented deviations from the Caffe reference):

* **Upsampling.** ``upsample='learned'`` (default, as the paper: "intermediate upsampling layers
  are initialized to bilinear upsampling, and then learned") uses a 4x4, stride-2 transposed
  convolution over all classes initialised to bilinear interpolation (FCN's ``surgery.interp``
  filter on the class diagonal). ``upsample='bilinear'`` uses fixed ``F.interpolate``. The final
  upsampling to the image (FCN's fixed bilinear ``upscore8/16/32``) is mmseg's bilinear resize of
  the head output (in ``loss_by_feat``, ``predict_by_feat`` and ``PixelSpaceModel``), identical to
  the fixed deconvolution except within a few pixels of the image border.
* **No crop offsets.** FCN pads conv1_1 by 100 pixels and crops each upsampled score map with
  hand-computed offsets. The :class:`~model_zoo.models.vgg.VGG16` backbone same-pads every
  convolution instead, so each skip map is aligned with the upsampled coarse scores (both follow
  the ``align_corners=False`` pixel-centre geometry); the transposed convolution is told the skip
  map's size (``output_size``), so odd sizes need no cropping either.
* **Skip initialisation.** ``score_pool4``/``score_pool3`` start at zero, as in FCN, so training
  starts from the coarser net's prediction. ``skip_scales`` reproduces the "at-once" FCN models,
  which scale pool4 by 0.01 and pool3 by 1e-4 before scoring (``skip_scales=(0.01, 1e-4)``).

Caffe -> mmseg parameter names (see :func:`caffe_fcn_key_map`): ``score_fr`` ->
``decode_head.conv_seg``, ``score_pool4`` -> ``decode_head.score_skips.0``, ``score_pool3`` ->
``decode_head.score_skips.1``, ``upscore2`` -> ``decode_head.upsamples.0``, ``upscore_pool4`` ->
``decode_head.upsamples.1``; backbone names in :mod:`model_zoo.models.vgg`.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS
from torch import nn

from .vgg import caffe_vgg16_key_map


def bilinear_upsample_weight(channels: int, kernel_size: int) -> torch.Tensor:
    """Transposed-convolution weight ``(C, C, k, k)`` doing per-channel bilinear upsampling.

    The filter is FCN's ``upsample_filt`` placed on the channel diagonal (``surgery.interp``); with
    ``stride = k // 2`` and ``padding = k // 4`` it equals ``F.interpolate(..., mode='bilinear',
    align_corners=False)`` away from the border.
    """
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = np.ogrid[:kernel_size, :kernel_size]
    filt = (1 - abs(og[0] - center) / factor) * (1 - abs(og[1] - center) / factor)
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    weight[range(channels), range(channels)] = torch.as_tensor(filt, dtype=torch.float32)
    return weight


@MODELS.register_module()
class FCNSkipHead(BaseDecodeHead):
    """FCN-32s/16s/8s decode head: score the coarsest map, fuse finer skips by upsample + sum.

    Args:
        in_channels: Channels of the selected inputs, fine -> coarse (e.g. pool3, pool4, fc7:
            ``(256, 512, 4096)``). One entry is FCN-32s, two FCN-16s, three FCN-8s.
        in_index: Backbone output indices of those inputs.
        upsample: ``'learned'`` (bilinear-initialised 4x4 stride-2 transposed convolutions) or
            ``'bilinear'`` (fixed interpolation, no parameters).
        skip_scales: Factors applied to the skip maps before scoring, coarse -> fine
            (``(0.01, 1e-4)`` for the at-once FCN-8s); ``None`` = 1.
        **kwargs: :class:`BaseDecodeHead` arguments (``num_classes``, ``dropout_ratio`` applied
            before ``score_fr``, ``loss_decode``, ``align_corners``, ...). ``channels`` is fixed to
            the coarsest input's channels (``score_fr`` is ``conv_seg``).

    Output: class scores at the resolution of the finest input (stride 32/16/8 on VGG-16).
    """

    def __init__(self,
                 in_channels: Union[int, Sequence[int]],
                 in_index: Union[int, Sequence[int]] = -1,
                 upsample: str = 'learned',
                 skip_scales: Optional[Sequence[float]] = None,
                 **kwargs):
        in_channels = [in_channels] if isinstance(in_channels, int) else list(in_channels)
        in_index = [in_index] if isinstance(in_index, int) else list(in_index)
        if upsample not in ('learned', 'bilinear'):
            raise ValueError(f"upsample must be 'learned' or 'bilinear', got {upsample!r}")
        super().__init__(in_channels=in_channels, channels=in_channels[-1], in_index=in_index,
                         input_transform='multiple_select', **kwargs)
        num_skips = len(in_channels) - 1
        if skip_scales is not None and len(skip_scales) != num_skips:
            raise ValueError(f'skip_scales needs {num_skips} entries (one per skip), got {skip_scales}')
        self.skip_scales = tuple(skip_scales) if skip_scales is not None else (1.0,) * num_skips
        self.upsample = upsample
        c = self.out_channels
        # coarse -> fine: index 0 is score_pool4, 1 is score_pool3
        self.score_skips = nn.ModuleList(nn.Conv2d(ch, c, 1) for ch in reversed(in_channels[:-1]))
        for conv in self.score_skips:
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        if upsample == 'learned':
            self.upsamples = nn.ModuleList(
                nn.ConvTranspose2d(c, c, 4, stride=2, padding=1, bias=False) for _ in range(num_skips))
            with torch.no_grad():
                for up in self.upsamples:
                    up.weight.copy_(bilinear_upsample_weight(c, 4))
        else:
            self.upsamples = None

    def _upsample(self, i: int, score: torch.Tensor, size) -> torch.Tensor:
        if self.upsamples is None:
            return F.interpolate(score, size=size, mode='bilinear', align_corners=self.align_corners)
        return self.upsamples[i](score, output_size=list(size))

    def forward(self, inputs) -> torch.Tensor:
        """Scores ``(N, num_classes, h, w)`` at the finest selected input's resolution."""
        feats = self._transform_inputs(inputs)
        score = self.cls_seg(feats[-1])                                    # score_fr
        for i, feat in enumerate(reversed(feats[:-1])):                    # pool4, then pool3
            scale = self.skip_scales[i]
            skip = self.score_skips[i](feat * scale if scale != 1 else feat)
            score = self._upsample(i, score, feat.shape[-2:]) + skip
        return score


def caffe_fcn_key_map(num_skips: int = 2, prefix: str = '') -> Dict[str, str]:
    """Caffe layer name -> parameter prefix for FCN-{32,16,8}s on VGG-16 (``num_skips`` 0/1/2).

    Append ``.weight`` (blobs[0]) / ``.bias`` (blobs[1]); the upsampling deconvolutions have no
    bias. The fixed final ``upscore``/``upscore16``/``upscore8`` layers have no counterpart (mmseg
    resizes bilinearly).
    """
    out = caffe_vgg16_key_map(prefix=f'{prefix}backbone.')
    out['score_fr'] = f'{prefix}decode_head.conv_seg'
    layers = [('score_pool4', 'upscore2'), ('score_pool3', 'upscore_pool4')]
    for i, (skip, up) in enumerate(layers[:num_skips]):
        out[skip] = f'{prefix}decode_head.score_skips.{i}'
        out[up] = f'{prefix}decode_head.upsamples.{i}'
    return out
