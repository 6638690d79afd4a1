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
    # only for attacks fitted on a training split (universal / generative perturbations):
    fit_dataset = dict(type='synthetic_cityscapes', split='train', num_images=64)

Transfer (Xiang et al. 2022 Table 2; Arnab et al. 2018 Table 1 and Fig. 4b; Metzen et al. 2017;
Poursaeed et al. 2018 Table 4): a suite may list ``sources`` and ``targets``::

    sources = ['fcn8s_vgg16-w8_synthcity',                      # a model: attacked on itself
               dict(model='deeplabv2-aspp-msc_r18-w16_synthcity', scale=0.5),   # at 50 % scale
               dict(model='crfrnn_r18-w16_synthcity', part='unaries'),         # without its CRF
               dict(ensemble=['a', 'b'], weights=[1, 1])]       # one attack on the summed losses
    targets = ['fcn8s_vgg16-w8_synthcity', dict(model='deeplab...', scale=0.5)]

(the forms of :func:`model_zoo.wrappers.check_source_spec`; a target may take the same forms).
A suite that lists either evaluates every source on every target (the other defaults to every
model); a suite that lists neither evaluates each model on itself only (white-box). A cell whose
source is its target is white-box (``source_model`` None in its key); any other is a transfer cell
keyed by the target (``model`` = target id, ``scale`` = its scale) and the source's id.

An attack entry may also carry ``target=dict(...)`` and ``mask=...`` (target maps and masks of
targeted attacks, built per image by the runner: :mod:`benchmark.target_specs`) and its own
``epsilons=[...]`` (instead of the suite's grid, e.g. for an ablation run at one ε only).

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

from common.errors import ConfigError
from common.names import canonical_json, check_name

from .cells import CLEAN, CellKey
from .target_specs import check_mask_spec, check_target_spec

ARNAB_EPSILONS = (0.25, 0.5, 1, 2, 4, 8, 16, 32)
_KNOWN_FIELDS = {'suite_name', 'dataset', 'models', 'sources', 'targets', 'attacks', 'epsilons', 'label_source',
                 'batch_size', 'seed', 'description', 'fit_dataset'}
#: attack-entry fields the runner handles itself (not passed to the attack's constructor)
RUNNER_FIELDS = ('target', 'mask', 'epsilons')

EVAL, FIT = 'eval', 'fit'   #: the two roles a dataset plays in a suite


@dataclasses.dataclass
class AttackPlan:
    """One attack configuration at one ε, with the target/mask the runner builds for it."""

    spec: Dict[str, Any]               # the suite's entry (canonical type, runner fields included)
    epsilon: float
    attack: Any                        # the constructed Attack
    target: Optional[Dict[str, Any]] = None
    mask: Optional[str] = None

    @property
    def requires_fit(self) -> bool:
        return bool(getattr(self.attack, 'requires_fit', False))

    def cell_params(self) -> Dict[str, Any]:
        """The cell key's params: the attack's hyper-parameters plus target and mask if any."""
        params = dict(self.attack.params())
        if self.target is not None:
            params['target'] = dict(self.target)
        if self.mask is not None:
            params['mask'] = self.mask
        return params


def _split_spec(spec: Dict[str, Any]):
    """``(constructor kwargs, target, mask)`` of an attack entry."""
    kwargs = {k: v for k, v in spec.items() if k not in RUNNER_FIELDS}
    return kwargs, spec.get('target'), spec.get('mask')


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """A source (attacked to generate adversarial images) or a target (evaluated on them).

    ``spec`` is the normal form of :func:`model_zoo.wrappers.check_source_spec`: a model, a model
    at a scale, a model's part (CRF-RNN's unaries) or a weighted ensemble; ``id`` its file-name-safe
    id (the model's own name for a plain model). A target's id is the ``model`` of its cells' keys
    (so its records live under ``results/<suite>/<target id>/``) and its scale their ``scale``.
    """

    id: str
    spec: Dict[str, Any]

    @property
    def model_names(self) -> List[str]:
        """The suite models this endpoint is built from."""
        members = self.spec['ensemble'] if 'ensemble' in self.spec else [self.spec]
        return [m['model'] for m in members]

    @property
    def scale(self) -> float:
        return float(self.spec.get('scale', 1.0))

    @property
    def is_plain(self) -> bool:
        """A suite model as it is (not a scale, a part or an ensemble)."""
        return self.spec == {'model': self.id}


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
    fit_dataset: Optional[Dict[str, Any]] = None
    #: attacked to generate adversarial images (default: every model)
    sources: List[Endpoint] = dataclasses.field(default_factory=list)
    #: evaluated on them (default: every model)
    targets: List[Endpoint] = dataclasses.field(default_factory=list)
    #: the suite lists ``sources`` or ``targets``: every source is evaluated on every target;
    #: otherwise each model only on itself (white-box)
    transfer: bool = False

    @property
    def dataset_key(self) -> str:
        """The dataset part of cell keys: type, split and any option that changes the images."""
        return dataset_key(self.dataset)

    @property
    def fit_dataset_key(self) -> Optional[str]:
        return None if self.fit_dataset is None else dataset_key(self.fit_dataset)

    def attack_instances(self) -> List[AttackPlan]:
        """One :class:`AttackPlan` per attack entry × ε (constructs every attack once)."""
        from attacks import build_attack

        from .target_specs import check_mask_spec, check_target_spec
        out = []
        for spec in self.attacks:
            kwargs, target, mask = _split_spec(spec)
            target = None if target is None else check_target_spec(target)
            mask = check_mask_spec(mask, target)
            for eps in spec.get('epsilons', self.epsilons):
                out.append(AttackPlan(spec, float(eps), build_attack(kwargs, eps), target, mask))
        return out

    def pairs(self) -> List[tuple]:
        """``[(source, target)]`` evaluated by the suite: every source on every target for a
        transfer suite, each model on itself otherwise."""
        if not self.transfer:
            return [(s, s) for s in self.sources]
        return [(s, t) for t in self.targets for s in self.sources]

    def endpoint(self, ident: str) -> Endpoint:
        for e in self.sources + self.targets:
            if e.id == ident:
                return e
        raise KeyError(ident)

    def target_ids(self) -> List[str]:
        return [t.id for t in (self.targets if self.transfer else self.sources)]

    def cell_plans(self, target_id: str, plans: Optional[List[AttackPlan]] = None) -> List[tuple]:
        """``[(role, CellKey, AttackPlan or None, source Endpoint or None)]`` of one target.

        The target's clean cell comes first, then every source × attack × ε on the evaluation
        dataset. A cell whose source is the target itself is white-box (``source_model`` None);
        any other is a transfer cell (``source_model`` = the source's id). Attacks fitted on a
        training split are also evaluated on that split (role ``'fit'``, with its own clean cell),
        white-box only, so results on the fitting images and on held-out images are reported
        separately. ``plans``: the suite's attack plans (:meth:`attack_instances`), built once by
        the caller so that every target shares the same attack objects.
        """
        target = next((t for t in (self.targets if self.transfer else self.sources) if t.id == target_id),
                      None)
        if target is None:
            raise KeyError(f'{target_id!r} is not a target of suite {self.name}')
        plans = self.attack_instances() if plans is None else plans

        def key(dataset, plan, source):
            common = dict(suite=self.name, dataset=dataset, model=target.id, scale=target.scale,
                          label_source=self.label_source)
            if plan is None:
                return CellKey(attack=CLEAN, params={}, epsilon=0.0, **common)
            return CellKey(attack=plan.attack.name, params=plan.cell_params(), epsilon=plan.epsilon,
                           source_model=None if source.id == target.id else source.id, **common)
        sources = [s for s, t in self.pairs() if t.id == target.id]
        out = [(EVAL, key(self.dataset_key, None, None), None, None)]
        out += [(EVAL, key(self.dataset_key, p, s), p, s) for s in sources for p in plans]
        fitted = [p for p in plans if p.requires_fit]
        if fitted and target in sources:
            out.append((FIT, key(self.fit_dataset_key, None, None), None, None))
            out += [(FIT, key(self.fit_dataset_key, p, target), p, target) for p in fitted]
        return out

    def cells(self, target_id: str) -> List[CellKey]:
        """Keys of one target's cells (see :meth:`cell_plans`)."""
        return [k for _, k, _, _ in self.cell_plans(target_id)]


def dataset_key(spec: Dict[str, Any]) -> str:
    """The dataset part of a cell key: type, split and a hash of any option that changes the images."""
    extra = {k: v for k, v in spec.items() if k not in ('type', 'split', 'root', 'data_root')}
    name = f'{spec["type"]}-{spec.get("split", "val")}'
    if extra:
        name += '-' + hashlib.sha256(canonical_json(extra).encode()).hexdigest()[:8]
    return name


def _check_epsilon(eps, where: str) -> float:
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not math.isfinite(eps) or eps <= 0:
        raise ConfigError(f'{where}: epsilon {eps!r} is not valid; expected numbers > 0 in 0-255 '
                          f'pixel units, e.g. epsilons = {list(ARNAB_EPSILONS)}')
    eps = float(eps)
    if eps > 255:
        raise ConfigError(f'{where}: epsilon {eps:g} is larger than the whole 0-255 pixel range, so '
                          'every image is reachable and the cell measures nothing; ε is in 0-255 '
                          f'pixel units, e.g. epsilons = {list(ARNAB_EPSILONS)}')
    levels = eps * 255
    # the [0, 1]-unit radii of the literature (1/255 ... 32/255); 0.2 = 51/255 stays legal
    if eps < 1 and 1 <= round(levels) <= 32 and abs(levels - round(levels)) < 1e-6:
        raise ConfigError(f'{where}: epsilon {eps:g} looks like {round(levels)}/255, a radius in '
                          f'[0, 1] image units, but this benchmark measures ε in 0-255 pixel units '
                          f'(ε = 8 means 8 grey levels): write {round(levels)} for {round(levels)}/255')
    return eps


def _check_step_size(spec: Dict[str, Any], where: str) -> None:
    """A step size ``alpha`` must be a finite number > 0 (checked here so that the message names
    alpha, whatever the attack's own check says). One of k/255 with k <= 32 is almost certainly the [0, 1] image convention
    (e.g. 2/255): in this benchmark's 0-255 units it would move pixels by a hundredth of a grey
    level per step. Refused with the intended value, as ε is."""
    alpha = spec.get('alpha')
    if alpha is None:   # the attack's default
        return
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not math.isfinite(alpha) or alpha <= 0:
        raise ConfigError(f'{where}: alpha {alpha!r} is not valid; expected a step size > 0 in 0-255 '
                          'pixel units, e.g. alpha=1 (one grey level per step), or leave it out for '
                          "the attack's default")
    if alpha >= 1:
        return
    levels = alpha * 255
    if 1 <= round(levels) <= 32 and abs(levels - round(levels)) < 1e-6:
        raise ConfigError(f'{where}: alpha {alpha:g} looks like {round(levels)}/255, a step in [0, 1] '
                          f'image units, but this benchmark measures step sizes in 0-255 pixel units '
                          f'(alpha = 1 means one grey level per step): write alpha={round(levels)} for '
                          f'{round(levels)}/255')


def _options_hint(cls, error: Exception) -> str:
    """For an unknown keyword: the options the attack does take (Python's own TypeError names only
    the wrong one)."""
    if not (isinstance(error, TypeError) and 'unexpected keyword argument' in str(error)):
        return ''
    import inspect
    params = [name for name, p in inspect.signature(cls.__init__).parameters.items()
              if name not in ('self', 'epsilon') and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    takes = ', '.join(params) if params else 'no options of its own'
    return (f'; {cls.name} takes {takes} (ε comes from `epsilons`; every attack entry may also '
            f'carry {", ".join(RUNNER_FIELDS)})')


def _check_epsilons(values, where: str, what: str = 'epsilons') -> List[float]:
    """A non-empty list of distinct valid ε (a duplicate would compute and count a cell twice)."""
    if isinstance(values, bool):
        values = [values]   # reported by _check_epsilon
    elif isinstance(values, numbers.Real):
        values = [values]
    if not isinstance(values, Sequence) or isinstance(values, str) or not values:
        raise ConfigError(f'{where}: {what} must be a non-empty list of numbers > 0 in 0-255 pixel '
                          f'units, got {values!r}')
    out = [_check_epsilon(e, where) for e in values]
    seen = set()
    for e in out:
        if e in seen:
            raise ConfigError(f'{where}: {what} lists ε = {e:g} more than once ({values!r}); each ε is '
                              'one cell, list it once')
        seen.add(e)
    return out


def load_suite(source: Union[str, Path, dict], overrides: Optional[Dict[str, Any]] = None) -> Suite:
    """Read and validate a suite file (or dict), resolving model names and attack names."""
    from mmengine.config import Config

    from attacks import attack_class
    from model_zoo.zoo import load_metafile, resolve_model

    if isinstance(source, dict):
        raw, where, default_name = dict(source), 'suite', 'suite'
    else:
        path = Path(source)
        if path.is_dir():
            raise ConfigError(f'suite file {source} is a directory; expected a Python config file such '
                              'as benchmark/suites/demo.py')
        if not path.is_file():
            raise ConfigError(f'suite file {source} does not exist; expected a Python config such as '
                              'benchmark/suites/demo.py')
        try:
            raw = Config.fromfile(str(path)).to_dict()
        except Exception as e:
            raise ConfigError(f'suite file {path} could not be parsed: {type(e).__name__}: {e}') from None
        where, default_name = str(path), path.stem
    raw.update(overrides or {})
    raw = {k: v for k, v in raw.items() if not k.startswith('_')}   # local helper variables
    if 'jobs' in raw:
        raise ConfigError(f'{where}: `jobs` is no longer a suite field: the runner scales out on '
                          'torch.distributed. Remove it and start the run with `torchrun '
                          '--nproc-per-node N tools/run_benchmark.py --launcher pytorch ...` to use '
                          'N processes (see docs/scaling.md)')
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

    if not isinstance(raw['dataset'], dict):
        raise ConfigError(f"{where}: dataset must be a dict such as dict(type='cityscapes', "
                          f"data_root='data/cityscapes', split='val'), got {raw['dataset']!r}")
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
    except (ValueError, ConfigError) as e:   # name the suite file: the model entry is in it
        raise ConfigError(f'{where}: {e}') from None
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ConfigError(f'{where}: a model is listed twice: {names}')

    epsilons = _check_epsilons(raw['epsilons'], where)

    attacks = []
    any_fit = False
    attacks_raw = raw['attacks']
    if isinstance(attacks_raw, (str, dict)):
        attacks_raw = [attacks_raw]
    if not isinstance(attacks_raw, Sequence) or not attacks_raw:
        raise ConfigError(f"{where}: attacks must be a non-empty list of attack names or dicts, e.g. "
                          f"[dict(type='fgsm'), dict(type='ifgsm')], got {attacks_raw!r}")
    for spec in attacks_raw:
        if not isinstance(spec, (str, dict)):
            raise ConfigError(f"{where}: attack entry {spec!r} must be a name such as 'fgsm' or a dict "
                              "such as dict(type='pgd', num_steps=20)")
        spec = {'type': spec} if isinstance(spec, str) else dict(spec)
        if 'type' not in spec:
            raise ConfigError(f'{where}: attack {spec} has no `type`')
        try:
            cls = attack_class(spec['type'])
        except KeyError as e:
            raise ConfigError(f'{where}: {e.args[0]}') from None
        spec['type'] = cls.name
        if 'epsilon' in spec:
            raise ConfigError(f'{where}: attack {cls.name} sets epsilon; put ε values in `epsilons`')
        kwargs, target, mask = _split_spec(spec)
        try:
            target = None if target is None else check_target_spec(target)
            mask = check_mask_spec(mask, target)
        except ValueError as e:
            raise ConfigError(f'{where}: attack {cls.name}: {e}') from None
        if target is not None:
            if not (cls.targeted or cls.accepts_target):
                raise ConfigError(f'{where}: attack {cls.name} is untargeted and takes no `target`; '
                                  'targeted attacks are e.g. targeted_ifgsm, pgd, universal, gap')
            spec['target'] = target
        elif cls.needs_target_map:
            raise ConfigError(f"{where}: attack {cls.name} needs `target`, e.g. target=dict(kind="
                              "'hide_class', hidden_class=11) or target=dict(kind='static', "
                              "split='train', index=0)")
        if mask is not None:
            spec['mask'] = mask
        any_fit = any_fit or bool(getattr(cls, 'requires_fit', False))
        attack_epsilons = epsilons
        if 'epsilons' in spec:
            attack_epsilons = _check_epsilons(spec['epsilons'], where, f'attack {cls.name}: epsilons')
            spec['epsilons'] = attack_epsilons
        _check_step_size(spec, f'{where}: attack {cls.name}')
        try:  # construct once per ε now, so bad hyper-parameters fail before any work
            for eps in attack_epsilons:
                cls(epsilon=eps, **{k: v for k, v in kwargs.items() if k != 'type'})
        except (TypeError, ValueError, KeyError) as e:   # KeyError: an unknown member attack name
            detail = e.args[0] if isinstance(e, KeyError) and e.args else e
            raise ConfigError(f'{where}: attack {cls.name} {spec}: {detail}{_options_hint(cls, e)}') from None
        attacks.append(spec)
    fit_dataset = raw.get('fit_dataset')
    if any_fit:
        if not isinstance(fit_dataset, dict) or 'type' not in fit_dataset:
            raise ConfigError(f'{where}: universal/generative attacks are fitted on a training split: add '
                              "fit_dataset = dict(type=..., split='train', num_images=...) (different "
                              'images from `dataset`, which stays the held-out evaluation split)')
        if dataset_key(fit_dataset) == dataset_key(dataset):
            raise ConfigError(f'{where}: fit_dataset is the same as dataset; fit on a training split '
                              'and evaluate on held-out images')
        fit_dataset = dict(fit_dataset)
    elif fit_dataset is not None:
        raise ConfigError(f'{where}: fit_dataset is given but no attack needs fitting (universal, gap)')

    label_source = raw.get('label_source', 'prediction')
    if label_source not in ('prediction', 'ground_truth'):
        raise ConfigError(f"{where}: label_source must be 'prediction' or 'ground_truth', got {label_source!r}")
    batch_size = raw.get('batch_size', 8)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f'{where}: batch_size must be a positive integer, got {batch_size!r}')
    seed = raw.get('seed', 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f'{where}: seed must be an integer, got {seed!r}')
    transfer = raw.get('sources') is not None or raw.get('targets') is not None
    sources = _endpoints(raw.get('sources'), 'sources', models, where)
    targets = _endpoints(raw.get('targets'), 'targets', models, where)
    for t in targets:
        if t.id in {s.id for s in sources} and t.spec != next(s.spec for s in sources if s.id == t.id):
            raise ConfigError(f'{where}: source and target {t.id} have the same id but differ')
    suite = Suite(name=name, dataset=dataset, models=models, attacks=attacks, epsilons=epsilons,
                  label_source=label_source, batch_size=batch_size, seed=seed,
                  description=str(raw.get('description', '')),
                  source=None if isinstance(source, dict) else str(source), fit_dataset=fit_dataset,
                  sources=sources, targets=targets, transfer=transfer)
    _check_unique_cells(suite, where)
    return suite


def _endpoints(raw, field: str, models: List[Any], where: str) -> List[Endpoint]:
    """A suite's ``sources`` or ``targets`` (default: every model), validated without building."""
    from model_zoo.wrappers import check_sources
    names = [m.name for m in models]
    if raw is None:
        return [Endpoint(n, {'model': n}) for n in names]
    if isinstance(raw, (str, dict)):
        raw = [raw]
    if not isinstance(raw, Sequence) or not raw:
        raise ConfigError(f"{where}: {field} must be a non-empty list of model names or dicts such as "
                          f"dict(model=NAME, scale=0.5), got {raw!r}")
    try:
        return [Endpoint(ident, spec) for spec, ident in check_sources(raw, names)]
    except ValueError as e:
        raise ConfigError(f'{where}: {field}: {e}') from None


def _check_unique_cells(suite: Suite, where: str) -> None:
    """Two entries that describe the same cell (the same attack twice, with the same options)
    would compute it twice and count its images twice: refuse them."""
    seen: Dict[str, AttackPlan] = {}
    for _, key, plan, _ in suite.cell_plans(suite.target_ids()[0]):
        if plan is None:
            continue
        if key.cell_id in seen:
            raise ConfigError(f'{where}: attack entries {seen[key.cell_id].spec} and {plan.spec} both '
                              f'describe the cell {key.attack} at ε = {key.epsilon:g}; list each attack '
                              'configuration once')
        seen[key.cell_id] = plan
