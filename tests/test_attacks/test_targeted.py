"""Targeted iterative dense attack of Metzen et al. (2017): loss, τ rule, ω weighting, attack."""
import math

import pytest
import torch
import torch.nn.functional as F

from attacks import attack_class, build_attack
from attacks.base import arnab_num_steps
from attacks.targeted import METZEN_HIDING_OMEGA, TargetedIterativeFGSM, metzen_loss, metzen_pixel_weights
from attacks.targets import hidden_class_mask, hide_class_target, static_target
from conftest import CountingModel


def _logits(probs):
    """(N, H, W, C) probabilities → (N, C, H, W) logits with exactly those softmax values."""
    return torch.tensor(probs, dtype=torch.float64).log().permute(0, 3, 1, 2).contiguous()


# one image, 1 x 4 pixels, 3 classes
PROBS = [[[[0.90, 0.05, 0.05],     # target 0, reached with p = 0.9 > τ: zero loss
           [0.60, 0.30, 0.10],     # target 0, predicted but p = 0.6 < τ: counts
           [0.80, 0.10, 0.10],     # target 1, not predicted: counts
           [0.20, 0.30, 0.50]]]]   # target 255: no loss
TARGET = torch.tensor([[[0, 0, 1, 255]]])


# -- the loss -----------------------------------------------------------------------------------

def test_tau_rule_zeroes_confident_target_pixels():
    logits = _logits(PROBS).requires_grad_(True)
    loss = metzen_loss(logits, TARGET, tau=0.75)
    assert loss.shape == (1,)
    assert loss.item() == pytest.approx((-math.log(0.6) - math.log(0.1)) / 4)
    grad, = torch.autograd.grad(loss.sum(), logits)
    assert (grad[0, :, 0, 0] == 0).all()                 # confident pixel: no gradient
    assert (grad[0, :, 0, 3] == 0).all()                 # ignored pixel: no gradient
    assert (grad[0, :, 0, 1] != 0).any() and (grad[0, :, 0, 2] != 0).any()
    # without the rule the confident pixel counts too
    assert metzen_loss(logits, TARGET, tau=None).item() == pytest.approx(
        (-math.log(0.9) - math.log(0.6) - math.log(0.1)) / 4)


def test_tau_rule_needs_the_target_predicted():
    """Below 0.5 a probability above τ does not imply the argmax: the rule asks for both."""
    logits = _logits([[[[0.35, 0.45, 0.20], [0.50, 0.30, 0.20]]]])
    target = torch.tensor([[[0, 0]]])
    loss = metzen_loss(logits, target, tau=0.3)
    assert loss.item() == pytest.approx(-math.log(0.35) / 2)


def test_unweighted_loss_is_mean_cross_entropy_per_image():
    """J_ss = 1/|I| Σ J_cls, per image: the batch loss is the per-image mean cross-entropy."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn((3, 5, 4, 6), generator=g, dtype=torch.float64)
    target = torch.randint(0, 5, (3, 4, 6), generator=g)
    loss = metzen_loss(logits, target, tau=None)
    expected = torch.stack([F.cross_entropy(logits[i:i + 1], target[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(loss, expected)
    # each image's loss depends on its own pixels only
    torch.testing.assert_close(metzen_loss(logits[1:2], target[1:2], tau=None), loss[1:2])


def test_omega_weighting():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn((2, 4, 3, 5), generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 4, (2, 3, 5), generator=g)
    primary = torch.rand((2, 3, 5), generator=g) < 0.4
    unweighted = metzen_loss(logits, target, tau=None)
    ce = F.cross_entropy(logits, target, reduction='none') / 15
    # ω = 1: only I_o; ω = 0: only I_bg; ω = 0.5: half the unweighted loss
    torch.testing.assert_close(metzen_loss(logits, target, primary, omega=1.0, tau=None),
                               (ce * primary).flatten(1).sum(1))
    torch.testing.assert_close(metzen_loss(logits, target, primary, omega=0.0, tau=None),
                               (ce * ~primary).flatten(1).sum(1))
    torch.testing.assert_close(metzen_loss(logits, target, primary, omega=0.5, tau=None), 0.5 * unweighted)
    w = 0.9999
    torch.testing.assert_close(metzen_loss(logits, target, primary, omega=w, tau=None),
                               (ce * (w * primary + (1 - w) * ~primary)).flatten(1).sum(1))
    # ω = 1 ignores background pixels: no gradient there, whatever their logits
    grad, = torch.autograd.grad(metzen_loss(logits, target, primary, omega=1.0, tau=None).sum(), logits)
    assert (grad.abs().sum(1)[~primary] == 0).all() and (grad.abs().sum(1)[primary] > 0).all()
    changed = logits.detach().clone()
    changed[:, :, ~primary[0]] += 5.0 * torch.randn_like(changed[:, :, ~primary[0]])
    assert metzen_loss(changed, target, primary, omega=1.0, tau=None)[0].item() == pytest.approx(
        metzen_loss(logits, target, primary, omega=1.0, tau=None)[0].item())
    with pytest.raises(ValueError, match='primary'):
        metzen_pixel_weights(logits, target, omega=0.5)


# -- the attack -----------------------------------------------------------------------------------

def _clean(model, images):
    with torch.no_grad():
        return model(images).argmax(1)


def _hide_setup(model, images):
    pred = _clean(model, images)
    hidden = int(torch.bincount(pred.flatten()).argmax())    # the most frequent clean class
    return pred, hidden, hide_class_target(pred, hidden)


def _success(model, x, target):
    return (_clean(model, x) == target).double().mean().item()


def test_target_required(toy_model, toy_images):
    with pytest.raises(ValueError, match='target'):
        TargetedIterativeFGSM(8)(toy_model, toy_images)
    with pytest.raises(ValueError, match='target'):
        next(TargetedIterativeFGSM(8).iterate(toy_model, toy_images, _clean(toy_model, toy_images)))


@pytest.mark.parametrize('eps', [2, 8])
def test_bound_and_range(eps, toy_model, toy_images):
    images = toy_images.clone()
    images[0, :, :3] = 0.0
    images[1, :, -3:] = 255.0
    _, _, target = _hide_setup(toy_model, images)
    adv = TargetedIterativeFGSM(eps, num_steps=15)(toy_model, images, target=target)
    assert adv.shape == images.shape and adv.dtype == torch.float32 and not adv.requires_grad
    assert (adv - images).abs().max() <= eps + 1e-4
    assert adv.min() >= 0 and adv.max() <= 255
    assert (adv != images).any()


@pytest.mark.parametrize('omega', [None, METZEN_HIDING_OMEGA])
def test_hide_class_lowers_loss_and_raises_success(omega, toy_model, toy_images):
    pred, hidden, target = _hide_setup(toy_model, toy_images)
    adv = TargetedIterativeFGSM(32, omega=omega)(toy_model, toy_images, target=target)
    with torch.no_grad():
        loss_clean = metzen_loss(toy_model(toy_images), target, tau=None).sum()
        loss_adv = metzen_loss(toy_model(adv), target, tau=None).sum()
    assert loss_adv < loss_clean
    hidden_px = pred == hidden
    assert (_clean(toy_model, adv)[hidden_px] != hidden).double().mean() > 0.5
    if omega is None:
        assert _success(toy_model, adv, target) > _success(toy_model, toy_images, target) + 0.1


def test_static_target_raises_success(toy_model, toy_images):
    target = static_target(_clean(toy_model, toy_images)[1], len(toy_images))
    adv = TargetedIterativeFGSM(32)(toy_model, toy_images, target=target)
    assert _success(toy_model, adv, target) > _success(toy_model, toy_images, target) + 0.05


def test_omega_trades_hiding_against_background(toy_model, toy_images):
    pred, hidden, target = _hide_setup(toy_model, toy_images)
    hidden_px = pred == hidden
    out = {}
    for omega in (0.0, 1.0):
        adv = TargetedIterativeFGSM(32, omega=omega)(toy_model, toy_images, target=target)
        adv_pred = _clean(toy_model, adv)
        out[omega] = ((adv_pred[hidden_px] != hidden).double().mean().item(),
                      (adv_pred[~hidden_px] == pred[~hidden_px]).double().mean().item())
    assert out[1.0][0] > out[0.0][0] + 0.2        # ω = 1 hides more
    assert out[0.0][1] > out[1.0][1] + 0.1        # ω = 0 preserves the background better


def test_deterministic_and_batch_independent(toy_model, toy_images):
    _, _, target = _hide_setup(toy_model, toy_images)
    attack = TargetedIterativeFGSM(8, num_steps=12, omega=METZEN_HIDING_OMEGA)
    a = attack(toy_model, toy_images, target=target)
    assert torch.equal(a, attack(toy_model, toy_images, target=target))
    single = torch.cat([attack(toy_model, toy_images[i:i + 1], target=target[i:i + 1]) for i in range(2)])
    torch.testing.assert_close(a, single)


def test_mask_restricts_perturbation(toy_model, toy_images):
    pred, hidden, target = _hide_setup(toy_model, toy_images)
    mask = hidden_class_mask(pred, hidden)
    adv = TargetedIterativeFGSM(16, num_steps=20)(toy_model, toy_images, target=target, mask=mask)
    delta = (adv - toy_images).abs().amax(1)
    assert (delta[~mask] == 0).all() and (delta[mask] > 0).any()


def test_tau_and_omega_are_wired_into_the_attack(toy_model, toy_images):
    """Target = clean prediction: every pixel is reached (τ ≈ 0) and I_o is empty (ω = 1), so the
    loss and its gradient are zero and nothing moves; without the rule the attack moves."""
    pred = _clean(toy_model, toy_images)
    assert torch.equal(TargetedIterativeFGSM(8, tau=0.0)(toy_model, toy_images, target=pred), toy_images)
    assert torch.equal(TargetedIterativeFGSM(8, omega=1.0, tau=None)(toy_model, toy_images, target=pred),
                       toy_images)
    assert not torch.equal(TargetedIterativeFGSM(8, tau=None)(toy_model, toy_images, target=pred), toy_images)


def test_ignored_labels_and_targets_give_no_loss(toy_model, toy_images):
    _, _, target = _hide_setup(toy_model, toy_images)
    ignored = torch.full_like(target, 255)
    attack = TargetedIterativeFGSM(8, num_steps=5)
    assert torch.equal(attack(toy_model, toy_images, target=ignored), toy_images)
    assert torch.equal(attack(toy_model, toy_images, labels=ignored, target=target), toy_images)


def reference_attack(model, images, target, clean, eps, num_steps, omega, tau, alpha=1.0):
    """The paper's loop written out: ξ ← Clip_ε(ξ − α sign ∇ J^ω_ss), with the τ rule."""
    n, _, h, w = images.shape
    adv = images.clone()
    for _ in range(num_steps):
        x = adv.clone().requires_grad_(True)
        logits = model(x)
        valid = target != 255
        safe = torch.where(valid, target, torch.zeros_like(target))
        logp = logits.log_softmax(1).gather(1, safe[:, None])[:, 0]
        reached = (logits.argmax(1) == target) & (logp.exp() > tau)
        base = torch.ones_like(logp) if omega is None else torch.where(target != clean, omega, 1 - omega)
        weight = (base * valid * ~reached).detach() / (h * w)
        grad, = torch.autograd.grad((weight * -logp).sum(), x)
        adv = (images + (adv - alpha * grad.sign() - images).clamp(-eps, eps)).clamp(0, 255)
    return adv


@pytest.mark.parametrize('omega', [None, 0.9])
def test_matches_reference_loop(omega, toy_model, toy_images):
    pred, _, target = _hide_setup(toy_model, toy_images)
    adv = TargetedIterativeFGSM(6, num_steps=8, omega=omega)(toy_model, toy_images, target=target)
    ref = reference_attack(toy_model, toy_images, target, pred, 6, 8, omega, 0.75)
    torch.testing.assert_close(adv, ref, atol=1e-3, rtol=0)


def test_steps_and_gradient_passes(toy_model, toy_images):
    _, _, target = _hide_setup(toy_model, toy_images)
    assert TargetedIterativeFGSM(10).num_steps == 60                       # Metzen et al.
    assert TargetedIterativeFGSM(10, num_steps=None).num_steps == arnab_num_steps(10)   # Fischer et al.
    model = CountingModel(toy_model)
    attack = TargetedIterativeFGSM(4, num_steps=7)
    attack(model, toy_images, target=target)
    assert model.grad_calls == attack.gradient_passes() == 7


def test_registry_params_and_reference_target():
    attack = build_attack(dict(type='targeted_ifgsm', omega=METZEN_HIDING_OMEGA), 10)
    assert isinstance(attack, TargetedIterativeFGSM) and attack_class('metzen2017') is TargetedIterativeFGSM
    assert attack.targeted and attack.reference_target(object()) is None
    assert attack.params() == {'alpha': 1.0, 'num_steps': 60, 'omega': 0.9999, 'tau': 0.75}
    assert 'omega=0.9999' in repr(attack)


@pytest.mark.parametrize('kwargs', [dict(omega=1.5), dict(omega=-0.1), dict(omega='0.5'), dict(tau=1.0),
                                    dict(tau=-0.2), dict(num_steps=0), dict(alpha=0)])
def test_bad_hyper_parameters_rejected(kwargs):
    with pytest.raises(ValueError):
        TargetedIterativeFGSM(8, **kwargs)
