"""SEA (Croce et al. 2024): the per-image worst case over its three APGD runs."""
import pytest
import torch

from attacks import attack_class, build_attack
from attacks.apgd import APGD
from attacks.sea import SEA, SEA_MEMBERS, sea_members
from conftest import ToySegmenter

from .test_ensemble import ImageCounter, PerImage, by_hand, correct_counts


@pytest.fixture
def setup():
    model = PerImage(ToySegmenter(num_classes=5, seed=1))
    g = torch.Generator().manual_seed(2)
    images = torch.rand(4, 3, 10, 12, generator=g) * 255
    with torch.no_grad():
        labels = model(images).argmax(1)
    labels[1, :, :3] = 255
    return model, images, labels


def test_default_members_are_seas_three_apgd_runs():
    attack = SEA(8)
    assert attack_class('sea') is SEA and attack.gradient_passes() == 900
    assert [type(m) for m in attack.members] == [APGD] * 3
    assert [m.loss for m in attack.members] == ['mask_ce_bal', 'mask_ce_avg', 'js']
    for m in attack.members:
        assert m.stages == [(2.0, 90), (1.5, 90), (1.0, 120)]
        assert (m.track_loss, m.keep, m.random_start, m.epsilon) == ('ce', 'accuracy', True, 8.0)
    assert SEA(4, num_steps=20).gradient_passes() == 60
    assert [m.stages for m in SEA(4, num_steps=20).members] == [[(2.0, 6), (1.5, 6), (1.0, 8)]] * 3
    weighted = SEA(4, class_weights=[1, 2, 3, 4, 5]).members
    assert weighted[0].class_weights == (1, 2, 3, 4, 5) and weighted[1].class_weights is None
    assert SEA(8).params()['attacks'][2]['loss'] == 'js'
    assert len(SEA_MEMBERS) == 3 and sea_members(300) == SEA_MEMBERS


def test_worst_case_over_the_three_runs_by_hand(setup):
    model, images, labels = setup
    result = SEA(8, num_steps=12).run(model, images, labels=labels)
    members = sea_members(12)
    candidates, counts, chosen = by_hand(model, images, labels, members, 8)
    assert torch.equal(result.info['chosen'], chosen)
    assert set(chosen.tolist()) - {0}, 'no member won: the test would not check the selection'
    for i, k in enumerate(chosen.tolist()):
        assert torch.equal(result.adv[i], candidates[k][i])
    assert torch.equal(correct_counts(model, result.adv, labels), counts.min(0).values)
    assert result.info['gradient_passes'].tolist() == [36] * 4 and result.gradient_passes == 36


def test_a_further_member_is_one_entry(setup):
    model, images, labels = setup
    members = [*sea_members(6), dict(type='pgd', num_steps=5)]
    attack = build_attack(dict(type='sea', attacks=members), 8)
    assert attack.gradient_passes() == 3 * 6 + 5
    result = attack.run(model, images, labels=labels)
    _, counts, chosen = by_hand(model, images, labels, members, 8)
    assert torch.equal(result.info['chosen'], chosen)


def test_skipped_images_and_exact_passes():
    """An image wrong everywhere is never attacked; images the first run fools to 0 pixels are not
    given to the next runs; the per-image passes are what each image took (APGD stops early)."""
    model = PerImage(ToySegmenter(num_classes=5, seed=1))
    images = torch.rand(3, 3, 10, 12, generator=torch.Generator().manual_seed(2)) * 255
    with torch.no_grad():
        labels = model(images).argmax(1)
    labels[0] = (labels[0] + 1) % 5
    labels[1:, 1:] = 255
    labels[1:, 0, 2:] = 255                               # two labelled pixels
    counter = ImageCounter(model)
    result = SEA(32, num_steps=20).run(counter, images, labels=labels)
    passes = result.info['gradient_passes'].tolist()
    assert passes[0] == 0 and result.info['chosen'][0] == 0 and torch.equal(result.adv[0], images[0])
    assert counter.gradient_images == sum(passes)
    # the first run fools images 1 and 2 early (APGD's exact early stop); the others skip them
    first = build_attack(sea_members(20)[0], 32).run(model, images[1:], labels=labels[1:])
    assert first.info['accuracy'].tolist() == [0.0, 0.0]
    assert passes[1:] == first.info['gradient_passes'].tolist() and 0 < passes[1] < 20
    assert result.info['chosen'].tolist() == [0, 1, 1]
    assert result.info['accuracy'].tolist() == [0.0, 0.0, 0.0]
    full = SEA(32, num_steps=20, skip_solved=False).run(model, images, labels=labels)
    assert torch.equal(full.adv, result.adv)


def test_bound_range_and_determinism(setup):
    model, images, labels = setup
    torch.manual_seed(3)
    a = SEA(4, num_steps=8)(model, images, labels=labels)
    torch.manual_seed(4)
    b = SEA(4, num_steps=8)(model, images, labels=labels)
    assert torch.equal(a, b)
    assert float((a - images).abs().max()) <= 4 + 1e-4
    assert float(a.min()) >= 0 and float(a.max()) <= 255


def test_bad_arguments():
    with pytest.raises(ValueError, match='configure the default members'):
        SEA(8, attacks=['pgd'], num_steps=10)
    with pytest.raises(ValueError, match='num_steps must be a positive integer'):
        SEA(8, num_steps=0)
