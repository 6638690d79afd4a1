"""Tests of the procedural Cityscapes-style dataset (benchmark.datasets.synthetic).

They do not import mmseg; the layout checks mirror what mmseg's ``CityscapesDataset`` does
(recursive scan of ``leftImg8bit/<split>`` for ``_leftImg8bit.png`` and the label at the same relative
path under ``gtFine/<split>`` with ``_gtFine_labelTrainIds.png``).
"""
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.datasets import synthetic
from benchmark.datasets.synthetic import (CLASS_NAMES, SYNTHETIC_VERSION, USED_TRAIN_IDS,
                                          ensure_synthetic_cityscapes, generate_scene,
                                          write_synthetic_cityscapes)

IMG_SUFFIX = '_leftImg8bit.png'
SEG_SUFFIX = '_gtFine_labelTrainIds.png'
SIZE = (128, 64)  # (width, height): small, to keep the tests fast
STEM_RE = re.compile(r'^([a-z]+)_(\d{6})_(\d{6})$')


@pytest.fixture(autouse=True)
def _serial(monkeypatch):
    """Generate in-process unless a test asks otherwise."""
    monkeypatch.setenv('SEGBENCH_SYNTH_WORKERS', '1')


def _files(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob('*')) if p.is_file()}


@pytest.fixture(scope='module')
def small_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp('synth') / 'ds'
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('SEGBENCH_SYNTH_WORKERS', '1')
        out = write_synthetic_cityscapes(root, seed=0, num_train=4, num_val=2, size=SIZE, progress=False)
    assert out == root
    return root


def test_class_names_and_used_ids():
    assert CLASS_NAMES == (
        'road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light', 'traffic sign',
        'vegetation', 'terrain', 'sky', 'person', 'rider', 'car', 'truck', 'bus', 'train',
        'motorcycle', 'bicycle')
    assert len(set(USED_TRAIN_IDS)) == len(USED_TRAIN_IDS) and 10 <= len(USED_TRAIN_IDS) <= 19
    assert all(0 <= i < 19 for i in USED_TRAIN_IDS)
    names = {CLASS_NAMES[i] for i in USED_TRAIN_IDS}
    for required in ('road', 'sidewalk', 'building', 'pole', 'vegetation', 'terrain', 'sky', 'person', 'car'):
        assert required in names
    assert names & {'wall', 'fence'} and names & {'traffic sign', 'traffic light'}
    assert names & {'truck', 'bus', 'bicycle', 'motorcycle', 'train'}
    assert isinstance(SYNTHETIC_VERSION, int)


def test_layout_matches_cityscapes_dataset(small_dataset):
    root = small_dataset
    assert sorted(p.name for p in root.iterdir()) == ['gtFine', 'leftImg8bit', 'manifest.json']
    for split, count in (('train', 4), ('val', 2)):
        img_dir, seg_dir = root / 'leftImg8bit' / split, root / 'gtFine' / split
        images = sorted(img_dir.rglob('*' + IMG_SUFFIX))
        assert len(images) == count
        assert sorted(p.relative_to(img_dir) for p in img_dir.rglob('*') if p.is_file()) == \
            [p.relative_to(img_dir) for p in images]
        labels = sorted(seg_dir.rglob('*' + SEG_SUFFIX))
        assert len(labels) == count
        for img in images:
            rel = img.relative_to(img_dir)
            assert len(rel.parts) == 2  # <city>/<file>
            stem = rel.name[:-len(IMG_SUFFIX)]
            m = STEM_RE.match(stem)
            assert m, stem
            assert m.group(1) == rel.parts[0]
            assert (seg_dir / rel.parent / (stem + SEG_SUFFIX)).is_file()
        cities = {p.parent.name for p in images}
        assert cities <= set(synthetic.classes._CITIES[split])
    assert not {p.parent.name for p in (root / 'leftImg8bit' / 'train').rglob('*.png')} & \
        {p.parent.name for p in (root / 'leftImg8bit' / 'val').rglob('*.png')}


def test_images_and_labels(small_dataset):
    allowed = set(USED_TRAIN_IDS) | {255}
    w, h = SIZE
    for img_path in small_dataset.rglob('*' + IMG_SUFFIX):
        rel = img_path.relative_to(small_dataset / 'leftImg8bit')
        lab_path = small_dataset / 'gtFine' / rel.parent / rel.name.replace(IMG_SUFFIX, SEG_SUFFIX)
        with Image.open(img_path) as im, Image.open(lab_path) as lb:
            assert im.format == 'PNG' and im.mode == 'RGB' and im.size == (w, h)
            assert lb.format == 'PNG' and lb.mode == 'L' and lb.size == (w, h)
            img, lab = np.asarray(im), np.asarray(lb)
        assert img.dtype == np.uint8 and img.shape == (h, w, 3)
        assert set(np.unique(lab).tolist()) <= allowed
        assert len(set(np.unique(lab).tolist()) - {255}) >= 5
        assert img.std() > 10  # not a blank image


def test_manifest(small_dataset):
    manifest = json.loads((small_dataset / 'manifest.json').read_text())
    assert manifest['version'] == SYNTHETIC_VERSION
    assert manifest['seed'] == 0 and manifest['num_train'] == 4 and manifest['num_val'] == 2
    assert manifest['size'] == list(SIZE)
    assert manifest['class_names'] == list(CLASS_NAMES)
    assert manifest['used_train_ids'] == list(USED_TRAIN_IDS)
    import hashlib
    listed = set()
    for split, count in (('train', 4), ('val', 2)):
        entries = manifest['splits'][split]
        assert len(entries) == count
        for e in entries:
            for key in ('image', 'label'):
                data = (small_dataset / e[key]).read_bytes()
                assert hashlib.sha256(data).hexdigest() == e[key + '_sha256']
                assert Path(e[key]).name.startswith(e['stem'])
                listed.add(e[key])
    on_disk = {p.relative_to(small_dataset).as_posix() for p in small_dataset.rglob('*.png')}
    assert listed == on_disk


def test_deterministic_and_seed_dependent(tmp_path, small_dataset):
    again = write_synthetic_cityscapes(tmp_path / 'again', seed=0, num_train=4, num_val=2, size=SIZE,
                                       progress=False)
    assert _files(again) == _files(small_dataset)
    # image i does not depend on how many images are generated
    fewer = write_synthetic_cityscapes(tmp_path / 'fewer', seed=0, num_train=2, num_val=1, size=SIZE,
                                       progress=False)
    fewer_files = _files(fewer)
    all_files = _files(small_dataset)
    pngs = [k for k in fewer_files if k.endswith('.png')]
    assert len(pngs) == 6
    assert all(fewer_files[k] == all_files[k] for k in pngs)
    other = write_synthetic_cityscapes(tmp_path / 'other', seed=1, num_train=4, num_val=2, size=SIZE,
                                       progress=False)
    other_files = _files(other)
    assert set(other_files) == set(all_files)
    assert all(other_files[k] != all_files[k] for k in all_files if k.endswith(IMG_SUFFIX))
    # train and val images are different scenes
    train = [v for k, v in all_files.items() if k.startswith('leftImg8bit/train/')]
    val = [v for k, v in all_files.items() if k.startswith('leftImg8bit/val/')]
    assert not set(train) & set(val)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['again', 'fewer', 'other']  # no temp dirs


def test_parallel_generation_is_identical(tmp_path, monkeypatch):
    monkeypatch.setenv('SEGBENCH_SYNTH_WORKERS', '1')
    serial = write_synthetic_cityscapes(tmp_path / 'serial', seed=3, num_train=3, num_val=2, size=SIZE,
                                        progress=False)
    monkeypatch.setenv('SEGBENCH_SYNTH_WORKERS', '2')
    parallel = write_synthetic_cityscapes(tmp_path / 'parallel', seed=3, num_train=3, num_val=2, size=SIZE,
                                          progress=False)
    assert _files(serial) == _files(parallel)


def test_generate_scene_contract_and_class_coverage():
    seen = set()
    allowed = set(USED_TRAIN_IDS) | {255}
    hoods = 0
    means = []
    for i in range(36):
        image, label = generate_scene(np.random.default_rng([7, i]), 128, 256)
        assert image.dtype == np.uint8 and image.shape == (128, 256, 3)
        assert label.dtype == np.uint8 and label.shape == (128, 256)
        ids = set(np.unique(label).tolist())
        assert ids <= allowed
        assert len(ids - {255}) >= 5, f'scene {i} has only {sorted(ids)}'
        seen |= ids
        ignored = label == 255
        if ignored.any():  # the ego-vehicle hood: a band at the bottom
            hoods += 1
            rows = np.nonzero(ignored.any(axis=1))[0]
            assert rows.min() > 128 // 2 and rows.max() == 127
            assert ignored[-1, 96:160].all()  # (the corners may curve away)
        means.append(image.reshape(-1, 3).mean(0))
    assert set(USED_TRAIN_IDS) <= seen, f'never produced: {sorted(set(USED_TRAIN_IDS) - seen)}'
    assert 3 <= hoods <= 24
    assert np.std(np.array(means), axis=0).min() > 5  # photometric variation between scenes
    a = generate_scene(np.random.default_rng(123), 64, 96)
    b = generate_scene(np.random.default_rng(123), 64, 96)
    assert a[0].shape == (64, 96, 3) and a[1].shape == (64, 96)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_ensure_reuses_existing_dataset(tmp_path):
    root = tmp_path / 'cache' / 'ds'
    out = ensure_synthetic_cityscapes(root, seed=0, num_train=2, num_val=1, size=SIZE, progress=False)
    assert out == root and (root / 'manifest.json').is_file()
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob('*') if p.is_file()}
    for p in stamps:  # make any rewrite visible in the mtimes
        os.utime(p, ns=(1_000_000_000, 1_000_000_000))
    assert ensure_synthetic_cityscapes(root, seed=0, num_train=2, num_val=1, size=SIZE, progress=False) == root
    assert all(p.stat().st_mtime_ns == 1_000_000_000 for p in stamps)
    assert sorted(p.name for p in root.parent.iterdir()) == ['ds']  # no temp dirs left


def test_ensure_fills_an_empty_directory(tmp_path):
    root = tmp_path / 'empty'
    root.mkdir()
    assert ensure_synthetic_cityscapes(root, seed=0, num_train=1, num_val=1, size=SIZE, progress=False) == root
    assert (root / 'manifest.json').is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['empty']


def test_ensure_raises_on_mismatch(tmp_path):
    root = tmp_path / 'ds'
    ensure_synthetic_cityscapes(root, seed=0, num_train=2, num_val=1, size=SIZE, progress=False)
    with pytest.raises(ValueError, match='seed: found 0, requested 1') as err:
        ensure_synthetic_cityscapes(root, seed=1, num_train=2, num_val=1, size=SIZE, progress=False)
    assert 'delete' in str(err.value)
    with pytest.raises(ValueError, match='num_train'):
        ensure_synthetic_cityscapes(root, seed=0, num_train=3, num_val=1, size=SIZE, progress=False)
    with pytest.raises(ValueError, match='size'):
        ensure_synthetic_cityscapes(root, seed=0, num_train=2, num_val=1, size=(96, 64), progress=False)
    manifest = json.loads((root / 'manifest.json').read_text())
    manifest['version'] = SYNTHETIC_VERSION + 100
    (root / 'manifest.json').write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match='version'):
        ensure_synthetic_cityscapes(root, seed=0, num_train=2, num_val=1, size=SIZE, progress=False)
    other = tmp_path / 'not_a_dataset'
    other.mkdir()
    (other / 'something.txt').write_text('hello')
    with pytest.raises(ValueError, match='manifest'):
        ensure_synthetic_cityscapes(other, seed=0, num_train=2, num_val=1, size=SIZE, progress=False)
    assert (other / 'something.txt').read_text() == 'hello'  # untouched


def test_ensure_default_root_uses_cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv('SEGBENCH_CACHE', str(tmp_path / 'cache'))
    out = ensure_synthetic_cityscapes(seed=5, num_train=1, num_val=1, size=SIZE, progress=False)
    assert out == tmp_path / 'cache' / f'synthetic_cityscapes_v{SYNTHETIC_VERSION}_s5_128x64_1-1'
    assert (out / 'manifest.json').is_file()


def test_write_refuses_existing_root_and_cleans_up_on_failure(tmp_path, monkeypatch):
    root = tmp_path / 'ds'
    root.mkdir()
    (root / 'keep.txt').write_text('x')
    with pytest.raises(FileExistsError):
        write_synthetic_cityscapes(root, num_train=1, num_val=1, size=SIZE, progress=False)
    assert [p.name for p in root.iterdir()] == ['keep.txt']

    calls = []
    real = synthetic.writer.generate_scene

    def flaky(rng, height, width):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError('boom')
        return real(rng, height, width)

    monkeypatch.setattr(synthetic.writer, 'generate_scene', flaky)
    target = tmp_path / 'crash'
    with pytest.raises(RuntimeError, match='boom'):
        write_synthetic_cityscapes(target, num_train=3, num_val=1, size=SIZE, progress=False)
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['ds']  # no half dataset, no temp dir


def test_progress_logs_without_tqdm(tmp_path, monkeypatch, caplog):
    import builtins
    real_import = builtins.__import__

    def no_tqdm(name, *args, **kwargs):
        if name == 'tqdm' or name.startswith('tqdm.'):
            raise ImportError('no tqdm')
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, '__import__', no_tqdm)
    with caplog.at_level('INFO', logger='benchmark.datasets.synthetic'):
        write_synthetic_cityscapes(tmp_path / 'ds', num_train=1, num_val=1, size=SIZE, progress=True)
    assert any('2/2' in r.getMessage() for r in caplog.records)


def test_invalid_arguments(tmp_path):
    with pytest.raises(ValueError):
        generate_scene(np.random.default_rng(0), 8, 8)
    with pytest.raises(ValueError):
        write_synthetic_cityscapes(tmp_path / 'x', size=(16, 16), progress=False)
    with pytest.raises(ValueError):
        write_synthetic_cityscapes(tmp_path / 'y', num_train=-1, progress=False)
    assert not any(tmp_path.iterdir())


#: sha256 of ``image.tobytes() + label.tobytes()`` of generate_scene(default_rng(seed), h, w), as the
#: renderer drew them when it was one module (before the split into a package). A change here means
#: the dataset changed: the committed demo records name its images, so bump SYNTHETIC_VERSION and
#: recompute them (or find what changed the drawing: e.g. a new numpy).
GOLDEN_SCENES = [
    ((0, 1, 0), (32, 64), 'e48a8cb2dd851c8615d926220be3f768de26bd99045f12bc1faa4bac11243abf'),
    ((0, 0, 5), (128, 256), 'b7c8dba86562fb045698fbe870fcfaeed6cdc996bc2c87cc4b0951f764450a32'),
    ((7, 1, 2), (45, 97), 'bfbd872f1516aa7e289d7d4bb01bc9ebddc5754e63eb63b66a61db159f68fcee'),
]


@pytest.mark.parametrize('seed,shape,digest', GOLDEN_SCENES)
def test_scenes_are_the_ones_the_demo_records_were_computed_on(seed, shape, digest):
    import hashlib
    image, label = generate_scene(np.random.default_rng(list(seed)), *shape)
    assert hashlib.sha256(image.tobytes() + label.tobytes()).hexdigest() == digest


def test_package_modules_keep_to_their_layer():
    """The renderer (scene and its parts) does no file IO; only the writer and the cache touch files."""
    import ast
    package = Path(synthetic.__file__).parent
    io_modules = {'os', 'pathlib', 'shutil', 'tempfile', 'io', 'json', 'multiprocessing', 'concurrent'}
    for name in ('classes', 'primitives', 'palette', 'layout', 'scenery', 'objects', 'photometric', 'scene'):
        tree = ast.parse((package / f'{name}.py').read_text())
        imported = {(a.name if isinstance(n, ast.Import) else (n.module or '')).split('.')[0]
                    for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                    for a in n.names}
        assert not imported & io_modules, (name, imported & io_modules)
