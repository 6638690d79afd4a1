"""CRF-RNN: mean-field inference of a dense CRF as recurrent layers, and its mmseg segmentor.

Zheng et al. 2015, "Conditional Random Fields as Recurrent Neural Networks",
https://arxiv.org/abs/1502.03240 (code: https://github.com/torrvision/crfasrnn). The CRF is
Krähenbühl & Koltun's DenseCRF (https://arxiv.org/abs/1210.5644) with two Gaussian kernels,

    k_G(i, j) = exp(-|p_i - p_j|^2 / (2 θγ^2))                                   (spatial)
    k_B(i, j) = exp(-|p_i - p_j|^2 / (2 θα^2) - |I_i - I_j|^2 / (2 θβ^2))       (bilateral)

(``p``: pixel coordinates, ``I``: RGB in 0-255 units). One mean-field iteration, as crfasrnn's
``MeanfieldIteration`` (caffe-crfrnn/src/caffe/layers/meanfield_iteration.cu)::

    Q      = softmax(logits)                       # logits = U at the first iteration
    Q~_G   = normalised filter_G(Q)                # lattice, d = 2 (or exact separable conv)
    Q~_B   = normalised filter_B(Q)                # permutohedral lattice, d = 5
    msg    = W_G Q~_G + W_B Q~_B                   # 1x1 convs: spatial/bilateral_ker_weights
    pair   = μ msg                                 # 1x1 conv: compatibility_matrix (init -I)
    logits = U - pair                              # crfasrnn's Eltwise SUM with coeffs (1, -1)

``U`` are the unary network's logits (negative unary energies), so with ``μ = -I`` (crfasrnn's
``compatibility_mode: POTTS``; it differs from Potts' ``[l != l']`` only by a per-pixel constant,
which softmax ignores) a pixel's score for label ``l`` grows with the kernel-weighted mass of ``l``
around it. ``W_G, W_B`` start as ``3 I`` and ``5 I`` and ``θα, θβ, θγ = 160, 3, 3``: the values
of the public model's deploy prototxt (``multi_stage_meanfield_param`` in torrvision/crfasrnn's
README and ``python-scripts/TVG_CRFRNN_new_deploy.prototxt``). crfasrnn uses 5 iterations in
training and 10 at test time; so do we (``num_iter_train``, ``num_iter_test``).

Filter normalisation and the self term follow crfasrnn exactly (see
:mod:`model_zoo.models.permutohedral`): each filter output is divided by the filtered ones-image,
and the ``j = i`` term is kept. ``normalization='symmetric'`` (``D^-1/2 K D^-1/2``) and
``'none'`` are offered too: with them the kernel matrices are symmetric positive semi-definite, so
the parallel update is a concave-convex step on the mean-field free energy and never increases it
(Krähenbühl & Koltun, ICML 2013); the tests check that property with the exact dense filter.

Output contract: the layer returns the pre-softmax scores of the last iteration (what crfasrnn's
``MultiStageMeanfield`` top blob holds and what its ``SoftmaxWithLoss`` trained on). They equal
``log Q_final + const`` per pixel, so their argmax is the CRF's prediction, softmax gives the CRF
marginals, and cross-entropy on them is the CRF-RNN training loss.

Gradients: everything is differentiable with respect to the unaries (and the CRF's parameters).
As in crfasrnn (whose lattices take no gradient with respect to their features), the kernels are
built from a detached image, so no gradient flows through the *bilateral features*; an attack's
gradient reaches the pixels through the unary network only. Arnab et al. 2018, Sec. 7
(https://arxiv.org/abs/1711.09856) attacked exactly that model.

Image for the bilateral kernel: inside mmseg the segmentor receives the data preprocessor's
output, ``(img[channel order] - mean) / std``. :class:`CRFRNN` undoes it with its own
``data_preprocessor``'s ``mean``/``std`` and channel conversion, recovering RGB in 0-255 units
(crfasrnn fed its ``data`` blob: mean-subtracted BGR in 0-255 units; the kernel depends only on
colour *differences* and is symmetric in the channels, so that is the same kernel).

Call graph of :class:`CRFRNN`::

    _forward / encode_decode: extract_feat -> decode_head.forward -> resize to input size
                              -> un-normalise input to RGB -> MeanFieldCRF -> CRF logits
    loss: the same CRF logits -> decode_head.loss_by_feat (+ auxiliary heads on the features)
    unary_logits: extract_feat -> decode_head.forward -> resize to input size (the CRF's input;
                  ``model_parts['unaries']``, run as a model by ``model_zoo.wrappers.unaries_of``)
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmseg.models.segmentors.encoder_decoder import EncoderDecoder
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from mmseg.utils import add_prefix

from .permutohedral import _NORM_EPS, PermutohedralLattice, dense_kernel

__all__ = ['MeanFieldCRF', 'CRFRNN', 'pixel_grid']

_BACKENDS = ('lattice', 'dense')
_NORMALIZATIONS = ('mean', 'symmetric', 'none')


def _check_choice(name: str, value: str, choices: Tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f'{name} must be one of {choices}, got {value!r}')


def pixel_grid(height: int, width: int, device=None, dtype=torch.float32) -> Tensor:
    """``(1, 2, H, W)`` pixel coordinates ``(x, y)`` (column, row), as crfasrnn's kernels."""
    ys = torch.arange(height, device=device, dtype=dtype)
    xs = torch.arange(width, device=device, dtype=dtype)
    yy, xx = torch.meshgrid(ys, xs, indexing='ij')
    return torch.stack([xx, yy]).unsqueeze(0)


def _to_flat(values: Tensor) -> Tensor:
    """``(N, C, H, W)`` -> ``(N H W, C)`` (pixels as rows, channels as columns)."""
    return values.permute(0, 2, 3, 1).reshape(-1, values.shape[1])


def _from_flat(flat: Tensor, n: int, h: int, w: int) -> Tensor:
    """``(N H W, C)`` -> contiguous ``(N, C, H, W)``."""
    return flat.reshape(n, h, w, -1).permute(0, 3, 1, 2).contiguous()


class GaussianKernel:
    """A Gaussian filter on fixed features with DenseCRF's normalisation, for repeated use.

    Args:
        features: ``(N or 1, d, H, W)`` features divided by their bandwidths (detached).
        backend: ``'lattice'`` (permutohedral, linear time) or ``'dense'`` (exact, O(P^2); tiny
            images only).
        normalization: ``'mean'`` (``K q / K 1``, crfasrnn), ``'symmetric'``
            (``D^-1/2 K D^-1/2 q``) or ``'none'`` (``K q``).

    Call it on ``(N, C, H, W)`` maps, or use :meth:`flat` on ``(N H W, C)`` matrices (the
    layout the mean-field loop runs in; no transposes per filtering).
    """

    def __init__(self, features: Tensor, backend: str = 'lattice', normalization: str = 'mean'):
        _check_choice('backend', backend, _BACKENDS)
        _check_choice('normalization', normalization, _NORMALIZATIONS)
        self.normalization = normalization
        features = features.detach()
        self.height, self.width = features.shape[-2:]
        self.lattice: Optional[PermutohedralLattice] = None
        self.kernel: Optional[Tensor] = None
        if backend == 'lattice':
            self.lattice = PermutohedralLattice(features)
            # the normalisation is folded into the lattice's splat/slice weights
            self.operator = self.lattice.operator(normalization)
            norm = self.lattice.norm
        else:
            self.kernel = dense_kernel(features)  # (N, P, P) float64
            h, w = self.height, self.width
            norm = 1.0 / (self.kernel.sum(2).reshape(-1, 1, h, w) + _NORM_EPS)
        self.norm = norm.to(features.dtype if features.is_floating_point() else torch.float32)
        self.sqrt_norm = self.norm.sqrt()

    def _dense_raw(self, flat: Tensor) -> Tensor:
        k = self.kernel
        v = flat.reshape(-1, self.height * self.width, flat.shape[1]).to(k.dtype)
        return torch.matmul(k, v).reshape(flat.shape).to(flat.dtype)  # out_i = sum_j K_ij v_j

    def flat(self, values: Tensor) -> Tensor:
        """Filter ``(N H W, C)`` values (rows in ``(image, y, x)`` order)."""
        if self.lattice is not None:
            return self.operator.apply_flat(values)
        norm = self.norm.reshape(-1, self.height * self.width, 1)
        n = values.shape[0] // (self.height * self.width)
        if self.normalization == 'mean':
            out = self._dense_raw(values).reshape(n, -1, values.shape[1]) * norm.to(values.dtype)
        elif self.normalization == 'symmetric':
            s = self.sqrt_norm.reshape(-1, self.height * self.width, 1).to(values.dtype)
            v = (values.reshape(n, -1, values.shape[1]) * s).reshape(values.shape)
            out = self._dense_raw(v).reshape(n, -1, values.shape[1]) * s
        else:
            return self._dense_raw(values)
        return out.reshape(values.shape)

    def __call__(self, values: Tensor) -> Tensor:
        n, _, h, w = values.shape
        if self.lattice is not None:
            self.lattice._check_values(values)
        return _from_flat(self.flat(_to_flat(values)), n, h, w)


class SeparableSpatialKernel:
    """Exact spatial Gaussian ``exp(-|p_i - p_j|^2 / (2 θ^2))`` as two 1-D convolutions.

    Truncated at ``ceil(4 θ)`` pixels (the neglected mass is ``< 4e-4`` of the total), zero
    padded; the normalisation (``'mean'``, ``'symmetric'``, ``'none'``) is as in
    :class:`GaussianKernel`, so near borders the average runs over the pixels that exist, exactly
    as the dense filter's.
    """

    def __init__(self, height: int, width: int, theta: float, normalization: str = 'mean',
                 device=None, dtype=torch.float32):
        _check_choice('normalization', normalization, _NORMALIZATIONS)
        self.normalization = normalization
        self.height, self.width = height, width
        self.radius = r = max(1, int(math.ceil(4.0 * theta)))
        x = torch.arange(-r, r + 1, device=device, dtype=dtype)
        self.taps = torch.exp(-0.5 * (x / theta) ** 2)
        self.norm = 1.0 / (self._raw(torch.ones((1, 1, height, width), device=device,
                                                dtype=dtype)) + _NORM_EPS)
        self.sqrt_norm = self.norm.sqrt()

    def _raw(self, values: Tensor) -> Tensor:
        n, c, h, w = values.shape
        k = self.taps.to(values.dtype)
        x = values.reshape(n * c, 1, h, w)
        x = F.conv2d(x, k.view(1, 1, 1, -1), padding=(0, self.radius))
        x = F.conv2d(x, k.view(1, 1, -1, 1), padding=(self.radius, 0))
        return x.reshape(n, c, h, w)

    def __call__(self, values: Tensor) -> Tensor:
        if self.normalization == 'mean':
            return self._raw(values) * self.norm.to(values.dtype)
        if self.normalization == 'symmetric':
            s = self.sqrt_norm.to(values.dtype)
            return self._raw(values * s) * s
        return self._raw(values)

    def flat(self, values: Tensor) -> Tensor:
        """Filter ``(N H W, C)`` values (rows in ``(image, y, x)`` order)."""
        h, w = self.height, self.width
        out = self(_from_flat(values, values.shape[0] // (h * w), h, w))
        return _to_flat(out)


@MODELS.register_module()
class MeanFieldCRF(nn.Module):
    """Mean-field inference of a dense CRF unrolled as an RNN (the CRF-RNN layer).

    Args:
        num_classes: Number of labels ``C``.
        num_iter_train: Mean-field iterations in training mode (crfasrnn: 5).
        num_iter_test: Iterations in eval mode (crfasrnn: 10).
        theta_alpha: Spatial bandwidth of the bilateral kernel, pixels (crfasrnn: 160).
        theta_beta: Colour bandwidth of the bilateral kernel, 0-255 RGB units (crfasrnn: 3).
        theta_gamma: Bandwidth of the spatial kernel, pixels (crfasrnn: 3).
        spatial_weight: Initial diagonal of ``spatial_ker_weights`` (crfasrnn: 3).
        bilateral_weight: Initial diagonal of ``bilateral_ker_weights`` (crfasrnn: 5).
        compatibility: Initial ``compatibility_matrix``: ``'potts'`` (``-I``, crfasrnn's POTTS)
            or ``'zeros'``.
        normalization: Filter normalisation, ``'mean'`` (crfasrnn), ``'symmetric'`` or ``'none'``.
        backend: ``'lattice'`` or ``'dense'`` (exact O(P^2) oracle for tests; both kernels).
        spatial_filter: With the lattice backend, how the spatial kernel is computed:
            ``'lattice'`` (d = 2 permutohedral lattice, as crfasrnn) or ``'separable'`` (exact
            Gaussian as two 1-D convolutions truncated at 4 θγ).

    Shapes:
        ``forward(unary (N, C, H, W), image (N, 3, H, W) RGB 0-255) -> (N, C, H, W)`` CRF logits.

    Parameters (crfasrnn's blob names): ``spatial_ker_weights``, ``bilateral_ker_weights``,
    ``compatibility_matrix``, each ``(C, C)``, applied as 1x1 convolutions.

    Example:
        >>> crf = MeanFieldCRF(num_classes=21).eval()
        >>> logits = crf(torch.randn(1, 21, 40, 60), torch.rand(1, 3, 40, 60) * 255)
    """

    def __init__(self, num_classes: int, num_iter_train: int = 5, num_iter_test: int = 10,
                 theta_alpha: float = 160.0, theta_beta: float = 3.0, theta_gamma: float = 3.0,
                 spatial_weight: float = 3.0, bilateral_weight: float = 5.0,
                 compatibility: str = 'potts', normalization: str = 'mean',
                 backend: str = 'lattice', spatial_filter: str = 'lattice'):
        super().__init__()
        if num_iter_train < 0 or num_iter_test < 0:
            raise ValueError('iteration counts must be >= 0')
        _check_choice('compatibility', compatibility, ('potts', 'zeros'))
        _check_choice('normalization', normalization, _NORMALIZATIONS)
        _check_choice('backend', backend, _BACKENDS)
        _check_choice('spatial_filter', spatial_filter, ('lattice', 'separable'))
        for name, theta in (('theta_alpha', theta_alpha), ('theta_beta', theta_beta),
                            ('theta_gamma', theta_gamma)):
            if not theta > 0:
                raise ValueError(f'{name} must be positive, got {theta}')
        self.num_classes = int(num_classes)
        self.num_iter_train = int(num_iter_train)
        self.num_iter_test = int(num_iter_test)
        self.theta_alpha = float(theta_alpha)
        self.theta_beta = float(theta_beta)
        self.theta_gamma = float(theta_gamma)
        self.normalization = normalization
        self.backend = backend
        self.spatial_filter = spatial_filter
        eye = torch.eye(self.num_classes)
        self.spatial_ker_weights = nn.Parameter(float(spatial_weight) * eye)
        self.bilateral_ker_weights = nn.Parameter(float(bilateral_weight) * eye)
        self.compatibility_matrix = nn.Parameter(-eye if compatibility == 'potts'
                                                 else torch.zeros_like(eye))
        # The spatial kernel depends only on the image size: keep the last one (not state).
        self._spatial_cache: Dict[Tuple, GaussianKernel] = {}

    @property
    def num_iter(self) -> int:
        """Iterations the next forward pass runs (train or test count, by ``self.training``)."""
        return self.num_iter_train if self.training else self.num_iter_test

    def extra_repr(self) -> str:
        return (f'num_classes={self.num_classes}, num_iter_train={self.num_iter_train}, '
                f'num_iter_test={self.num_iter_test}, theta_alpha={self.theta_alpha}, '
                f'theta_beta={self.theta_beta}, theta_gamma={self.theta_gamma}, '
                f'normalization={self.normalization!r}, backend={self.backend!r}, '
                f'spatial_filter={self.spatial_filter!r}')

    def kernels(self, image: Tensor) -> Tuple[GaussianKernel, GaussianKernel]:
        """Spatial and bilateral kernels for ``image`` ``(N, 3, H, W)`` (RGB, 0-255)."""
        n, _, h, w = image.shape
        dtype = torch.float64 if image.dtype == torch.float64 else torch.float32
        key = (h, w, image.device, dtype, self.theta_gamma, self.normalization, self.backend,
               self.spatial_filter)
        spatial = self._spatial_cache.get(key)
        if spatial is None:
            if self.backend == 'lattice' and self.spatial_filter == 'separable':
                spatial = SeparableSpatialKernel(h, w, self.theta_gamma, self.normalization,
                                                 image.device, dtype)
            else:
                grid = pixel_grid(h, w, image.device, dtype)
                spatial = GaussianKernel(grid / self.theta_gamma, self.backend, self.normalization)
            self._spatial_cache = {key: spatial}
        grid = pixel_grid(h, w, image.device, dtype).expand(n, -1, -1, -1)
        feats = torch.cat([grid / self.theta_alpha, image.detach().to(dtype) / self.theta_beta], 1)
        bilateral = GaussianKernel(feats, self.backend, self.normalization)
        return spatial, bilateral

    @staticmethod
    def _mix(matrix: Tensor, x: Tensor) -> Tensor:
        """1x1 convolution with a ``(C, C)`` matrix: ``out[:, k] = sum_l M[k, l] x[:, l]``."""
        return F.conv2d(x, matrix.to(x.dtype)[:, :, None, None])

    def forward(self, unary: Tensor, image: Tensor, num_iter: Optional[int] = None) -> Tensor:
        """Run mean-field inference.

        Args:
            unary: ``(N, C, H, W)`` unary logits (negative unary energies).
            image: ``(N, 3, H, W)`` RGB image in 0-255 units, same size (detached inside).
            num_iter: Override the train/test iteration count (0 returns ``unary``).

        Returns:
            ``(N, C, H, W)`` pre-softmax CRF scores of the last iteration.
        """
        if unary.dim() != 4 or unary.shape[1] != self.num_classes:
            raise ValueError(f'unary must be (N, {self.num_classes}, H, W), '
                             f'got {tuple(unary.shape)}')
        if image.shape[0] != unary.shape[0] or image.shape[1] != 3 or \
                image.shape[-2:] != unary.shape[-2:]:
            raise ValueError(f'image {tuple(image.shape)} does not match unary '
                             f'{tuple(unary.shape)}: expected (N, 3, H, W) RGB at the unary '
                             'resolution')
        iters = self.num_iter if num_iter is None else int(num_iter)
        if iters == 0:
            return unary
        spatial, bilateral = self.kernels(image)
        n, c, h, w = unary.shape
        # The loop runs on (N H W, C) matrices, the layout the lattice's sparse products take,
        # so nothing is transposed per iteration. The 1x1 convolutions become products with
        # the (C, C) matrices, with the compatibility folded into the kernel weights:
        # logits = U - μ (W_G Q~_G + W_B Q~_B) = U + Q~_G (-μ W_G)^T + Q~_B (-μ W_B)^T.
        mix_g = -(self.compatibility_matrix @ self.spatial_ker_weights).to(unary.dtype)
        mix_b = -(self.compatibility_matrix @ self.bilateral_ker_weights).to(unary.dtype)
        u = _to_flat(unary).contiguous()
        logits = u
        for _ in range(iters):
            q = torch.softmax(logits, dim=1)
            logits = u + F.linear(spatial.flat(q), mix_g) + F.linear(bilateral.flat(q), mix_b)
        return _from_flat(logits, n, h, w)


@MODELS.register_module()
class CRFRNN(EncoderDecoder):
    """CRF-RNN segmentor: any mmseg encoder-decoder whose logits feed a :class:`MeanFieldCRF`.

    Zheng et al. 2015, https://arxiv.org/abs/1502.03240. The decode head's logits (the unaries)
    are resized to the input size, the input is un-normalised to RGB 0-255 with this segmentor's
    ``data_preprocessor`` (mean, std, channel order), and mean-field inference refines them.
    ``_forward`` (``mode='tensor'``), ``encode_decode`` (mmseg's predict path) and ``loss`` all
    return / train on the CRF's pre-softmax scores at the input resolution, so the CRF is
    trained end to end through the decode head's own loss; auxiliary heads stay on the features.

    Args:
        crf: Config of the CRF layer (``type='MeanFieldCRF'`` and its arguments);
            ``num_classes`` defaults to the decode head's. ``None``: crfasrnn's defaults.
        **kwargs: :class:`mmseg.models.EncoderDecoder` arguments (backbone, decode_head, ...).
    """

    #: Parts of this model that run on their own as a segmentor: part name -> the method giving
    #: that part's logits at the input size (``model_zoo.wrappers.part_of`` reads this, so which
    #: part is the unaries is stated by the module, never guessed from a model name).
    model_parts = {'unaries': 'unary_logits'}

    def __init__(self, crf: Optional[dict] = None, **kwargs):
        super().__init__(**kwargs)
        if self.out_channels != self.num_classes or self.num_classes < 2:
            raise ValueError('CRFRNN needs a softmax decode head with out_channels == num_classes '
                             f'>= 2, got out_channels={self.out_channels}, '
                             f'num_classes={self.num_classes}')
        crf = dict(type='MeanFieldCRF') if crf is None else dict(crf)
        crf.setdefault('type', 'MeanFieldCRF')
        crf.setdefault('num_classes', self.num_classes)
        if crf['num_classes'] != self.num_classes:
            raise ValueError(f"crf.num_classes={crf['num_classes']} differs from the decode head's "
                             f'{self.num_classes}')
        self.crf = MODELS.build(crf)

    def image_rgb(self, inputs: Tensor) -> Tensor:
        """Undo the data preprocessor: network input -> RGB in 0-255 units."""
        pre = self.data_preprocessor
        x = inputs
        if getattr(pre, '_enable_normalize', False):
            x = x * pre.std.to(x) + pre.mean.to(x)
        if not getattr(pre, 'channel_conversion', False):
            x = x.flip(1)  # mmseg loads BGR; without a conversion the network sees BGR
        return x

    def _unary_logits(self, feats: List[Tensor], inputs: Tensor) -> Tensor:
        unary = self.decode_head.forward(feats)
        if isinstance(unary, (list, tuple)):
            unary = unary[0]
        return resize(unary, size=inputs.shape[2:], mode='bilinear',
                      align_corners=self.align_corners)

    def _crf_logits(self, feats: List[Tensor], inputs: Tensor) -> Tensor:
        return self.crf(self._unary_logits(feats, inputs), self.image_rgb(inputs))

    def unary_logits(self, inputs: Tensor) -> Tensor:
        """The unaries: the decode head's logits at the input size, exactly what the CRF receives.

        The network without its mean-field layer (Arnab et al. 2018, Sec. 7.2 and Fig. 4b: FGSM
        from the "unary" potentials, i.e. FCN8s, transfers to CRF-RNN better than its own
        white-box attack). Same input as ``mode='tensor'``: the data preprocessor's output.
        """
        return self._unary_logits(self.extract_feat(inputs), inputs)

    def _forward(self, inputs: Tensor, data_samples=None) -> Tensor:
        """CRF logits ``(N, C, H, W)`` at the input size (``mode='tensor'``)."""
        return self._crf_logits(self.extract_feat(inputs), inputs)

    def encode_decode(self, inputs: Tensor, batch_img_metas: List[dict]) -> Tensor:
        """CRF logits at the (padded) input size; mmseg's postprocessing crops and resizes."""
        return self._crf_logits(self.extract_feat(inputs), inputs)

    def loss(self, inputs: Tensor, data_samples) -> dict:
        """Decode-head loss on the CRF logits (end to end), plus auxiliary-head losses."""
        feats = self.extract_feat(inputs)
        losses = dict()
        logits = self._crf_logits(feats, inputs)
        losses.update(add_prefix(self.decode_head.loss_by_feat(logits, data_samples), 'decode'))
        if self.with_auxiliary_head:
            losses.update(self._auxiliary_head_forward_train(feats, data_samples))
        return losses
