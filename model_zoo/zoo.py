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
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Dict, List, Optional, Union

from benchmark.cells import check_name
from benchmark.errors import ConfigError

METAFILE = Path(__file__).resolve().parent / 'metafile.yaml'


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


_FIELDS = {f.name for f in dataclasses.fields(ModelEntry)}


def load_metafile(path: Union[str, Path] = METAFILE) -> Dict[str, ModelEntry]:
    """Parse the metafile into ``{name: ModelEntry}``."""
    import yaml
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    entries = {}
    for item in data.get('models', []):
        unknown = set(item) - _FIELDS
        if unknown:
            raise ConfigError(f'{path}: model {item.get("name")!r} has unknown field(s) {sorted(unknown)}')
        entry = ModelEntry(**item)
        check_name(entry.name, 'model')
        if entry.name in entries:
            raise ConfigError(f'{path}: model {entry.name!r} is listed twice')
        entries[entry.name] = entry
    return entries


def resolve_model(spec: Union[str, dict], zoo: Optional[Dict[str, ModelEntry]] = None) -> ModelEntry:
    """A suite's model spec (zoo name or dict with ``name``, ``config``, ``checkpoint``) → entry."""
    zoo = load_metafile() if zoo is None else zoo
    if isinstance(spec, str):
        if spec not in zoo:
            raise ConfigError(f'unknown model {spec!r}. Known zoo models: {", ".join(sorted(zoo))}. '
                              'To bring your own, give dict(name=..., config=..., checkpoint=...).')
        return zoo[spec]
    if isinstance(spec, dict):
        spec = dict(spec)
        if 'name' not in spec or 'config' not in spec:
            raise ConfigError(f'a model given as a dict needs `name` and `config` (and usually '
                              f'`checkpoint`), got keys {sorted(spec)}')
        if 'checkpoint' in spec:
            spec['weights'] = spec.pop('checkpoint')
        unknown = set(spec) - _FIELDS
        if unknown:
            raise ConfigError(f'model {spec["name"]!r} has unknown option(s) {sorted(unknown)}; '
                              f'allowed: name, config, checkpoint, sha256, key_renames, ignore_keys')
        check_name(spec['name'], 'model')
        return ModelEntry(**spec)
    raise ConfigError(f'a model must be a zoo name or a dict, got {spec!r}')


def build_zoo_model(entry: ModelEntry, num_classes: Optional[int] = None):
    """Build a zoo entry into ``(PixelSpaceModel, checkpoint sha256)``."""
    from .builder import build_pixel_model
    return build_pixel_model(entry.config, entry.weights, sha256=entry.sha256,
                             key_renames=entry.key_renames, num_classes=num_classes,
                             ignore_keys=entry.ignore_keys)
