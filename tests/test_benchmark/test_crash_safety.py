"""Crash safety and concurrency, with real processes: SIGKILL at random moments, then resume; two
runs on one results directory at once.

Each run is ``tools/run_benchmark.py`` in a subprocess on the tiny model and tiny synthetic data.
"""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from benchmark.store import ResultStore

REPO = Path(__file__).resolve().parents[2]
# long enough (a few seconds of attacks) for kills to land in the middle of the work
ATTACKS = "[dict(type='fgsm'), dict(type='ifgsm'), dict(type='pgd', num_steps=40)]"
EPSILONS = '[1, 2, 4, 8, 16, 32]'


def write_suite(path, synthetic_root, tiny_config, tiny_checkpoint):
    path.write_text(
        "suite_name = 'crash'\n"
        f"dataset = dict(type='synthetic_cityscapes', root={str(synthetic_root)!r}, seed=0, num_train=2,"
        " num_val=4, size=(64, 32))\n"
        f"models = [dict(name='tiny_fcn', config={str(tiny_config)!r}, checkpoint={str(tiny_checkpoint)!r})]\n"
        f"attacks = {ATTACKS}\nepsilons = {EPSILONS}\nbatch_size = 1\n")
    return path


def command(suite, results):
    return [sys.executable, str(REPO / 'tools' / 'run_benchmark.py'), str(suite), '--results-dir',
            str(results), '--no-leaderboard', '--no-progress', '--threads', '1']


def comparable(results):
    """Every record and per-image matrix, without what legitimately differs between runs."""
    store = ResultStore(results)
    out = {}
    for path, rec in store.iter_records():
        per_image = store.read_per_image(path, rec)
        rec = {k: v for k, v in rec.items() if k not in ('provenance', 'per_image')}
        rec['attack_stats'] = {k: v for k, v in rec['attack_stats'].items()
                               if k not in ('forward_images', 'gradient_images')}
        out[path.relative_to(results).as_posix()] = (json.dumps(rec, sort_keys=True),
                                                     {k: v.tolist() for k, v in per_image.items()})
    return out


STORES = {}


def store_files(root):
    """The adversarial-example store's batches: relative path -> sha256 of the bytes."""
    import hashlib
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in Path(root).rglob('batch_*') if p.is_file()}


def stray_files(results):
    return sorted(p.relative_to(results).as_posix() for p in Path(results).rglob('*')
                  if p.is_file() and not p.name.endswith(('.json', '.npz')))


@pytest.fixture(scope='module')
def reference(tmp_path_factory, synthetic_root, tiny_config, tiny_checkpoint):
    """An uninterrupted run."""
    tmp = tmp_path_factory.mktemp('reference')
    suite = write_suite(tmp / 'suite.py', synthetic_root, tiny_config, tiny_checkpoint)
    # its own adversarial-example store (module scope: set up before the per-test one)
    env = dict(os.environ, SEGBENCH_ADV_DIR=str(tmp / 'adv'))
    proc = subprocess.run(command(suite, tmp / 'results'), capture_output=True, text=True, timeout=600,
                          env=env)
    assert proc.returncode == 0, proc.stderr
    records = comparable(tmp / 'results')
    assert len(records) == 1 + 3 * 6
    STORES['reference'] = store_files(tmp / 'adv')
    return records


def test_sigkill_at_random_moments_then_resume(tmp_path, reference, synthetic_root, tiny_config,
                                               tiny_checkpoint):
    suite = write_suite(tmp_path / 'suite.py', synthetic_root, tiny_config, tiny_checkpoint)
    results = tmp_path / 'results'
    adv = Path(os.environ['SEGBENCH_ADV_DIR'])   # this test's own store (tests/conftest.py)
    rng = random.Random(0)
    kills = 0
    for attempt in range(6):
        proc = subprocess.Popen(command(suite, results), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        # kill while it works: once it writes its first new file (adversarial images or a
        # record), at a random moment
        def written():
            return sum(1 for root in (results, adv) if root.exists() for _ in root.rglob('*.json'))
        before = written()
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline:
            if written() > before:
                break
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 1.5))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
    assert kills >= 3, 'the runs finished before they could be killed; make the suite longer'
    final = subprocess.run(command(suite, results), capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr
    assert comparable(results) == reference
    assert stray_files(results) == []
    # the generated store ends byte-identical to an uninterrupted generation's, with no stray files
    assert store_files(adv) == STORES['reference']
    assert not [p for p in adv.rglob('*') if p.is_file() and p.name.endswith('.tmp')]


def test_two_runs_at_once_compute_each_cell_once(tmp_path, reference, synthetic_root, tiny_config,
                                                 tiny_checkpoint):
    suite = write_suite(tmp_path / 'suite.py', synthetic_root, tiny_config, tiny_checkpoint)
    results = tmp_path / 'results'
    procs = [subprocess.Popen(command(suite, results), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    computed = []
    for _, err in outputs:
        line = next(line for line in err.splitlines() if 'cells computed' in line)
        computed.append(int(line.split('cells computed')[0].split()[-1]))
    assert sum(computed) == len(reference), (computed, [err for _, err in outputs])
    assert comparable(results) == reference
    assert stray_files(results) == []


@pytest.mark.parametrize('how', ['read-only', 'suite-is-a-file', 'root-is-a-file'])
def test_unwritable_results_dir_is_a_clear_error_and_keeps_records(tmp_path, how, synthetic_root,
                                                                   tiny_config, tiny_checkpoint):
    suite = write_suite(tmp_path / 'suite.py', synthetic_root, tiny_config, tiny_checkpoint)
    results = tmp_path / 'results'
    results.mkdir()
    (results / 'keep.txt').write_text('precious')
    if how == 'read-only':
        if os.geteuid() == 0:
            pytest.skip('root ignores directory permissions')
        results.chmod(0o555)
        expected = 'cannot write under the result records folder'
    elif how == 'suite-is-a-file':
        (results / 'crash').write_text('not a folder')
        expected = 'the result records folder'
    else:
        results = results / 'keep.txt'
        expected = 'is a file; expected a directory'
    try:
        proc = subprocess.run(command(suite, results), capture_output=True, text=True, timeout=600)
    finally:
        (tmp_path / 'results').chmod(0o755)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr, proc.stderr
    assert expected in proc.stderr.replace('\n  ', ' ')
    assert (tmp_path / 'results' / 'keep.txt').read_text() == 'precious'
