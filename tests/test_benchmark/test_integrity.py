"""Integrity checks across records: each problem found with file, field and reason, never a
traceback; the committed results are clean."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmark.cells import CellKey
from benchmark.errors import ResultsError
from benchmark.integrity import Problem, check_paths, check_paths_counted
from benchmark.store import ResultStore, make_record

REPO = Path(__file__).resolve().parents[2]
C = 3
PROV = {'packages': {'torch': '2.13.0'}, 'git_sha': '0123456789abcdef0123456789abcdef01234567',
        'git_dirty': False, 'seed': 0, 'config_hash': 'c' * 64, 'wall_time_s': 1.0,
        'created': '2026-01-01T00:00:00+00:00', 'device': 'cpu', 'checkpoint': 'w.pth',
        'checkpoint_sha256': 'e' * 64}
STATS = {'gradient_passes_per_image': 1, 'forward_images': 2, 'gradient_images': 1}


def per_image_gt(seed, n=2, shift=0):
    """Per-image matrices with fixed row sums (the ground truth) and random predictions."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, C, C), dtype=np.int64)
    for i in range(n):
        for r in range(C):
            out[i, r] = rng.multinomial(10 * (r + 1) + i + shift, [1 / C] * C)
    return out


def put(store, model='m', attack='fgsm', eps=8.0, seed=1, gt=None, clean=True, prov=None,
        ids='a' * 64, image_pixels=None):
    key = CellKey('s', 'd', model, attack, {}, eps)
    gt = per_image_gt(seed) if gt is None else gt
    vs_clean = None
    if attack != 'clean' and clean:
        totals = image_pixels or [int(gt[i].sum()) + 5 for i in range(len(gt))]
        vs_clean = np.stack([np.diag([t, 0, 0]) for t in totals]).astype(np.int64)
    rec = make_record(key, dataset={'name': 'd', 'split': 'val', 'image_ids_sha256': ids},
                      class_names=list('abc'), conf_gt=gt.sum(0),
                      conf_clean=None if vs_clean is None else vs_clean.sum(0), conf_target=None,
                      num_images=len(gt), attack_stats=STATS, provenance=prov or PROV)
    return store.write(rec, {'vs_ground_truth': gt, 'vs_clean': vs_clean})


@pytest.fixture
def tree(tmp_path):
    store = ResultStore(tmp_path / 'results')
    for model in ('m', 'n'):
        put(store, model, 'clean', 0, seed=0)
        for eps, seed in ((4, 1), (8, 2)):
            put(store, model, 'fgsm', eps, seed=seed)
    return store


def fields(problems):
    return sorted((Path(p.file).name, p.field) for p in problems)


def test_a_consistent_tree_has_no_problems(tree):
    n, problems = check_paths_counted([tree.root])
    assert (n, problems) == (6, [])
    # the same folder twice (a folder and its parent) is not a duplicate
    assert check_paths([tree.root, tree.root / 's' / 'm']) == []


def test_committed_results_are_clean():
    n, problems = check_paths_counted([REPO / 'results'])
    assert problems == [] and n >= 500


def test_duplicate_cell_in_two_trees(tree, tmp_path):
    shutil.copytree(tree.root / 's', tmp_path / 'backup' / 's')
    problems = check_paths([tree.root, tmp_path / 'backup'])
    assert len(problems) == 6 and {p.field for p in problems} == {'cell_id'}
    assert all('is also stored in' in p.reason for p in problems)


def test_copied_results_folder_is_reported(tree):
    shutil.copytree(tree.root / 's', tree.root / 's_copy')
    problems = check_paths([tree.root])
    assert len(problems) == 6 and {p.field for p in problems} == {'key.suite'}
    assert all('/s_copy/' in p.file for p in problems)


def test_ground_truth_pixels_must_agree_across_cells(tree):
    same_sizes = [int(m.sum()) + 5 for m in per_image_gt(1)]
    put(tree, 'm', 'fgsm', 2, gt=per_image_gt(3, shift=1), image_pixels=same_sizes)  # other ground truth
    problems = check_paths([tree.root])
    assert fields(problems) == [(tree.record_path(CellKey('s', 'd', 'm', 'fgsm', {}, 2)).name,
                                 'confusion.vs_ground_truth')]
    assert 'differ from those of clean_eps0_' in problems[0].reason


def test_image_sizes_must_agree_across_cells(tree):
    gt = per_image_gt(5)
    put(tree, 'm', 'fgsm', 2, gt=gt, image_pixels=[int(gt[0].sum()) + 5, int(gt[1].sum()) + 9])
    problems = check_paths([tree.root])
    assert [p.field for p in problems] == ['confusion.vs_clean']
    assert 'every image has the same size' in problems[0].reason


def test_image_list_must_agree_across_cells(tree):
    put(tree, 'n', 'fgsm', 2, seed=4, ids='b' * 64)
    problems = check_paths([tree.root])
    assert [p.field for p in problems] == ['dataset.image_ids_sha256']


def test_clean_cell_must_be_present(tree):
    tree.record_path(CellKey('s', 'd', 'n', 'clean', {}, 0)).unlink()
    tree.record_path(CellKey('s', 'd', 'n', 'clean', {}, 0)).with_suffix('.npz').unlink()
    problems = check_paths([tree.root])
    assert {p.field for p in problems} == {'key'} and len(problems) == 2
    assert all('its clean cell clean_eps0_' in p.reason for p in problems)


@pytest.mark.parametrize('edit,field', [
    (dict(git_sha=None), 'provenance.git_sha'),
    (dict(config_hash=''), 'provenance.config_hash'),
    (dict(created='yesterday'), 'provenance.created'),
    (dict(checkpoint_sha256=None), 'provenance.checkpoint_sha256'),
])
def test_provenance_must_be_present(tree, edit, field):
    put(tree, 'm', 'fgsm', 2, seed=1, prov=dict(PROV, **edit))
    assert [p.field for p in check_paths([tree.root])] == [field]


def test_no_checkpoint_needs_no_checkpoint_hash(tree):
    put(tree, 'm', 'fgsm', 2, seed=1, prov=dict(PROV, checkpoint=None, checkpoint_sha256=None))
    assert check_paths([tree.root]) == []


def test_stray_temporary_and_orphan_files(tree):
    folder = tree.root / 's' / 'm'
    tmp = folder / '.fgsm_eps8_0123456789abcdef.json.k2j4_x9q.tmp'
    tmp.write_bytes(b'{"half')
    orphan = folder / 'fgsm_eps2_0123456789abcdef.npz'
    orphan.write_bytes(b'x')
    problems = check_paths([tree.root])
    assert sorted((p.file, p.field) for p in problems) == [(str(tmp), '(file)'), (str(orphan), '(file)')]
    assert tmp.exists() and orphan.exists()                         # reported, not removed


@pytest.mark.parametrize('content,field', [
    (b'', '(json)'), (b'{"schema_version": 1', '(json)'), (b'[]', '(top level)'),
    (b'{"leaderboard": "notes"}', '(top level)'), (b'\xff\xfe\x00', '(json)'),
    (b'{"schema_version": 1, "key": {"suite": 3}}', 'cell_id'),
    (b'{"miou": NaN}', '(json)'),
])
def test_bad_files_are_problems_not_tracebacks(tree, content, field):
    path = tree.root / 's' / 'm' / 'bad.json'
    path.write_bytes(content)
    problems = check_paths([tree.root])
    assert [(p.file, p.field) for p in problems] == [(str(path), field)]


def test_wrong_types_inside_a_record(tree):
    path = tree.record_path(CellKey('s', 'd', 'm', 'fgsm', {}, 8))
    rec = json.loads(path.read_text())
    rec['confusion']['vs_ground_truth'][0][0] = 'many'
    rec['num_images'] = '2'
    path.write_text(json.dumps(rec))
    problems = check_paths([tree.root])
    assert len(problems) == 1 and problems[0].file == str(path)
    assert problems[0].field in ('num_images', 'confusion.vs_ground_truth.0.0')


def test_a_missing_path_is_a_usage_error(tmp_path):
    with pytest.raises(ResultsError, match='does not exist'):
        check_paths([tmp_path / 'nope'])


def test_problem_is_a_dataclass_with_a_readable_string():
    p = Problem('r/x.json', 'metrics.miou', 'differs')
    assert (p.file, p.field, p.reason) == ('r/x.json', 'metrics.miou', 'differs')
    assert str(p) == 'r/x.json: metrics.miou: differs'


def test_image_smaller_than_its_labelled_pixels(tmp_path):
    store = ResultStore(tmp_path / 'results')
    put(store, 'm', 'clean', 0, seed=0)
    gt = per_image_gt(0)
    put(store, 'm', 'fgsm', 8, gt=gt, image_pixels=[int(gt[0].sum()) - 1, int(gt[1].sum())])
    problems = check_paths([tmp_path / 'results'])
    assert [(Path(p.file).name.split('_')[0], p.field) for p in problems] == [('fgsm', 'confusion.vs_clean')]
    assert 'do not add up to the image sizes' in problems[0].reason
