"""SEA: the Segmentation Ensemble Attack (Croce, Singh & Hein 2024, "Towards Reliable Evaluation and
Fast Training of Robust Semantic Segmentation Models", https://arxiv.org/abs/2306.12941).

Three APGD runs (Croce & Hein 2020, https://arxiv.org/abs/2003.01690; :class:`attacks.apgd.APGD`)
with complementary losses, each 300 iterations on the shrinking radius schedule 2ε (90
iterations), 1.5ε (90), ε (120), random start, the step-size rule tracking the cross-entropy, and
each run keeping per image its iterate with the lowest pixel accuracy — the authors' evaluation
(``tools/infer.py`` with ``attacker.apgd_largereps``, ``track_loss="ce-avg"``, ``use_rs=True``):

1. ``mask_ce_bal`` — cross-entropy of the still correctly classified pixels, class-balanced;
2. ``mask_ce_avg`` — the same without class weights;
3. ``js`` — Jensen–Shannon divergence between the prediction and the one-hot label;

then the worst case per image over the three (:class:`attacks.ensemble.WorstCaseEnsemble`: fewest
correct pixels, the clean image as candidate 0; a member runs only on the images with a correct
pixel left). 900 forward+backward passes per image at most.

``num_steps`` scales the three runs together (the schedule keeps its 30/30/40 % split), e.g. for
quick runs; ``attacks=[...]`` replaces the members altogether (suite entries without ε), which is
how further attacks join: e.g. ``attacks=[*SEA_MEMBERS, dict(type='pgd', num_steps=100)]``.

Differences from the authors' code, all stated where they are implemented: the class weights of
``mask_ce_bal`` are each image's inverse class frequencies unless ``class_weights`` is given (they
use dataset-level weights); ties in the kept iterate go to the first one (they take the last);
the worst case is per image by pixel accuracy, which is how they report accuracy — their mIoU
comes from a dataset-level greedy selection (see :mod:`attacks.ensemble`).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

from .base import register_attack
from .ensemble import WorstCaseEnsemble

#: SEA's losses, in the authors' order
SEA_LOSSES = ('mask_ce_bal', 'mask_ce_avg', 'js')
#: iterations of each APGD run
SEA_STEPS = 300


def sea_members(num_steps: int = SEA_STEPS, class_weights: Optional[Sequence[float]] = None):
    """SEA's three APGD runs as ensemble entries (``num_steps`` each, SEA's radius schedule)."""
    extra = {} if class_weights is None else {'class_weights': list(class_weights)}
    return tuple(dict(type='apgd', loss=loss, num_steps=num_steps, schedule='sea', track_loss='ce',
                      random_start=True, keep='accuracy', **(extra if loss == 'mask_ce_bal' else {}))
                 for loss in SEA_LOSSES)


#: the default members: SEA as published
SEA_MEMBERS = sea_members()


@register_attack
class SEA(WorstCaseEnsemble):
    """Per-image worst case over SEA's three APGD runs (masked CE balanced, masked CE, JS).

    Args:
        epsilon: L∞ radius in 0–255 pixel units (SEA: 4/255, 8/255, 12/255 on [0, 1]: 4, 8, 12).
        attacks: Other members (suite entries without ε); default :data:`SEA_MEMBERS`.
        num_steps: Iterations of each of SEA's runs (default 300); only without ``attacks``.
        class_weights: Fixed class weights of the ``mask_ce_bal`` run (default: per image);
            only without ``attacks``.
        skip_solved: As :class:`~attacks.ensemble.WorstCaseEnsemble`. Default True.

    Example:
        >>> result = SEA(8).run(model, images, labels=ground_truth)
        >>> result.info['chosen']          # 0 = clean, 1 = mask_ce_bal, 2 = mask_ce_avg, 3 = js
    """

    name = 'sea'
    aliases = ()
    display_name = 'SEA'
    default_members = SEA_MEMBERS

    def __init__(self, epsilon: float, attacks: Optional[Sequence[Any]] = None,
                 num_steps: Optional[int] = None, class_weights: Optional[Sequence[float]] = None,
                 skip_solved: bool = True):
        if attacks is not None and (num_steps is not None or class_weights is not None):
            raise ValueError('sea: num_steps and class_weights configure the default members; '
                             'with attacks=[...] set them in the members themselves')
        if attacks is None and (num_steps is not None or class_weights is not None):
            attacks = sea_members(SEA_STEPS if num_steps is None else num_steps, class_weights)
        super().__init__(epsilon, attacks=attacks, skip_solved=skip_solved)
