"""Trustworthy checkpoint loading: mmengine Runner checkpoints, no pickled code run, no silent
random weights, URL cache keyed by the whole URL, broken files refused with clear messages."""
import hashlib
import io
import logging
import os
import pickle
import socket
import sys
import threading
import time
import types
import zipfile

import pytest
import torch

from benchmark.errors import CheckpointError, ConfigError
from model_zoo.builder import build_pixel_model, build_segmentor, load_weights, sanitize_model_cfg, url_cache_path
from model_zoo.safe_load import ALLOWED_GLOBALS, clean_text, load_checkpoint_bytes, suspicious_globals
from model_zoo.zoo import ModelEntry, build_zoo_model, load_metafile, resolve_model

from conftest import write_tiny_config

ZOO = load_metafile()


def _state(tiny_checkpoint):
    return torch.load(tiny_checkpoint, weights_only=True)


def _assert_clean(message: str):
    """One printable paragraph that never advises turning weights-only loading off."""
    assert '\x1b' not in message and all(ch.isprintable() for ch in message), repr(message)
    assert 'weights_only' not in message and 'trust the source' not in message


# -- 1. checkpoints written by mmengine's Runner -----------------------------------------------
def test_runner_checkpoint_loads_without_running_pickled_code(tmp_path, tiny_config, synthetic_root):
    """A checkpoint written by a real mmengine Runner (message_hub with HistoryBuffer, optimizer,
    param_schedulers, meta) loads, and its weights are the Runner's model's weights."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    model_cfg = sanitize_model_cfg(Config.fromfile(str(tiny_config)).model.to_dict())
    model_cfg['data_preprocessor']['size_divisor'] = 8     # training batches are padded
    cfg = Config(dict(
        model=model_cfg, work_dir=str(tmp_path / 'work'), default_scope='mmseg',
        train_dataloader=dict(
            batch_size=2, num_workers=0, sampler=dict(type='InfiniteSampler', shuffle=False),
            dataset=dict(type='CityscapesDataset', data_root=str(synthetic_root),
                         data_prefix=dict(img_path='leftImg8bit/train', seg_map_path='gtFine/train'),
                         pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                                   dict(type='PackSegInputs')])),
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=2, val_interval=100),
        optim_wrapper=dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.01, momentum=0.9)),
        param_scheduler=[dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=2, by_epoch=False)],
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2),
                           logger=dict(type='LoggerHook', interval=1)),
        visualizer=dict(type='Visualizer', name=f'vis_ckpt_test_{time.time_ns()}'),
        randomness=dict(seed=0), log_level='WARNING'))
    runner = Runner.from_cfg(cfg)
    runner.train()
    path = tmp_path / 'work' / 'iter_2.pth'
    assert path.is_file()
    raw = zipfile.ZipFile(path).read(next(n for n in zipfile.ZipFile(path).namelist() if n.endswith('data.pkl')))
    assert b'HistoryBuffer' in raw            # the file holds mmengine objects next to the weights
    with pytest.raises(pickle.UnpicklingError):   # which torch's weights-only loader refuses
        torch.load(path, weights_only=True)

    segmentor = build_segmentor(tiny_config)
    digest = load_weights(segmentor, str(path), num_classes=19)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    expected = runner.model.state_dict()
    got = segmentor.state_dict()
    assert set(got) == set(expected)
    for k, v in expected.items():
        assert torch.equal(got[k], v.cpu()), k
    # the weights changed in training, so equality is not a coincidence of initialisation
    torch.manual_seed(123)
    fresh = build_segmentor(tiny_config).state_dict()
    assert any(not torch.equal(fresh[k], v) for k, v in expected.items() if v.is_floating_point())


def test_allow_list_is_small_and_explicit():
    modules = {m for m, _ in ALLOWED_GLOBALS}
    assert modules <= {'torch', 'torch._utils', 'torch._tensor', 'torch.tensor', 'torch.nn.parameter',
                       'torch.storage', 'collections'}
    assert ('builtins', 'getattr') not in ALLOWED_GLOBALS and ('builtins', 'eval') not in ALLOWED_GLOBALS
    # the tensor types are tokens, not the classes (whose constructors allocate what the file asks)
    assert ALLOWED_GLOBALS[('torch', 'Tensor')] is not torch.Tensor
    assert ALLOWED_GLOBALS[('torch', 'float32')] is torch.float32


class _Shell:
    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


class _Exec:
    def __reduce__(self):
        import builtins
        return (builtins.exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


@pytest.mark.parametrize('payload', [_Shell, _Exec])
def test_malicious_reduce_is_not_run(tmp_path, tiny_config, tiny_checkpoint, payload):
    marker = tmp_path / 'MARKER'
    evil = payload()
    evil.marker = marker
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': _state(tiny_checkpoint), 'meta': {'hook': evil}}, path)
    with pytest.raises(CheckpointError) as e:
        build_pixel_model(tiny_config, str(path))
    assert not marker.exists()
    msg = str(e.value)
    assert str(path) in msg and ('posix.system' in msg or 'builtins.exec' in msg)
    assert 'Nothing in it was run' in msg
    _assert_clean(msg)
    # a bare pickle (not torch.save) with the payload at the top is refused as well
    bare = tmp_path / 'bare.pth'
    bare.write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(CheckpointError):
        build_pixel_model(tiny_config, str(bare))
    assert not marker.exists()


def test_named_module_is_never_imported(tmp_path, tiny_checkpoint, monkeypatch):
    """A global naming an importable module gets a placeholder: the module's code never runs."""
    fake = types.ModuleType('sneaky_ckpt_mod')          # stands in for the module while saving
    fake.Thing = type('Thing', (), {'__module__': 'sneaky_ckpt_mod'})
    monkeypatch.setitem(sys.modules, 'sneaky_ckpt_mod', fake)
    path = tmp_path / 'sneaky.pth'
    torch.save({'state_dict': _state(tiny_checkpoint), 'obj': fake.Thing()}, path)
    monkeypatch.delitem(sys.modules, 'sneaky_ckpt_mod')
    marker = tmp_path / 'IMPORTED'                     # the real module has an import side effect
    (tmp_path / 'sneaky_ckpt_mod.py').write_text(f'open({str(marker)!r}, "w").write("x")\nclass Thing: pass\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = load_checkpoint_bytes(path.read_bytes(), RuntimeError)
    assert 'sneaky_ckpt_mod' not in sys.modules and not marker.exists()
    assert loaded.restricted and loaded.unresolved == {'sneaky_ckpt_mod.Thing'}
    assert type(loaded.obj['obj']).pickled_name == 'sneaky_ckpt_mod.Thing'
    assert torch.equal(loaded.obj['state_dict']['decode_head.conv_seg.weight'],
                       _state(tiny_checkpoint)['decode_head.conv_seg.weight'])


class _MyTensor(torch.Tensor):
    pass


def test_tensor_subclass_is_not_constructed(tmp_path, tiny_config, tiny_checkpoint):
    state = _state(tiny_checkpoint)
    key = next(iter(state))
    state[key] = state[key].as_subclass(_MyTensor)
    path = tmp_path / 'subclass.pth'
    torch.save(state, path)
    with pytest.raises(CheckpointError, match='rebuilt as type .*_MyTensor, not as torch.Tensor'):
        build_pixel_model(tiny_config, str(path))


def test_tensor_with_python_attributes_loads(tmp_path, tiny_config, tiny_checkpoint):
    state = _state(tiny_checkpoint)
    key = next(iter(state))
    state[key].note = 'an attribute'   # pickled through torch._tensor._rebuild_from_type_v2
    path = tmp_path / 'attr.pth'
    torch.save({'state_dict': state, 'meta': {'obj': _Plain()}}, path)
    model, _ = build_pixel_model(tiny_config, str(path))
    assert torch.equal(model.segmentor.state_dict()[key], state[key])


class _Plain:
    """An ordinary class a checkpoint may reference (stands for mmengine/numpy objects)."""


def test_suspicious_globals():
    assert suspicious_globals({'posix.system', 'builtins.exec', 'subprocess.Popen', 'builtins.set',
                               'builtins.getattr', 'builtins.__import__',
                               'mmengine.logging.history_buffer.HistoryBuffer',
                               'numpy.core.multiarray._reconstruct'}) == \
        ['builtins.__import__', 'builtins.exec', 'posix.system', 'subprocess.Popen']


def test_escape_codes_never_reach_the_message(tmp_path, tiny_config):
    path = tmp_path / 'red\x1b[31mALERT\x1b[0m.pth'
    path.write_text('not a checkpoint\n')
    with pytest.raises(CheckpointError) as e:
        build_pixel_model(tiny_config, str(path))
    _assert_clean(str(e.value))
    assert '\\x1b[31mALERT' in str(e.value)          # shown as a visible escape
    assert clean_text('a\x1b[2Jb\u202ec\nd') == 'a\\x1b[2Jb\\u202ec d'


# -- 2. URL cache keyed by the whole URL ---------------------------------------------------------
def test_same_file_name_different_urls(tmp_path, tiny_config, tiny_checkpoint, tiny_checkpoint_diverse, monkeypatch):
    monkeypatch.setenv('SEGBENCH_CACHE', str(tmp_path / 'cache'))
    a, b = tmp_path / 'a' / 'model.pth', tmp_path / 'b' / 'model.pth'
    for src, dst in ((tiny_checkpoint, a), (tiny_checkpoint_diverse, b)):
        dst.parent.mkdir()
        dst.write_bytes(src.read_bytes())
    model_a, sha_a = build_pixel_model(tiny_config, a.as_uri())
    model_b, sha_b = build_pixel_model(tiny_config, b.as_uri())
    assert sha_a == hashlib.sha256(a.read_bytes()).hexdigest()
    assert sha_b == hashlib.sha256(b.read_bytes()).hexdigest() != sha_a
    w = 'decode_head.conv_seg.weight'
    assert torch.equal(model_b.segmentor.state_dict()[w], _state(tiny_checkpoint_diverse)[w])
    assert url_cache_path(a.as_uri()) != url_cache_path(b.as_uri())
    assert url_cache_path(a.as_uri()).name == 'model.pth'
    # from the cache the second time, still each its own
    _, again_b = build_pixel_model(tiny_config, b.as_uri())
    assert again_b == sha_b


def _serve_once(body: bytes, claimed_length: int):
    """A one-shot HTTP server that announces ``claimed_length`` bytes, sends ``body`` and closes."""
    srv = socket.socket()
    srv.bind(('127.0.0.1', 0))
    srv.listen(1)

    def run():
        conn, _ = srv.accept()
        conn.recv(65536)
        conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n' % claimed_length + body)
        conn.close()
        srv.close()
    threading.Thread(target=run, daemon=True).start()
    return f'http://127.0.0.1:{srv.getsockname()[1]}/weights/tiny.pth'


def test_partial_download_never_becomes_the_cached_file(tmp_path, tiny_config, tiny_checkpoint, monkeypatch):
    monkeypatch.setenv('SEGBENCH_CACHE', str(tmp_path / 'cache'))
    data = tiny_checkpoint.read_bytes()
    url = _serve_once(data[:len(data) // 2], len(data))
    with pytest.raises(CheckpointError, match=r'cannot download checkpoint .* ended after \d+ of \d+ bytes'):
        build_pixel_model(tiny_config, url)
    assert not url_cache_path(url).exists()
    assert not list((tmp_path / 'cache').rglob('*.part'))


def test_unreachable_url_fails_fast(tmp_path, tiny_config, monkeypatch):
    monkeypatch.setenv('SEGBENCH_CACHE', str(tmp_path / 'cache'))
    t0 = time.time()
    with pytest.raises(CheckpointError) as e:
        build_pixel_model(tiny_config, 'http://127.0.0.1:9/x.pth')
    assert time.time() - t0 < 20
    msg = str(e.value)
    assert msg.startswith('cannot download checkpoint http://127.0.0.1:9/x.pth') and 'local path' in msg
    _assert_clean(msg)


# -- 3. no silent random weights -------------------------------------------------------------------
def test_zoo_entry_without_weights_is_refused_when_resolved():
    entry = ZOO['fcn8s_vgg16_cityscapes']
    assert entry.weights is None
    with pytest.raises(ConfigError) as e:
        resolve_model('fcn8s_vgg16_cityscapes', ZOO)
    msg = str(e.value)
    assert f"dict(name='fcn8s_vgg16_cityscapes', config='{entry.config}', checkpoint='path/or/url.pth')" in msg
    assert 'tools/train.py' in msg and 'converted' in msg and entry.code in msg
    assert 'random_weights=True' in msg and 'metafile' in msg


def test_every_weightless_zoo_entry_is_refused_and_demo_entries_resolve():
    for name, entry in ZOO.items():
        if entry.weights is None:
            with pytest.raises(ConfigError, match='has no weights'):
                resolve_model(name, ZOO)
        else:
            assert resolve_model(name, ZOO) is entry
    assert all(e.weights for e in ZOO.values() if e.demo)


def test_user_model_without_checkpoint_is_refused(tiny_config):
    with pytest.raises(ConfigError, match="model 'mine' has no `checkpoint`.*checkpoint='path/or/url.pth'"):
        resolve_model(dict(name='mine', config=str(tiny_config)), ZOO)


def test_suite_with_weightless_model_fails_when_loaded():
    from benchmark.suite import load_suite
    with pytest.raises(ConfigError, match='fcn8s_vgg16_cityscapes.*has no weights'):
        load_suite(dict(dataset=dict(type='synthetic_cityscapes'), models=['fcn8s_vgg16_cityscapes'],
                        attacks=[dict(type='fgsm')], epsilons=[1]))


def test_random_weights_only_when_asked(tiny_config, caplog):
    with caplog.at_level(logging.WARNING, logger='model_zoo.zoo'):
        entry = resolve_model(dict(name='rand', config=str(tiny_config), random_weights=True), ZOO)
    assert entry.random_weights and entry.weights is None
    assert any('rand' in r.getMessage() and 'RANDOM' in r.getMessage() for r in caplog.records)
    model, digest = build_zoo_model(entry, num_classes=19)
    assert digest is None
    with pytest.raises(ConfigError, match='both a checkpoint'):
        resolve_model(dict(name='rand', config=str(tiny_config), checkpoint='x.pth', random_weights=True), ZOO)
    with pytest.raises(ConfigError, match='random_weights must be True or False'):
        resolve_model(dict(name='rand', config=str(tiny_config), random_weights='yes'), ZOO)
    with pytest.raises(CheckpointError, match='has no `checkpoint`'):   # built directly, unchecked
        build_zoo_model(ModelEntry(name='bare', config=str(tiny_config)))
    assert resolve_model('fcn8s_vgg16_cityscapes', ZOO, require_weights=False).weights is None


# -- 4. non-finite weights -------------------------------------------------------------------------
@pytest.mark.parametrize('bad', [float('nan'), float('inf')])
def test_non_finite_weights_are_refused(tmp_path, tiny_config, tiny_checkpoint, bad):
    state = _state(tiny_checkpoint)
    floating = [k for k, v in state.items() if v.is_floating_point()]
    for k in floating[:10]:
        state[k].view(-1)[0] = bad
    path = tmp_path / 'nan.pth'
    torch.save(state, path)
    with pytest.raises(CheckpointError) as e:
        build_pixel_model(tiny_config, str(path))
    msg = str(e.value)
    assert str(path) in msg and 'NaN or infinite values in 10 tensor(s)' in msg and '(10 in all)' in msg
    assert sum(k in msg for k in floating[:10]) == 8      # names at most 8 keys


# -- 5. other bad checkpoints ----------------------------------------------------------------------
def _truncated_zip(tiny_checkpoint) -> bytes:
    data = tiny_checkpoint.read_bytes()
    return data[:len(data) // 2]


@pytest.mark.parametrize('content, match', [
    (b'', 'the file is empty'),
    (b'model weights go here\n', 'text file, starting with "model weights go here "'),
    (b'version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1\n', 'Git LFS pointer'),
    ('truncated', 'truncated or damaged zip archive'),
    (bytes(range(200, 256)) * 4, 'not a PyTorch checkpoint'),
])
def test_unreadable_files(tmp_path, tiny_config, tiny_checkpoint, content, match):
    path = tmp_path / 'w.pth'
    path.write_bytes(_truncated_zip(tiny_checkpoint) if content == 'truncated' else content)
    with pytest.raises(CheckpointError, match=match) as e:
        build_pixel_model(tiny_config, str(path))
    assert str(e.value).startswith(f'checkpoint {path} is refused: ')
    _assert_clean(str(e.value))


def test_directory_as_checkpoint(tmp_path, tiny_config, tiny_checkpoint):
    (tmp_path / 'inner.pth').write_bytes(tiny_checkpoint.read_bytes())
    with pytest.raises(CheckpointError, match=r'is a directory \(it holds inner.pth\); expected the path of a .pth file'):
        build_pixel_model(tiny_config, str(tmp_path))


def test_state_dict_with_non_tensors(tmp_path, tiny_config, tiny_checkpoint):
    state = _state(tiny_checkpoint)
    state['decode_head.extra'] = [1, 2]
    state['backbone.obj'] = _Plain()
    path = tmp_path / 'odd.pth'
    torch.save({'state_dict': state}, path)
    with pytest.raises(CheckpointError, match=r'holds 2 entries that are not a tensor under a name: '
                                              r'decode_head.extra \(list\), backbone.obj \(<.*_Plain \(not loaded\)>\)'):
        build_pixel_model(tiny_config, str(path))
    path2 = tmp_path / 'empty.pth'
    torch.save({'state_dict': {}, 'meta': {}}, path2)
    with pytest.raises(CheckpointError, match='empty state dict'):
        build_pixel_model(tiny_config, str(path2))
    path3 = tmp_path / 'list.pth'
    torch.save([1, 2, 3], path3)
    with pytest.raises(CheckpointError, match='holds no state dict but a list'):
        build_pixel_model(tiny_config, str(path3))


@pytest.mark.parametrize('sha', ['abc', '0' * 63, 'g' * 64, 12])
def test_bad_sha256_refused_when_resolved(tiny_config, sha):
    with pytest.raises(ConfigError, match='is not a sha256 digest; expected 64 hexadecimal digits'):
        resolve_model(dict(name='mine', config=str(tiny_config), checkpoint='w.pth', sha256=sha), ZOO)
    assert resolve_model(dict(name='mine', config=str(tiny_config), checkpoint='w.pth', sha256='AB' * 32), ZOO)


def test_class_count_mismatch_names_the_file(tmp_path, tiny_checkpoint):
    cfg21 = write_tiny_config(tmp_path / 'tiny21.py', num_classes=21)
    with pytest.raises(CheckpointError, match=f'checkpoint {tiny_checkpoint} predicts 19 classes but the dataset has 21'):
        build_pixel_model(cfg21, str(tiny_checkpoint), num_classes=21)


def test_digest_is_of_the_loaded_bytes(tmp_path, tiny_config, tiny_checkpoint):
    path = tmp_path / 'w.pth'
    path.write_bytes(tiny_checkpoint.read_bytes())
    _, digest = build_pixel_model(tiny_config, str(path), sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    assert digest == hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest()


def test_parameters_and_whole_models(tmp_path, tiny_config, tiny_checkpoint):
    """nn.Parameter values load through the restricted path; a whole pickled model is refused
    with the hint to save its state dict."""
    segmentor = build_segmentor(tiny_config)
    segmentor.load_state_dict(_state(tiny_checkpoint))
    params = dict(segmentor.named_parameters())
    state = {k: params.get(k, v) for k, v in segmentor.state_dict().items()}
    assert any(isinstance(v, torch.nn.Parameter) for v in state.values())
    path = tmp_path / 'params.pth'
    torch.save({'state_dict': state, 'meta': _Plain()}, path)
    model, _ = build_pixel_model(tiny_config, str(path))
    for k, v in _state(tiny_checkpoint).items():
        assert torch.equal(model.segmentor.state_dict()[k], v), k
    whole = tmp_path / 'whole.pth'
    torch.save(segmentor, whole)
    with pytest.raises(CheckpointError, match=r'holds a pickled mmseg\.models\.segmentors\.encoder_decoder\.'
                                              r'EncoderDecoder object .*save model.state_dict\(\) instead'):
        build_pixel_model(tiny_config, str(whole))


def test_restricted_unpickler_sets_no_state_on_real_objects():
    """BUILD may fill placeholders only: a file cannot rewrite an allowed function's defaults."""
    from model_zoo import safe_load
    before = safe_load._rebuild_tensor_v2.__defaults__
    payload = (b'\x80\x02ctorch._utils\n_rebuild_tensor_v2\nN}X\x0c\x00\x00\x00__defaults__K\x01\x85s'
               b'\x86b.')
    with pytest.raises(safe_load.UnsafeCheckpoint, match='sets the state of a function'):
        safe_load._restricted_pickle_module(set()).load(io.BytesIO(payload))
    assert safe_load._rebuild_tensor_v2.__defaults__ == before


def test_tensor_views_must_lie_inside_their_storage():
    """Tensor.set_ would grow the storage to whatever size the file names (an allocation of any size)."""
    from model_zoo.safe_load import UnsafeCheckpoint, _rebuild_tensor_v2
    storage = torch.arange(4, dtype=torch.float32).untyped_storage()
    typed = torch.storage.TypedStorage(wrap_storage=storage, dtype=torch.float32, _internal=True)
    assert _rebuild_tensor_v2(typed, 1, (3,), (1,)).tolist() == [1.0, 2.0, 3.0]
    for offset, size, stride in [(2, (3,), (1,)), (0, (2 ** 40,), (1,)), (0, (2,), (-1,)), (-1, (1,), (1,))]:
        with pytest.raises(UnsafeCheckpoint):
            _rebuild_tensor_v2(typed, offset, size, stride)
