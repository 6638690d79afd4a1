"""The four attacks of Arnab et al. (2018): FGSM, FGSM II, Iterative FGSM, Iterative FGSM II."""
import pytest
import torch
import torch.nn.functional as F

from attacks import (FGSM, FGSMLeastLikely, IterativeFGSM, IterativeFGSMLeastLikely,
                     arnab_num_steps, attack_class, build_attack)

from .reference import ref_fgsm, ref_fgsm_ll, ref_ifgsm
from conftest import CountingModel

ALL = [FGSM, FGSMLeastLikely, IterativeFGSM, IterativeFGSMLeastLikely]
EPSILONS = [0.25, 0.5, 1, 2, 4, 8, 16, 32]


@pytest.mark.parametrize('eps,steps', [(0.25, 1), (0.5, 1), (1, 2), (2, 3), (4, 5), (8, 10),
                                       (16, 20), (32, 36)])
def test_step_count_formula(eps, steps):
    assert arnab_num_steps(eps) == steps
    assert IterativeFGSM(eps).num_steps == steps


@pytest.mark.parametrize('cls', ALL)
@pytest.mark.parametrize('eps', [0.25, 1, 8, 32])
def test_bound_and_range(cls, eps, toy_model, toy_images):
    images = toy_images.clone()
    images[0, :, :3] = 0.0      # saturated pixels: the [0, 255] clip must act
    images[1, :, -3:] = 255.0
    adv = cls(eps)(toy_model, images)
    assert adv.shape == images.shape and adv.dtype == torch.float32
    assert (adv - images).abs().max() <= eps + 1e-4
    assert adv.min() >= 0 and adv.max() <= 255
    assert not adv.requires_grad
    assert (adv != images).any()


@pytest.mark.parametrize('cls', ALL)
def test_gradient_passes_and_steps(cls, toy_model, toy_images):
    model = CountingModel(toy_model)
    attack = cls(8)
    attack(model, toy_images)
    assert model.grad_calls == attack.gradient_passes() == (10 if cls in (IterativeFGSM, IterativeFGSMLeastLikely) else 1)


@pytest.mark.parametrize('cls', ALL)
def test_deterministic(cls, toy_model, toy_images):
    a = cls(4)(toy_model, toy_images)
    b = cls(4)(toy_model, toy_images)
    assert torch.equal(a, b)


@pytest.mark.parametrize('cls', ALL)
def test_batch_independent(cls, toy_model, toy_images):
    """Attacking a batch equals attacking each image alone (summed loss, eval mode)."""
    batch = cls(4)(toy_model, toy_images)
    single = torch.cat([cls(4)(toy_model, toy_images[i:i + 1]) for i in range(len(toy_images))])
    torch.testing.assert_close(batch, single)


def test_fgsm_matches_reference(toy_model, toy_images):
    for eps in EPSILONS:
        labels = toy_model(toy_images).argmax(1)
        torch.testing.assert_close(FGSM(eps)(toy_model, toy_images),
                                   ref_fgsm(toy_model, toy_images, labels, eps), atol=1e-4, rtol=0)


def test_fgsm_ll_matches_reference(toy_model, toy_images):
    for eps in EPSILONS:
        torch.testing.assert_close(FGSMLeastLikely(eps)(toy_model, toy_images),
                                   ref_fgsm_ll(toy_model, toy_images, eps), atol=1e-4, rtol=0)


@pytest.mark.parametrize('eps', [0.5, 2, 8])
def test_ifgsm_matches_reference(eps, toy_model, toy_images):
    labels = toy_model(toy_images).argmax(1)
    torch.testing.assert_close(IterativeFGSM(eps)(toy_model, toy_images),
                               ref_ifgsm(toy_model, toy_images, labels, eps), atol=1e-3, rtol=0)


@pytest.mark.parametrize('eps', [0.5, 2, 8])
def test_ifgsm_ll_matches_reference(eps, toy_model, toy_images):
    torch.testing.assert_close(IterativeFGSMLeastLikely(eps)(toy_model, toy_images),
                               ref_ifgsm(toy_model, toy_images, None, eps, least_likely=True),
                               atol=1e-3, rtol=0)


def test_default_labels_are_clean_prediction(toy_model, toy_images):
    labels = toy_model(toy_images).argmax(1)
    assert torch.equal(FGSM(2)(toy_model, toy_images), FGSM(2)(toy_model, toy_images, labels=labels))
    gt = torch.zeros_like(labels)   # ground truth as an option changes the attack
    assert not torch.equal(FGSM(2)(toy_model, toy_images), FGSM(2)(toy_model, toy_images, labels=gt))


def _ce(model, x, y):
    with torch.no_grad():
        return F.cross_entropy(model(x), y, ignore_index=255).item()


@pytest.mark.parametrize('cls', [FGSM, IterativeFGSM])
def test_untargeted_loss_increases(cls, toy_model, toy_images):
    labels = toy_model(toy_images).argmax(1)
    adv = cls(4)(toy_model, toy_images)
    assert _ce(toy_model, adv, labels) > _ce(toy_model, toy_images, labels)


@pytest.mark.parametrize('cls', [FGSMLeastLikely, IterativeFGSMLeastLikely])
def test_least_likely_loss_decreases(cls, toy_model, toy_images):
    ll = toy_model(toy_images).argmin(1)
    adv = cls(4)(toy_model, toy_images)
    assert _ce(toy_model, adv, ll) < _ce(toy_model, toy_images, ll)


def test_least_likely_recomputed_every_iteration(toy_model, toy_images):
    """Iterative FGSM II uses the current iterate's least-likely class, not the clean one."""
    clean_ll = toy_model(toy_images).argmin(1)
    recomputed = IterativeFGSMLeastLikely(16)(toy_model, toy_images)
    fixed = IterativeFGSMLeastLikely(16)(toy_model, toy_images, target=clean_ll)
    assert not torch.equal(recomputed, fixed)


def test_ignore_index_gives_no_loss(toy_model, toy_images):
    labels = torch.full(toy_images.shape[:1] + toy_images.shape[2:], 255, dtype=torch.long)
    # every pixel ignored: zero gradient, so no pixel moves
    assert torch.equal(FGSM(8)(toy_model, toy_images, labels=labels), toy_images)
    assert torch.equal(FGSMLeastLikely(8)(toy_model, toy_images, labels=labels), toy_images)
    assert torch.equal(IterativeFGSM(8)(toy_model, toy_images, labels=labels), toy_images)


def test_mask_restricts_perturbation(toy_model, toy_images):
    mask = torch.zeros(toy_images.shape[:1] + toy_images.shape[2:], dtype=torch.bool)
    mask[:, 4:8, 4:8] = True
    for cls in ALL:
        adv = cls(8)(toy_model, toy_images, mask=mask)
        delta = (adv - toy_images).abs().amax(1)
        assert (delta[~mask] == 0).all() and (delta[mask] > 0).any()


def test_iterate_resumes_trajectory(toy_model, toy_images):
    """With α = 1, continuing ε=8's first 4 steps gives the same result as the full ε=32 run."""
    labels = toy_model(toy_images).argmax(1)
    attack = IterativeFGSM(32)
    steps = list(attack.iterate(toy_model, toy_images, labels))
    first = list(attack.iterate(toy_model, toy_images, labels, num_steps=4))[-1]
    rest = list(attack.iterate(toy_model, toy_images, labels, start=first, num_steps=32))[-1]
    assert torch.equal(first, steps[3]) and torch.equal(rest, steps[-1])


@pytest.mark.parametrize('bad', [0, -1, float('nan'), float('inf'), '8', None, True])
def test_bad_epsilon_rejected(bad):
    with pytest.raises(ValueError, match='epsilon'):
        FGSM(bad)


def test_registry_and_build():
    assert attack_class('FGSM') is FGSM and attack_class('fgsm_ii') is FGSMLeastLikely
    assert isinstance(build_attack(dict(type='ifgsm_ll'), 4), IterativeFGSMLeastLikely)
    with pytest.raises(KeyError, match='known attacks'):
        attack_class('deepfool')


def test_bad_inputs_rejected(toy_model, toy_images):
    with pytest.raises(ValueError, match=r'\[0, 255\]'):
        FGSM(1)(toy_model, toy_images / 255 * 2 - 1)
    with pytest.raises(ValueError, match='untargeted'):
        FGSM(1)(toy_model, toy_images, target=torch.zeros(2, 12, 16, dtype=torch.long))
    with pytest.raises(ValueError, match='shape'):
        FGSM(1)(toy_model, toy_images, labels=torch.zeros(2, 5, 5, dtype=torch.long))
