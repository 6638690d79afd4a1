"""Attacks fitted once on a training split and stored: the base of universal and generative attacks.

Universal perturbations (Metzen et al. 2017) and generative perturbations (Poursaeed et al. 2018)
are not computed per image: they are *fitted* on images of a training split, stored as an
artifact (a perturbation array or generator weights, plus metadata), and then *applied* to
held-out images, possibly by later runs and other processes that load the artifact::

    attack = UniversalPerturbation(epsilon=10, tile_size=(32, 32))
    attack.fit(model, batches)                 # batches() yields FitBatch(images, labels, target)
    attack.save('results/suite/artifacts/universal.pt', metadata={'model': 'fcn_...'})
    ...
    attack = UniversalPerturbation(epsilon=10, tile_size=(32, 32)).load('.../universal.pt')
    adv = attack.apply(images)                 # the stored perturbation; attack(model, images) too

Artifacts are ``torch.save`` files holding only tensors and one JSON string, so :meth:`load` uses
``torch.load(weights_only=True)`` (no arbitrary unpickling). They record the attack's name, ε and
hyper-parameters, and loading refuses an artifact fitted with different ones.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Union

import torch

from .base import Attack, AttackInputError, AttackResult

ARTIFACT_FORMAT = 'segbench-attack-artifact-v1'


class FitBatch(NamedTuple):
    """One batch of the fitting split, as :meth:`FittedAttack.fit` receives it."""

    images: torch.Tensor              # (N, 3, H, W) float RGB in [0, 255]
    labels: torch.Tensor              # (N, H, W) int64 reference labels (clean prediction or ground truth), 255 = no loss
    target: Optional[torch.Tensor]    # (N, H, W) int64 target map of a targeted attack, or None


#: A zero-argument callable returning a fresh iterator over the fitting split, the same batches at
#: every call. A split small enough (:data:`FIT_REPLAY_BYTES`) is read once and replayed from memory
#: on later passes (:class:`ReplayedFitData`); a larger one is read again at every pass, so an
#: attack can iterate several epochs without holding every image.
FitData = Callable[[], Iterable[FitBatch]]

#: Largest fitting split (bytes of its images, labels and targets) that :meth:`FittedAttack.fit`
#: keeps in memory after the first pass instead of reading it again at every pass. The suites' 64
#: fitting images of 128×256 with labels and targets take 59 MB; 2975 Cityscapes images at
#: 2048×1024 would take 170 GB and are read again at every pass.
FIT_REPLAY_BYTES = 1 << 30


def _batch_bytes(batch) -> int:
    if not isinstance(batch, tuple):
        return 0
    return sum(t.numel() * t.element_size() for t in batch if torch.is_tensor(t))


def _copy_batch(batch):
    """A copy of a batch's tensors, in a tuple of the same type (anything else as it is: the
    attack's own checks reject it)."""
    if not isinstance(batch, tuple):
        return batch
    items = [t.detach().clone() if torch.is_tensor(t) else t for t in batch]
    return type(batch)(*items) if hasattr(batch, '_fields') else tuple(items)


class ReplayedFitData:
    """A :data:`FitData` that reads the split from ``batches()`` once and replays it afterwards.

    Every pass over the fitting split otherwise re-reads its images and rebuilds its labels and
    target maps (for the runner: decoding the images, stacking the clean predictions, building
    hide-class targets), the same tensors each time; replaying them from memory makes a pass
    cost only the model's forward and backward passes. The first pass yields the source's batches
    as they come and keeps a copy of each (so a source that reuses its buffers cannot change the
    kept ones); once that pass has been read to its end, later calls replay the copies. If the
    split exceeds ``max_bytes``, or the source sets ``replayable = False`` (e.g. it augments the
    images differently at every pass), every call reads the source again, as before.

    ``source_calls`` counts the calls of the source.
    """

    def __init__(self, batches: FitData, max_bytes: Optional[int] = None):
        self.source = batches
        self.max_bytes = FIT_REPLAY_BYTES if max_bytes is None else int(max_bytes)
        self.replay = getattr(batches, 'replayable', True) is not False and self.max_bytes > 0
        self.source_calls = 0
        self._kept: Optional[List[FitBatch]] = None

    def __call__(self) -> Iterator[FitBatch]:
        if self._kept is not None:
            return iter(self._kept)
        return self._read()

    def _read(self) -> Iterator[FitBatch]:
        self.source_calls += 1
        kept: Optional[list] = [] if self.replay else None
        size = 0
        for batch in self.source():
            if kept is not None:
                size += _batch_bytes(batch)
                if size > self.max_bytes:
                    kept = None                  # too large: read the source at every pass
                else:
                    kept.append(_copy_batch(batch))
            yield batch
        if kept is not None:                     # the whole pass was read: replay it from now on
            self._kept = kept


class FittedAttack(Attack):
    """Base class of attacks that are fitted on a training split, stored and then applied.

    Subclasses implement :meth:`fit` (which must end with the attack ready to apply),
    :meth:`state_dict` / :meth:`load_state_dict` (tensors only) and :meth:`perturb` (apply).
    """

    #: the runner must call :meth:`fit` (or :meth:`load`) before the attack can be applied
    requires_fit = True

    def __init__(self, epsilon: float):
        super().__init__(epsilon)
        self.fit_info: Dict[str, Any] = {}

    # -- to implement ----------------------------------------------------------------------------
    def fit(self, model, batches: FitData, progress: bool = False) -> 'FittedAttack':  # pragma: no cover
        """Fit on the batches of a training split; returns ``self``."""
        raise NotImplementedError

    def state_dict(self) -> Dict[str, torch.Tensor]:  # pragma: no cover
        """The fitted state as tensors (what :meth:`save` stores)."""
        raise NotImplementedError

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:  # pragma: no cover
        raise NotImplementedError

    @property
    def fitted(self) -> bool:  # pragma: no cover
        raise NotImplementedError

    def check_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError(f'{self.name}: the attack is not fitted; call fit(model, batches) on a '
                               'training split or load(path) of a stored artifact before applying it')

    def run_grid(self, model, images: torch.Tensor, epsilons: Sequence[float],
                 labels: Optional[torch.Tensor] = None, target: Optional[torch.Tensor] = None,
                 mask: Optional[torch.Tensor] = None, mask_mode: str = 'project',
                 meter=None) -> List[AttackResult]:
        """Only the attack's own ε: a fitted attack is fitted for one ε, so a grid of several ε
        needs one fitted attack per ε (as a suite builds them), each run at its own ε.

        Raises:
            AttackInputError: ``epsilons`` holds another ε than the attack's.
        """
        others = sorted({float(e) for e in self._grid(epsilons)} - {self.epsilon})
        if others:
            raise AttackInputError(
                f'{self.name} was fitted for ε={self.epsilon:g} and cannot be applied at '
                f'ε={", ".join(f"{e:g}" for e in others)}: fit one attack per ε (a suite builds '
                'one per ε) and call run or run_grid([its ε]) on each')
        return super().run_grid(model, images, epsilons, labels=labels, target=target, mask=mask,
                                mask_mode=mask_mode, meter=meter)

    def apply(self, images: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The adversarial images of a fitted attack; no model needed (the perturbation, or the
        generator that makes it, was fitted beforehand)."""
        self.check_fitted()
        images = self.check_images(images)
        if mask is not None:
            mask = self.check_mask(mask, images)
        with torch.no_grad():
            out = self.perturb(None, images, None, None, mask)
        return (out.adv if hasattr(out, 'adv') else out).detach()

    # -- artifacts -----------------------------------------------------------------------------
    def artifact_metadata(self) -> Dict[str, Any]:
        return {'format': ARTIFACT_FORMAT, 'attack': self.name, 'epsilon': self.epsilon,
                'params': self.params(), 'fit_info': self.fit_info}

    def save(self, path: Union[str, Path], metadata: Optional[Dict[str, Any]] = None) -> Path:
        """Write the fitted state and its metadata atomically to ``path``; returns the path.

        ``metadata`` (JSON-serialisable, e.g. the model and the fitting split) is stored under
        ``metadata['run']`` and returned by :func:`read_artifact_metadata`.
        """
        self.check_fitted()
        meta = dict(self.artifact_metadata(), run=metadata or {})
        payload = {'metadata': json.dumps(meta, sort_keys=True),
                   'state': {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}}
        buf = io.BytesIO()
        torch.save(payload, buf)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
        try:
            # mkstemp makes the file readable by its owner only; give it the mode open() would
            # (a shared results folder must stay readable by the group)
            umask = os.umask(0o022)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)
            with os.fdopen(fd, 'wb') as f:
                f.write(buf.getvalue())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def load(self, path: Union[str, Path]) -> 'FittedAttack':
        """Load a stored artifact fitted with this attack's name, ε and hyper-parameters."""
        meta, state = _read_artifact(path)
        mine = self.artifact_metadata()
        for field in ('attack', 'epsilon', 'params'):
            if json.dumps(meta.get(field), sort_keys=True) != json.dumps(mine[field], sort_keys=True):
                raise ValueError(f'artifact {path} was fitted with {field}={meta.get(field)!r}, but this '
                                 f'attack has {field}={mine[field]!r}; refit it or build the attack '
                                 'with the same settings')
        self.load_state_dict(state)
        self.fit_info = dict(meta.get('fit_info') or {})
        return self


def read_artifact_metadata(path: Union[str, Path]) -> Dict[str, Any]:
    """The metadata stored with an artifact (attack, ε, params, fit_info, run)."""
    return _read_artifact(path)[0]


def _read_artifact(path):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'attack artifact {path} does not exist')
    try:
        payload = torch.load(path, map_location='cpu', weights_only=True)
        meta = json.loads(payload['metadata'])
        state = payload['state']
    except Exception as e:
        raise ValueError(f'{path} is not a readable attack artifact ({type(e).__name__}: {e})') from None
    if meta.get('format') != ARTIFACT_FORMAT:
        raise ValueError(f'{path} has format {meta.get("format")!r}, expected {ARTIFACT_FORMAT!r}')
    return meta, state
