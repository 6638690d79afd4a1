"""Segmentation losses (attacks.seg_losses) against their equations on hand-made logits.

Every reference below is written from the equation in float64, pixel by pixel where that is
clearer; nothing is taken from ``attacks`` except the function under test.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from attacks.base import pixel_cross_entropy
from attacks.seg_losses import (LOSSES, balanced_class_weights, check_class_weights, image_losses,
                                pixel_losses)
from model_zoo.wrappers import EnsembleLogits

from .reference_pgd import ref_cospgd_weights, ref_segpgd_weights

C = 5


def hand_made():
    """Two images 3×4, five classes: correct and wrong pixels, ignored pixels, a rare class."""
    g = torch.Generator().manual_seed(11)
    logits = (torch.randn(2, C, 3, 4, generator=g) * 2.5).double()
    labels = torch.randint(0, C, (2, 3, 4), generator=g)
    pred = logits.argmax(1)
    labels[:, 1] = pred[:, 1]                 # a row of correctly classified pixels per image
    labels[0, 0, 0] = 255                     # ignored pixels
    labels[1, 2, 1:3] = 255
    labels[1, 0, 0] = 4 if pred[1, 0, 0] != 4 else 3   # a class seen once, misclassified
    return logits, labels


def ref_ce(z, y):
    """−log(e^{z_y} / Σ_c e^{z_c}) for one pixel (z: (C,))."""
    return -(z[y] - torch.log(torch.exp(z).sum()))


def ref_map(fn, logits, labels):
    """(N, H, W) map of fn(z, y) over labelled pixels, 0 at 255."""
    out = torch.zeros(labels.shape, dtype=torch.float64)
    n, h, w = labels.shape
    for b in range(n):
        for i in range(h):
            for j in range(w):
                y = int(labels[b, i, j])
                if y != 255:
                    out[b, i, j] = fn(logits[b, :, i, j], y, b)
    return out


def ref_balanced_weight(labels, b, y):
    """n / (K · n_y) over the labelled pixels of image b."""
    lab = [int(v) for v in labels[b].flatten() if int(v) != 255]
    counts = {c: lab.count(c) for c in set(lab)}
    return len(lab) / (len(counts) * counts[y])


def ref_js(z, y):
    """½ KL(p ‖ m) + ½ KL(e_y ‖ m), m = (p + e_y)/2, with 0 log 0 = 0 (the definition)."""
    p = torch.softmax(z, 0)
    q = torch.zeros_like(p)
    q[y] = 1
    m = (p + q) / 2
    kl_pm = sum(float(p[c] * torch.log(p[c] / m[c])) for c in range(len(p)) if p[c] > 0)
    kl_qm = sum(float(q[c] * torch.log(q[c] / m[c])) for c in range(len(p)) if q[c] > 0)
    return 0.5 * kl_pm + 0.5 * kl_qm


def ref_dlr(z, y):
    """−(z_y − max_{c≠y} z_c) / (z_π1 − z_π3 + 1e-12)."""
    s = sorted(z.tolist(), reverse=True)
    other = max(float(z[c]) for c in range(len(z)) if c != y)
    return -(float(z[y]) - other) / (s[0] - s[2] + 1e-12)


def test_the_hand_made_case_has_what_the_masks_need():
    logits, labels = hand_made()
    valid = labels != 255
    correct = (logits.argmax(1) == labels) & valid
    assert correct.any() and (~correct & valid).any() and (~valid).sum() == 3


def test_ce_is_the_summed_pixel_cross_entropy():
    logits, labels = hand_made()
    ref = ref_map(lambda z, y, b: ref_ce(z, y), logits, labels)
    torch.testing.assert_close(pixel_losses('ce', logits, labels), ref)
    per_image = image_losses('ce', logits, labels)
    torch.testing.assert_close(per_image, ref.flatten(1).sum(1))
    assert float(per_image.sum()) == pytest.approx(float(pixel_cross_entropy(logits, labels)), rel=1e-12)


def test_mask_ce_avg_counts_correct_pixels_only():
    logits, labels = hand_made()

    def f(z, y, b):
        return ref_ce(z, y) if int(z.argmax()) == y else 0.0
    ref = ref_map(f, logits, labels)
    torch.testing.assert_close(pixel_losses('mask_ce_avg', logits, labels), ref)
    torch.testing.assert_close(image_losses('mask_ce_avg', logits, labels), ref.flatten(1).sum(1))
    # wrong pixels and ignored pixels contribute exactly 0
    wrong = (logits.argmax(1) != labels) | (labels == 255)
    assert torch.all(pixel_losses('mask_ce_avg', logits, labels)[wrong] == 0)


def test_mask_ce_bal_weights_classes_by_inverse_frequency_per_image():
    logits, labels = hand_made()

    def f(z, y, b):
        return ref_balanced_weight(labels, b, y) * ref_ce(z, y) if int(z.argmax()) == y else 0.0
    ref = ref_map(f, logits, labels)
    torch.testing.assert_close(pixel_losses('mask_ce_bal', logits, labels), ref)
    torch.testing.assert_close(image_losses('mask_ce_bal', logits, labels), ref.flatten(1).sum(1))
    # each class present carries the same total weight n / K, and the weights average 1
    w = balanced_class_weights(labels, C, dtype=torch.float64)
    for b in range(2):
        valid = labels[b] != 255
        classes = labels[b][valid].unique()
        totals = [float(w[b][labels[b] == c].sum()) for c in classes]
        assert totals == pytest.approx([float(valid.sum()) / len(classes)] * len(classes))
        assert float(w[b][valid].mean()) == pytest.approx(1.0)
        assert torch.all(w[b][~valid] == 0)


def test_mask_ce_bal_equals_mask_ce_avg_when_classes_are_equally_frequent():
    logits, _ = hand_made()
    labels = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0], [2, 3, 0, 1]]).repeat(2, 1, 1)   # 3 each
    some = torch.rand(2, 1, 3, 4, generator=torch.Generator().manual_seed(0)) > 0.5
    logits = logits + 10 * F.one_hot(labels, C).permute(0, 3, 1, 2) * some
    avg = pixel_losses('mask_ce_avg', logits, labels)
    assert (avg > 0).any() and (avg == 0).any()
    torch.testing.assert_close(pixel_losses('mask_ce_bal', logits, labels), avg)


def test_mask_ce_bal_with_fixed_class_weights():
    logits, labels = hand_made()
    weights = [0.5, 2.0, 0.0, 1.5, 3.0]

    def f(z, y, b):
        return weights[y] * ref_ce(z, y) if int(z.argmax()) == y else 0.0
    torch.testing.assert_close(pixel_losses('mask_ce_bal', logits, labels, class_weights=weights),
                               ref_map(f, logits, labels))
    with pytest.raises(ValueError, match='3 weights but the model predicts 5 classes'):
        pixel_losses('mask_ce_bal', logits, labels, class_weights=[1.0, 1.0, 1.0])
    for bad in ([], 'abc', [1.0, -1.0], [float('nan')], [True]):
        with pytest.raises(ValueError, match='class_weights'):
            check_class_weights(bad)


def test_js_matches_its_definition():
    logits, labels = hand_made()
    ref = ref_map(lambda z, y, b: ref_js(z, y), logits, labels)
    torch.testing.assert_close(pixel_losses('js', logits, labels), ref)
    torch.testing.assert_close(image_losses('js', logits, labels), ref.flatten(1).sum(1))
    js = pixel_losses('js', logits, labels)
    assert float(js.max()) <= math.log(2) and float(js.min()) >= 0


def test_js_limits_and_finite_gradient_where_the_softmax_underflows():
    # a pixel predicted with certainty: JS = 0; its label given probability ~0: JS = log 2
    logits = torch.tensor([[200.0, 0.0, 0.0], [0.0, 200.0, 0.0]]).T.reshape(1, 3, 1, 2).requires_grad_(True)
    labels = torch.tensor([[[0, 0]]])
    js = pixel_losses('js', logits, labels)
    assert js[0, 0, 0].item() == 0.0 and js[0, 0, 1].item() == pytest.approx(math.log(2))
    grad, = torch.autograd.grad(js.sum(), logits)
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize('t', [1, 4, 7])
def test_segpgd_weighting(t):
    logits, labels = hand_made()
    weights = ref_segpgd_weights(logits, labels, t, 7)
    ref = weights * ref_map(lambda z, y, b: ref_ce(z, y), logits, labels)
    torch.testing.assert_close(pixel_losses('segpgd', logits, labels, step=t, num_steps=7), ref)
    with pytest.raises(ValueError, match='step'):
        pixel_losses('segpgd', logits, labels)


def test_cospgd_weighting():
    logits, labels = hand_made()
    ref = ref_cospgd_weights(logits, labels, C) * ref_map(lambda z, y, b: ref_ce(z, y), logits, labels)
    torch.testing.assert_close(pixel_losses('cospgd', logits, labels), ref)


def test_weights_of_the_weighted_losses_are_constants_of_the_gradient():
    """SegPGD's and CosPGD's weights and the masks are computed from detached logits."""
    logits, labels = hand_made()
    for name, kw in [('cospgd', {}), ('segpgd', dict(step=3, num_steps=5)), ('mask_ce_avg', {}),
                     ('mask_ce_bal', {})]:
        z = logits.clone().requires_grad_(True)
        grad, = torch.autograd.grad(image_losses(name, z, labels, **kw).sum(), z)
        weight = (pixel_losses(name, logits, labels, **kw)
                  / pixel_losses('ce', logits, labels).where(labels != 255, torch.ones(())))
        z2 = logits.clone().requires_grad_(True)
        ce_grad, = torch.autograd.grad((pixel_losses('ce', z2, labels) * weight).sum(), z2)
        torch.testing.assert_close(grad, ce_grad)


def test_dlr_per_pixel():
    logits, labels = hand_made()
    ref = ref_map(lambda z, y, b: ref_dlr(z, y), logits, labels)
    torch.testing.assert_close(pixel_losses('dlr', logits, labels), ref)
    with pytest.raises(ValueError, match='at least 3 classes'):
        pixel_losses('dlr', logits[:, :2], labels.clamp(max=1))


def test_unknown_loss_named():
    logits, labels = hand_made()
    with pytest.raises(ValueError, match='loss must be one of ce, mask_ce_avg'):
        image_losses('mask-ce', logits, labels)


@pytest.mark.parametrize('name', [n for n in LOSSES])
def test_ensemble_logits_give_the_weighted_sum_of_member_losses(name):
    logits, labels = hand_made()
    other = logits.flip(-1) * 0.7
    kw = dict(step=2, num_steps=5) if name == 'segpgd' else {}
    mixture = torch.log((torch.softmax(logits, 1) + 2 * torch.softmax(other, 1)) / 3)
    out = EnsembleLogits.wrap(mixture, [(1.0, logits), (2.0, other)])
    expected = image_losses(name, logits, labels, **kw) + 2.0 * image_losses(name, other, labels, **kw)
    torch.testing.assert_close(image_losses(name, out, labels, **kw), expected)


def test_per_image_losses_are_independent_of_the_batch():
    logits, labels = hand_made()
    for name in LOSSES:
        kw = dict(step=2, num_steps=5) if name == 'segpgd' else {}
        both = image_losses(name, logits, labels, **kw)
        assert both.shape == (2,)
        torch.testing.assert_close(both[1:], image_losses(name, logits[1:], labels[1:], **kw))
