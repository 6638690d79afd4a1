"""Iterative FGSM (Kurakin et al. 2017, https://arxiv.org/abs/1607.02533; Madry et al. 2018).

Arnab et al. 2018 (https://arxiv.org/abs/1711.09856), eq. 5, with their settings: step α = 1 (each
pixel moves by one grey level per step) and ``n = min(ε + 4, ⌈1.25 ε⌉)`` steps::

    x_0 = x
    x_{t+1} = clip_{x, ε}( x_t + α · sign(∇ L(f(x_t), y)) )      (and clip to [0, 255])
"""
from __future__ import annotations

import math
from typing import Iterator, Optional, Tuple

import torch

from .base import Attack, arnab_num_steps, check_epsilon, project, register_attack


@register_attack
class IterativeFGSM(Attack):
    """Untargeted iterative L∞ attack (projected sign-gradient ascent, no random start).

    Args:
        epsilon: L∞ radius in 0–255 pixel units.
        alpha: Step size in pixel units. Default 1 (Arnab et al.).
        num_steps: Number of steps. Default ``min(ε + 4, ⌈1.25 ε⌉)``.

    Example:
        >>> adv = IterativeFGSM(epsilon=8)(model, images)   # 10 steps of size 1
    """

    name = 'ifgsm'
    aliases = ('i-fgsm', 'iterative_fgsm', 'bim')
    display_name = 'Iterative FGSM'

    def __init__(self, epsilon: float, alpha: float = 1.0, num_steps: Optional[int] = None):
        super().__init__(epsilon)
        self.alpha = check_epsilon(alpha)
        if num_steps is None:
            num_steps = arnab_num_steps(self.epsilon)
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(f'num_steps must be a positive integer, got {num_steps!r}')
        self.num_steps = num_steps

    def params(self):
        return {'alpha': self.alpha, 'num_steps': self.num_steps}

    def gradient_passes(self) -> int:
        return self.num_steps

    def unclipped_steps(self, exact: bool = False) -> int:
        """Steps from the start that the ε-ball projection cannot act on (at most ``num_steps``).

        After t steps of size α the perturbation is at most t·α, so while t·α ≤ ε the projection
        to the ε-ball changes nothing and the trajectory is the same for every larger ε.

        Args:
            exact: The arithmetic is exact (integer-valued images and an integer α: every iterate
                is an integer, so ``x + δ − x`` is exactly ``δ``) and t·α = ε still leaves the
                projection inactive. Otherwise a margin of 1e-3 grey levels keeps float rounding
                from touching the bound.
        """
        bound = self.epsilon / self.alpha if exact else (self.epsilon - 1e-3) / self.alpha
        return min(self.num_steps, max(0, int(math.floor(bound))))

    def step_target(self, logits: torch.Tensor, labels: torch.Tensor,
                    target: Optional[torch.Tensor]) -> Tuple[torch.Tensor, float]:
        """Labels of this step's loss and the direction (+1 ascend, −1 descend)."""
        return labels, 1.0

    def iterate(self, model, images: torch.Tensor, labels: torch.Tensor,
                target: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None,
                start: Optional[torch.Tensor] = None, num_steps: Optional[int] = None
                ) -> Iterator[torch.Tensor]:
        """Yield the adversarial images after each step.

        ``start`` continues a trajectory from an earlier iterate (with α = 1, the first ⌊ε⌋ steps
        are the same for every ε ≥ that many grey levels, so a grid can share them).
        """
        x_adv = images.clone() if start is None else start.detach().clone()
        for _ in range(self.num_steps if num_steps is None else num_steps):
            x = x_adv.detach().requires_grad_(True)
            logits = model(x)
            step_labels, direction = self.step_target(logits.detach(), labels, target)
            grad = self.input_gradient(logits, x, step_labels)
            x_adv = project(x_adv + direction * self.alpha * grad.sign(), images, self.epsilon, mask)
            yield x_adv

    def perturb(self, model, images, labels, target, mask):
        x_adv = images
        for x_adv in self.iterate(model, images, labels, target, mask):
            pass
        return x_adv
