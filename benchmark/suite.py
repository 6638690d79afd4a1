"""Suites: an experiment as an mmengine ``Config`` file, expanded into cells.

A suite file (``benchmark/suites/*.py``) holds::

    suite_name = 'demo'                       # optional, default: the file name
    dataset = dict(type='synthetic_cityscapes', split='val', num_images=24)
    models = ['fcn_r18-w16_synthcity', dict(name='mine', config='cfg.py', checkpoint='w.pth')]
    attacks = [dict(type='fgsm'), dict(type='ifgsm_ll', alpha=1)]
    epsilons = [0.25, 0.5, 1, 2, 4, 8, 16, 32]  # 0-255 pixel units
    label_source = 'prediction'               # or 'ground_truth'
    batch_size = 8
    seed = 0

Everything is validated before any model is built, so a typo fails in a second with a message that
says what was expected, and never after an hour of computation.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import numbers
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from .cells import CLEAN, CellKey, canonical_json, check_name
from .errors import ConfigError

ARNAB_EPSILONS = (0.25, 0.5, 1, 2, 4, 8, 16, 32)
_KNOWN_FIELDS = {'suite_name', 'dataset', 'models', 'attacks', 'epsilons', 'label_source',
                 'batch_size', 'seed', 'description'}


@dataclasses.dataclass
class Suite:
    """A validated suite."""

    name: str
    dataset: Dict[str, Any]
    models: List[Any]                 # ModelEntry objects
    attacks: List[Dict[str, Any]]     # specs with a canonical 'type'
    epsilons: List[float]
    label_source: str = 'prediction'
    batch_size: int = 8
    seed: int = 0
    description: str = ''
    source: Optional[str] = None

    @property
    def dataset_key(self) -> str:
        """The dataset part of cell keys: type, split and any option that changes the images."""
        spec = {k: v for k, v in self.dataset.items() if k not in ('type', 'split', 'root', 'data_root')}
        name = f'{self.dataset["type"]}-{self.dataset.get("split", "val")}'
        if spec:
            name += '-' + hashlib.sha256(canonical_json(spec).encode()).hexdigest()[:8]
        return name

    def attack_instances(self):
        """``[(spec, epsilon, Attack)]`` for the whole grid (constructs every attack once)."""
        from attacks import build_attack
        out = []
        for spec in self.attacks:
            for eps in self.epsilons:
                out.append((spec, eps, build_attack(spec, eps)))
        return out

    def cells(self, model_name: str) -> List[CellKey]:
        """Keys of one model's cells: the clean cell first, then attack × ε."""
        keys = [CellKey(self.name, self.dataset_key, model_name, CLEAN, {}, 0.0,
                        label_source=self.label_source)]
        for _, eps, attack in self.attack_instances():
            keys.append(CellKey(self.name, self.dataset_key, model_name, attack.name,
                                attack.params(), float(eps), label_source=self.label_source))
        return keys


def _check_epsilon(eps, where: str) -> float:
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not math.isfinite(eps) or eps <= 0:
        raise ConfigError(f'{where}: epsilon {eps!r} is not valid; expected numbers > 0 in 0-255 '
                          f'pixel units, e.g. epsilons = {list(ARNAB_EPSILONS)}')
    return float(eps)


def load_suite(source: Union[str, Path, dict], overrides: Optional[Dict[str, Any]] = None) -> Suite:
    """Read and validate a suite file (or dict), resolving model names and attack names."""
    from mmengine.config import Config

    from attacks import attack_class
    from model_zoo.zoo import load_metafile, resolve_model

    if isinstance(source, dict):
        raw, where, default_name = dict(source), 'suite', 'suite'
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f'suite file {source} does not exist; expected a Python config such as '
                              'benchmark/suites/demo.py')
        try:
            raw = Config.fromfile(str(path)).to_dict()
        except Exception as e:
            raise ConfigError(f'suite file {path} could not be parsed: {type(e).__name__}: {e}') from None
        where, default_name = str(path), path.stem
    raw.update(overrides or {})
    unknown = set(raw) - _KNOWN_FIELDS
    if unknown:
        raise ConfigError(f'{where}: unknown suite field(s) {sorted(unknown)}; allowed: {sorted(_KNOWN_FIELDS)}')
    for field in ('dataset', 'models', 'attacks', 'epsilons'):
        if field not in raw:
            raise ConfigError(f'{where}: missing `{field}`; a suite needs dataset, models, attacks and epsilons')
    name = raw.get('suite_name', default_name)
    try:
        check_name(name, 'suite')
    except ValueError as e:
        raise ConfigError(f'{where}: {e}') from None

    dataset = dict(raw['dataset'])
    if 'type' not in dataset:
        raise ConfigError(f'{where}: dataset needs a `type` (synthetic_cityscapes, cityscapes or voc)')

    models_raw = raw['models']
    if isinstance(models_raw, (str, dict)):
        models_raw = [models_raw]
    if not models_raw:
        raise ConfigError(f'{where}: `models` is empty')
    zoo = load_metafile()
    try:
        models = [resolve_model(m, zoo) for m in models_raw]
    except ValueError as e:
        raise ConfigError(f'{where}: {e}') from None
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ConfigError(f'{where}: a model is listed twice: {names}')

    epsilons = raw['epsilons']
    if isinstance(epsilons, (int, float)):
        epsilons = [epsilons]
    if not isinstance(epsilons, Sequence) or isinstance(epsilons, str) or not epsilons:
        raise ConfigError(f'{where}: epsilons must be a non-empty list of numbers > 0, got {epsilons!r}')
    epsilons = [_check_epsilon(e, where) for e in epsilons]

    attacks = []
    for spec in raw['attacks']:
        spec = {'type': spec} if isinstance(spec, str) else dict(spec)
        if 'type' not in spec:
            raise ConfigError(f'{where}: attack {spec} has no `type`')
        try:
            cls = attack_class(spec['type'])
        except KeyError as e:
            raise ConfigError(f'{where}: {e.args[0]}') from None
        spec['type'] = cls.name
        if cls.needs_target_map:
            raise ConfigError(f'{where}: attack {cls.name} needs a target map per image (static or '
                              'hide-class target), which suites cannot describe yet; call it from '
                              'Python with attack(model, images, target=...)')
        if 'epsilon' in spec:
            raise ConfigError(f'{where}: attack {cls.name} sets epsilon; put ε values in `epsilons`')
        try:  # construct once per ε now, so bad hyper-parameters fail before any work
            for eps in epsilons:
                cls(epsilon=eps, **{k: v for k, v in spec.items() if k != 'type'})
        except (TypeError, ValueError) as e:
            raise ConfigError(f'{where}: attack {cls.name} {spec}: {e}') from None
        attacks.append(spec)

    label_source = raw.get('label_source', 'prediction')
    if label_source not in ('prediction', 'ground_truth'):
        raise ConfigError(f"{where}: label_source must be 'prediction' or 'ground_truth', got {label_source!r}")
    batch_size = raw.get('batch_size', 8)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f'{where}: batch_size must be a positive integer, got {batch_size!r}')
    seed = raw.get('seed', 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f'{where}: seed must be an integer, got {seed!r}')
    return Suite(name=name, dataset=dataset, models=models, attacks=attacks, epsilons=epsilons,
                 label_source=label_source, batch_size=batch_size, seed=seed,
                 description=raw.get('description', ''), source=None if isinstance(source, dict) else str(source))
