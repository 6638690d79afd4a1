"""Worst case per image over an ensemble of white-box attacks: a model's "robust mIoU".

A single attack under-estimates the damage an adversary can do: each attack has images it fails
on. AutoAttack (Croce & Hein 2020, https://arxiv.org/abs/2003.01690) reports robust accuracy as
the worst case per image over a set of diverse attacks, and SEA, the Segmentation Ensemble Attack
(Croce, Singh & Hein 2024, https://arxiv.org/abs/2306.12941), carries this to segmentation.
:class:`WorstCaseEnsemble` is that rule for any attacks of this library (``worst_case``: PGD,
SegPGD, CosPGD, MI-FGSM by default; ``sea`` in :mod:`attacks.sea`: SEA's three APGD runs).

**The rule, per image** (not per batch)::

    x_adv_i = argmin_{x' ∈ {x_i, A_1(x_i), …, A_K(x_i)}}  correct(f(x'), y_i)

``correct`` counts the labelled pixels predicted as their label (255 = not counted), against
the labels the attack is given: the clean prediction by default, or the ground truth
(``label_source='ground_truth'``, as SEA evaluates). For one image this orders the candidates as
its pixel accuracy does. The clean image is candidate 0, so the ensemble never reports more
correct pixels than no attack; a candidate replaces the kept one only with strictly fewer
(ties keep the earlier candidate, clean first).

Why pixel accuracy and not the mIoU: mIoU is a dataset quantity (intersections and unions summed
over all images before dividing), not a per-image one. SEA reports its accuracy with this per-image
rule and its mIoU with a greedy search over the whole dataset (the authors' ``worst_case_miou``:
per image, swap in the attack whose confusion counts lower the running dataset mIoU, repeated
over shuffled rounds). An attack here sees one batch: a greedy mIoU over the batch would make each
image's result depend on which images share its batch, shard or rank — against this benchmark's
guarantee that they give identical records — and would still not be SEA's dataset mIoU. So the
per-image rule is the default and only rule of the attack; the dataset-level greedy selection
belongs after generation, over the per-image confusion matrices of every member
(``tools/attack_strength.py`` computes it). Per-image accuracy is also the statistic for which a
worst case over members is a theorem: the dataset pixel accuracy of the ensemble is at most each
member's.

**Skipping** (AutoAttack's rule, ``skip_solved``): each member runs only on the images it can
still make worse — those with at least one correctly classified labelled pixel left. An image at
0 can never be replaced (replacement needs strictly fewer), so skipping changes no result, only the
cost.

**Cost**: ``info['gradient_passes']`` holds, per image, the forward+backward passes the members
actually spent on it (skipped members count 0; members that stop early, such as APGD, report
their own count); the result's ``gradient_passes`` and :meth:`gradient_passes` give the budget, the
sum of the members' budgets (what an image costs when no member is skipped). Forward-only passes
(one clean, one per member to score its output) are not gradient passes.

``run`` reports per image ``chosen`` (0 = the clean image, k = the k-th member, 1-based),
``accuracy`` (pixel accuracy of the kept image against the labels, as scored when it was chosen;
1 for an image without labelled pixels) and ``gradient_passes``.

Adding a member is one file (an attack registered with ``@register_attack``, imported in
``attacks/__init__.py``) and one entry in a member list (a suite's ``attacks=[...]`` or a class's
``default_members``).
"""
from __future__ import annotations

from typing import Any, ClassVar, Dict, List, Optional, Sequence, Tuple

import torch

from .base import IGNORE_INDEX, Attack, AttackResult, register_attack
from .seg_losses import predicted_classes

DEFAULT_MEMBERS = (
    dict(type='pgd', num_steps=100),
    dict(type='segpgd', num_steps=100),
    dict(type='cospgd', num_steps=100),
    dict(type='mifgsm'),
)


def per_image_correct(pred: torch.Tensor, labels: torch.Tensor,
                      ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """``(N,)`` int64: labelled pixels of each image predicted as their label."""
    return ((pred == labels) & (labels != ignore_index)).flatten(1).sum(1)


def per_image_pixel_accuracy(pred: torch.Tensor, labels: torch.Tensor,
                             ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """``(N,)`` fraction of each image's labelled pixels predicted as their label (1 if none)."""
    valid = labels != ignore_index
    correct = ((pred == labels) & valid).flatten(1).sum(1).double()
    total = valid.flatten(1).sum(1).double()
    return torch.where(total > 0, correct / total.clamp_min(1), torch.ones_like(total))


def worst_case_choice(correct: torch.Tensor) -> torch.Tensor:
    """Per image, the first candidate with the fewest correct pixels.

    Args:
        correct: ``(K + 1, N)`` correct-pixel counts, candidate 0 the clean image.

    Returns:
        ``(N,)`` int64 candidate index (the rule of :class:`WorstCaseEnsemble`, sequentially:
        a later candidate wins only with strictly fewer).
    """
    best = correct[0].clone()
    chosen = torch.zeros(correct.shape[1], dtype=torch.int64, device=correct.device)
    for k in range(1, correct.shape[0]):
        better = correct[k] < best
        best = torch.where(better, correct[k], best)
        chosen[better] = k
    return chosen


def build_members(specs: Sequence[Any], epsilon: float) -> List[Attack]:
    """Member attacks at ``epsilon`` from suite entries without ε (``'pgd'`` or ``dict(type=...)``)."""
    from . import attack_class   # the registry, filled by the package import
    if isinstance(specs, (str, dict)) or not isinstance(specs, Sequence) or not specs:
        raise ValueError(f'attacks must be a non-empty list of attack entries such as '
                         f"[dict(type='pgd', num_steps=100), 'segpgd'], got {specs!r}")
    members: List[Attack] = []
    for spec in specs:
        spec = {'type': spec} if isinstance(spec, str) else dict(spec)
        if 'type' not in spec:
            raise ValueError(f'ensemble member {spec} has no `type`')
        if 'epsilon' in spec:
            raise ValueError(f"ensemble member {spec} sets epsilon; members share the ensemble's ε")
        cls = attack_class(spec.pop('type'))
        if issubclass(cls, WorstCaseEnsemble) or getattr(cls, 'requires_fit', False) \
                or cls.needs_target_map or cls.targeted:
            raise ValueError(f'ensemble members must be untargeted per-image attacks; {cls.name} is not')
        members.append(cls(epsilon=epsilon, **spec))
    return members


@register_attack
class WorstCaseEnsemble(Attack):
    """Per-image worst case (fewest correct pixels) over several white-box attacks.

    Args:
        epsilon: L∞ radius in 0–255 pixel units, shared by every member.
        attacks: Member attacks as suite entries without ε, e.g. ``[dict(type='pgd',
            num_steps=100), 'segpgd']``. Default :attr:`default_members`.
        skip_solved: Run each member only on images with a correct pixel left (AutoAttack's
            rule; the result is the same). Default True.

    Example:
        >>> result = WorstCaseEnsemble(8).run(model, images, labels=ground_truth)
        >>> result.info['chosen']          # per image: 0 = clean, k = k-th member
    """

    name = 'worst_case'
    aliases = ('ensemble', 'robust_ensemble')
    display_name = 'Worst case (ensemble)'
    #: the members when ``attacks`` is not given
    default_members: ClassVar[Tuple[Any, ...]] = DEFAULT_MEMBERS

    def __init__(self, epsilon: float, attacks: Optional[Sequence[Any]] = None,
                 skip_solved: bool = True):
        super().__init__(epsilon)
        if not isinstance(skip_solved, bool):
            raise ValueError(f'skip_solved must be True or False, got {skip_solved!r}')
        self.skip_solved = skip_solved
        self.members: List[Attack] = build_members(
            self.default_members if attacks is None else attacks, self.epsilon)

    def params(self) -> Dict[str, Any]:
        return {'attacks': [{'type': m.name, **m.params()} for m in self.members],
                'criterion': 'pixel_accuracy', 'skip_solved': self.skip_solved}

    def gradient_passes(self) -> int:
        return sum(m.gradient_passes() for m in self.members)

    @staticmethod
    def _member_passes(result: AttackResult, n: int) -> torch.Tensor:
        """Per-image gradient passes a member's result spent: its own count, or its budget."""
        spent = result.info.get('gradient_passes')
        if spent is not None:
            return spent.to(torch.int64).cpu()
        return torch.full((n,), int(result.own_gradient_passes or 0), dtype=torch.int64)

    def perturb(self, model, images, labels, target, mask):
        with torch.no_grad():
            best_correct = per_image_correct(predicted_classes(model(images)), labels)
        best = images.clone()
        n = len(images)
        chosen = torch.zeros(n, dtype=torch.int64)
        passes = torch.zeros(n, dtype=torch.int64)
        for k, member in enumerate(self.members, start=1):
            todo = best_correct > 0 if self.skip_solved else torch.ones_like(best_correct, dtype=torch.bool)
            if not bool(todo.any()):
                break
            idx = todo.nonzero()[:, 0]
            sub = member.run(model, images[idx], labels=labels[idx],
                             mask=None if mask is None else mask[idx])
            passes[idx.cpu()] += self._member_passes(sub, len(idx))
            with torch.no_grad():
                correct = per_image_correct(predicted_classes(model(sub.adv)), labels[idx])
            better = correct < best_correct[idx]
            won = idx[better]
            best[won] = sub.adv[better]
            best_correct[won] = correct[better]
            chosen[won.cpu()] = k
        valid = (labels != IGNORE_INDEX).flatten(1).sum(1)
        accuracy = torch.where(valid > 0, best_correct.double() / valid.clamp_min(1).double(),
                               torch.ones_like(valid, dtype=torch.float64))
        return AttackResult(best, {'chosen': chosen, 'accuracy': accuracy.float().cpu(),
                                   'gradient_passes': passes})
