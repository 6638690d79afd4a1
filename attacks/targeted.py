"""Targeted iterative dense attack (Metzen et al. 2017, https://arxiv.org/abs/1704.05712, Sec. 3.2).

Kurakin et al.'s iterative least-likely method (https://arxiv.org/abs/1607.02533) towards an
arbitrary target segmentation ``y_target`` (Metzen et al., Sec. 2.2 and 3.2; Fischer et al. 2017,
https://arxiv.org/abs/1703.01101, Sec. 2)::

    ξ_0 = 0,   ξ_{t+1} = Clip_ε{ ξ_t − α · sign(∇_x J(f(x + ξ_t), y_target)) }

where ``x + ξ`` is also clipped to [0, 255] and ``mask`` zeroes ξ outside the allowed pixels,
with Metzen et al.'s dense loss (Sec. 3.2), ``I`` the pixels, ``I_o`` the pixels whose class is to
be changed (in the hiding experiment: the pixels predicted as the hidden class ``o`` on the clean
image) and ``I_bg = I \\ I_o``::

    J_ss(f(x), y)   = 1/|I| Σ_{(i,j) ∈ I} J_cls(f(x)_ij, y_ij)                       (unweighted)
    J^ω_ss(f(x), y) = 1/|I| { ω Σ_{(i,j) ∈ I_o} J_cls(f(x)_ij, y_ij)
                              + (1 − ω) Σ_{(i,j) ∈ I_bg} J_cls(f(x)_ij, y_ij) }

ω = 1 only hides, ω = 0 only preserves the background, ``J^0.5_ss = 0.5 J_ss``. To avoid the
competition between target pixels, "we set the loss of target pixels which are predicted as the
desired target with a confidence above τ to 0" (Sec. 3.2), τ = 0.75.

Defaults follow the paper: α = 1 ("We use α = 1 throughout all experiments", Sec. 2.2), n = 60
iterations (Sec. 4), τ = 0.75 (Sec. 3.2), and the unweighted ``J_ss`` (their static-target
experiment, Sec. 4); their dynamic-target (hiding) experiments use ω = 0.9999 (Sec. 4, Table 3).
Fischer et al. use the unweighted loss without the τ rule and ``n = min(ε + 4, ⌈1.25 ε⌉)``:
``TargetedIterativeFGSM(eps, num_steps=None, tau=None)``.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F

from .base import IGNORE_INDEX, member_weighted, pixel_cross_entropy, register_attack
from .ifgsm import IterativeFGSM

#: Metzen et al.'s confidence threshold τ (Sec. 3.2)
METZEN_TAU = 0.75
#: Metzen et al.'s number of iterations n (Sec. 4)
METZEN_NUM_STEPS = 60
#: Metzen et al.'s ω for hiding a class with a dynamic target (Sec. 4)
METZEN_HIDING_OMEGA = 0.9999


class WeightedTarget(NamedTuple):
    """Per-pixel target and loss weight of one step (what ``step_target`` hands to the gradient)."""

    labels: torch.Tensor    # (N, H, W) int64 target classes, 255 = no loss
    weight: torch.Tensor    # (N, H, W) float weights, normalisation 1/|I| included


def metzen_pixel_weights(logits: torch.Tensor, target: torch.Tensor,
                         primary: Optional[torch.Tensor] = None, omega: Optional[float] = None,
                         tau: Optional[float] = METZEN_TAU,
                         ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Per-pixel weights of Metzen et al.'s loss, τ rule and 1/|I| normalisation included.

    Args:
        logits: ``(N, C, H, W)`` logits (only used, detached, for the τ rule).
        target: ``(N, H, W)`` target classes; ``ignore_index`` = weight 0.
        primary: ``(N, H, W)`` bool, the set ``I_o`` (required when ``omega`` is given).
        omega: ω of ``J^ω_ss``; None for the unweighted ``J_ss`` (weight 1 everywhere).
        tau: Confidence threshold; pixels predicted as their target with softmax probability
            above ``tau`` get weight 0. None disables the rule.
        ignore_index: Target label of pixels without loss.

    Returns:
        ``(N, H, W)`` float weights: ``ω`` on ``I_o``, ``1 − ω`` on ``I_bg`` (or 1), times
        ``1/|I|`` with ``|I| = H·W``, and 0 on ignored or confidently reached pixels.
    """
    n, _, h, w = logits.shape
    target = target.long()
    valid = target != ignore_index
    if omega is None:
        weight = torch.ones(target.shape, dtype=logits.dtype, device=logits.device)
    else:
        if primary is None:
            raise ValueError('omega needs the primary pixel set I_o (primary=...)')
        primary = primary.to(device=logits.device, dtype=torch.bool)
        weight = torch.where(primary, float(omega), 1.0 - float(omega)).to(logits.dtype)
    weight = weight * valid
    if tau is not None:
        with torch.no_grad():
            logits = logits.detach()
            safe = torch.where(valid, target, torch.zeros_like(target))
            p_target = logits.softmax(dim=1).gather(1, safe[:, None])[:, 0]
            reached = (logits.argmax(dim=1) == target) & (p_target > tau)
        weight = weight * ~reached
    return weight / float(h * w)


def weighted_pixel_cross_entropy(logits: torch.Tensor, target: WeightedTarget,
                                 ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """``Σ_ij weight_ij · J_cls(logits_ij, labels_ij)`` per image, shape ``(N,)``."""
    ce = member_weighted(logits, lambda z: F.cross_entropy(z, target.labels.long(),
                                                           ignore_index=ignore_index, reduction='none'))
    return (target.weight * ce).flatten(1).sum(dim=1)


def metzen_loss(logits: torch.Tensor, target: torch.Tensor, primary: Optional[torch.Tensor] = None,
                omega: Optional[float] = None, tau: Optional[float] = METZEN_TAU,
                ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Metzen et al.'s targeted dense loss ``J_ss`` / ``J^ω_ss`` with the τ rule, per image.

    Args: see :func:`metzen_pixel_weights`.

    Returns:
        ``(N,)`` losses; each image's loss depends only on its own pixels. Differentiable w.r.t.
        ``logits`` (the τ rule's zero weights are constants).
    """
    weight = metzen_pixel_weights(logits, target, primary, omega, tau, ignore_index)
    return weighted_pixel_cross_entropy(logits, WeightedTarget(target, weight), ignore_index)


@register_attack
class TargetedIterativeFGSM(IterativeFGSM):
    """Targeted iterative L∞ dense attack towards a given target map (Metzen et al. 2017).

    Args:
        epsilon: L∞ radius in 0–255 pixel units (Metzen et al. use ε = 10).
        alpha: Step size in pixel units. Default 1.
        num_steps: Number of steps. Default 60 (Metzen et al.); None gives Kurakin's
            ``min(ε + 4, ⌈1.25 ε⌉)`` (Fischer et al.).
        omega: ω of ``J^ω_ss`` in ``[0, 1]``; None (default) for the unweighted ``J_ss``.
            Metzen et al. hide a class with ω = 0.9999 (``METZEN_HIDING_OMEGA``).
        tau: Confidence above which a pixel already predicted as its target has zero loss.
            Default 0.75; None disables the rule.

    ``target`` is required in ``__call__`` (``(N, H, W)``, 255 = no loss), e.g. from
    :func:`attacks.targets.hide_class_target` or :func:`attacks.targets.static_target`.
    ``I_o`` is the set of pixels whose target differs from ``labels`` (the clean prediction by
    default); for a hide-class target that is exactly Metzen's ``I_o = {f(x)_ij = o}``.
    Pixels whose ``labels`` are 255 get no loss. ``mask`` restricts the perturbation (Fischer et
    al.'s perturbation on the hidden-class pixels only: :func:`attacks.targets.hidden_class_mask`).

    Since the target is an input of the attack, :meth:`reference_target` returns None: the runner
    must build the target per image, pass it to the attack and score ``vs_target`` against it.

    Example:
        >>> clean = model(images).argmax(1)
        >>> target = hide_class_target(clean, hidden_class=11)
        >>> adv = TargetedIterativeFGSM(10, omega=0.9999)(model, images, target=target)
    """

    name = 'targeted_ifgsm'
    aliases = ('targeted_iterative_fgsm', 'metzen2017')
    targeted = True
    needs_target_map = True
    display_name = 'Targeted iterative FGSM'

    def __init__(self, epsilon: float, alpha: float = 1.0,
                 num_steps: Optional[int] = METZEN_NUM_STEPS, omega: Optional[float] = None,
                 tau: Optional[float] = METZEN_TAU):
        super().__init__(epsilon, alpha=alpha, num_steps=num_steps)
        if omega is not None:
            if isinstance(omega, bool) or not isinstance(omega, (int, float)) or not 0.0 <= omega <= 1.0:
                raise ValueError(f'omega must be a number in [0, 1] or None, got {omega!r}')
            omega = float(omega)
        if tau is not None:
            if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not 0.0 <= tau < 1.0:
                raise ValueError(f'tau must be a probability in [0, 1) or None, got {tau!r}')
            tau = float(tau)
        self.omega = omega
        self.tau = tau

    def params(self):
        return {**super().params(), 'omega': self.omega, 'tau': self.tau}

    def __call__(self, model, images, labels=None, target=None, mask=None):
        if target is None:
            raise ValueError(f'{self.name} needs a target map (N, H, W): pass target=..., e.g. '
                             'attacks.targets.hide_class_target(clean_pred, hidden_class) or '
                             'attacks.targets.static_target(target_map, n)')
        return super().__call__(model, images, labels=labels, target=target, mask=mask)

    def reference_target(self, clean, labels=None):
        """None: the target is given explicitly, so the runner scores against the map it passed."""
        return None

    # IterativeFGSM.iterate calls ``self.step_target`` then ``self.input_gradient`` once per step;
    # the two overrides below swap its summed cross-entropy for Metzen et al.'s weighted loss.
    def step_target(self, logits, labels, target):
        if target is None:
            raise ValueError(f'{self.name} needs a target map (N, H, W)')
        target = self._mask_ignored(target, labels)
        weight = metzen_pixel_weights(logits, target, primary=target != labels, omega=self.omega,
                                      tau=self.tau)
        return WeightedTarget(target, weight), -1.0

    @staticmethod
    def input_gradient(logits, x, labels):
        """Gradient w.r.t. ``x`` of the weighted loss (``labels`` a :class:`WeightedTarget`),
        or of the summed pixel cross-entropy for a plain label map."""
        if isinstance(labels, WeightedTarget):
            loss = weighted_pixel_cross_entropy(logits, labels).sum()
        else:
            loss = pixel_cross_entropy(logits, labels)
        grad, = torch.autograd.grad(loss, x)
        return grad
