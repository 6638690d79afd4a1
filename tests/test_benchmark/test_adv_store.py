"""The adversarial-example store: bit-exact round trips, smallest encodings, resume, integrity,
sizes."""
import hashlib
import logging
import os
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

import benchmark.adv_store as adv_store
from attacks import build_attack
from benchmark.adv_store import AdversarialStore, AdvKey, decode, default_root, encode
from benchmark.errors import ResultsError
from common.atomic import find_temporary
from conftest import CountingModel, ToySegmenter

KEY = AdvKey('synthcity_val', 'fcn8s_vgg16-w8_synthcity', 'ifgsm', {'alpha': 1, 'num_steps': 3},
             2.0)


def bits(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous().view(torch.int32)


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.equal(bits(a), bits(b))


def smallest_by_search(images: torch.Tensor, adv: torch.Tensor):
    """Independent reference: try every representation in torch, fewest bytes per element first,
    every power-of-two grid; 16-bit palette and float32 by their deflated size."""
    d = adv - images
    keys, index = torch.unique(bits(d), return_inverse=True)
    palette = keys.view(torch.float32)

    def grid(dtype, limit):
        for j in range(25):
            q = torch.round(d * 2.0 ** j)
            if q.abs().max() > limit:
                return None
            if same_bits(images + q.to(dtype).float() / 2.0 ** j, adv):
                return str(dtype).split('.')[-1], j

    def palette_fits(size):
        return len(palette) <= size and same_bits(images + palette[index], adv)

    found = grid(torch.int8, 127)
    if found:
        return found
    if palette_fits(256):
        return 'uint8', 0
    found = grid(torch.int16, 32767)
    if found:
        return found
    if same_bits(images + d.half().float(), adv):
        return 'float16', 0
    if palette_fits(65536):
        indices = index.to(torch.int32).numpy().astype(np.uint16)
        as_palette = len(zlib.compress(indices.tobytes(), 6)) + \
            len(zlib.compress(palette.numpy().tobytes(), 6))
        if as_palette < len(zlib.compress(d.numpy().tobytes(), 6)):
            return 'uint16', 0
    return 'float32', 0


def _images(n=4, shape=(3, 6, 8), low=0, high=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(low, high, (n, *shape), generator=g).float()


def _case(name):
    g = torch.Generator().manual_seed(1)
    images = _images()
    if name == 'int8':       # Arnab et al.'s α = 1 iterates: integers within ±ε
        adv = (images + torch.randint(-8, 9, images.shape, generator=g)).clamp(0, 255)
    elif name == 'int16':    # integers beyond ±127
        adv = (images + torch.randint(-255, 256, images.shape, generator=g)).clamp(0, 255)
    elif name == 'quarter':  # the ε = 0.25 grid
        adv = (images + torch.randint(-32, 33, images.shape, generator=g) / 4).clamp(0, 255)
    elif name == 'float16':  # float16 values of a range no 2^-j int16 grid covers
        images = _images(low=110, high=146)
        d = (torch.rand(images.shape, generator=g) * 16 - 8).half().float()
        d.view(-1)[::7] = 100.0
        adv = images + d
    elif name == 'palette8':  # MI-FGSM-like sums of ±0.4 (on no power-of-two grid)
        images = _images(low=16, high=240)
        adv = images + torch.randint(-20, 21, images.shape, generator=g) * 0.4
    elif name == 'palette16':  # SegPGD-like sums of ±2.55 and more distinct values than 256
        images = _images(shape=(3, 32, 48), low=100, high=156)
        adv = images + torch.randint(-150, 151, images.shape, generator=g) * 0.255
    elif name == 'float32':  # a random start: arbitrary floats whose difference is exact
        images = _images(low=16, high=240)
        adv = images + (torch.rand(images.shape, generator=g) * 16 - 8)
    else:
        raise KeyError(name)
    return images, adv.float()


EXPECTED = {'int8': ('int8', 0), 'int16': ('int16', 0), 'quarter': ('int8', 2),
            'palette8': ('uint8', 0), 'palette16': ('uint16', 0), 'float16': ('float16', 0),
            'float32': ('float32', 0)}


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_round_trip_bit_exact_in_the_smallest_dtype(tmp_path, name):
    images, adv = _case(name)
    enc = encode(images.numpy(), adv.numpy())
    assert (enc.dtype, enc.grid_log2) == EXPECTED[name] == smallest_by_search(images, adv)
    assert enc.payload == 'delta' and enc.patched == 0
    store = AdversarialStore(tmp_path)
    ids = [f'city/img_{i}.png' for i in range(len(images))]
    store.put(KEY, ids, images, adv)
    back = AdversarialStore(tmp_path).get(KEY, ids, images)  # a fresh reader (another process)
    assert torch.equal(back, adv) and same_bits(back, adv)


def test_non_invertible_float_addition_is_patched(tmp_path):
    """a + (b − a) ≠ b: a tiny adversarial value over a bright pixel loses its low bits in δ."""
    images = _images(low=100, high=256)
    g = torch.Generator().manual_seed(2)
    adv = images + (torch.rand(images.shape, generator=g) * 2 - 1)
    adv.view(-1)[5] = 0.1 + 2 ** -20
    adv.view(-1)[17] = 3e-5
    d = adv - images
    bad = (images + d) != adv
    assert 1 <= int(bad.sum()) <= 2  # float32 δ alone is not lossless here
    enc = encode(images.numpy(), adv.numpy())
    assert (enc.payload, enc.dtype, enc.patched) == ('delta', 'float32', int(bad.sum()))
    store = AdversarialStore(tmp_path)
    store.put(KEY, ['a', 'b', 'c', 'd'], images, adv)
    assert same_bits(store.get(KEY, ['a', 'b', 'c', 'd'], images), adv)
    # any subset, any order, including the rows that hold the patched elements
    assert same_bits(store.get(KEY, ['d', 'a'], images[[3, 0]]), adv[[3, 0]])


def test_mostly_non_invertible_batch_stores_adv_itself(tmp_path):
    images = torch.full((2, 3, 4, 5), 200.0)
    adv = torch.full_like(images, 0.1)
    enc = encode(images.numpy(), adv.numpy())
    assert (enc.payload, enc.dtype) == ('adv', 'float32')
    store = AdversarialStore(tmp_path)
    store.put(KEY, ['a', 'b'], images, adv)
    assert same_bits(store.get(KEY, ['b'], images[1:]), adv[1:])


def test_negative_zero_kept_bit_for_bit(tmp_path):
    images = torch.zeros(1, 3, 4, 4)
    adv = images.clone()
    adv[0, 1, 2, 3] = -0.0
    adv[0, 0, 0, 0] = 4.0
    assert torch.equal(images + (adv - images), adv)  # equal as numbers...
    assert not same_bits(images + (adv - images), adv)  # ...but 0 + (-0 - 0) is +0, not -0
    store = AdversarialStore(tmp_path)
    store.put(KEY, ['a'], images, adv)
    assert same_bits(store.get(KEY, ['a'], images), adv)


def test_decode_of_int_grid_is_exact_division():
    images = _images(n=1)
    adv = images + torch.tensor(0.25)
    enc = encode(images.numpy(), adv.numpy())
    assert enc.values.dtype == np.int8 and set(np.unique(enc.values)) == {1}
    assert same_bits(torch.from_numpy(decode(enc, images.numpy())), adv)


def test_numpy_in_numpy_out_and_subsets_across_batches(tmp_path):
    images, adv = _case('quarter')
    store = AdversarialStore(tmp_path)
    store.put(KEY, ['a', 'b'], images[:2].numpy(), adv[:2].numpy())
    store.put(KEY, ['c', 'd'], images[2:], adv[2:])
    out = store.get(KEY, ['d', 'a', 'c'], images[[3, 0, 2]].numpy())
    assert isinstance(out, np.ndarray) and np.array_equal(out, adv[[3, 0, 2]].numpy())
    assert store.stored_ids(KEY) == ['a', 'b', 'c', 'd']
    assert store.missing(KEY, ['e', 'b', 'a', 'f']) == ['e', 'f']


# -- keys and layout ----------------------------------------------------------------------------

def test_key_identity_and_paths(tmp_path):
    k = AdvKey('ds', 'm', 'pgd', {'b': 2, 'a': 8.0}, 8)
    same = AdvKey('ds', 'm', 'pgd', {'a': 8, 'b': 2.0}, 8.0, scale=1)
    assert k.key_hash == same.key_hash
    for other in (dict(label_source='ground_truth'), dict(source_digest='ab' * 32), dict(scale=0.5)):
        assert k.key_hash != AdvKey('ds', 'm', 'pgd', {'a': 8, 'b': 2}, 8, **other).key_hash
    store = AdversarialStore(tmp_path)
    sources = ['deeplab@s0.5', 'crfrnn:unaries', 'ens(a+b)', 'crfrnn_unaries', '../up']
    dirs = [store.group_dir(AdvKey('ds', s, 'fgsm', {}, 8, scale=0.5)) for s in sources]
    assert len({d.parent for d in dirs}) == len(sources)
    for d in dirs:
        assert d.parent.parent == tmp_path / 'ds' and '/' not in d.parent.name
        assert d.name.startswith('fgsm_eps8_x0p5_')
    store.put(AdvKey('ds', 'ens(a+b)', 'fgsm', {}, 8), ['i'], torch.zeros(1, 3, 2, 2),
              torch.ones(1, 3, 2, 2))
    key_file = store.group_dir(AdvKey('ds', 'ens(a+b)', 'fgsm', {}, 8)) / 'key.json'
    assert '"source": "ens(a+b)"' in key_file.read_text()


def test_default_root_follows_segbench_cache(tmp_path, monkeypatch):
    monkeypatch.setenv('SEGBENCH_CACHE', str(tmp_path / 'c'))
    assert default_root() == tmp_path / 'c' / 'adversarial'
    assert AdversarialStore().root == tmp_path / 'c' / 'adversarial'
    monkeypatch.delenv('SEGBENCH_CACHE')
    assert default_root() == Path.home() / '.cache' / 'segbench' / 'adversarial'


# -- resume ---------------------------------------------------------------------------------------

def _generate(store, key, ids, images, model, batch_size, attack):
    """What the runner does: attack the batches holding missing images, store each at once."""
    todo = set(store.missing(key, ids))
    for s in range(0, len(ids), batch_size):
        batch_ids = ids[s:s + batch_size]
        if todo.intersection(batch_ids):
            batch = images[s:s + batch_size]
            store.put(key, batch_ids, batch, attack(model, batch))


def _files(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob('*') if p.is_file()}


def test_killed_generation_resumes_with_only_the_missing_images(tmp_path, monkeypatch):
    images = _images(n=6, shape=(3, 12, 16), seed=3)
    ids = [f'img_{i}' for i in range(6)]
    attack = build_attack({'type': 'ifgsm', 'alpha': 1, 'num_steps': 3}, 2)
    reference = attack(ToySegmenter(), images)

    whole = AdversarialStore(tmp_path / 'whole')
    _generate(whole, KEY, ids, images, ToySegmenter(), 2, attack)

    # kill the second batch's write between its two renames (the .npz is in place, its manifest
    # still a temporary file); the third batch never starts
    real_commit = adv_store.commit
    calls = []

    def killed_commit(pairs, retire=None):
        calls.append(pairs)
        if len(calls) == 2:
            os.replace(*pairs[0])
            raise KeyboardInterrupt('simulated kill')
        real_commit(pairs, retire=retire)

    monkeypatch.setattr(adv_store, 'commit', killed_commit)
    root = tmp_path / 'resumed'
    with pytest.raises(KeyboardInterrupt):
        _generate(AdversarialStore(root), KEY, ids, images, ToySegmenter(), 2, attack)
    monkeypatch.setattr(adv_store, 'commit', real_commit)
    assert len(find_temporary(root)) == 1

    store = AdversarialStore(root)  # the next run
    removed = store.sweep_temporary()
    assert len(removed) == 2 and not find_temporary(root)  # the temporary manifest + orphan .npz
    assert store.missing(KEY, ids) == ids[2:]
    model = CountingModel(ToySegmenter())
    _generate(store, KEY, ids, images, model, 2, attack)
    assert model.grad_calls == 2 * 3  # two batches of 3 steps: the first batch is not redone
    assert store.missing(KEY, ids) == []
    assert _files(root) == _files(tmp_path / 'whole')  # the same store, byte for byte
    assert torch.equal(store.get(KEY, ids, images), reference)


def test_readers_see_batches_written_by_another_process(tmp_path):
    images, adv = _case('int8')
    reader, writer = AdversarialStore(tmp_path), AdversarialStore(tmp_path)
    writer.put(KEY, ['a', 'b'], images[:2], adv[:2])
    assert reader.missing(KEY, ['a', 'b', 'c', 'd']) == ['c', 'd']
    writer.put(KEY, ['c', 'd'], images[2:], adv[2:])
    assert reader.missing(KEY, ['a', 'b', 'c', 'd']) == []
    assert torch.equal(reader.get(KEY, ['c', 'a'], images[[2, 0]]), adv[[2, 0]])
    writer.put(KEY, ['c', 'd'], images[2:], images[2:] + 1)  # --force in another process
    assert torch.equal(reader.get(KEY, ['d'], images[3:]), images[3:] + 1)
    writer.discard(KEY)
    assert reader.missing(KEY, ['a']) == ['a'] and not writer.group_dir(KEY).exists()


# -- integrity ------------------------------------------------------------------------------------

@pytest.fixture
def stored(tmp_path):
    images, adv = _case('int8')
    store = AdversarialStore(tmp_path / "store")
    manifest = store.put(KEY, ['a', 'b', 'c', 'd'], images, adv)
    return store, images, manifest, manifest.with_suffix('.npz')


@pytest.mark.parametrize('damage', ['flip', 'truncate', 'delete', 'replace'])
def test_damaged_batch_is_refused_naming_the_file(stored, tmp_path, damage):
    store, images, _, npz = stored
    data = npz.read_bytes()
    if damage == 'replace':  # a valid batch file of the same images, with other perturbations
        other = AdversarialStore(tmp_path / 'other')
        manifest = other.put(KEY, ['a', 'b', 'c', 'd'], images, images + 1)
        npz.write_bytes(manifest.with_suffix('.npz').read_bytes())
    elif damage == 'flip':
        npz.write_bytes(data[:200] + bytes([data[200] ^ 1]) + data[201:])
    elif damage == 'truncate':
        npz.write_bytes(data[:len(data) // 2])
    else:
        npz.unlink()
    with pytest.raises(ResultsError, match=npz.name) as refused:
        AdversarialStore(store.root).get(KEY, ['a'], images[:1])
    if damage == 'replace':
        assert 'sha256' in str(refused.value)
    with pytest.raises(ResultsError, match=npz.name):
        store.verify(KEY)
    assert store.missing(KEY, ['a', 'b']) == ([] if damage != 'delete' else ['a', 'b'])


def test_edited_manifest_is_refused(stored):
    store, images, manifest, _ = stored
    manifest.write_text(manifest.read_text().replace('"c"', '"x"'))
    with pytest.raises(ResultsError, match=manifest.name):
        AdversarialStore(store.root).missing(KEY, ['a'])


def test_other_clean_images_are_refused(stored):
    store, images, _, npz = stored
    other = images.clone()
    other[1, 0, 0, 0] += 1
    assert torch.is_tensor(store.get(KEY, ['a'], other[:1]))  # image a is unchanged
    with pytest.raises(ResultsError, match='clean image b'):
        store.get(KEY, ['a', 'b'], other[:2])
    with pytest.raises(ResultsError, match='not stored'):
        store.get(KEY, ['a', 'zz'], images[:2])


def test_edited_key_file_is_refused(stored):
    store, images, _, _ = stored
    key_file = store.group_dir(KEY) / 'key.json'
    key_file.write_text(key_file.read_text().replace('"ifgsm"', '"fgsm"'))
    with pytest.raises(ResultsError, match='key.json'):
        AdversarialStore(store.root).get(KEY, ['a'], images[:1])


def test_non_finite_adversarial_images_are_refused(tmp_path):
    from common.errors import ModelError
    images = torch.zeros(1, 3, 2, 2)
    with pytest.raises(ModelError, match='NaN'):
        AdversarialStore(tmp_path).put(KEY, ['a'], images, images + float('nan'))
    assert not list(tmp_path.rglob('*.npz'))


# -- sizes ----------------------------------------------------------------------------------------

def test_sizes_reported(tmp_path):
    store = AdversarialStore(tmp_path)
    images, adv = _case('int8')
    store.put(KEY, ['a', 'b'], images[:2], adv[:2])
    store.put(KEY, ['c', 'd'], images[2:], adv[2:])
    other = AdvKey('synthcity_val', 'other', 'fgsm', {}, 8)
    store.put(other, ['a'], images[:1], images[:1] + 8)
    npz = sorted(store.group_dir(KEY).glob('*.npz'))
    stats = store.stats(KEY)
    assert stats['images'] == 4 and stats['batches'] == 2
    assert stats['bytes'] == sum(p.stat().st_size for p in npz)
    assert stats['bytes_per_image'] == stats['bytes'] / 4
    assert stats['encodings'] == {'delta int8': 2}
    every = sum(p.stat().st_size for p in tmp_path.rglob('*') if p.is_file())
    assert store.size_bytes() == every
    assert store.size_bytes(KEY) == stats['total_bytes'] < every
    assert store.size_bytes('synthcity_val') == every
    assert store.size_bytes(KEY) + store.size_bytes(other) == every
    assert store.keys() == sorted([KEY, other], key=lambda k: str(store.group_dir(k)))
    whole = store.stats()
    assert (whole['keys'], whole['images'], whole['batches']) == (2, 5, 3)
    assert whole['bytes'] == sum(p.stat().st_size for p in tmp_path.rglob('*.npz'))
    assert whole['total_bytes'] == every and whole['encodings'] == {'delta int8': 3}


def test_arnab_ifgsm_eps8_bytes_per_image(tmp_path, caplog):
    """Measured size of an Arnab et al. Iterative FGSM ε = 8 perturbation of a 128×256 image."""
    g = torch.Generator().manual_seed(0)
    small = torch.rand((2, 3, 32, 64), generator=g)
    images = torch.nn.functional.interpolate(small, size=(128, 256), mode='bilinear')
    images = (images * 255).round()
    adv = build_attack({'type': 'ifgsm'}, 8)(ToySegmenter(), images)
    store = AdversarialStore(tmp_path)
    store.put(KEY, ['a', 'b'], images, adv)
    stats = store.stats(KEY)
    assert stats['encodings'] == {'delta int8': 1}
    raw = 3 * 128 * 256 * 4
    with caplog.at_level(logging.INFO):
        logging.getLogger(__name__).info('Iterative FGSM eps=8, 128x256: %.0f bytes per image '
                                         '(float32: %d)', stats['bytes_per_image'], raw)
    assert stats['bytes_per_image'] < raw / 10  # measured 27,986 bytes (2.3 bits per element)
    assert torch.equal(store.get(KEY, ['b', 'a'], images[[1, 0]]), adv[[1, 0]])


def test_grid_log2_matches_exact_fractions():
    """The power-of-two denominator read from the float bits equals Python's exact fractions'."""
    rng = np.random.default_rng(5)
    for _ in range(50):
        j = int(rng.integers(0, 20))
        values = (rng.integers(-4000, 4000, 30) / 2.0 ** j).astype(np.float32)
        values[0] = np.float32(2.0 ** -j)  # make sure the finest step occurs
        expected = max(float(v).as_integer_ratio()[1] for v in values).bit_length() - 1
        assert adv_store._grid_log2(values) == expected == j
        assert adv_store._grid_log2_of_bits(values) == j
        big = np.zeros(200_000, np.float32)  # the sampled elements miss the finest step
        big[7] = values[0]
        assert adv_store._grid_log2(big) == j
    tiny = np.array([0.0, -0.0, 2.0 ** -24, 3 * 2.0 ** -20], dtype=np.float32)
    assert adv_store._grid_log2(tiny) == 24
    subnormal = np.array([2.0 ** -25, 1e-45], dtype=np.float32)
    assert adv_store._grid_log2(subnormal) is None
    assert adv_store._grid_log2(np.zeros(3, np.float32)) == 0
    assert adv_store._grid_log2(np.array([255, -7, 2 ** 20], dtype=np.float32)) == 0
