"""CosPGD (Agnihotri et al. 2024, https://arxiv.org/abs/2302.02213), L∞.

PGD whose per-pixel loss is scaled by the cosine similarity between the softmax of the prediction
and the one-hot label (Agnihotri et al., Algorithm 1; official code
https://github.com/shashankskagnihotri/cospgd, ``cospgd_scale``), the scale detached::

    cos_j = cos( softmax(f(x_t)_j), onehot(y_j) ) = softmax(f(x_t)_j)_{y_j} / ‖softmax(f(x_t)_j)‖_2
    L_t   = Σ_j sg(cos_j) · CE(f(x_t)_j, y_j)
    x_{t+1} = Π_{x, ε}( x_t + α · sign(∇_x L_t) ),     x_0 = x + U(−ε, ε)

so pixels still confidently correct weigh most and pixels already fooled fade out smoothly. The
paper's 1/(H·W) normalisation is dropped (the sign step ignores it). Pixels labelled 255 have no
loss. Targeted (a ``target`` passed to ``__call__``; in the paper): the scale is
``1 − cos(softmax(f(x_t)_j), onehot(target_j))`` and the loss towards the target is descended.

Defaults: α = 2.55, i.e. α = 0.01 in [0, 1] units (the CosPGD code's default and the authors'
segmentation runs with ε ≈ 8/255), and T = 20 steps (the paper sweeps the iteration count; 20
matches PGD-20 here). Random start as in PGD (seeded, per image).
"""
from __future__ import annotations

from typing import Optional

import torch

from .base import IGNORE_INDEX, register_attack
from .pgd import PGD

#: α = 0.01 in [0, 1] units (CosPGD code default), in 0–255 units
COSPGD_ALPHA = 2.55


def softmax_onehot_cosine(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``cos(softmax(logits), onehot(labels))`` per pixel, ``(N, H, W)``; 0 where labels are 255.

    The one-hot vector has unit norm, so the cosine is ``p_y / ‖p‖_2`` with ``p`` the softmax.
    """
    prob = logits.softmax(dim=1)
    valid = labels != IGNORE_INDEX
    p_y = prob.gather(1, torch.where(valid, labels, torch.zeros_like(labels))[:, None])[:, 0]
    cos = p_y / prob.norm(dim=1)
    return torch.where(valid, cos, torch.zeros_like(cos))


@register_attack
class CosPGD(PGD):
    """PGD with the per-pixel loss scaled by CosPGD's softmax / one-hot cosine similarity.

    Args:
        epsilon: L∞ radius in 0–255 pixel units (Agnihotri et al.: ≈ 8/255 in [0, 1], i.e. 8).
        num_steps: Iterations T. Default 20.
        alpha: Step size in pixel units. Default 2.55 (0.01 in [0, 1] units); None gives ε / T.
        random_start: Start from ``x + U(−ε, ε)``. Default True.
        seed: Seed of the random start. Default 0.

    Shapes:
        images ``(N, 3, H, W)`` float RGB in [0, 255]; ``labels`` / ``target`` ``(N, H, W)`` int64
        (255 = no loss); ``mask`` ``(N, H, W)`` or ``(N, 1, H, W)``; returns ``(N, 3, H, W)``.

    Example:
        >>> adv = CosPGD(epsilon=8)(model, images)          # 20 steps of 2.55
    """

    name = 'cospgd'
    display_name = 'CosPGD'

    def __init__(self, epsilon: float, num_steps: int = 20, alpha: Optional[float] = COSPGD_ALPHA,
                 random_start: bool = True, seed: int = 0):
        super().__init__(epsilon, num_steps=num_steps, alpha=alpha, random_start=random_start,
                         seed=seed)

    def pixel_weights(self, logits, labels, step, targeted):
        """``cos`` (untargeted) or ``1 − cos`` (targeted); 0 on ignored pixels."""
        cos = softmax_onehot_cosine(logits, labels)
        if not targeted:
            return cos
        return torch.where(labels == IGNORE_INDEX, torch.zeros_like(cos), 1.0 - cos)
