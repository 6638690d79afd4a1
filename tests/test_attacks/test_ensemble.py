"""Worst-case ensemble: per image, the member (or the clean image) with the fewest correct pixels;
members skipped on images already at 0 (AutoAttack's rule); exact per-image cost."""
import pytest
import torch
from torch import nn

from attacks import build_attack
from attacks.ensemble import (WorstCaseEnsemble, per_image_correct, per_image_pixel_accuracy,
                              worst_case_choice)
from conftest import ToySegmenter

MEMBERS = [dict(type='pgd', num_steps=3), dict(type='fgsm'), dict(type='mifgsm', num_steps=3)]
BUDGETS = [3, 1, 3]


class PerImage(nn.Module):
    """A toy model that forwards each image on its own: its outputs (and gradients) for an image
    do not depend on the batch the image is in, to the bit — so an attack run on a subset of the
    batch (as the ensemble does after skipping) can be compared exactly with one run on all."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return torch.cat([self.model(x[i:i + 1]) for i in range(len(x))])


class ImageCounter(nn.Module):
    """Counts the images of the forward passes that will be back-propagated to the input."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.gradient_images = 0

    def forward(self, x):
        if torch.is_grad_enabled() and x.requires_grad:
            self.gradient_images += len(x)
        return self.model(x)


@pytest.fixture
def setup():
    model = PerImage(ToySegmenter(num_classes=5, seed=3))
    g = torch.Generator().manual_seed(0)
    images = torch.rand(4, 3, 12, 16, generator=g) * 255
    with torch.no_grad():
        labels = model(images).argmax(1)
    labels[0, :2] = 255
    return model, images, labels


def correct_counts(model, x, labels):
    """Independent per-image count of labelled pixels predicted as their label."""
    with torch.no_grad():
        pred = model(x).argmax(1)
    return torch.tensor([int(((p == y) & (y != 255)).sum()) for p, y in zip(pred, labels)])


def by_hand(model, images, labels, members, epsilon):
    """Every member alone on the whole batch; the first candidate (clean first) with the minimum."""
    candidates = [images] + [build_attack(spec, epsilon)(model, images, labels=labels) for spec in members]
    counts = torch.stack([correct_counts(model, c, labels) for c in candidates])
    minimum = counts.min(0).values
    chosen = torch.tensor([int((counts[:, i] == minimum[i]).nonzero()[0]) for i in range(len(images))])
    return candidates, counts, chosen


@pytest.mark.parametrize('skip_solved', [True, False])
def test_keeps_the_worst_member_per_image(setup, skip_solved):
    model, images, labels = setup
    result = WorstCaseEnsemble(8, attacks=MEMBERS, skip_solved=skip_solved).run(model, images, labels=labels)
    candidates, counts, chosen = by_hand(model, images, labels, MEMBERS, 8)
    assert torch.equal(result.info['chosen'], chosen)
    assert (chosen > 0).any() and len(set(chosen.tolist())) > 1
    for i, k in enumerate(chosen.tolist()):
        assert torch.equal(result.adv[i], candidates[k][i])
    # the elementwise minimum over the candidates, as pixel accuracy
    valid = (labels != 255).flatten(1).sum(1)
    torch.testing.assert_close(result.info['accuracy'], (counts.min(0).values / valid).float())
    assert torch.equal(correct_counts(model, result.adv, labels), counts.min(0).values)


def test_members_skip_images_already_at_zero():
    """Image 0 is wrong everywhere from the start; image 1 has two labelled pixels, fooled by the
    first member; images 2 and 3 are never at 0: each member's passes land where it ran."""
    model = PerImage(ToySegmenter(num_classes=5, seed=3))
    images = torch.rand(4, 3, 12, 16, generator=torch.Generator().manual_seed(0)) * 255
    with torch.no_grad():
        labels = model(images).argmax(1)
    labels[0] = (labels[0] + 1) % 5                   # every pixel of image 0 already wrong
    labels[1] = 255
    labels[1, 5, 5:7] = model(images[1:2]).argmax(1)[0, 5, 5:7]
    members = [dict(type='pgd', num_steps=4), dict(type='pgd', num_steps=2, seed=1)]
    counter = ImageCounter(model)
    result = WorstCaseEnsemble(32, attacks=members).run(counter, images, labels=labels)
    first = build_attack(members[0], 32)(model, images, labels=labels)
    assert correct_counts(model, first, labels)[1] == 0, 'the case needs image 1 fooled by member 1'
    assert (correct_counts(model, first, labels)[2:] > 0).all()
    assert result.info['gradient_passes'].tolist() == [0, 4, 6, 6]
    assert counter.gradient_images == 0 + 4 + 6 + 6
    assert result.info['chosen'][:2].tolist() == [0, 1]
    assert torch.equal(result.adv[0], images[0])
    # skipping changed no result
    full = WorstCaseEnsemble(32, attacks=members, skip_solved=False).run(model, images, labels=labels)
    assert torch.equal(full.adv, result.adv) and torch.equal(full.info['chosen'], result.info['chosen'])
    assert full.info['gradient_passes'].tolist() == [6, 6, 6, 6]
    assert result.gradient_passes == full.gradient_passes == 6        # the budget


def test_worst_case_choice_rule():
    counts = torch.tensor([[5, 3, 0, 4], [5, 2, 0, 1], [1, 2, 0, 1], [1, 9, 0, 0]])
    assert worst_case_choice(counts).tolist() == [2, 1, 0, 3]


def test_bound_range_and_cost(setup):
    model, images, labels = setup
    attack = WorstCaseEnsemble(4, attacks=MEMBERS)
    result = attack.run(model, images, labels=labels)
    assert float((result.adv - images).abs().max()) <= 4 + 1e-4
    assert float(result.adv.min()) >= 0 and float(result.adv.max()) <= 255
    assert attack.gradient_passes() == sum(BUDGETS) == result.gradient_passes
    assert result.info['gradient_passes'].tolist() == [sum(BUDGETS)] * 4
    assert attack.params()['attacks'][0]['type'] == 'pgd' and attack.params()['skip_solved'] is True
    assert WorstCaseEnsemble(8).gradient_passes() == 320
    assert [m.name for m in WorstCaseEnsemble(8).members] == ['pgd', 'segpgd', 'cospgd', 'mifgsm']


def test_deterministic(setup):
    model, images, labels = setup
    torch.manual_seed(0)
    a = WorstCaseEnsemble(8, attacks=MEMBERS)(model, images, labels=labels)
    torch.manual_seed(1)
    assert torch.equal(a, WorstCaseEnsemble(8, attacks=MEMBERS)(model, images, labels=labels))


def test_pixel_accuracy_on_a_hand_made_case():
    pred = torch.tensor([[[0, 1], [2, 2]], [[1, 1], [1, 1]]])
    labels = torch.tensor([[[0, 0], [2, 255]], [[255, 255], [255, 255]]])
    assert per_image_pixel_accuracy(pred, labels).tolist() == [pytest.approx(2 / 3), 1.0]
    assert per_image_correct(pred, labels).tolist() == [2, 0]


@pytest.mark.parametrize('attacks, match', [
    ([], 'non-empty'),
    ('pgd', 'non-empty'),
    ([dict(type='targeted_ifgsm')], 'untargeted per-image'),
    ([dict(type='sea')], 'untargeted per-image'),
    ([dict(type='pgd', epsilon=3)], 'sets epsilon'),
    ([dict(num_steps=3)], 'no `type`'),
])
def test_bad_members(attacks, match):
    with pytest.raises(ValueError, match=match):
        WorstCaseEnsemble(8, attacks=attacks)
    with pytest.raises(ValueError, match='skip_solved'):
        WorstCaseEnsemble(8, skip_solved='yes')
