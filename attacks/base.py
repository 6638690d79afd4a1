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
:meth:`Attack.run` also returns per-image statistics and takes ``mask_mode``: ``'project'``
(default; the perturbation is zeroed outside the mask at every step) or ``'posthoc'`` (Fischer et
al. 2017, https://arxiv.org/abs/1703.01101, Sec. 3: the attack runs on the whole image and the
finished perturbation is kept on the masked pixels only).

:meth:`Attack.run_grid` attacks one batch at several ε and returns one result per ε, each
bit-identical to what ``attack.with_epsilon(ε).run(...)`` returns alone; attacks whose work can be
shared across ε (FGSM: one gradient; Iterative FGSM: the first steps of the trajectory) do it once
and say so in :attr:`AttackResult.shared_gradient_passes`.

Across attacks, :class:`SharedGradients` memoises the sign of the input gradient at the clean
images: FGSM's step is Iterative FGSM's first step and FGSM II's is Iterative FGSM II's (Arnab et
al. 2018, https://arxiv.org/abs/1711.09856, eqs. 3–6), so one ``SharedGradients`` per (model, batch)
passed to their ``run`` / ``run_grid`` (``shared=...``) computes it once for all four.
"""
from __future__ import annotations

import contextlib
import inspect
import math
import numbers
from typing import (Any, Callable, ClassVar, ContextManager, Dict, List, NamedTuple, Optional,
                    Sequence, Tuple, Type)

import torch
import torch.nn.functional as F

from common.errors import ConfigError

IGNORE_INDEX = 255
PIXEL_MIN = 0.0
PIXEL_MAX = 255.0

#: how a mask restricts the perturbation: at every step, or once on the finished perturbation
MASK_MODES = ('project', 'posthoc')

ATTACKS: Dict[str, Type['Attack']] = {}

#: ``meter(i)`` of :meth:`Attack.run_grid`: a context manager entered around the work done for
#: the i-th ε of the grid (e.g. to count the model's passes and time per ε)
Meter = Callable[[int], ContextManager]


class AttackInputError(ConfigError, ValueError):
    """A bad argument to an attack call (mask mode, ε grid); a ``ValueError`` too, so code that
    wraps the attacks' ``ValueError`` keeps working."""


class AttackResult(NamedTuple):
    """What :meth:`Attack.run` returns: the adversarial images, per-image statistics and the cost.

    ``info`` maps a statistic's name to an ``(N,)`` tensor, e.g. ``{'queries': ...}`` for a
    score-based attack (model evaluations spent on each image) or ``{'chosen': ...}`` for an
    ensemble (index of the member attack kept for each image). Empty for most attacks.

    ``gradient_passes`` is the number of forward+backward passes per image the result stands for,
    as if the attack had run alone (``Attack.gradient_passes()`` of the attack at this ε: a
    record's ``gradient_passes_per_image``). ``shared_gradient_passes`` is how many of them were
    not spent for this result because :meth:`Attack.run_grid` computed them once for several ε
    and counted them with another result of the grid, or because another attack of the batch
    had computed the clean-image gradient in the :class:`SharedGradients` passed as ``shared``
    (a record's ``shared_gradient_passes_per_image``; 0 for :meth:`Attack.run` without
    ``shared``).
    """

    adv: torch.Tensor
    info: Dict[str, torch.Tensor]
    gradient_passes: Optional[int] = None
    shared_gradient_passes: int = 0

    @property
    def own_gradient_passes(self) -> Optional[int]:
        """Gradient passes per image actually spent on this result (total minus shared)."""
        if self.gradient_passes is None:
            return None
        return self.gradient_passes - self.shared_gradient_passes


class AttackInputs(NamedTuple):
    """Validated arguments of an attack call (see :meth:`Attack.prepare_inputs`)."""

    images: torch.Tensor              # (N, 3, H, W) float32 in [0, 255], detached
    labels: torch.Tensor              # (N, H, W) int64 (the clean prediction if none was given)
    target: Optional[torch.Tensor]    # (N, H, W) int64 or None
    mask: Optional[torch.Tensor]      # (N, 1, H, W) float or None
    #: clean-image gradient signs shared with the other attacks of the batch (None: no sharing)
    shared: Optional['SharedGradients'] = None


#: bit patterns of the float dtypes a sign may have (to compare signs bit for bit)
_BITS = {torch.float32: torch.int32, torch.float64: torch.int64, torch.float16: torch.int16,
         torch.bfloat16: torch.int16}


class PackedSign(NamedTuple):
    """A gradient's sign kept compactly: int8 (1 byte per value) when that round trip is bit-exact.

    ``torch.sign`` gives −1, +0 or +1, which int8 holds exactly (a Cityscapes image, 2048×1024×3,
    then takes 6 MB instead of 25 MB in float32). Should a sign hold anything else (a NaN or a −0
    on some backend), the float tensor itself is kept, so :meth:`unpack` always returns exactly
    the tensor that was packed, bit for bit.
    """

    data: torch.Tensor
    dtype: torch.dtype

    @classmethod
    def pack(cls, sign: torch.Tensor) -> 'PackedSign':
        sign = sign.detach()
        bits = _BITS.get(sign.dtype)
        if bits is not None:
            small = sign.to(torch.int8)
            if torch.equal(small.to(sign.dtype).view(bits), sign.view(bits)):
                return cls(small, sign.dtype)
        return cls(sign, sign.dtype)

    def unpack(self) -> torch.Tensor:
        return self.data.to(self.dtype)


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same shape, dtype, device and values (``torch.equal``; a NaN never matches)."""
    return (a.shape == b.shape and a.dtype == b.dtype and a.device == b.device
            and bool(torch.equal(a, b)))


class _SignEntry(NamedTuple):
    model: Any
    kind: str
    images: torch.Tensor
    y: torch.Tensor
    sign: PackedSign


class SharedGradients:
    """Memo of ``sign(∇_x L)`` at the clean images, shared by the attacks of one batch.

    FGSM's gradient (Goodfellow et al. 2015; Arnab et al. 2018, https://arxiv.org/abs/1711.09856,
    eq. 3) is Iterative FGSM's first step (eq. 5: the same summed pixel cross-entropy towards the
    same labels at ``x_0 = x``), and FGSM II's (eq. 4) is Iterative FGSM II's first step (eq. 6: the
    least likely class of the same clean logits). A caller creates one ``SharedGradients`` per
    (model, batch) and passes it to every attack's ``run`` / ``run_grid`` (``shared=...``): the
    first attack that needs such a gradient computes it and stores its sign (int8,
    :class:`PackedSign`), the others step from the stored sign. Over Arnab et al.'s four attacks
    and ε grid that is 80 gradient passes per image instead of 96, every result bit-identical to
    the attack run alone.

    An entry is keyed on the exact computation: the model object (identity), the loss ``kind`` and
    the tensors it reads, compared by value (``torch.equal``, after shape, dtype and device), never
    by identity alone. Keys are stored as copies, made once per distinct tensor, so changing the
    caller's tensors in place afterwards cannot produce a false hit. Kinds:

    * ``'ce'``: :func:`pixel_cross_entropy` of ``model(images)`` towards ``y`` (FGSM and Iterative
      FGSM towards the labels; FGSM II and Iterative FGSM II towards a fixed target map);
    * ``'least_likely'``: the same towards :func:`least_likely` of ``model(images)``, with
      ``y`` = the labels (255 = no loss) (FGSM II and Iterative FGSM II without a target).

    A hit spends no model pass; the result that used it counts it in
    :attr:`AttackResult.shared_gradient_passes`, the one that computed it as its own. The model
    must be a fixed function of its input over the memo's life (eval mode, weights unchanged).

    The memo holds clean-image entries only (a handful per batch: one per kind and label map) and
    at most ``max_entries``, dropping the oldest beyond that; use a new one for every batch.

    Attributes:
        hits, misses: Lookups answered from the memo / computed and stored.
    """

    KINDS = ('ce', 'least_likely')

    def __init__(self, max_entries: int = 8):
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ValueError(f'max_entries must be a positive integer, got {max_entries!r}')
        self.max_entries = max_entries
        self._entries: List[_SignEntry] = []
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f'SharedGradients(entries={len(self)}, hits={self.hits}, misses={self.misses})'

    def clean_sign(self, model, kind: str, images: torch.Tensor, y: torch.Tensor,
                   compute: Callable[[], torch.Tensor]) -> Tuple[torch.Tensor, bool]:
        """``sign(∇_x L)`` at ``images`` for the loss ``kind`` towards ``y``, and whether it was shared.

        Args:
            model: The model the loss is computed with (matched by identity).
            kind: ``'ce'`` or ``'least_likely'`` (see the class docstring).
            images: The clean images the gradient is taken at.
            y: The label map of the loss (``'ce'``: its target; ``'least_likely'``: the labels
                whose 255 pixels get no loss).
            compute: Called on a miss; computes the sign (one gradient pass) exactly as the
                caller would without the memo.

        Returns:
            ``(sign, hit)``: on a hit the stored sign (bit-identical to what ``compute`` gave its
            first caller) and True; on a miss ``compute()`` itself, now stored, and False.
        """
        if kind not in self.KINDS:
            raise ValueError(f'unknown gradient kind {kind!r}; known: {", ".join(self.KINDS)}')
        for entry in self._entries:
            if (entry.model is model and entry.kind == kind and _same_tensor(entry.images, images)
                    and _same_tensor(entry.y, y)):
                self.hits += 1
                return entry.sign.unpack(), True
        sign = compute()
        self.misses += 1
        self._entries.append(_SignEntry(model, kind, self._intern(images), self._intern(y),
                                        PackedSign.pack(sign)))
        del self._entries[:-self.max_entries]
        return sign, False

    def _intern(self, t: torch.Tensor) -> torch.Tensor:
        """A private copy of ``t``, one per distinct tensor (entries of a batch share theirs)."""
        for entry in self._entries:
            for kept in (entry.images, entry.y):
                if _same_tensor(kept, t):
                    return kept
        return t.detach().clone()


def check_shared(shared) -> Optional[SharedGradients]:
    """Validate the ``shared`` argument of ``run`` / ``run_grid``: None or a :class:`SharedGradients`."""
    if shared is not None and not isinstance(shared, SharedGradients):
        raise AttackInputError(f'shared must be an attacks.base.SharedGradients (one per model and '
                               f'batch) or None, got {type(shared).__name__}')
    return shared


def takes_from(obj, owner: type, *names: str) -> bool:
    """True when ``type(obj)`` inherits every method in ``names`` from ``owner`` unchanged.

    Guards the sharing of a gradient: a subclass that redefines the loss (e.g. Metzen et al.'s
    weighted loss in :class:`~attacks.targeted.TargetedIterativeFGSM`) computes another gradient,
    so it must not take the one its base class would compute.
    """
    return all(getattr(type(obj), name, None) is getattr(owner, name) for name in names)


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


def check_mask_mode(mask_mode) -> str:
    """Validate ``mask_mode``: ``'project'`` or ``'posthoc'``."""
    if mask_mode not in MASK_MODES:
        raise AttackInputError(
            f"mask_mode must be 'project' (the perturbation is zeroed outside the mask at every "
            f"step) or 'posthoc' (Fischer et al.: attack the whole image, keep the finished "
            f"perturbation on the mask only), got {mask_mode!r}")
    return mask_mode


def apply_posthoc_mask(images: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Keep the finished perturbation ``adv − images`` on the masked pixels only (Fischer et al.
    2017, https://arxiv.org/abs/1703.01101, Sec. 3): ``images + (adv − images) · mask``.

    ``mask`` is ``(N, H, W)`` or ``(N, 1, H, W)``, 1 where the perturbation is kept.
    """
    if mask.dim() == 3:
        mask = mask[:, None]
    return images + (adv - images) * mask.to(adv.dtype)


def member_weighted(logits: torch.Tensor,
                    loss_fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``Σ_k w_k loss_fn(z_k)`` for an ensemble's output, ``loss_fn(logits)`` for any other logits.

    An ensemble source (:class:`model_zoo.wrappers.EnsembleModel`) returns logits that carry its
    members' own logits and weights in ``loss_terms``: one attack then ascends the weighted sum of
    the members' losses (Poursaeed et al. 2018, https://arxiv.org/abs/1712.02328, fooling several
    models at once), not a loss of averaged logits. Works for scalar losses and per-pixel loss maps
    (the terms are added elementwise). Every loss of the attacks goes through here.
    """
    terms = getattr(logits, 'loss_terms', None)
    if terms is None:
        return loss_fn(logits)
    total = None
    for weight, member in terms:
        term = loss_fn(member) * weight
        total = term if total is None else total + term
    return total


def pixel_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                        ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Sum over pixels of the per-pixel cross-entropy; ignored pixels contribute 0.

    The sum (rather than the mean) keeps every image's gradient independent of the other images in
    the batch and of its number of valid pixels; sign-based attacks are unaffected by the scale.
    For an ensemble's output, the weighted sum of its members' losses (:func:`member_weighted`).
    """
    return member_weighted(logits, lambda z: F.cross_entropy(z, labels.long(), ignore_index=ignore_index,
                                                             reduction='sum'))


def least_likely(logits: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Per-pixel least-likely class ``(N, H, W)``; 255 where ``labels`` is 255 (no loss there)."""
    # min(...).indices: the same first-minimum index as argmin, several times faster over the
    # channel dimension on CPU
    return Attack._mask_ignored(logits.min(dim=1).indices, labels)


def project(x_adv: torch.Tensor, x: torch.Tensor, epsilon: float,
            mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Clip into the L∞ ε-ball around ``x``, zero the perturbation outside ``mask``, clip to [0, 255]."""
    delta = torch.clamp(x_adv - x, -epsilon, epsilon)
    if mask is not None:
        delta = delta * mask
    return torch.clamp(x + delta, PIXEL_MIN, PIXEL_MAX)


class Attack:
    """Base class of all attacks.

    Subclasses set ``name`` (registry key), ``targeted`` and implement :meth:`perturb`; an attack
    that can share work across an ε grid also overrides :meth:`perturb_grid`.

    The constructor's arguments are recorded (by ``__new__``, so subclasses need no code for it):
    :meth:`with_epsilon` rebuilds the same configuration at another ε from them, which is what
    :meth:`run_grid` runs at every ε of its grid.

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

    def __new__(cls, *args, **kwargs):
        self = super().__new__(cls)
        # the arguments as given (not params(): e.g. IterativeFGSM's num_steps defaults from ε,
        # so a rebuild at another ε must not inherit the value computed for this one)
        self._init_args = (args, dict(kwargs))
        return self

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

    # -- the same configuration at another ε ---------------------------------------------------
    def _bound_init_args(self) -> inspect.BoundArguments:
        args, kwargs = getattr(self, '_init_args', ((), {}))
        try:
            bound = inspect.signature(type(self).__init__).bind(None, *args, **kwargs)
        except TypeError as e:   # pragma: no cover - the constructor itself would have refused them
            raise AttackInputError(f'{type(self).__name__}: cannot recover the constructor '
                                   f'arguments {args}, {kwargs}: {e}') from None
        if 'epsilon' not in inspect.signature(type(self).__init__).parameters:
            raise AttackInputError(f'{type(self).__name__}.__init__ has no epsilon argument, so the '
                                   'attack cannot be rebuilt at another ε')
        return bound

    @property
    def init_kwargs(self) -> Dict[str, Any]:
        """The keyword arguments the attack was constructed with, ε excluded (as given, defaults
        not filled in): ``type(a)(epsilon=a.epsilon, **a.init_kwargs)`` rebuilds ``a``."""
        bound = self._bound_init_args()
        out: Dict[str, Any] = {}
        params = inspect.signature(type(self).__init__).parameters
        for name, value in list(bound.arguments.items())[1:]:      # [0] is self
            kind = params[name].kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                out.update(value)
            elif kind is inspect.Parameter.VAR_POSITIONAL:
                if value:
                    raise AttackInputError(f'{type(self).__name__} was given extra positional '
                                           f'arguments {value}, which have no keyword form')
            elif name != 'epsilon':
                out[name] = value
        return out

    def with_epsilon(self, epsilon: float) -> 'Attack':
        """The same attack (the constructor arguments it was given) at radius ``epsilon``.

        Arguments that default from ε are recomputed for the new ε (e.g. Iterative FGSM's number
        of steps), exactly as ``build_attack(entry, epsilon)`` would build it. Fitted state (of
        universal or generative attacks) is not carried over: it belongs to the old ε.
        """
        return type(self)(epsilon=check_epsilon(epsilon), **self.init_kwargs)

    # -- running -----------------------------------------------------------------------------
    def __call__(self, model: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                 labels: Optional[torch.Tensor] = None, target: Optional[torch.Tensor] = None,
                 mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.run(model, images, labels=labels, target=target, mask=mask).adv

    def prepare_inputs(self, model: Optional[Callable[[torch.Tensor], torch.Tensor]],
                       images: torch.Tensor, labels: Optional[torch.Tensor] = None,
                       target: Optional[torch.Tensor] = None,
                       mask: Optional[torch.Tensor] = None) -> AttackInputs:
        """Validate the arguments of :meth:`run` and fill in the labels.

        Returns float32 images, int64 ``(N, H, W)`` labels (the clean prediction of ``model`` when
        none are given: one forward pass), int64 target and ``(N, 1, H, W)`` float mask, all on
        the images' device. Raises ``ValueError`` naming the first bad argument.
        """
        images = self.check_images(images)
        if labels is None:
            with torch.no_grad():
                labels = model(images).max(dim=1).indices   # argmax's index, faster on CPU
        labels = self.check_map(labels, images, 'labels')
        if target is not None:
            if not (self.targeted or self.accepts_target):
                raise ValueError(f'{self.name} is untargeted and takes no target')
            target = self.check_map(target, images, 'target')
        if mask is not None:
            mask = self.check_mask(mask, images)
        return AttackInputs(images, labels, target, mask)

    def run(self, model: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
            labels: Optional[torch.Tensor] = None, target: Optional[torch.Tensor] = None,
            mask: Optional[torch.Tensor] = None, mask_mode: str = 'project',
            shared: Optional[SharedGradients] = None) -> AttackResult:
        """Like ``__call__``, but also returns the attack's per-image statistics (``info``) and cost.

        Args:
            model: Pixel-space model, ``(N, 3, H, W)`` in [0, 255] → ``(N, C, H, W)`` logits.
            images: ``(N, 3, H, W)`` float RGB images in [0, 255].
            labels: ``(N, H, W)`` reference labels; default the clean prediction of ``model``.
            target: ``(N, H, W)`` target map (targeted attacks and those accepting one).
            mask: ``(N, H, W)`` or ``(N, 1, H, W)``, where the perturbation may be non-zero.
            mask_mode: ``'project'`` (default): the perturbation is zeroed outside ``mask`` at
                every step. ``'posthoc'``: the attack runs on the whole image and the finished
                perturbation is kept on ``mask`` only (Fischer et al. 2017,
                https://arxiv.org/abs/1703.01101, Sec. 3).
            shared: A :class:`SharedGradients` of this model and batch, shared with the other
                attacks run on it: FGSM, FGSM II and the first step of Iterative FGSM (II) take
                the clean-image gradient from it when another attack computed it already (the
                result then counts that pass in ``shared_gradient_passes``). Other attacks ignore
                it. Default None: nothing is shared.
        """
        mask_mode = check_mask_mode(mask_mode)
        shared = check_shared(shared)
        inputs = self.prepare_inputs(model, images, labels, target, mask)._replace(shared=shared)
        result = self._attack(model, inputs, mask_mode)
        return self._finish(result, inputs, mask_mode)

    def run_grid(self, model: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                 epsilons: Sequence[float], labels: Optional[torch.Tensor] = None,
                 target: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None,
                 mask_mode: str = 'project', meter: Optional[Meter] = None,
                 shared: Optional[SharedGradients] = None) -> List[AttackResult]:
        """Attack one batch at every ε of ``epsilons``; one result per ε, in the order given.

        The result for ε is bit-identical to ``self.with_epsilon(ε).run(model, images, labels,
        target, mask, mask_mode)`` (``self`` itself for its own ε). Every ε starts from the
        global random state ``run_grid`` was called with, as if the caller had seeded before each
        separate ``run``; the global random state is left as it was. Work shared across ε is
        done once and counted with the result of the largest ε (the first one if it repeats);
        the others report it in :attr:`AttackResult.shared_gradient_passes`. A repeated ε gets
        the result computed for its first occurrence, wholly shared.

        By default every ε is attacked on its own; :class:`~attacks.fgsm.FGSM` and FGSM II
        compute their one gradient once, and :class:`~attacks.ifgsm.IterativeFGSM` and its
        subclasses share the first steps of their trajectories and the gradient at each branch
        point (see their ``perturb_grid``).

        Args:
            model, images, labels, target, mask, mask_mode: As in :meth:`run` (the labels, if
                not given, are computed once for the whole grid).
            epsilons: Non-empty sequence of L∞ radii in 0–255 pixel units.
            meter: Optional ``meter(i)`` returning a context manager that is entered around the
                work done for ``epsilons[i]`` alone (e.g. to count the model's passes per ε);
                shared work, the labels' forward pass included, is done inside ``meter(i)`` of
                the result it is counted with.
            shared: A :class:`SharedGradients` of this model and batch, as in :meth:`run`: a
                clean-image gradient another attack of the batch computed is not computed again
                (each result that steps from it counts it as shared).

        Returns:
            ``len(epsilons)`` :class:`AttackResult`, the i-th for ``epsilons[i]``.
        """
        mask_mode = check_mask_mode(mask_mode)
        shared = check_shared(shared)
        grid = self._grid(epsilons)
        meter = meter or (lambda i: contextlib.nullcontext())
        distinct = sorted(set(grid), key=grid.index)            # first occurrences, in order
        attacks = [self if eps == self.epsilon else self.with_epsilon(eps) for eps in distinct]
        lead = max(range(len(distinct)), key=lambda i: (distinct[i], -i))
        with meter(grid.index(distinct[lead])):
            inputs = self.prepare_inputs(model, images, labels, target, mask)._replace(shared=shared)
        results = self.perturb_grid(model, inputs, attacks, mask_mode,
                                    lambda i: meter(grid.index(distinct[i])))
        results = [self._finish(r, inputs, mask_mode) for r in results]
        out = []
        for i, eps in enumerate(grid):
            r = results[distinct.index(eps)]
            if grid.index(eps) != i:      # a repeated ε: its first occurrence paid for everything
                r = r._replace(shared_gradient_passes=r.gradient_passes or 0)
            out.append(r)
        return out

    def perturb_grid(self, model, inputs: AttackInputs, attacks: List['Attack'], mask_mode: str,
                     meter: Meter) -> List[AttackResult]:
        """The attacks of a grid (``attacks[i]`` at the i-th distinct ε) on validated inputs.

        The default attacks every ε on its own, each from the random state of the call.
        Overrides share work across ε; they must give every result bit-identical to
        ``attacks[i]._attack(model, inputs, mask_mode)`` and report the passes they did not spend
        for it in ``shared_gradient_passes``. ``meter(i)`` wraps the work done for ``attacks[i]``.
        """
        devices = [inputs.images.device.index or 0] if inputs.images.is_cuda else []
        results = []
        for i, attack in enumerate(attacks):
            with meter(i), torch.random.fork_rng(devices=devices):
                results.append(attack._attack(model, inputs, mask_mode))
        return results

    def _attack(self, model, inputs: AttackInputs, mask_mode: str) -> AttackResult:
        """Run :meth:`perturb` on validated inputs (the mask only in ``'project'`` mode)."""
        with torch.enable_grad():
            out = self.perturb(model, inputs.images, inputs.labels, inputs.target,
                               inputs.mask if mask_mode == 'project' else None)
        return self._result(out)

    def _result(self, out, shared_gradient_passes: int = 0) -> AttackResult:
        """An :class:`AttackResult` (adv detached, cost filled in) from what ``perturb`` returned."""
        if isinstance(out, AttackResult):
            adv, info, passes = out.adv, dict(out.info), out.gradient_passes
        else:
            adv, info, passes = out, {}, None
        if passes is None:
            try:
                passes = self.gradient_passes()
            except NotImplementedError:
                passes = None
        return AttackResult(adv.detach(), info, passes, shared_gradient_passes)

    @staticmethod
    def _finish(result: AttackResult, inputs: AttackInputs, mask_mode: str) -> AttackResult:
        if mask_mode == 'posthoc' and inputs.mask is not None:
            result = result._replace(adv=apply_posthoc_mask(inputs.images, result.adv, inputs.mask))
        return result

    def _grid(self, epsilons: Sequence[float]) -> List[float]:
        """``epsilons`` validated as a non-empty sequence of radii (floats, order kept)."""
        if isinstance(epsilons, (str, bytes)) or not isinstance(epsilons, Sequence) or not epsilons:
            raise AttackInputError(f'{self.name}: epsilons must be a non-empty list of L∞ radii in '
                                   f'0-255 pixel units, e.g. [0.25, 0.5, 1, 2, 4, 8], got {epsilons!r}')
        try:
            return [check_epsilon(eps) for eps in epsilons]
        except ValueError as e:
            raise AttackInputError(f'{self.name}: epsilons {list(epsilons)!r}: {e}') from None

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

    # -- argument checks (public: callers that hold tensors for an attack may validate them) ----
    @staticmethod
    def check_images(images: torch.Tensor) -> torch.Tensor:
        """``images`` as detached float32 ``(N, 3, H, W)`` in [0, 255]; ``ValueError`` otherwise."""
        if not torch.is_tensor(images) or images.dim() != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
            raise ValueError(f'images must be a float tensor (N, 3, H, W) in [0, 255], got {shape}')
        images = images.detach().float()
        lo, hi = float(images.min()), float(images.max())
        if lo < PIXEL_MIN or hi > PIXEL_MAX:
            raise ValueError(f'images must be in [0, 255] (pixel units), got values in [{lo:g}, {hi:g}]')
        return images

    @staticmethod
    def check_map(labels: torch.Tensor, images: torch.Tensor, what: str) -> torch.Tensor:
        """A label or target map as int64 ``(N, H, W)`` on the images' device; ``ValueError``
        naming ``what`` if its shape does not match ``images``."""
        n, _, h, w = images.shape
        if tuple(labels.shape) != (n, h, w):
            raise ValueError(f'{what} must have shape (N, H, W) = {(n, h, w)}, got {tuple(labels.shape)}')
        return labels.to(images.device).long()

    @staticmethod
    def check_mask(mask: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """A mask ``(N, H, W)`` or ``(N, 1, H, W)`` as float ``(N, 1, H, W)`` on the images' device."""
        n, _, h, w = images.shape
        if mask.dim() == 3:
            mask = mask[:, None]
        if tuple(mask.shape) != (n, 1, h, w):
            raise ValueError(f'mask must have shape (N, H, W) = {(n, h, w)}, got {tuple(mask.shape)}')
        return mask.to(images.device).float()

    # the former private names (kept for callers written before the checks were public)
    _check_images = check_images
    _check_map = check_map
    _check_mask = check_mask


def arnab_num_steps(epsilon: float) -> int:
    """Iterations of the iterative attacks: ``min(ε + 4, ⌈1.25 ε⌉)`` (Kurakin et al., Arnab et al.).

    For a non-integer ε the minimum is rounded up, so the attack can always reach the ε-ball
    boundary with α = 1 steps.

    ε = 0.25 → 1, 0.5 → 1, 1 → 2, 2 → 3, 4 → 5, 8 → 10, 16 → 20, 32 → 36.
    """
    epsilon = check_epsilon(epsilon)
    # ⌈min(ε + 4, 1.25 ε)⌉ = min(⌈ε + 4⌉, ⌈1.25 ε⌉); rounding guards against 1.25 * ε float error
    return int(max(1, math.ceil(round(min(epsilon + 4.0, 1.25 * epsilon), 9))))
