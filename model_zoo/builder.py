"""Build mmseg segmentors from configs and load their weights safely.

* Configs: any mmseg config file (ours under ``model_zoo/configs/``, mmseg's own via
  ``mmseg::``-prefixed ``_base_``, or a user's). ``SyncBN`` becomes ``BN`` (no process group on one
  CPU) and ``pretrained=`` / ``init_cfg=dict(type='Pretrained')`` entries are dropped, so building
  never downloads anything: weights come from the checkpoint.
* Checkpoints: a path or a URL (downloaded once into the cache). Loading verifies sha256 when it is
  known (and the 8-hex-digit hash suffix of mmseg model-zoo file names), unpickles with
  ``torch.load(weights_only=True)`` only, applies the key renames the model's metadata lists, and
  refuses a checkpoint with missing, unexpected or mis-shaped keys, or a different class count,
  with a message that names them.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from benchmark.errors import CheckpointError, ConfigError
from benchmark.store import sha256_file  # noqa: F401  (re-exported: model_zoo.builder.sha256_file)

from .pixel_model import PixelSpaceModel

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """Cache root: ``$SEGBENCH_CACHE`` or ``~/.cache/segbench``."""
    return Path(os.environ.get('SEGBENCH_CACHE', Path.home() / '.cache' / 'segbench')).expanduser()


# -- configs ---------------------------------------------------------------------------------
def load_config(config):
    """Load an mmengine ``Config`` from a path (relative paths: cwd, then the repository root)."""
    from mmengine.config import Config
    if isinstance(config, Config):
        return config
    if isinstance(config, Mapping):
        return Config(dict(config))
    if '::' in str(config):  # a config shipped inside an installed package, e.g. mmseg::fcn/...
        from mmengine.hub import get_config
        try:
            return get_config(str(config))
        except Exception as e:
            raise ConfigError(f'package config {config} could not be loaded: {type(e).__name__}: {e}') from None
    path = Path(config).expanduser()
    if not path.is_file() and not path.is_absolute() and (REPO_ROOT / path).is_file():
        path = REPO_ROOT / path
    if not path.is_file():
        raise ConfigError(f'model config {config} does not exist; expected an mmseg config file '
                          '(.py) such as model_zoo/configs/fcn/fcn_r18-w16-d8_synthcity-256x128.py')
    try:
        return Config.fromfile(str(path))
    except Exception as e:  # mmengine raises many types for a broken config
        raise ConfigError(f'model config {path} could not be parsed: {type(e).__name__}: {e}') from None


def sanitize_model_cfg(cfg):
    """Return a copy of a model config dict with SyncBN→BN and pretrained downloads removed."""
    if isinstance(cfg, Mapping):
        out = {}
        for k, v in cfg.items():
            if k == 'pretrained':
                continue
            if k == 'init_cfg' and isinstance(v, Mapping) and v.get('type') == 'Pretrained':
                continue
            if k == 'type' and v in ('SyncBN', 'MMSyncBN'):
                v = 'BN'
            out[k] = sanitize_model_cfg(v)
        return out
    if isinstance(cfg, (list, tuple)):
        return type(cfg)(sanitize_model_cfg(v) for v in cfg)
    return cfg


def build_segmentor(config) -> nn.Module:
    """Build the segmentor of an mmseg config (no weights loaded)."""
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    import model_zoo.models  # noqa: F401  (registers this project's architectures)
    register_all_modules(init_default_scope=False)
    cfg = load_config(config)
    if 'model' not in cfg:
        raise ConfigError(f'config {getattr(cfg, "filename", "")} has no `model` entry; '
                          'expected an mmseg model config')
    from mmengine.config import ConfigDict
    # ConfigDict, not dict: mmseg reads e.g. ``test_cfg.mode`` as attributes
    model_cfg = ConfigDict(sanitize_model_cfg(cfg.model.to_dict() if hasattr(cfg.model, 'to_dict') else cfg.model))
    try:
        with DefaultScope.overwrite_default_scope('mmseg'):
            model = MODELS.build(model_cfg)
    except Exception as e:
        raise ConfigError(f'the model in config {getattr(cfg, "filename", config)} failed to build: '
                          f'{type(e).__name__}: {e}') from None
    model.eval()
    return model


# -- checkpoints -----------------------------------------------------------------------------
def resolve_checkpoint(checkpoint: str) -> Path:
    """Local path of a checkpoint given as a path or a URL (downloaded once into the cache)."""
    parsed = urllib.parse.urlparse(str(checkpoint))
    if parsed.scheme in ('http', 'https', 'file', 'ftp'):
        target = cache_dir() / 'checkpoints' / Path(parsed.path).name
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, suffix='.part')
            try:
                with urllib.request.urlopen(checkpoint) as r, os.fdopen(fd, 'wb') as f:  # noqa: S310
                    shutil.copyfileobj(r, f)
                os.replace(tmp, target)
            except Exception as e:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise CheckpointError(f'cannot download checkpoint {checkpoint}: {e}') from None
        return target
    path = Path(checkpoint).expanduser()
    if not path.is_file() and not path.is_absolute() and (REPO_ROOT / path).is_file():
        path = REPO_ROOT / path
    if not path.is_file():
        raise CheckpointError(f'checkpoint {checkpoint} does not exist; expected a .pth file path or URL')
    return path


def verify_sha256(path: Path, sha256: Optional[str]) -> str:
    """Check a file against a full sha256 and/or the hash suffix of mmseg zoo names (-1234abcd.pth)."""
    digest = sha256_file(path)
    if sha256 and digest != sha256.lower():
        raise CheckpointError(f'checkpoint {path} has sha256 {digest}, expected {sha256}: the file is '
                              'corrupt or not the one the metadata describes')
    m = re.search(r'-([0-9a-f]{8})\.pth$', path.name)
    if m and not digest.startswith(m.group(1)):
        raise CheckpointError(f'checkpoint {path.name} names hash prefix {m.group(1)} but its sha256 '
                              f'starts with {digest[:8]}: the download is corrupt')
    return digest


def read_state_dict(path: Path, key_renames: Optional[Sequence[Sequence[str]]] = None) -> Dict[str, torch.Tensor]:
    """Load tensors with ``weights_only=True`` and apply ``(regex, replacement)`` key renames."""
    try:
        obj = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:
        raise CheckpointError(
            f'checkpoint {path} cannot be loaded with weights_only=True ({type(e).__name__}: '
            f'{str(e).splitlines()[0]}). It contains pickled objects other than tensors. If you trust '
            'the file, extract its weights once: python -c "import torch; c=torch.load(\'IN\', '
            'weights_only=False); torch.save(c.get(\'state_dict\', c), \'OUT\')"') from None
    if isinstance(obj, Mapping):
        for key in ('state_dict', 'model', 'model_state_dict'):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(torch.is_tensor(v) for v in obj.values()):
        raise CheckpointError(f'checkpoint {path} does not hold a state dict of tensors')
    state = {}
    for k, v in obj.items():
        k = k[len('module.'):] if k.startswith('module.') else k
        for pattern, repl in key_renames or ():
            k = re.sub(pattern, repl, k)
        state[k] = v
    return state


def _head_classes(state: Mapping[str, torch.Tensor]) -> Optional[int]:
    for k, v in state.items():
        if k.startswith('decode_head') and k.endswith('conv_seg.weight'):
            return int(v.shape[0])
    return None


def load_weights(model: nn.Module, checkpoint: str, *, sha256: Optional[str] = None,
                 key_renames: Optional[Sequence[Sequence[str]]] = None,
                 num_classes: Optional[int] = None, ignore_keys: Sequence[str] = ()) -> str:
    """Load a checkpoint into ``model`` strictly; returns the file's sha256.

    Args:
        model: The segmentor.
        checkpoint: Path or URL.
        sha256: Expected sha256 of the file (from the metafile), if known.
        key_renames: ``(regex, replacement)`` pairs applied to checkpoint keys.
        num_classes: Class count of the dataset; a checkpoint predicting another count is refused.
        ignore_keys: Regexes of model keys that may be absent (e.g. auxiliary heads).

    Raises:
        CheckpointError: with the missing, unexpected and mis-shaped keys listed.
    """
    path = resolve_checkpoint(checkpoint)
    digest = verify_sha256(path, sha256)
    state = read_state_dict(path, key_renames)
    ckpt_classes = _head_classes(state)
    if num_classes is not None and ckpt_classes is not None and ckpt_classes != num_classes:
        raise CheckpointError(f'checkpoint {path.name} predicts {ckpt_classes} classes but the dataset '
                              f'has {num_classes}; use a checkpoint trained on this dataset')
    own = model.state_dict()
    optional = lambda k: any(re.search(p, k) for p in ignore_keys)  # noqa: E731
    missing = [k for k in own if k not in state and not optional(k)]
    unexpected = [k for k in state if k not in own and not optional(k)]
    mis_shaped = [f'{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}'
                  for k in state if k in own and state[k].shape != own[k].shape]
    if missing or unexpected or mis_shaped:
        def show(items):
            return ', '.join(items[:8]) + (f' ... ({len(items)} in all)' if len(items) > 8 else '')
        parts = []
        if missing:
            parts.append(f'{len(missing)} missing key(s): {show(missing)}')
        if unexpected:
            parts.append(f'{len(unexpected)} unexpected key(s): {show(unexpected)}')
        if mis_shaped:
            parts.append(f'{len(mis_shaped)} mis-shaped key(s): {show(mis_shaped)}')
        raise CheckpointError(f'checkpoint {path.name} does not match the model config: '
                              + '; '.join(parts) + '. Check that the config is the one the '
                              'checkpoint was trained with (or add key renames to its metadata).')
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return digest


def build_pixel_model(config, checkpoint: Optional[str] = None, *, sha256: Optional[str] = None,
                      key_renames: Optional[Sequence[Sequence[str]]] = None,
                      num_classes: Optional[int] = None, ignore_keys: Sequence[str] = ()):
    """Config (+ checkpoint) → ``(PixelSpaceModel, checkpoint_sha256 or None)``."""
    segmentor = build_segmentor(config)
    digest = None
    if checkpoint is not None:
        digest = load_weights(segmentor, checkpoint, sha256=sha256, key_renames=key_renames,
                              num_classes=num_classes, ignore_keys=ignore_keys)
    model = PixelSpaceModel.from_segmentor(segmentor)
    if num_classes is not None and model.num_classes is not None and model.num_classes != num_classes:
        raise ConfigError(f'the model predicts {model.num_classes} classes but the dataset has '
                          f'{num_classes}; set num_classes in the config\'s decode head')
    return model, digest
