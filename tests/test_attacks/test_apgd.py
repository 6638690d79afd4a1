"""APGD (Croce & Hein 2020) against an independent implementation of the paper's Algorithm 1.

The reference below is written from the pseudo-code and the checkpoint rule of the paper (with the
details the paper leaves open fixed as attacks/apgd.py's docstring states them): plain Python state
per image (floats, lists, ``fractions`` for the checkpoints), one batched forward pass per iterate
(the toy model's outputs differ in the last bits between a batch and a single image, and APGD's
decisions compare losses, so the reference evaluates the same batch). Only the random start is
taken from the library (PGD's seeded start, tested in test_pgd.py).
"""
import math
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F

from attacks import build_attack
from attacks.apgd import APGD, apgd_checkpoints, sea_schedule
from attacks.base import attack_class
from attacks.pgd import PGD
from conftest import CountingModel, ToySegmenter


# -- the reference ------------------------------------------------------------------------------

def ref_checkpoints(n):
    """w_j = ⌈p_j n⌉ < n with p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)."""
    p = [Fraction(0), Fraction(22, 100)]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - Fraction(3, 100), Fraction(6, 100)))
    return sorted({math.ceil(pj * n) for pj in p[1:] if math.ceil(pj * n) < n})


def ref_loss(name, logits, y):
    """Per-image loss values (N,): summed CE, or the CE of the correctly classified pixels."""
    ce = F.cross_entropy(logits, y, ignore_index=255, reduction='none')
    if name == 'mask_ce_avg':
        ce = ce * ((logits.detach().argmax(1) == y) & (y != 255)).float()
    return ce.flatten(1).sum(1)


def ref_apgd_run(model, x, y, radius, n, start, loss, track, keep, log):
    """One APGD run (Alg. 1) on a batch; per-image state in Python. Returns the kept iterates."""
    def proj(v):
        return torch.clamp(x + torch.clamp(v - x, -radius, radius), 0, 255)

    def evaluate(v, need_grad):
        v = v.detach().requires_grad_(True)
        logits = model(v)
        lo = ref_loss(loss, logits, y)
        f = ref_loss(track, logits, y).detach().tolist()
        correct = (((logits.argmax(1) == y) & (y != 255)).flatten(1).sum(1)).tolist()
        g = torch.autograd.grad(lo.sum(), v)[0] if need_grad else None
        return f, g, correct

    num = len(x)
    W = ref_checkpoints(n)
    eta = [2.0 * radius] * num
    cur = start.clone()
    f, g, c = evaluate(cur, True)
    hist = [[fi] for fi in f]                      # f of every computed iterate, per image
    f_max, x_max, g_max = list(f), cur.clone(), g.clone()
    c_at_max, best_c, best_x = list(c), list(c), cur.clone()
    prev_w, halved_prev, f_max_prev = 0, [False] * num, list(f)
    prev = None
    for k in range(n):
        step = torch.stack([eta[i] * torch.sign(g[i]) for i in range(num)])
        if k == 0:
            nxt = proj(cur + step)
        else:
            z = proj(cur + step)
            nxt = proj(cur + 0.75 * (z - cur) + 0.25 * (cur - prev))
        prev, cur = cur, nxt
        last = k + 1 == n
        f, gn, c = evaluate(cur, not last)
        cur = cur.clone()
        for i in range(num):
            hist[i].append(f[i])
            if f[i] > f_max[i]:
                f_max[i], x_max[i], c_at_max[i] = f[i], cur[i], c[i]
                if not last:
                    g_max[i] = gn[i]
            if c[i] < best_c[i]:
                best_c[i], best_x[i] = c[i], cur[i]
        g = gn
        w = k + 1
        if w in W:
            for i in range(num):
                increases = sum(hist[i][j + 1] > hist[i][j] for j in range(prev_w, w))
                cond1 = increases < 0.75 * (w - prev_w)
                cond2 = (not halved_prev[i]) and f_max[i] == f_max_prev[i]
                if cond1 or cond2:
                    eta[i] /= 2
                    cur[i], g[i] = x_max[i], g_max[i]
                    log.append((w, i, 'cond1' if cond1 else 'cond2'))
                halved_prev[i] = cond1 or cond2
                f_max_prev[i] = f_max[i]
            prev_w = w
    return (best_x, best_c) if keep == 'accuracy' else (x_max, c_at_max)


def ref_apgd(model, x, y, eps, stages, start, loss='ce', track='ce', keep='accuracy', log=None):
    """The stages of a radius schedule, each started from the last one's iterate projected."""
    log = [] if log is None else log
    cur = start
    for i, (factor, n) in enumerate(stages):
        r = factor * eps
        if i > 0:
            cur = torch.clamp(x + torch.clamp(cur - x, -r, r), 0, 255)
        cur, _ = ref_apgd_run(model, x, y, r, n, cur, loss, track, keep, log)
    return cur


# -- fixtures -----------------------------------------------------------------------------------

@pytest.fixture
def batch():
    model = ToySegmenter(num_classes=5, seed=3)
    g = torch.Generator().manual_seed(0)
    images = torch.rand(3, 3, 8, 10, generator=g) * 255
    images[0, :, :2] = 0.0              # saturated pixels: the [0, 255] clip acts
    images[1, :, -2:] = 255.0
    with torch.no_grad():
        labels = model(images).argmax(1)
    labels[0, 0, :4] = 255
    return model, images, labels


# -- tests --------------------------------------------------------------------------------------

def test_checkpoints_follow_the_paper():
    assert apgd_checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert apgd_checkpoints(1) == [] and apgd_checkpoints(5) == [2, 3, 4]
    for n in range(1, 400):
        assert apgd_checkpoints(n) == ref_checkpoints(n), n


def test_sea_schedule():
    assert sea_schedule(300) == [(2.0, 90), (1.5, 90), (1.0, 120)]
    assert sea_schedule(10) == [(2.0, 3), (1.5, 3), (1.0, 4)]
    assert sea_schedule(3) == [(1.0, 3)]
    assert APGD(8, schedule='sea').num_steps == 300 and APGD(8).num_steps == 100
    assert APGD(8, schedule=[(2, 5), (1, 7)]).stages == [(2.0, 5), (1.0, 7)]


CASES = {
    'ce-keep-loss': dict(kw=dict(loss='ce', keep='loss', random_start=False), num_steps=25, eps=8),
    'mask_ce-accuracy': dict(kw=dict(loss='mask_ce_avg', track_loss='ce'), num_steps=30, eps=6),
    'mask_ce-self-tracked': dict(kw=dict(loss='mask_ce_avg', random_start=False), num_steps=20, eps=4),
    'sea-schedule': dict(kw=dict(loss='mask_ce_avg', track_loss='ce', schedule='sea'), num_steps=40,
                         eps=4),
}


@pytest.mark.parametrize('case', list(CASES))
@pytest.mark.parametrize('early_stop', [True, False])
def test_matches_the_reference_bit_for_bit(batch, case, early_stop):
    model, images, labels = batch
    spec = CASES[case]
    attack = APGD(spec['eps'], num_steps=spec['num_steps'], early_stop=early_stop, **spec['kw'])
    result = attack.run(model, images, labels=labels)
    first_radius = attack.stages[0][0] * spec['eps']
    start = (PGD(first_radius, seed=0).initial_point(images) if attack.random_start
             else images.clone())
    log = []
    ref = ref_apgd(model, images, labels, spec['eps'], attack.stages, start,
                   loss=attack.loss, track=attack.track_loss, keep=attack.keep, log=log)
    assert torch.equal(result.adv, ref)
    # the step-size rule was exercised
    assert log, 'no step size was halved: the test would not check the checkpoint rule'


@pytest.mark.parametrize('keep', ['loss', 'accuracy'])
def test_condition_2_alone_halves_the_step_as_the_reference(keep):
    """A batch where condition 2 fires on its own (found by search: an image whose loss kept
    rising after a drop without passing its earlier best)."""
    model = ToySegmenter(num_classes=5, seed=0)
    images = torch.rand(6, 3, 8, 10, generator=torch.Generator().manual_seed(1)) * 255
    with torch.no_grad():
        labels = model(images).argmax(1)
    attack = APGD(16, num_steps=25, random_start=False, keep=keep)
    log = []
    ref = ref_apgd(model, images, labels, 16, attack.stages, images.clone(), keep=keep, log=log)
    assert (11, 1, 'cond2') in log
    assert torch.equal(attack(model, images, labels=labels), ref)


def test_info_accuracy_and_gradient_passes(batch):
    model, images, labels = batch
    counting = CountingModel(model)
    attack = APGD(6, num_steps=17, loss='mask_ce_avg', schedule=[(2, 5), (1, 12)])
    result = attack.run(counting, images, labels=labels)
    assert counting.grad_calls == attack.gradient_passes() == result.gradient_passes == 17
    assert result.info['gradient_passes'].tolist() == [17, 17, 17]
    with torch.no_grad():
        pred = model(result.adv).argmax(1)
    valid = labels != 255
    acc = ((pred == labels) & valid).flatten(1).sum(1).float() / valid.flatten(1).sum(1)
    torch.testing.assert_close(result.info['accuracy'], acc)
    # the kept iterate has no more correct pixels than the clean image
    with torch.no_grad():
        clean = ((model(images).argmax(1) == labels) & valid).flatten(1).sum(1)
    assert torch.all(acc * valid.flatten(1).sum(1) <= clean)


def test_early_stop_is_exact_and_cheaper():
    """Labels on a few pixels only: the attack fools them all early; the rest is skipped."""
    model = ToySegmenter(num_classes=5, seed=3)
    g = torch.Generator().manual_seed(4)
    images = torch.rand(2, 3, 8, 10, generator=g) * 255
    with torch.no_grad():
        labels = model(images).argmax(1)
    labels[:, 1:] = 255
    labels[:, 0, 3:] = 255                               # 3 labelled pixels per image
    counting = CountingModel(model)
    fast = APGD(32, num_steps=40, loss='mask_ce_avg', schedule='sea').run(counting, images, labels=labels)
    full = APGD(32, num_steps=40, loss='mask_ce_avg', schedule='sea', early_stop=False).run(
        model, images, labels=labels)
    assert torch.equal(fast.adv, full.adv)
    assert fast.info['accuracy'].tolist() == [0.0, 0.0]
    spent = int(fast.info['gradient_passes'][0])
    assert counting.grad_calls == spent < 40 == full.info['gradient_passes'][0]
    assert fast.gradient_passes == 40      # the budget


@pytest.mark.parametrize('eps', [2, 8])
def test_bound_range_and_mask(batch, eps):
    model, images, labels = batch
    mask = torch.zeros(labels.shape, dtype=torch.bool)
    mask[:, 2:6, 3:8] = True
    for attack in (APGD(eps, num_steps=12), APGD(eps, num_steps=12, schedule='sea')):
        adv = attack(model, images, labels=labels, mask=mask)
        delta = adv - images
        assert float(delta.abs().max()) <= eps + 1e-4
        assert float(adv.min()) >= 0 and float(adv.max()) <= 255
        assert torch.all(delta.permute(1, 0, 2, 3)[:, ~mask] == 0)
        assert (delta != 0).any()


def test_deterministic_under_a_seed_and_independent_of_the_global_rng(batch):
    model, images, labels = batch
    attack = APGD(8, num_steps=10, loss='js')
    torch.manual_seed(1)
    a = attack(model, images, labels=labels)
    torch.manual_seed(2)
    b = APGD(8, num_steps=10, loss='js')(model, images, labels=labels)
    assert torch.equal(a, b)
    assert not torch.equal(a, APGD(8, num_steps=10, loss='js', seed=1)(model, images, labels=labels))


@pytest.mark.parametrize('loss', ['ce', 'mask_ce_avg', 'mask_ce_bal', 'js', 'segpgd', 'cospgd', 'dlr'])
def test_every_loss_lowers_the_accuracy(batch, loss):
    model, images, labels = batch
    result = APGD(8, num_steps=10, loss=loss).run(model, images, labels=labels)
    assert float(result.info['accuracy'].mean()) < 0.9


def test_registry_defaults_and_params():
    attack = build_attack(dict(type='apgd', loss='js', schedule='sea'), 8)
    assert attack_class('APGD') is APGD and isinstance(attack, APGD)
    assert attack.params() == {
        'num_steps': 300, 'loss': 'js', 'track_loss': 'js',
        'schedule': [[2.0, 90], [1.5, 90], [1.0, 120]], 'random_start': True, 'seed': 0,
        'keep': 'accuracy', 'class_weights': None, 'rho': 0.75, 'momentum': 0.75, 'early_stop': True}
    assert APGD(8, loss='segpgd').track_loss == 'ce'
    assert attack.with_epsilon(4).params() == attack.params() and attack.with_epsilon(4).epsilon == 4


@pytest.mark.parametrize('kwargs, match', [
    (dict(loss='mask-ce'), 'loss must be one of'),
    (dict(track_loss='segpgd'), 'changes with the iteration'),
    (dict(keep='best'), "keep must be 'accuracy'"),
    (dict(num_steps=0), 'num_steps must be a positive integer'),
    (dict(schedule='fast'), "schedule must be None, 'sea'"),
    (dict(schedule=[(2.0, 5)]), 'last schedule stage must be at the radius itself'),
    (dict(schedule=[(0, 5), (1, 5)]), 'radius factor must be a finite number > 0'),
    (dict(schedule=[(2, 5), (1, 5)], num_steps=20), 'the schedule has 10 iterations'),
    (dict(schedule=[(1, 5, 3)]), r'\(radius factor, iterations\)'),
    (dict(random_start=1), 'random_start must be True or False'),
    (dict(seed=-1), 'seed must be'),
    (dict(class_weights=[-1.0]), 'class_weights'),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        APGD(8, **kwargs)
