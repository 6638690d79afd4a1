"""FGSM II: single-step least-likely-class attack (Kurakin et al. 2017, https://arxiv.org/abs/1611.01236).

Arnab et al. 2018 (https://arxiv.org/abs/1711.09856), eq. 4:
``x_adv = clip_[0,255](x − ε · sign(∇_x L(f(x), y_ll)))`` where ``y_ll`` is, at every pixel, the class
the network finds least likely on the clean image.
"""
from __future__ import annotations

from .base import Attack, least_likely, project, register_attack


@register_attack
class FGSMLeastLikely(Attack):
    """Single-step targeted L∞ attack towards the per-pixel least-likely class.

    Args:
        epsilon: L∞ radius in 0–255 pixel units.

    A ``target`` passed to ``__call__`` replaces the least-likely map (a fixed-target FGSM).
    Pixels whose ``labels`` are 255 get no loss.
    """

    name = 'fgsm_ll'
    aliases = ('fgsm2', 'fgsm_ii')
    targeted = True
    display_name = 'FGSM II'

    def gradient_passes(self) -> int:
        return 1

    def reference_target(self, clean, labels=None):
        return self._mask_ignored(clean.least_likely, labels)

    def perturb(self, model, images, labels, target, mask):
        x = images.detach().requires_grad_(True)
        logits = model(x)
        if target is None:
            target = least_likely(logits.detach(), labels)
        grad = self.input_gradient(logits, x, target)
        return project(images - self.epsilon * grad.sign(), images, self.epsilon, mask)
