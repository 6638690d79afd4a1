"""Result records: schema validation, atomic writes, per-image matrices, cell keys."""
import json

import numpy as np
import pytest

from benchmark.cells import CellKey
from benchmark.errors import ResultsError
from benchmark.store import ResultStore, make_record, validate_record


def record_for(key, n=3, c=4):
    rng = np.random.default_rng(0)
    per_image = rng.integers(0, 50, size=(n, c, c))
    prov = {'packages': {'torch': '2.13.0'}, 'git_sha': None, 'git_dirty': None, 'seed': 0,
            'config_hash': 'abc', 'wall_time_s': 1.5, 'created': '2026-01-01T00:00:00+00:00',
            'device': 'cpu'}
    rec = make_record(key, dataset={'name': 'd', 'split': 'val', 'root': None, 'image_ids_sha256': 'f' * 64},
                      class_names=['a', 'b', 'c', 'd'], conf_gt=per_image.sum(0), conf_clean=None,
                      conf_target=None, num_images=n,
                      attack_stats={'gradient_passes_per_image': 1, 'forward_images': 6, 'gradient_images': 3},
                      provenance=prov)
    return rec, per_image


KEY = CellKey('suite', 'ds', 'model', 'fgsm', {}, 8.0)


def test_write_read_round_trip(tmp_path):
    store = ResultStore(tmp_path)
    rec, per_image = record_for(KEY)
    path = store.write(rec, {'vs_ground_truth': per_image, 'vs_clean': None})
    assert path == tmp_path / 'suite' / 'model' / f'fgsm_eps8_{KEY.cell_id}.json'
    back = store.read(KEY)
    assert back['confusion'] == rec['confusion'] and back['per_image']['file'].endswith('.npz')
    np.testing.assert_array_equal(store.read_per_image(path, back)['vs_ground_truth'], per_image)
    assert not list(tmp_path.rglob('*.tmp'))


def test_tampered_per_image_file_detected(tmp_path):
    store = ResultStore(tmp_path)
    rec, per_image = record_for(KEY)
    path = store.write(rec, {'vs_ground_truth': per_image})
    npz = path.with_suffix('.npz')
    npz.write_bytes(npz.read_bytes() + b'x')
    with pytest.raises(ResultsError, match='sha256'):
        store.read_per_image(path, store.read(path))


@pytest.mark.parametrize('mutate,match', [
    (lambda r: r.update(num_images=0), 'num_images'),
    (lambda r: r['confusion'].update(vs_ground_truth=[[1.5]]), 'vs_ground_truth'),
    (lambda r: r['confusion'].update(vs_ground_truth=[[1, 2], [3, 4]]), 'not 4x4'),
    (lambda r: r.update(cell_id='0' * 16), 'does not match its key'),
    (lambda r: r.pop('provenance'), 'provenance'),
    (lambda r: r.update(extra=1), 'Additional properties'),
    (lambda r: r['metrics'].update(miou='0.5'), 'miou'),
])
def test_schema_rejects_bad_records(mutate, match):
    rec, _ = record_for(KEY)
    rec['per_image'] = None
    validate_record(rec)
    mutate(rec)
    with pytest.raises(ResultsError, match=match):
        validate_record(rec)


def test_corrupt_json_is_a_clear_error(tmp_path):
    store = ResultStore(tmp_path)
    rec, _ = record_for(KEY)
    path = store.write(rec)
    path.write_text(path.read_text()[:20])
    with pytest.raises(ResultsError, match='cannot read result record'):
        store.read(path)


def test_cell_key_identity():
    same = CellKey('suite', 'ds', 'model', 'fgsm', {}, 8)
    assert same.cell_id == KEY.cell_id                     # 8 and 8.0 are one cell
    assert CellKey('suite', 'ds', 'model', 'fgsm', {}, 4.0).cell_id != KEY.cell_id
    assert CellKey('suite', 'ds', 'model', 'fgsm', {}, 8.0, source_model='x').cell_id != KEY.cell_id
    assert KEY.clean_key().attack == 'clean' and KEY.clean_key().epsilon == 0
    assert json.loads(json.dumps(KEY.to_dict())) == KEY.to_dict()
    with pytest.raises(ValueError, match='file path'):
        ResultStore('/tmp').record_path(CellKey('a/b', 'ds', 'm', 'fgsm', {}, 1))
