"""Iterative FGSM II: iterative least-likely-class attack (Kurakin et al. 2017,
https://arxiv.org/abs/1607.02533).

Arnab et al. 2018 (https://arxiv.org/abs/1711.09856), eq. 6: the target ``y_ll`` is the least likely
class of the *current* iterate, recomputed at every step::

    x_{t+1} = clip_{x, ε}( x_t − α · sign(∇ L(f(x_t), y_ll(x_t))) )      (and clip to [0, 255])

with α = 1 and ``n = min(ε + 4, ⌈1.25 ε⌉)`` steps by default.

Its grid shares trajectories and branch-point gradients as Iterative FGSM's does (40 gradient
passes per image over Arnab et al.'s grid: the step at ``x_s`` of the largest ε, least likely
class of ``f(x_s)`` included, is the step every smaller ε branching there takes), and its first
step is FGSM II's gradient (shared with it through a :class:`~attacks.base.SharedGradients`).
"""
from __future__ import annotations

from .base import least_likely, register_attack, takes_from
from .ifgsm import IterativeFGSM


@register_attack
class IterativeFGSMLeastLikely(IterativeFGSM):
    """Targeted iterative L∞ attack towards the least-likely class, recomputed every step.

    Args:
        epsilon: L∞ radius in 0–255 pixel units.
        alpha: Step size in pixel units. Default 1.
        num_steps: Number of steps. Default ``min(ε + 4, ⌈1.25 ε⌉)``.

    A ``target`` passed to ``__call__`` replaces the least-likely maps with that fixed target.
    Targeted success is measured against the least-likely map of the clean image.
    """

    name = 'ifgsm_ll'
    aliases = ('i-fgsm-ll', 'iterative_fgsm_ii', 'ifgsm2', 'ifgsm_ii')
    targeted = True
    display_name = 'Iterative FGSM II'

    def reference_target(self, clean, labels=None):
        return self._mask_ignored(clean.least_likely, labels)

    def clean_gradient_key(self, labels, target):
        """The first step's loss at the clean image: towards the least likely class of the clean
        logits, ``('least_likely', labels, −1)`` (FGSM II's), or ``('ce', target, −1)``."""
        if not takes_from(self, IterativeFGSMLeastLikely, 'step_target', 'input_gradient'):
            return None
        return ('least_likely', labels, -1.0) if target is None else ('ce', target, -1.0)

    def step_target(self, logits, labels, target):
        if target is None:
            target = least_likely(logits, labels)
        return target, -1.0
