"""Worst-case ensemble: per image, the member (or the clean image) with the lowest pixel accuracy."""
import pytest
import torch

from attacks import build_attack
from attacks.ensemble import WorstCaseEnsemble, per_image_pixel_accuracy
from conftest import ToySegmenter

MEMBERS = [dict(type='pgd', num_steps=3), dict(type='fgsm'), dict(type='mifgsm', num_steps=3)]


@pytest.fixture
def setup():
    model = ToySegmenter(num_classes=5, seed=3)
    g = torch.Generator().manual_seed(0)
    images = torch.rand(4, 3, 12, 16, generator=g) * 255
    with torch.no_grad():
        labels = model(images).argmax(1)
    labels[0, :2] = 255
    return model, images, labels


def accuracy(model, x, labels):
    """Independent per-image pixel accuracy (labelled pixels only)."""
    with torch.no_grad():
        pred = model(x).argmax(1)
    out = []
    for p, y in zip(pred, labels):
        valid = y != 255
        out.append(float((p[valid] == y[valid]).float().mean()))
    return torch.tensor(out)


def test_keeps_the_worst_member_per_image(setup):
    model, images, labels = setup
    result = WorstCaseEnsemble(8, attacks=MEMBERS).run(model, images, labels=labels)
    per_member = [accuracy(model, build_attack(spec, 8)(model, images, labels=labels), labels)
                  for spec in MEMBERS]
    stacked = torch.stack([accuracy(model, images, labels)] + per_member)      # clean first
    expected = stacked.min(0).values
    assert torch.allclose(accuracy(model, result.adv, labels), expected, atol=1e-6)
    assert torch.allclose(result.info['accuracy'].double(), expected.double(), atol=1e-6)
    # the chosen index is the first candidate reaching the minimum (clean = -1)
    first = (stacked <= expected + 1e-9).float().argmax(0) - 1
    assert torch.equal(result.info['chosen'], first)
    assert (result.info['chosen'] >= 0).any()
    # each kept image is exactly that member's output for the image
    for i, k in enumerate(result.info['chosen'].tolist()):
        ref = images[i] if k < 0 else build_attack(MEMBERS[k], 8)(model, images, labels=labels)[i]
        assert torch.equal(result.adv[i], ref)


def test_bound_range_and_cost(setup):
    model, images, labels = setup
    attack = WorstCaseEnsemble(4, attacks=MEMBERS)
    adv = attack(model, images, labels=labels)
    assert float((adv - images).abs().max()) <= 4 + 1e-4
    assert float(adv.min()) >= 0 and float(adv.max()) <= 255
    assert attack.gradient_passes() == 3 + 1 + 3
    assert attack.params()['attacks'][0]['type'] == 'pgd'
    assert WorstCaseEnsemble(8).gradient_passes() == 320


def test_pixel_accuracy_on_a_hand_made_case():
    pred = torch.tensor([[[0, 1], [2, 2]], [[1, 1], [1, 1]]])
    labels = torch.tensor([[[0, 0], [2, 255]], [[255, 255], [255, 255]]])
    assert per_image_pixel_accuracy(pred, labels).tolist() == [pytest.approx(2 / 3), 1.0]


@pytest.mark.parametrize('attacks, match', [
    ([], 'non-empty'),
    ('pgd', 'non-empty'),
    ([dict(type='targeted_ifgsm')], 'untargeted per-image'),
    ([dict(type='pgd', epsilon=3)], 'sets epsilon'),
    ([dict(num_steps=3)], 'no `type`'),
])
def test_bad_members(attacks, match):
    with pytest.raises(ValueError, match=match):
        WorstCaseEnsemble(8, attacks=attacks)
