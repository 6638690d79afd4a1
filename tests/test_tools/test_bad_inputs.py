"""Malformed inputs through the real command-line tools: each one a clear error, or the right number.

Every case of :data:`CASES` is one thing a new user or a hostile reviewer may feed the tools
(``tools/run_benchmark.py``, ``tools/make_leaderboard.py``, ``tools/validate_results.py``,
``tools/submit.py``): a broken suite, a bad option, a damaged dataset, checkpoint, config or results
folder, an odd environment. The expected behaviour of a refusal is exit status 2 (1 for
``validate_results.py`` and ``make_leaderboard.py --strict`` finding problems), a message on stderr
that starts with ``error: ``, is one paragraph naming the wrong thing and what was expected, shows
no traceback, and leaves every file already stored byte for byte as it was (the results folder is
hashed before and after). Inputs that are unusual but valid (a checkpoint written by mmengine's
``Runner``, a relative ``data_root`` used from another directory, a YAML suite, no ``$HOME``) must
give the same records as the plain input instead.

Most cases run the tool's ``main(argv)`` in this process under the tools' own ``main_guard`` (a
subprocess pays about 5 s of imports); the cases marked ``subprocess`` run the command line for
real. ``docs/bad_inputs.md`` lists every case by id; :func:`test_doc_table_matches_cases` keeps the
two in step.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Tuple, Union

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / 'tools'
DOC = REPO / 'docs' / 'bad_inputs.md'
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))

from conftest import write_tiny_config  # noqa: E402

SUITE_NAME = 'badin'
MODEL = 'tiny'


# -- the environment every case starts from -------------------------------------------------------
@pytest.fixture(scope='module')
def baseline(tmp_path_factory, tiny_config, tiny_checkpoint, synthetic_root):
    """A results folder holding the default suite's two cells of the tiny model (computed once)."""
    from benchmark.runner import Runner
    from benchmark.suite import load_suite
    root = tmp_path_factory.mktemp('baseline')
    suite = load_suite(suite_fields(tiny_config, tiny_checkpoint, synthetic_root))
    Runner(suite, root / 'results', progress=False).run()
    return root / 'results'


def suite_fields(config, checkpoint, data_root) -> dict:
    return dict(suite_name=SUITE_NAME,
                dataset=dict(type='cityscapes', data_root=str(data_root), resize=(64, 32), num_images=2),
                models=[dict(name=MODEL, config=str(config), checkpoint=str(checkpoint))],
                attacks=['fgsm'], epsilons=[8], batch_size=2)


class Env:
    """One case's folders: a copy of the baseline results, a leaderboard folder, suite writers."""

    def __init__(self, tmp: Path, baseline: Path, config: Path, checkpoint: Path, data_root: Path):
        self.tmp, self.config, self.checkpoint, self.data_root = tmp, config, checkpoint, data_root
        self.results = tmp / 'results'
        shutil.copytree(baseline, self.results)
        self.leaderboard = tmp / 'lb'
        self.cwd = REPO
        self.env = {}
        self.before = {}

    # suites ------------------------------------------------------------------------------------
    def suite_text(self, **fields) -> str:
        """Suite source: the default suite with ``fields`` replaced (values are Python source;
        ``None`` drops a field)."""
        base = {k: repr(v) for k, v in suite_fields(self.config, self.checkpoint, self.data_root).items()}
        base.update(fields)
        return ''.join(f'{k} = {v}\n' for k, v in base.items() if v is not None)

    def suite(self, name: str = 'suite.py', **fields) -> Path:
        path = self.tmp / name
        path.write_text(self.suite_text(**fields))
        return path

    def model(self, checkpoint=None, config=None, name='mine', **extra) -> str:
        """A ``models`` list of one user model (not the baseline's, whose cells are all stored and so
        need no checkpoint at all)."""
        spec = dict(name=name, config=str(config or self.config), checkpoint=str(checkpoint or self.checkpoint))
        spec.update(extra)
        return repr([spec])

    def dataset(self, **changes) -> str:
        spec = dict(type='cityscapes', data_root=str(self.data_root), resize=(64, 32), num_images=2)
        spec.update(changes)
        return repr({k: v for k, v in spec.items() if v is not None})

    def data_copy(self) -> Path:
        """A private copy of the tiny dataset to damage."""
        target = self.tmp / 'data'
        if not target.exists():
            shutil.copytree(self.data_root, target)
        return target

    def run(self, suite: Path, *options) -> Tuple[str, List[str]]:
        return 'run_benchmark', [str(suite), '--results-dir', str(self.results), '--leaderboard-dir',
                                 str(self.leaderboard), '--no-progress', *map(str, options)]

    def run_fields(self, *options, **fields):
        return self.run(self.suite(**fields), *options)

    def state_dict(self):
        return torch.load(self.checkpoint, weights_only=True)

    def checkpoint_file(self, name: str, content) -> Path:
        path = self.tmp / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            torch.save(content, path)
        return path

    def model_dir(self) -> Path:
        return self.results / SUITE_NAME / MODEL

    def record(self, attack: str = 'fgsm') -> Path:
        return next(self.model_dir().glob(f'{attack}_eps*.json'))


@dataclass
class Case:
    """One malformed (or unusual but valid) input.

    ``make(env)`` creates the files and returns ``(tool, argv)``; ``expect`` is a fragment of the
    message (stderr for exit code 2, stdout otherwise); ``check(env, out, err)`` asserts the
    right result of a valid input or anything beyond the message.
    """

    id: str
    wrong: str
    make: Callable[[Env], Tuple[str, List[str]]]
    expect: Union[str, Tuple[str, ...]]
    code: int = 2
    subprocess: bool = False
    check: Optional[Callable] = None
    changes_results: bool = False   # a valid run may add records (never change stored ones)
    known_defect: str = ''          # a defect in a file of another owner: expected to fail until fixed

    def fragments(self) -> Tuple[str, ...]:
        return (self.expect,) if isinstance(self.expect, str) else tuple(self.expect)


# -- helpers for the makers -------------------------------------------------------------------------
def _png_rewrite(path: Path, array: np.ndarray, mode: Optional[str] = None) -> None:
    from PIL import Image
    Image.fromarray(array, mode=mode).save(path)


def _first_label(data: Path) -> Path:
    return sorted((data / 'gtFine' / 'val').rglob('*_labelTrainIds.png'))[0]


def _first_image(data: Path) -> Path:
    return sorted((data / 'leftImg8bit' / 'val').rglob('*_leftImg8bit.png'))[0]


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image
    return np.array(Image.open(path))


def _label_other_size(env):
    data = env.data_copy()
    label = _first_label(data)
    _png_rewrite(label, np.zeros((16, 32), np.uint8))
    return env.run_fields(dataset=env.dataset(data_root=str(data)))


def _label_ids_out_of_range(env):
    data = env.data_copy()
    label = _first_label(data)
    arr = _read_png(label)
    arr[0, :5] = 40
    _png_rewrite(label, arr)
    return env.run_fields(dataset=env.dataset(data_root=str(data)))


def _label_16bit(env, value, **fields):
    data = env.data_copy()
    label = _first_label(data)
    arr = _read_png(label).astype(np.uint16)
    arr[0, 0] = value
    from PIL import Image
    Image.fromarray(arr).save(label)       # PIL writes uint16 arrays as 16-bit greyscale PNG
    assert Image.open(label).mode.startswith('I')
    return env.run_fields(dataset=env.dataset(data_root=str(data)), **fields)


def _label_rgb(env):
    data = env.data_copy()
    label = _first_label(data)
    arr = _read_png(label)
    _png_rewrite(label, np.stack([arr] * 3, axis=-1))
    return env.run_fields(dataset=env.dataset(data_root=str(data)))


def _image_corrupt(env):
    data = env.data_copy()
    image = _first_image(data)
    raw = image.read_bytes()
    image.write_bytes(raw[:len(raw) // 2])
    return env.run_fields(dataset=env.dataset(data_root=str(data)))


def _image_garbage(env):
    data = env.data_copy()
    _first_image(data).write_bytes(b'\x89PNG\r\n\x1a\n' + b'not really a png' * 10)
    return env.run_fields(dataset=env.dataset(data_root=str(data)))


def _empty_split(env):
    data = env.data_copy()
    for sub in ('leftImg8bit', 'gtFine'):
        shutil.rmtree(data / sub / 'val')
        (data / sub / 'val').mkdir()
    return env.run_fields(dataset=env.dataset(data_root=str(data)))


def _wrong_layout(env):
    flat = env.tmp / 'flat'
    flat.mkdir()
    for p in env.data_root.rglob('*.png'):
        shutil.copy(p, flat / p.name)
    return env.run_fields(dataset=env.dataset(data_root=str(flat)))


def _image_list_missing(env):
    listing = env.tmp / 'ids.txt'
    listing.write_text('noiseford/noiseford_000000_000019\nnowhere/nowhere_000123_000019\n')
    return env.run_fields(dataset=env.dataset(image_list=str(listing)))


def _relative_from_cwd(env):
    """A data_root relative to the working directory (not the repository root)."""
    shutil.copytree(env.data_root, env.tmp / 'mydata')
    env.cwd = env.tmp
    return env.run_fields(dataset=env.dataset(data_root='mydata'))


def _relative_data_root_valid(env):
    env.cwd = env.tmp                  # started elsewhere: the path is taken from the repository root
    rel = os.path.relpath(env.data_root, REPO)
    return env.run_fields(dataset=env.dataset(data_root=rel))


def _truncated_checkpoint(env):
    raw = env.checkpoint.read_bytes()
    return env.run_fields(models=env.model(env.checkpoint_file('half.pth', raw[:len(raw) // 2])))


class _Shell:
    """Pickles to a call of ``os.system``: a checkpoint that would run a command when unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


def _malicious_checkpoint(env):
    evil = {'state_dict': env.state_dict(), 'meta': {'hook': _Shell(env.tmp / 'PWNED')}}
    return env.run_fields(models=env.model(env.checkpoint_file('evil.pth', evil)))


def _check_not_pwned(env, out, err):
    assert not (env.tmp / 'PWNED').exists()


def _wrong_classes(env):
    config21 = write_tiny_config(env.tmp / 'tiny21.py', num_classes=21)
    from model_zoo.builder import build_segmentor
    torch.manual_seed(0)
    ckpt = env.checkpoint_file('tiny21.pth', build_segmentor(config21).state_dict())
    return env.run_fields(models=env.model(ckpt, config=env.config))


def _config_wrong_classes(env):
    config21 = write_tiny_config(env.tmp / 'tiny21.py', num_classes=21)
    from model_zoo.builder import build_segmentor
    torch.manual_seed(0)
    ckpt = env.checkpoint_file('tiny21.pth', build_segmentor(config21).state_dict())
    return env.run_fields(models=env.model(ckpt, config=config21))


def _replaced_checkpoint(env):
    """Retrained weights saved under the name whose cells are stored."""
    state = env.state_dict()
    state['decode_head.conv_seg.bias'] += 1
    return env.run_fields(models=env.model(env.checkpoint_file('retrained.pth', state), name=MODEL))


def _nan_weights(env):
    state = env.state_dict()
    state['decode_head.conv_seg.weight'][0, 0] = float('nan')
    return env.run_fields(models=env.model(env.checkpoint_file('nan.pth', state)))


def _mmengine_checkpoint(env):
    """What mmengine's Runner saves: meta, state_dict, message_hub (HistoryBuffer objects), optimizer."""
    from mmengine.logging import MessageHub
    hub = MessageHub.get_instance(f'bad_inputs_{os.getpid()}_{id(env)}')
    hub.update_scalar('train/loss', 1.5)
    hub.update_info('iter', 3)
    state = env.state_dict()
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
    ckpt = {'meta': {'epoch': 0, 'iter': 3, 'seed': 0, 'mmengine_version': '0.10.7'},
            'state_dict': state, 'message_hub': hub.state_dict(),
            'optimizer': optimizer.state_dict()}
    path = env.checkpoint_file('iter_3.pth', ckpt)
    with zipfile.ZipFile(path) as z:
        assert b'HistoryBuffer' in z.read(next(n for n in z.namelist() if n.endswith('data.pkl')))
    return env.run_fields(models=env.model(path, name='tiny_mmengine'))


def _same_records_as_baseline(model: str):
    """A valid run's records hold exactly the baseline's confusion matrices."""
    def check(env, out, err):
        base = {p.name.split('_')[0]: json.loads(p.read_text()) for p in env.model_dir().glob('*.json')}
        new = {p.name.split('_')[0]: json.loads(p.read_text())
               for p in (env.results / SUITE_NAME / model).glob('*.json')}
        assert set(new) == set(base) == {'clean', 'fgsm'}, (new.keys(), base.keys())
        for attack in base:
            assert new[attack]['confusion'] == base[attack]['confusion'], attack
            assert new[attack]['metrics'] == base[attack]['metrics'], attack
    return check


def _stored_cells_found(env, out, err):
    """The run resolved its inputs to the baseline's suite and dataset: every cell is found stored
    (nothing new computed) and the leaderboard shows it."""
    assert tree_digest(env.results) == env.before
    assert MODEL in (env.leaderboard / 'README.md').read_text()


def _yaml_suite(env):
    import yaml
    path = env.tmp / f'{SUITE_NAME}.yaml'
    fields = suite_fields(env.config, env.checkpoint, env.data_root)
    fields['dataset']['resize'] = list(fields['dataset']['resize'])
    path.write_text(yaml.safe_dump(fields))
    return env.run(path)


def _yaml_suite_broken(env):
    path = env.tmp / 'broken.yaml'
    path.write_text('dataset: {type: cityscapes\nmodels: [tiny]\n')
    return env.run(path)


def _edit_record(env, edit, attack='fgsm'):
    path = env.record(attack)
    record = json.loads(path.read_text())
    edit(record)
    path.write_text(json.dumps(record))
    return path


def _nan_metric(env):
    path = env.record()
    text = path.read_text()
    record = json.loads(text)
    miou = json.dumps(record['metrics']['miou'])
    path.write_text(text.replace(f'"miou": {miou}', '"miou": NaN', 1))
    assert 'NaN' in path.read_text()
    return 'validate_results', [str(env.results)]


def _edited_metric(env):
    _edit_record(env, lambda r: r['metrics'].__setitem__('pixel_accuracy', 0.99))
    return 'validate_results', [str(env.results)]


def _truncated_npz(env):
    npz = env.record().with_suffix('.npz')
    raw = npz.read_bytes()
    npz.write_bytes(raw[:len(raw) // 2])
    return 'validate_results', [str(env.results)]


def _edited_npz(env):
    npz = env.record().with_suffix('.npz')
    with np.load(npz) as z:
        arrays = {k: z[k].copy() for k in z.files}
    key = next(k for k, v in arrays.items() if v.ndim == 3)
    arrays[key][0, 0, 0] += 1
    np.savez_compressed(npz, **arrays)
    return 'validate_results', [str(env.results)]


def _copied_folder(env):
    shutil.copytree(env.results / SUITE_NAME, env.results / 'copy_of_badin')
    return 'validate_results', [str(env.results)]


def _hand_made_record(env, model_name):
    """A record copied from the baseline with its model renamed (in the key and its folder)."""
    folder = env.results / SUITE_NAME / model_name
    folder.mkdir(parents=True)
    for path in env.model_dir().glob('*'):
        if path.is_dir():                      # panels/: the qualitative panels' images
            shutil.copytree(path, folder / path.name)
        elif path.suffix == '.json':
            record = json.loads(path.read_text())
            record['key']['model'] = model_name
            (folder / path.name).write_text(json.dumps(record))
        else:
            shutil.copy(path, folder / path.name)


def _pipe_name_validate(env):
    _hand_made_record(env, 'evil|name')
    return 'validate_results', [str(env.results)]


def _script_name_leaderboard(env):
    _hand_made_record(env, '<script>alert(1)</script>')
    return 'make_leaderboard', ['--results-dir', str(env.results), '--out-dir', str(env.leaderboard), '--strict']


def _no_markup_in_leaderboard(env, out, err):
    text = (env.leaderboard / 'README.md').read_text()
    assert '<script>' not in text
    assert '| ' + MODEL + ' ' in text or MODEL in text      # the honest model is still rendered


def _pipe_name_leaderboard(env):
    _hand_made_record(env, 'evil|name')
    return 'make_leaderboard', ['--results-dir', str(env.results), '--out-dir', str(env.leaderboard), '--strict']


def _leaderboard_table_intact(env, out, err):
    text = (env.leaderboard / 'README.md').read_text()
    assert 'evil|name' not in text   # refused, and had it been shown, escaped (evil\|name)


def _empty_json(env):
    (env.model_dir() / 'notes.json').write_text('')
    return 'validate_results', [str(env.results)]


def _non_record_json(env):
    (env.model_dir() / 'notes.json').write_text('{"comment": "not a record"}')
    return 'validate_results', [str(env.results)]


def _stray_temp(env):
    name = env.record().name
    (env.model_dir() / f'.{name}.abcd1234.tmp').write_text('{"half": ')
    return 'validate_results', [str(env.results)]


def _edited_stored_record_resume(env):
    _edit_record(env, lambda r: r['metrics'].__setitem__('miou', 0.5))
    return env.run_fields()


def _leaderboard_nan_strict(env):
    _nan_metric(env)
    return 'make_leaderboard', ['--results-dir', str(env.results), '--out-dir', str(env.leaderboard), '--strict']


def _results_file(env):
    path = env.tmp / 'results.txt'
    path.write_text('not a folder')
    return path


def _cache_unwritable(env):
    blocker = env.tmp / 'cache_is_a_file'
    blocker.write_text('x')
    env.env = {'SEGBENCH_CACHE': str(blocker / 'segbench')}
    return env.run_fields(dataset=repr(dict(type='synthetic_cityscapes', num_train=1, num_val=2, size=(64, 32))))


def _home_unset(env):
    env.env = {'HOME': None, 'SEGBENCH_CACHE': None}
    return env.run_fields()


def _submit(env, checkpoint, name):
    suite = env.suite('tinysubmit.py', suite_name="'tinysubmit'", models="['fcn_r18-w16_synthcity']")
    return 'submit', [str(env.config), str(checkpoint), '--name', name, '--suite', str(suite), '--results-dir',
                      str(env.results), '--submissions-dir', str(_mkdir(env.tmp / 'subs')), '--no-progress',
                      '--quick']


def _submit_with(env, *extra, config=None):
    tool, argv = _submit(env, env.checkpoint, 'my_model')
    if config is not None:
        argv[0] = str(config)
    return tool, argv + list(extra)


def _submit_bad_name(env):
    return _submit(env, env.checkpoint, 'my model!')


def _submit_missing_checkpoint(env):
    return _submit(env, env.tmp / 'nowhere.pth', 'my_model')


def _nothing_submitted(env, out, err):
    assert not any((env.tmp / 'subs').iterdir())


def _record_edit(env, edit):
    _edit_record(env, edit)
    return 'validate_results', [str(env.results)]


def _set_count(value):
    def edit(record):
        record['confusion']['vs_ground_truth'][0][0] = value
    return edit


def _binary_record(env):
    env.record().write_bytes(b'\xff\xfe\x00 not json')
    return 'validate_results', [str(env.results)]


def _npz_missing(env):
    env.record().with_suffix('.npz').unlink()
    return 'validate_results', [str(env.results)]


def _orphan_npz(env):
    env.record().unlink()
    return 'validate_results', [str(env.results)]


def _example_config_exists(env, out, err):
    """The example the message offers is a real file of the repository."""
    example = re.search(r'such as (\S+\.py)', unwrap(err)).group(1)
    assert (REPO / example).is_file(), example


def _warned_off_grid(env, out, err):
    assert unwrap(err).startswith('warning: --reference-epsilon 7 is in no suite') and 'ε=7' in err, err
    assert (env.leaderboard / 'README.md').is_file()


def _leaderboard(env, *options, results=None):
    return 'make_leaderboard', ['--results-dir', str(results or env.results), '--out-dir', str(env.leaderboard),
                                *map(str, options)]


# -- the case table ---------------------------------------------------------------------------------
CASES = [
    # suite files
    Case('suite-syntax-error', 'suite file with a Python syntax error',
         lambda e: e.run(_write(e.tmp / 's.py', 'epsilons = [8\n')), 'could not be parsed', subprocess=True),
    Case('suite-missing-models', 'suite without `models`',
         lambda e: e.run_fields(models=None), 'missing `models`'),
    Case('suite-dataset-not-dict', 'dataset given as a string',
         lambda e: e.run_fields(dataset="'cityscapes'"), 'dataset must be a dict'),
    Case('suite-unknown-field', 'misspelt field `epsilon`',
         lambda e: e.run_fields(epsilon='[8]'), "unknown suite field(s) ['epsilon']"),
    Case('suite-unknown-model', 'zoo name that does not exist',
         lambda e: e.run_fields(models="['fcn_nonexistent']"), "unknown model 'fcn_nonexistent'", subprocess=True),
    Case('suite-unknown-attack', 'attack name that does not exist',
         lambda e: e.run_fields(attacks="['carlini']"), "unknown attack 'carlini'"),
    Case('suite-models-empty', 'models = []',
         lambda e: e.run_fields(models='[]'), '`models` is empty'),
    Case('suite-model-twice', 'the same model listed twice',
         lambda e: e.run_fields(models=e.model()[:-1] + ', ' + e.model()[1:]), 'a model is listed twice'),
    Case('suite-model-dict-no-config', 'model dict without `config`',
         lambda e: e.run_fields(models="[dict(name='mine', checkpoint='w.pth')]"),
         'suite.py: a model given as a dict needs `name` and `config`'),
    Case('suite-attacks-empty', 'attacks = []',
         lambda e: e.run_fields(attacks='[]'), 'attacks must be a non-empty list'),
    Case('suite-bad-name', 'suite_name with a slash',
         lambda e: e.run_fields(suite_name="'a/b'"), "suite name 'a/b' is not valid"),
    Case('suite-is-directory', 'the suite path is a directory',
         lambda e: e.run(e.tmp), 'is a directory; expected a Python config file'),
    Case('suite-missing-file', 'the suite path does not exist',
         lambda e: e.run(e.tmp / 'nope.py'), 'does not exist'),
    Case('suite-yaml-broken', 'a .yaml suite with a YAML syntax error',
         _yaml_suite_broken, 'could not be parsed'),
    Case('suite-yaml-valid', 'a .yaml suite (valid: mmengine reads YAML configs)',
         _yaml_suite, '', code=0, check=_stored_cells_found),
    # epsilons
    Case('eps-duplicate', 'epsilons = [8, 8]',
         lambda e: e.run_fields(epsilons='[8, 8]'), 'lists ε = 8 more than once'),
    Case('eps-8-over-255', 'epsilons = [8/255] (the [0, 1] convention)',
         lambda e: e.run_fields(epsilons='[8/255]'), 'looks like 8/255', subprocess=True),
    Case('eps-above-255', 'epsilons = [300]',
         lambda e: e.run_fields(epsilons='[300]'), 'larger than the whole 0-255 pixel range'),
    Case('eps-string', "epsilons = ['8']",
         lambda e: e.run_fields(epsilons="['8']"), "epsilon '8' is not valid"),
    Case('eps-nan', "epsilons = [float('nan')]",
         lambda e: e.run_fields(epsilons="[float('nan')]"), 'epsilon nan is not valid'),
    Case('eps-zero', 'epsilons = [0]',
         lambda e: e.run_fields(epsilons='[0]'), 'epsilon 0 is not valid'),
    Case('eps-empty', 'epsilons = []',
         lambda e: e.run_fields(epsilons='[]'), 'must be a non-empty list of numbers'),
    Case('eps-attack-duplicate', "an attack's own epsilons=[2, 2]",
         lambda e: e.run_fields(attacks="[dict(type='fgsm', epsilons=[2, 2])]"), 'more than once'),
    Case('eps-in-attack', 'epsilon set inside an attack entry',
         lambda e: e.run_fields(attacks="[dict(type='fgsm', epsilon=8)]"), 'put ε values in `epsilons`'),
    # attack hyper-parameters
    Case('attack-negative-steps', 'ifgsm with num_steps=-3',
         lambda e: e.run_fields(attacks="[dict(type='ifgsm', num_steps=-3)]"),
         'num_steps must be a positive integer, got -3'),
    Case('attack-negative-alpha', 'ifgsm with alpha=-1',
         lambda e: e.run_fields(attacks="[dict(type='ifgsm', alpha=-1)]"), 'alpha -1 is not valid; expected a step size > 0'),
    Case('attack-alpha-over-255', 'ifgsm with alpha=2/255 (the [0, 1] convention)',
         lambda e: e.run_fields(attacks="[dict(type='ifgsm', alpha=2/255)]"), 'looks like 2/255'),
    Case('attack-alpha-string', "pgd with alpha='1'",
         lambda e: e.run_fields(attacks="[dict(type='pgd', alpha='1')]"), "alpha '1' is not valid"),
    Case('attack-unknown-option', 'fgsm with a misspelt option',
         lambda e: e.run_fields(attacks="[dict(type='fgsm', stepsize=1)]"),
         ("unexpected keyword argument 'stepsize'", 'fgsm takes no options of its own')),
    Case('attack-unknown-option-pgd', 'pgd with num_step instead of num_steps',
         lambda e: e.run_fields(attacks="[dict(type='pgd', num_step=20)]"), 'pgd takes num_steps, alpha'),
    Case('attack-unknown-member', 'worst_case with an unknown member attack',
         lambda e: e.run_fields(attacks="[dict(type='worst_case', attacks=['carlini'])]"),
         "attack worst_case {'type': 'worst_case', 'attacks': ['carlini']}: unknown attack 'carlini'; known attacks"),
    Case('attack-same-twice', 'the same attack entry twice',
         lambda e: e.run_fields(attacks="['fgsm', dict(type='fgsm')]"), 'both describe the cell fgsm'),
    # targets and masks
    Case('target-on-untargeted', 'fgsm given a target',
         lambda e: e.run_fields(attacks="[dict(type='fgsm', target=dict(kind='hide_class', hidden_class=11))]"),
         'is untargeted and takes no `target`'),
    Case('target-unknown-kind', "target kind 'hide'",
         lambda e: e.run_fields(attacks="[dict(type='targeted_ifgsm', target=dict(kind='hide'))]"),
         'target must be a dict with kind in'),
    Case('target-class-out-of-range', 'hidden_class=40 on a 19-class dataset',
         lambda e: e.run_fields(attacks="[dict(type='targeted_ifgsm', target=dict(kind='hide_class', "
                                        "hidden_class=40))]"),
         'hidden_class 40 is not a class of the cityscapes dataset'),
    Case('target-static-index', 'static target index 99 of a 2-image split',
         lambda e: e.run_fields(attacks="[dict(type='targeted_ifgsm', target=dict(kind='static', "
                                        "split='train', index=99))]"),
         'index 99 is out of range'),
    Case('mask-without-target', "mask='hidden_class' without a target",
         lambda e: e.run_fields(attacks="[dict(type='pgd', mask='hidden_class')]"),
         "mask='hidden_class' needs target="),
    Case('targeted-without-target', 'targeted_ifgsm without a target',
         lambda e: e.run_fields(attacks="['targeted_ifgsm']"), 'needs `target`'),
    # other suite fields
    Case('label-source', "label_source = 'gt'",
         lambda e: e.run_fields(label_source="'gt'"), "label_source must be 'prediction' or 'ground_truth'"),
    Case('batch-size-zero', 'batch_size = 0',
         lambda e: e.run_fields(batch_size='0'), 'batch_size must be a positive integer, got 0'),
    Case('batch-size-string', "batch_size = '8'",
         lambda e: e.run_fields(batch_size="'8'"), "batch_size must be a positive integer, got '8'"),
    Case('jobs-removed', 'jobs = 2 (the field of the former process pool)',
         lambda e: e.run_fields(jobs='2'), '`jobs` is no longer a suite field'),
    Case('seed-float', 'seed = 1.5',
         lambda e: e.run_fields(seed='1.5'), 'seed must be an integer, got 1.5'),
    Case('fit-dataset-unused', 'fit_dataset without a fitted attack',
         lambda e: e.run_fields(fit_dataset=e.dataset(split='train')), 'no attack needs fitting'),
    # command-line options
    Case('opt-num-images-zero', '--num-images 0',
         lambda e: e.run_fields('--num-images', 0), '--num-images must be a positive integer, got 0'),
    Case('opt-num-images-too-many', '--num-images 100 on a 4-image split',
         lambda e: e.run_fields('--num-images', 100), 'has only 4 images', subprocess=True),
    Case('opt-batch-size-negative', '--batch-size -1',
         lambda e: e.run_fields('--batch-size', -1), '--batch-size must be a positive integer, got -1'),
    Case('opt-threads-zero', '--threads 0',
         lambda e: e.run_fields('--threads', 0), '--threads must be a positive integer, got 0'),
    Case('opt-workers-negative', '--workers -1',
         lambda e: e.run_fields('--workers', -1), '--workers must be 0 or more decoding processes, got -1'),
    Case('opt-nproc-zero', '--nproc 0',
         lambda e: e.run_fields('--nproc', 0), '--nproc must be a positive number of ranks, got 0'),
    Case('opt-nproc-with-launcher', '--nproc 2 --launcher slurm',
         lambda e: e.run_fields('--nproc', 2, '--launcher', 'slurm'), '--nproc starts the ranks itself'),
    Case('opt-launcher-outside-torchrun', '--launcher pytorch without torchrun',
         lambda e: e.run_fields('--launcher', 'pytorch'),
         '--launcher pytorch needs the environment its launcher sets', subprocess=True),
    Case('opt-device-tpu', '--device tpu',
         lambda e: e.run_fields('--device', 'tpu'), "--device 'tpu' is not a torch device"),
    Case('opt-device-cuda', '--device cuda on a machine without a GPU',
         lambda e: e.run_fields('--device', 'cuda'), 'asks for a GPU but torch sees none', subprocess=True),
    Case('opt-models-unknown', '--models names a model the suite does not list',
         lambda e: e.run_fields('--models', 'other'), "--models names ['other'] that the suite does not list"),
    Case('opt-results-dir-file', '--results-dir is a file',
         lambda e: ('run_benchmark', [str(e.suite()), '--results-dir', str(_results_file(e)), '--no-leaderboard',
                                      '--no-progress']), 'is a file; expected a directory'),
    Case('opt-leaderboard-dir-file', '--leaderboard-dir is a file',
         lambda e: ('run_benchmark', [str(e.suite()), '--results-dir', str(e.results), '--leaderboard-dir',
                                      str(_results_file(e)), '--no-progress']),
         ('--leaderboard-dir', 'is a file; expected a directory'), subprocess=True),
    # datasets
    Case('data-missing-root', 'data_root that does not exist',
         lambda e: e.run_fields(dataset=e.dataset(data_root='/nonexistent/cityscapes')),
         'Cityscapes data_root directory /nonexistent/cityscapes does not exist. Expected this layout:',
         subprocess=True),
    Case('data-wrong-layout', 'images and labels in one flat folder',
         _wrong_layout, 'leftImg8bit does not exist. Expected this layout:'),
    Case('data-relative-from-cwd', 'data_root relative to the working directory, not the repository',
         _relative_from_cwd, 'relative paths are resolved against the repository root'),
    Case('data-relative-valid', 'data_root relative to the repository, run from another directory (valid)',
         _relative_data_root_valid, '', code=0, subprocess=True, check=_stored_cells_found),
    Case('data-empty-split', 'val split folders that hold no images',
         _empty_split, 'no images found for the cityscapes dataset'),
    Case('data-unknown-split', "split = 'test' that does not exist",
         lambda e: e.run_fields(dataset=e.dataset(split='test')), "split 'test' not found"),
    Case('data-image-list-missing-ids', 'image list naming an id that has no image',
         _image_list_missing, 'nowhere/nowhere_000123_000019'),
    Case('data-size-int', 'built-in dataset with size=64 instead of (width, height)',
         lambda e: e.run_fields(dataset="dict(type='synthetic_cityscapes', size=64, num_train=1, num_val=2)"),
         'size must be (width, height)'),
    Case('data-split-int', 'split given as a number',
         lambda e: e.run_fields(dataset=e.dataset(split=3)), 'split must be the name of a split'),
    Case('data-unknown-type', "dataset type 'kitti'",
         lambda e: e.run_fields(dataset=e.dataset(type='kitti')), "unknown dataset type 'kitti'"),
    Case('data-unknown-option', 'dataset option `root` misspelt as `roots`',
         lambda e: e.run_fields(dataset=e.dataset(roots='x')), 'unknown dataset option(s) for cityscapes: roots'),
    # images and labels
    Case('label-other-size', 'label map of another size than its image',
         _label_other_size, 'is 32x16 (width x height) but its image'),
    Case('label-ids-out-of-range', 'label ids 40 on a 19-class dataset',
         _label_ids_out_of_range, 'holds ids 40, outside the 19 Cityscapes train ids 0-18'),
    Case('label-16bit-wide-ids', '16-bit label PNG with an id 300 (mmseg would wrap it to 44)',
         lambda e: _label_16bit(e, 300), ('16-bit image', 'with ids from 0 to 300')),
    Case('label-16bit-valid', '16-bit label PNG whose ids fit in 8 bits (valid)',
         lambda e: _label_16bit(e, int(_read_png(_first_label(e.data_root))[0, 0]), models=e.model()), '',
         code=0, changes_results=True, check=_same_records_as_baseline('mine')),
    Case('label-rgb', 'colour-coded RGB label map',
         _label_rgb, 'colour-coded'),
    Case('image-truncated', 'truncated image PNG',
         _image_corrupt, 'truncated'),
    Case('image-garbage', 'image file with a PNG signature and garbage after it',
         _image_garbage, 'cannot read image'),
    # checkpoints
    Case('ckpt-missing', 'checkpoint path that does not exist',
         lambda e: e.run_fields(models=e.model(e.tmp / 'nowhere.pth')),
         ('model mine: checkpoint', 'nowhere.pth does not exist'), subprocess=True),
    Case('ckpt-empty', 'empty checkpoint file',
         lambda e: e.run_fields(models=e.model(e.checkpoint_file('empty.pth', b''))), 'the file is empty'),
    Case('ckpt-text', 'text file as checkpoint',
         lambda e: e.run_fields(models=e.model(e.checkpoint_file('w.pth', b'model weights go here\n'))),
         'text file'),
    Case('ckpt-truncated', 'checkpoint cut in half',
         _truncated_checkpoint, 'truncated or damaged zip archive'),
    Case('ckpt-malicious', 'checkpoint whose pickle calls os.system',
         _malicious_checkpoint, 'Nothing in it was run', subprocess=True, check=_check_not_pwned),
    Case('ckpt-wrong-classes', 'checkpoint of a 21-class model for a 19-class config',
         _wrong_classes, ('model mine: checkpoint', 'tiny21.pth predicts 21 classes but the dataset has 19')),
    Case('ckpt-nan-weights', 'checkpoint with a NaN weight',
         _nan_weights, ('model mine: checkpoint', 'NaN or infinite values in 1 tensor(s): decode_head.conv_seg.weight')),
    Case('ckpt-mmengine-runner', "checkpoint written by mmengine's Runner (valid)",
         _mmengine_checkpoint, '', code=0, check=_same_records_as_baseline('tiny_mmengine'), changes_results=True),
    Case('ckpt-replaced', 'the stored model rerun with other weights under the same name',
         _replaced_checkpoint, ('was computed with checkpoint sha256', 'the stored cells belong to other weights',
                                '--force --models tiny')),
    Case('ckpt-wrong-sha256', 'sha256 that does not match the checkpoint',
         lambda e: e.run_fields(models=e.model(sha256='0' * 64)), ('has sha256', 'expected ' + '0' * 64)),
    Case('ckpt-bad-sha256', 'sha256 that is not a digest',
         lambda e: e.run_fields(models=e.model(sha256='abc')), "suite.py: model 'mine': sha256 'abc' is not a sha256 digest"),
    Case('ckpt-unreachable-url', 'checkpoint URL nobody answers',
         lambda e: e.run_fields(models=e.model('http://127.0.0.1:9/x.pth')),
         'cannot download checkpoint http://127.0.0.1:9/x.pth'),
    # model configs
    Case('config-missing', 'model config that does not exist',
         lambda e: e.run_fields(models=e.model(config=e.tmp / 'nope_cfg.py')), ('model mine:', 'nope_cfg.py does not exist'),
         check=_example_config_exists),
    Case('config-is-directory', 'model config path that is a directory',
         lambda e: e.run_fields(models=e.model(config=e.tmp)), ('model mine:', 'is a directory; expected an mmseg config'),
         check=_example_config_exists),
    Case('config-not-a-path', 'model config given as a number',
         lambda e: e.run_fields(models=f"[dict(name='mine', config=123, checkpoint={str(e.checkpoint)!r})]"),
         "model 'mine': config 123 is not a path"),
    Case('config-syntax-error', 'model config with a syntax error',
         lambda e: e.run_fields(models=e.model(config=_write(e.tmp / 'cfg.py', 'model = dict(\n'))),
         'could not be parsed'),
    Case('config-no-model', 'model config without `model`',
         lambda e: e.run_fields(models=e.model(config=_write(e.tmp / 'cfg.py', 'x = 1\n'))),
         'has no `model` entry'),
    Case('config-wrong-classes', 'a 21-class model on the 19-class dataset',
         _config_wrong_classes, ('model mine:', 'predicts 21 classes but the dataset has 19')),
    # records and results folders
    Case('record-nan-metric', 'NaN written into a metric',
         _nan_metric, 'NaN is not a valid JSON number', code=1),
    Case('record-edited-metric', 'pixel_accuracy edited by hand',
         _edited_metric, 'metrics.pixel_accuracy: stated 0.99 differs', code=1),
    Case('record-truncated-npz', 'per-image .npz cut in half',
         _truncated_npz, 'does not match the sha256 the record names', code=1),
    Case('record-edited-npz', 'one count of the per-image .npz changed',
         _edited_npz, 'does not match the sha256 the record names', code=1),
    Case('record-copied-folder', 'a suite folder copied under another name',
         _copied_folder, 'key.suite', code=1, subprocess=True),
    Case('record-pipe-in-model', 'hand-made record with model name evil|name',
         _pipe_name_validate, "model name 'evil|name' is not valid", code=1),
    Case('record-script-in-model', 'hand-made record with model name <script>…',
         _script_name_leaderboard, '2 record file(s) refused', code=1, check=_no_markup_in_leaderboard),
    Case('record-pipe-leaderboard', 'hand-made record evil|name given to the leaderboard',
         _pipe_name_leaderboard, '2 record file(s) refused', code=1, check=_leaderboard_table_intact),
    Case('record-empty-json', 'an empty .json among the records',
         _empty_json, 'notes.json: (json): cannot read result record: the file is empty', code=1),
    Case('record-non-record-json', 'a .json that is not a record',
         _non_record_json, 'notes.json: (top level): is not a result record', code=1),
    Case('record-stray-temp', 'a temporary file left by a killed writer',
         _stray_temp, 'temporary file left by an interrupted write', code=1),
    Case('record-leaderboard-nan', 'NaN metric given to make_leaderboard --strict',
         _leaderboard_nan_strict, '1 record file(s) refused', code=1),
    Case('record-schema-version', 'schema_version 99',
         lambda e: _record_edit(e, lambda r: r.__setitem__('schema_version', 99)),
         'schema_version: does not match result schema v1', code=1),
    Case('record-huge-count', 'a confusion count of 10**30',
         lambda e: _record_edit(e, _set_count(10 ** 30)), 'holds counts too large for 64-bit integers', code=1),
    Case('record-negative-count', 'a negative confusion count',
         lambda e: _record_edit(e, _set_count(-5)), '-5 is less than the minimum of 0', code=1),
    Case('record-binary', 'a record overwritten with binary bytes',
         _binary_record, 'it is not UTF-8 text', code=1),
    Case('record-npz-missing', "a record's per-image .npz deleted",
         _npz_missing, 'cannot be read (No such file or directory); the per-image confusion matrices are missing',
         code=1),
    Case('record-orphan-npz', 'a per-image .npz whose record was deleted',
         _orphan_npz, 'per-image file without its record', code=1),
    Case('record-edited-resume', 'a stored record edited, then the suite run again',
         _edited_stored_record_resume, 'This stored cell cannot be trusted'),
    Case('results-missing-path', 'validate_results on a path that does not exist',
         lambda e: ('validate_results', [str(e.tmp / 'nope')]), 'does not exist', subprocess=True),
    Case('leaderboard-results-empty', 'make_leaderboard on an empty folder',
         lambda e: ('make_leaderboard', ['--results-dir', str(_mkdir(e.tmp / 'empty')), '--out-dir',
                                         str(e.leaderboard)]), 'no result records under'),
    Case('leaderboard-results-missing', 'make_leaderboard --results-dir that does not exist',
         lambda e: _leaderboard(e, results=e.tmp / 'nope'), 'the folder does not exist'),
    Case('leaderboard-out-dir-file', 'make_leaderboard --out-dir is a file',
         lambda e: ('make_leaderboard', ['--results-dir', str(e.results), '--out-dir', str(_results_file(e))]),
         ('--out-dir', 'results.txt is a file; expected a directory'), subprocess=True),
    Case('leaderboard-reference-eps-nan', 'make_leaderboard --reference-epsilon nan',
         lambda e: _leaderboard(e, '--reference-epsilon', 'nan'), '--reference-epsilon nan is not valid'),
    Case('leaderboard-reference-eps-negative', 'make_leaderboard --reference-epsilon -8',
         lambda e: _leaderboard(e, '--reference-epsilon=-8'), '--reference-epsilon -8 is not valid'),
    Case('leaderboard-reference-eps-off-grid', 'make_leaderboard --reference-epsilon 7, in no grid (valid, warned)',
         lambda e: _leaderboard(e, '--reference-epsilon', 7), '', code=0, check=_warned_off_grid),
    Case('leaderboard-results-file', 'make_leaderboard --results-dir is a file',
         lambda e: ('make_leaderboard', ['--results-dir', str(_results_file(e)), '--out-dir', str(e.leaderboard)]),
         'is a file; expected the folder of result'),
    # environment
    Case('env-cache-unwritable', 'SEGBENCH_CACHE below a file, built-in dataset to generate',
         _cache_unwritable, ('built-in synthetic dataset: cannot write it', 'point either at a writable directory'),
         subprocess=True),
    Case('env-home-unset', 'HOME and SEGBENCH_CACHE unset (valid)',
         _home_unset, '', code=0, subprocess=True, check=_stored_cells_found),
    # submission tool
    Case('submit-bad-name', "submit.py --name 'my model!'",
         _submit_bad_name, "name 'my model!' is not valid", subprocess=True, check=_nothing_submitted),
    Case('submit-zoo-name', 'submit.py --name of a zoo model',
         lambda e: _submit(e, e.checkpoint, 'fcn_r18-w16_synthcity'),
         '--name fcn_r18-w16_synthcity is already a model of the zoo', check=_nothing_submitted),
    Case('submit-weights-url', 'submit.py --weights-url that is not a URL',
         lambda e: _submit_with(e, '--weights-url', 'notaurl'), "--weights-url 'notaurl' is not a URL",
         check=_nothing_submitted),
    Case('submit-config-classes', "submit.py with a 21-class config for the suite's 19-class dataset",
         lambda e: _submit_with(e, config=write_tiny_config(e.tmp / 'tiny21.py', num_classes=21)),
         ('predicts 21 classes but the dataset of suite tinysubmit_quick (cityscapes) has 19',
          'set num_classes=19'), check=_nothing_submitted),
    Case('submit-submissions-dir-file', 'submit.py --submissions-dir is a file',
         lambda e: _submit_with(e, '--submissions-dir', str(_results_file(e))),
         ('--submissions-dir', 'results.txt is a file; expected a directory')),
    Case('submit-missing-checkpoint', 'submit.py with a checkpoint that does not exist',
         _submit_missing_checkpoint, 'nowhere.pth does not exist', check=_nothing_submitted),
]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


# -- running a case ---------------------------------------------------------------------------------
def tree_digest(root: Path) -> dict:
    """sha256 of every file under ``root`` (by relative path)."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob('*')) if p.is_file()}


def unwrap(text: str) -> str:
    """A message as one line (main_guard wraps at 100 columns, also after hyphens)."""
    return ' '.join(re.sub(r'-\n  ', '-', text).split())


def run_in_process(tool: str, argv: List[str], capsys) -> Tuple[int, str, str]:
    import _cli
    module = importlib.import_module(tool)
    try:
        code = _cli.main_guard(lambda: module.main(argv)) or 0
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_subprocess(tool: str, argv: List[str], cwd: Path, env_changes: dict) -> Tuple[int, str, str]:
    env = dict(os.environ)
    for k, v in env_changes.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    proc = subprocess.run([sys.executable, str(TOOLS / f'{tool}.py'), *argv], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def _params():
    for c in CASES:
        marks = [pytest.mark.xfail(reason=c.known_defect, strict=False)] if c.known_defect else []
        yield pytest.param(c, id=c.id, marks=marks)


@pytest.mark.parametrize('case', list(_params()))
def test_bad_input(case: Case, tmp_path, baseline, tiny_config, tiny_checkpoint, synthetic_root, capsys,
                   monkeypatch):
    env = Env(tmp_path, baseline, tiny_config, tiny_checkpoint, synthetic_root)
    monkeypatch.setenv('SEGBENCH_CACHE', str(tmp_path / 'cache'))
    tool, argv = case.make(env)
    before = env.before = tree_digest(env.results)
    if case.subprocess:
        code, out, err = run_subprocess(tool, argv, env.cwd, env.env)
    else:
        assert not env.env, 'environment changes need a subprocess'
        monkeypatch.chdir(env.cwd)
        code, out, err = run_in_process(tool, argv, capsys)
    _dump(case, code, out, err)
    assert 'Traceback' not in err and 'Traceback' not in out, err
    assert code == case.code, f'exit {code}, expected {case.code}\nstdout: {out[-2000:]}\nstderr: {err[-3000:]}'
    after = tree_digest(env.results)
    if case.changes_results or code == 0:
        assert {k: v for k, v in after.items() if k in before} == before, 'a stored file changed'
    else:
        assert after == before, 'the results folder changed'
    if code == 2:
        assert err.startswith('error: '), err
        paragraph, _, rest = err.partition('\n(nothing already stored was changed)')
        assert rest.strip() == '' and paragraph.count('\nerror: ') == 0, err
        for fragment in case.fragments():
            assert fragment in unwrap(paragraph), unwrap(paragraph)
    elif code == 1:
        for fragment in case.fragments():
            assert fragment in out, out
    if case.check is not None:
        case.check(env, out, err)


def _dump(case: Case, code: int, out: str, err: str) -> None:
    """With ``$BAD_INPUTS_DUMP`` set, append what the tool said (to keep docs/bad_inputs.md true)."""
    target = os.environ.get('BAD_INPUTS_DUMP')
    if target:
        with open(target, 'a') as f:
            f.write(json.dumps(dict(id=case.id, wrong=case.wrong, code=code, out=out[-3000:],
                                    err=err[-3000:])) + '\n')


# -- the documentation lists exactly these cases ------------------------------------------------------
def doc_case_ids(text: str) -> List[str]:
    """Case ids from the Markdown table(s) of docs/bad_inputs.md: the last column, in backticks."""
    ids = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')] if line.lstrip().startswith('|') else []
        if len(cells) >= 3 and re.fullmatch(r'`[a-z0-9-]+`', cells[-1]):
            ids.append(cells[-1].strip('`'))
    return ids


def test_doc_table_matches_cases():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), 'case ids must be unique'
    documented = doc_case_ids(DOC.read_text(encoding='utf-8'))
    assert len(documented) == len(set(documented)), 'a case is listed twice in the doc'
    assert sorted(documented) == sorted(ids), (
        f'only in the doc: {sorted(set(documented) - set(ids))}; only in the tests: {sorted(set(ids) - set(documented))}')


def test_doc_table_parser():
    text = '| input | what happens | test |\n|---|---|---|\n| a \\| b | error: x | `one-case` |\n| x | y | z |\n'
    assert doc_case_ids(text) == ['one-case']


def test_enough_cases():
    assert len(CASES) >= 45
    assert sum(c.subprocess for c in CASES) >= 12
