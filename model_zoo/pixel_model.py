"""Pixel-space wrapper: the one model interface every attack and metric sees.

``PixelSpaceModel`` takes float RGB images in ``[0, 255]`` of shape ``(N, 3, H, W)`` and returns
logits ``(N, C, H, W)`` at the input resolution. The segmentor's own normalisation (mean/std and
channel order, read from its ``SegDataPreProcessor``), test-time padding and sliding-window
inference are reproduced inside, as differentiable tensor operations, so that gradients reach the
pixels. The segmentor is called through ``mode='tensor'`` (``EncoderDecoder._forward``), never
through ``predict()``, which post-processes and mutates image metadata.

Call graph::

    x (RGB, 0-255) ─► channel order ─► (x - mean) / std ─► pad to size_divisor
        ─► whole: segmentor(x, mode='tensor')  |  slide: same on each window, averaged
        ─► bilinear resize to padded size (decode head's align_corners) ─► crop ─► logits
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import ModelError


class PixelSpaceModel(nn.Module):
    """Wrap an mmseg segmentor so that it maps 0–255 RGB pixels to full-resolution logits.

    Args:
        segmentor: An mmseg ``BaseSegmentor`` (e.g. ``EncoderDecoder``) or any module whose
            ``forward(x, mode='tensor')`` returns logits at some fraction of the input size.
        mean: Per-channel mean in the network's channel order, or None for no normalisation.
        std: Per-channel std in the network's channel order.
        input_order: ``'rgb'`` or ``'bgr'``: the channel order the segmentor's first layer expects.
        size_divisor: Pad (bottom/right) to a multiple of this before the forward pass.
        pad_val: Value used for padding, in normalised units (mmseg pads after normalising).
        mode: ``'whole'`` or ``'slide'`` inference.
        crop_size: ``(h, w)`` window for slide inference.
        stride: ``(h, w)`` stride for slide inference.
        align_corners: ``align_corners`` of the final bilinear resize (the decode head's).
        num_classes: Number of output classes (for checks and records).

    The model is put in eval mode; parameters are frozen (``requires_grad=False``) so attacks
    only compute gradients with respect to the input. Counters ``forward_images`` and
    ``gradient_images`` count images passed forward with and without autograd, for provenance.
    """

    def __init__(self, segmentor: nn.Module, *, mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None, input_order: str = 'rgb',
                 size_divisor: Optional[int] = None, pad_val: float = 0.0, mode: str = 'whole',
                 crop_size: Optional[Tuple[int, int]] = None,
                 stride: Optional[Tuple[int, int]] = None, align_corners: bool = False,
                 num_classes: Optional[int] = None):
        super().__init__()
        if input_order not in ('rgb', 'bgr'):
            raise ValueError(f"input_order must be 'rgb' or 'bgr', got {input_order!r}")
        if mode not in ('whole', 'slide'):
            raise ValueError(f"mode must be 'whole' or 'slide', got {mode!r}")
        if mode == 'slide' and (crop_size is None or stride is None):
            raise ValueError('slide inference needs crop_size and stride')
        self.segmentor = segmentor
        self.input_order = input_order
        self.size_divisor = size_divisor
        self.pad_val = float(pad_val)
        self.mode = mode
        self.crop_size = tuple(crop_size) if crop_size is not None else None
        self.stride = tuple(stride) if stride is not None else None
        self.align_corners = bool(align_corners)
        self.num_classes = num_classes
        if mean is not None:
            self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
            self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        else:
            self.mean = None
            self.std = None
        self.forward_images = 0
        self.gradient_images = 0
        #: shown in errors; the runner sets it to the suite's model name
        self.name: Optional[str] = None
        #: stop on non-finite logits or input gradients (a NaN model must never yield a number:
        #: with NaN gradients sign() is 0, the attack does nothing and the cell looks robust)
        self.check_finite = True
        self.eval()
        for p in self.segmentor.parameters():
            p.requires_grad_(False)

    @classmethod
    def from_segmentor(cls, segmentor: nn.Module, num_classes: Optional[int] = None) -> 'PixelSpaceModel':
        """Read normalisation, channel order, padding and test mode from an mmseg segmentor.

        mmseg loads images with OpenCV in BGR order; ``SegDataPreProcessor`` flips them to RGB when
        ``bgr_to_rgb`` (or ``rgb_to_bgr``) is set, then normalises with ``mean``/``std`` given in
        that flipped order. So the network expects RGB when a conversion is configured and BGR
        otherwise.
        """
        pre = getattr(segmentor, 'data_preprocessor', None)
        mean = std = None
        input_order = 'bgr'
        size_divisor = None
        pad_val = 0.0
        if pre is not None:
            if getattr(pre, '_enable_normalize', False):
                mean = pre.mean.detach().flatten().tolist()
                std = pre.std.detach().flatten().tolist()
            input_order = 'rgb' if getattr(pre, 'channel_conversion', False) else 'bgr'
            test_pad = getattr(pre, 'test_cfg', None) or {}
            size_divisor = test_pad.get('size_divisor', None)
            pad_val = getattr(pre, 'pad_val', 0.0)
        test_cfg = getattr(segmentor, 'test_cfg', None) or {}
        mode = test_cfg.get('mode', 'whole')
        crop_size = test_cfg.get('crop_size') if mode == 'slide' else None
        stride = test_cfg.get('stride') if mode == 'slide' else None
        if num_classes is None:
            head = getattr(segmentor, 'decode_head', None)
            if isinstance(head, nn.ModuleList):  # cascade segmentors: the last head predicts
                head = head[-1]
            num_classes = getattr(head, 'out_channels', None) or getattr(head, 'num_classes', None)
        return cls(segmentor, mean=mean, std=std, input_order=input_order,
                   size_divisor=size_divisor, pad_val=pad_val, mode=mode, crop_size=crop_size,
                   stride=stride, align_corners=getattr(segmentor, 'align_corners', False),
                   num_classes=num_classes)

    def train(self, mode: bool = True) -> 'PixelSpaceModel':
        """Always stays in eval mode: the benchmark never trains through the wrapper."""
        return super().train(False)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """0–255 RGB → the segmentor's input (channel order + mean/std), differentiably."""
        x = images
        if self.input_order == 'bgr':
            x = x.flip(1)
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return x

    def _tensor_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Segmentor forward at the size of ``x`` (already normalised), resized to that size."""
        out = self.segmentor(x, mode='tensor')
        if isinstance(out, (list, tuple)):
            out = out[0]
        if out.shape[-2:] != x.shape[-2:]:
            out = F.interpolate(out, size=x.shape[-2:], mode='bilinear',
                                align_corners=self.align_corners)
        return out

    def _slide_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Sliding-window inference as in mmseg's ``slide_inference``, without metadata."""
        h_stride, w_stride = self.stride
        h_crop, w_crop = self.crop_size
        n, _, h_img, w_img = x.shape
        h_grids = max(h_img - h_crop + h_stride - 1, 0) // h_stride + 1
        w_grids = max(w_img - w_crop + w_stride - 1, 0) // w_stride + 1
        preds = None
        count = x.new_zeros((1, 1, h_img, w_img))
        for h_idx in range(h_grids):
            for w_idx in range(w_grids):
                y2 = min(h_idx * h_stride + h_crop, h_img)
                x2 = min(w_idx * w_stride + w_crop, w_img)
                y1 = max(y2 - h_crop, 0)
                x1 = max(x2 - w_crop, 0)
                crop = self._tensor_logits(x[:, :, y1:y2, x1:x2])
                padded = F.pad(crop, (x1, w_img - x2, y1, h_img - y2))
                preds = padded if preds is None else preds + padded
                count[:, :, y1:y2, x1:x2] += 1
        return preds / count

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, C, H, W)`` at the input size for RGB images in ``[0, 255]``."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f'expected images of shape (N, 3, H, W), got {tuple(images.shape)}')
        n, _, h, w = images.shape
        self.forward_images += n
        if torch.is_grad_enabled() and images.requires_grad:
            self.gradient_images += n
        x = self.normalize(images.float())
        if self.size_divisor:
            d = int(self.size_divisor)
            pad_h, pad_w = (-h) % d, (-w) % d
            if pad_h or pad_w:
                x = F.pad(x, (0, pad_w, 0, pad_h), value=self.pad_val)
        logits = self._slide_logits(x) if self.mode == 'slide' else self._tensor_logits(x)
        logits = logits[:, :, :h, :w]
        if self.check_finite:
            # one reduction instead of a full boolean map: the sum is finite unless an element is
            # NaN/Inf (or the sum overflows, which the exact check below then rules out)
            if not bool(torch.isfinite(logits.detach().sum())) and not bool(torch.isfinite(logits).all()):
                raise ModelError(f'model {self._label()} produced non-finite logits (NaN or Inf) on '
                                 f'{n} image(s) of {h}x{w}: its weights or its config are broken '
                                 '(e.g. NaN weights, a diverged training run); no result can be '
                                 'computed from it. Expected finite logits.')
            if images.requires_grad:
                images.register_hook(self._check_gradient)
        return logits

    def _label(self) -> str:
        return repr(self.name) if self.name else type(self.segmentor).__name__

    def _check_gradient(self, grad: torch.Tensor) -> None:
        """Backward hook on the input: every attack's input gradient passes through here.

        As for the logits, one sum reduction first (its result is finite unless an element is
        NaN/Inf or the sum overflows); the elementwise check runs only when the sum is not finite,
        so a finite gradient costs one read of it instead of a map, its absolute value and a test.
        """
        if not bool(torch.isfinite(grad.sum())) and not bool(torch.isfinite(grad).all()):
            raise ModelError(f'model {self._label()} produced a non-finite input gradient (NaN or '
                             'Inf) although its logits are finite: an attack cannot follow it (sign '
                             'of NaN is 0, the attack would silently do nothing). Check the model '
                             'for operations without a finite gradient (e.g. sqrt or log at 0).')

    @torch.no_grad()
    def predict_labels(self, images: torch.Tensor) -> torch.Tensor:
        """Argmax label map ``(N, H, W)`` (int64) of RGB images in ``[0, 255]``."""
        return channel_argmax(self(images))


def channel_argmax(logits: torch.Tensor) -> torch.Tensor:
    """``logits.argmax(dim=1)``, the same indices (the first maximal class on ties, the NaN's
    class where there is one), computed as ``max(dim=1).indices``: on CPU (torch 2.x) ``argmax``
    over the channels of an ``(N, C, H, W)`` tensor takes a slow strided path, 3.6x slower
    (54 vs 15 ms for 8 × 19 × 128 × 256 logits on one thread, where the FCN demo model's forward
    pass of those 8 images takes about 90 ms)."""
    return logits.max(dim=1).indices
