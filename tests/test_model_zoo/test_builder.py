"""Config building and safe checkpoint loading (local files and file:// URLs, no downloads)."""
import hashlib

import pytest
import torch

from benchmark.errors import CheckpointError, ConfigError
from model_zoo.builder import build_pixel_model, build_segmentor, sanitize_model_cfg

from conftest import write_tiny_config


def test_sanitize_replaces_syncbn_and_drops_pretrained():
    cfg = {'pretrained': 'open-mmlab://x', 'backbone': {'norm_cfg': {'type': 'SyncBN'},
           'init_cfg': {'type': 'Pretrained', 'checkpoint': 'http://x'}}, 'heads': [{'norm_cfg': {'type': 'SyncBN'}}]}
    out = sanitize_model_cfg(cfg)
    assert out == {'backbone': {'norm_cfg': {'type': 'BN'}}, 'heads': [{'norm_cfg': {'type': 'BN'}}]}


def test_build_and_load_round_trip(tiny_config, tiny_checkpoint):
    model, digest = build_pixel_model(tiny_config, str(tiny_checkpoint), num_classes=19)
    assert digest == hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest()
    state = torch.load(tiny_checkpoint, weights_only=True)
    for k, v in model.segmentor.state_dict().items():
        assert torch.equal(v, state[k])


def test_load_by_url_with_mmseg_style_hash_suffix(tiny_config, tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv('SEGBENCH_CACHE', str(tmp_path / 'cache'))
    digest = hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest()
    named = tmp_path / f'fcn_tiny_20240101-{digest[:8]}.pth'
    named.write_bytes(tiny_checkpoint.read_bytes())
    model, got = build_pixel_model(tiny_config, named.as_uri(), sha256=digest)
    cached = tmp_path / 'cache' / 'checkpoints' / hashlib.sha256(named.as_uri().encode()).hexdigest()[:16] / named.name
    assert got == digest and cached.is_file()
    wrong = tmp_path / 'fcn_tiny_20240101-deadbeef.pth'
    wrong.write_bytes(tiny_checkpoint.read_bytes())
    with pytest.raises(CheckpointError, match='corrupt'):
        build_pixel_model(tiny_config, str(wrong))


def test_mmengine_style_checkpoint_with_module_prefix(tiny_config, tiny_checkpoint, tmp_path):
    state = torch.load(tiny_checkpoint, weights_only=True)
    wrapped = {'meta': {'epoch': 3, 'classes': ['a', 'b']},
               'state_dict': {f'module.{k}': v for k, v in state.items()}}
    path = tmp_path / 'wrapped.pth'
    torch.save(wrapped, path)
    build_pixel_model(tiny_config, str(path))


def test_sha256_mismatch(tiny_config, tiny_checkpoint):
    with pytest.raises(CheckpointError, match='sha256'):
        build_pixel_model(tiny_config, str(tiny_checkpoint), sha256='0' * 64)


def test_class_count_mismatch(tmp_path, tiny_checkpoint):
    cfg21 = write_tiny_config(tmp_path / 'tiny21.py', num_classes=21)
    with pytest.raises(CheckpointError, match='19 classes but the dataset has 21'):
        build_pixel_model(cfg21, str(tiny_checkpoint), num_classes=21)


def test_mismatching_checkpoint_lists_keys(tiny_config, tiny_checkpoint, tmp_path):
    state = torch.load(tiny_checkpoint, weights_only=True)
    key = next(k for k in state if k.endswith('conv1.weight') and 'layer1' in k)
    state[key] = torch.zeros(1, 1, 1, 1)
    state['extra.weight'] = torch.zeros(1)
    del state['decode_head.conv_seg.bias']
    path = tmp_path / 'bad.pth'
    torch.save(state, path)
    with pytest.raises(CheckpointError) as e:
        build_pixel_model(tiny_config, str(path))
    msg = str(e.value)
    assert 'missing key(s): decode_head.conv_seg.bias' in msg
    assert 'unexpected key(s): extra.weight' in msg and f'mis-shaped key(s): {key}' in msg


def test_key_renames_from_metadata(tiny_config, tiny_checkpoint, tmp_path):
    state = torch.load(tiny_checkpoint, weights_only=True)
    path = tmp_path / 'renamed.pth'
    torch.save({k.replace('decode_head.', 'head.'): v for k, v in state.items()}, path)
    with pytest.raises(CheckpointError):
        build_pixel_model(tiny_config, str(path))
    build_pixel_model(tiny_config, str(path), key_renames=[[r'^head\.', 'decode_head.']])


class Arbitrary:
    """A pickled object that weights-only loading must refuse to construct."""


def test_pickled_objects_are_not_constructed(tiny_config, tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'obj': Arbitrary()}, path)
    with pytest.raises(CheckpointError, match='empty state dict') as e:
        build_pixel_model(tiny_config, str(path))
    assert 'weights_only' not in str(e.value)     # never advises loading without the safeguard


def test_missing_and_broken_configs(tmp_path):
    with pytest.raises(ConfigError, match='does not exist'):
        build_segmentor(tmp_path / 'nope.py')
    bad = tmp_path / 'bad.py'
    bad.write_text('model = dict(type="NoSuchSegmentor")\n')
    with pytest.raises(ConfigError, match='failed to build'):
        build_segmentor(bad)
    broken = tmp_path / 'broken.py'
    broken.write_text('model = dict(\n')
    with pytest.raises(ConfigError, match='could not be parsed'):
        build_segmentor(broken)


def test_missing_checkpoint(tiny_config):
    with pytest.raises(CheckpointError, match='does not exist'):
        build_pixel_model(tiny_config, '/nonexistent/w.pth')
