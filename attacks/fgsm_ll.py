"""FGSM II: single-step least-likely-class attack (Kurakin et al. 2017, https://arxiv.org/abs/1611.01236).

Arnab et al. 2018 (https://arxiv.org/abs/1711.09856), eq. 4:
``x_adv = clip_[0,255](x − ε · sign(∇_x L(f(x), y_ll)))`` where ``y_ll`` is, at every pixel, the class
the network finds least likely on the clean image.

Like FGSM, the gradient does not depend on ε: ``run_grid`` computes it once for a whole grid. It
is also Iterative FGSM II's first step (eq. 6 at ``x_0 = x``: the same least likely class of the
same clean logits), so with a :class:`~attacks.base.SharedGradients` passed to ``run`` /
``run_grid`` (``shared=...``) the two attacks compute it once per batch.
"""
from __future__ import annotations

from .base import least_likely, register_attack, takes_from
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

    loss_direction = -1.0

    def loss_sign(self, model, images, labels, target):
        """``sign(∇_x L(f(x), y_ll))`` (or towards ``target``) at the clean images (one pass).

        The step is ``x + ε · (−1 · s)``, which equals ``x − ε · s`` bit for bit (IEEE negation
        is exact).
        """
        x = images.detach().requires_grad_(True)
        logits = model(x)
        if target is None:
            target = least_likely(logits.detach(), labels)
        return self.input_gradient(logits, x, target).sign()

    def clean_gradient_key(self, labels, target):
        """``('least_likely', labels)``: towards the least likely class of the clean logits
        (Iterative FGSM II's first step); ``('ce', target)`` for a fixed target."""
        if not takes_from(self, FGSMLeastLikely, 'loss_sign', 'direction'):
            return None
        return ('least_likely', labels) if target is None else ('ce', target)
