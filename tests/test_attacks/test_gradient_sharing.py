"""Gradient sharing in Arnab et al.'s attack grid (https://arxiv.org/abs/1711.09856, eqs. 3–6).

Two rules, both bit-identical to running every attack at every ε alone:

* Iterative FGSM (II) grids: a smaller ε continues from the largest ε's iterate ``x_s`` and takes
  its first step from the sign the largest ε computed at ``x_s`` (40 gradient passes per image
  over ε ∈ {0.25, ..., 32} instead of 47);
* :class:`attacks.base.SharedGradients`: FGSM's gradient is Iterative FGSM's first step and FGSM
  II's is Iterative FGSM II's, computed once per (model, batch): the four attacks over the grid
  cost 80 gradient passes per image.

The reference is always the attack built at that ε and run alone, without any sharing. The cost
is read from the model's own counter (``PixelSpaceModel.gradient_images``, what the runner
records), per ε through ``run_grid``'s meter.
"""
import contextlib

import pytest
import torch
from torch import nn

from attacks import FGSM, IterativeFGSM, build_attack
from attacks.base import AttackInputError, PackedSign, SharedGradients, least_likely
from attacks.ifgsm import SignStep
from conftest import ToySegmenter
from model_zoo.pixel_model import PixelSpaceModel

ARNAB_GRID = [0.25, 0.5, 1, 2, 4, 8, 16, 32]
ARNAB = ['fgsm', 'fgsm_ll', 'ifgsm', 'ifgsm_ll']
NUM_CLASSES = 5
#: own gradient passes per image of an Iterative FGSM (II) grid over ARNAB_GRID, α = 1.
#: Integer images (s = ⌊ε⌋ unclipped steps, exact): 36 for ε = 32, then n − (s + 1) for the
#: others: 20 − 17 (ε = 16) + 10 − 9 (ε = 8) = 40. Float images (s = ⌊ε − 10⁻³⌋):
#: 36 + (20 − 16) + (10 − 8) + (5 − 4) + (3 − 2) + (2 − 1) = 45.
ITERATIVE_OWN = {True: 40, False: 45}


class _Segmentor(nn.Module):
    """ToySegmenter behind mmseg's ``forward(x, mode='tensor')``, for :class:`PixelSpaceModel`."""

    def __init__(self, seed: int):
        super().__init__()
        self.net = ToySegmenter(num_classes=NUM_CLASSES, seed=seed)

    def forward(self, x, mode='tensor'):
        return self.net(x)


def pixel_model(seed: int = 2) -> PixelSpaceModel:
    """A tiny CPU model with the benchmark's gradient-image counter (no normalisation)."""
    return PixelSpaceModel(_Segmentor(seed), num_classes=NUM_CLASSES)


def make_batch(integer: bool = True, seed: int = 0):
    """Images (saturated corners, integer-valued or not), clean-prediction labels with ignored
    pixels, a random target map and a mask."""
    torch.manual_seed(seed)
    model = pixel_model()
    images = torch.rand(2, 3, 10, 14) * 255
    images[0, :, :2] = 0.0
    images[1, :, -2:] = 255.0
    if integer:
        images = images.round()
    with torch.no_grad():
        labels = model(images).argmax(1)
    labels[0, 0, :3] = 255
    target = torch.randint(0, NUM_CLASSES, labels.shape)
    mask = torch.rand(labels.shape) > 0.4
    return model, images, labels, target, mask


class GradientMeter:
    """``run_grid``'s meter: the model's gradient images spent inside ``meter(i)``, per index."""

    def __init__(self, model: PixelSpaceModel):
        self.model, self.images = model, {}

    @contextlib.contextmanager
    def __call__(self, i):
        before = self.model.gradient_images
        yield
        self.images[i] = self.images.get(i, 0) + self.model.gradient_images - before


def alone(name, eps, model, images, **kwargs):
    """The reference: the attack at ε, run by itself, nothing shared (on a separate model object
    so the counters of the model under test are untouched)."""
    return build_attack(dict(type=name), eps).run(model, images, **kwargs)


def own(results):
    return sum(r.own_gradient_passes for r in results)


# -- branch points of the iterative grids ------------------------------------------------------
@pytest.mark.parametrize('integer', [True, False], ids=['integer', 'float'])
@pytest.mark.parametrize('name', ['ifgsm', 'ifgsm_ll'])
def test_iterative_grid_costs_40_and_equals_every_epsilon_alone(name, integer):
    model, images, labels, _, _ = make_batch(integer)
    reference = pixel_model()
    meter = GradientMeter(model)
    before = model.gradient_images
    results = build_attack(dict(type=name), 4).run_grid(model, images, ARNAB_GRID, labels=labels,
                                                        meter=meter)
    assert own(results) == ITERATIVE_OWN[integer]
    assert model.gradient_images - before == len(images) * ITERATIVE_OWN[integer]
    for i, (eps, r) in enumerate(zip(ARNAB_GRID, results)):
        single = alone(name, eps, reference, images, labels=labels)
        assert torch.equal(r.adv, single.adv), eps
        assert r.gradient_passes == single.gradient_passes and single.shared_gradient_passes == 0
        assert meter.images[i] == len(images) * r.own_gradient_passes, eps
    if integer:   # every ε but the leader branches at s = ⌊ε⌋ < n and takes s + 1 passes from it
        assert [r.shared_gradient_passes for r in results] == [1, 1, 2, 3, 5, 9, 17, 0]


def test_branch_without_a_leader_step_at_its_snapshot():
    """Equal step counts: ε = 4 branches after the leader's last step (s = 3 = n, nothing left
    to compute), ε = 2 after step 2 and takes its one remaining step from the leader's third."""
    model, images, labels, _, _ = make_batch()
    results = IterativeFGSM(8, num_steps=3).run_grid(model, images, [8, 4, 2], labels=labels)
    assert [r.shared_gradient_passes for r in results] == [0, 3, 3]
    assert model.gradient_images == len(images) * 3
    for eps, r in zip([8, 4, 2], results):
        single = IterativeFGSM(eps, num_steps=3).run(pixel_model(), images, labels=labels)
        assert torch.equal(r.adv, single.adv), eps


def test_iterate_from_a_start_step_equals_recomputing_it():
    model, images, labels, _, _ = make_batch()
    attack = IterativeFGSM(32)
    steps = list(attack.trajectory(model, images, labels, num_steps=6))
    assert not any(step.reused for step in steps)
    start_step = SignStep(PackedSign.pack(steps[4].sign), steps[4].direction)
    rest = list(attack.trajectory(model, images, labels, start=steps[3].adv, num_steps=2,
                                  start_step=start_step))
    assert [step.reused for step in rest] == [True, False]
    assert torch.equal(rest[0].adv, steps[4].adv) and torch.equal(rest[1].adv, steps[5].adv)


# -- across attacks: SharedGradients -------------------------------------------------------------
@pytest.mark.parametrize('integer', [True, False], ids=['integer', 'float'])
@pytest.mark.parametrize('order', [ARNAB, ['ifgsm', 'ifgsm_ll', 'fgsm', 'fgsm_ll'],
                                   ['ifgsm_ll', 'fgsm', 'fgsm_ll', 'ifgsm']],
                         ids=['fgsm-first', 'ifgsm-first', 'mixed'])
def test_four_attacks_cost_80_passes_bit_identical_to_each_alone(order, integer):
    model, images, labels, _, _ = make_batch(integer)
    reference = pixel_model()
    shared = SharedGradients()
    before = model.gradient_images
    total = {}
    for name in order:
        meter = GradientMeter(model)
        results = build_attack(dict(type=name), 1).run_grid(model, images, ARNAB_GRID, labels=labels,
                                                            meter=meter, shared=shared)
        total[name] = own(results)
        for i, (eps, r) in enumerate(zip(ARNAB_GRID, results)):
            assert torch.equal(r.adv, alone(name, eps, reference, images, labels=labels).adv), (name, eps)
            assert meter.images[i] == len(images) * r.own_gradient_passes, (name, eps)
    expected = 2 + 2 * ITERATIVE_OWN[integer] - 2          # the two clean gradients are shared
    assert sum(total.values()) == expected == (80 if integer else 90)
    assert model.gradient_images - before == len(images) * expected
    for single, iterative in (('fgsm', 'ifgsm'), ('fgsm_ll', 'ifgsm_ll')):
        first = single if order.index(single) < order.index(iterative) else iterative
        assert total[single] == (1 if first == single else 0)
        assert total[iterative] == ITERATIVE_OWN[integer] - (first == single)
    assert (shared.hits, shared.misses, len(shared)) == (2, 2, 2)


@pytest.mark.parametrize('name', ['fgsm', 'fgsm_ll'])
def test_fgsm_with_a_memo_equals_fgsm_alone(name):
    model, images, labels, _, _ = make_batch(integer=False)
    expected = alone(name, 8, pixel_model(), images, labels=labels)
    shared = SharedGradients()
    first = build_attack(dict(type=name), 8).run(model, images, labels=labels, shared=shared)
    again = build_attack(dict(type=name), 2).run(model, images, labels=labels, shared=shared)
    assert torch.equal(first.adv, expected.adv)
    assert torch.equal(again.adv, alone(name, 2, pixel_model(), images, labels=labels).adv)
    assert (first.shared_gradient_passes, again.shared_gradient_passes) == (0, 1)
    assert model.gradient_images == len(images)          # the second run took no pass


@pytest.mark.parametrize('single,iterative', [('fgsm', 'ifgsm'), ('fgsm_ll', 'ifgsm_ll')])
def test_run_alone_takes_and_gives_the_clean_gradient(single, iterative):
    """``run`` (no grid) shares too: I-FGSM's first step from FGSM's memo entry and back."""
    model, images, labels, _, _ = make_batch()
    reference = pixel_model()
    shared = SharedGradients()
    fgsm = build_attack(dict(type=single), 8).run(model, images, labels=labels, shared=shared)
    ifgsm = build_attack(dict(type=iterative), 8).run(model, images, labels=labels, shared=shared)
    assert (fgsm.shared_gradient_passes, ifgsm.shared_gradient_passes) == (0, 1)
    assert ifgsm.own_gradient_passes == 9 and model.gradient_images == len(images) * (1 + 9)
    assert torch.equal(fgsm.adv, alone(single, 8, reference, images, labels=labels).adv)
    assert torch.equal(ifgsm.adv, alone(iterative, 8, reference, images, labels=labels).adv)
    other = SharedGradients()
    build_attack(dict(type=iterative), 2).run(model, images, labels=labels, shared=other)
    back = build_attack(dict(type=single), 2).run(model, images, labels=labels, shared=other)
    assert back.own_gradient_passes == 0
    assert torch.equal(back.adv, alone(single, 2, reference, images, labels=labels).adv)


def _pair(model_a, model_b, images_a, images_b, labels_a, labels_b, single='fgsm', iterative='ifgsm'):
    shared = SharedGradients()
    a = build_attack(dict(type=single), 4).run_grid(model_a, images_a, [4, 8], labels=labels_a,
                                                     shared=shared)
    b = build_attack(dict(type=iterative), 4).run_grid(model_b, images_b, [4, 8], labels=labels_b,
                                                        shared=shared)
    return shared, a, b


@pytest.mark.parametrize('what', ['labels', 'model', 'images', 'ignored pixels'])
@pytest.mark.parametrize('single,iterative', [('fgsm', 'ifgsm'), ('fgsm_ll', 'ifgsm_ll')])
def test_nothing_is_shared_across_another_computation(what, single, iterative):
    """Another label map, another model object (even with the same weights), other images: every
    attack computes its own gradient and equals itself alone."""
    model, images, labels, _, _ = make_batch()
    model_b, images_b, labels_b = model, images, labels
    if what == 'labels':
        labels_b = labels.clone()
        labels_b[1, 4, 4] = (labels_b[1, 4, 4] + 1) % NUM_CLASSES
    elif what == 'ignored pixels':   # matters to the least likely class only, but keys are exact
        labels_b = labels.clone()
        labels_b[1, 5, 5] = 255
    elif what == 'model':
        model_b = pixel_model()                        # same weights, another object
    else:
        images_b = images.clone()
        images_b[1, 2, 3, 4] = 255.0 - images_b[1, 2, 3, 4]
    shared, a, b = _pair(model, model_b, images, images_b, labels, labels_b, single, iterative)
    assert (shared.hits, shared.misses) == (0, 2)
    assert own(a) == 1 and own(b) == 10          # ε = 8 leads; ε = 4 branches after 4 steps
    reference = pixel_model()
    for eps, ra, rb in zip([4, 8], a, b):
        assert torch.equal(ra.adv, alone(single, eps, reference, images, labels=labels).adv)
        assert torch.equal(rb.adv, alone(iterative, eps, reference, images_b, labels=labels_b).adv)


def test_the_memo_keeps_copies_of_its_keys():
    """Changing the caller's tensors in place after a run cannot make a stale entry match."""
    model, images, labels, _, _ = make_batch()
    shared = SharedGradients()
    FGSM(4).run(model, images, labels=labels, shared=shared)
    images[0, 0, 5, 5] = 255.0 - images[0, 0, 5, 5]
    changed = IterativeFGSM(4).run(model, images, labels=labels, shared=shared)
    assert (shared.hits, changed.shared_gradient_passes) == (0, 0)
    assert torch.equal(changed.adv, IterativeFGSM(4).run(pixel_model(), images, labels=labels).adv)
    labels[1, 1, 1] = 255
    assert FGSM(4).run(model, images, labels=labels, shared=shared).shared_gradient_passes == 0
    assert FGSM(2).run(model, images, labels=labels, shared=shared).shared_gradient_passes == 1


@pytest.mark.parametrize('mask_mode', ['project', 'posthoc'])
def test_masks_and_a_fixed_target(mask_mode):
    """The clean gradient does not depend on the mask: FGSM and I-FGSM share it under any masks
    (here: different ones); with a fixed target FGSM II and I-FGSM II share the cross-entropy
    towards it. 80 own passes, every result equal to the attack alone with the same arguments."""
    model, images, labels, target, mask = make_batch(seed=1)
    other_mask = ~mask
    reference = pixel_model()
    shared = SharedGradients()
    calls = [('fgsm', dict(mask=mask)), ('ifgsm_ll', dict(target=target, mask=other_mask)),
             ('fgsm_ll', dict(target=target, mask=mask)), ('ifgsm', dict(mask=other_mask))]
    total = 0
    for name, kwargs in calls:
        results = build_attack(dict(type=name), 1).run_grid(
            model, images, ARNAB_GRID, labels=labels, mask_mode=mask_mode, shared=shared, **kwargs)
        total += own(results)
        keep = kwargs['mask'][:, None].expand_as(images)
        for eps, r in zip(ARNAB_GRID, results):
            single = alone(name, eps, reference, images, labels=labels, mask_mode=mask_mode, **kwargs)
            assert torch.equal(r.adv, single.adv), (name, eps)
            assert ((r.adv - images)[~keep] == 0).all()
    assert total == 80 and model.gradient_images == len(images) * 80
    assert (shared.hits, shared.misses) == (2, 2)


def test_the_key_is_the_loss_not_the_attack():
    """FGSM towards labels y and FGSM II towards the fixed target y ascend and descend the same
    cross-entropy: one gradient. The least-likely loss is another kind, even where its target
    equals a fixed one, and is not shared with it."""
    model, images, labels, target, _ = make_batch()
    reference = pixel_model()
    shared = SharedGradients()
    up = FGSM(4).run(model, images, labels=target, shared=shared)
    down = build_attack(dict(type='fgsm_ll'), 4).run(model, images, labels=labels, target=target,
                                                      shared=shared)
    assert (up.shared_gradient_passes, down.shared_gradient_passes) == (0, 1)
    assert torch.equal(down.adv, alone('fgsm_ll', 4, reference, images, labels=labels, target=target).adv)
    with torch.no_grad():
        ll = least_likely(reference(images), labels)
    fixed = build_attack(dict(type='ifgsm_ll'), 4).run(model, images, labels=labels, target=ll, shared=shared)
    dynamic = build_attack(dict(type='ifgsm_ll'), 4).run(model, images, labels=labels, shared=shared)
    assert fixed.shared_gradient_passes == dynamic.shared_gradient_passes == 0
    assert (shared.hits, shared.misses) == (1, 3)


@pytest.mark.parametrize('spec', [dict(type='targeted_ifgsm', num_steps=None, tau=None),
                                  dict(type='pgd', num_steps=3), dict(type='mifgsm', num_steps=3)],
                         ids=lambda s: s['type'])
def test_other_attacks_ignore_the_memo(spec):
    """Metzen et al.'s loss is another computation (even where FGSM II's cross-entropy towards
    the same target was stored); PGD's random start and MI-FGSM take no clean gradient."""
    model, images, labels, target, _ = make_batch()
    shared = SharedGradients()
    build_attack(dict(type='fgsm_ll'), 4).run(model, images, labels=labels, target=target, shared=shared)
    extra = {'target': target} if spec['type'] == 'targeted_ifgsm' else {}
    torch.manual_seed(3)
    with_memo = build_attack(spec, 4).run_grid(model, images, [2, 4], labels=labels, shared=shared, **extra)
    torch.manual_seed(3)
    without = build_attack(spec, 4).run_grid(pixel_model(), images, [2, 4], labels=labels, **extra)
    assert all(torch.equal(a.adv, b.adv) for a, b in zip(with_memo, without))
    assert [r.shared_gradient_passes for r in with_memo] == [r.shared_gradient_passes for r in without]
    assert (shared.hits, shared.misses, len(shared)) == (0, 1, 1)


def test_the_memo_is_bounded():
    model, images, labels, _, _ = make_batch()
    shared = SharedGradients(max_entries=2)
    maps = [labels.clone() for _ in range(3)]
    for i, y in enumerate(maps):
        y[0, 9, i] = 255
        FGSM(4).run(model, images, labels=y, shared=shared)
    assert len(shared) == 2 and shared.misses == 3
    assert FGSM(4).run(model, images, labels=maps[2], shared=shared).shared_gradient_passes == 1
    assert FGSM(4).run(model, images, labels=maps[0], shared=shared).shared_gradient_passes == 0


def test_packed_sign_is_int8_and_exact():
    g = torch.Generator().manual_seed(0)
    grad = torch.randn(2, 3, 5, 7, generator=g)
    grad[0, 0, 0, :3] = torch.tensor([0.0, -0.0, 1e-30])
    sign = grad.sign()
    packed = PackedSign.pack(sign)
    assert packed.data.dtype == torch.int8 and packed.dtype == torch.float32
    assert torch.equal(packed.unpack().view(torch.int32), sign.view(torch.int32))
    for odd in (float('nan'), -0.0):       # not what torch.sign gives, but kept exactly if it did
        weird = sign.clone()
        weird[1, 2, 3, 4] = odd
        packed = PackedSign.pack(weird)
        assert packed.data.dtype == torch.float32
        assert torch.equal(packed.unpack().view(torch.int32), weird.view(torch.int32))


def test_bad_arguments():
    model, images, labels, _, _ = make_batch()
    with pytest.raises(AttackInputError, match='SharedGradients'):
        FGSM(4).run(model, images, shared={})
    with pytest.raises(AttackInputError, match='SharedGradients'):
        IterativeFGSM(4).run_grid(model, images, [1, 2], shared=object())
    with pytest.raises(ValueError, match='max_entries'):
        SharedGradients(max_entries=0)
    with pytest.raises(ValueError, match="unknown gradient kind 'mse'"):
        SharedGradients().clean_sign(model, 'mse', images, labels, lambda: images.sign())


class _HalfStepFGSM(FGSM):
    """A subclass written against the older API: its own ``direction`` (not registered)."""

    name = 'test_half_step_fgsm'

    def direction(self, model, images, labels, target):
        return 0.5 * super().direction(model, images, labels, target)


def test_a_subclass_with_its_own_direction_keeps_it_and_shares_nothing():
    model, images, labels, _, _ = make_batch()
    shared = SharedGradients()
    FGSM(8).run(model, images, labels=labels, shared=shared)
    expected = FGSM(4).run(pixel_model(), images, labels=labels).adv       # ε · ½ s = (ε/2) · s
    single = _HalfStepFGSM(8).run(model, images, labels=labels, shared=shared)
    grid = _HalfStepFGSM(8).run_grid(model, images, [8, 4], labels=labels, shared=shared)
    assert torch.equal(single.adv, expected) and torch.equal(grid[0].adv, expected)
    assert single.shared_gradient_passes == grid[0].shared_gradient_passes == 0
    assert shared.hits == 0
