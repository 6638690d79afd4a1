"""The real-data path of the evaluation datasets (benchmark.datasets.builder).

The tests write small Cityscapes and Pascal VOC folders in the real on-disk formats (Cityscapes
at its real 2048x1024 resolution once, the rest tiny) and check what ``build_eval_dataset`` and
``EvalDataset`` make of them, including every bad input the builder refuses.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.datasets.builder import _pipeline, build_eval_dataset
from benchmark.errors import DatasetError
from benchmark.provenance import REPO_ROOT

CITY_IMG = 'leftImg8bit/{split}/{city}/{city}_000000_000019_leftImg8bit.png'
CITY_LAB = 'gtFine/{split}/{city}/{city}_000000_000019_gtFine_labelTrainIds.png'
# Ids far apart, so any interpolation between neighbours yields a value not in the set.
CITY_IDS = np.array([0, 5, 18, 255], dtype=np.uint8)
VOC_IDS = np.array([0, 7, 20, 255], dtype=np.uint8)


def _save_png(array: np.ndarray, path: Path) -> Path:
    """uint8 (H, W) -> mode L, (H, W, 3) -> RGB, uint16 -> a 16-bit PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, compress_level=1)
    return path


def _city_sample(root: Path, city: str, size: Tuple[int, int], seed: int, split: str = 'val',
                 label: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """One Cityscapes image (noise, RGB) and train-id label map of ``size`` = (width, height)."""
    w, h = size
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    if label is None:
        label = CITY_IDS[rng.integers(0, len(CITY_IDS), (h, w))]
    _save_png(image, root / CITY_IMG.format(split=split, city=city))
    _save_png(label, root / CITY_LAB.format(split=split, city=city))
    return image, label


def _cityscapes(root: Path, size=(64, 32), cities=('aachen', 'bonn'), split='val') -> Dict[str, tuple]:
    return {c: _city_sample(root, c, size, seed=i, split=split) for i, c in enumerate(cities)}


VOC_PALETTE = [v for i in range(256) for v in ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)]


def _voc_sample(root: Path, image_id: str, size: Tuple[int, int], seed: int) -> Tuple[np.ndarray, np.ndarray]:
    w, h = size
    rng = np.random.default_rng(seed)
    # smooth (JPEG keeps it close) and a different level per channel (shows the channel order)
    ramp = np.add.outer(np.arange(h), np.arange(w)) * (40 / (h + w))
    image = np.stack([200 - ramp, 100 + ramp, 20 + ramp], axis=-1).astype(np.uint8)
    (root / 'JPEGImages').mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(root / 'JPEGImages' / f'{image_id}.jpg', quality=90)
    label = VOC_IDS[rng.integers(0, len(VOC_IDS), (h, w))]
    pal = Image.frombytes('P', (w, h), label.tobytes())
    pal.putpalette(VOC_PALETTE)
    pal_path = root / 'SegmentationClass' / f'{image_id}.png'
    pal_path.parent.mkdir(parents=True, exist_ok=True)
    pal.save(pal_path)
    return image, label


def _voc(root: Path, ids=('2007_000032', '2007_000033'), sizes=((40, 30), (30, 40)),
         listed: Optional[Sequence[str]] = None) -> Dict[str, tuple]:
    samples = {i: _voc_sample(root, i, s, seed=k) for k, (i, s) in enumerate(zip(ids, sizes))}
    lists = root / 'ImageSets' / 'Segmentation'
    lists.mkdir(parents=True, exist_ok=True)
    (lists / 'val.txt').write_text(''.join(f'{i}\n' for i in (ids if listed is None else listed)))
    return samples


@pytest.fixture(scope='module')
def cityscapes_full(tmp_path_factory):
    """Two Cityscapes samples at the real resolution, 2048x1024."""
    root = tmp_path_factory.mktemp('cityscapes_full')
    return root, _cityscapes(root, size=(2048, 1024))


def _blocks(a: np.ndarray) -> np.ndarray:
    """(H, W, ...) -> (H/2, W/2, 4, ...): the 2x2 source block of every half-size pixel."""
    h, w = a.shape[:2]
    b = a.reshape(h // 2, 2, w // 2, 2, *a.shape[2:]).swapaxes(1, 2)
    return b.reshape(h // 2, w // 2, 4, *a.shape[2:])


# --------------------------------------------------------------------------------------------
# Bug 1: labels were loaded after Resize, so they stayed at 2048x1024 with 1024x512 images.
# --------------------------------------------------------------------------------------------

def test_pipeline_loads_the_label_before_resizing():
    assert [t['type'] for t in _pipeline((1024, 512))] == ['LoadImageFromFile', 'LoadAnnotations', 'Resize']
    assert [t['type'] for t in _pipeline(None)] == ['LoadImageFromFile', 'LoadAnnotations']


@pytest.mark.parametrize('resize', [(1024, 512), 'default'])
def test_cityscapes_at_full_resolution_resized(cityscapes_full, resize):
    root, samples = cityscapes_full
    spec = dict(type='cityscapes', data_root=str(root))
    if resize != 'default':
        spec['resize'] = resize
    ds = build_eval_dataset(spec)
    assert len(ds) == 2 and ds.num_classes == 19
    assert ds.image_ids() == [f'{c}/{c}_000000_000019_leftImg8bit.png' for c in ('aachen', 'bonn')]
    for i, city in enumerate(('aachen', 'bonn')):
        image, label, _ = ds[i]
        orig_img, orig_lab = samples[city]
        assert image.shape == (3, 512, 1024) and image.dtype == torch.float32
        assert 0 <= image.min() and image.max() <= 255
        assert label.shape == (512, 1024) and label.dtype == torch.int64
        lab = label.numpy()
        # nearest neighbour: no interpolated ids, every pixel is one of its 2x2 source pixels
        assert set(np.unique(lab).tolist()) <= set(np.unique(orig_lab).tolist())
        assert (_blocks(orig_lab) == lab[..., None]).any(axis=-1).all()
        # the image is resized bilinearly (at exactly half size: the mean of each 2x2 block), in RGB
        mean = _blocks(orig_img.astype(np.float64)).mean(axis=2)
        assert np.abs(image.numpy().transpose(1, 2, 0) - mean).max() <= 1.0
        assert np.abs(image.numpy().transpose(1, 2, 0) - orig_img[::2, ::2]).mean() > 20  # not nearest


def test_cityscapes_without_resize_keeps_the_files(tmp_path):
    samples = _cityscapes(tmp_path, size=(64, 32))
    ds = build_eval_dataset(dict(type='cityscapes', data_root=str(tmp_path), resize=None))
    image, label, image_id = ds[1]
    assert image_id == 'bonn/bonn_000000_000019_leftImg8bit.png'
    assert np.array_equal(image.numpy().transpose(1, 2, 0), samples['bonn'][0])
    assert np.array_equal(label.numpy(), samples['bonn'][1])


def test_voc_with_and_without_resize(tmp_path):
    samples = _voc(tmp_path)
    ds = build_eval_dataset(dict(type='voc', data_root=str(tmp_path)))
    assert len(ds) == 2 and ds.num_classes == 21 and ds.class_names[0] == 'background'
    assert ds.image_ids() == ['2007_000032.jpg', '2007_000033.jpg']
    for i, (w, h) in enumerate(((40, 30), (30, 40))):
        image, label, _ = ds[i]
        assert image.shape == (3, h, w) and label.shape == (h, w) and label.dtype == torch.int64
        orig_img, orig_lab = samples[ds.image_ids()[i][:-4]]
        assert np.array_equal(label.numpy(), orig_lab)  # palette indices, not colours
        assert np.abs(image.numpy().transpose(1, 2, 0) - orig_img).max() < 12  # JPEG, RGB order
    resized = build_eval_dataset(dict(type='voc', data_root=str(tmp_path), resize=(80, 80)))
    for i, (w, h) in enumerate(((80, 60), (60, 80))):  # long side <= 80, short side <= 80
        image, label, _ = resized[i]
        assert image.shape == (3, h, w) and label.shape == (h, w)
        orig_lab = samples[resized.image_ids()[i][:-4]][1]
        assert set(np.unique(label.numpy()).tolist()) <= set(np.unique(orig_lab).tolist())
        # nearest at exactly twice the size: every source pixel becomes a 2x2 block
        assert np.array_equal(label.numpy()[::2, ::2], orig_lab)
    assert list(batch[0].shape for batch in resized.batches(4)) == [(1, 3, 60, 80), (1, 3, 80, 60)]


def test_synthetic_dataset_still_builds(synthetic_root):
    spec = dict(type='synthetic_cityscapes', root=str(synthetic_root), seed=0, num_train=2,
                num_val=4, size=(64, 32))
    ds = build_eval_dataset(spec)
    assert len(ds) == 4 and ds.root == str(synthetic_root)
    assert ds.image_ids() == sorted(ds.image_ids())
    assert build_eval_dataset(dict(spec, num_images=2)).image_ids() == ds.image_ids()[:2]
    assert len(ds.image_ids_sha256()) == 64
    image, label, _ = ds[0]
    assert image.shape == (3, 32, 64) and label.shape == (32, 64)


# --------------------------------------------------------------------------------------------
# Bug 2: a relative data_root depended on the directory the command was started from.
# --------------------------------------------------------------------------------------------

def test_relative_paths_resolve_against_the_repository_root(tmp_path, monkeypatch):
    _cityscapes(tmp_path / 'cs')
    ids_file = tmp_path / 'lists' / 'one.txt'
    ids_file.parent.mkdir()
    ids_file.write_text('bonn/bonn_000000_000019\n')
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    rel_root = os.path.relpath(tmp_path / 'cs', REPO_ROOT)
    assert not Path(rel_root).is_absolute() and not Path(rel_root).exists()  # not from this cwd
    ds = build_eval_dataset(dict(type='cityscapes', data_root=rel_root, resize=None))
    assert len(ds) == 2 and ds.root == os.path.normpath(REPO_ROOT / rel_root)
    assert Path(ds.root).samefile(tmp_path / 'cs')
    listed = build_eval_dataset(dict(type='cityscapes', data_root=rel_root, resize=None,
                                     image_list=os.path.relpath(ids_file, REPO_ROOT)))
    assert listed.image_ids() == ['bonn/bonn_000000_000019_leftImg8bit.png']
    with pytest.raises(DatasetError) as e:
        build_eval_dataset(dict(type='cityscapes', data_root='data/no_such_cityscapes'))
    assert (f'data/no_such_cityscapes (relative paths are resolved against the repository root '
            f'{REPO_ROOT})') in str(e.value)
    assert 'does not exist' in str(e.value) and 'leftImg8bit/<split>' in str(e.value)


def test_image_list_relative_to_data_root(tmp_path, monkeypatch):
    _voc(tmp_path, ids=('a', 'b', 'c'), sizes=((8, 6),) * 3)
    (tmp_path / 'ImageSets' / 'Segmentation' / 'mine.txt').write_text('c\na\n')
    monkeypatch.chdir(tmp_path / 'JPEGImages')
    ds = build_eval_dataset(dict(type='voc', data_root=str(tmp_path),
                                 image_list='ImageSets/Segmentation/mine.txt'))
    assert ds.image_ids() == ['a.jpg', 'c.jpg']
    with pytest.raises(DatasetError, match='neither .* nor .* is a file') as e:
        build_eval_dataset(dict(type='voc', data_root=str(tmp_path), image_list='nope.txt'))
    assert str(tmp_path / 'nope.txt') in str(e.value) and str(REPO_ROOT / 'nope.txt') in str(e.value)
    with pytest.raises(DatasetError, match='is a folder'):
        build_eval_dataset(dict(type='voc', data_root=str(tmp_path), image_list='ImageSets'))


# --------------------------------------------------------------------------------------------
# Bug 3: labels were not checked against their images.
# --------------------------------------------------------------------------------------------

def test_label_size_differs_from_image(tmp_path):
    _cityscapes(tmp_path, size=(64, 32))
    lab = tmp_path / CITY_LAB.format(split='val', city='bonn')
    _save_png(np.zeros((16, 32), np.uint8), lab)
    with pytest.raises(DatasetError) as e:
        build_eval_dataset(dict(type='cityscapes', data_root=str(tmp_path)))
    msg = str(e.value)
    assert str(lab) in msg and '32x16' in msg and '64x32' in msg and "image's size" in msg


def test_cityscapes_label_ids_instead_of_train_ids(tmp_path):
    _cityscapes(tmp_path, size=(64, 32))
    label = np.full((32, 64), 7, np.uint8)
    label[1, 1] = 33          # a single pixel that nearest-neighbour halving drops
    lab = _save_png(label, tmp_path / CITY_LAB.format(split='val', city='aachen'))
    ds = build_eval_dataset(dict(type='cityscapes', data_root=str(tmp_path), resize=(32, 16)))
    assert ds[1][1].shape == (16, 32)  # the other sample is fine
    with pytest.raises(DatasetError) as e:
        ds[0]
    msg = str(e.value)
    assert str(lab) in msg and 'ids 33' in msg and '0-18' in msg
    assert '*_gtFine_labelIds.png' in msg and 'labelTrainIds' in msg


def test_voc_ids_above_20(tmp_path):
    _voc(tmp_path)
    lab = tmp_path / 'SegmentationClass' / '2007_000033.png'
    label = np.zeros((40, 30), np.uint8)
    label[3, 4], label[5, 6] = 21, 40
    _save_png(label, lab)
    ds = build_eval_dataset(dict(type='voc', data_root=str(tmp_path)))
    ds[0]
    with pytest.raises(DatasetError) as e:
        ds[1]
    assert str(lab) in str(e.value) and 'ids 21, 40' in str(e.value) and 'Pascal VOC classes 0-20' in str(e.value)


def test_mmseg_keeps_16_bit_labels_then_wraps_them(tmp_path):
    """What the 16-bit check is for: mmcv decodes uint16, mmseg casts to uint8 (wraps ids)."""
    import mmcv
    from mmseg.datasets.transforms import LoadAnnotations
    path = _save_png(np.array([[26001, 18], [255, 0]], np.uint16), tmp_path / 'l.png')
    decoded = mmcv.imfrombytes(path.read_bytes(), flag='unchanged', backend='pillow')
    assert decoded.dtype == np.uint16 and decoded[0, 0] == 26001
    out = LoadAnnotations()(dict(seg_map_path=str(path), reduce_zero_label=False, seg_fields=[]))
    assert out['gt_seg_map'].dtype == np.uint8 and out['gt_seg_map'][0, 0] == 26001 % 256


def test_16_bit_labels(tmp_path):
    _cityscapes(tmp_path, size=(64, 32))
    wide = np.full((32, 64), 26001, np.uint16)
    lab = _save_png(wide, tmp_path / CITY_LAB.format(split='val', city='aachen'))
    assert Image.open(lab).mode.startswith('I')
    small = np.full((32, 64), 255, np.uint16)
    small[:, :10] = 18
    _save_png(small, tmp_path / CITY_LAB.format(split='val', city='bonn'))
    ds = build_eval_dataset(dict(type='cityscapes', data_root=str(tmp_path), resize=None))
    with pytest.raises(DatasetError) as e:
        ds[0]
    assert str(lab) in str(e.value) and '16-bit' in str(e.value) and 'must be 8-bit' in str(e.value)
    assert 'to 26001' in str(e.value)
    assert np.array_equal(ds[1][1].numpy(), small)  # 16-bit with 8-bit ids: read losslessly


@pytest.mark.parametrize('kind', ['cityscapes', 'voc'])
def test_rgb_label_maps_are_refused(tmp_path, kind):
    if kind == 'cityscapes':
        _cityscapes(tmp_path, size=(64, 32))
        lab = tmp_path / CITY_LAB.format(split='val', city='bonn')
        expect = '*_gtFine_color.png'
    else:
        _voc(tmp_path)
        lab = tmp_path / 'SegmentationClass' / '2007_000032.png'
        expect = 'instead of palette indices'
    rgb = np.asarray(Image.open(lab).convert('RGB'))
    _save_png(rgb, lab)
    with pytest.raises(DatasetError) as e:
        build_eval_dataset(dict(type=kind, data_root=str(tmp_path)))
    msg = str(e.value)
    assert str(lab) in msg and 'colour-coded RGB' in msg and expect in msg and 'single-channel' in msg


def _png_bytes(array: np.ndarray) -> bytes:
    import io
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format='PNG', compress_level=1)
    return buf.getvalue()


@pytest.mark.parametrize('which', ['image', 'label'])
@pytest.mark.parametrize('damage', ['empty', 'garbage', 'truncated'])
def test_unreadable_files_fail_at_build_time(tmp_path, which, damage):
    samples = _cityscapes(tmp_path, size=(64, 32))
    path = tmp_path / (CITY_IMG if which == 'image' else CITY_LAB).format(split='val', city='bonn')
    data = path.read_bytes()
    path.write_bytes({'empty': b'', 'garbage': b'this is not a png' * 10,
                      'truncated': data[:len(data) // 2]}[damage])
    with pytest.raises(DatasetError) as e:
        build_eval_dataset(dict(type='cityscapes', data_root=str(tmp_path)))
    msg = str(e.value)
    assert str(path) in msg
    assert {'empty': ': the file is empty', 'garbage': 'PIL does not recognise it as an image',
            'truncated': 'is truncated'}[damage] in msg
    assert samples  # the other sample was fine


def test_truncated_jpeg_fails_at_build_time(tmp_path):
    """A truncated JPEG is found when the dataset is built (missing end marker), not only when loaded."""
    _voc(tmp_path, sizes=((40, 30), (320, 240)))
    path = tmp_path / 'JPEGImages' / '2007_000033.jpg'
    noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, quality=90)  # mostly entropy-coded data, little header
    data = path.read_bytes()
    path.write_bytes(data[:len(data) * 2 // 3])
    with pytest.raises(DatasetError) as e:
        build_eval_dataset(dict(type='voc', data_root=str(tmp_path)))
    assert f'image {path} is truncated: the JPEG file ends before its end marker' in str(e.value)


@pytest.mark.parametrize('which', ['image', 'label'])
def test_corrupt_pixel_data_fails_when_loaded(tmp_path, which):
    """A file with intact header and end marker but damaged pixel data: found when decoded."""
    _cityscapes(tmp_path, size=(64, 32))
    path = tmp_path / (CITY_IMG if which == 'image' else CITY_LAB).format(split='val', city='bonn')
    data = bytearray(path.read_bytes())
    start = data.index(b'IDAT') + 4  # from the zlib header on
    data[start:start + 200] = bytes(range(200))
    path.write_bytes(bytes(data))
    ds = build_eval_dataset(dict(type='cityscapes', data_root=str(tmp_path)))
    ds[0]
    with pytest.raises(DatasetError) as e:
        ds[1]
    assert f'cannot decode {"image" if which == "image" else "label map"} {path}' in str(e.value)


def test_missing_label_file(tmp_path):
    _cityscapes(tmp_path, size=(64, 32))
    lab = tmp_path / CITY_LAB.format(split='val', city='aachen')
    lab.unlink()
    with pytest.raises(DatasetError, match='does not exist; expected one for every image') as e:
        build_eval_dataset(dict(type='cityscapes', data_root=str(tmp_path)))
    assert str(lab) in str(e.value)


# --------------------------------------------------------------------------------------------
# Bug 4: num_images larger than the dataset silently evaluated fewer images.
# --------------------------------------------------------------------------------------------

def test_num_images(tmp_path):
    _cityscapes(tmp_path, size=(64, 32), cities=('aachen', 'bonn', 'koeln'))
    spec = dict(type='cityscapes', data_root=str(tmp_path))
    assert build_eval_dataset(dict(spec, num_images=2)).image_ids() == \
        build_eval_dataset(spec).image_ids()[:2]
    assert len(build_eval_dataset(dict(spec, num_images=3))) == 3
    with pytest.raises(DatasetError) as e:
        build_eval_dataset(dict(spec, num_images=600))
    assert 'num_images=600' in str(e.value) and 'only 3 images' in str(e.value)
    assert 'omit num_images' in str(e.value)
    for bad in (True, 2.0, 0, -1, '2'):
        with pytest.raises(DatasetError, match='num_images must be a positive integer'):
            build_eval_dataset(dict(spec, num_images=bad))


# --------------------------------------------------------------------------------------------
# Bug 5: image list problems.
# --------------------------------------------------------------------------------------------

def test_image_list_whitespace_and_line_endings_are_tolerated(tmp_path):
    _voc(tmp_path, ids=('a', 'b', 'c'), sizes=((8, 6),) * 3)
    lists = tmp_path / 'ImageSets' / 'Segmentation'
    (lists / 'clean.txt').write_text('a\nc\n')
    (lists / 'messy.txt').write_bytes(b'\r\n  a  \r\n\r\n\tc \r\n\n')
    (lists / 'nonl.txt').write_bytes(b'c\na')
    clean = build_eval_dataset(dict(type='voc', data_root=str(tmp_path), image_list=str(lists / 'clean.txt')))
    for name in ('messy.txt', 'nonl.txt'):
        ds = build_eval_dataset(dict(type='voc', data_root=str(tmp_path), image_list=str(lists / name)))
        assert ds.image_ids() == clean.image_ids() == ['a.jpg', 'c.jpg']
        assert ds.image_ids_sha256() == clean.image_ids_sha256()
        assert [ds[i][2] for i in range(len(ds))] == ['a.jpg', 'c.jpg']


@pytest.mark.parametrize('content, match', [
    (b'', 'names no image ids'),
    (b'\n  \r\n\n', 'names no image ids'),
    (b'a\nb\na \n', 'names a more than once'),
    (b'\xef\xbb\xbfa\nb\n', 'byte-order mark'),
    (b'a\n\xff\xfe\n', 'not a UTF-8 text file'),
])
def test_bad_image_lists(tmp_path, content, match):
    _voc(tmp_path, ids=('a', 'b'), sizes=((8, 6),) * 2)
    path = tmp_path / 'list.txt'
    path.write_bytes(content)
    with pytest.raises(DatasetError, match=match) as e:
        build_eval_dataset(dict(type='voc', data_root=str(tmp_path), image_list=str(path)))
    assert str(path) in str(e.value)


def test_image_list_with_missing_ids(tmp_path):
    _voc(tmp_path, ids=('a', 'b'), sizes=((8, 6),) * 2)
    path = tmp_path / 'list.txt'
    path.write_text('a\n' + ''.join(f'x{i}\n' for i in range(8)))
    with pytest.raises(DatasetError) as e:
        build_eval_dataset(dict(type='voc', data_root=str(tmp_path), image_list=str(path)))
    msg = str(e.value)
    assert 'names 8 image id(s) with no image in' in msg and str(tmp_path / 'JPEGImages') in msg
    assert 'x0, x1, x2, x3, x4 and 3 more' in msg and 'x5' not in msg
    path.write_text('a.jpg\nb\n')
    with pytest.raises(DatasetError, match="without the '.jpg' suffix"):
        build_eval_dataset(dict(type='voc', data_root=str(tmp_path), image_list=str(path)))
    (tmp_path / 'ImageSets' / 'Segmentation' / 'val.txt').write_text('a\nb\nc\n')
    with pytest.raises(DatasetError, match=r'1 image id\(s\) with no image .*: c;'):
        build_eval_dataset(dict(type='voc', data_root=str(tmp_path)))


def test_cityscapes_image_list(tmp_path):
    _cityscapes(tmp_path, size=(64, 32), cities=('aachen', 'bonn', 'koeln'))
    path = tmp_path / 'few.txt'
    path.write_text('koeln/koeln_000000_000019\naachen/aachen_000000_000019\n')
    ds = build_eval_dataset(dict(type='cityscapes', data_root=str(tmp_path), image_list=str(path)))
    assert ds.image_ids() == ['aachen/aachen_000000_000019_leftImg8bit.png',
                              'koeln/koeln_000000_000019_leftImg8bit.png']
    path.write_text('koeln/koeln_000000_000020\n')
    with pytest.raises(DatasetError, match='koeln/koeln_000000_000020; expected .*_leftImg8bit.png'):
        build_eval_dataset(dict(type='cityscapes', data_root=str(tmp_path), image_list=str(path)))


# --------------------------------------------------------------------------------------------
# 6: unknown split, data_root a file, bad resize, unknown options.
# --------------------------------------------------------------------------------------------

def test_unknown_split_lists_the_existing_ones(tmp_path):
    _cityscapes(tmp_path, size=(64, 32))
    _cityscapes(tmp_path, size=(64, 32), cities=('zurich',), split='train')
    with pytest.raises(DatasetError) as e:
        build_eval_dataset(dict(type='cityscapes', data_root=str(tmp_path), split='vall'))
    assert "split 'vall' not found" in str(e.value) and 'the splits there are: train, val' in str(e.value)
    voc = tmp_path / 'voc'
    _voc(voc)
    (voc / 'ImageSets' / 'Segmentation' / 'train.txt').write_text('2007_000032\n')
    with pytest.raises(DatasetError) as e:
        build_eval_dataset(dict(type='voc', data_root=str(voc), split='vall'))
    assert "split 'vall' not found" in str(e.value) and 'the splits there are: train, val' in str(e.value)


@pytest.mark.parametrize('kind', ['cityscapes', 'voc'])
def test_data_root_is_a_file(tmp_path, kind):
    path = tmp_path / 'data.zip'
    path.write_bytes(b'PK')
    with pytest.raises(DatasetError, match='is a file, not a folder') as e:
        build_eval_dataset(dict(type=kind, data_root=str(path)))
    assert str(path) in str(e.value)


@pytest.mark.parametrize('resize', [(512,), (0, 512), '1024x512', (1024.0, 512), (True, 512), 1024,
                                    (1024, 512, 3)])
def test_bad_resize(tmp_path, resize):
    _cityscapes(tmp_path, size=(64, 32))
    with pytest.raises(DatasetError, match='resize must be two positive integers') as e:
        build_eval_dataset(dict(type='cityscapes', data_root=str(tmp_path), resize=resize))
    assert repr(resize) in str(e.value)


def test_bad_paths_and_options(tmp_path):
    _cityscapes(tmp_path, size=(64, 32))
    with pytest.raises(DatasetError, match='data_root must be a path'):
        build_eval_dataset(dict(type='cityscapes', data_root=5))
    with pytest.raises(DatasetError, match='unknown dataset option.*: colour'):
        build_eval_dataset(dict(type='cityscapes', data_root=str(tmp_path), colour='red'))
    assert len(build_eval_dataset(dict(type='cityscapes', data_root=str(tmp_path), resize=[32, 16]))) == 2
