"""The metafile: every entry is well formed, its config exists, committed weights match their sha256."""
from pathlib import Path

import pytest

from model_zoo.builder import REPO_ROOT, sha256_file
from model_zoo.zoo import load_metafile, resolve_model

ZOO = load_metafile()


def test_entries_are_complete():
    assert len(ZOO) >= 3
    for entry in ZOO.values():
        assert entry.architecture and entry.config and entry.paper and entry.license, entry.name
        assert entry.num_classes in (19, 21), entry.name
        if entry.demo:
            assert entry.dataset == 'synthetic_cityscapes' and entry.weights, entry.name


@pytest.mark.parametrize('name', sorted(ZOO))
def test_config_file_exists(name):
    config = ZOO[name].config
    assert (REPO_ROOT / config).is_file() or Path(config).is_file(), config


@pytest.mark.parametrize('name', sorted(n for n, e in ZOO.items() if e.demo))
def test_committed_demo_weights_match_metafile(name):
    entry = ZOO[name]
    path = REPO_ROOT / entry.weights
    if not path.is_file():
        pytest.skip(f'{name}: demo weights not trained yet ({entry.weights})')
    assert entry.sha256 and sha256_file(path) == entry.sha256
    assert path.stat().st_size < 5 * 2 ** 20      # small enough to commit
    if entry.results.get('clean_miou_val', 0) < 0.5:   # below the demo bar: only with the reason
        assert any('below the demo bar' in note for note in entry.known_issues), \
            f'{name}: clean val mIoU {entry.results.get("clean_miou_val")} < 0.5 and no known_issues entry says why'


def test_user_model_dict():
    entry = resolve_model(dict(name='mine', config='a.py', checkpoint='b.pth', sha256='0' * 64))
    assert entry.weights == 'b.pth' and not entry.demo


def test_submitted_entries_join_the_zoo(tmp_path):
    """A model_zoo/submissions/<name>.yaml written by tools/submit.py is a zoo model by name."""
    from common.errors import ConfigError
    from model_zoo.zoo import METAFILE, load_metafile, resolve_model
    subs = tmp_path / 'submissions'
    subs.mkdir()
    (subs / 'mine.yaml').write_text(
        '# written by tools/submit.py\nname: mine_synthcity\nconfig: cfg.py\n'
        'weights: https://example.org/mine.pth\nsha256: ' + 'a' * 64 + '\nnum_classes: 19\n'
        'results:\n  demo_clean_miou: 0.5\n')
    zoo = load_metafile(METAFILE, subs)
    assert zoo['mine_synthcity'].weights == 'https://example.org/mine.pth'
    assert resolve_model('mine_synthcity', zoo).sha256 == 'a' * 64
    assert 'fcn_r18-w16_synthcity' in zoo
    (subs / 'clash.yaml').write_text('name: fcn_r18-w16_synthcity\nconfig: x.py\nweights: w.pth\n')
    with pytest.raises(ConfigError, match='listed twice'):
        load_metafile(METAFILE, subs)
    (subs / 'clash.yaml').write_text('- not a mapping\n')
    with pytest.raises(ConfigError, match='not a YAML mapping'):
        load_metafile(METAFILE, subs)


def test_missing_demo_weights_lists_only_absent_local_files(tmp_path):
    from model_zoo.zoo import ModelEntry, missing_demo_weights
    present = tmp_path / 'w.pth'
    present.write_bytes(b'x')
    entries = [ModelEntry(name='a', config='c.py', weights=str(present), demo=True),
               ModelEntry(name='b', config='c.py', weights=str(tmp_path / 'absent.pth'), demo=True),
               ModelEntry(name='c', config='c.py', weights='https://example.org/w.pth', demo=True),
               ModelEntry(name='d', config='c.py', weights=str(tmp_path / 'absent.pth'), demo=False),
               ModelEntry(name='e', config='c.py', weights='model_zoo/weights/never_there.pth', demo=True)]
    assert [e.name for e in missing_demo_weights(entries)] == ['b', 'e']


def test_count_parameters_leaves_out_auxiliary_heads():
    import torch
    from model_zoo.zoo import count_parameters
    model = torch.nn.Module()
    model.decode_head = torch.nn.Linear(3, 2)          # 8 parameters
    model.auxiliary_head = torch.nn.Linear(4, 5)       # 25 parameters
    assert count_parameters(model) == 8
    assert count_parameters(model, inference_only=False) == 33
