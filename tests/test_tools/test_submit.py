"""tools/submit.py: the checks refuse bad submissions with one paragraph and write nothing; a good
submission runs the (quick) suite, validates its records and writes a metafile-style entry."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / 'tools'
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))

import submit  # noqa: E402  (tools/ is not a package)

from conftest import write_tiny_config  # noqa: E402

#: the conftest ``synthetic_root`` dataset: 2 train and 4 val images of 64 x 32 pixels
TINY_SUITE = """\
suite_name = 'tinysubmit'
dataset = dict(type='synthetic_cityscapes', split='val', seed=0, num_train=2, num_val=4, size=(64, 32))
models = ['fcn_r18-w16_synthcity']
attacks = [dict(type='fgsm'), dict(type='fgsm_ll'), dict(type='ifgsm'), dict(type='ifgsm_ll')]
epsilons = [0.25, 0.5, 1, 2, 4, 8, 16, 32]
batch_size = 2
"""


@pytest.fixture
def dirs(tmp_path, synthetic_root):
    suite = tmp_path / 'tinysubmit.py'
    suite.write_text(TINY_SUITE)
    out = dict(suite=suite, results=tmp_path / 'results', submissions=tmp_path / 'submissions',
               data_root=synthetic_root)
    out['submissions'].mkdir()
    return out


def argv(dirs, config, checkpoint, name='my_tiny_fcn', *extra):
    return [str(config), str(checkpoint), '--name', name, '--suite', str(dirs['suite']),
            '--data-root', str(dirs['data_root']), '--results-dir', str(dirs['results']),
            '--submissions-dir', str(dirs['submissions']), '--no-progress', '--quick', *extra]


def run_refused(capsys, args):
    """Run the tool in-process as its command line does; returns stderr of the refusal."""
    with pytest.raises(SystemExit) as exc:
        submit.main_guard(lambda: submit.main(args))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and 'Traceback' not in err
    # the paragraph unwrapped (main_guard wraps at 100 columns, also after hyphens)
    return ' '.join(re.sub(r'-\n  ', '-', err).split())


def written(dirs):
    """Files the tool may have written: entries and records (nothing, after a refusal)."""
    files = list(dirs['submissions'].rglob('*'))
    if dirs['results'].exists():
        files += [p for p in dirs['results'].rglob('*') if p.is_file()]
    return files


def test_quick_submission_end_to_end(dirs, capsys, tiny_config, tiny_checkpoint_diverse):
    tiny_checkpoint = tiny_checkpoint_diverse   # predicts several classes: clean mIoU > 0
    submit.main(argv(dirs, tiny_config, tiny_checkpoint, 'my_tiny_fcn', '--paper', 'Doe 2026',
                     '--code', 'https://example.org/code'))
    out = capsys.readouterr().out
    model_dir = dirs['results'] / 'tinysubmit_quick' / 'my_tiny_fcn'
    records = sorted(model_dir.glob('*.json'))
    # clean + FGSM and Iterative FGSM at ε = 2 and 8, on 2 images: quick never mixes with full
    assert len(records) == 5
    assert not (dirs['results'] / 'tinysubmit').exists()
    from benchmark.store import ResultStore
    recs = [ResultStore(dirs['results']).read(p) for p in records]
    assert {(r['key']['attack'], r['key']['epsilon']) for r in recs} == {
        ('clean', 0.0), ('fgsm', 2.0), ('fgsm', 8.0), ('ifgsm', 2.0), ('ifgsm', 8.0)}
    assert all(r['num_images'] == 2 for r in recs)
    from benchmark.store import sha256_file
    sha = sha256_file(tiny_checkpoint)
    assert all(r['provenance']['checkpoint_sha256'] == sha for r in recs)

    entry_path = dirs['submissions'] / 'my_tiny_fcn.yaml'
    entry = yaml.safe_load(entry_path.read_text())
    assert list(entry) == list(submit.ENTRY_FIELDS)
    assert entry['name'] == 'my_tiny_fcn' and entry['sha256'] == sha
    assert entry['weights'] == str(tiny_checkpoint) and entry['num_classes'] == 19
    assert entry['dataset'] == 'synthetic_cityscapes'
    assert entry['architecture'] == 'FCN' and entry['backbone'] == 'ResNetV1c-18'
    assert entry['paper'] == 'Doe 2026' and entry['code'] == 'https://example.org/code'
    from model_zoo.builder import build_segmentor
    from model_zoo.zoo import count_parameters
    assert entry['parameters'] == count_parameters(build_segmentor(tiny_config))
    # results from the records: clean mIoU and the mean over attacks of the mean IoU ratio over ε
    clean = next(r['metrics']['miou'] for r in recs if r['key']['attack'] == 'clean')
    per_attack = {}
    for r in recs:
        if r['key']['attack'] != 'clean':
            per_attack.setdefault(r['key']['attack'], []).append(r['metrics']['miou'] / clean)
    score = sum(sum(v) / len(v) for v in per_attack.values()) / len(per_attack)
    assert entry['results'] == {'tinysubmit_quick_clean_miou': round(clean, 4),
                                'tinysubmit_quick_mean_iou_ratio': round(score, 4)}
    # the entry loads as a zoo model entry
    from model_zoo.zoo import ModelEntry
    assert ModelEntry(**entry).sha256 == sha

    assert 'not a submission' in out and 'git add' not in out   # a quick run says so
    assert f'(clean mIoU {100 * clean:.1f} %, mean IoU ratio {100 * score:.1f} %)' in out
    from leaderboard.report import CHANCE_FACTOR, majority_class_miou
    conf = next(r['confusion']['vs_ground_truth'] for r in recs if r['key']['attack'] == 'clean')
    assert ('near chance level' in out) == (clean < CHANCE_FACTOR * majority_class_miou(conf))

    # the same command again resumes: nothing recomputed, the entry is rewritten the same way
    mtimes = {p: p.stat().st_mtime_ns for p in records}
    submit.main(argv(dirs, tiny_config, tiny_checkpoint, 'my_tiny_fcn', '--weights-url',
                     'https://example.org/w.pth'))
    assert {p: p.stat().st_mtime_ns for p in records} == mtimes
    again = yaml.safe_load(entry_path.read_text())
    assert again['weights'] == 'https://example.org/w.pth'
    assert again['paper'] == 'Doe 2026' and again['results'] == entry['results']


def test_full_run_prints_what_to_commit(dirs, capsys, tiny_config, tiny_checkpoint):
    # the full suite (its 33 cells on 4 tiny images) and the commit instructions
    args = [a for a in argv(dirs, tiny_config, tiny_checkpoint) if a != '--quick']
    submit.main(args)
    out = capsys.readouterr().out
    model_dir = dirs['results'] / 'tinysubmit' / 'my_tiny_fcn'
    assert len(list(model_dir.glob('*.json'))) == 1 + 4 * 8
    entry_path = dirs['submissions'] / 'my_tiny_fcn.yaml'
    assert f'git add {entry_path} {tiny_config} {model_dir}' in out
    assert 'upload it' in out          # a local checkpoint: asks for the hosted URL
    assert 'outside the repository' in out
    # the random tiny model predicts one class everywhere: the leaderboard will not rank it
    assert 'WARNING: the clean mIoU' in out and 'near chance level' in out
    assert '33 records under' in entry_path.read_text()


def test_bad_name_refused_by_the_command_line(dirs, tiny_config, tiny_checkpoint):
    proc = subprocess.run([sys.executable, str(TOOLS / 'submit.py'),
                           *argv(dirs, tiny_config, tiny_checkpoint, 'my model/../x')],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 2, proc.stderr
    assert 'Traceback' not in proc.stderr
    assert proc.stderr.startswith("error: --name: model name 'my model/../x' is not valid")
    assert written(dirs) == []


def test_zoo_name_refused(dirs, capsys, tiny_config, tiny_checkpoint):
    err = run_refused(capsys, argv(dirs, tiny_config, tiny_checkpoint, 'fcn_r18-w16_synthcity'))
    assert 'is already a model of the zoo' in err
    assert written(dirs) == []


@pytest.mark.parametrize('which,message', [
    ('config', 'model config {} does not exist'),
    ('checkpoint', 'checkpoint {} does not exist'),
])
def test_missing_files_refused(dirs, capsys, tmp_path, tiny_config, tiny_checkpoint, which, message):
    missing = tmp_path / 'nothing_here.py'
    args = argv(dirs, missing if which == 'config' else tiny_config,
                missing if which == 'checkpoint' else tiny_checkpoint)
    err = run_refused(capsys, args)
    assert message.format(missing) in err
    assert written(dirs) == []


def test_config_with_other_class_count_refused(dirs, capsys, tmp_path, tiny_checkpoint):
    config = write_tiny_config(tmp_path / 'voc_fcn.py', num_classes=21)
    err = run_refused(capsys, argv(dirs, config, tiny_checkpoint))
    assert 'predicts 21 classes but the dataset of suite tinysubmit_quick (synthetic_cityscapes) has 19' in err
    assert written(dirs) == []


def test_checkpoint_that_does_not_match_refused(dirs, capsys, tmp_path, tiny_config):
    bad = tmp_path / 'bad.pth'
    torch.save({'decode_head.conv_seg.weight': torch.zeros(19, 16, 1, 1),
                'decode_head.conv_seg.bias': torch.zeros(19)}, bad)
    err = run_refused(capsys, argv(dirs, tiny_config, bad))
    assert 'does not match the model config' in err and 'missing key(s)' in err
    assert written(dirs) == []


class _RunsCode:
    """Pickles as a call of os.system: plain torch.load would run it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os
        return os.system, (f'touch {self.marker}',)


def test_checkpoint_that_would_run_code_refused(dirs, capsys, tmp_path, tiny_config, tiny_checkpoint):
    marker = tmp_path / 'ran'
    evil = tmp_path / 'evil.pth'
    torch.save({'state_dict': torch.load(tiny_checkpoint, weights_only=True),
                'meta': _RunsCode(marker)}, evil)
    err = run_refused(capsys, argv(dirs, tiny_config, evil))
    assert str(evil) in err and 'checkpoint' in err
    assert not marker.exists()
    assert written(dirs) == []


def test_name_of_another_submission_refused(dirs, capsys, tiny_config, tiny_checkpoint):
    other = dirs['submissions'] / 'my_tiny_fcn.yaml'
    text = 'name: my_tiny_fcn\nsha256: ' + 'ab' * 32 + '\n'
    other.write_text(text)
    err = run_refused(capsys, argv(dirs, tiny_config, tiny_checkpoint))
    assert f'--name my_tiny_fcn is already used by the submission {other}' in err
    assert 'checkpoint sha256 abababababab...' in err
    assert other.read_text() == text
    assert written(dirs) == [other]


def test_records_of_another_checkpoint_refused(dirs, capsys, tiny_config, tiny_checkpoint):
    stale = dirs['results'] / 'tinysubmit_quick' / 'my_tiny_fcn' / 'clean_eps0_0123456789abcdef.json'
    stale.parent.mkdir(parents=True)
    stale.write_text('{"provenance": {"checkpoint_sha256": "%s"}}' % ('f' * 64))
    err = run_refused(capsys, argv(dirs, tiny_config, tiny_checkpoint))
    assert 'already holds records of another checkpoint' in err
    assert written(dirs) == [stale]


def test_quick_overrides_of_the_main_suite():
    from benchmark.suite import load_suite
    suite = load_suite(submit.DEFAULT_SUITE)
    over = submit.quick_overrides(suite)
    quick = load_suite(submit.DEFAULT_SUITE, over)
    assert quick.name == 'demo_quick' and quick.dataset['num_images'] == 2
    assert [a['type'] for a in quick.attacks] == ['fgsm', 'ifgsm'] and quick.epsilons == [2.0, 8.0]
    assert quick.dataset_key != suite.dataset_key   # quick cells never share keys with full ones
    assert suite.dataset['num_images'] == 8         # the loaded suite itself is unchanged


def test_summarize_is_the_leaderboard_robustness_score():
    def rec(attack, eps, miou, dataset='d', **params):
        return {'key': {'attack': attack, 'epsilon': eps, 'params': params, 'dataset': dataset},
                'metrics': {'miou': miou}, 'provenance': {'attack_spec': {'type': attack}}}
    # Iterative FGSM's step count depends on ε: its cells are still one attack configuration
    records = [rec('clean', 0, 0.5), rec('fgsm', 2, 0.4), rec('fgsm', 8, 0.2),
               rec('ifgsm', 2, 0.1, num_steps=3), rec('ifgsm', 8, 0.3, num_steps=10),
               rec('clean', 0, 0.9, dataset='fit'), rec('fgsm', 2, 0.9, dataset='fit')]
    assert submit.summarize(records, 's', 'd') == {'s_clean_miou': 0.5,
                                                   's_mean_iou_ratio': round((0.6 + 0.4) / 2, 4)}
    assert submit.summarize([rec('clean', 0, None)], 's', 'd') == {}
