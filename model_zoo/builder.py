"""Build mmseg segmentors from configs and load their weights safely.

* Configs: any mmseg config file (ours under ``model_zoo/configs/``, mmseg's own via
  ``mmseg::``-prefixed ``_base_``, or a user's). ``SyncBN`` becomes ``BN`` (no process group on one
  CPU) and ``pretrained=`` / ``init_cfg=dict(type='Pretrained')`` entries are dropped, so building
  never downloads anything: weights come from the checkpoint.
* Checkpoints: a path or a URL. A URL is downloaded once into the cache, keyed by the whole URL
  (``checkpoints/<sha256(url)[:16]>/<file name>``), through a temporary file renamed when complete,
  with a timeout. The file is read once; its sha256 is checked against the metadata (and the
  8-hex-digit hash suffix of mmseg model-zoo file names) and returned, so a record names the file
  actually loaded. Unpickling never runs pickled code (:mod:`model_zoo.safe_load`:
  ``torch.load(weights_only=True)``, then a restricted unpickler for checkpoints written by
  mmengine's Runner). The state dict (itself, or under ``state_dict`` / ``model`` /
  ``model_state_dict``; ``module.`` stripped; the metadata's key renames applied) must hold only
  tensors, all finite, with exactly the model's keys, shapes and class count; every refusal is a
  :class:`CheckpointError` naming the file and what is wrong.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from common.errors import CheckpointError, ConfigError
from common.hashing import sha256_file  # noqa: F401  (re-exported: model_zoo.builder.sha256_file)

from .pixel_model import PixelSpaceModel
from .safe_load import Unresolved, clean_text, load_checkpoint_bytes

logger = logging.getLogger(__name__)
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
    if path.is_dir():
        raise ConfigError(f'model config {config} is a directory; expected an mmseg config file '
                          '(.py) such as model_zoo/configs/fcn/fcn_r18-w16-d8_1.5k_synthcity-256x128.py')
    if not path.is_file():
        raise ConfigError(f'model config {config} does not exist; expected an mmseg config file '
                          '(.py) such as model_zoo/configs/fcn/fcn_r18-w16-d8_1.5k_synthcity-256x128.py')
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
#: Seconds a download may wait for the server (connect, or between two reads) before it fails.
DOWNLOAD_TIMEOUT = 60.0
_SHA256_RE = re.compile(r'^[0-9a-fA-F]{64}$')
_URL_SCHEMES = ('http', 'https', 'file', 'ftp')


def _error(message: str) -> CheckpointError:
    """A CheckpointError whose message is one printable paragraph (no terminal escape codes)."""
    return CheckpointError(clean_text(message, limit=4000))


def is_url(checkpoint: str) -> bool:
    """True if ``checkpoint`` is a URL (http, https, ftp, file) rather than a path."""
    return urllib.parse.urlparse(str(checkpoint)).scheme in _URL_SCHEMES


def check_sha256(sha256: Optional[str], where: str) -> Optional[str]:
    """``sha256`` in lower case, or a ConfigError naming ``where`` if it is not 64 hex digits."""
    if sha256 is None:
        return None
    if not isinstance(sha256, str) or not _SHA256_RE.match(sha256):
        raise ConfigError(clean_text(
            f'{where}: sha256 {sha256!r} is not a sha256 digest; expected 64 hexadecimal digits (as '
            'printed by `sha256sum FILE`), or leave it out', limit=4000))
    return sha256.lower()


def url_cache_path(url: str) -> Path:
    """Where a URL's download is cached: ``checkpoints/<sha256(url)[:16]>/<file name>``.

    Keyed by the whole URL, so two URLs ending in the same file name never share a file; the file
    name is kept because mmseg zoo names carry a hash prefix that :func:`verify_sha256` checks.
    """
    name = Path(urllib.parse.urlparse(url).path).name
    if name in ('', '.', '..'):
        name = 'checkpoint.pth'
    return cache_dir() / 'checkpoints' / hashlib.sha256(url.encode('utf-8')).hexdigest()[:16] / name


def _download(url: str, target: Path) -> None:
    """Download ``url`` to ``target`` via a temporary file: a partial download is never ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name + '.', suffix='.part')
    try:
        with os.fdopen(fd, 'wb') as f, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as r:  # noqa: S310
            expected = r.headers.get('Content-Length') if hasattr(r, 'headers') else None
            shutil.copyfileobj(r, f, 1 << 20)
            got = f.tell()
        # urllib does not notice a connection closed early when the length is known: check it
        if expected is not None and expected.isdigit() and int(expected) != got:
            raise OSError(f'the transfer ended after {got} of {int(expected)} bytes')
        os.replace(tmp, target)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if not isinstance(e, Exception):   # KeyboardInterrupt: nothing half-written is left behind
            raise
        # URLError: its reason (e.g. "[Errno 111] Connection refused"); HTTPError: "HTTP Error 404: ..."
        reason = e if isinstance(e, urllib.error.HTTPError) else getattr(e, 'reason', None) or e
        raise _error(f'cannot download checkpoint {url}: {type(e).__name__}: {reason}. Check the URL '
                     f'and the network (a download waits at most {DOWNLOAD_TIMEOUT:g} s for the server), '
                     'or download the file yourself and give its local path as the checkpoint') from None


def resolve_checkpoint(checkpoint: str) -> Path:
    """Local path of a checkpoint given as a path or a URL (downloaded once into the cache)."""
    if is_url(checkpoint):
        target = url_cache_path(str(checkpoint))
        if not target.is_file():
            _download(str(checkpoint), target)
        return target
    path = Path(checkpoint).expanduser()
    if not path.exists() and not path.is_absolute() and (REPO_ROOT / path).exists():
        path = REPO_ROOT / path
    if path.is_dir():
        inside = sorted(p.name for p in path.glob('*.pth'))[:3]
        hint = f' (it holds {", ".join(inside)})' if inside else ''
        raise _error(f'checkpoint {checkpoint} is a directory{hint}; expected the path of a .pth file '
                     'or a URL')
    if not path.is_file():
        raise _error(f'checkpoint {checkpoint} does not exist; expected a .pth file path or URL')
    return path


def _verify_digest(label: str, name: str, digest: str, sha256: Optional[str], cached: bool) -> None:
    again = ' Delete the cached file to download it again.' if cached else ''
    if sha256 and digest != sha256.lower():
        raise _error(f'checkpoint {label} has sha256 {digest}, expected {sha256}: the file is corrupt '
                     f'or not the one the metadata describes.{again}')
    m = re.search(r'-([0-9a-f]{8})\.pth$', name)
    if m and not digest.startswith(m.group(1)):
        raise _error(f'checkpoint {label} names hash prefix {m.group(1)} but its sha256 starts with '
                     f'{digest[:8]}: the file is corrupt (an interrupted or altered download).{again}')


def verify_sha256(path: Path, sha256: Optional[str]) -> str:
    """Check a file against a full sha256 and/or the hash suffix of mmseg zoo names (-1234abcd.pth)."""
    digest = sha256_file(path)
    _verify_digest(str(path), Path(path).name, digest, sha256, cached=False)
    return digest


def _state_dict_of(obj: Any, label: str) -> Mapping:
    """The state dict inside a loaded checkpoint (itself, or under state_dict/model/model_state_dict)."""
    if isinstance(obj, Mapping):
        for key in ('state_dict', 'model', 'model_state_dict'):
            if key in obj and isinstance(obj[key], Mapping):
                return obj[key]
        if any(torch.is_tensor(v) for v in obj.values()):
            return obj
        keys = ', '.join(clean_text(k, 40) for k in list(obj)[:8])
        raise _error(f'checkpoint {label} holds no state dict: a dict with keys {keys or "(none)"} but '
                     'no `state_dict`, `model` or `model_state_dict` entry and no tensors; expected '
                     'a state dict (parameter name -> tensor) or a checkpoint dict holding one')
    if isinstance(obj, Unresolved):
        raise _error(f'checkpoint {label} holds a pickled {obj.pickled_name} object (not built: this '
                     'loader builds tensors only), not a state dict. If it is a whole model saved with '
                     'torch.save(model), save model.state_dict() instead')
    raise _error(f'checkpoint {label} holds no state dict but a {type(obj).__name__}; expected a '
                 'state dict (parameter name -> tensor) or a checkpoint dict holding one under '
                 '`state_dict`, `model` or `model_state_dict`')


def _show(items: Sequence[str]) -> str:
    return ', '.join(clean_text(i, 120) for i in items[:8]) + (f' ... ({len(items)} in all)' if len(items) > 8 else '')


def _check_tensors(state: Mapping, label: str) -> None:
    """Refuse a state dict that is empty, holds non-tensors, or holds NaN/Inf weights."""
    if not state:
        raise _error(f'checkpoint {label} holds an empty state dict; expected the weights of the model')
    odd = [f'{k} ({v!r})' if isinstance(v, Unresolved) else f'{k} ({type(v).__name__})'
           for k, v in state.items()
           if not isinstance(k, str) or type(v) not in (torch.Tensor, torch.nn.Parameter)]
    if odd:
        raise _error(f'checkpoint {label}: its state dict holds {len(odd)} entr{"y" if len(odd) == 1 else "ies"} '
                     f'that {"is" if len(odd) == 1 else "are"} not a tensor under a name: {_show(odd)}; '
                     'expected parameter names mapped to tensors')
    broken = [k for k, v in state.items()
              if (v.is_floating_point() or v.is_complex()) and not bool(torch.isfinite(v).all())]
    if broken:
        raise _error(f'checkpoint {label} holds NaN or infinite values in {len(broken)} tensor(s): '
                     f'{_show(broken)}. The weights are broken (a diverged training run or a damaged '
                     'conversion) and every number computed from them would be meaningless; use '
                     'another checkpoint')


def read_checkpoint(path: Path, *, sha256: Optional[str] = None,
                    key_renames: Optional[Sequence[Sequence[str]]] = None,
                    label: Optional[str] = None, cached: bool = False) -> Tuple[Dict[str, torch.Tensor], str]:
    """Read, verify and unpickle a checkpoint file without running pickled code.

    The file is read once: the sha256 that is checked and returned is that of the bytes loaded.

    Args:
        path: The local file.
        sha256: Expected sha256 (also checked: the hash prefix of mmseg zoo file names).
        key_renames: ``(regex, replacement)`` pairs applied to the keys (after ``module.`` is stripped).
        label: How messages name the file (default: the path).
        cached: The file is a cached download (messages say how to fetch it again).

    Returns:
        ``(state dict, sha256 of the file)``.

    Raises:
        CheckpointError: the file is unreadable, not a checkpoint, unsafe, holds no state dict,
            non-tensors or non-finite weights, or does not match ``sha256``.
    """
    label = label or str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise _error(f'checkpoint {label} cannot be read: {e.strerror or e}') from None
    digest = hashlib.sha256(data).hexdigest()
    _verify_digest(label, Path(path).name, digest, sha256, cached)
    again = ' Delete the cached file to download it again.' if cached else ''
    loaded = load_checkpoint_bytes(data, lambda reason: _error(
        f'checkpoint {label} is refused: {reason}. Expected a .pth file written by torch.save holding '
        'a state dict, or a checkpoint dict with one under `state_dict`, `model` or `model_state_dict`.'
        + again))
    del data
    if loaded.restricted:
        logger.info('checkpoint %s: loaded with the restricted unpickler; %d other object type(s) '
                    'left unbuilt (%s)', clean_text(label), len(loaded.unresolved),
                    clean_text(', '.join(sorted(loaded.unresolved)[:5])))
    obj = _state_dict_of(loaded.obj, label)
    _check_tensors(obj, label)
    state = {}
    for k, v in obj.items():
        k = k[len('module.'):] if k.startswith('module.') else k
        for pattern, repl in key_renames or ():
            k = re.sub(pattern, repl, k)
        state[k] = v.detach() if isinstance(v, torch.nn.Parameter) else v
    return state, digest


def read_state_dict(path: Path, key_renames: Optional[Sequence[Sequence[str]]] = None) -> Dict[str, torch.Tensor]:
    """The state dict of a checkpoint file, keys renamed by ``(regex, replacement)`` pairs."""
    return read_checkpoint(path, key_renames=key_renames)[0]


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
    sha256 = check_sha256(sha256, f'checkpoint {checkpoint}')
    path = resolve_checkpoint(checkpoint)
    label = f'{checkpoint} (cached as {path})' if is_url(checkpoint) else str(checkpoint)
    state, digest = read_checkpoint(path, sha256=sha256, key_renames=key_renames, label=label,
                                    cached=is_url(checkpoint))
    ckpt_classes = _head_classes(state)
    if num_classes is not None and ckpt_classes is not None and ckpt_classes != num_classes:
        raise _error(f'checkpoint {label} predicts {ckpt_classes} classes but the dataset '
                     f'has {num_classes}; use a checkpoint trained on this dataset')
    own = model.state_dict()
    optional = lambda k: any(re.search(p, k) for p in ignore_keys)  # noqa: E731
    missing = [k for k in own if k not in state and not optional(k)]
    unexpected = [k for k in state if k not in own and not optional(k)]
    mis_shaped = [f'{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}'
                  for k in state if k in own and state[k].shape != own[k].shape]
    if missing or unexpected or mis_shaped:
        show = _show
        parts = []
        if missing:
            parts.append(f'{len(missing)} missing key(s): {show(missing)}')
        if unexpected:
            parts.append(f'{len(unexpected)} unexpected key(s): {show(unexpected)}')
        if mis_shaped:
            parts.append(f'{len(mis_shaped)} mis-shaped key(s): {show(mis_shaped)}')
        raise _error(f'checkpoint {label} does not match the model config: '
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
