"""Adversarial attacks on pixel-space segmentation models (one attack per module).

All attacks follow the contract in :mod:`attacks.base`: float RGB images in [0, 255], ε in the same
units, ``attack(model, images, labels=None, target=None, mask=None) -> adversarial images``;
``attack.run(..., mask_mode='project' | 'posthoc')`` also returns statistics and cost, and
``attack.run_grid(model, images, epsilons, ...)`` one result per ε (sharing work across ε where
the attack can).
"""
from . import targets
from .apgd import APGD
from .base import (ATTACKS, MASK_MODES, Attack, AttackInputError, AttackInputs, AttackResult,
                   apply_posthoc_mask, arnab_num_steps, attack_class, least_likely,
                   pixel_cross_entropy)
from .cospgd import CosPGD
from .ensemble import WorstCaseEnsemble
from .fgsm import FGSM
from .fgsm_ll import FGSMLeastLikely
from .generative import GenerativePerturbation
from .ifgsm import IterativeFGSM
from .ifgsm_ll import IterativeFGSMLeastLikely
from .mifgsm import MIFGSM
from .pgd import PGD
from .sea import SEA
from .segpgd import SegPGD
from .square import SquareAttack
from .targeted import TargetedIterativeFGSM
from .universal import UniversalPerturbation

__all__ = ['ATTACKS', 'Attack', 'AttackResult', 'AttackInputs', 'AttackInputError', 'MASK_MODES',
           'apply_posthoc_mask', 'arnab_num_steps', 'attack_class', 'build_attack', 'least_likely',
           'pixel_cross_entropy', 'targets', 'FGSM', 'FGSMLeastLikely', 'IterativeFGSM',
           'IterativeFGSMLeastLikely', 'PGD', 'MIFGSM', 'SegPGD', 'CosPGD', 'TargetedIterativeFGSM',
           'SquareAttack', 'WorstCaseEnsemble', 'APGD', 'SEA', 'UniversalPerturbation', 'GenerativePerturbation']


def build_attack(spec: dict, epsilon: float) -> Attack:
    """Build an attack from a suite entry such as ``dict(type='ifgsm', alpha=1)`` and an ε."""
    spec = dict(spec)
    name = spec.pop('type')
    return attack_class(name)(epsilon=epsilon, **spec)
