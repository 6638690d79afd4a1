"""Target maps of targeted dense attacks: static target, hide-a-class target, hidden-class mask."""
import numpy as np
import pytest
import torch

from attacks.targets import hidden_class_mask, hide_class_target, static_target


def brute_force_nearest_classes(pred: np.ndarray, hidden: int, ignore: int = 255):
    """Per hidden pixel, the set of classes of the non-hidden, non-ignored pixels at minimal
    squared Euclidean distance (a set: equidistant pixels of different classes are all correct)."""
    h, w = pred.shape
    src = [(i, j) for i in range(h) for j in range(w) if pred[i, j] not in (hidden, ignore)]
    out = {}
    for i in range(h):
        for j in range(w):
            if pred[i, j] != hidden:
                continue
            d = [(i - a) ** 2 + (j - b) ** 2 for a, b in src]
            dmin = min(d)
            out[i, j] = {int(pred[a, b]) for (a, b), dd in zip(src, d) if dd == dmin}
    return out


@pytest.mark.parametrize('seed', range(6))
def test_hide_class_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    # blobs of the hidden class 2 on a random 4-class background, a few ignored pixels
    pred = rng.integers(0, 4, size=(3, 9, 11))
    pred[rng.random(pred.shape) < 0.5] = 2
    pred[0, 2:7, 3:9] = 2
    pred[1][rng.random((9, 11)) < 0.05] = 255
    pred_t = torch.from_numpy(pred)
    target = hide_class_target(pred_t, hidden_class=2)
    assert target.shape == pred_t.shape and target.dtype == torch.int64
    for k in range(len(pred)):
        oracle = brute_force_nearest_classes(pred[k], 2)
        assert oracle, 'test maps must contain the hidden class'
        for (i, j), classes in oracle.items():
            assert int(target[k, i, j]) in classes, (k, i, j)
        keep = pred[k] != 2
        np.testing.assert_array_equal(target[k].numpy()[keep], pred[k][keep])  # others unchanged
    assert not (target == 2).any()                                                 # class hidden


def test_hide_class_exact_unique_neighbours():
    """Hand-made map with unique nearest neighbours (no ties): exact expected target."""
    pred = torch.tensor([[[0, 5, 5, 5, 5, 1],
                          [2, 5, 5, 5, 5, 1],
                          [3, 5, 5, 5, 5, 4]]])
    expected = torch.tensor([[[0, 0, 0, 1, 1, 1],
                              [2, 2, 2, 1, 1, 1],
                              [3, 3, 3, 4, 4, 4]]])
    # hand check of the brute force oracle agrees
    oracle = brute_force_nearest_classes(pred[0].numpy(), 5)
    assert all(len(c) == 1 and int(expected[0][ij]) in c for ij, c in oracle.items())
    assert torch.equal(hide_class_target(pred, 5), expected)


def test_hide_class_special_cases():
    pred = torch.full((3, 4, 5), 7)
    pred[1] = 1                                   # image without the hidden class: unchanged
    pred[2, 0, 0] = 255                           # hidden + ignored only: no source pixel
    target = hide_class_target(pred, 7)
    assert (target[0] == 255).all()               # only the hidden class: no target (255)
    assert torch.equal(target[1], pred[1])
    assert (target[2] == 255).all()               # ignored pixels stay 255, hidden get 255
    with pytest.raises(ValueError, match='hidden_class'):
        hide_class_target(pred, 255)
    with pytest.raises(ValueError, match='hidden_class'):
        hide_class_target(pred, -1)
    with pytest.raises(ValueError, match=r'\(N, H, W\)'):
        hide_class_target(pred[0], 7)


def test_ignored_pixels_are_not_sources():
    pred = torch.tensor([[[1, 255, 9, 9, 9, 2]]])
    # pixel (0, 2) is next to an ignored pixel: its nearest *valid* source is class 1 at distance 2
    assert hide_class_target(pred, 9).tolist() == [[[1, 255, 1, 2, 2, 2]]]


def test_hide_class_is_fast_on_cityscapes_size():
    """Exact EDT, O(H W): a 512x1024 map with large person blobs in well under a second."""
    pred = torch.zeros((1, 512, 1024), dtype=torch.long)
    pred[0, :, 512:] = 3
    pred[0, 100:400, 300:700] = 11
    target = hide_class_target(pred, 11)
    assert (target[0, 100:400, 300:512] == 0).all() and (target[0, 100:400, 512:700] == 3).all()


def test_hidden_class_mask():
    pred = torch.tensor([[[0, 11], [11, 3]]])
    mask = hidden_class_mask(pred, 11)
    assert mask.dtype == torch.bool and mask.tolist() == [[[False, True], [True, False]]]


def test_static_target_broadcast():
    base = torch.tensor([[0, 1, 2], [255, 4, 0]], dtype=torch.int32)
    target = static_target(base, 3)
    assert target.shape == (3, 2, 3) and target.dtype == torch.int64
    assert all(torch.equal(t, base.long()) for t in target)
    target[0, 0, 0] = 9                           # a copy: images do not share storage
    assert target[1, 0, 0] == 0 and base[0, 0] == 0
    assert torch.equal(static_target(base[None], 2), static_target(base, 2))
    with pytest.raises(ValueError, match='integer'):
        static_target(base.float(), 2)
    with pytest.raises(ValueError, match='n must'):
        static_target(base, 0)
    with pytest.raises(ValueError, match=r'\(H, W\)'):
        static_target(torch.zeros(2, 2, 3, dtype=torch.long), 2)
