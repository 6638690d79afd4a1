"""Image-to-image generators of Generative Adversarial Perturbations (Poursaeed et al. 2018).

Poursaeed et al. (https://arxiv.org/abs/1712.02328, Sec. 3.1) "consider two architectures used in
recent image-to-image translation networks": the ResNet generator of Johnson et al. ("several
downsampling layers, residual blocks and upsampling layers"; "In most of our experiments, the
ResNet Generator outperforms U-Net") and the U-Net ("an encoder-decoder network with skip
connections between the encoder and the decoder"). Both definitions follow the reference code
(``OmidPoursaeed/Generative_Adversarial_Perturbations``, ``material/models/generators.py``):

* :class:`ResnetGenerator` – ``ResnetGenerator``: reflection pad 3, conv 7×7, norm, act; two
  stride-2 conv 3×3 (×2 channels each), norm, act; ``n_blocks`` residual blocks (reflection pad,
  conv 3×3, norm, ReLU, [dropout 0.5], reflection pad, conv 3×3, norm, plus the identity); two
  stride-2 transposed conv 3×3, norm, act; reflection pad 3, conv 7×7, tanh. Convolutions before
  a norm have a bias only with instance norm (``use_bias = norm_type == 'instance'``).
* :class:`UnetGenerator` – ``UnetGenerator`` (8 stride-2 4×4 convolutions down to 1/256 of the
  input and 8 transposed ones back, channels ``ngf·(1, 2, 4, 8, 8, …)``, LeakyReLU 0.2 in the
  encoder, no norm on the first and the innermost encoder layer, dropout 0.5 on the first three
  decoder layers, skip concatenations, tanh) with the depth (number of levels) configurable.

Deviations, all harmless: the reference code shares one norm module between layers of the same
width (``self.norm8`` is used by seven layers); here each layer has its own (identical for
instance norm, which has no parameters). Both generators take any ``H × W``: the input is padded
(replicate, bottom/right) to a multiple of the total stride and the output cropped back to
``H × W`` (the reference code crops the generator's output the same way,
``self.delta[:, :, 0: w, 0: h]``). Weights keep PyTorch's default initialisation, as in the
segmentation code (``define()`` calls ``weights_init(network, act)`` on the container, whose class
name contains no ``Conv``, so it changes nothing).
"""
from __future__ import annotations

import math
import numbers
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ('instance', 'batch')
ACTIVATIONS = ('selu', 'relu')


def _check_int(value, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f'{what} must be an integer >= {minimum}, got {value!r}')
    return int(value)


def check_norm(norm) -> str:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS} (the reference code's 'instance' or 'batch'), got {norm!r}")
    return norm


def check_activation(activation) -> str:
    if activation not in ACTIVATIONS:
        raise ValueError(f'activation must be one of {ACTIVATIONS}, got {activation!r}')
    return activation


def _norm_layer(norm: str, channels: int) -> nn.Module:
    # nn.InstanceNorm2d(c) as in the reference: no affine parameters, no running statistics
    return nn.InstanceNorm2d(channels) if norm == 'instance' else nn.BatchNorm2d(channels)


def _activation(activation: str) -> nn.Module:
    return nn.SELU() if activation == 'selu' else nn.ReLU()


def _pad_to(x: torch.Tensor, multiple: int, minimum: int) -> Tuple[torch.Tensor, int, int]:
    """Replicate-pad ``x`` (bottom/right) to sides that are multiples of ``multiple`` and ≥ ``minimum``."""
    h, w = x.shape[-2:]
    ph = max(minimum, multiple * math.ceil(h / multiple)) - h
    pw = max(minimum, multiple * math.ceil(w / multiple)) - w
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode='replicate')
    return x, h, w


class ResnetBlock(nn.Module):
    """Residual block of the reference code: ``x + norm(conv(ReLU(norm(conv(x)))))``, reflection padding."""

    def __init__(self, dim: int, norm: str, dropout: bool, use_bias: bool):
        super().__init__()
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=use_bias), _norm_layer(norm, dim),
                  nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=use_bias), _norm_layer(norm, dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """Johnson et al.'s ResNet generator as in Poursaeed et al.'s code; output in [−1, 1] (tanh).

    Args:
        in_channels / out_channels: Channels of input and output (3 and 3).
        ngf: Filters of the first convolution (the reference: 128 for segmentation, 64 for
            classification).
        n_blocks: Residual blocks (the reference: 9 for segmentation, 6 for classification).
        norm: ``'instance'`` (segmentation code) or ``'batch'`` (classification code).
        activation: ``'selu'`` (segmentation code) or ``'relu'`` (classification code), used
            after the stem, the down- and the up-sampling layers (the blocks always use ReLU).
        dropout: Dropout 0.5 inside the residual blocks (segmentation code: True).

    Any ``H × W``: padded to a multiple of 4 (at least 8) and cropped back.
    """

    n_downsampling = 2

    def __init__(self, in_channels: int = 3, out_channels: int = 3, ngf: int = 64, n_blocks: int = 6,
                 norm: str = 'batch', activation: str = 'relu', dropout: bool = False):
        super().__init__()
        ngf = _check_int(ngf, 'ngf', 1)
        n_blocks = _check_int(n_blocks, 'n_blocks', 0)
        norm, activation = check_norm(norm), check_activation(activation)
        use_bias = norm == 'instance'
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7, bias=use_bias),
                  _norm_layer(norm, ngf), _activation(activation)]
        for i in range(self.n_downsampling):
            mult = 2 ** i
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=use_bias),
                       _norm_layer(norm, ngf * mult * 2), _activation(activation)]
        mult = 2 ** self.n_downsampling
        layers += [ResnetBlock(ngf * mult, norm, dropout, use_bias) for _ in range(n_blocks)]
        for i in range(self.n_downsampling):
            mult = 2 ** (self.n_downsampling - i)
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1,
                                          output_padding=1, bias=use_bias),
                       _norm_layer(norm, ngf * mult // 2), _activation(activation)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        stride = 2 ** self.n_downsampling
        # at least 2 pixels at the bottleneck: reflection padding and instance norm need them
        x, h, w = _pad_to(x, stride, 2 * stride)
        return self.model(x)[..., :h, :w]


class UnetGenerator(nn.Module):
    """Poursaeed et al.'s U-Net generator with a configurable number of levels; output in [−1, 1].

    Encoder level ``i`` (0-based) is a stride-2 4×4 convolution to ``ngf·min(2^i, 8)`` channels,
    preceded by LeakyReLU(0.2) (except level 0) and followed by a norm (except levels 0 and
    ``depth − 1``). The decoder mirrors it with stride-2 4×4 transposed convolutions preceded by
    ``activation``, followed by a norm (and dropout 0.5 on the first three if ``dropout``), each
    output concatenated with the encoder feature of the same size; the last one maps to
    ``out_channels`` and ends in tanh. ``depth = 8`` is the reference ``UnetGenerator``.

    Args:
        in_channels / out_channels: Channels of input and output (3 and 3).
        ngf: Filters of the first convolution (the reference default: 128).
        depth: Number of down-sampling levels ≥ 2 (the reference: 8, i.e. 1/256 of the input).
        norm, activation: As in :class:`ResnetGenerator` (the U-Net's defaults in the
            reference are ``'instance'`` and ``'selu'``).
        dropout: Dropout 0.5 on the three innermost decoder layers (reference: always on).

    Any ``H × W``: padded to a multiple of ``2^depth`` and cropped back.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, ngf: int = 64, depth: int = 8,
                 norm: str = 'instance', activation: str = 'selu', dropout: bool = True):
        super().__init__()
        ngf = _check_int(ngf, 'ngf', 1)
        self.depth = _check_int(depth, 'unet_depth', 2)
        norm, activation = check_norm(norm), check_activation(activation)
        ch = [ngf * min(2 ** i, 8) for i in range(self.depth)]
        self.down = nn.ModuleList()
        for i in range(self.depth):
            layers = [] if i == 0 else [nn.LeakyReLU(0.2)]
            layers.append(nn.Conv2d(in_channels if i == 0 else ch[i - 1], ch[i], 4, 2, 1))
            if 0 < i < self.depth - 1:
                layers.append(_norm_layer(norm, ch[i]))
            self.down.append(nn.Sequential(*layers))
        self.up = nn.ModuleList()
        for j in range(1, self.depth):           # decoder layer j produces the size of encoder level depth−1−j
            c_in = ch[-1] if j == 1 else 2 * ch[self.depth - j]
            c_out = ch[self.depth - 1 - j]
            layers = [_activation(activation), nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), _norm_layer(norm, c_out)]
            if dropout and j <= 3:
                layers.append(nn.Dropout(0.5))
            self.up.append(nn.Sequential(*layers))
        self.up.append(nn.Sequential(_activation(activation), nn.ConvTranspose2d(2 * ch[0], out_channels, 4, 2, 1),
                                     nn.Tanh()))

    def forward(self, x):
        stride = 2 ** self.depth
        x, h, w = _pad_to(x, stride, stride)
        skips = []
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        skips.pop()                               # the innermost feature is not concatenated
        for layer in self.up[:-1]:
            x = torch.cat([layer(x), skips.pop()], dim=1)
        return self.up[-1](x)[..., :h, :w]


def build_generator(kind: str, ngf: int, n_blocks: int = 9, unet_depth: int = 8, norm: str = 'instance',
                    activation: str = 'selu', dropout: bool = True) -> nn.Module:
    """A 3 → 3 channel generator: ``kind`` is ``'resnet'`` or ``'unet'``."""
    if kind == 'resnet':
        return ResnetGenerator(3, 3, ngf, n_blocks, norm, activation, dropout)
    if kind == 'unet':
        return UnetGenerator(3, 3, ngf, unet_depth, norm, activation, dropout)
    raise ValueError(f"generator must be 'resnet' or 'unet', got {kind!r}")


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
