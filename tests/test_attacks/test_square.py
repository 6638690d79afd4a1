"""Square Attack, L∞ (Andriushchenko et al. 2020) with Xiang et al.'s cross-entropy loss oracle.

The ``ref_*`` functions below are an independent re-implementation from the papers' description
(plain torch, nothing imported from ``attacks/``): the p schedule written out by hand from
Andriushchenko et al.'s ``p_selection``, the per-image mean pixel cross-entropy, and one Square
update step. The trajectory test replays every query the attack makes against them.
"""
import pytest
import torch
from torch import nn

from attacks.base import AttackResult, attack_class
from attacks.square import SquareAttack

H, W = 16, 24


# -- independent reference ---------------------------------------------------------------------
def ref_p(p_init, i, n_iters):
    """p(i) of Andriushchenko et al.'s ``p_selection``, by hand: halve after the thresholds of a
    10 000-query budget, the iteration rescaled by ``int(i / n_iters * 10000)``."""
    it = int(i / n_iters * 10000)
    p = p_init
    for threshold in (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000):
        if it > threshold:
            p = p / 2
    return p


def ref_side(p, h, w):
    """s = round(sqrt(p · h · w)), at least 1, at most min(h, w)."""
    return min(max(int(round((p * h * w) ** 0.5)), 1), h, w)


def ref_loss(logits, y):
    """Mean over valid pixels of −log softmax(logits)_y for one image (C, H, W); 255 = no loss."""
    logp = torch.log_softmax(logits.double(), dim=0)
    valid = y != 255
    ce = -logp.gather(0, torch.where(valid, y, torch.zeros_like(y))[None])[0]
    return (ce * valid).sum() / max(int(valid.sum()), 1)


def ref_square_step(x, x_best, r, c, s, signs, eps, mask=None):
    """One Square L∞ proposal (one image, (3, H, W)): the s × s window at (r, c) of the current
    perturbation is replaced by ε · sign_k in channel k; clip to [0, 255]; δ = 0 off the mask."""
    new = x_best.clone()
    win = x[:, r:r + s, c:c + s] + eps * torch.tensor(signs, dtype=x.dtype)[:, None, None]
    win = win.clamp(0, 255)
    if mask is not None:
        win = torch.where(mask[r:r + s, c:c + s].bool(), win, x[:, r:r + s, c:c + s])
    new[:, r:r + s, c:c + s] = win
    return new


SIGNS = [(a, b, c) for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)]


def find_square(x, best, cand, s, eps, mask=None, tol=1e-3):
    """(r, c, signs) such that ``cand`` is ``ref_square_step`` of ``best``, or None."""
    changed = ((cand - best).abs() > tol).any(0)
    if not changed.any():
        return None
    rows, cols = torch.nonzero(changed, as_tuple=True)
    r0, r1, c0, c1 = int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())
    if r1 - r0 >= s or c1 - c0 >= s:
        return None
    for r in range(max(0, r1 - s + 1), min(r0, x.shape[1] - s) + 1):
        for c in range(max(0, c1 - s + 1), min(c0, x.shape[2] - s) + 1):
            for signs in SIGNS:
                if torch.allclose(ref_square_step(x, best, r, c, s, signs, eps, mask), cand,
                                  atol=tol, rtol=0):
                    return r, c, signs
    return None


class Recorder(nn.Module):
    """Records every query: the input batch, the logits, and whether autograd could see it."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.calls = []

    def forward(self, x):
        out = self.model(x)
        self.calls.append(dict(x=x.detach().clone(), logits=out.detach().clone(),
                               grad=torch.is_grad_enabled() or x.requires_grad))
        return out


@pytest.fixture
def images():
    g = torch.Generator().manual_seed(7)
    x = torch.rand((3, 3, H, W), generator=g) * 255
    x[0, :, :2] = 0.0        # saturated pixels: the [0, 255] clip must act
    x[1, :, -2:] = 255.0
    return x


def _pred(model, x):
    with torch.no_grad():
        return model(x).argmax(1)


# -- configuration -----------------------------------------------------------------------------
def test_defaults_and_registry():
    attack = SquareAttack(8)
    assert (attack.epsilon, attack.num_queries, attack.p_init, attack.init, attack.seed) == \
        (8.0, 1000, 0.05, 'vertical', 0)
    assert attack.params() == {'num_queries': 1000, 'p_init': 0.05, 'init': 'vertical', 'seed': 0}
    assert attack.gradient_passes() == 0
    assert attack_class('square') is SquareAttack and attack_class('Square') is SquareAttack
    assert SquareAttack.name == 'square' and SquareAttack.display_name == 'Square Attack'
    assert SquareAttack.accepts_target and not SquareAttack.targeted
    assert 'Andriushchenko' in SquareAttack.__doc__ and 'Xiang' in SquareAttack.__doc__
    assert SquareAttack(4, init='horizontal', num_queries=50, p_init=0.3, seed=2).params() == \
        {'num_queries': 50, 'p_init': 0.3, 'init': 'horizontal', 'seed': 2}


@pytest.mark.parametrize('kwargs,message', [
    (dict(epsilon=0), 'epsilon'), (dict(epsilon=-1), 'epsilon'),
    (dict(num_queries=0), 'num_queries'), (dict(num_queries=2.5), 'num_queries'),
    (dict(num_queries=True), 'num_queries'), (dict(p_init=0), 'p_init'),
    (dict(p_init=1.5), 'p_init'), (dict(p_init=float('nan')), 'p_init'),
    (dict(init='diagonal'), 'init'), (dict(init=None), 'init'),
    (dict(seed=-1), 'seed'), (dict(seed=1.5), 'seed')])
def test_bad_arguments_rejected(kwargs, message):
    kwargs = {'epsilon': 8, **kwargs}
    with pytest.raises(ValueError, match=message):
        SquareAttack(**kwargs)


# -- schedule, checked against values computed by hand from Andriushchenko et al.'s code ---------
def test_p_schedule_by_hand():
    attack_10k = SquareAttack(8, num_queries=10000, p_init=1.0)
    # n_iters = 10000: no rescaling; p halves *after* 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000
    sides = attack_10k.square_sides(512, 512)
    expected = {0: 512, 10: 512, 11: 362, 50: 362, 51: 256, 200: 256, 201: 181, 500: 181,
                501: 128, 1000: 128, 1001: 91, 2000: 91, 2001: 64, 4000: 64, 4001: 45,
                6000: 45, 6001: 32, 8000: 32, 8001: 23, 9998: 23}
    # round(512 · sqrt(2^-k)): 512, 362.04, 256, 181.02, 128, 90.51, 64, 45.25, 32, 22.63
    assert len(sides) == 9999
    assert {i: sides[i] for i in expected} == expected
    # n_iters = 1000: it = int(i / 1000 · 10000) = 10 i, so the thresholds fall at i = 1, 5, 20, ...
    from attacks.square import square_fraction
    by_hand_1000 = {0: 1, 1: 1, 2: 2, 5: 2, 6: 4, 20: 4, 21: 8, 50: 8, 51: 16, 100: 16, 101: 32,
                    200: 32, 201: 64, 400: 64, 401: 128, 600: 128, 601: 256, 800: 256, 801: 512,
                    999: 512}
    for i, div in by_hand_1000.items():
        assert square_fraction(0.05, i, 1000) == pytest.approx(0.05 / div) == ref_p(0.05, i, 1000)
    # n_iters = 30: it = 0, 333, 666, 1000, 1333, ... → divisors by hand
    by_hand_30 = [1, 8, 16, 16, 32, 32, 32, 64, 64, 64, 64, 64, 64, 128, 128, 128, 128, 128, 128,
                  256, 256, 256, 256, 256, 256, 512, 512, 512, 512]
    assert [square_fraction(1.0, i, 30) for i in range(29)] == [1 / d for d in by_hand_30]
    # sides on a 16 × 24 image with Andriushchenko's p_init = 0.05 and 1000 queries:
    # sqrt(0.05·384) = 4.38 → 4, sqrt(9.6) = 3.10 → 3, sqrt(4.8) = 2.19 → 2, sqrt(2.4) = 1.55 → 2,
    # sqrt(1.2) = 1.10 → 1, then 1 (never below 1)
    sides = SquareAttack(8).square_sides(H, W)
    assert [sides[i] for i in (0, 1, 2, 5, 6, 20, 21, 50, 51, 100, 998)] == \
        [4, 4, 3, 3, 2, 2, 2, 2, 1, 1, 1]
    assert sides == [ref_side(ref_p(0.05, i, 1000), H, W) for i in range(999)]
    # large p: capped at min(H, W) = 16 (sqrt(384) = 19.6); 512 × 1024 at 0.05: sqrt(26214.4) → 162
    assert SquareAttack(8, p_init=1.0, num_queries=2).square_sides(H, W) == [16]
    assert SquareAttack(8, num_queries=2).square_sides(512, 1024) == [162]


# -- constraints -------------------------------------------------------------------------------
@pytest.mark.parametrize('eps', [2, 8])
@pytest.mark.parametrize('init', ['vertical', 'horizontal'])
def test_bound_and_range(eps, init, toy_model, images):
    adv, info, *_ = SquareAttack(eps, num_queries=30, p_init=0.3, init=init).run(toy_model, images)
    assert adv.shape == images.shape and adv.dtype == torch.float32 and not adv.requires_grad
    assert (adv - images).abs().max() <= eps + 1e-4
    assert adv.min() >= 0 and adv.max() <= 255
    # L∞ Square stays on the boundary: every unclipped coordinate is at ±ε
    free = (images >= eps) & (images <= 255 - eps)
    assert torch.allclose((adv - images).abs()[free], torch.full_like(images[free], eps), atol=1e-4)
    assert set(info) == {'queries', 'loss'} and info['queries'].dtype == torch.int64


def test_mask_respected(toy_model, images):
    mask = torch.zeros((3, H, W), dtype=torch.bool)
    mask[:, 3:9, 5:14] = True
    mask[2] = False                     # an image with an empty mask is not perturbed at all
    attack = SquareAttack(8, num_queries=40, p_init=0.3)
    adv, info, *_ = attack.run(toy_model, images, mask=mask)
    delta = (adv - images).abs().amax(1)
    assert (delta[~mask] == 0).all() and (delta[:2][mask[:2]] > 0).all()
    assert torch.equal(adv[2], images[2])
    assert info['queries'].tolist() == [40, 40, 1]           # nothing to search for image 2
    start = attack.initial_point(images, mask[:, None].float())
    assert ((start - images).abs().amax(1)[~mask] == 0).all()
    # a full mask draws exactly what no mask draws
    full = torch.ones((3, H, W))
    assert torch.equal(attack(toy_model, images, mask=full), attack(toy_model, images))


# -- queries -----------------------------------------------------------------------------------
@pytest.mark.parametrize('budget', [1, 2, 17])
def test_queries_counted(budget, toy_model, images):
    model = Recorder(toy_model)
    labels = _pred(toy_model, images)
    adv, info, *_ = SquareAttack(8, num_queries=budget).run(model, images, labels=labels)
    assert len(model.calls) == budget                        # 1 initial + (budget − 1) iterations
    assert all(len(call['x']) == len(images) for call in model.calls)
    assert info['queries'].tolist() == [budget] * len(images)
    assert not any(call['grad'] for call in model.calls)     # no autograd, no backward
    # without labels, run() makes one extra (uncounted) clean pass for the default labels
    model = Recorder(toy_model)
    SquareAttack(8, num_queries=budget).run(model, images)
    assert len(model.calls) == budget + 1


def test_no_loss_pixels_stop_after_the_initial_query(toy_model, images):
    labels = _pred(toy_model, images)
    labels[1] = 255
    attack = SquareAttack(8, num_queries=20)
    adv, info, *_ = attack.run(toy_model, images, labels=labels)
    assert info['queries'].tolist() == [20, 1, 20] and info['loss'][1] == 0
    assert torch.equal(adv[1], attack.initial_point(images)[1])


# -- the algorithm, replayed against the independent reference -----------------------------------
@pytest.mark.parametrize('targeted,use_mask', [(False, False), (True, False), (False, True)])
def test_trajectory_matches_reference(targeted, use_mask, toy_model, images):
    eps, budget, p_init = 8.0, 30, 0.3
    labels = _pred(toy_model, images)
    target = (labels + 1) % 5 if targeted else None
    y = target if targeted else labels
    mask = None
    if use_mask:
        mask = torch.zeros((3, H, W))
        mask[:, 2:14, 3:20] = 1
    model = Recorder(toy_model)
    adv, info, *_ = SquareAttack(eps, num_queries=budget, p_init=p_init).run(
        model, images, labels=labels, target=target, mask=mask)
    assert len(model.calls) == budget
    for b in range(len(images)):
        x = images[b]
        m = None if mask is None else mask[b]
        best = model.calls[0]['x'][b]
        best_loss = ref_loss(model.calls[0]['logits'][b], y[b])
        first_loss, losses = best_loss, [best_loss]
        for i, call in enumerate(model.calls[1:]):
            cand, cand_loss = call['x'][b], ref_loss(call['logits'][b], y[b])
            s = ref_side(ref_p(p_init, i, budget), H, W)
            assert find_square(x, best, cand, s, eps, m) is not None, f'image {b}, iteration {i}'
            losses.append(cand_loss)
            if (cand_loss < best_loss) if targeted else (cand_loss > best_loss):
                best, best_loss = cand, cand_loss
        torch.testing.assert_close(adv[b], best, atol=1e-4, rtol=0)
        assert info['loss'][b].item() == pytest.approx(best_loss.item(), rel=1e-5)
        # monotone: the kept loss is the best loss of all queries (≥ / ≤ the stripes' loss)
        extreme = min(losses) if targeted else max(losses)
        assert best_loss.item() == pytest.approx(extreme.item(), rel=1e-6)
        assert (best_loss <= first_loss) if targeted else (best_loss >= first_loss)


# -- initialisation ----------------------------------------------------------------------------
@pytest.mark.parametrize('init', ['vertical', 'horizontal'])
def test_stripes_initialisation(init, toy_model):
    eps = 8.0
    images = torch.full((2, 3, H, W), 100.0)
    images[1] = 60.0
    attack = SquareAttack(eps, num_queries=1, init=init)
    start = attack.initial_point(images)
    adv, info, *_ = attack.run(toy_model, images)
    assert torch.equal(adv, start) and info['queries'].tolist() == [1, 1]
    delta = start - images
    assert set(delta.unique().tolist()) == {-eps, eps}
    axis = 2 if init == 'vertical' else 3    # vertical: constant down each column, per channel
    assert (delta == delta.select(axis, 0).unsqueeze(axis)).all()
    other = 3 if init == 'vertical' else 2
    assert not (delta == delta.select(other, 0).unsqueeze(other)).all()
    # every later budget starts from the same stripes (they are drawn first)
    model = Recorder(toy_model)
    attack = SquareAttack(eps, num_queries=5, init=init)
    attack(model, images)
    assert torch.equal(model.calls[1]['x'], start)       # calls[0]: the clean pass for the labels


# -- randomness --------------------------------------------------------------------------------
def test_deterministic_seeded_and_independent_of_global_rng(toy_model, images):
    attack = SquareAttack(8, num_queries=25, p_init=0.3)
    torch.manual_seed(1)
    a = attack(toy_model, images)
    torch.manual_seed(2)
    b = SquareAttack(8, num_queries=25, p_init=0.3)(toy_model, images)
    assert torch.equal(a, b)
    c = SquareAttack(8, num_queries=25, p_init=0.3, seed=1)(toy_model, images)
    assert all(not torch.equal(a[i], c[i]) for i in range(len(images)))
    assert not torch.equal(SquareAttack(8, seed=0).initial_point(images),
                           SquareAttack(8, seed=1).initial_point(images))


def test_batch_independent(toy_model, images):
    attack = SquareAttack(8, num_queries=25, p_init=0.3)
    adv, info, *_ = attack.run(toy_model, images)
    for i in range(len(images)):
        single, single_info, *_ = attack.run(toy_model, images[i:i + 1])
        assert torch.equal(single[0], adv[i])
        assert single_info['loss'][0].item() == pytest.approx(info['loss'][i].item(), rel=1e-6)
    swapped = attack(toy_model, images.flip(0)).flip(0)
    assert torch.equal(swapped, adv)


def test_loss_monotone_in_the_budget_prefix(toy_model, images):
    """The 1-query run (the stripes) is a prefix of every run: longer runs never lose loss. Runs
    with two budgets > 1 are *not* prefixes of each other (p(i) is rescaled to the budget)."""
    labels = _pred(toy_model, images)
    init_loss = SquareAttack(8, num_queries=1).run(toy_model, images, labels=labels).info['loss']
    for budget in (2, 10, 40):
        loss = SquareAttack(8, num_queries=budget).run(toy_model, images, labels=labels).info['loss']
        assert (loss >= init_loss).all()
    assert (loss > init_loss).all()          # 40 queries find something on the toy model
    # the reported loss is the oracle's loss of the returned images
    adv, info, *_ = SquareAttack(8, num_queries=40).run(toy_model, images, labels=labels)
    with torch.no_grad():
        logits = toy_model(adv)
    recomputed = torch.stack([ref_loss(logits[b], labels[b]) for b in range(len(images))])
    torch.testing.assert_close(info['loss'].double(), recomputed, rtol=1e-5, atol=1e-6)


# -- attack success ----------------------------------------------------------------------------
def test_untargeted_increases_loss(toy_model, images):
    labels = _pred(toy_model, images)
    adv = SquareAttack(8, num_queries=60)(toy_model, images)    # labels default: clean prediction
    with torch.no_grad():
        clean, attacked = toy_model(images), toy_model(adv)
    for b in range(len(images)):
        assert ref_loss(attacked[b], labels[b]) > ref_loss(clean[b], labels[b])
    assert torch.equal(adv, SquareAttack(8, num_queries=60)(toy_model, images, labels=labels))


def test_targeted_decreases_ce_to_target(toy_model, images):
    labels = _pred(toy_model, images)
    target = (labels + 2) % 5
    attack = SquareAttack(8, num_queries=60)
    adv, info, *_ = attack.run(toy_model, images, target=target)
    start = attack.initial_point(images)
    with torch.no_grad():
        clean, init, attacked = toy_model(images), toy_model(start), toy_model(adv)
    for b in range(len(images)):
        assert ref_loss(attacked[b], target[b]) < ref_loss(init[b], target[b])
        assert ref_loss(attacked[b], target[b]) < ref_loss(clean[b], target[b])
        assert info['loss'][b].item() == pytest.approx(ref_loss(attacked[b], target[b]).item(),
                                                      rel=1e-5)
    assert isinstance(attack.run(toy_model, images), AttackResult)
    assert attack.reference_target(None) is None      # scored as untargeted by the runner


# -- pinned outputs ----------------------------------------------------------------------------
#: sha256 of (adversarial images as float32 bytes, then the per-image query counts as int64 bytes)
#: of a 60-query run on the ``images`` fixture, recorded before the stripe layout was made
#: contiguous: a speed change must not change any result, for either initialisation.
PINNED = {
    ('vertical', False, False): 'acab8996e9b67c736913db270accf296c775d31856bc9f70b060f5e082d780b1',
    ('vertical', False, True): '0b5021b9347535ee5e2463ab412afaccec657e3f60dd2221630563b5f2ee8771',
    ('vertical', True, False): '686cf5adc7b89b791d3f3c4417caad1bcea32995e054f89fcd1ebae358d6dcea',
    ('vertical', True, True): 'd497f7457922b7c6a751e07d7733b622bacbc4d1c6b4ab5f3627fcddd2d7621a',
    ('horizontal', False, False): '49a83d4130d617bf0cc04e118e18ff0dc0a00b27e70eb5ed9985490e43148ba6',
    ('horizontal', False, True): '4d54895ee1ed3422c4850d48a28941e945c0bc12060250d4bd64548849f5c1be',
    ('horizontal', True, False): '7f4ddf30e718fe6d4ad70fecf600bc824e6466c29c6b728f3c0ecbec26546815',
    ('horizontal', True, True): 'f475a1850e5082fa2c1cee828ab52b48dd5ff2c6867e94d3bf6ee6d1df500419',
}


@pytest.mark.parametrize('init', ['vertical', 'horizontal'])
@pytest.mark.parametrize('use_mask', [False, True])
@pytest.mark.parametrize('targeted', [False, True])
def test_pinned_output(init, use_mask, targeted, toy_model, images):
    import hashlib
    mask = torch.ones(3, H, W)
    mask[:, :, :5] = 0
    mask[2] = 0
    mask[2, 3:9, 10:20] = 1
    target = torch.full((3, H, W), 2, dtype=torch.long) if targeted else None
    result = SquareAttack(8, num_queries=60, p_init=0.3, init=init).run(
        toy_model, images, target=target, mask=mask if use_mask else None)
    assert result.info['queries'].tolist() == [60, 60, 60]
    digest = hashlib.sha256(result.adv.contiguous().numpy().tobytes())
    digest.update(result.info['queries'].numpy().tobytes())
    assert digest.hexdigest() == PINNED[init, use_mask, targeted]


@pytest.mark.parametrize('init', ['vertical', 'horizontal'])
def test_same_work_per_query_for_both_inits(init, toy_model, images):
    """Both stripe layouts give the model the same contiguous (N, 3, H, W) batches, one per query,
    and keep a contiguous perturbation: neither orientation pays for a strided layout."""
    attack = SquareAttack(8, num_queries=20, p_init=0.3, init=init)
    delta = attack.initial_delta(images)
    assert delta.is_contiguous() and delta.stride() == images.contiguous().stride()
    model = Recorder(toy_model)
    adv, info, *_ = attack.run(model, images)
    assert len(model.calls) == 1 + 20                    # the clean pass, then one per query
    assert info['queries'].tolist() == [20] * len(images)
    # the recorder's clone keeps a dense tensor's strides (preserve_format)
    assert all(c['x'].shape == images.shape and c['x'].is_contiguous() for c in model.calls[1:])
    assert adv.is_contiguous()
