"""FGSM: the fast gradient sign method (Goodfellow et al. 2015, https://arxiv.org/abs/1412.6572).

As used for segmentation by Arnab et al. 2018 (https://arxiv.org/abs/1711.09856), eq. 3:
``x_adv = clip_[0,255](x + ε · sign(∇_x L(f(x), y)))`` with ``L`` the per-pixel cross-entropy summed
over pixels and ``y`` the clean prediction (default) or the ground truth.

The gradient is taken at the clean image, so it is the same for every ε: :meth:`FGSM.run_grid`
computes it once for a whole ε grid (one gradient pass per image) and steps from it at every ε.
"""
from __future__ import annotations

from typing import List, Optional

import torch

from .base import Attack, AttackInputs, AttackResult, Meter, project, register_attack


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

    def direction(self, model, images: torch.Tensor, labels: torch.Tensor,
                  target: Optional[torch.Tensor]) -> torch.Tensor:
        """The ε-independent step direction ``sign(∇_x L(f(x), y))`` (one gradient pass)."""
        return self.loss_gradient(model, images, labels).sign()

    def step(self, images: torch.Tensor, direction: torch.Tensor,
             mask: Optional[torch.Tensor]) -> torch.Tensor:
        """``clip_[0,255](x + ε · direction)``, zero outside ``mask``."""
        return project(images + self.epsilon * direction, images, self.epsilon, mask)

    def perturb(self, model, images, labels, target, mask):
        return self.step(images, self.direction(model, images, labels, target), mask)

    def perturb_grid(self, model, inputs: AttackInputs, attacks: List[Attack], mask_mode: str,
                     meter: Meter) -> List[AttackResult]:
        """One gradient for the whole grid (taken inside ``meter`` of the largest ε), one step per ε."""
        mask = inputs.mask if mask_mode == 'project' else None
        lead = max(range(len(attacks)), key=lambda i: attacks[i].epsilon)
        with meter(lead), torch.enable_grad():
            direction = self.direction(model, inputs.images, inputs.labels, inputs.target)
        results = []
        for i, attack in enumerate(attacks):
            with meter(i):
                adv = attack.step(inputs.images, direction, mask)
            results.append(attack._result(adv, shared_gradient_passes=0 if i == lead else 1))
        return results
