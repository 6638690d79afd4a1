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


# -- write side: modes, durability, temporary files, errors ---------------------------------------

import errno  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402

import common.atomic as atomic_mod  # noqa: E402
import common.hashing as hashing_mod  # noqa: E402
from benchmark.store import (RecordError, atomic_write_bytes, current_umask,  # noqa: E402
                             find_temporary, inspect_record)


@pytest.fixture
def umask():
    """Set a umask for one test (restored afterwards)."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda m: os.umask(m)
    os.umask(old)


@pytest.mark.parametrize('mask,mode', [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_written_files_get_the_mode_open_would_give(tmp_path, umask, mask, mode):
    umask(mask)
    assert current_umask() == mask
    store = ResultStore(tmp_path)
    rec, per_image = record_for(KEY)
    path = store.write(rec, {'vs_ground_truth': per_image})
    assert path.stat().st_mode & 0o777 == mode                     # mkstemp alone gives 0o600
    assert path.with_suffix('.npz').stat().st_mode & 0o777 == mode
    atomic_write_bytes(tmp_path / 'x' / 'README.md', b'hi')
    assert (tmp_path / 'x' / 'README.md').stat().st_mode & 0o777 == mode


def test_the_directory_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    synced = []
    real = atomic_mod.fsync_directory
    monkeypatch.setattr(atomic_mod, 'fsync_directory',
                        lambda d: (synced.append((Path(d), (Path(d) / 'f').exists())), real(d)))
    atomic_write_bytes(tmp_path / 'f', b'data')
    assert synced == [(tmp_path, True)]                             # after the file is in place


def test_sweep_temporary_removes_only_temporary_files(tmp_path):
    store = ResultStore(tmp_path)
    rec, per_image = record_for(KEY)
    path = store.write(rec, {'vs_ground_truth': per_image})
    model_dir = path.parent
    stale = [model_dir / f'.{path.name}.a1B2_c3d.tmp', model_dir / f'.{path.with_suffix(".npz").name}.zzzzzzzz.tmp',
             model_dir / 'artifacts' / '.universal.pt.abcdefgh.tmp']
    stale[2].parent.mkdir()
    for s in stale:
        s.write_bytes(b'half')
    keep = [model_dir / '.hidden_note', model_dir / 'notes.tmp', path, path.with_suffix('.npz')]
    keep[0].write_text('x')
    keep[1].write_text('x')
    other = tmp_path / 'suite' / 'other_model'
    other.mkdir()
    (other / '.a.json.12345678.tmp').write_bytes(b'live writer of another model')
    assert find_temporary(tmp_path) == sorted(stale + [other / '.a.json.12345678.tmp'])
    assert all(s.exists() for s in stale)                           # finding removes nothing
    assert sorted(store.sweep_temporary(model_dir)) == sorted(stale)
    assert not any(s.exists() for s in stale) and all(k.exists() for k in keep)
    assert (other / '.a.json.12345678.tmp').exists()                # other models untouched
    store.read(KEY)


class _FailingFile:
    def __init__(self, f, err):
        self._f, self._err = f, err

    def write(self, data):
        raise OSError(self._err, os.strerror(self._err))

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def _snapshot(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(Path(root).rglob('*')) if p.is_file()}


@pytest.mark.parametrize('err,match', [(errno.ENOSPC, 'disk .or your quota. is full'),
                                       (errno.EIO, 'Check the path')])
def test_failed_write_keeps_what_is_stored(tmp_path, monkeypatch, err, match):
    store = ResultStore(tmp_path)
    rec, per_image = record_for(KEY)
    store.write(rec, {'vs_ground_truth': per_image})
    before = _snapshot(tmp_path)
    real_fdopen = os.fdopen
    calls = []

    def fdopen(fd, *a, **k):
        calls.append(fd)
        f = real_fdopen(fd, *a, **k)
        return _FailingFile(f, err) if len(calls) == 2 else f       # the .json after the .npz
    monkeypatch.setattr(atomic_mod.os, 'fdopen', fdopen)
    rec2, per_image2 = record_for(KEY, n=5)
    with pytest.raises(ResultsError, match=match) as info:
        store.write(rec2, {'vs_ground_truth': per_image2})
    assert str(store.record_path(KEY)) in str(info.value) and 'Nothing already stored was changed' in str(info.value)
    assert _snapshot(tmp_path) == before                            # old .npz not replaced, no .tmp left
    monkeypatch.undo()
    store.read(KEY)


def test_read_only_directory_is_a_clear_error(tmp_path, monkeypatch):
    store = ResultStore(tmp_path)
    rec, per_image = record_for(KEY)
    store.write(rec, {'vs_ground_truth': per_image})
    before = _snapshot(tmp_path)
    model_dir = store.record_path(KEY).parent
    if os.geteuid() == 0:  # root ignores permission bits: the file system's answer is simulated
        def mkstemp(*a, **k):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        monkeypatch.setattr(atomic_mod.tempfile, 'mkstemp', mkstemp)
    else:
        model_dir.chmod(0o555)
    try:
        with pytest.raises(ResultsError, match='Expected a writable directory') as info:
            store.write(rec, {'vs_ground_truth': per_image})
    finally:
        model_dir.chmod(0o755)
    assert str(model_dir) in str(info.value)
    assert _snapshot(tmp_path) == before


@pytest.mark.skipif(os.geteuid() == 0, reason='root ignores permission bits')
def test_read_only_directory_for_real(tmp_path):
    store = ResultStore(tmp_path)
    rec, per_image = record_for(KEY)
    store.write(rec, {'vs_ground_truth': per_image})
    before = _snapshot(tmp_path)
    store.record_path(KEY).parent.chmod(0o555)
    try:
        with pytest.raises(ResultsError, match='Expected a writable directory'):
            store.write(rec, {'vs_ground_truth': per_image})
    finally:
        store.record_path(KEY).parent.chmod(0o755)
    assert _snapshot(tmp_path) == before


def test_results_path_that_is_a_file(tmp_path):
    (tmp_path / 'results').write_text('not a folder')
    with pytest.raises(ResultsError, match='is a file'):
        ResultStore(tmp_path / 'results').write(record_for(KEY)[0])
    (tmp_path / 'r2').mkdir()
    (tmp_path / 'r2' / 'suite').write_text('a file where the suite folder goes')
    with pytest.raises(ResultsError, match='a component of this path is a file'):
        ResultStore(tmp_path / 'r2').write(record_for(KEY)[0])
    assert (tmp_path / 'results').read_text() == 'not a folder'
    assert not find_temporary(tmp_path)


# -- read side: verification -----------------------------------------------------------------------

from pathlib import Path  # noqa: E402

HIDE = {'target': {'kind': 'hide_class', 'hidden_class': 1}}
TKEY = CellKey('suite', 'ds', 'model', 'targeted_ifgsm', HIDE, 8.0)


def targeted_record(n=3, c=4):
    """A record with every matrix and every metric make_record writes (hidden-class target)."""
    rng = np.random.default_rng(1)
    mats = {k: rng.integers(0, 50, size=(n, c, c)) for k in ('vs_ground_truth', 'vs_clean', 'vs_target')}
    prov = {'packages': {}, 'git_sha': 'a' * 40, 'seed': 0, 'config_hash': 'abc', 'wall_time_s': 1.0,
            'created': '2026-01-01T00:00:00+00:00', 'device': 'cpu'}
    rec = make_record(TKEY, dataset={'name': 'd', 'split': 'val', 'image_ids_sha256': 'f' * 64},
                      class_names=list('abcd'), conf_gt=mats['vs_ground_truth'].sum(0),
                      conf_clean=mats['vs_clean'].sum(0), conf_target=mats['vs_target'].sum(0),
                      num_images=n, attack_stats={'gradient_passes_per_image': 1, 'forward_images': 6,
                                                  'gradient_images': 3}, provenance=prov)
    return rec, mats


@pytest.fixture
def stored(tmp_path):
    store = ResultStore(tmp_path / 'results')
    rec, mats = targeted_record()
    path = store.write(rec, mats)
    assert set(rec['metrics']) >= {'miou', 'pixel_accuracy', 'per_class_iou', 'agreement_with_clean',
                                   'targeted_success_rate', 'fooling_rate', 'class_pixels_hidden',
                                   'background_preserved'}
    return store, path


def edit_json(path, fn):
    rec = json.loads(path.read_text())
    fn(rec)
    path.write_text(json.dumps(rec))


def problems_of(store, path):
    with pytest.raises(RecordError) as info:
        store.read(path)
    path = store.record_path(path) if isinstance(path, CellKey) else path
    assert isinstance(info.value, ResultsError) and str(path) in str(info.value)
    return [(p.field, p.reason) for p in info.value.problems]


def test_a_verified_record_reads(stored):
    store, path = stored
    assert store.read(TKEY)['cell_id'] == TKEY.cell_id
    assert store.read(path, verify=True) == store.read(path, verify=False)
    assert inspect_record(path)[2] == []


@pytest.mark.parametrize('token', ['NaN', 'Infinity', '-Infinity'])
def test_nan_and_infinity_tokens_are_refused(stored, token):
    store, path = stored
    text = path.read_text()
    path.write_text(text.replace('"wall_time_s": 1.0', f'"wall_time_s": {token}'))
    assert path.read_text() != text
    for verify in (True, False):
        with pytest.raises(ResultsError, match=f'{token.lstrip("-")}.*not a valid JSON number'):
            store.read(path, verify=verify)


def test_overflowing_number_is_refused(stored):
    store, path = stored
    path.write_text(path.read_text().replace('"wall_time_s": 1.0', '"wall_time_s": 1e999'))
    assert problems_of(store, path) == [('provenance.wall_time_s', 'is not a finite number (NaN or '
                                         'infinite); a result must be finite')]


@pytest.mark.parametrize('field,edit', [
    ('metrics.miou', lambda m: m.update(miou=m['miou'] + 1e-6)),
    ('metrics.pixel_accuracy', lambda m: m.update(pixel_accuracy=0.5)),
    ('metrics.per_class_iou.2', lambda m: m['per_class_iou'].__setitem__(2, 0.123)),
    ('metrics.agreement_with_clean', lambda m: m.update(agreement_with_clean=None)),
    ('metrics.targeted_success_rate', lambda m: m.update(targeted_success_rate=1.0)),
    ('metrics.fooling_rate', lambda m: m.update(fooling_rate=0.0)),
    ('metrics.class_pixels_hidden', lambda m: m.update(class_pixels_hidden=1.0)),
    ('metrics.background_preserved', lambda m: m.pop('background_preserved')),
])
def test_stated_metric_differing_from_the_matrices_is_refused(stored, field, edit):
    store, path = stored
    edit_json(path, lambda r: edit(r['metrics']))
    (got_field, reason), = problems_of(store, path)
    assert got_field == field and ('differs from the value' in reason or 'is missing' in reason)
    store.read(path, verify=False)                                  # the cheap read still works


def test_per_image_file_missing_truncated_or_edited(stored):
    store, path = stored
    npz = path.with_suffix('.npz')
    data = npz.read_bytes()
    npz.write_bytes(data[: len(data) // 2])
    assert problems_of(store, path)[0][0] == 'per_image.sha256'
    npz.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    assert problems_of(store, path)[0][0] == 'per_image.sha256'
    npz.unlink()
    field, reason = problems_of(store, path)[0]
    assert field == 'per_image.file' and 'missing' in reason


def _replace_npz(path, data):
    """Write new per-image bytes and let the record name their sha256 (a consistent forgery)."""
    path.with_suffix('.npz').write_bytes(data)
    edit_json(path, lambda r: r['per_image'].update(sha256=hashing_mod.sha256_bytes(data)))


def _npz_bytes(**arrays):
    import io
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def test_per_image_file_that_does_not_load(stored):
    store, path = stored
    _replace_npz(path, b'PK\x03\x04 this is not a zip archive')
    field, reason = problems_of(store, path)[0]
    assert field == 'per_image.file' and 'cannot be loaded' in reason


def test_per_image_rows_and_sums_are_checked(stored):
    store, path = stored
    _, mats = targeted_record()
    # one image dropped: wrong row count (and the sums no longer match)
    _replace_npz(path, _npz_bytes(**{k: v[:2] for k, v in mats.items()}))
    fields = [f for f, _ in problems_of(store, path)]
    assert 'num_images' in fields and 'confusion.vs_ground_truth' in fields
    # same row count, one count moved within an image: sums differ for vs_clean only
    edited = dict(mats)
    edited['vs_clean'] = mats['vs_clean'].copy()
    edited['vs_clean'][0, 0, 0] += 1
    _replace_npz(path, _npz_bytes(**edited))
    assert problems_of(store, path) == [('confusion.vs_clean', 'is not the sum of the per-image matrices in '
                                         f'{path.with_suffix(".npz").name}; one of the two files was edited '
                                         'or belongs to another cell')]
    # a matrix missing from the file
    _replace_npz(path, _npz_bytes(**{k: v for k, v in mats.items() if k != 'vs_target'}))
    assert problems_of(store, path)[0][0] == 'confusion.vs_target'


def test_num_images_disagreeing_with_the_matrices(stored):
    store, path = stored
    edit_json(path, lambda r: r.update(num_images=4))
    (field, reason), = problems_of(store, path)
    assert field == 'num_images' and 'is 4' in reason and "3 rows in 'vs_clean'" in reason


def test_record_whose_path_does_not_match_its_key(stored, tmp_path):
    store, path = stored
    root = store.root
    shutil.copytree(root / 'suite', root / 'suite_copy')           # cp -r results/demo results/demo_copy
    copy = root / 'suite_copy' / 'model' / path.name
    fields = [f for f, _ in problems_of(store, copy)]
    assert fields == ['key.suite']
    shutil.copytree(root / 'suite' / 'model', root / 'suite' / 'model2')
    assert [f for f, _ in problems_of(store, root / 'suite' / 'model2' / path.name)] == ['key.model']
    renamed = path.with_name('targeted_ifgsm_eps4_' + TKEY.cell_id + '.json')
    shutil.copy(path, renamed)
    assert [f for f, _ in problems_of(store, renamed)] == ['(path)']
    nested = root / 'old' / 'suite' / 'model'
    shutil.copytree(root / 'suite' / 'model', nested)              # a nested copy under the same root
    assert [f for f, _ in problems_of(store, nested / path.name)] == ['(path)']
    # the same file outside the store's root: only its own folder names are compared
    assert inspect_record(nested / path.name)[2] == []


def test_record_at_another_cells_path(stored):
    store, path = stored
    other = CellKey('suite', 'ds', 'model', 'targeted_ifgsm', HIDE, 4.0)
    shutil.copy(path, store.record_path(other))
    problems = problems_of(store, other)
    assert ('key' in [f for f, _ in problems]) and any('is where' in r for _, r in problems)


@pytest.mark.parametrize('field,value', [('model', 'my model'), ('suite', 'a|b'), ('attack', 'x/y')])
def test_invalid_names_are_refused(tmp_path, field, value):
    rec, _ = targeted_record()
    rec['per_image'] = None
    rec['key'][field] = value
    key = CellKey.from_dict(rec['key'])
    rec['cell_id'] = key.cell_id
    folder = tmp_path / rec['key']['suite'].replace('/', '_') / rec['key']['model'].replace('/', '_')
    folder.mkdir(parents=True)
    path = folder / f'{key.file_stem().replace("/", "_")}.json'
    path.write_text(json.dumps(rec))
    _, _, problems = inspect_record(path)
    assert f'key.{field}' in [p.field for p in problems]
    assert any('is not valid' in p.reason for p in problems if p.field == f'key.{field}')


@pytest.mark.parametrize('content,field,reason', [
    ('', '(json)', 'the file is empty'),
    ('{"a": ', '(json)', 'is not valid JSON'),
    ('[1, 2]', '(top level)', 'is a JSON list'),
    ('{"hello": "world"}', '(top level)', 'is not a result record'),
    ('{"schema_version": 1, "key": 3}', 'cell_id', "'cell_id' is a required property"),
])
def test_unreadable_files_are_problems_not_tracebacks(tmp_path, content, field, reason):
    path = tmp_path / 'x.json'
    path.write_text(content)
    record, arrays, problems = inspect_record(path)
    assert record is None and arrays is None
    assert (problems[0].field, problems[0].file) == (field, str(path)) and reason in problems[0].reason
    with pytest.raises(ResultsError):
        ResultStore(tmp_path).read(path)


def test_problem_string():
    from benchmark.store import Problem
    assert str(Problem('a.json', 'metrics.miou', 'differs')) == 'a.json: metrics.miou: differs'


def test_iter_records_skips_artifacts_and_hidden_files(stored):
    store, path = stored
    (path.parent / 'artifacts').mkdir()
    (path.parent / 'artifacts' / 'meta.json').write_text('{}')
    (path.parent / '.x.json').write_text('{}')
    assert [p for p, _ in store.iter_records()] == [path]


def test_interrupted_replacement_leaves_no_mismatched_pair(tmp_path, monkeypatch):
    """A crash between the two renames of a --force rewrite: the cell is missing (and recomputed),
    never an old record naming the sha256 of a per-image file that was replaced."""
    store = ResultStore(tmp_path)
    rec, per_image = record_for(KEY)
    store.write(rec, {'vs_ground_truth': per_image})
    real_replace = os.replace
    calls = []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:                                         # the record's rename
            raise KeyboardInterrupt
        return real_replace(src, dst)
    monkeypatch.setattr(atomic_mod.os, 'replace', replace)
    rec2, per_image2 = record_for(KEY, n=5)
    with pytest.raises(KeyboardInterrupt):
        store.write(rec2, {'vs_ground_truth': per_image2})
    monkeypatch.undo()
    assert not store.exists(KEY) and not find_temporary(tmp_path)
    store.write(rec2, {'vs_ground_truth': per_image2})              # the next run recomputes it
    assert store.read(KEY)['num_images'] == 5


def test_counts_beyond_int64_are_a_problem_not_a_crash(stored):
    store, path = stored
    edit_json(path, lambda r: r['confusion']['vs_clean'][1].__setitem__(0, 10 ** 30))
    assert [f for f, _ in problems_of(store, path)] == ['confusion.vs_clean']
