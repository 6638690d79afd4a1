"""Universal adversarial perturbations for segmentation (Metzen et al. 2017, Sec. 3.3).

https://arxiv.org/abs/1704.05712 ("Universal Adversarial Perturbations Against Semantic Image
Segmentation", ICCV 2017).

One image-agnostic perturbation ``Ξ`` is *fitted* on ``m`` training images (with their target
segmentations ``y_target,k`` for the targeted attack) and then added unchanged to held-out images.
Metzen et al. extend their targeted iterative attack (Sec. 3.2) by replacing the gradient of one
image's loss with "the loss gradient averaged over the entire training data" (Sec. 3.3)::

    Ξ^(0) = 0,   Ξ^(t+1) = Clip_ε{ Ξ^(t) − α · sign(∇_D(Ξ^(t))) }
    ∇_D(Ξ)   = 1/m Σ_{k=1..m} ∇_x J^ω_ss( f(x^(k) + Ξ), y_target,k )

(The equations are written out from the paper's Sec. 3.2/3.3 prose and notation; ``t`` counts
iterations.) Every iteration is therefore one full pass over the fitting split (a deterministic full-batch sign
gradient step, no sampling): the gradients of all batches of the pass are accumulated before ξ
moves. The paper describes no stochastic or mini-batch variant; batches here only bound memory.

Periodic proto-perturbation (Sec. 3.3): to limit overfitting, "we enforce for all i, j ∈ I the
constraints Ξ_i,j = Ξ_i+h,j and Ξ_i,j = Ξ_i,j+w for a predefined spatial periodicity h, w. This can
be achieved by optimizing a proto-perturbation Ξ̂ of size h × w and tile it to the full Ξ. This
results in a gradient averaged over the training data and all tiles" (``R, S`` tiles per dimension)::

    ∇_D(Ξ̂) = 1/(m R S) Σ_k Σ_r Σ_s ∇_x J^ω_ss( f(x^(k) + Ξ), y_target,k )[rh:(r+1)h, sw:(s+1)w]

i.e. the gradient w.r.t. the proto-perturbation is the image gradient folded onto the tile (the
adjoint of tiling). Tiles start at the top-left pixel; when ``h`` or ``w`` does not divide the image
size the last row/column of tiles is cropped, and a cropped tile contributes the part it covers.
The constant ``1/(m R S)`` does not change the sign and is only applied as ``1/m``.

Losses (``J^ω_ss``, ``ω``, the τ rule and the ``1/|I|`` normalisation) are exactly those of the
image-dependent attack, :mod:`attacks.targeted` (reused, not re-implemented). Static and dynamic
targets are whatever target maps the fitting batches carry (:mod:`attacks.targets`); ``I_o`` is the
set of pixels whose target differs from the batch's ``labels`` (for a hide-class target built from
the clean prediction that is Metzen's ``I_o = {f(x)_ij = o}``), and pixels whose ``labels`` are 255
get no loss, as in :class:`attacks.targeted.TargetedIterativeFGSM`.

Targeted or untargeted is decided by the fitting data, not by a constructor flag: if the batches
carry ``target`` maps, ``J^ω_ss`` towards them is *descended*; if every batch has ``target=None``,
the mean per-pixel cross-entropy against ``labels`` (``1/|I| Σ CE``, 255 = no loss) is *ascended*
(the untargeted universal perturbation; ``omega`` must then be None and ``tau`` is unused). Mixing
the two in one split is an error. The mode is recorded as ``fit_info['targeted']``. (A suite passes
the target as a runner field, not a constructor argument, so a flag would only duplicate it.)

Image range: the attacked input is ``clip(x + tile(ξ), 0, 255)`` and the gradient is ``∇_x J`` at
that clipped input, as in the image-dependent iterative attacks (:mod:`attacks.ifgsm` and
:mod:`attacks.targeted` differentiate at the clipped iterate); ξ itself is only clipped to
``[−ε, ε]`` after each step ("all entries of ξ are clipped after each iteration such that their
absolute value remains smaller than ε", Sec. 2.2).

Defaults follow the paper: ε = 10 and n = 60 ("When not noted otherwise, we used ε = 10 ...
Moreover, we set the number of iterations to n = 60", Sec. 4), α = 1 ("We use α = 1 throughout all
experiments", Sec. 2.2), τ = 0.75 (Sec. 3.2), the unweighted ``J_ss``. Their static-target
experiment: "we used the unweighted loss J_ss, and did not use periodic tiles, i.e., h = 512,
w = 1024" (``tile_size=None``); their dynamic-target (hiding) experiment: "the periodic tile size to
h = w = 512 and use J^ω_ss with ω = 0.9999" (``tile_size=512, omega=0.9999``).

Cost: fitting spends exactly ``num_steps × m`` forward+backward image passes, one batched pass
per batch of the split and iteration (no per-image loop), plus ``m`` forward passes for the final
loss, recorded in ``fit_info``; the split itself is read once and replayed from memory when it
fits in :data:`attacks.fitted.FIT_REPLAY_BYTES` (``fit_info['split_reads']``). Applying the
perturbation costs no gradient pass.
"""
from __future__ import annotations

import numbers
from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from tqdm import tqdm

from .base import IGNORE_INDEX, PIXEL_MAX, PIXEL_MIN, member_weighted, register_attack
from .fitted import FitBatch, FitData, FittedAttack, ReplayedFitData
from .pgd import check_num_steps, check_positive
from .targeted import (METZEN_NUM_STEPS, METZEN_TAU, WeightedTarget, metzen_pixel_weights,
                       weighted_pixel_cross_entropy)

__all__ = ['UniversalPerturbation', 'FitBatch', 'tile_perturbation', 'fold_tiles', 'METZEN_EPSILON']

#: Metzen et al.'s ε (Sec. 4), in 0–255 pixel units
METZEN_EPSILON = 10.0
#: key of the (proto-)perturbation in the artifact's state
STATE_KEY = 'perturbation'


def tile_perturbation(proto: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Tile a ``(C, h, w)`` proto-perturbation periodically over ``(C, height, width)``.

    Tiles start at the top-left pixel; the last row/column of tiles is cropped at the borders, so
    ``out[:, i, j] = proto[:, i mod h, j mod w]``.
    """
    _, h, w = proto.shape
    return proto.repeat(1, -(-height // h), -(-width // w))[:, :height, :width]


def fold_tiles(grad: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Adjoint of :func:`tile_perturbation`: sum a ``(C, H, W)`` gradient over all tiles → ``(C, h, w)``.

    ``out[:, a, b] = Σ_{i ≡ a mod h, j ≡ b mod w} grad[:, i, j]`` (cropped border tiles included).
    """
    c, height, width = grad.shape
    rows, cols = -(-height // h), -(-width // w)
    padded = F.pad(grad, (0, cols * w - width, 0, rows * h - height))
    return padded.reshape(c, rows, h, cols, w).sum(dim=(1, 3))


def _check_tile_size(tile_size) -> Optional[Tuple[int, int]]:
    if tile_size is None:
        return None
    if isinstance(tile_size, numbers.Integral) and not isinstance(tile_size, bool):
        tile_size = (tile_size, tile_size)
    if (isinstance(tile_size, (str, bytes)) or not hasattr(tile_size, '__len__') or len(tile_size) != 2
            or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1 for v in tile_size)):
        raise ValueError('tile_size must be None (one perturbation the size of the image), a positive '
                         f'integer or a pair (h, w) of positive integers, got {tile_size!r}')
    return int(tile_size[0]), int(tile_size[1])


def _model_device(model) -> Optional[torch.device]:
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration, TypeError):
        return None


class _Split:
    """What the passes over the fitting split have established (size, mode, number of images)."""

    def __init__(self):
        self.image_size: Optional[Tuple[int, int]] = None
        self.targeted: Optional[bool] = None
        self.num_images: Optional[int] = None
        self.num_batches: Optional[int] = None
        self.device: Optional[torch.device] = None   # where the batches (and ξ) live during fitting


@register_attack
class UniversalPerturbation(FittedAttack):
    """Metzen et al.'s universal perturbation: one ξ fitted on a training split, added to every image.

    Args:
        epsilon: L∞ radius in 0–255 pixel units. Default 10 (Metzen et al.).
        alpha: Step size of the sign-gradient updates, in pixel units. Default 1.
        num_steps: Iterations n, each a full pass over the fitting split. Default 60.
        tile_size: None (default) for one perturbation the size of the fitting images (it can only
            be applied to images of that size); ``(h, w)`` (or an int for ``h = w``) for a periodic
            proto-perturbation tiled over the image and cropped at the borders (any image size).
        omega: ω of ``J^ω_ss`` in ``[0, 1]`` for targeted fitting; None (default) for the unweighted
            ``J_ss``. Metzen et al. hide a class with ω = 0.9999.
        tau: Confidence above which a pixel already predicted as its target has zero loss
            (targeted fitting only). Default 0.75; None disables the rule.

    No randomness is involved (zero start, full-batch gradients), so there is no seed.

    Example:
        >>> attack = UniversalPerturbation(epsilon=10, tile_size=512, omega=0.9999)
        >>> attack.fit(model, lambda: (FitBatch(x, clean_pred, hide_class_target(clean_pred, 11))
        ...                            for x, clean_pred in train_batches()), progress=True)
        >>> attack.save('artifacts/universal.pt')
        >>> adv = attack(model, val_images)            # clip(val_images + tile(ξ), 0, 255)
    """

    name = 'universal'
    aliases = ('metzen2017_universal',)
    display_name = 'Universal perturbation'
    #: untargeted by class: targeted fitting is decided by the fitting batches (their ``target``)
    targeted = False
    #: a suite may describe a target for the fitting split; when applying, a target passed to
    #: ``__call__`` is validated but not used (the perturbation is already fitted)
    accepts_target = True

    def __init__(self, epsilon: float = METZEN_EPSILON, alpha: float = 1.0,
                 num_steps: int = METZEN_NUM_STEPS, tile_size=None, omega: Optional[float] = None,
                 tau: Optional[float] = METZEN_TAU):
        super().__init__(epsilon)
        self.alpha = check_positive(alpha, 'alpha')
        self.num_steps = check_num_steps(num_steps)
        self.tile_size = _check_tile_size(tile_size)
        if omega is not None:
            if isinstance(omega, bool) or not isinstance(omega, numbers.Real) or not 0.0 <= omega <= 1.0:
                raise ValueError(f'omega must be a number in [0, 1] or None, got {omega!r}')
            omega = float(omega)
        if tau is not None:
            if isinstance(tau, bool) or not isinstance(tau, numbers.Real) or not 0.0 <= tau < 1.0:
                raise ValueError(f'tau must be a probability in [0, 1) or None, got {tau!r}')
            tau = float(tau)
        self.omega = omega
        self.tau = tau
        self._proto: Optional[torch.Tensor] = None

    # -- description -------------------------------------------------------------------------
    def params(self) -> Dict[str, Any]:
        return {'alpha': self.alpha, 'num_steps': self.num_steps,
                'tile_size': None if self.tile_size is None else list(self.tile_size),
                'omega': self.omega, 'tau': self.tau}

    def gradient_passes(self) -> int:
        """0 per evaluated image: the cost (``fit_info['gradient_passes']``) is paid at fit time."""
        return 0

    # -- fitted state ------------------------------------------------------------------------
    @property
    def fitted(self) -> bool:
        return self._proto is not None

    @property
    def proto_perturbation(self) -> torch.Tensor:
        """The fitted ``(3, h, w)`` proto-perturbation (the full ξ when ``tile_size`` is None)."""
        self.check_fitted()
        return self._proto

    def perturbation(self, height: int, width: int) -> torch.Tensor:
        """The ``(3, height, width)`` perturbation added to an image of that size (before clipping)."""
        self.check_fitted()
        if self.tile_size is None and tuple(self._proto.shape[1:]) != (height, width):
            h, w = self._proto.shape[1:]
            raise ValueError(f'{self.name}: the perturbation was fitted on {h}x{w} images without '
                             f'tiling and cannot be applied to {height}x{width} images; use images of '
                             'the fitting size or fit with tile_size=(h, w) (a periodic perturbation '
                             'that tiles any image size)')
        return tile_perturbation(self._proto, height, width)

    def state_dict(self) -> Dict[str, torch.Tensor]:
        self.check_fitted()
        return {STATE_KEY: self._proto}

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        proto = state.get(STATE_KEY) if isinstance(state, dict) else None
        if not torch.is_tensor(proto) or proto.dim() != 3 or proto.shape[0] != 3:
            got = tuple(proto.shape) if torch.is_tensor(proto) else type(proto).__name__
            raise ValueError(f'{self.name}: state must hold {STATE_KEY!r}: a (3, h, w) tensor, got {got}')
        if self.tile_size is not None and tuple(proto.shape[1:]) != self.tile_size:
            raise ValueError(f'{self.name}: stored proto-perturbation is {tuple(proto.shape[1:])}, but '
                             f'tile_size is {self.tile_size}')
        proto = proto.detach().float()
        if not torch.isfinite(proto).all() or float(proto.abs().max()) > self.epsilon + 1e-4:
            raise ValueError(f'{self.name}: stored perturbation is not finite or exceeds ε={self.epsilon}')
        self._proto = proto.clamp(-self.epsilon, self.epsilon).clone()

    # -- fitting -----------------------------------------------------------------------------
    def fit(self, model, batches: FitData, progress: bool = False) -> 'UniversalPerturbation':
        """Fit ξ on every image of ``batches()`` (one full pass per iteration); returns ``self``.

        Args:
            model: Pixel-space segmenter, ``(N, 3, H, W)`` in [0, 255] → ``(N, C, H, W)`` logits.
            batches: Zero-argument callable returning a fresh iterator of
                :class:`~attacks.fitted.FitBatch` ``(images, labels, target)``, the same batches
                at every call. Read once and replayed from memory when the split fits in
                :data:`~attacks.fitted.FIT_REPLAY_BYTES`, otherwise called once per iteration
                (and once more for the final loss). All images must have the same size; either
                every batch has a ``target`` (targeted) or none has (untargeted).
            progress: Show a tqdm progress bar over the iterations.
        """
        if not callable(batches):
            raise ValueError('batches must be a zero-argument callable returning a fresh iterator of '
                             f'FitBatch(images, labels, target), got {type(batches).__name__}')
        batches = ReplayedFitData(batches)
        self._proto = None          # a failed fit leaves the attack unfitted
        self.fit_info = {}
        split = _Split()
        split.device = _model_device(model)   # batches are moved to the model's device (if it has one)
        proto: Optional[torch.Tensor] = None
        losses = []
        bar = tqdm(total=self.num_steps, desc=f'{self.name} ε={self.epsilon:g}', unit='step',
                   disable=not progress, dynamic_ncols=True)
        try:
            with torch.enable_grad():
                for _ in range(self.num_steps):
                    proto, grad, loss = self._pass(model, batches, split, proto, with_grad=True)
                    losses.append(loss)
                    # mean gradient over the m images (Metzen's ∇_D); −: descend J towards the target
                    direction = (grad / split.num_images).sign()
                    if split.targeted:
                        direction = -direction
                    proto = torch.clamp(proto + self.alpha * direction, -self.epsilon, self.epsilon)
                    bar.update(1)
                    bar.set_postfix(loss=f'{loss:.4g}')
            with torch.no_grad():
                _, _, final_loss = self._pass(model, batches, split, proto, with_grad=False)
        finally:
            bar.close()
        self._proto = proto.detach().clone()
        h, w = proto.shape[1:]
        m = split.num_images
        if split.targeted:
            loss_name = 'J_ss' if self.omega is None else 'J^omega_ss'
        else:
            loss_name = 'cross_entropy'
        self.fit_info = {
            'num_images': m, 'num_batches': split.num_batches, 'num_steps': self.num_steps,
            'image_size': list(split.image_size), 'tile_size': [int(h), int(w)],
            'targeted': bool(split.targeted), 'loss': loss_name,
            'objective': 'minimise' if split.targeted else 'maximise',
            'loss_per_step': losses, 'initial_loss': losses[0], 'final_loss': final_loss,
            'gradient_passes': self.num_steps * m, 'forward_passes': m, 'split_reads': batches.source_calls,
            'linf': float(proto.abs().max()),
        }
        return self

    def _pass(self, model, batches: FitData, split: _Split, proto: Optional[torch.Tensor],
              with_grad: bool):
        """One pass over the split at ξ = ``proto``: ``(proto, Σ_k folded ∇_x J_k, mean loss)``.

        ``proto`` is created (zeros) at the first batch of the first pass.
        """
        grad_sum = None
        loss_sum = 0.0
        count = 0
        num_batches = 0
        for batch in batches():
            images, labels, target = self._check_batch(batch, split)
            if proto is None:
                h, w = self.tile_size or split.image_size
                proto = torch.zeros((3, h, w), dtype=images.dtype, device=images.device)
            height, width = images.shape[-2:]
            delta = tile_perturbation(proto, height, width)
            x = torch.clamp(images + delta, PIXEL_MIN, PIXEL_MAX).detach()
            if with_grad:
                x.requires_grad_(True)
            per_image = self._loss(model(x), labels, target)
            if with_grad:
                grad, = torch.autograd.grad(per_image.sum(), x)
                folded = fold_tiles(grad.sum(dim=0), *proto.shape[1:])
                grad_sum = folded if grad_sum is None else grad_sum + folded
            loss_sum += float(per_image.detach().double().sum())
            count += len(images)
            num_batches += 1
        if count == 0:
            raise ValueError(f'{self.name}: batches() yielded no images; fit needs a non-empty '
                             'training split')
        if split.num_images is None:
            split.num_images, split.num_batches = count, num_batches
        elif count != split.num_images:
            raise ValueError(f'{self.name}: batches() yielded {count} images, but {split.num_images} on '
                             'the first pass; it must return a fresh iterator over the same split each call')
        return proto, grad_sum, loss_sum / count

    def _check_batch(self, batch, split: _Split):
        try:
            images, labels, target = batch
        except (TypeError, ValueError):
            raise ValueError(f'{self.name}: batches() must yield FitBatch(images, labels, target), got '
                             f'{type(batch).__name__}') from None
        images = self.check_images(images)
        if split.device is not None:
            images = images.to(split.device)
        if labels is None:
            raise ValueError(f'{self.name}: a FitBatch needs labels (N, H, W): the clean prediction or '
                             'the ground truth (255 = no loss)')
        labels = self.check_map(labels, images, 'labels')
        targeted = target is not None
        if targeted:
            target = self.check_map(target, images, 'target')
        if split.targeted is None:
            split.targeted = targeted
            if not targeted and self.omega is not None:
                raise ValueError(f'{self.name}: omega={self.omega} weights a targeted loss, but the fitting '
                                 'batches carry no target; pass FitBatch(..., target=...) or omega=None')
        elif targeted != split.targeted:
            raise ValueError(f'{self.name}: some fitting batches carry a target and some do not; a split '
                             'is fitted either targeted (every batch with a target) or untargeted (none)')
        size = (int(images.shape[-2]), int(images.shape[-1]))
        if split.image_size is None:
            split.image_size = size
        elif size != split.image_size:
            raise ValueError(f'{self.name}: fitting images must all have the same size; got '
                             f'{size[0]}x{size[1]} after {split.image_size[0]}x{split.image_size[1]}')
        return images, labels, target

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor,
              target: Optional[torch.Tensor]) -> torch.Tensor:
        """Per-image loss ``(N,)``: Metzen's ``J^ω_ss`` (τ rule, 1/|I|) or the mean pixel CE."""
        if target is None:
            height, width = logits.shape[-2:]
            ce = member_weighted(logits, lambda z: F.cross_entropy(z, labels, ignore_index=IGNORE_INDEX,
                                                                   reduction='none'))
            return ce.flatten(1).sum(dim=1) / float(height * width)
        target = self._mask_ignored(target, labels)
        weight = metzen_pixel_weights(logits, target, primary=target != labels, omega=self.omega,
                                      tau=self.tau)
        return weighted_pixel_cross_entropy(logits, WeightedTarget(target, weight))

    # -- applying ----------------------------------------------------------------------------
    def run(self, model, images, labels=None, target=None, mask=None, mask_mode='project'):
        self.check_fitted()   # before Attack.run spends a forward pass on the labels
        return super().run(model, images, labels=labels, target=target, mask=mask, mask_mode=mask_mode)

    def perturb(self, model, images, labels, target, mask):
        """``clip(images + tile(ξ), 0, 255)``, the same ξ for every image; zero outside ``mask``."""
        self.check_fitted()
        delta = self.perturbation(*images.shape[-2:]).to(device=images.device, dtype=images.dtype)
        delta = delta.unsqueeze(0).expand_as(images)
        if mask is not None:
            delta = delta * mask
        return torch.clamp(images + delta, PIXEL_MIN, PIXEL_MAX)
