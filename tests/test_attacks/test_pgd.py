"""PGD (Madry et al. 2018) with Xiang et al.'s defaults."""
import pytest
import torch
import torch.nn.functional as F

from attacks import build_attack
from attacks.base import attack_class
from attacks.pgd import PGD

from .reference_pgd import CountingModel, ref_pgd


def _ce(model, x, y):
    with torch.no_grad():
        return F.cross_entropy(model(x), y, ignore_index=255).item()


def test_defaults_follow_xiang():
    attack = PGD(8)
    assert attack.num_steps == 20 and attack.alpha == pytest.approx(0.4) and attack.random_start
    assert PGD(8, num_steps=100).alpha == pytest.approx(0.08)
    assert PGD(8, num_steps=200, alpha=0.5).alpha == 0.5
    assert attack.params() == {'alpha': attack.alpha, 'num_steps': 20, 'random_start': True, 'seed': 0}
    assert attack_class('PGD') is PGD and isinstance(build_attack(dict(type='pgd', num_steps=5), 4), PGD)


@pytest.mark.parametrize('kwargs', [dict(num_steps=0), dict(num_steps=2.5), dict(alpha=0),
                                    dict(alpha=float('nan')), dict(random_start=1), dict(seed=-1)])
def test_bad_arguments_rejected(kwargs):
    with pytest.raises(ValueError):
        PGD(8, **kwargs)


@pytest.mark.parametrize('eps', [0.5, 8, 32])
@pytest.mark.parametrize('random_start', [True, False])
def test_bound_and_range(eps, random_start, toy_model, toy_images):
    images = toy_images.clone()
    images[0, :, :3] = 0.0      # saturated pixels: the [0, 255] clip must act
    images[1, :, -3:] = 255.0
    adv = PGD(eps, num_steps=5, random_start=random_start)(toy_model, images)
    assert adv.shape == images.shape and adv.dtype == torch.float32 and not adv.requires_grad
    assert (adv - images).abs().max() <= eps + 1e-4
    assert adv.min() >= 0 and adv.max() <= 255
    assert (adv != images).any()


def test_gradient_passes(toy_model, toy_images):
    model = CountingModel(toy_model)
    attack = PGD(8, num_steps=7)
    attack(model, toy_images)
    assert model.grad_calls == attack.gradient_passes() == 7


def test_random_start_seeded_and_independent_of_global_rng(toy_model, toy_images):
    attack = PGD(8, num_steps=3)
    torch.manual_seed(123)
    a = attack(toy_model, toy_images)
    torch.manual_seed(456)
    b = PGD(8, num_steps=3)(toy_model, toy_images)
    assert torch.equal(a, b)
    start0 = PGD(8, seed=0).initial_point(toy_images)
    start1 = PGD(8, seed=1).initial_point(toy_images)
    assert not torch.equal(start0, start1)
    assert not torch.equal(a, PGD(8, num_steps=3, seed=1)(toy_model, toy_images))


def test_random_start_is_uniform_in_the_ball(toy_images):
    images = torch.full((1, 3, 40, 40), 128.0)
    delta = PGD(8).initial_point(images) - images
    assert delta.abs().max() <= 8 and delta.min() < -7 and delta.max() > 7
    assert abs(delta.mean().item()) < 0.3 and delta.std().item() == pytest.approx(8 / 3 ** 0.5, rel=0.05)
    # the two images of a batch get different noise
    start = PGD(8).initial_point(toy_images) - toy_images
    assert not torch.equal(start[0], start[1])
    assert torch.equal(PGD(8, random_start=False).initial_point(toy_images), toy_images)


def test_batch_independent(toy_model, toy_images):
    """Per-image seeding: an image gets the same result alone or in a batch, in any position."""
    attack = PGD(8, num_steps=5)
    batch = attack(toy_model, toy_images)
    single = torch.cat([attack(toy_model, toy_images[i:i + 1]) for i in range(len(toy_images))])
    torch.testing.assert_close(batch, single)
    swapped = attack(toy_model, toy_images.flip(0)).flip(0)
    torch.testing.assert_close(batch, swapped)


@pytest.mark.parametrize('eps,steps', [(2, 4), (8, 20)])
def test_matches_reference_without_random_start(eps, steps, toy_model, toy_images):
    labels = toy_model(toy_images).argmax(1)
    adv = PGD(eps, num_steps=steps, random_start=False)(toy_model, toy_images)
    torch.testing.assert_close(adv, ref_pgd(toy_model, toy_images, labels, eps, eps / steps, steps),
                               atol=1e-3, rtol=0)


def test_matches_reference_from_the_same_start(toy_model, toy_images):
    attack = PGD(8, num_steps=10, alpha=1.5, seed=3)
    labels = toy_model(toy_images).argmax(1)
    start = attack.initial_point(toy_images)
    torch.testing.assert_close(attack(toy_model, toy_images),
                               ref_pgd(toy_model, toy_images, labels, 8, 1.5, 10, start=start),
                               atol=1e-3, rtol=0)


def test_targeted_matches_reference_and_lowers_target_loss(toy_model, toy_images):
    target = (toy_model(toy_images).argmax(1) + 1) % 5
    attack = PGD(8, num_steps=10, random_start=False)
    adv = attack(toy_model, toy_images, target=target)
    torch.testing.assert_close(adv, ref_pgd(toy_model, toy_images, None, 8, 0.8, 10, target=target),
                               atol=1e-3, rtol=0)
    assert _ce(toy_model, adv, target) < _ce(toy_model, toy_images, target)
    # the runner scores PGD as untargeted
    assert not PGD.targeted and attack.reference_target(None) is None


def test_untargeted_loss_increases(toy_model, toy_images):
    labels = toy_model(toy_images).argmax(1)
    adv = PGD(4)(toy_model, toy_images)
    assert _ce(toy_model, adv, labels) > _ce(toy_model, toy_images, labels)


def test_default_labels_are_clean_prediction(toy_model, toy_images):
    labels = toy_model(toy_images).argmax(1)
    attack = PGD(4, num_steps=3)
    assert torch.equal(attack(toy_model, toy_images), attack(toy_model, toy_images, labels=labels))


def test_mask_restricts_perturbation(toy_model, toy_images):
    mask = torch.zeros(toy_images.shape[:1] + toy_images.shape[2:], dtype=torch.bool)
    mask[:, 4:8, 4:8] = True
    for random_start in (True, False):
        attack = PGD(8, num_steps=5, random_start=random_start)
        adv = attack(toy_model, toy_images, mask=mask)
        delta = (adv - toy_images).abs().amax(1)
        assert (delta[~mask] == 0).all() and (delta[mask] > 0).any()


def test_ignore_index_gives_no_loss(toy_model, toy_images):
    labels = torch.full(toy_images.shape[:1] + toy_images.shape[2:], 255, dtype=torch.long)
    assert torch.equal(PGD(8, random_start=False)(toy_model, toy_images, labels=labels), toy_images)
    attack = PGD(8, num_steps=5)   # with a random start, no pixel moves away from the start
    assert torch.equal(attack(toy_model, toy_images, labels=labels), attack.initial_point(toy_images))
    # a partial map: the ignored rows leave the loss, so the result changes, and matches the reference
    labels = toy_model(toy_images).argmax(1)
    part = labels.clone()
    part[:, :6] = 255
    attack = PGD(8, num_steps=4, random_start=False)
    adv = attack(toy_model, toy_images, labels=part)
    assert not torch.equal(adv, attack(toy_model, toy_images, labels=labels))
    torch.testing.assert_close(adv, ref_pgd(toy_model, toy_images, part, 8, 2.0, 4), atol=1e-3, rtol=0)
