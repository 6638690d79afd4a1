"""torch.distributed scale-out: a 2-rank CPU run (gloo, started by torchrun) writes the same records,
bit for bit, as a 1-process run; batches are dealt to ranks without losing or repeating an image.

Each run is ``tools/run_benchmark.py`` in a subprocess on the tiny model and tiny synthetic data.
"""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.loader import ChunkSampler, ImageLoader, plan_chunks
from benchmark.store import ResultStore

REPO = Path(__file__).resolve().parents[2]


def write_suite(path, synthetic_root, tiny_config, tiny_checkpoint, tiny_checkpoint_diverse):
    """White-box and transfer cells of two models, a fitted universal perturbation, 4 images in
    batches of 1 (rank 0 gets images 0 and 2, rank 1 images 1 and 3)."""
    data = (f"dict(type='synthetic_cityscapes', root={str(synthetic_root)!r}, seed=0, num_train=2, "
            "num_val=4, size=(64, 32){})")
    path.write_text(
        "suite_name = 'dist'\n"
        f"dataset = {data.format('')}\n"
        f"fit_dataset = {data.format(', split=' + repr('train'))}\n"
        f"models = [dict(name='tiny_a', config={str(tiny_config)!r}, checkpoint={str(tiny_checkpoint)!r}),\n"
        f"          dict(name='tiny_b', config={str(tiny_config)!r}, checkpoint={str(tiny_checkpoint_diverse)!r})]\n"
        "sources = ['tiny_a', 'tiny_b']\ntargets = ['tiny_a', 'tiny_b']\n"
        "attacks = [dict(type='fgsm'), dict(type='ifgsm'), dict(type='ifgsm_ll'),\n"
        "           dict(type='universal', num_steps=2, epsilons=[4])]\n"
        "epsilons = [1, 4]\nbatch_size = 1\n")
    return path


def run(args, results, adv, nproc=None):
    tool = [str(REPO / 'tools' / 'run_benchmark.py')]
    common = ['--results-dir', str(results), '--no-leaderboard', '--no-progress', '--threads', '1']
    if nproc is None:
        cmd = [sys.executable] + tool + args + common
    else:
        cmd = ([sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc-per-node={nproc}']
               + tool + args + common + ['--launcher', 'pytorch'])
    env = dict(os.environ, SEGBENCH_ADV_DIR=str(adv), OMP_NUM_THREADS='1')
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def comparable(results):
    """Every record and per-image matrix, without what legitimately differs between runs (time,
    host, process)."""
    store = ResultStore(results)
    out = {}
    for path, rec in store.iter_records():
        per_image = store.read_per_image(path, rec)
        rec = {k: v for k, v in rec.items() if k not in ('provenance', 'per_image')}
        stats = dict(rec['attack_stats'])
        for name in ('generation',):
            if name in stats:
                stats[name] = {k: v for k, v in stats[name].items() if k != 'wall_time_s'}
        rec['attack_stats'] = stats
        out[path.relative_to(results).as_posix()] = (json.dumps(rec, sort_keys=True),
                                                     {k: v.tolist() for k, v in per_image.items()})
    return out


def store_files(root):
    """The adversarial-example store's image batches: relative path -> sha256 of the bytes."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in Path(root).rglob('batch_*.npz')}


def test_two_ranks_write_the_records_of_one_process(tmp_path, synthetic_root, tiny_config, tiny_checkpoint,
                                                    tiny_checkpoint_diverse):
    suite = write_suite(tmp_path / 'suite.py', synthetic_root, tiny_config, tiny_checkpoint,
                        tiny_checkpoint_diverse)
    run([str(suite), '--workers', '0'], tmp_path / 'one', tmp_path / 'adv_one')
    proc = run([str(suite), '--workers', '1'], tmp_path / 'two', tmp_path / 'adv_two', nproc=2)
    one, two = comparable(tmp_path / 'one'), comparable(tmp_path / 'two')
    # 2 targets × (clean + 2 sources × (3 attacks × 2 ε + universal at ε = 4 on the evaluation
    # split and on its fitting split))
    assert len(one) == 2 * (1 + 2 * 8)
    assert one.keys() == two.keys()
    for name in one:
        assert one[name] == two[name], name
    # every image counted once: both ranks' images are in every record
    for path, rec in ResultStore(tmp_path / 'two').iter_records():
        assert rec['num_images'] == {'val': 4, 'train': 2}[rec['dataset']['split']], path
    # every rank stored its own batches; together they are the one-process store, byte for byte
    assert store_files(tmp_path / 'adv_one') == store_files(tmp_path / 'adv_two')
    assert 'cells computed' in proc.stderr          # rank 0 reports
    # resume, started with --nproc (the tool runs torchrun itself): both ranks find everything stored
    again = run([str(suite), '--nproc', '2'], tmp_path / 'two', tmp_path / 'adv_two')
    assert '0 cells computed, 34 already stored' in again.stderr


def test_chunks_are_dealt_whole_and_exactly_once(monkeypatch):
    chunks = plan_chunks(10, 3)
    assert chunks == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    import mmengine.dataset.sampler as sampler
    seen = []
    for rank in range(3):
        monkeypatch.setattr(sampler, 'get_dist_info', lambda rank=rank: (rank, 3))
        seen.append(list(ChunkSampler(chunks)))
    assert seen == [[[0, 1, 2], [9]], [[3, 4, 5]], [[6, 7, 8]]]
    assert sorted(p for rank in seen for c in rank for p in c) == list(range(10))
    with pytest.raises(ValueError, match='batch_size'):
        plan_chunks(4, 0)


def test_loader_splits_a_chunk_at_size_changes_and_reraises_load_errors():
    import torch

    from common.errors import DatasetError

    class Sizes:
        shapes = [(4, 6), (4, 6), (6, 4), (4, 6), (4, 6)]

        def __len__(self):
            return len(self.shapes)

        def __getitem__(self, i):
            if self.shapes[i] is None:
                raise DatasetError(f'cannot decode image {i}.png: broken')
            h, w = self.shapes[i]
            return torch.full((3, h, w), float(i)), torch.zeros(h, w, dtype=torch.long), f'{i}.png'

    for workers in (0, 1):
        loader = ImageLoader(Sizes(), batch_size=4, workers=workers)
        batches = list(loader)
        loader.close()
        assert [b.positions for b in batches] == [[0, 1], [2], [3], [4]]
        assert [b.ids for b in batches][0] == ['0.png', '1.png']
        assert batches[0].images.shape == (2, 3, 4, 6) and batches[1].images[0, 0, 0, 0] == 2
    broken = Sizes()
    broken.shapes = [(4, 6), None]
    for workers in (0, 1):
        loader = ImageLoader(broken, batch_size=2, workers=workers)
        with pytest.raises(DatasetError, match='cannot decode image 1.png: broken'):
            list(loader)
        loader.close()
