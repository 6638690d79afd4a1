"""SegPGD (Gu et al. 2022) and CosPGD (Agnihotri et al. 2024): PGD with per-pixel loss weights."""
import pytest
import torch
import torch.nn.functional as F

from attacks.base import attack_class
from attacks.cospgd import CosPGD
from attacks.pgd import PGD
from attacks.segpgd import SegPGD, segpgd_lambda

from .reference_pgd import (CountingModel, ref_cospgd, ref_cospgd_weights, ref_segpgd,
                            ref_segpgd_weights)

BOTH = [SegPGD, CosPGD]


def _ce(model, x, y):
    with torch.no_grad():
        return F.cross_entropy(model(x), y, ignore_index=255).item()


@pytest.mark.parametrize('cls', BOTH)
def test_defaults(cls):
    attack = cls(8)
    assert attack.alpha == pytest.approx(2.55) and attack.num_steps == 20 and attack.random_start
    assert attack.params() == {'alpha': attack.alpha, 'num_steps': 20, 'random_start': True, 'seed': 0}
    assert cls(8, alpha=None, num_steps=10).alpha == pytest.approx(0.8)   # PGD's ε / T
    assert attack_class(cls.name) is cls and isinstance(attack, PGD)


def test_segpgd_lambda_schedule():
    assert [segpgd_lambda(t, 4) for t in (1, 2, 3, 4)] == [0.0, 0.125, 0.25, 0.375]
    assert segpgd_lambda(1, 20) == 0 and segpgd_lambda(20, 20) == pytest.approx(19 / 40)


def _logits_and_labels():
    g = torch.Generator().manual_seed(5)
    logits = torch.randn((2, 5, 6, 7), generator=g) * 3
    labels = torch.randint(0, 5, (2, 6, 7), generator=g)
    labels[0, 0] = 255
    labels[:, 3] = logits.argmax(1)[:, 3]      # some correctly classified pixels
    return logits, labels


@pytest.mark.parametrize('t', [1, 3, 10])
def test_segpgd_weights_match_reference(t):
    logits, labels = _logits_and_labels()
    weights = SegPGD(8, num_steps=10).pixel_weights(logits, labels, t, targeted=False)
    torch.testing.assert_close(weights, ref_segpgd_weights(logits, labels, t, 10))
    correct = logits.argmax(1) == labels
    assert correct.any() and (~correct & (labels != 255)).any()


def test_segpgd_targeted_weights_swap_roles():
    logits, target = _logits_and_labels()
    weights = SegPGD(8, num_steps=10).pixel_weights(logits, target, 3, targeted=True)
    lam = segpgd_lambda(3, 10)
    reached = logits.argmax(1) == target
    valid = target != 255
    assert torch.all(weights[reached & valid] == lam) and torch.all(weights[~reached & valid] == 1 - lam)
    assert torch.all(weights[~valid] == 0)


def test_cospgd_weights_match_reference():
    logits, labels = _logits_and_labels()
    weights = CosPGD(8).pixel_weights(logits, labels, 1, targeted=False)
    torch.testing.assert_close(weights, ref_cospgd_weights(logits, labels, 5))
    assert weights.min() >= 0 and weights.max() <= 1 and torch.all(weights[labels == 255] == 0)
    targeted = CosPGD(8).pixel_weights(logits, labels, 1, targeted=True)
    valid = labels != 255
    torch.testing.assert_close(targeted[valid], 1 - ref_cospgd_weights(logits, labels, 5)[valid])
    assert torch.all(targeted[~valid] == 0)


@pytest.mark.parametrize('eps,steps', [(8, 10), (4, 20)])
def test_segpgd_matches_reference(eps, steps, toy_model, toy_images):
    attack = SegPGD(eps, num_steps=steps, seed=2)
    labels = toy_model(toy_images).argmax(1)
    start = attack.initial_point(toy_images)
    torch.testing.assert_close(attack(toy_model, toy_images),
                               ref_segpgd(toy_model, toy_images, labels, eps, 2.55, steps, start),
                               atol=1e-3, rtol=0)


@pytest.mark.parametrize('eps,steps', [(8, 10), (4, 20)])
def test_cospgd_matches_reference(eps, steps, toy_model, toy_images):
    attack = CosPGD(eps, num_steps=steps, seed=2)
    labels = toy_model(toy_images).argmax(1)
    start = attack.initial_point(toy_images)
    torch.testing.assert_close(attack(toy_model, toy_images),
                               ref_cospgd(toy_model, toy_images, labels, eps, 2.55, steps, start, 5),
                               atol=1e-3, rtol=0)


@pytest.mark.parametrize('cls', BOTH)
def test_weighting_changes_the_attack(cls, toy_model, toy_images):
    """Same start, α and steps as PGD, yet a different result: the weights are used."""
    kwargs = dict(num_steps=10, alpha=1.0, random_start=False)
    assert not torch.equal(cls(8, **kwargs)(toy_model, toy_images), PGD(8, **kwargs)(toy_model, toy_images))


@pytest.mark.parametrize('cls', BOTH)
@pytest.mark.parametrize('eps', [0.5, 8])
def test_bound_and_range(cls, eps, toy_model, toy_images):
    images = toy_images.clone()
    images[0, :, :3] = 0.0
    images[1, :, -3:] = 255.0
    adv = cls(eps, num_steps=5)(toy_model, images)
    assert (adv - images).abs().max() <= eps + 1e-4
    assert adv.min() >= 0 and adv.max() <= 255 and (adv != images).any()


@pytest.mark.parametrize('cls', BOTH)
def test_gradient_passes(cls, toy_model, toy_images):
    model = CountingModel(toy_model)
    attack = cls(8, num_steps=6)
    attack(model, toy_images)
    assert model.grad_calls == attack.gradient_passes() == 6


@pytest.mark.parametrize('cls', BOTH)
def test_seeded_and_batch_independent(cls, toy_model, toy_images):
    attack = cls(8, num_steps=5)
    torch.manual_seed(0)
    a = attack(toy_model, toy_images)
    torch.manual_seed(1)
    assert torch.equal(a, attack(toy_model, toy_images))
    assert not torch.equal(a, cls(8, num_steps=5, seed=7)(toy_model, toy_images))
    single = torch.cat([attack(toy_model, toy_images[i:i + 1]) for i in range(len(toy_images))])
    torch.testing.assert_close(a, single)


@pytest.mark.parametrize('cls', BOTH)
def test_untargeted_loss_increases(cls, toy_model, toy_images):
    labels = toy_model(toy_images).argmax(1)
    adv = cls(4)(toy_model, toy_images)
    assert _ce(toy_model, adv, labels) > _ce(toy_model, toy_images, labels)


@pytest.mark.parametrize('cls', BOTH)
def test_targeted_lowers_target_loss(cls, toy_model, toy_images):
    target = (toy_model(toy_images).argmax(1) + 1) % 5
    adv = cls(8)(toy_model, toy_images, target=target)
    assert _ce(toy_model, adv, target) < _ce(toy_model, toy_images, target)


@pytest.mark.parametrize('cls', BOTH)
def test_mask_restricts_perturbation(cls, toy_model, toy_images):
    mask = torch.zeros(toy_images.shape[:1] + toy_images.shape[2:], dtype=torch.bool)
    mask[:, 4:8, 4:8] = True
    adv = cls(8, num_steps=5)(toy_model, toy_images, mask=mask)
    delta = (adv - toy_images).abs().amax(1)
    assert (delta[~mask] == 0).all() and (delta[mask] > 0).any()


@pytest.mark.parametrize('cls', BOTH)
def test_ignore_index_gives_no_loss(cls, toy_model, toy_images):
    labels = torch.full(toy_images.shape[:1] + toy_images.shape[2:], 255, dtype=torch.long)
    attack = cls(8, num_steps=5)
    assert torch.equal(attack(toy_model, toy_images, labels=labels), attack.initial_point(toy_images))
    assert torch.equal(cls(8, random_start=False)(toy_model, toy_images, labels=labels), toy_images)
