"""Multiscale segmentor: one network with shared weights run on several input scales, fused.

DeepLab v2's multi-scale-input ("MSC") model (Chen et al., https://arxiv.org/abs/1606.00915),
evaluated by Arnab et al. 2018 (https://arxiv.org/abs/1711.09856, Sec. 6): the input is resized
to 50%, 75% and 100%, the *same* network predicts class scores at every scale, the scores are
bilinearly upsampled to the resolution of the 100% branch and fused per pixel by a maximum (the
most confident scale wins). The model is trained that way too: a
cross-entropy loss on every scale's output and one on the fused output.

Call graph (``_forward`` / ``mode='tensor'``, what ``PixelSpaceModel`` and the attacks see)::

    x ─┬─ resize 0.5  ─► backbone ─► head ─► logits_0.5 ─ upsample ─┐
       ├─ resize 0.75 ─► backbone ─► head ─► logits_0.75 ─ upsample ┼─► max (or mean) ─► logits
       └─ (1.0)       ─► backbone ─► head ─► logits_1.0 ────────────┘   (at the 1.0 branch's size)

* ``fusion='max'`` (default, DeepLab v2 / Arnab) or ``'mean'`` (average, as test-time multiscale
  ensembling in PSPNet and others).
* ``test_scales`` evaluates the trained multiscale model at other scales without retraining;
  ``test_scales=(0.5,)`` is Arnab et al.'s "Deeplab v2 50% scale" row of Table 1 (the network
  sees the image downsampled to 50%; its logits are upsampled back to the image by the usual
  bilinear resize). Training always uses ``scales``.
* Resizing: inputs are resized bilinearly (``align_corners`` of the decode head) to
  ``round(H * s) x round(W * s)`` after normalisation; everything is differentiable, so attacks
  reach the pixels through all scales at once.
* Loss: every output is compared with the full-resolution label by mmseg's ``loss_by_feat``,
  which upsamples the logits to the label size (DeepLab's Caffe code instead shrinks the label to
  each output's size); the losses are summed with equal weight. ``scale_losses=False`` keeps only
  the fused loss. An auxiliary head, if any, is trained on the largest scale's features.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from mmseg.models.segmentors.encoder_decoder import EncoderDecoder
from mmseg.registry import MODELS
from mmseg.utils import add_prefix
from torch import nn


@MODELS.register_module()
class MultiScaleEncoderDecoder(EncoderDecoder):
    """Encoder-decoder evaluated on several input scales with shared weights and fused logits.

    Args:
        scales: Input scales (fractions of the input size) used in training and, unless
            ``test_scales`` is set, at inference. Default: DeepLab v2's ``(0.5, 0.75, 1.0)``.
        fusion: ``'max'`` (per-pixel maximum over scales) or ``'mean'``.
        test_scales: Scales used by ``_forward``/``predict`` instead of ``scales`` (e.g. ``(0.5,)``
            for single-scale evaluation at 50%); ``None`` = ``scales``.
        scale_losses: Also put a loss on every scale's output (DeepLab v2 MSc training), not only
            on the fused output.
        **kwargs: :class:`EncoderDecoder` arguments (``backbone``, ``decode_head``, ...).

    Output of ``_forward``: fused logits ``(N, C, h, w)`` at the output resolution of the largest
    scale (the 1.0 branch), i.e. at the decode head's stride of the input.
    """

    def __init__(self, *args, scales: Sequence[float] = (0.5, 0.75, 1.0), fusion: str = 'max',
                 test_scales: Optional[Sequence[float]] = None, scale_losses: bool = True,
                 **kwargs):
        super().__init__(*args, **kwargs)
        if fusion not in ('max', 'mean'):
            raise ValueError(f"fusion must be 'max' or 'mean', got {fusion!r}")
        for name, value in (('scales', scales), ('test_scales', test_scales)):
            if value is not None and (len(value) == 0 or any(s <= 0 for s in value)):
                raise ValueError(f'{name} must be a non-empty sequence of positive scales, got {value}')
        self.scales = tuple(float(s) for s in scales)
        self.test_scales = tuple(float(s) for s in test_scales) if test_scales is not None else None
        self.fusion = fusion
        self.scale_losses = scale_losses

    # -- building blocks ---------------------------------------------------------------------
    def resize_input(self, inputs: torch.Tensor, scale: float) -> torch.Tensor:
        """Bilinearly resize a batch to ``round(H * scale) x round(W * scale)`` (identity at 1)."""
        if scale == 1.0:
            return inputs
        h, w = inputs.shape[-2:]
        size = (max(1, int(round(h * scale))), max(1, int(round(w * scale))))
        return F.interpolate(inputs, size=size, mode='bilinear', align_corners=self.align_corners)

    def scale_logits(self, inputs: torch.Tensor, scales: Sequence[float]) -> List[torch.Tensor]:
        """Decode-head logits of every scale, each at its own resolution."""
        return [self.decode_head.forward(self.extract_feat(self.resize_input(inputs, s)))
                for s in scales]

    def fuse(self, logits: Sequence[torch.Tensor]) -> torch.Tensor:
        """Upsample all logits to the largest one's size and fuse per pixel (max or mean)."""
        if len(logits) == 1:
            return logits[0]
        size = max((t.shape[-2:] for t in logits), key=lambda s: s[0] * s[1])
        stacked = torch.stack([
            t if t.shape[-2:] == size else
            F.interpolate(t, size=size, mode='bilinear', align_corners=self.align_corners)
            for t in logits])
        return stacked.amax(dim=0) if self.fusion == 'max' else stacked.mean(dim=0)

    def multiscale_logits(self, inputs: torch.Tensor,
                          scales: Optional[Sequence[float]] = None) -> torch.Tensor:
        """Fused logits over ``scales`` (default: the inference scales)."""
        if scales is None:
            scales = self.test_scales or self.scales
        return self.fuse(self.scale_logits(inputs, scales))

    def scale_loss(self, logits: torch.Tensor, data_samples) -> Dict[str, torch.Tensor]:
        """The decode head's ``loss_by_feat`` without its ``acc_seg`` metric.

        The accuracy is a top-k over every label pixel, about 15% of an MSc training step when
        computed for each scale; it is still logged for the fused output.
        """
        head = self.decode_head
        label = head._stack_batch_gt(data_samples)
        logits = F.interpolate(logits, size=label.shape[2:], mode='bilinear',
                               align_corners=head.align_corners)
        weight = head.sampler.sample(logits, label) if head.sampler is not None else None
        label = label.squeeze(1)
        terms = head.loss_decode if isinstance(head.loss_decode, nn.ModuleList) else [head.loss_decode]
        losses: Dict[str, torch.Tensor] = {}
        for term in terms:
            value = term(logits, label, weight=weight, ignore_index=head.ignore_index)
            losses[term.loss_name] = losses[term.loss_name] + value if term.loss_name in losses else value
        return losses

    # -- mmseg entry points ------------------------------------------------------------------
    def _forward(self, inputs: torch.Tensor, data_samples=None) -> torch.Tensor:
        """``mode='tensor'``: fused logits at the 1.0 branch's output resolution."""
        return self.multiscale_logits(inputs)

    def encode_decode(self, inputs: torch.Tensor, batch_img_metas: List[dict]) -> torch.Tensor:
        """Fused logits resized to the (padded) input size, used by ``predict``/``inference``."""
        return self.decode_head.predict_by_feat(self.multiscale_logits(inputs), batch_img_metas)

    def loss(self, inputs: torch.Tensor, data_samples) -> Dict[str, torch.Tensor]:
        """DeepLab v2 MSc training: cross-entropy on each scale's output and on the fused output."""
        losses: Dict[str, torch.Tensor] = {}
        logits = []
        largest = max(range(len(self.scales)), key=lambda i: self.scales[i])
        for i, s in enumerate(self.scales):
            feats = self.extract_feat(self.resize_input(inputs, s))
            out = self.decode_head.forward(feats)
            logits.append(out)
            if self.scale_losses and len(self.scales) > 1:
                losses.update(add_prefix(self.scale_loss(out, data_samples),
                                         f'decode_{int(round(s * 100))}pct'))
            if i == largest and self.with_auxiliary_head:
                losses.update(self._auxiliary_head_forward_train(feats, data_samples))
        losses.update(add_prefix(self.decode_head.loss_by_feat(self.fuse(logits), data_samples),
                                 'decode'))
        return losses

