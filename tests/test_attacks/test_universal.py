"""Universal perturbations for segmentation (Metzen et al. 2017, Sec. 3.3): fit, apply, store."""
import math

import pytest
import torch
import torch.nn.functional as F

from attacks.base import attack_class
from attacks.fitted import FitBatch, read_artifact_metadata
from attacks.targeted import metzen_loss
from attacks.targets import hide_class_target, static_target
from attacks.universal import UniversalPerturbation, fold_tiles, tile_perturbation
from conftest import CountingModel, ToySegmenter

H, W = 16, 24


def _images(n, seed, lo=0.0, hi=255.0):
    g = torch.Generator().manual_seed(seed)
    return lo + torch.rand((n, 3, H, W), generator=g) * (hi - lo)


def _target_map():
    t = torch.full((H, W), 1, dtype=torch.long)
    t[H // 2:, :W // 2] = 2
    t[H // 2:, W // 2:] = 4
    t[:3, :4] = 255                                   # a void region: no loss there
    return t


def _pred(model, x):
    with torch.no_grad():
        return model(x).argmax(1)


def _batches(model, images, batch_size, target_fn=None):
    """A FitData callable: FitBatch(images, clean prediction, target or None) per batch."""
    def batches():
        for i in range(0, len(images), batch_size):
            x = images[i:i + batch_size]
            labels = _pred(model, x)
            yield FitBatch(x, labels, None if target_fn is None else target_fn(x, labels))
    return batches


def _static(x, labels):
    return static_target(_target_map(), len(x))


@pytest.fixture(scope='module')
def model():
    return ToySegmenter(num_classes=5, seed=0)


# the toy distribution of the fitting and held-out splits: moderate-contrast noise images (a universal
# ε = 10 perturbation has a clear effect on the random toy model there)
@pytest.fixture(scope='module')
def train_images():
    return _images(8, seed=10, lo=96, hi=160)


@pytest.fixture(scope='module')
def held_out():
    return _images(8, seed=11, lo=96, hi=160)


@pytest.fixture(scope='module')
def targeted_fit(model, train_images):
    """Metzen's defaults (ε = 10, α = 1, n = 60), static target, periodic 8 x 12 tile."""
    return UniversalPerturbation(10, tile_size=(8, 12)).fit(model, _batches(model, train_images, 3, _static))


@pytest.fixture(scope='module')
def untargeted_fit(model, train_images):
    return UniversalPerturbation(10, num_steps=20).fit(model, _batches(model, train_images, 4))


def _tiny_fit(model, tile_size=(5, 7), **kwargs):
    images = _images(4, seed=3)
    return UniversalPerturbation(10, num_steps=3, tile_size=tile_size, **kwargs).fit(
        model, _batches(model, images, 2, _static))


# -- construction --------------------------------------------------------------------------------

def test_defaults_follow_metzen_and_registry():
    attack = UniversalPerturbation()
    assert (attack.epsilon, attack.alpha, attack.num_steps) == (10.0, 1.0, 60)
    assert (attack.tau, attack.omega) == (0.75, None)
    assert attack.tile_size is None and not attack.fitted and attack.requires_fit
    assert attack.gradient_passes() == 0 and not attack.targeted and attack.accepts_target
    assert attack_class('universal') is UniversalPerturbation
    assert attack_class('Metzen2017_Universal') is UniversalPerturbation
    assert UniversalPerturbation(4, tile_size=512).tile_size == (512, 512)
    assert UniversalPerturbation(4, tile_size=(3, 5)).params() == {
        'alpha': 1.0, 'num_steps': 60, 'tile_size': [3, 5], 'omega': None, 'tau': 0.75}


@pytest.mark.parametrize('kwargs', [
    dict(epsilon=0), dict(epsilon=float('nan')), dict(alpha=0), dict(alpha=-1), dict(alpha=float('inf')),
    dict(num_steps=0), dict(num_steps=2.5), dict(num_steps=True), dict(tile_size=0), dict(tile_size=(3,)),
    dict(tile_size=(3, 0)), dict(tile_size=(2.5, 3)), dict(tile_size='ab'), dict(tile_size=True),
    dict(tile_size=(3, 4, 5)), dict(omega=1.5), dict(omega=True), dict(tau=1.0), dict(tau=-0.1)])
def test_bad_arguments_rejected(kwargs):
    kwargs = {'epsilon': 10, **kwargs}
    with pytest.raises(ValueError, match=next(iter(k for k in kwargs if k != 'epsilon'), 'epsilon')):
        UniversalPerturbation(**kwargs)


def test_bad_fitting_data_rejected(model):
    x = _images(4, seed=5)
    labels = _pred(model, x)
    attack = UniversalPerturbation(4, num_steps=1)
    with pytest.raises(ValueError, match='callable'):
        attack.fit(model, [FitBatch(x, labels, None)])
    with pytest.raises(ValueError, match='no images'):
        attack.fit(model, lambda: iter(()))
    with pytest.raises(ValueError, match='some fitting batches carry a target'):
        attack.fit(model, lambda: iter([FitBatch(x[:2], labels[:2], None),
                                        FitBatch(x[2:], labels[2:], labels[2:])]))
    with pytest.raises(ValueError, match='same size'):
        attack.fit(model, lambda: iter([FitBatch(x, labels, None),
                                        FitBatch(x[..., :8], labels[..., :8], None)]))
    with pytest.raises(ValueError, match='labels'):
        attack.fit(model, lambda: iter([FitBatch(x, None, None)]))
    with pytest.raises(ValueError, match=r'\[0, 255\]'):
        attack.fit(model, lambda: iter([FitBatch(x * 2, labels, None)]))
    with pytest.raises(ValueError, match='omega'):
        UniversalPerturbation(4, num_steps=1, omega=0.9).fit(model, lambda: iter([FitBatch(x, labels, None)]))
    assert not attack.fitted


def test_not_fitted_raises(model):
    attack = UniversalPerturbation(4)
    with pytest.raises(RuntimeError, match='not fitted'):
        attack(model, _images(1, seed=0))
    with pytest.raises(RuntimeError, match='not fitted'):
        attack.save('/nonexistent/never_written.pt')


# -- tiling --------------------------------------------------------------------------------------

def test_tile_and_fold_are_adjoint():
    g = torch.Generator().manual_seed(0)
    proto = torch.randn((3, 5, 7), generator=g)
    full = tile_perturbation(proto, 16, 24)
    rows, cols = torch.arange(16) % 5, torch.arange(24) % 7
    assert torch.equal(full, proto[:, rows][:, :, cols])
    grad = torch.randn((3, 16, 24), generator=g)
    # <tile(p), g> = <p, fold(g)>
    inner = float((proto * fold_tiles(grad, 5, 7)).sum())
    assert float((full * grad).sum()) == pytest.approx(inner, rel=1e-5)
    assert torch.equal(tile_perturbation(proto, 3, 4), proto[:, :3, :4])      # tile larger than image
    assert fold_tiles(grad, 20, 30).shape == (3, 20, 30)


# -- applying ------------------------------------------------------------------------------------

def test_bound_and_range(targeted_fit, untargeted_fit, model):
    images = _images(3, seed=20)
    images[0, :, :4] = 0.0          # saturated pixels: the [0, 255] clip must act
    images[1, :, -4:] = 255.0
    for attack in (targeted_fit, untargeted_fit):
        proto = attack.proto_perturbation
        assert float(proto.abs().max()) <= attack.epsilon
        assert torch.equal(proto, proto.round())      # α = 1 sign steps from 0: whole grey levels
        adv = attack(model, images)
        assert adv.shape == images.shape
        assert float((adv - images).abs().max()) <= attack.epsilon + 1e-5
        assert float(adv.min()) >= 0.0 and float(adv.max()) <= 255.0
    assert float(targeted_fit.proto_perturbation.abs().max()) == 10.0


def test_same_perturbation_for_every_image(targeted_fit, model):
    images = _images(4, seed=21, lo=100, hi=150)      # mid-grey: no [0, 255] clipping
    delta = targeted_fit(model, images) - images
    for i in range(1, 4):
        torch.testing.assert_close(delta[i], delta[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(delta[0], targeted_fit.perturbation(H, W), atol=1e-4, rtol=0)


@pytest.mark.parametrize('size', [(H, W), (21, 30), (4, 5)])
def test_periodic_with_the_tile_size(targeted_fit, model, size):
    h, w = targeted_fit.tile_size
    images = 100 + torch.rand((2, 3) + size) * 50
    delta = targeted_fit(model, images) - images
    if size[0] > h:
        torch.testing.assert_close(delta[:, :, h:], delta[:, :, :-h], atol=1e-4, rtol=0)
    if size[1] > w:
        torch.testing.assert_close(delta[:, :, :, w:], delta[:, :, :, :-w], atol=1e-4, rtol=0)
    ph, pw = min(h, size[0]), min(w, size[1])
    torch.testing.assert_close(delta[0, :, :ph, :pw], targeted_fit.proto_perturbation[:, :ph, :pw],
                               atol=1e-4, rtol=0)


def test_full_size_perturbation_needs_the_fitting_size(untargeted_fit, model):
    assert untargeted_fit.tile_size is None and untargeted_fit.proto_perturbation.shape == (3, H, W)
    with pytest.raises(ValueError, match='fitted on 16x24 images without tiling'):
        untargeted_fit(model, 100 + torch.rand((1, 3, H, W + 2)) * 50)


def test_mask_respected(targeted_fit, model):
    images = _images(2, seed=22, lo=100, hi=150)
    mask = torch.rand((2, H, W), generator=torch.Generator().manual_seed(0)) > 0.5
    delta = targeted_fit(model, images, mask=mask) - images
    assert float(delta.abs().masked_select(~mask[:, None].expand_as(delta)).max()) == 0.0
    full = targeted_fit.perturbation(H, W).expand_as(delta)
    inside = mask[:, None].expand_as(delta)
    torch.testing.assert_close(delta[inside], full[inside], atol=1e-4, rtol=0)


def test_apply_target_is_accepted_and_unused(targeted_fit, model):
    images = _images(2, seed=23)
    target = static_target(_target_map(), 2)
    assert torch.equal(targeted_fit(model, images, target=target), targeted_fit(model, images))


# -- fitting -------------------------------------------------------------------------------------

def test_targeted_fit_lowers_metzen_loss_on_train_and_held_out(targeted_fit, model, train_images, held_out):
    info = targeted_fit.fit_info
    assert info['targeted'] and info['loss'] == 'J_ss' and info['objective'] == 'minimise'
    for x in (train_images, held_out):
        target = static_target(_target_map(), len(x))
        with torch.no_grad():
            clean = metzen_loss(model(x), target).mean()
            adv = metzen_loss(model(targeted_fit(model, x)), target).mean()
            success_clean = (model(x).argmax(1) == target)[target != 255].float().mean()
            success_adv = (model(targeted_fit(model, x)).argmax(1) == target)[target != 255].float().mean()
        assert float(adv) < 0.85 * float(clean)
        assert float(success_adv) > float(success_clean) + 0.1
    # the recorded losses are the train-set losses at ξ_0 = 0 ... ξ_n
    target = static_target(_target_map(), len(train_images))
    with torch.no_grad():
        clean_train = metzen_loss(model(train_images), target).mean()
        adv_train = metzen_loss(model(targeted_fit(model, train_images)), target).mean()
    assert info['initial_loss'] == pytest.approx(float(clean_train), rel=1e-4)
    assert info['final_loss'] == pytest.approx(float(adv_train), rel=1e-4)
    assert len(info['loss_per_step']) == 60 and info['loss_per_step'][0] == info['initial_loss']
    assert info['final_loss'] < info['initial_loss']


def test_dynamic_target_fit_hides_a_class(model, train_images, held_out):
    hidden = int(torch.mode(_pred(model, train_images).flatten()).values)

    def hide(x, labels):
        return hide_class_target(labels, hidden)

    attack = UniversalPerturbation(10, num_steps=30, tile_size=8, omega=0.9999)
    attack.fit(model, _batches(model, train_images, 4, hide))
    assert attack.fit_info['loss'] == 'J^omega_ss'
    for x in (train_images, held_out):
        clean = _pred(model, x)
        adv = _pred(model, attack(model, x))
        was = clean == hidden
        assert float((adv[was] == hidden).float().mean()) < 0.5     # most hidden-class pixels changed
        assert float((adv[~was] == clean[~was]).float().mean()) > 0.7  # background mostly preserved


def test_untargeted_fit_raises_cross_entropy(untargeted_fit, model, train_images, held_out):
    info = untargeted_fit.fit_info
    assert not info['targeted'] and info['objective'] == 'maximise' and info['loss'] == 'cross_entropy'
    assert info['final_loss'] > info['initial_loss']
    for x in (train_images, held_out):
        labels = _pred(model, x)
        with torch.no_grad():
            clean = F.cross_entropy(model(x), labels)
            adv = F.cross_entropy(model(untargeted_fit(model, x)), labels)
        assert float(adv) > float(clean) + 0.3
        assert float((_pred(model, untargeted_fit(model, x)) != labels).float().mean()) > 0.2


def test_fit_info_and_cost(model):
    counting = CountingModel(ToySegmenter(num_classes=5, seed=0))
    images = _images(5, seed=4)
    attack = UniversalPerturbation(10, num_steps=4, tile_size=(5, 7))
    attack.fit(counting, _batches(model, images, 2, _static))
    assert counting.grad_calls == 4 * 3            # every step: one gradient pass over the 3 batches
    info = attack.fit_info
    assert info['num_images'] == 5 and info['num_batches'] == 3 and info['num_steps'] == 4
    assert info['image_size'] == [H, W] and info['tile_size'] == [5, 7]
    assert info['gradient_passes'] == 4 * 5 and info['forward_passes'] == 5
    assert len(info['loss_per_step']) == 4 and all(isinstance(v, float) for v in info['loss_per_step'])
    assert attack.gradient_passes() == 0


def test_deterministic(model):
    a, b = _tiny_fit(model), _tiny_fit(model)
    assert torch.equal(a.proto_perturbation, b.proto_perturbation)
    assert a.fit_info == b.fit_info


def test_refit_starts_from_zero(model):
    attack = _tiny_fit(model)
    first = attack.proto_perturbation.clone()
    images = _images(4, seed=3)
    attack.fit(model, _batches(model, images, 2, _static))
    assert torch.equal(attack.proto_perturbation, first)


def test_progress_bar(model, capsys):
    images = _images(2, seed=6)
    UniversalPerturbation(4, num_steps=2).fit(model, _batches(model, images, 2), progress=True)
    assert 'universal' in capsys.readouterr().err


# -- independent reference: plain torch, full batch ---------------------------------------------

def _ref_universal(model, images, labels, target, eps, alpha, steps, tile, tau, omega):
    """Metzen's update with ∇_D averaged over all images at once; tiling by index arithmetic,
    autograd through it (sum over tiles), straight-through through the [0, 255] clip."""
    n, _, hh, ww = images.shape
    h, w = tile
    rows, cols = torch.arange(hh) % h, torch.arange(ww) % w
    xi = torch.zeros((3, h, w))
    losses = []
    for _ in range(steps):
        p = xi.clone().requires_grad_(True)
        full = p[:, rows][:, :, cols]
        x = images + full
        x = x + (x.clamp(0, 255) - x).detach()
        logits = model(x)
        if target is None:
            loss = F.cross_entropy(logits, labels, ignore_index=255, reduction='none').sum((1, 2)) / (hh * ww)
            sign = 1.0
        else:
            tgt = torch.where(labels == 255, torch.full_like(target, 255), target)
            valid = tgt != 255
            safe = torch.where(valid, tgt, torch.zeros_like(tgt))
            prob = logits.detach().softmax(1)
            reached = (prob.argmax(1) == tgt) & (prob.gather(1, safe[:, None])[:, 0] > tau)
            weight = (valid & ~reached).float()
            if omega is not None:
                weight = weight * torch.where(tgt != labels, omega, 1 - omega)
            ce = F.cross_entropy(logits, tgt, ignore_index=255, reduction='none')
            loss = (weight * ce).sum((1, 2)) / (hh * ww)
            sign = -1.0
        mean = loss.mean()
        losses.append(float(mean.detach()))
        grad, = torch.autograd.grad(mean, p)
        xi = (xi + sign * alpha * grad.sign()).clamp(-eps, eps)
    return xi, losses


@pytest.mark.parametrize('kind', ['static', 'dynamic', 'untargeted'])
def test_matches_full_batch_reference(model, kind):
    images = _images(5, seed=30)
    images[0, :, :3] = 0.0
    images[1, :, -3:] = 255.0
    labels = _pred(model, images)
    if kind == 'static':
        target, omega, fn = static_target(_target_map(), 5), None, _static
    elif kind == 'dynamic':
        hidden = int(torch.mode(labels.flatten()).values)
        target, omega = hide_class_target(labels, hidden), 0.9
        fn = lambda x, lab: hide_class_target(lab, hidden)  # noqa: E731
    else:
        target, omega, fn = None, None, None
    attack = UniversalPerturbation(6, alpha=0.7, num_steps=3, tile_size=(5, 7), omega=omega, tau=0.75)
    attack.fit(model, _batches(model, images, 3, fn))   # batches of 3 + 2, gradients accumulated
    ref, ref_losses = _ref_universal(model, images, labels, target, 6.0, 0.7, 3, (5, 7), 0.75, omega)
    torch.testing.assert_close(attack.proto_perturbation, ref, atol=1e-5, rtol=0)
    assert attack.fit_info['loss_per_step'] == pytest.approx(ref_losses, rel=1e-5)
    assert float((ref.abs() > 0).float().mean()) > 0.9


# -- artifacts -----------------------------------------------------------------------------------

def test_save_load_round_trip(targeted_fit, model, tmp_path):
    path = targeted_fit.save(tmp_path / 'universal.pt', metadata={'model': 'toy'})
    loaded = UniversalPerturbation(10, tile_size=(8, 12)).load(path)
    assert loaded.fitted
    images = _images(3, seed=40)
    assert torch.equal(loaded(model, images), targeted_fit(model, images))
    assert loaded.fit_info == targeted_fit.fit_info
    meta = read_artifact_metadata(path)
    assert meta['attack'] == 'universal' and meta['run'] == {'model': 'toy'}
    assert meta['params']['tile_size'] == [8, 12]
    for other in (UniversalPerturbation(8, tile_size=(8, 12)), UniversalPerturbation(10, tile_size=(8, 8)),
                  UniversalPerturbation(10), UniversalPerturbation(10, tile_size=(8, 12), num_steps=30)):
        with pytest.raises(ValueError, match='was fitted with'):
            other.load(path)
        assert not other.fitted


def test_load_state_dict_validates(targeted_fit):
    attack = UniversalPerturbation(10, tile_size=(8, 12))
    with pytest.raises(ValueError, match='tile_size'):
        attack.load_state_dict({'perturbation': torch.zeros(3, 8, 8)})
    with pytest.raises(ValueError, match='exceeds'):
        attack.load_state_dict({'perturbation': torch.full((3, 8, 12), 11.0)})
    with pytest.raises(ValueError, match='perturbation'):
        attack.load_state_dict({'xi': torch.zeros(3, 8, 12)})
    attack.load_state_dict(targeted_fit.state_dict())
    assert torch.equal(attack.proto_perturbation, targeted_fit.proto_perturbation)
    assert math.isclose(float(attack.proto_perturbation.abs().max()), 10.0)


def test_apply_needs_no_model_and_equals_the_call():
    from attacks.universal import STATE_KEY
    attack = UniversalPerturbation(epsilon=4, tile_size=(3, 5))
    g = torch.Generator().manual_seed(0)
    proto = (torch.rand(3, 3, 5, generator=g) * 8 - 4).round()
    attack.load_state_dict({STATE_KEY: proto})
    images = (torch.rand(2, 3, 7, 11, generator=g) * 255).round()
    adv = attack.apply(images)
    assert torch.equal(adv, attack(lambda x: torch.zeros(len(x), 2, *x.shape[-2:]), images,
                                   labels=torch.zeros(2, 7, 11, dtype=torch.long)))
    assert torch.equal(adv[:, :, :3, :5], (images[:, :, :3, :5] + proto).clamp(0, 255))


# -- cost: one batched forward+backward per batch and step, the split read once ------------------

class _ImageCounter(torch.nn.Module):
    """Counts the images the model gets with and without a gradient to their pixels, per call."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.grad_batches, self.forward_batches = [], []

    def forward(self, x):
        (self.grad_batches if torch.is_grad_enabled() and x.requires_grad else self.forward_batches).append(len(x))
        return self.model(x)


class _Source:
    """A FitData that counts its calls; ``reuse_buffer`` yields views of one buffer it overwrites."""

    def __init__(self, model, images, batch_size, target_fn=None, reuse_buffer=False):
        self.inner = _batches(model, images, batch_size, target_fn)
        self.calls, self.reuse = 0, reuse_buffer
        self.buffer = torch.empty_like(images[:batch_size])

    def __call__(self):
        self.calls += 1
        for b in self.inner():
            if self.reuse:
                view = self.buffer[:len(b.images)]
                view.copy_(b.images)
                b = FitBatch(view, b.labels, b.target)
            yield b


def test_fit_costs_steps_times_images_in_batched_passes_and_reads_the_split_once(model, monkeypatch):
    import attacks.fitted as fitted
    images = _images(5, seed=4)
    counting = _ImageCounter(model)
    source = _Source(model, images, 2, _static)
    attack = UniversalPerturbation(10, num_steps=4, tile_size=(5, 7)).fit(counting, source)
    # each step: one forward+backward per batch of the split (2 + 2 + 1 images), no per-image pass
    assert counting.grad_batches == [2, 2, 1] * 4 and sum(counting.grad_batches) == 4 * 5
    assert counting.forward_batches == [2, 2, 1]                   # the final loss, forward only
    assert source.calls == 1 and attack.fit_info['split_reads'] == 1
    assert attack.fit_info['gradient_passes'] == 20 and attack.fit_info['forward_passes'] == 5

    # the same fit reading the split at every pass (as before replaying): bit-identical
    for disable in ({'FIT_REPLAY_BYTES': 0}, {'FIT_REPLAY_BYTES': 1000}, {}):
        for name, value in disable.items():
            monkeypatch.setattr(fitted, name, value)
        again = _Source(model, images, 2, _static)
        if not disable:
            again.replayable = False
        reread = UniversalPerturbation(10, num_steps=4, tile_size=(5, 7)).fit(model, again)
        assert again.calls == 5 and reread.fit_info['split_reads'] == 5     # 4 steps + final loss
        assert torch.equal(reread.proto_perturbation, attack.proto_perturbation)
        assert {**reread.fit_info, 'split_reads': 1} == attack.fit_info
        monkeypatch.undo()


def test_replayed_split_is_a_copy_of_what_the_source_yielded(model):
    images = _images(5, seed=4)
    fresh = UniversalPerturbation(10, num_steps=3, tile_size=(5, 7)).fit(model, _Source(model, images, 2, _static))
    source = _Source(model, images, 2, _static, reuse_buffer=True)
    reused = UniversalPerturbation(10, num_steps=3, tile_size=(5, 7)).fit(model, source)
    assert source.calls == 1
    assert torch.equal(reused.proto_perturbation, fresh.proto_perturbation)
