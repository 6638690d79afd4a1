"""MI-FGSM (Dong et al. 2018) with Xiang et al.'s settings."""
import pytest
import torch
import torch.nn.functional as F

from attacks.base import attack_class
from attacks.mifgsm import MIFGSM

from .reference_pgd import CountingModel, ref_mifgsm, ref_pgd


def _ce(model, x, y):
    with torch.no_grad():
        return F.cross_entropy(model(x), y, ignore_index=255).item()


def test_defaults_follow_xiang_and_dong():
    attack = MIFGSM(8)
    assert attack.num_steps == 20 and attack.decay == 1.0 and attack.alpha == pytest.approx(0.4)
    assert not attack.random_start
    assert attack.params() == {'alpha': attack.alpha, 'num_steps': 20, 'decay': 1.0}
    assert attack_class('mi-fgsm') is MIFGSM and attack_class('MIFGSM') is MIFGSM
    with pytest.raises(ValueError, match='decay'):
        MIFGSM(8, decay=0)


@pytest.mark.parametrize('eps', [0.5, 8, 32])
def test_bound_and_range(eps, toy_model, toy_images):
    images = toy_images.clone()
    images[0, :, :3] = 0.0
    images[1, :, -3:] = 255.0
    adv = MIFGSM(eps, num_steps=5)(toy_model, images)
    assert (adv - images).abs().max() <= eps + 1e-4
    assert adv.min() >= 0 and adv.max() <= 255 and (adv != images).any()


def test_gradient_passes(toy_model, toy_images):
    model = CountingModel(toy_model)
    attack = MIFGSM(8)
    attack(model, toy_images)
    assert model.grad_calls == attack.gradient_passes() == 20


def test_deterministic(toy_model, toy_images):
    assert torch.equal(MIFGSM(4)(toy_model, toy_images), MIFGSM(4)(toy_model, toy_images))


@pytest.mark.parametrize('eps,steps,mu', [(8, 20, 1.0), (4, 10, 0.5), (16, 5, 1.0)])
def test_matches_reference(eps, steps, mu, toy_model, toy_images):
    labels = toy_model(toy_images).argmax(1)
    adv = MIFGSM(eps, num_steps=steps, decay=mu)(toy_model, toy_images)
    torch.testing.assert_close(adv, ref_mifgsm(toy_model, toy_images, labels, eps, steps, mu),
                               atol=1e-3, rtol=0)


def test_momentum_matters(toy_model, toy_images):
    """Momentum changes the trajectory: MI-FGSM differs from PGD with the same α and steps."""
    labels = toy_model(toy_images).argmax(1)
    adv = MIFGSM(8, num_steps=20)(toy_model, toy_images)
    assert not torch.allclose(adv, ref_pgd(toy_model, toy_images, labels, 8, 0.4, 20), atol=1e-3)


def test_l1_normalisation_is_per_image():
    """Each image's normalised gradient has unit L1 norm, whatever the other images' scale."""
    g = torch.randn(3, 3, 4, 5) * torch.tensor([1e-3, 1.0, 1e3]).view(3, 1, 1, 1)
    _, momentum = MIFGSM(8).step_direction(g, None)
    torch.testing.assert_close(momentum.abs().sum((1, 2, 3)), torch.ones(3))
    _, momentum2 = MIFGSM(8, decay=0.5).step_direction(g, momentum)
    torch.testing.assert_close(momentum2, 0.5 * momentum + momentum)


def test_batch_independent(toy_model, toy_images):
    batch = MIFGSM(8)(toy_model, toy_images)
    single = torch.cat([MIFGSM(8)(toy_model, toy_images[i:i + 1]) for i in range(len(toy_images))])
    torch.testing.assert_close(batch, single)


def test_untargeted_loss_increases(toy_model, toy_images):
    labels = toy_model(toy_images).argmax(1)
    assert _ce(toy_model, MIFGSM(4)(toy_model, toy_images), labels) > _ce(toy_model, toy_images, labels)


def test_targeted_lowers_target_loss(toy_model, toy_images):
    target = (toy_model(toy_images).argmax(1) + 2) % 5
    adv = MIFGSM(8)(toy_model, toy_images, target=target)
    assert _ce(toy_model, adv, target) < _ce(toy_model, toy_images, target)


def test_mask_restricts_perturbation(toy_model, toy_images):
    mask = torch.zeros(toy_images.shape[:1] + toy_images.shape[2:], dtype=torch.bool)
    mask[:, 2:9, 3:7] = True
    adv = MIFGSM(8)(toy_model, toy_images, mask=mask)
    delta = (adv - toy_images).abs().amax(1)
    assert (delta[~mask] == 0).all() and (delta[mask] > 0).any()


def test_ignore_index_gives_no_loss(toy_model, toy_images):
    """All pixels ignored: zero gradient, no division by a zero L1 norm, no pixel moves."""
    labels = toy_model(toy_images).argmax(1)
    labels[0] = 255          # the first image only
    adv = MIFGSM(8)(toy_model, toy_images, labels=labels)
    assert torch.equal(adv[0], toy_images[0]) and not torch.isnan(adv).any()
    assert (adv[1] != toy_images[1]).any()
