"""SegPGD (Gu et al. 2022, https://arxiv.org/abs/2207.12391), L∞.

PGD whose loss at iteration t = 1 … T splits the pixels into those the current iterate still
classifies as the label (``P^T``) and those already wrong (``P^F``) and shifts the weight from the
first to the second as the attack proceeds (Gu et al., Sec. 3, Algorithm 1)::

    L_t = (1 − λ_t) Σ_{j ∈ P^T} CE(f(x_{t−1})_j, y_j) + λ_t Σ_{k ∈ P^F} CE(f(x_{t−1})_k, y_k)
    λ_t = (t − 1) / (2T)                       (0 at the first step, → 1/2 at the last)
    x_t = Π_{x, ε}( x_{t−1} + α · sign(∇_x L_t) ),     x_0 = x + U(−ε, ε)

The paper's 1/(H·W) normalisation is dropped: the sign step ignores a positive per-image scale.
The split uses the detached prediction, so the weights are constants of the gradient. Pixels
labelled 255 have no loss. In the targeted mode (a ``target`` passed to ``__call__``; not in the
paper) the roles swap, as in the CosPGD authors' implementation: pixels already predicted as their
target get λ_t, the others 1 − λ_t, and the loss towards the target is descended.

Defaults: T = 20 steps (Gu et al. report several iteration counts; 20 matches PGD-20 here) and
α = 2.55 = 0.01 · 255: the step size of the adversarial-training protocol SegPGD compares with
(DDC-AT, Xu et al. 2021, https://arxiv.org/abs/2003.06555: ε = 0.03 · 255, α = 0.01 · 255) and
the one the CosPGD authors run SegPGD with (ε = 8, α = 0.01 · 255). The SegPGD paper's own step
size could not be checked when this was written; were it 2/255, pass ``alpha=2``.
Random start as in PGD (seeded, per image).
"""
from __future__ import annotations

from typing import Optional

import torch

from .base import IGNORE_INDEX, register_attack
from .pgd import PGD

#: α = 0.01 in [0, 1] units (DDC-AT protocol; CosPGD authors' SegPGD runs), in 0–255 units
SEGPGD_ALPHA = 2.55


def segpgd_lambda(step: int, num_steps: int) -> float:
    """λ_t = (t − 1) / (2T) for iteration t = 1 … T (Gu et al., Algorithm 1)."""
    return (step - 1) / (2 * num_steps)


@register_attack
class SegPGD(PGD):
    """PGD with SegPGD's schedule of correct / wrong pixel weights.

    Args:
        epsilon: L∞ radius in 0–255 pixel units (Gu et al.: 8/255 in [0, 1] units, i.e. 8).
        num_steps: Iterations T. Default 20.
        alpha: Step size in pixel units. Default 2.55 (0.01 in [0, 1] units; see the module
            doc); None gives ε / T.
        random_start: Start from ``x + U(−ε, ε)``. Default True.
        seed: Seed of the random start. Default 0.

    Shapes:
        images ``(N, 3, H, W)`` float RGB in [0, 255]; ``labels`` / ``target`` ``(N, H, W)`` int64
        (255 = no loss); ``mask`` ``(N, H, W)`` or ``(N, 1, H, W)``; returns ``(N, 3, H, W)``.

    Example:
        >>> adv = SegPGD(epsilon=8)(model, images)          # 20 steps of 2.55
    """

    name = 'segpgd'
    display_name = 'SegPGD'

    def __init__(self, epsilon: float, num_steps: int = 20, alpha: Optional[float] = SEGPGD_ALPHA,
                 random_start: bool = True, seed: int = 0):
        super().__init__(epsilon, num_steps=num_steps, alpha=alpha, random_start=random_start,
                         seed=seed)

    def pixel_weights(self, logits, labels, step, targeted):
        """``1 − λ_t`` on pixels not yet fooled, ``λ_t`` on the others, 0 on ignored pixels.

        Untargeted: not yet fooled = predicted as the label. Targeted: not yet fooled = not
        predicted as the target.
        """
        lam = segpgd_lambda(step, self.num_steps)
        hit = logits.argmax(dim=1) == labels
        not_fooled = hit if not targeted else ~hit
        weights = torch.where(not_fooled, 1.0 - lam, lam).to(logits.dtype)
        return torch.where(labels == IGNORE_INDEX, torch.zeros_like(weights), weights)
