"""Iterative FGSM (Kurakin et al. 2017, https://arxiv.org/abs/1607.02533; Madry et al. 2018).

Arnab et al. 2018 (https://arxiv.org/abs/1711.09856), eq. 5, with their settings: step α = 1 (each
pixel moves by one grey level per step) and ``n = min(ε + 4, ⌈1.25 ε⌉)`` steps::

    x_0 = x
    x_{t+1} = clip_{x, ε}( x_t + α · sign(∇ L(f(x_t), y)) )      (and clip to [0, 255])

Over an ε grid the trajectories share their beginning: after t steps of size α the perturbation
is at most t·α, so while t·α ≤ ε the ε-ball projection acts on nothing and the first ⌊ε/α⌋ steps
are the same for every larger ε. :meth:`IterativeFGSM.run_grid` attacks the largest ε from
scratch and continues every smaller ε from the largest one's iterate where its own projection
would first act (Arnab et al.'s grid 0.25..32 with α = 1 on integer images:
36 + 1 + 1 + 1 + 1 + 1 + 2 + 4 = 47 gradient passes per image instead of 78), bit-identical to
attacking every ε alone.
"""
from __future__ import annotations

import math
from typing import Dict, Iterator, List, Optional, Tuple

import torch

from .base import (Attack, AttackInputs, AttackResult, Meter, arnab_num_steps, check_epsilon,
                   project, register_attack)


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

    def perturb_grid(self, model, inputs: AttackInputs, attacks: List[Attack], mask_mode: str,
                     meter: Meter) -> List[AttackResult]:
        """Shared trajectories: the largest ε leads, each smaller ε continues from its iterate.

        The leader (largest ε) runs all its steps from the clean image and keeps its iterate
        after ``s`` steps for every ``s`` a smaller ε needs, ``s`` being the steps the smaller
        ε's projection cannot act on (:meth:`unclipped_steps`, exact when the images are
        integer-valued and every α is an integer). That ε then runs its remaining
        ``num_steps − s`` steps from there and reports ``s`` as shared gradient passes.

        Sound because the iterates up to step ``s`` do not depend on ε (ε enters a step through
        the projection only), so it holds for every subclass whose step does not use ε otherwise
        (Iterative FGSM II, the targeted attack).
        """
        images, labels, target = inputs.images, inputs.labels, inputs.target
        mask = inputs.mask if mask_mode == 'project' else None
        exact = bool(torch.equal(images, images.round())) and all(
            float(attack.alpha).is_integer() for attack in attacks)
        order = sorted(range(len(attacks)), key=lambda i: -attacks[i].epsilon)
        lead, leader = order[0], attacks[order[0]]
        starts = {i: min(attacks[i].unclipped_steps(exact), leader.num_steps) for i in order[1:]}
        wanted = set(starts.values())
        snapshots: Dict[int, torch.Tensor] = {0: images}
        results: List[Optional[AttackResult]] = [None] * len(attacks)
        with torch.enable_grad():
            with meter(lead):
                x = images
                for step, x in enumerate(leader.iterate(model, images, labels, target, mask), start=1):
                    if step in wanted:
                        snapshots[step] = x
            results[lead] = leader._result(x)
            for i in order[1:]:
                attack, s = attacks[i], starts[i]
                with meter(i):
                    x = snapshots[s]
                    for x in attack.iterate(model, images, labels, target, mask, start=x,
                                            num_steps=attack.num_steps - s):
                        pass
                results[i] = attack._result(x, shared_gradient_passes=s)
        return results
