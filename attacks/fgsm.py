"""FGSM: the fast gradient sign method (Goodfellow et al. 2015, https://arxiv.org/abs/1412.6572).

As used for segmentation by Arnab et al. 2018 (https://arxiv.org/abs/1711.09856), eq. 3:
``x_adv = clip_[0,255](x + ε · sign(∇_x L(f(x), y)))`` with ``L`` the per-pixel cross-entropy summed
over pixels and ``y`` the clean prediction (default) or the ground truth.
"""
from __future__ import annotations

from .base import Attack, project, register_attack


@register_attack
class FGSM(Attack):
    """Single-step untargeted L∞ attack.

    Args:
        epsilon: L∞ radius in 0–255 pixel units (e.g. 8).

    Example:
        >>> adv = FGSM(epsilon=8)(model, images)          # images: (N, 3, H, W) RGB in [0, 255]
    """

    name = 'fgsm'
    display_name = 'FGSM'

    def gradient_passes(self) -> int:
        return 1

    def perturb(self, model, images, labels, target, mask):
        grad = self.loss_gradient(model, images, labels)
        return project(images + self.epsilon * grad.sign(), images, self.epsilon, mask)
