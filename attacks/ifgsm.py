"""Iterative FGSM (Kurakin et al. 2017, https://arxiv.org/abs/1607.02533; Madry et al. 2018).

Arnab et al. 2018 (https://arxiv.org/abs/1711.09856), eq. 5, with their settings: step α = 1 (each
pixel moves by one grey level per step) and ``n = min(ε + 4, ⌈1.25 ε⌉)`` steps::

    x_0 = x
    x_{t+1} = clip_{x, ε}( x_t + α · sign(∇ L(f(x_t), y)) )      (and clip to [0, 255])

Over an ε grid the trajectories share their beginning: after t steps of size α the perturbation
is at most t·α, so while t·α ≤ ε the ε-ball projection acts on nothing and the first ⌊ε/α⌋ steps
are the same for every larger ε. :meth:`IterativeFGSM.run_grid` attacks the largest ε from
scratch and continues every smaller ε from the largest one's iterate ``x_s`` where its own
projection would first act; the first gradient that ε needs, at ``x_s``, is the one the largest
ε took at its step ``s + 1``, so it is kept (its sign, int8) and not computed again. Arnab et
al.'s grid 0.25..32 with α = 1 on integer images costs 36 + 3 (ε = 16) + 1 (ε = 8) = 40 gradient
passes per image instead of 78, bit-identical to attacking every ε alone.

The first step, at the clean image, is FGSM's gradient (eq. 3; Iterative FGSM II's is FGSM II's,
eq. 4): with a :class:`~attacks.base.SharedGradients` passed to ``run`` / ``run_grid``
(``shared=...``) it is computed once for both attacks, so Arnab et al.'s four attacks over their
grid cost 2 × (1 + 40 − 1) = 80 gradient passes per image, whichever runs first.
"""
from __future__ import annotations

import math
from typing import Dict, Iterator, List, NamedTuple, Optional, Tuple

import torch

from .base import (Attack, AttackInputs, AttackResult, Meter, PackedSign, SharedGradients,
                   arnab_num_steps, check_epsilon, project, register_attack, takes_from)


class SignStep(NamedTuple):
    """What a step takes from its iterate ``x_t``: ``x_{t+1} = Π(x_t + direction · α · sign)``.

    ``sign`` is ``sign(∇_x L)`` at ``x_t`` of the step's loss (:meth:`IterativeFGSM.step_target`
    at ``x_t``: for Iterative FGSM II the least likely class of ``f(x_t)``), packed
    (:class:`~attacks.base.PackedSign`); ``direction`` is +1 (ascend) or −1 (descend).
    """

    sign: PackedSign
    direction: float


class TrajectoryStep(NamedTuple):
    """One step of :meth:`IterativeFGSM.trajectory`."""

    adv: torch.Tensor        # the iterate after the step
    sign: torch.Tensor       # sign(∇_x L) at the iterate before it (what the step used)
    direction: float         # +1 ascend, −1 descend
    reused: bool             # the gradient was not computed here (start_step or shared memo)


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

    def clean_gradient_key(self, labels: torch.Tensor, target: Optional[torch.Tensor]
                           ) -> Optional[Tuple[str, torch.Tensor, float]]:
        """The first step's loss at the clean image as a :class:`~attacks.base.SharedGradients`
        key ``(kind, y, direction)``: the summed pixel cross-entropy towards ``labels``, ascended
        (FGSM's, eq. 3 of Arnab et al.). None when a subclass redefines the step's loss."""
        if not takes_from(self, IterativeFGSM, 'step_target', 'input_gradient'):
            return None
        return 'ce', labels, 1.0

    def step_sign(self, model, x_adv: torch.Tensor, labels: torch.Tensor,
                  target: Optional[torch.Tensor]) -> Tuple[torch.Tensor, float]:
        """``sign(∇_x L)`` of the step's loss at ``x_adv`` and its direction (one gradient pass)."""
        x = x_adv.detach().requires_grad_(True)
        logits = model(x)
        step_labels, direction = self.step_target(logits.detach(), labels, target)
        return self.input_gradient(logits, x, step_labels).sign(), direction

    def trajectory(self, model, images: torch.Tensor, labels: torch.Tensor,
                   target: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None,
                   start: Optional[torch.Tensor] = None, num_steps: Optional[int] = None,
                   start_step: Optional[SignStep] = None,
                   shared: Optional[SharedGradients] = None) -> Iterator[TrajectoryStep]:
        """Yield every step: the iterate after it, the sign it used and whether that was reused.

        Args:
            start: Continue a trajectory from an earlier iterate (default: the clean images).
            num_steps: Steps to take (default ``self.num_steps``).
            start_step: The :class:`SignStep` at ``start`` computed before (by the same attack at
                another ε: the step does not depend on ε); the first step uses it instead of a
                gradient pass.
            shared: Memo of clean-image gradient signs (:class:`~attacks.base.SharedGradients`);
                consulted for the first step when it is taken at the clean images (``start``
                None) and the loss is shareable (:meth:`clean_gradient_key`).
        """
        x_adv = images.clone() if start is None else start.detach().clone()
        for t in range(self.num_steps if num_steps is None else num_steps):
            key = None
            if t == 0 and start is None and start_step is None and shared is not None:
                key = self.clean_gradient_key(labels, target)
            if t == 0 and start_step is not None:
                sign, direction, reused = start_step.sign.unpack(), start_step.direction, True
            elif key is not None:
                kind, y, direction = key
                sign, reused = shared.clean_sign(model, kind, images, y, lambda: self._checked_sign(
                    model, x_adv, labels, target, direction))
            else:
                (sign, direction), reused = self.step_sign(model, x_adv, labels, target), False
            x_adv = project(x_adv + direction * self.alpha * sign, images, self.epsilon, mask)
            yield TrajectoryStep(x_adv, sign, direction, reused)

    def _checked_sign(self, model, x_adv, labels, target, direction: float) -> torch.Tensor:
        sign, actual = self.step_sign(model, x_adv, labels, target)
        if actual != direction:     # pragma: no cover - clean_gradient_key and step_target disagree
            raise RuntimeError(f'{type(self).__name__}: clean_gradient_key says direction '
                               f'{direction}, step_target {actual}')
        return sign

    def iterate(self, model, images: torch.Tensor, labels: torch.Tensor,
                target: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None,
                start: Optional[torch.Tensor] = None, num_steps: Optional[int] = None,
                start_step: Optional[SignStep] = None,
                shared: Optional[SharedGradients] = None) -> Iterator[torch.Tensor]:
        """Yield the adversarial images after each step (see :meth:`trajectory`).

        ``start`` continues a trajectory from an earlier iterate (with α = 1, the first ⌊ε⌋ steps
        are the same for every ε ≥ that many grey levels, so a grid can share them).
        """
        for step in self.trajectory(model, images, labels, target, mask, start, num_steps,
                                    start_step, shared):
            yield step.adv

    def perturb(self, model, images, labels, target, mask):
        x_adv = images
        for x_adv in self.iterate(model, images, labels, target, mask):
            pass
        return x_adv

    def _attack(self, model, inputs: AttackInputs, mask_mode: str) -> AttackResult:
        """:meth:`perturb`, its first step from ``inputs.shared`` when that holds it (counted)."""
        if not takes_from(self, IterativeFGSM, 'perturb'):
            return super()._attack(model, inputs, mask_mode)
        mask = inputs.mask if mask_mode == 'project' else None
        x_adv, reused = inputs.images, 0
        with torch.enable_grad():
            for step in self.trajectory(model, inputs.images, inputs.labels, inputs.target, mask,
                                        shared=inputs.shared):
                x_adv, reused = step.adv, reused + step.reused
        return self._result(x_adv, shared_gradient_passes=reused)

    def perturb_grid(self, model, inputs: AttackInputs, attacks: List[Attack], mask_mode: str,
                     meter: Meter) -> List[AttackResult]:
        """Shared trajectories: the largest ε leads, each smaller ε continues from its iterate.

        The leader (largest ε) runs all its steps from the clean image and keeps its iterate
        after ``s`` steps for every ``s`` a smaller ε needs, ``s`` being the steps the smaller
        ε's projection cannot act on (:meth:`unclipped_steps`, exact when the images are
        integer-valued and every α is an integer), together with the sign of the gradient it took
        there (its step ``s + 1``, int8). That ε then runs its remaining ``num_steps − s`` steps
        from there, the first one from the kept sign, and reports ``s + 1`` shared gradient
        passes (``s`` when it has no step left or the leader took no step at ``x_s``).

        Sound because the iterates up to step ``s`` and the step taken at ``x_s`` do not depend on
        ε (ε enters a step through the projection only), so it holds for every subclass whose step
        does not use ε otherwise (Iterative FGSM II: the least likely class of ``f(x_s)``, the
        targeted attack). The leader's first step comes from ``inputs.shared`` when another attack
        of the batch computed that clean-image gradient (then it counts it as shared).
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
        branch_steps: Dict[int, SignStep] = {}          # s → the leader's step at x_s
        results: List[Optional[AttackResult]] = [None] * len(attacks)
        with torch.enable_grad():
            with meter(lead):
                x, reused = images, 0
                for t, step in enumerate(leader.trajectory(model, images, labels, target, mask,
                                                           shared=inputs.shared)):
                    if t in wanted:
                        branch_steps[t] = SignStep(PackedSign.pack(step.sign), step.direction)
                    x, reused = step.adv, reused + step.reused
                    if t + 1 in wanted:
                        snapshots[t + 1] = x
            results[lead] = leader._result(x, shared_gradient_passes=reused)
            for i in order[1:]:
                attack, s = attacks[i], starts[i]
                first = branch_steps.get(s) if s < attack.num_steps else None
                with meter(i):
                    x = snapshots[s]
                    for x in attack.iterate(model, images, labels, target, mask, start=x,
                                            num_steps=attack.num_steps - s, start_step=first):
                        pass
                results[i] = attack._result(x, shared_gradient_passes=s + (first is not None))
        return results
