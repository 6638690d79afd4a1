"""The model zoo: metadata of every named model, in the spirit of mmseg's ``metafile.yaml``.

Each entry of ``model_zoo/metafile.yaml`` gives name, architecture, backbone, config, dataset,
classes, input size, training scales, parameter count, weights (path or URL), sha256, paper, code,
licence, and quirks needed to load the weights (``key_renames``, ``ignore_keys``). Loading code
never branches on a model's name: everything model-specific is data here. ``known_issues`` says
what a user should know before comparing the model (e.g. a demo model below the 50 % clean-mIoU
bar, and why).

A suite names a model either by zoo name (``'fcn_r18-w16_synthcity'``) or by a dict for a model the
user brings::

    dict(name='my_model', config='path/to/mmseg_config.py', checkpoint='path/or/url.pth',
         sha256=None)

``sha256`` (optional) is the file's 64-hex-digit digest; the runner records the digest of the
file it loaded either way.

**No silent random weights.** A model without weights (a full-size zoo entry whose metafile
``weights`` is null, such as ``fcn8s_vgg16_cityscapes``, or a dict without ``checkpoint``) is
refused when the suite is loaded, with a message saying where such weights come from and how to
give them. To evaluate an untrained network on purpose (e.g. to time a model or to see chance
level), say so in the model dict::

    dict(name='fcn8s_vgg16_cityscapes_random', config='model_zoo/configs/fcn_vgg/fcn8s_vgg16_cityscapes-512x1024.py',
         random_weights=True)

Its records then carry ``checkpoint`` None and a warning naming the model is logged when the
suite is loaded and when the model is built.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterable, List, Optional, Union

from common.errors import CheckpointError, ConfigError
from common.names import check_name

if TYPE_CHECKING:  # only for annotations: loading the metafile does not import torch
    import torch

logger = logging.getLogger(__name__)
METAFILE = Path(__file__).resolve().parent / 'metafile.yaml'
#: entries of submitted models (tools/submit.py), one YAML file each
SUBMISSIONS = Path(__file__).resolve().parent / 'submissions'
_SHA256_RE = re.compile(r'^[0-9a-fA-F]{64}$')


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """Metadata of one zoo model (see the module docstring)."""

    name: str
    config: str
    weights: Optional[str] = None
    sha256: Optional[str] = None
    architecture: str = ''
    backbone: str = ''
    dataset: str = ''
    num_classes: Optional[int] = None
    input_size: Optional[List[int]] = None
    training_scales: Optional[List[float]] = None
    parameters: Optional[int] = None
    paper: str = ''
    code: str = ''
    license: str = ''
    key_renames: List[List[str]] = dataclasses.field(default_factory=list)
    ignore_keys: List[str] = dataclasses.field(default_factory=list)
    results: Dict[str, float] = dataclasses.field(default_factory=dict)
    demo: bool = False
    known_issues: List[str] = dataclasses.field(default_factory=list)
    random_weights: bool = False


_FIELDS = {f.name for f in dataclasses.fields(ModelEntry)}


def load_metafile(path: Union[str, Path] = METAFILE,
                  submissions: Optional[Union[str, Path]] = SUBMISSIONS) -> Dict[str, ModelEntry]:
    """Parse the metafile, plus the submitted models' entries, into ``{name: ModelEntry}``.

    Args:
        path: The metafile (``models:`` list of entries).
        submissions: A folder of ``<name>.yaml`` entries written by ``tools/submit.py`` (one
            mapping each, the metafile's fields), or None to read the metafile only.
    """
    import yaml
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    items = [(path, item) for item in data.get('models', [])]
    for file in sorted(Path(submissions).glob('*.yaml')) if submissions is not None else ():
        try:
            with open(file) as f:
                item = yaml.safe_load(f)
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f'submitted model entry {file} cannot be read ({type(e).__name__}: {e}); '
                              'expected a YAML mapping written by tools/submit.py') from None
        if not isinstance(item, dict) or 'name' not in item:
            raise ConfigError(f'submitted model entry {file} is not a YAML mapping with a `name`; '
                              'expected the format of model_zoo/submissions/README.md')
        items.append((file, item))
    entries = {}
    for where, item in items:
        unknown = set(item) - _FIELDS
        if unknown:
            raise ConfigError(f'{where}: model {item.get("name")!r} has unknown field(s) {sorted(unknown)}')
        entry = ModelEntry(**item)
        try:
            check_name(entry.name, 'model')
        except ValueError as e:
            raise ConfigError(f'{where}: {e}') from None
        if entry.name in entries:
            raise ConfigError(f'{where}: model {entry.name!r} is listed twice (in the metafile or '
                              'model_zoo/submissions/)')
        entries[entry.name] = entry
    return entries


def _where_weights_come_from(entry: ModelEntry, from_zoo: bool) -> str:
    """The message for a model without weights: where they come from and how to give them."""
    sources = ([f'paper: {entry.paper}'] if entry.paper else []) + ([f'code: {entry.code}'] if entry.code else [])
    origin = f' ({"; ".join(sources)})' if sources else ''
    what = (f'zoo model {entry.name!r} has no weights (its metafile entry has `weights: null`)'
            if from_zoo else f'model {entry.name!r} has no `checkpoint`')
    return (f'{what}, and evaluating it would measure a randomly initialised network. Weights for '
            f'its config come from the paper\'s released model converted to the mmseg config '
            f'{entry.config}, or from training that config on the dataset with mmseg\'s tools/train.py'
            f'{origin}. Point the suite at them with dict(name={entry.name!r}, config={entry.config!r}, '
            "checkpoint='path/or/url.pth')"
            + (', or give the zoo entry `weights` (and `sha256`) in model_zoo/metafile.yaml' if from_zoo else '')
            + '. To evaluate random weights on purpose, add random_weights=True to the model dict.')


def _check_entry(entry: ModelEntry, from_zoo: bool, require_weights: bool) -> ModelEntry:
    where = f'model {entry.name!r}' + (' in model_zoo/metafile.yaml' if from_zoo else '')
    if entry.sha256 is not None and (not isinstance(entry.sha256, str) or not _SHA256_RE.match(entry.sha256)):
        raise ConfigError(f'{where}: sha256 {entry.sha256!r} is not a sha256 digest; expected 64 '
                          'hexadecimal digits (as printed by `sha256sum FILE`), or leave it out')
    if entry.weights is not None and (not isinstance(entry.weights, str) or not entry.weights.strip()):
        raise ConfigError(f'{where}: checkpoint {entry.weights!r} is not a path or URL')
    if not isinstance(entry.config, str) or not entry.config.strip():
        raise ConfigError(f'{where}: config {entry.config!r} is not a path; expected an mmseg config '
                          "file such as 'model_zoo/configs/fcn/fcn_r18-w16-d8_1.5k_synthcity-256x128.py' "
                          "or 'mmseg::pspnet/pspnet_r50-d8_4xb2-40k_cityscapes-512x1024.py'")
    if not isinstance(entry.random_weights, bool):
        raise ConfigError(f'{where}: random_weights must be True or False, got {entry.random_weights!r}')
    if entry.random_weights:
        if entry.weights is not None:
            raise ConfigError(f'{where} has both a checkpoint ({entry.weights}) and random_weights=True; '
                              'give one of them')
        logger.warning('model %s runs with RANDOM weights (random_weights=True): its results measure '
                       'an untrained network and its records carry checkpoint None', entry.name)
    elif entry.weights is None and require_weights:
        raise ConfigError(_where_weights_come_from(entry, from_zoo))
    return entry


def resolve_model(spec: Union[str, dict], zoo: Optional[Dict[str, ModelEntry]] = None, *,
                  require_weights: bool = True) -> ModelEntry:
    """A suite's model spec (zoo name or dict with ``name``, ``config``, ``checkpoint``) → entry.

    Args:
        spec: A zoo name, or a dict with ``name``, ``config`` and ``checkpoint`` (optional:
            ``sha256``, ``key_renames``, ``ignore_keys``, ``random_weights``).
        zoo: The parsed metafile (default: :func:`load_metafile`).
        require_weights: Refuse a model without weights unless it asks for ``random_weights``
            (set False only where weights do not matter, e.g. timing a forward pass).

    Raises:
        ConfigError: unknown name or option, a sha256 that is not 64 hex digits, or no weights.
    """
    zoo = load_metafile() if zoo is None else zoo
    if isinstance(spec, str):
        if spec not in zoo:
            raise ConfigError(f'unknown model {spec!r}. Known zoo models: {", ".join(sorted(zoo))}. '
                              'To bring your own, give dict(name=..., config=..., checkpoint=...).')
        return _check_entry(zoo[spec], True, require_weights)
    if isinstance(spec, dict):
        spec = dict(spec)
        if 'name' not in spec or 'config' not in spec:
            raise ConfigError(f'a model given as a dict needs `name` and `config` (and usually '
                              f'`checkpoint`), got keys {sorted(spec)}')
        if 'checkpoint' in spec:
            spec['weights'] = spec.pop('checkpoint')
        if isinstance(spec.get('weights'), os.PathLike):
            spec['weights'] = os.fspath(spec['weights'])
        unknown = set(spec) - _FIELDS
        if unknown:
            raise ConfigError(f'model {spec["name"]!r} has unknown option(s) {sorted(unknown)}; '
                              f'allowed: name, config, checkpoint, sha256, key_renames, ignore_keys, '
                              'random_weights')
        check_name(spec['name'], 'model')
        return _check_entry(ModelEntry(**spec), False, require_weights)
    raise ConfigError(f'a model must be a zoo name or a dict, got {spec!r}')


def build_zoo_model(entry: ModelEntry, num_classes: Optional[int] = None):
    """Build a zoo entry into ``(PixelSpaceModel, checkpoint sha256 or None)``.

    Raises:
        CheckpointError: the entry has no weights and does not ask for ``random_weights``.
    """
    from .builder import build_pixel_model
    if entry.weights is None:
        if not entry.random_weights:
            raise CheckpointError(_where_weights_come_from(entry, from_zoo=False))
        logger.warning('model %s: building with RANDOM weights (random_weights=True)', entry.name)
    return build_pixel_model(entry.config, entry.weights, sha256=entry.sha256,
                             key_renames=entry.key_renames, num_classes=num_classes,
                             ignore_keys=entry.ignore_keys)


def count_parameters(model: 'torch.nn.Module', inference_only: bool = True) -> int:
    """Parameters used at inference (auxiliary heads excluded when ``inference_only``)."""
    return sum(p.numel() for n, p in model.named_parameters()
               if not (inference_only and n.startswith('auxiliary_head')))


def missing_demo_weights(entries: Iterable[ModelEntry]) -> List[ModelEntry]:
    """Demo entries whose weight file (a path relative to the repository root, or absolute) is absent."""
    root = Path(__file__).resolve().parent.parent
    out = []
    for e in entries:
        if e.demo and e.weights and '://' not in e.weights:
            p = Path(e.weights)
            if not (p if p.is_absolute() else root / p).is_file():
                out.append(e)
    return out
