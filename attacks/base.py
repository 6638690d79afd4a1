"""Attack base class, the attack registry and the pieces every L∞ attack shares.

Contract (see DESIGN.md): images are float tensors ``(N, 3, H, W)``, RGB, in ``[0, 255]``; ε and
step sizes are in the same 0–255 units. An attack is configured once in its constructor (no
mutable mode state) and called as ``attack(model, images, labels=None, target=None, mask=None)``:

* ``labels`` – reference labels ``(N, H, W)`` for untargeted losses. Default: the clean prediction
  of ``model`` (as Arnab et al. did); pass the ground truth instead to attack the annotation.
  Pixels labelled ``255`` contribute no loss.
* ``target`` – target labels ``(N, H, W)`` for targeted attacks (255 = no loss).
* ``mask`` – where the perturbation may be non-zero, ``(N, H, W)`` or ``(N, 1, H, W)``;
  default everywhere.

It returns the adversarial images, detached, within the ε-ball of ``images`` and in ``[0, 255]``.
"""
from __future__ import annotations

import math
import numbers
from typing import Callable, ClassVar, Dict, NamedTuple, Optional, Type

import torch
import torch.nn.functional as F

IGNORE_INDEX = 255
PIXEL_MIN = 0.0
PIXEL_MAX = 255.0

ATTACKS: Dict[str, Type['Attack']] = {}


class AttackResult(NamedTuple):
    """What :meth:`Attack.run` returns: the adversarial images and per-image statistics.

    ``info`` maps a statistic's name to an ``(N,)`` tensor, e.g. ``{'queries': ...}`` for a
    score-based attack (model evaluations spent on each image) or ``{'chosen': ...}`` for an
    ensemble (index of the member attack kept for each image). Empty for most attacks.
    """

    adv: torch.Tensor
    info: Dict[str, torch.Tensor]


def register_attack(cls: Type['Attack']) -> Type['Attack']:
    """Class decorator: register an attack under ``cls.name`` (and its aliases)."""
    for key in (cls.name, *getattr(cls, 'aliases', ())):
        key = key.lower()
        if key in ATTACKS and ATTACKS[key] is not cls:
            raise KeyError(f'attack name {key!r} is already registered by {ATTACKS[key].__name__}')
        ATTACKS[key] = cls
    return cls


def attack_class(name: str) -> Type['Attack']:
    """Look up an attack class by (case-insensitive) name or alias."""
    key = str(name).lower()
    if key not in ATTACKS:
        known = ', '.join(sorted({c.name for c in ATTACKS.values()}))
        raise KeyError(f'unknown attack {name!r}; known attacks: {known}')
    return ATTACKS[key]


def check_epsilon(epsilon) -> float:
    """Validate an L∞ radius in 0–255 units: a finite number > 0."""
    if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real):
        raise ValueError(f'epsilon must be a number in 0-255 pixel units (e.g. 8), got {epsilon!r}')
    epsilon = float(epsilon)
    if not math.isfinite(epsilon) or epsilon <= 0:
        raise ValueError(f'epsilon must be a finite number > 0 in 0-255 pixel units (e.g. 8), got {epsilon!r}')
    return epsilon


def pixel_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                        ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Sum over pixels of the per-pixel cross-entropy; ignored pixels contribute 0.

    The sum (rather than the mean) keeps every image's gradient independent of the other images in
    the batch and of its number of valid pixels; sign-based attacks are unaffected by the scale.
    """
    return F.cross_entropy(logits, labels.long(), ignore_index=ignore_index, reduction='sum')


def least_likely(logits: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Per-pixel least-likely class ``(N, H, W)``; 255 where ``labels`` is 255 (no loss there)."""
    return Attack._mask_ignored(logits.argmin(dim=1), labels)


def project(x_adv: torch.Tensor, x: torch.Tensor, epsilon: float,
            mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Clip into the L∞ ε-ball around ``x``, zero the perturbation outside ``mask``, clip to [0, 255]."""
    delta = torch.clamp(x_adv - x, -epsilon, epsilon)
    if mask is not None:
        delta = delta * mask
    return torch.clamp(x + delta, PIXEL_MIN, PIXEL_MAX)


class Attack:
    """Base class of all attacks.

    Subclasses set ``name`` (registry key), ``targeted`` and implement :meth:`perturb`.

    Args:
        epsilon: L∞ radius in 0–255 pixel units.
    """

    name: ClassVar[str] = ''
    aliases: ClassVar[tuple] = ()
    targeted: ClassVar[bool] = False
    #: untargeted by default, but ``__call__`` also accepts an optional ``target`` (e.g. PGD);
    #: the runner still scores such attacks as untargeted, since ``targeted`` stays False
    accepts_target: ClassVar[bool] = False
    #: the attack cannot choose its own target: the caller must pass a target map (suites
    #: cannot describe target maps yet, so such attacks are refused there)
    needs_target_map: ClassVar[bool] = False
    #: a short label for tables and plots (the papers' names)
    display_name: ClassVar[str] = ''

    def __init__(self, epsilon: float):
        self.epsilon = check_epsilon(epsilon)

    # -- description -------------------------------------------------------------------------
    def params(self) -> Dict[str, object]:
        """Hyper-parameters other than ε, as JSON-friendly values (part of a result's cell key)."""
        return {}

    def gradient_passes(self) -> int:
        """Forward+backward passes per image the attack spends."""
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ', '.join(f'{k}={v!r}' for k, v in {'epsilon': self.epsilon, **self.params()}.items())
        return f'{type(self).__name__}({args})'

    # -- running -----------------------------------------------------------------------------
    def __call__(self, model: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                 labels: Optional[torch.Tensor] = None, target: Optional[torch.Tensor] = None,
                 mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.run(model, images, labels=labels, target=target, mask=mask).adv

    def run(self, model: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
            labels: Optional[torch.Tensor] = None, target: Optional[torch.Tensor] = None,
            mask: Optional[torch.Tensor] = None) -> AttackResult:
        """Like ``__call__``, but also returns the attack's per-image statistics (``info``)."""
        images = self._check_images(images)
        if labels is None:
            with torch.no_grad():
                labels = model(images).argmax(dim=1)
        labels = self._check_map(labels, images, 'labels')
        if target is not None:
            if not (self.targeted or self.accepts_target):
                raise ValueError(f'{self.name} is untargeted and takes no target')
            target = self._check_map(target, images, 'target')
        if mask is not None:
            mask = self._check_mask(mask, images)
        with torch.enable_grad():
            out = self.perturb(model, images, labels, target, mask)
        adv, info = (out.adv, dict(out.info)) if isinstance(out, AttackResult) else (out, {})
        return AttackResult(adv.detach(), info)

    def perturb(self, model, images, labels, target, mask):  # pragma: no cover
        """The algorithm, with validated arguments (labels always given).

        Returns the adversarial images, or an :class:`AttackResult` when the attack has per-image
        statistics to report.
        """
        raise NotImplementedError

    def reference_target(self, clean, labels: Optional[torch.Tensor] = None) -> Optional[torch.Tensor]:
        """Target map that targeted success is measured against (None for untargeted attacks).

        Args:
            clean: Clean outputs of the batch with attributes ``pred`` and ``least_likely``
                (``(N, H, W)`` int64 maps computed once per image by the runner).
            labels: The labels the attack was given (255 = no loss, hence no target).
        """
        return None

    @staticmethod
    def _mask_ignored(target: torch.Tensor, labels: Optional[torch.Tensor]) -> torch.Tensor:
        if labels is None:
            return target
        return torch.where(labels == IGNORE_INDEX, torch.full_like(target, IGNORE_INDEX), target)

    # -- helpers -------------------------------------------------------------------------------
    @staticmethod
    def loss_gradient(model, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Gradient of the summed pixel cross-entropy of ``model(x)`` w.r.t. ``x``."""
        x = x.detach().requires_grad_(True)
        return Attack.input_gradient(model(x), x, labels)

    @staticmethod
    def input_gradient(logits: torch.Tensor, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Gradient w.r.t. ``x`` of the summed pixel cross-entropy of ``logits`` (computed from ``x``)."""
        grad, = torch.autograd.grad(pixel_cross_entropy(logits, labels), x)
        return grad

    @staticmethod
    def _check_images(images: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(images) or images.dim() != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
            raise ValueError(f'images must be a float tensor (N, 3, H, W) in [0, 255], got {shape}')
        images = images.detach().float()
        lo, hi = float(images.min()), float(images.max())
        if lo < PIXEL_MIN or hi > PIXEL_MAX:
            raise ValueError(f'images must be in [0, 255] (pixel units), got values in [{lo:g}, {hi:g}]')
        return images

    @staticmethod
    def _check_map(labels: torch.Tensor, images: torch.Tensor, what: str) -> torch.Tensor:
        n, _, h, w = images.shape
        if tuple(labels.shape) != (n, h, w):
            raise ValueError(f'{what} must have shape (N, H, W) = {(n, h, w)}, got {tuple(labels.shape)}')
        return labels.to(images.device).long()

    @staticmethod
    def _check_mask(mask: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        n, _, h, w = images.shape
        if mask.dim() == 3:
            mask = mask[:, None]
        if tuple(mask.shape) != (n, 1, h, w):
            raise ValueError(f'mask must have shape (N, H, W) = {(n, h, w)}, got {tuple(mask.shape)}')
        return mask.to(images.device).float()


def arnab_num_steps(epsilon: float) -> int:
    """Iterations of the iterative attacks: ``min(ε + 4, ⌈1.25 ε⌉)`` (Kurakin et al., Arnab et al.).

    For a non-integer ε the minimum is rounded up, so the attack can always reach the ε-ball
    boundary with α = 1 steps.

    ε = 0.25 → 1, 0.5 → 1, 1 → 2, 2 → 3, 4 → 5, 8 → 10, 16 → 20, 32 → 36.
    """
    epsilon = check_epsilon(epsilon)
    # ⌈min(ε + 4, 1.25 ε)⌉ = min(⌈ε + 4⌉, ⌈1.25 ε⌉); rounding guards against 1.25 * ε float error
    return int(max(1, math.ceil(round(min(epsilon + 4.0, 1.25 * epsilon), 9))))
