"""Worst case per image over an ensemble of white-box attacks: a model's "robust mIoU".

A single attack under-estimates the damage an adversary can do: each attack has images it fails
on. AutoAttack (Croce & Hein 2020, https://arxiv.org/abs/2003.01690) reports robust accuracy as
the worst case per image over a set of diverse attacks, and SEA, the Segmentation Ensemble Attack
(Croce et al. 2024, https://arxiv.org/abs/2306.12941), carries this to segmentation: it runs
attacks with different losses and keeps, *for each image*, the adversarial image with the lowest
pixel accuracy; mIoU over those worst-case images is the model's robust mIoU.

This attack does the same with the white-box attacks of this library::

    for each image i:   x_adv_i = argmin_{x' ∈ {x_i, A_1(x_i), …, A_K(x_i)}}  acc(f(x'), y_i)

where ``acc`` is the pixel accuracy against the labels the attack is given (255 = not counted):
the clean prediction by default, or the ground truth (``label_source='ground_truth'`` in a suite,
as SEA evaluates). The clean image is a candidate too, so the ensemble never reports a higher
accuracy than no attack; ties keep the earlier candidate. Every member runs on every image (unlike
classification, segmentation has no "already fooled" images to skip).

Default members (ε shared): PGD-100 on the cross-entropy (Madry et al.; Xiang et al.'s longest
schedule is 200), SegPGD-100 (Gu et al. 2022) and CosPGD-100 (Agnihotri et al. 2024), whose loss
weightings target the pixels plain cross-entropy neglects, and MI-FGSM-20 (Dong et al. 2018) for
a momentum trajectory — 320 forward+backward passes per image. Pass ``attacks=[...]`` (suite
entries without ε) to choose others.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import torch

from .base import IGNORE_INDEX, Attack, AttackResult, register_attack

DEFAULT_MEMBERS = (
    dict(type='pgd', num_steps=100),
    dict(type='segpgd', num_steps=100),
    dict(type='cospgd', num_steps=100),
    dict(type='mifgsm'),
)


def per_image_pixel_accuracy(pred: torch.Tensor, labels: torch.Tensor,
                             ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """``(N,)`` fraction of each image's labelled pixels predicted as their label (1 if none)."""
    valid = labels != ignore_index
    correct = ((pred == labels) & valid).flatten(1).sum(1).double()
    total = valid.flatten(1).sum(1).double()
    return torch.where(total > 0, correct / total.clamp_min(1), torch.ones_like(total))


@register_attack
class WorstCaseEnsemble(Attack):
    """Per-image worst case (lowest pixel accuracy) over several white-box attacks.

    Args:
        epsilon: L∞ radius in 0–255 pixel units, shared by every member.
        attacks: Member attacks as suite entries without ε, e.g. ``[dict(type='pgd',
            num_steps=100), 'segpgd']``. Default :data:`DEFAULT_MEMBERS`.

    ``run`` reports per image ``chosen`` (index of the member kept, −1 = the clean image) and
    ``accuracy`` (its pixel accuracy against the labels).
    """

    name = 'worst_case'
    aliases = ('ensemble', 'robust_ensemble')
    display_name = 'Worst case (ensemble)'

    def __init__(self, epsilon: float, attacks: Optional[Sequence[Any]] = None):
        super().__init__(epsilon)
        from . import attack_class   # the registry, filled by the package import
        specs = DEFAULT_MEMBERS if attacks is None else attacks
        if isinstance(specs, (str, dict)) or not isinstance(specs, Sequence) or not specs:
            raise ValueError(f'attacks must be a non-empty list of attack entries such as '
                             f"[dict(type='pgd', num_steps=100), 'segpgd'], got {attacks!r}")
        self.members: List[Attack] = []
        for spec in specs:
            spec = {'type': spec} if isinstance(spec, str) else dict(spec)
            if 'type' not in spec:
                raise ValueError(f'ensemble member {spec} has no `type`')
            if 'epsilon' in spec:
                raise ValueError(f'ensemble member {spec} sets epsilon; members share the ensemble\'s ε')
            cls = attack_class(spec.pop('type'))
            if cls is WorstCaseEnsemble or getattr(cls, 'requires_fit', False) or cls.needs_target_map \
                    or cls.targeted:
                raise ValueError(f'ensemble members must be untargeted per-image attacks; {cls.name} is not')
            self.members.append(cls(epsilon=self.epsilon, **spec))

    def params(self) -> Dict[str, Any]:
        return {'attacks': [{'type': m.name, **m.params()} for m in self.members],
                'criterion': 'pixel_accuracy'}

    def gradient_passes(self) -> int:
        return sum(m.gradient_passes() for m in self.members)

    def perturb(self, model, images, labels, target, mask):
        with torch.no_grad():
            best_acc = per_image_pixel_accuracy(model(images).argmax(1), labels)
        best = images.clone()
        chosen = torch.full((len(images),), -1, dtype=torch.int64)
        for k, member in enumerate(self.members):
            adv = member.run(model, images, labels=labels, mask=mask).adv
            with torch.no_grad():
                acc = per_image_pixel_accuracy(model(adv).argmax(1), labels)
            better = acc < best_acc
            best[better] = adv[better]
            best_acc = torch.where(better, acc, best_acc)
            chosen[better.cpu()] = k
        return AttackResult(best, {'chosen': chosen, 'accuracy': best_acc.float().cpu()})
