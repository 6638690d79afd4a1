"""Command-line errors: one paragraph saying what was wrong, no traceback, nothing lost."""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_tool(*args, cwd=REPO):
    return subprocess.run([sys.executable, str(REPO / 'tools' / 'run_benchmark.py'), *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


def write_suite(path, **fields):
    base = dict(dataset="dict(type='synthetic_cityscapes')", models="['fcn_r18-w16_synthcity']",
                attacks="['fgsm']", epsilons='[8]')
    base.update(fields)
    path.write_text(''.join(f'{k} = {v}\n' for k, v in base.items()))
    return path


@pytest.mark.parametrize('fields,message', [
    (dict(models="['fcn_nonexistent']"), "unknown model 'fcn_nonexistent'"),
    (dict(attacks="['carlini']"), "unknown attack 'carlini'"),
    (dict(epsilons="['8px']"), "epsilon '8px' is not valid"),
    (dict(epsilons='[-1]'), 'epsilon -1 is not valid'),
    (dict(dataset="dict(type='cityscapes', data_root='/nonexistent/cityscapes')"), 'Expected this layout'),
])
def test_bad_input_is_one_clear_paragraph(tmp_path, fields, message):
    suite = write_suite(tmp_path / 'suite.py', **fields)
    results = tmp_path / 'results'
    (results / 'keep').mkdir(parents=True)
    (results / 'keep' / 'old.json').write_text('{"precious": true}')
    proc = run_tool(suite, '--results-dir', results, '--leaderboard-dir', tmp_path / 'lb', '--no-progress')
    assert proc.returncode == 2, proc.stderr
    assert 'Traceback' not in proc.stderr
    assert proc.stderr.startswith('error: ') and message in proc.stderr.replace('\n  ', ' ')
    assert (results / 'keep' / 'old.json').read_text() == '{"precious": true}'


def test_checkpoint_that_does_not_match(tmp_path, tiny_config):
    import torch
    bad = tmp_path / 'bad.pth'
    torch.save({'decode_head.conv_seg.weight': torch.zeros(19, 16, 1, 1)}, bad)
    suite = write_suite(tmp_path / 'suite.py', models=f"[dict(name='mine', config='{tiny_config}', checkpoint='{bad}')]",
                        dataset="dict(type='synthetic_cityscapes', num_train=2, num_val=2, size=(64, 32))")
    env_root = tmp_path / 'cache'
    proc = subprocess.run([sys.executable, str(REPO / 'tools' / 'run_benchmark.py'), str(suite),
                           '--results-dir', str(tmp_path / 'r'), '--no-leaderboard', '--no-progress'],
                          capture_output=True, text=True, timeout=300,
                          env={**__import__('os').environ, 'SEGBENCH_CACHE': str(env_root)})
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr
    message = ' '.join(proc.stderr.split())   # the paragraph is wrapped at 100 columns
    assert 'does not match the model config' in message and 'missing key(s)' in message
