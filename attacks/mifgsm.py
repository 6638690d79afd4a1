"""MI-FGSM: momentum iterative FGSM, L∞ (Dong et al. 2018, https://arxiv.org/abs/1710.06081).

Dong et al., Algorithm 1 (eqs. 6–7), as written for segmentation by Xiang et al. (eqs. 4–5), with
``L`` the per-pixel cross-entropy summed over the pixels of each image::

    x_0 = x,   g_0 = 0
    g_{t+1} = μ · g_t + ∇_x L(f(x_t), y) / ‖∇_x L(f(x_t), y)‖_1     (L1 norm per image)
    x_{t+1} = Π_{x, ε}( x_t + α · sign(g_{t+1}) )                     t = 0 … T−1

``Π_{x, ε}`` clips to the ε-ball, the ``mask`` and [0, 255]. With a ``target`` passed to
``__call__`` the momentum accumulates the gradient of the loss towards the target and the step
descends it (Dong et al., Sec. 3.3): ``x_{t+1} = Π_{x, ε}( x_t − α · sign(g_{t+1}) )``.

Defaults: μ = 1.0 and T = 20 (Xiang et al., "Different Attack Method": "The number of iterations
is 20 for MI-FGSM, and the decay factor μ is 1.0"; Dong et al. also use μ = 1.0), α = ε / T
(Dong et al., Algorithm 1, "α = ε / T"; Xiang et al. do not state MI-FGSM's α). No random start.
"""
from __future__ import annotations

from typing import Optional

import torch

from .base import register_attack
from .pgd import PGD, check_positive


@register_attack
class MIFGSM(PGD):
    """Momentum iterative L∞ attack (no random start).

    Args:
        epsilon: L∞ radius in 0–255 pixel units (Xiang et al.: 8).
        num_steps: Iterations T. Default 20 (Xiang et al.).
        alpha: Step size in pixel units. Default None: ε / T (Dong et al.).
        decay: Momentum decay factor μ. Default 1.0 (Dong et al.; Xiang et al.).

    Shapes:
        images ``(N, 3, H, W)`` float RGB in [0, 255]; ``labels`` / ``target`` ``(N, H, W)`` int64
        (255 = no loss); ``mask`` ``(N, H, W)`` or ``(N, 1, H, W)``; returns ``(N, 3, H, W)``.

    Example:
        >>> adv = MIFGSM(epsilon=8)(model, images)          # 20 steps of 0.4, μ = 1
    """

    name = 'mifgsm'
    aliases = ('mi-fgsm', 'mi_fgsm')
    display_name = 'MI-FGSM'

    def __init__(self, epsilon: float, num_steps: int = 20, alpha: Optional[float] = None,
                 decay: float = 1.0):
        super().__init__(epsilon, num_steps=num_steps, alpha=alpha, random_start=False)
        self.decay = check_positive(decay, 'decay')

    def params(self):
        return {'alpha': self.alpha, 'num_steps': self.num_steps, 'decay': self.decay}

    def step_direction(self, grad: torch.Tensor, memory: Optional[torch.Tensor]):
        """``g_{t+1} = μ g_t + ∇ / ‖∇‖_1`` with the L1 norm over each image's ``(3, H, W)``.

        An image whose gradient is zero everywhere (e.g. all its pixels ignored) adds nothing.
        """
        l1 = grad.abs().sum(dim=tuple(range(1, grad.dim())), keepdim=True)
        normalised = grad / l1.clamp_min(torch.finfo(grad.dtype).tiny)
        momentum = normalised if memory is None else self.decay * memory + normalised
        return momentum.sign(), momentum
