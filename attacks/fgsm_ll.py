"""FGSM II: single-step least-likely-class attack (Kurakin et al. 2017, https://arxiv.org/abs/1611.01236).

Arnab et al. 2018 (https://arxiv.org/abs/1711.09856), eq. 4:
``x_adv = clip_[0,255](x − ε · sign(∇_x L(f(x), y_ll)))`` where ``y_ll`` is, at every pixel, the class
the network finds least likely on the clean image.

Like FGSM, the gradient does not depend on ε: ``run_grid`` computes it once for a whole grid.
"""
from __future__ import annotations

from .base import least_likely, register_attack
from .fgsm import FGSM


@register_attack
class FGSMLeastLikely(FGSM):
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

    def reference_target(self, clean, labels=None):
        return self._mask_ignored(clean.least_likely, labels)

    def direction(self, model, images, labels, target):
        """``−sign(∇_x L(f(x), y_ll))``: descend towards the least-likely class (or ``target``).

        ``x + ε · (−s)`` equals ``x − ε · s`` bit for bit (IEEE negation is exact).
        """
        x = images.detach().requires_grad_(True)
        logits = model(x)
        if target is None:
            target = least_likely(logits.detach(), labels)
        return -self.input_gradient(logits, x, target).sign()
