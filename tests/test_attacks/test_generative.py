"""Generative adversarial perturbations (Poursaeed et al. 2018): generators, scaling, fitting, artifacts."""
import math

import pytest
import torch
import torch.nn.functional as F

from attacks.base import attack_class
from attacks.fitted import FitBatch, read_artifact_metadata
from attacks.generative import GenerativePerturbation, fit_to_size, scale_linf
from attacks.generators import ResnetGenerator, ResnetBlock, UnetGenerator
from conftest import ToySegmenter

H, W = 16, 24
TINY = dict(ngf=4, n_blocks=1, unet_depth=3, dropout=False, lr=1e-2, beta1=0.5, epochs=None)


def _data(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, 3, H, W), generator=g) * 255


def _batches(images, labels, target=None, batch_size=4):
    def it():
        for i in range(0, len(images), batch_size):
            yield FitBatch(images[i:i + batch_size], labels[i:i + batch_size],
                           None if target is None else target[i:i + batch_size])
    return it


@pytest.fixture(scope='module')
def setup():
    model = ToySegmenter()
    images = _data()
    with torch.no_grad():
        labels = model(images).argmax(1)
    target = torch.zeros_like(labels)
    target[:, :, W // 2:] = 2                               # a static target map: classes 0 | 2
    return model, images, labels, target


def _grey(n=3):
    """Mid-grey images (no clipping at ε ≤ 100), each a different constant."""
    return torch.stack([torch.full((3, H, W), 110.0 + 10 * i) for i in range(n)])


# -- generators ---------------------------------------------------------------------------------

@pytest.mark.parametrize('net', [ResnetGenerator(ngf=2, n_blocks=1, norm='instance', activation='selu'),
                                 ResnetGenerator(ngf=2, n_blocks=2, norm='batch', activation='relu', dropout=True),
                                 UnetGenerator(ngf=2, depth=3), UnetGenerator(ngf=2, depth=4, norm='batch')])
@pytest.mark.parametrize('size', [(17, 23), (16, 24), (1, 5), (33, 8)])
def test_generator_output_shape_equals_input_shape(net, size):
    x = torch.rand((2, 3, *size)) * 2 - 1
    y = net.train()(x)
    assert y.shape == x.shape
    assert y.abs().max() <= 1.0                             # tanh
    assert net.eval()(x).shape == x.shape


def test_resnet_generator_layout_follows_the_reference():
    net = ResnetGenerator(ngf=3, n_blocks=4, norm='instance', activation='selu', dropout=True)
    convs = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert [c.kernel_size[0] for c in convs] == [7, 3, 3] + [3] * 8 + [3, 3, 7]
    assert [c.out_channels for c in convs] == [3, 6, 12] + [12] * 8 + [6, 3, 3]
    assert [m.stride[0] for m in convs[1:3]] == [2, 2]
    assert sum(isinstance(m, ResnetBlock) for m in net.modules()) == 4
    assert sum(isinstance(m, torch.nn.Dropout) for m in net.modules()) == 4
    assert all(c.bias is not None for c in convs)           # use_bias = (norm == 'instance')
    assert isinstance(net.model[-1], torch.nn.Tanh)
    bn = ResnetGenerator(ngf=3, n_blocks=1, norm='batch')
    convs = [m for m in bn.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert all(c.bias is None for c in convs[:-1]) and convs[-1].bias is not None


def test_unet_depth_8_is_the_reference_unet():
    net = UnetGenerator(ngf=1, depth=8)
    down = [m for m in net.down.modules() if isinstance(m, torch.nn.Conv2d)]
    up = [m for m in net.up.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [c.out_channels for c in down] == [1, 2, 4, 8, 8, 8, 8, 8]
    assert [c.in_channels for c in up] == [8, 16, 16, 16, 16, 8, 4, 2]      # dconv1 … dconv8
    assert [c.out_channels for c in up] == [8, 8, 8, 8, 4, 2, 1, 3]
    assert sum(isinstance(m, torch.nn.Dropout) for m in net.modules()) == 3
    assert isinstance(net.up[-1][-1], torch.nn.Tanh)


# -- scaling ----------------------------------------------------------------------------------------

def test_scaling_is_per_image_and_channel_min_one():
    raw = torch.zeros((2, 3, 4, 5))
    raw[0, 0, 1, 1] = 0.8                                   # large: scaled down to ε
    raw[0, 1] = -0.5
    raw[0, 2, 0, 0] = 0.01                                  # 0.01 · 128 = 1.28 < ε: kept as is
    raw[1, 0, 2, 3] = 0.2                                   # image 1, channel 1, 2: zero stays zero
    delta = scale_linf(raw, 8.0)
    assert delta[0, 0].abs().max().item() == pytest.approx(8.0)
    assert delta[0, 0, 1, 1].item() == pytest.approx(8.0)
    assert torch.allclose(delta[0, 1], torch.full((4, 5), -8.0))
    assert delta[0, 2, 0, 0].item() == pytest.approx(1.28)
    assert delta[1, 0, 2, 3].item() == pytest.approx(8.0)
    assert (delta[1, 1:] == 0).all()
    # the coefficient is a constant for back-propagation (the code rescales .data)
    raw = (torch.rand((1, 3, 4, 5)) - 0.5).requires_grad_(True)
    grad, = torch.autograd.grad(scale_linf(raw, 4.0).sum(), raw)
    peak = raw.detach().abs().amax(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(grad, (4.0 / peak).expand_as(raw))


def test_fit_to_size_crops_top_left_or_tiles():
    delta = torch.arange(12.0).reshape(1, 1, 3, 4)
    assert torch.equal(fit_to_size(delta, 2, 3), delta[..., :2, :3])
    tiled = fit_to_size(delta, 5, 9)
    assert tiled.shape == (1, 1, 5, 9)
    assert torch.equal(tiled[..., :3, :4], delta) and torch.equal(tiled[..., 3:5, 4:8], delta[..., :2, :])


# -- applying ---------------------------------------------------------------------------------------

@pytest.mark.parametrize('mode', ['universal', 'image_dependent'])
@pytest.mark.parametrize('generator', ['resnet', 'unet'])
def test_bound_and_range(setup, mode, generator):
    model, images, _, _ = setup
    attack = GenerativePerturbation(6, mode=mode, generator=generator, **TINY, num_iters=1).initialize((H, W))
    adv = attack(model, images)
    assert adv.shape == images.shape
    assert adv.min() >= 0 and adv.max() <= 255
    assert (adv - images).abs().max() <= 6 + 1e-4
    grey = _grey()
    delta = attack(model, grey) - grey
    # the generator's output is scaled up to ε in every channel of every image
    assert torch.allclose(delta.abs().amax(dim=(2, 3)), torch.full((3, 3), 6.0), atol=1e-4)


def test_universal_delta_is_the_same_for_every_image_and_image_dependent_is_not(setup):
    model = setup[0]
    grey = _grey()
    uni = GenerativePerturbation(10, mode='universal', **TINY, num_iters=1).initialize((H, W))
    delta = uni(model, grey) - grey
    assert delta.abs().max() > 9
    for i in range(1, 3):
        torch.testing.assert_close(delta[i], delta[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(delta[0:1], uni.universal_perturbation, atol=1e-4, rtol=0)
    dep = GenerativePerturbation(10, mode='image_dependent', **TINY, num_iters=1).initialize()
    delta = dep(model, grey) - grey
    assert (delta[1] - delta[0]).abs().max() > 0.1 and (delta[2] - delta[1]).abs().max() > 0.1


def test_universal_perturbation_is_tiled_or_cropped_to_other_sizes(setup):
    model = setup[0]
    uni = GenerativePerturbation(10, mode='universal', **TINY, num_iters=1).initialize((H, W))
    u = uni.universal_perturbation
    small = torch.full((2, 3, 5, 7), 128.0)
    torch.testing.assert_close(uni(model, small) - small, u[..., :5, :7].expand(2, -1, -1, -1), atol=1e-4, rtol=0)
    big = torch.full((1, 3, H + 3, 2 * W), 128.0)
    torch.testing.assert_close(uni(model, big) - big, fit_to_size(u, H + 3, 2 * W), atol=1e-4, rtol=0)


@pytest.mark.parametrize('mode', ['universal', 'image_dependent'])
def test_mask_is_respected(setup, mode):
    model = setup[0]
    grey = _grey(2)
    mask = torch.zeros((2, H, W))
    mask[0, 3:9, 5:15] = 1
    mask[1, :, :4] = 1
    attack = GenerativePerturbation(8, mode=mode, **TINY, num_iters=1).initialize((H, W))
    delta = attack(model, grey, mask=mask) - grey
    assert (delta * (1 - mask[:, None])).abs().max() == 0
    full = attack(model, grey) - grey
    torch.testing.assert_close(delta, full * mask[:, None])


def test_applying_needs_no_model_gradient(setup):
    model, images, _, _ = setup
    attack = GenerativePerturbation(8, **TINY, num_iters=1).initialize((H, W))
    assert attack.gradient_passes() == 0
    calls = []
    attack(lambda x: calls.append(x.requires_grad) or model(x), images)
    assert calls == [False]                                  # only the default-label forward pass


# -- fitting ----------------------------------------------------------------------------------------

def _ce(model, x, y):
    with torch.no_grad():
        return F.cross_entropy(model(x), y).item()


def test_targeted_fitting_lowers_the_loss_towards_a_static_target(setup):
    model, images, labels, target = setup
    untrained = GenerativePerturbation(16, mode='universal', **TINY, num_iters=40).initialize((H, W))
    attack = GenerativePerturbation(16, mode='universal', **TINY, num_iters=40)
    attack.fit(model, _batches(images, labels, target))
    before, adv = untrained(model, images), attack(model, images)
    assert _ce(model, adv, target) < _ce(model, before, target) - 0.4
    with torch.no_grad():
        assert (model(adv).argmax(1) == target).float().mean() > (model(before).argmax(1) == target).float().mean()
    info = attack.fit_info
    assert info['targeted'] is True and info['loss'] == 'log_ce_target'
    assert info['loss_per_iteration'][-1] < info['loss_per_iteration'][0]


@pytest.mark.parametrize('mode', ['universal', 'image_dependent'])
def test_untargeted_fitting_beats_random_noise_of_the_same_epsilon(setup, mode):
    model, images, labels, _ = setup
    eps = 16
    attack = GenerativePerturbation(eps, mode=mode, **TINY, num_iters=40)
    attack.fit(model, _batches(images, labels))
    adv = attack(model, images)
    g = torch.Generator().manual_seed(5)
    noisy = [torch.clamp(images + eps * torch.sign(torch.randn(images.shape, generator=g)), 0, 255)
             for _ in range(3)]
    with torch.no_grad():
        fooled = (model(adv).argmax(1) != labels).float().mean().item()
        fooled_noise = max((model(x).argmax(1) != labels).float().mean().item() for x in noisy)
    assert fooled > fooled_noise + 0.05
    assert _ce(model, adv, labels) > max(_ce(model, x, labels) for x in noisy)
    info = attack.fit_info
    assert info['targeted'] is False and info['loss'] == 'neg_log_ce'
    # eq. 1: the loss −log H decreases as the cross-entropy H grows
    assert info['loss_per_epoch'][-1] < info['loss_per_iteration'][0]


def test_losses_are_the_papers_equations(setup):
    model, images, labels, target = setup
    x, y, t = images[:2], labels[:2].clone(), target[:2].clone()
    y[0, :4] = 255
    attack = GenerativePerturbation(8, mode='image_dependent', **TINY, num_iters=1).initialize()
    with torch.no_grad():
        logits = model(attack(model, x))
        clean = model(x)
        # eq. 1: −log H(k(x̂), 1_cx), H the mean over non-ignored pixels
        assert attack.fooling_loss(model, x, y, None).item() == pytest.approx(
            -math.log(F.cross_entropy(logits, y, ignore_index=255).item()), rel=1e-5)
        # eq. 3: log H(k(x̂), 1_t); labels 255 give no loss either
        t_masked = torch.where(y == 255, torch.full_like(t, 255), t)
        assert attack.fooling_loss(model, x, y, t).item() == pytest.approx(
            math.log(F.cross_entropy(logits, t_masked, ignore_index=255).item()), rel=1e-5)
        # eq. 2: log H(k(x̂), 1_{k_ll(x)}), the least-likely class of the clean image per pixel
        ll = GenerativePerturbation(8, mode='image_dependent', **{**TINY, 'num_iters': 1},
                                    untargeted_loss='least_likely').initialize()
        ll_target = torch.where(y == 255, torch.full_like(y, 255), clean.argmin(1))
        assert ll.fooling_loss(model, x, y, None).item() == pytest.approx(
            math.log(F.cross_entropy(logits, ll_target, ignore_index=255).item()), rel=1e-5)


def test_least_likely_loss_fits(setup):
    model, images, labels, _ = setup
    attack = GenerativePerturbation(16, mode='image_dependent', untargeted_loss='least_likely',
                                    **TINY, num_iters=5).fit(model, _batches(images, labels))
    assert attack.fit_info['loss'] == 'least_likely' and attack.fit_info['iterations'] == 5
    assert attack.fit_info['gradient_passes'] == 20 and attack.fit_info['forward_passes'] == 20


def test_fit_info_epochs_iterations_and_schedule(setup):
    model, images, labels, _ = setup
    attack = GenerativePerturbation(8, **{**TINY, 'epochs': 3}, lr_decay_epochs=(1, 2))
    attack.fit(model, _batches(images, labels), progress=True)
    info = attack.fit_info
    assert info['iterations'] == 6 and info['epochs'] == 3
    assert info['num_fit_images'] == 8 and info['images_seen'] == 24
    assert len(info['loss_per_epoch']) == 3 and len(info['loss_per_iteration']) == 6
    assert info['lr_per_epoch'] == pytest.approx([1e-2, 5e-3, 2.5e-3])
    assert info['generator_parameters'] == sum(p.numel() for p in attack._net.parameters())
    assert info['noise_shape'] == [1, 3, H, W] and info['skipped_batches'] == 0
    assert info['gradient_passes'] == 24 and info['forward_passes'] == 0
    # num_iters stops inside an epoch
    attack = GenerativePerturbation(8, **{**TINY, 'epochs': 5}, num_iters=3).fit(model, _batches(images, labels))
    assert attack.fit_info['iterations'] == 3 and attack.fit_info['epochs'] == 2
    # the model's weights receive no gradient
    assert all(p.grad is None for p in model.parameters())


def test_fitting_is_deterministic_and_leaves_the_global_rng_alone(setup):
    model, images, labels, _ = setup
    kw = dict(TINY, dropout=True, num_iters=3, mode='image_dependent')
    rng = torch.get_rng_state()
    a = GenerativePerturbation(8, **kw, seed=3).fit(model, _batches(images, labels))
    assert torch.equal(torch.get_rng_state(), rng)
    b = GenerativePerturbation(8, **kw, seed=3).fit(model, _batches(images, labels))
    c = GenerativePerturbation(8, **kw, seed=4).fit(model, _batches(images, labels))
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.fit_info['loss_per_iteration'] == b.fit_info['loss_per_iteration']
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)
    assert torch.equal(a(model, images), b(model, images))
    u1 = GenerativePerturbation(8, **TINY, num_iters=1, seed=3).initialize((H, W))
    u2 = GenerativePerturbation(8, **TINY, num_iters=1, seed=4).initialize((H, W))
    assert not torch.equal(u1.state_dict()['noise'], u2.state_dict()['noise'])
    assert u1.state_dict()['noise'].min() >= -1 and u1.state_dict()['noise'].max() <= 1


@pytest.mark.parametrize('mode', ['universal', 'image_dependent'])
def test_save_load_round_trip_is_bitwise(setup, tmp_path, mode):
    model, images, labels, _ = setup
    kw = dict(TINY, norm='batch', activation='relu', mode=mode, num_iters=2)
    attack = GenerativePerturbation(8, **kw).fit(model, _batches(images, labels))
    path = attack.save(tmp_path / 'gap.pt', metadata={'model': 'toy'})
    meta = read_artifact_metadata(path)
    assert meta['attack'] == 'gap' and meta['fit_info']['iterations'] == 2 and meta['run'] == {'model': 'toy'}
    loaded = GenerativePerturbation(8, **kw).load(path)
    assert loaded.fitted and loaded.fit_info == attack.fit_info
    assert torch.equal(loaded(model, images), attack(model, images))
    other = torch.rand((2, 3, 11, 13)) * 255
    assert torch.equal(loaded(model, other), attack(model, other))
    with pytest.raises(ValueError, match='ngf'):
        GenerativePerturbation(8, **{**kw, 'ngf': 5}).load(path)
    with pytest.raises(ValueError, match='epsilon'):
        GenerativePerturbation(4, **kw).load(path)
    with pytest.raises(ValueError, match='mode'):
        GenerativePerturbation(8, **{**kw, 'mode': ({'universal', 'image_dependent'} - {mode}).pop()}).load(path)


def test_load_state_dict_refuses_a_mismatched_state(setup):
    state = GenerativePerturbation(8, **TINY, num_iters=1).initialize((H, W)).state_dict()
    with pytest.raises(ValueError, match='cannot be loaded'):
        GenerativePerturbation(8, **TINY, num_iters=1, mode='image_dependent').load_state_dict(state)
    with pytest.raises(ValueError, match='generator weights'):
        GenerativePerturbation(8, **{**TINY, 'ngf': 5}, num_iters=1).load_state_dict(state)


# -- registry and arguments -------------------------------------------------------------------------

def test_registered_under_its_names():
    for name in ('gap', 'generative', 'poursaeed2018', 'GAP'):
        assert attack_class(name) is GenerativePerturbation
    attack = GenerativePerturbation(8)
    assert attack.display_name == 'Generative perturbation' and attack.requires_fit and attack.accepts_target
    assert attack.params()['lr'] == 8e-5 and attack.params()['beta1'] == 0.9
    assert attack.params()['epochs'] == 20 and attack.params()['n_blocks'] == 9
    assert 'unet_depth' not in attack.params() and 'n_blocks' not in GenerativePerturbation(8, generator='unet').params()


@pytest.mark.parametrize('kwargs, match', [
    (dict(epsilon=-1), 'epsilon'), (dict(mode='targeted'), 'mode'), (dict(generator='vgg'), 'generator'),
    (dict(ngf=0), 'ngf'), (dict(n_blocks=-1), 'n_blocks'), (dict(unet_depth=1), 'unet_depth'),
    (dict(norm='layer'), 'norm'), (dict(activation='gelu'), 'activation'), (dict(dropout=1), 'dropout'),
    (dict(epochs=0), 'epochs'), (dict(num_iters=1.5), 'num_iters'), (dict(epochs=None), 'never stop'),
    (dict(lr=0), 'lr'), (dict(beta1=1.0), 'beta1'), (dict(lr_decay_epochs=3), 'lr_decay_epochs'),
    (dict(lr_decay_epochs=[0]), 'lr_decay_epochs'), (dict(untargeted_loss='cw'), 'untargeted_loss'),
    (dict(seed=-1), 'seed'), (dict(seed=True), 'seed'),
])
def test_bad_arguments_raise_clear_errors(kwargs, match):
    kwargs = {'epsilon': 8, **kwargs}
    with pytest.raises(ValueError, match=match):
        GenerativePerturbation(**kwargs)


def test_misuse_is_reported(setup):
    model, images, labels, target = setup
    with pytest.raises(RuntimeError, match='not fitted'):
        GenerativePerturbation(8)(model, images)
    attack = GenerativePerturbation(8, **TINY, num_iters=2)
    with pytest.raises(ValueError, match='callable'):
        attack.fit(model, list(_batches(images, labels)()))
    with pytest.raises(ValueError, match='no fitting images'):
        attack.fit(model, lambda: iter([]))
    mixed = lambda: iter([FitBatch(images[:4], labels[:4], target[:4]), FitBatch(images[4:], labels[4:], None)])
    with pytest.raises(ValueError, match='mix'):
        attack.fit(model, mixed)
    assert not attack.fitted                                 # a failed fit leaves no half-trained state
    ignored = torch.full_like(labels, 255)
    with pytest.raises(ValueError, match='no fitting pixel'):
        attack.fit(model, _batches(images, ignored))
    with pytest.raises(ValueError, match=r'\[0, 255\]'):
        attack.fit(model, _batches(images / 255 - 0.5, labels))
    with pytest.raises(ValueError, match='image_size'):
        attack.initialize()


# -- cost: one batched model pass per batch and optimiser step, the split read once --------------

class _ImageCounter(torch.nn.Module):
    """Counts the images the model gets with a gradient path back to the generator, and without."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.grad_batches, self.forward_batches = [], []

    def forward(self, x):
        (self.grad_batches if torch.is_grad_enabled() and x.requires_grad else self.forward_batches).append(len(x))
        return self.model(x)


class _Source:
    def __init__(self, *args, **kwargs):
        self.inner, self.calls = _batches(*args, **kwargs), 0

    def __call__(self):
        self.calls += 1
        yield from self.inner()


@pytest.mark.parametrize('mode,loss', [('universal', 'neg_log_ce'), ('image_dependent', 'least_likely')])
def test_fit_costs_one_batched_pass_per_step_and_reads_the_split_once(setup, monkeypatch, mode, loss):
    import attacks.fitted as fitted
    model, images, labels, _ = setup
    kw = dict(TINY, epochs=3, mode=mode, untargeted_loss=loss, dropout=True)
    counting, source = _ImageCounter(model), _Source(images, labels, batch_size=3)
    attack = GenerativePerturbation(8, **kw).fit(counting, source)
    assert counting.grad_batches == [3, 3, 2] * 3                       # 3 epochs over 8 images
    assert counting.forward_batches == ([3, 3, 2] * 3 if loss == 'least_likely' else [])
    info = attack.fit_info
    assert info['gradient_passes'] == 24 and info['forward_passes'] == (24 if loss == 'least_likely' else 0)
    assert source.calls == 1 and info['split_reads'] == 1
    # reading the split at every epoch instead (as before replaying): bit-identical generator
    monkeypatch.setattr(fitted, 'FIT_REPLAY_BYTES', 0)
    again = _Source(images, labels, batch_size=3)
    reread = GenerativePerturbation(8, **kw).fit(model, again)
    assert again.calls == 3 and reread.fit_info['split_reads'] == 3
    sa, sb = attack.state_dict(), reread.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert reread.fit_info['loss_per_iteration'] == info['loss_per_iteration']


def test_an_unfinished_pass_is_read_again_and_a_finished_one_replayed(setup):
    """num_iters can end the first pass early: only a pass read to its end is replayed."""
    from attacks.fitted import ReplayedFitData
    _, images, labels, _ = setup
    source = _Source(images, labels, batch_size=3)
    data = ReplayedFitData(source)
    first = next(iter(data()))                          # a pass abandoned after one batch
    assert torch.equal(first.images, images[:3])
    assert [len(b.images) for b in data()] == [3, 3, 2] and source.calls == 2
    replayed = list(data())
    assert source.calls == 2 and len(replayed) == 3
    assert torch.equal(torch.cat([b.images for b in replayed]), images)
    assert torch.equal(torch.cat([b.labels for b in replayed]), labels)
    assert all(b.target is None and isinstance(b, FitBatch) for b in replayed)
    # 5 iterations over 3 batches per epoch: the first epoch reads the split, the second replays it
    source = _Source(images, labels, batch_size=3)
    attack = GenerativePerturbation(8, **dict(TINY, epochs=None), num_iters=5).fit(setup[0], source)
    assert attack.fit_info['iterations'] == 5 and attack.fit_info['epochs'] == 2 and source.calls == 1
