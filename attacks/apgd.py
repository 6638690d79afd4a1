"""APGD: Auto-PGD, L∞ (Croce & Hein 2020, https://arxiv.org/abs/2003.01690, Sec. 3, Algorithm 1),
with the segmentation losses of :mod:`attacks.seg_losses` and SEA's radius schedule (Croce, Singh &
Hein 2024, https://arxiv.org/abs/2306.12941).

One APGD run of ``N`` iterations on the ε-ball ``S`` around ``x`` (``P_S``: clip to the ball, to the
``mask`` and to [0, 255]), with ``f`` the tracked objective (per image) and ``L`` the loss whose
gradient is followed (the same by default)::

    η = 2ε,  x^(0) = x (or x + U(−ε, ε), seeded),  f_max = f(x^(0)),  x_max = x^(0)
    x^(1)   = P_S(x^(0) + η · sign ∇L(x^(0)))
    z^(k+1) = P_S(x^(k) + η · sign ∇L(x^(k)))                                    k = 1 … N−1
    x^(k+1) = P_S(x^(k) + α (z^(k+1) − x^(k)) + (1 − α)(x^(k) − x^(k−1))),   α = 0.75

After each ``x^(k)`` is evaluated (one forward pass: ``f``, ``∇L`` unless ``k = N``, the pixel
accuracy), ``f_max``/``x_max`` take it if ``f(x^(k)) > f_max``. The step size is halved at the
checkpoints ``w_j = ⌈p_j N⌉ < N``, ``p_0 = 0``, ``p_1 = 0.22``, ``p_{j+1} = p_j + max(p_j − p_{j−1} −
0.03, 0.06)`` (duplicates dropped; N = 100: 22, 41, 57, 70, 80, 87, 93, 99) when, per image,

1. ``#{i ∈ [w_{j−1}, w_j): f(x^(i+1)) > f(x^(i))} < ρ · (w_j − w_{j−1})``, ρ = 0.75 (the step
   increased the objective in fewer than 75 % of the iterations since the last checkpoint), or
2. the step size was not halved at ``w_{j−1}`` and ``f_max`` has not increased since ``w_{j−1}``
   (at ``w_1``: since ``x^(0)``);

and an image whose step size is halved restarts from its best point: the next step is taken from
``x_max`` with ``∇L(x_max)`` (its momentum term is ``x_max − x^(w_j − 1)``). ``f(x^(i))`` is the
value of the iterate as computed (before a restart replaced it). The paper's pseudo-code leaves
these three details open; they are those of the authors' code (``autopgd_base.py``), except that
its condition 1 reads ``≤`` (the paper: ``<``), compares the first step with a zero instead of
``f(x^(0))``, and never applies condition 2 at the first checkpoint — we follow the paper.

**Which iterate is returned** (``keep``). APGD for classification returns ``x_max``, the iterate
with the highest loss (``keep='loss'``). SEA's code keeps, per image, the iterate with the *lowest
pixel accuracy* among all those evaluated (``x_best_adv`` of ``apgd_train``), and restarts and the
step-size rule still use the loss (``keep='accuracy'``, the default here, as it measures what the
benchmark reports). The accuracy is the number of labelled pixels predicted as their label (an
integer: comparisons are exact); an iterate replaces the kept one only when strictly lower, so the
first iterate reaching the minimum is kept (SEA's code takes the last on ties). Hence, once every
image of the batch is at 0 correct pixels, nothing more can change and the run stops
(``early_stop``, as SEA's code): the result is bit-identical to the full run, only cheaper.

**Radius schedule** (``schedule``). SEA runs APGD for ``N = 300`` iterations in three stages: 2ε for
``⌊0.3 N⌋`` = 90 iterations, 1.5ε for 90, ε for the remaining 120 (``schedule='sea'``; their
``apgd_largereps``). Each stage is a full APGD run at its own radius (η = 2·radius, checkpoints
from the stage's length, fresh momentum and ``f_max``), started from the previous stage's kept
iterate projected onto the new ball (and [0, 255], and the mask); the random start, if any, is
drawn for the first stage only (later stages start from the projected point, as in SEA's code).
A stage of 0 iterations (``N < 4`` with ``'sea'``) is dropped. The last stage must be at ε itself.
``schedule=[(2.0, 90), (1.5, 90), (1.0, 120)]`` states the stages explicitly.

**Losses** (``loss``, by name): ``ce``, ``mask_ce_avg``, ``mask_ce_bal``, ``js``, ``segpgd``,
``cospgd``, ``dlr`` (see :mod:`attacks.seg_losses`). ``track_loss`` is the objective ``f`` of the
step-size rule and of ``x_max``; by default the loss itself, except for ``segpgd`` (its weights
change with the iteration, so its values cannot be compared across iterations): ``ce``. SEA's
runs use ``track_loss='ce'`` (their ``track_loss="ce-avg"``). ``segpgd``'s λ_t counts the gradient
evaluations of the whole run (t = 1 … N across stages).

**Cost**: exactly ``N`` forward+backward passes per image (the gradient at ``x^(0) … x^(N−1)`` of
every stage) plus one forward-only pass per stage (the last iterate needs no gradient), fewer
when ``early_stop`` ends a stage: ``info['gradient_passes']`` holds what each image actually
took; :meth:`gradient_passes` (and the result's ``gradient_passes``) the budget ``N``.

Deterministic: the random start is PGD's (:meth:`attacks.pgd.PGD.initial_point`: seeded by
``seed`` and each image's bytes, never the global RNG). Only L∞ is implemented.
"""
from __future__ import annotations

import numbers
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from .base import IGNORE_INDEX, Attack, AttackResult, project, register_attack
from .pgd import PGD, check_num_steps
from .seg_losses import (STEP_DEPENDENT, check_class_weights, check_loss_name, correctly_classified,
                         image_losses)

#: ρ of condition 1 (Croce & Hein 2020, Sec. 3.2)
RHO = 0.75
#: momentum α (Croce & Hein 2020, Sec. 3.2)
MOMENTUM = 0.75
#: which iterate a run returns
KEEP = ('accuracy', 'loss')


def apgd_checkpoints(num_steps: int) -> List[int]:
    """The checkpoints ``w_j = ⌈p_j N⌉`` in (0, N), increasing, without duplicates.

    ``p_0 = 0``, ``p_1 = 0.22``, ``p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)`` (Croce & Hein
    2020, Sec. 3.2), computed in hundredths so that no float rounding moves a ceiling.
    """
    n = check_num_steps(num_steps)
    out: List[int] = []
    prev, p = 0, 22
    while True:
        w = -(-p * n // 100)
        if w >= n:
            return out
        if not out or w > out[-1]:
            out.append(w)
        prev, p = p, p + max(p - prev - 3, 6)


def sea_schedule(num_steps: int) -> List[Tuple[float, int]]:
    """SEA's stages for ``N`` iterations: (2, ⌊0.3 N⌋), (1.5, ⌊0.3 N⌋), (1, N − 2⌊0.3 N⌋); empty
    stages dropped. ``sea_schedule(300) == [(2.0, 90), (1.5, 90), (1.0, 120)]``."""
    n = check_num_steps(num_steps)
    first = n * 3 // 10
    stages = [(2.0, first), (1.5, first), (1.0, n - 2 * first)]
    return [(factor, steps) for factor, steps in stages if steps > 0]


def _check_schedule(schedule, num_steps) -> Tuple[Optional[str], List[Tuple[float, int]]]:
    """``(name, stages)`` for a schedule argument and ``num_steps`` (None: the default)."""
    if schedule is None:
        return None, [(1.0, 100 if num_steps is None else check_num_steps(num_steps))]
    if schedule == 'sea':
        return 'sea', sea_schedule(300 if num_steps is None else num_steps)
    if isinstance(schedule, (str, bytes)) or not isinstance(schedule, Sequence) or not schedule:
        raise ValueError(f"schedule must be None, 'sea' or a list of (radius factor, iterations) "
                         f'such as [(2.0, 90), (1.5, 90), (1.0, 120)], got {schedule!r}')
    stages = []
    for stage in schedule:
        if isinstance(stage, (str, bytes)) or not isinstance(stage, Sequence) or len(stage) != 2:
            raise ValueError(f'each schedule stage must be (radius factor, iterations), got {stage!r}')
        factor, steps = stage
        if isinstance(factor, bool) or not isinstance(factor, numbers.Real) or not factor > 0 \
                or factor == float('inf'):
            raise ValueError(f'a schedule stage radius factor must be a finite number > 0, got {factor!r}')
        stages.append((float(factor), check_num_steps(steps)))
    if stages[-1][0] != 1.0:
        raise ValueError(f'the last schedule stage must be at the radius itself (factor 1.0), so '
                         f'that the result lies in the ε-ball; got {stages[-1][0]!r}')
    total = sum(steps for _, steps in stages)
    if num_steps is not None and check_num_steps(num_steps) != total:
        raise ValueError(f'num_steps={num_steps} but the schedule has {total} iterations; give one '
                         f'of them (or the same number)')
    return None, stages


class _Stage:
    """The state APGD carries over one stage (one APGD run at one radius), per image."""

    def __init__(self, x: torch.Tensor, f: torch.Tensor, grad: torch.Tensor,
                 correct: torch.Tensor, radius: float):
        shape = (len(x),) + (1,) * (x.dim() - 1)
        self.eta = torch.full(shape, 2.0 * radius, dtype=x.dtype, device=x.device)
        self.f_max, self.x_max, self.g_max = f.clone(), x.clone(), grad.clone()
        self.correct_at_max = correct.clone()
        self.keep_x, self.keep_correct = x.clone(), correct.clone()
        self.f_prev = f.clone()
        self.increases = torch.zeros_like(f)
        self.last_checkpoint = 0
        self.f_max_at_checkpoint = f.clone()
        self.halved_at_checkpoint = torch.zeros(len(x), dtype=torch.bool, device=x.device)


@register_attack
class APGD(Attack):
    """Auto-PGD, L∞, with a segmentation loss, per-image step sizes and best iterates.

    Args:
        epsilon: L∞ radius in 0–255 pixel units.
        num_steps: Iterations N in all (gradient passes per image). Default 100; 300 with
            ``schedule='sea'``; the stages' sum with an explicit schedule.
        loss: The loss followed, by name (:data:`attacks.seg_losses.LOSSES`). Default ``'ce'``.
        schedule: None (one run at ε), ``'sea'`` (2ε, 1.5ε, ε over 30 %, 30 %, 40 % of N) or a
            list of ``(radius factor, iterations)`` ending at factor 1.
        random_start: Start from ``x + U(−r, r)`` at the first stage's radius r (seeded per
            image, as PGD). Default True (as APGD and SEA).
        seed: Seed of the random start. Default 0.
        keep: ``'accuracy'`` (default; SEA): return each image's iterate with the fewest
            correctly classified pixels; ``'loss'`` (APGD): the one with the highest ``f``.
        track_loss: The objective ``f`` of the step-size rule and of ``x_max``. Default: the
            loss itself (``'ce'`` for the iteration-dependent ``'segpgd'``).
        class_weights: Fixed per-class weights of ``mask_ce_bal`` (default: per image).
        early_stop: With ``keep='accuracy'``, end a stage once every image is at 0 correct
            pixels (the result is the same; the cost is lower). Default True.

    ``run`` reports per image ``accuracy`` (pixel accuracy of the returned iterate against the
    labels; 1 for an image without labelled pixels) and ``gradient_passes`` (spent on it).

    Example:
        >>> adv = APGD(8, loss='mask_ce_avg', num_steps=300, schedule='sea', track_loss='ce')(model, x)
    """

    name = 'apgd'
    aliases = ('auto_pgd', 'autopgd')
    display_name = 'APGD'

    def __init__(self, epsilon: float, num_steps: Optional[int] = None, loss: str = 'ce',
                 schedule: Any = None, random_start: bool = True, seed: int = 0,
                 keep: str = 'accuracy', track_loss: Optional[str] = None,
                 class_weights: Optional[Sequence[float]] = None, early_stop: bool = True):
        super().__init__(epsilon)
        self.schedule_name, self.stages = _check_schedule(schedule, num_steps)
        self.num_steps = sum(steps for _, steps in self.stages)
        self.loss = check_loss_name(loss)
        if track_loss is None:
            track_loss = 'ce' if self.loss in STEP_DEPENDENT else self.loss
        self.track_loss = check_loss_name(track_loss, 'track_loss')
        if self.track_loss in STEP_DEPENDENT:
            raise ValueError(f'track_loss {self.track_loss!r} changes with the iteration, so its '
                             f"values cannot be compared across iterations; use e.g. 'ce'")
        for flag, what in ((random_start, 'random_start'), (early_stop, 'early_stop')):
            if not isinstance(flag, bool):
                raise ValueError(f'{what} must be True or False, got {flag!r}')
        self.random_start, self.early_stop = random_start, early_stop
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f'seed must be a non-negative integer, got {seed!r}')
        self.seed = int(seed)
        if keep not in KEEP:
            raise ValueError(f"keep must be 'accuracy' (the iterate with the fewest correct pixels, "
                             f"as SEA) or 'loss' (the highest objective, as APGD), got {keep!r}")
        self.keep = keep
        self.class_weights = check_class_weights(class_weights)

    # -- description -------------------------------------------------------------------------
    def params(self) -> Dict[str, Any]:
        return {'num_steps': self.num_steps, 'loss': self.loss, 'track_loss': self.track_loss,
                'schedule': [[factor, steps] for factor, steps in self.stages],
                'random_start': self.random_start, 'seed': self.seed, 'keep': self.keep,
                'class_weights': None if self.class_weights is None else list(self.class_weights),
                'rho': RHO, 'momentum': MOMENTUM, 'early_stop': self.early_stop}

    def gradient_passes(self) -> int:
        return self.num_steps

    # -- one evaluation ------------------------------------------------------------------------
    def _losses(self, name: str, logits, labels, step: int) -> torch.Tensor:
        return image_losses(name, logits, labels, step=step, num_steps=self.num_steps,
                            class_weights=self.class_weights)

    def _evaluate(self, model, x: torch.Tensor, labels: torch.Tensor, step: int, with_grad: bool):
        """``(f, ∇L or None, correct)`` at ``x``; ``step`` is the gradient evaluation's index t."""
        if with_grad:
            xg = x.detach().requires_grad_(True)
            logits = model(xg)
            loss = self._losses(self.loss, logits, labels, step)
            f = (loss if self.track_loss == self.loss
                 else self._losses(self.track_loss, logits, labels, step)).detach()
            correct = self._correct(logits, labels)
            del logits
            grad, = torch.autograd.grad(loss.sum(), xg)
            return f, grad, correct
        with torch.no_grad():
            logits = model(x)
            f = self._losses(self.track_loss, logits, labels, step)
            return f, None, self._correct(logits, labels)

    @staticmethod
    def _correct(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Labelled pixels predicted as their label, per image (int64)."""
        return correctly_classified(logits, labels).flatten(1).sum(1)

    # -- the algorithm -------------------------------------------------------------------------
    def _run_stage(self, model, images, labels, mask, radius: float, n: int, x0: torch.Tensor,
                   step0: int, spent: List[int]) -> Tuple[torch.Tensor, torch.Tensor]:
        """One APGD run of ``n`` iterations at ``radius`` from ``x0``: ``(kept iterate, its correct
        pixel counts)``. ``step0``: gradient evaluations before this stage; ``spent[0]`` counts
        the gradient passes done."""
        checkpoints = set(apgd_checkpoints(n))
        f, grad, correct = self._evaluate(model, x0, labels, step0 + 1, with_grad=True)
        spent[0] += 1
        s = _Stage(x0, f, grad, correct, radius)
        x, x_prev = x0, x0
        stop = self.keep == 'accuracy' and self.early_stop
        for k in range(n):                                  # x^(k) → x^(k+1)
            if stop and not bool((s.keep_correct > 0).any()):
                break                                       # nothing can change any more
            z = project(x + s.eta * grad.sign(), images, radius, mask)
            if k == 0:
                x_new = z
            else:
                x_new = project(x + MOMENTUM * (z - x) + (1.0 - MOMENTUM) * (x - x_prev),
                                images, radius, mask)
            x_prev, x = x, x_new
            last = k + 1 == n
            f, grad, correct = self._evaluate(model, x, labels, step0 + k + 2, with_grad=not last)
            if not last:
                spent[0] += 1
            s.increases += (f > s.f_prev).to(f.dtype)
            s.f_prev = f
            better = f > s.f_max
            s.f_max = torch.where(better, f, s.f_max)
            s.x_max[better] = x[better]
            s.correct_at_max[better] = correct[better]
            if not last:
                s.g_max[better] = grad[better]
            fewer = correct < s.keep_correct
            s.keep_x[fewer] = x[fewer]
            s.keep_correct[fewer] = correct[fewer]
            if k + 1 in checkpoints and not last:
                length = k + 1 - s.last_checkpoint
                cond1 = s.increases < RHO * length
                cond2 = ~s.halved_at_checkpoint & (s.f_max == s.f_max_at_checkpoint)
                halve = cond1 | cond2
                s.eta[halve] /= 2.0
                x = x.clone()
                x[halve] = s.x_max[halve]
                grad[halve] = s.g_max[halve]
                s.halved_at_checkpoint = halve
                s.f_max_at_checkpoint = s.f_max.clone()
                s.increases.zero_()
                s.last_checkpoint = k + 1
        if self.keep == 'accuracy':
            return s.keep_x, s.keep_correct
        return s.x_max, s.correct_at_max

    def perturb(self, model, images, labels, target, mask):
        spent = [0]
        step0 = 0
        x = None
        correct = None
        for i, (factor, n) in enumerate(self.stages):
            radius = factor * self.epsilon
            if i == 0:
                x0 = (PGD(radius, seed=self.seed).initial_point(images, mask) if self.random_start
                      else images.clone())
            else:
                x0 = project(x, images, radius, mask)
            x, correct = self._run_stage(model, images, labels, mask, radius, n, x0, step0, spent)
            step0 += n
        valid = (labels != IGNORE_INDEX).flatten(1).sum(1)
        accuracy = torch.where(valid > 0, correct.double() / valid.clamp_min(1).double(),
                               torch.ones_like(valid, dtype=torch.float64))
        info = {'accuracy': accuracy.float().cpu(),
                'gradient_passes': torch.full((len(images),), spent[0], dtype=torch.int64)}
        return AttackResult(x.detach(), info, self.num_steps)
