"""FGSM: the fast gradient sign method (Goodfellow et al. 2015, https://arxiv.org/abs/1412.6572).

As used for segmentation by Arnab et al. 2018 (https://arxiv.org/abs/1711.09856), eq. 3:
``x_adv = clip_[0,255](x + ε · sign(∇_x L(f(x), y)))`` with ``L`` the per-pixel cross-entropy summed
over pixels and ``y`` the clean prediction (default) or the ground truth.

The gradient is taken at the clean image, so it is the same for every ε: :meth:`FGSM.run_grid`
computes it once for a whole ε grid (one gradient pass per image) and steps from it at every ε.
It is also Iterative FGSM's first step (eq. 5 from ``x_0 = x``): with a
:class:`~attacks.base.SharedGradients` passed to ``run`` / ``run_grid`` (``shared=...``) the two
attacks compute it once per batch. Over Arnab et al.'s grid, FGSM, FGSM II, Iterative FGSM and
Iterative FGSM II then cost 80 gradient passes per image together (1 + 1 + 40 + 40 − 2 shared),
every result bit-identical to the attack run alone.
"""
from __future__ import annotations

from typing import ClassVar, List, Optional, Tuple

import torch

from .base import (Attack, AttackInputs, AttackResult, Meter, SharedGradients, project,
                   register_attack, takes_from)


@register_attack
class FGSM(Attack):
    """Single-step untargeted L∞ attack.

    Args:
        epsilon: L∞ radius in 0–255 pixel units (e.g. 8).

    Example:
        >>> adv = FGSM(epsilon=8)(model, images)          # images: (N, 3, H, W) RGB in [0, 255]
        >>> grid = FGSM(8).run_grid(model, images, [0.25, 0.5, 1, 2, 4, 8, 16, 32])  # 1 gradient pass
    """

    name = 'fgsm'
    display_name = 'FGSM'

    def gradient_passes(self) -> int:
        return 1

    #: +1: ascend the loss (untargeted); −1: descend it towards a target (FGSM II)
    loss_direction: ClassVar[float] = 1.0

    def loss_sign(self, model, images: torch.Tensor, labels: torch.Tensor,
                  target: Optional[torch.Tensor]) -> torch.Tensor:
        """``sign(∇_x L(f(x), y))`` at the clean images, ``y`` the labels (one gradient pass)."""
        return self.loss_gradient(model, images, labels).sign()

    def clean_gradient_key(self, labels: torch.Tensor, target: Optional[torch.Tensor]
                           ) -> Optional[Tuple[str, torch.Tensor]]:
        """:meth:`loss_sign` as a :class:`~attacks.base.SharedGradients` key ``(kind, y)``: the
        summed pixel cross-entropy towards ``labels`` (Iterative FGSM's first step). None when a
        subclass redefines the loss."""
        if not takes_from(self, FGSM, 'loss_sign', 'direction'):
            return None
        return 'ce', labels

    def direction(self, model, images: torch.Tensor, labels: torch.Tensor,
                  target: Optional[torch.Tensor]) -> torch.Tensor:
        """The ε-independent step direction ``loss_direction · sign(∇_x L)`` (one gradient pass)."""
        return self.loss_direction * self.loss_sign(model, images, labels, target)

    def _direction(self, model, images, labels, target, shared: Optional[SharedGradients] = None
                   ) -> Tuple[torch.Tensor, bool]:
        """:meth:`direction`, its sign from ``shared`` when that holds it; and whether it did."""
        key = self.clean_gradient_key(labels, target) if shared is not None else None
        if key is None:
            return self.direction(model, images, labels, target), False
        kind, y = key
        sign, hit = shared.clean_sign(model, kind, images, y,
                                      lambda: self.loss_sign(model, images, labels, target))
        return self.loss_direction * sign, hit

    def step(self, images: torch.Tensor, direction: torch.Tensor,
             mask: Optional[torch.Tensor]) -> torch.Tensor:
        """``clip_[0,255](x + ε · direction)``, zero outside ``mask``."""
        return project(images + self.epsilon * direction, images, self.epsilon, mask)

    def perturb(self, model, images, labels, target, mask):
        return self.step(images, self.direction(model, images, labels, target), mask)

    def _attack(self, model, inputs: AttackInputs, mask_mode: str) -> AttackResult:
        """:meth:`perturb`, the gradient's sign from ``inputs.shared`` when that holds it (counted)."""
        if not takes_from(self, FGSM, 'perturb'):
            return super()._attack(model, inputs, mask_mode)
        mask = inputs.mask if mask_mode == 'project' else None
        with torch.enable_grad():
            direction, hit = self._direction(model, inputs.images, inputs.labels, inputs.target,
                                             inputs.shared)
        return self._result(self.step(inputs.images, direction, mask), shared_gradient_passes=int(hit))

    def perturb_grid(self, model, inputs: AttackInputs, attacks: List[Attack], mask_mode: str,
                     meter: Meter) -> List[AttackResult]:
        """One gradient for the whole grid (taken inside ``meter`` of the largest ε, or found in
        ``inputs.shared``: then every result counts it as shared), one step per ε."""
        mask = inputs.mask if mask_mode == 'project' else None
        lead = max(range(len(attacks)), key=lambda i: attacks[i].epsilon)
        with meter(lead), torch.enable_grad():
            direction, hit = self._direction(model, inputs.images, inputs.labels, inputs.target,
                                             inputs.shared)
        results = []
        for i, attack in enumerate(attacks):
            with meter(i):
                adv = attack.step(inputs.images, direction, mask)
            results.append(attack._result(adv, shared_gradient_passes=0 if i == lead and not hit else 1))
        return results
