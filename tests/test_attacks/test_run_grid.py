"""``Attack.run_grid``, ``with_epsilon`` and mask modes.

The independent path is the one the suites take today: one attack per ε built by
``build_attack(entry, ε)`` and run alone. Every result of ``run_grid`` must equal it bit for bit,
while the grid spends fewer gradient passes (counted with ``CountingModel``).
"""
import contextlib

import pytest
import torch

import attacks
from attacks import ATTACKS, Attack, arnab_num_steps, build_attack
from attacks.base import AttackInputError
from attacks.generative import GenerativePerturbation
from attacks.universal import STATE_KEY, UniversalPerturbation
from common.errors import BenchmarkError
from conftest import CountingModel, ToySegmenter

ARNAB_GRID = [0.25, 0.5, 1, 2, 4, 8, 16, 32]
NUM_CLASSES = 5

#: one small entry (or several) per registered attack; ``None`` marks the fitted attacks, which
#: are tested separately (they run at their own ε only)
SPECS = {
    'fgsm': [dict(type='fgsm')],
    'fgsm_ll': [dict(type='fgsm_ll')],
    'ifgsm': [dict(type='ifgsm'), dict(type='ifgsm', alpha=0.75), dict(type='ifgsm', num_steps=4)],
    'ifgsm_ll': [dict(type='ifgsm_ll')],
    'targeted_ifgsm': [dict(type='targeted_ifgsm', num_steps=None, tau=None),
                       dict(type='targeted_ifgsm', num_steps=6, omega=0.9999)],
    'pgd': [dict(type='pgd', num_steps=3)],
    'mifgsm': [dict(type='mifgsm', num_steps=3)],
    'segpgd': [dict(type='segpgd', num_steps=3)],
    'cospgd': [dict(type='cospgd', num_steps=3)],
    'square': [dict(type='square', num_queries=8)],
    'worst_case': [dict(type='worst_case', attacks=[dict(type='pgd', num_steps=2), 'fgsm'])],
    'apgd': [dict(type='apgd', num_steps=5), dict(type='apgd', num_steps=6, schedule='sea', loss='js')],
    'sea': [dict(type='sea', num_steps=4)],
    'universal': None,
    'gap': None,
}
#: grids per family: the paper's for the Arnab attacks, a short unsorted one with a repeat otherwise
GRIDS = {'fgsm': ARNAB_GRID, 'fgsm_ll': ARNAB_GRID, 'ifgsm': ARNAB_GRID, 'ifgsm_ll': ARNAB_GRID,
         'targeted_ifgsm': [2, 8, 0.5, 4, 8]}
SHORT_GRID = [4, 1.5, 8, 4]


def library_attacks():
    """Registered attack names defined in the ``attacks`` package (not test doubles)."""
    return sorted({cls.name for cls in ATTACKS.values() if cls.__module__.startswith('attacks.')})


def grid_cases():
    return [pytest.param(spec, id=f'{name}-{i}') for name in library_attacks()
            for i, spec in enumerate(SPECS.get(name) or [])]


def make_batch(integer: bool, seed: int = 0):
    model = ToySegmenter(num_classes=NUM_CLASSES, seed=2)
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(2, 3, 10, 14, generator=g) * 255
    images[0, :, :2] = 0.0          # saturated pixels: the [0, 255] clip acts
    images[1, :, -2:] = 255.0
    if integer:
        images = images.round()     # otherwise float32 arithmetic rounds: the inexact rule applies
    with torch.no_grad():
        labels = model(images).argmax(1)
    labels[0, 0, :3] = 255
    target = torch.randint(0, NUM_CLASSES, labels.shape, generator=g)
    mask = torch.rand(labels.shape, generator=g) > 0.4
    return model, images, labels, target, mask


def kwargs_for(spec, target):
    cls = attacks.attack_class(spec['type'])
    return {'target': target} if cls.needs_target_map else {}


def test_every_registered_attack_is_covered():
    assert set(library_attacks()) == set(SPECS), 'add a small entry for the new attack to SPECS'


@pytest.mark.parametrize('integer', [True, False], ids=['integer', 'float'])
@pytest.mark.parametrize('spec', grid_cases())
def test_run_grid_equals_separate_attacks(spec, integer):
    model, images, labels, target, mask = make_batch(integer)
    grid = GRIDS.get(spec['type'], SHORT_GRID)
    extra = kwargs_for(spec, target)
    results = build_attack(spec, grid[0]).run_grid(model, images, grid, labels=labels, **extra)
    assert len(results) == len(grid)
    for eps, result in zip(grid, results):
        alone = build_attack(spec, eps).run(model, images, labels=labels, **extra)
        assert torch.equal(result.adv, alone.adv), eps
        assert result.info.keys() == alone.info.keys()
        for name, values in alone.info.items():
            assert torch.equal(result.info[name], values), (eps, name)
        assert result.gradient_passes == alone.gradient_passes == build_attack(spec, eps).gradient_passes()
        assert 0 <= result.shared_gradient_passes <= result.gradient_passes
        assert float((result.adv - images).abs().max()) <= eps + 1e-4


@pytest.mark.parametrize('mask_mode', ['project', 'posthoc'])
@pytest.mark.parametrize('spec', [dict(type='fgsm_ll'), dict(type='ifgsm'),
                                  dict(type='targeted_ifgsm', num_steps=None, tau=None),
                                  dict(type='pgd', num_steps=3)], ids=lambda s: s['type'])
def test_run_grid_with_a_mask_equals_separate_attacks(spec, mask_mode):
    model, images, labels, target, mask = make_batch(integer=True, seed=1)
    grid = [8, 2, 0.5, 4]
    extra = kwargs_for(spec, target)
    results = build_attack(spec, 8).run_grid(model, images, grid, labels=labels, mask=mask,
                                             mask_mode=mask_mode, **extra)
    for eps, result in zip(grid, results):
        alone = build_attack(spec, eps).run(model, images, labels=labels, mask=mask,
                                            mask_mode=mask_mode, **extra)
        assert torch.equal(result.adv, alone.adv), eps
        assert ((result.adv - images)[~mask[:, None].expand_as(images)] == 0).all()


@pytest.mark.parametrize('spec', [dict(type='fgsm'), dict(type='ifgsm_ll'),
                                  dict(type='targeted_ifgsm', num_steps=None, tau=None),
                                  dict(type='square', num_queries=8)], ids=lambda s: s['type'])
def test_posthoc_mask_equals_fischers_formula(spec):
    """Post-hoc: the unmasked attack's finished perturbation, kept on the mask (the runner's former
    formula ``images + (adv − images) · mask``), for run and run_grid alike."""
    model, images, labels, target, mask = make_batch(integer=False, seed=3)
    extra = kwargs_for(spec, target)
    grid = [4, 16]
    grid_results = build_attack(spec, 4).run_grid(model, images, grid, labels=labels, mask=mask,
                                                  mask_mode='posthoc', **extra)
    for eps, from_grid in zip(grid, grid_results):
        attack = build_attack(spec, eps)
        unmasked = attack.run(model, images, labels=labels, **extra).adv
        expected = images + (unmasked - images) * mask[:, None].to(unmasked.dtype)
        posthoc = attack.run(model, images, labels=labels, mask=mask, mask_mode='posthoc', **extra)
        assert torch.equal(posthoc.adv, expected) and torch.equal(from_grid.adv, expected)
        projected = attack.run(model, images, labels=labels, mask=mask, **extra).adv
        assert not torch.equal(projected, expected) or spec['type'] in ('fgsm', 'square')


def test_unknown_mask_mode_is_a_user_error():
    model, images, labels, _, mask = make_batch(integer=True)
    for call in (lambda a: a.run(model, images, mask=mask, mask_mode='after'),
                 lambda a: a.run_grid(model, images, [1, 2], mask=mask, mask_mode=None)):
        with pytest.raises(AttackInputError, match="'project'.*'posthoc'") as e:
            call(attacks.FGSM(4))
        assert isinstance(e.value, BenchmarkError) and isinstance(e.value, ValueError)


@pytest.mark.parametrize('epsilons', [[], 8, '8', [4, -1], [4, float('nan')], [True]])
def test_bad_grids_are_refused(epsilons):
    model, images, *_ = make_batch(integer=True)
    with pytest.raises(AttackInputError, match='epsilons'):
        attacks.IterativeFGSM(4).run_grid(model, images, epsilons)


class _Meter:
    """Counts the model's gradient passes inside ``meter(i)``, per grid index."""

    def __init__(self, model):
        self.model, self.calls = model, {}

    @contextlib.contextmanager
    def __call__(self, i):
        before = self.model.grad_calls
        yield
        self.calls[i] = self.calls.get(i, 0) + self.model.grad_calls - before


@pytest.mark.parametrize('name', ['ifgsm', 'ifgsm_ll'])
@pytest.mark.parametrize('integer', [True, False], ids=['integer', 'float'])
def test_iterative_grid_shares_trajectories(name, integer):
    """Arnab et al.'s grid with α = 1: ε = 32 leads with 36 steps; every smaller ε continues from
    its iterate after the steps s its own projection cannot touch (⌊ε⌋ on integer images, where
    t·α = ε is exact; ⌊ε − 10⁻³⌋ otherwise), its first step from the sign ε = 32 took there: s + 1
    shared passes."""
    toy, images, labels, _, _ = make_batch(integer)
    model = CountingModel(toy)
    meter = _Meter(model)
    grid = list(reversed(ARNAB_GRID))[::2] + list(reversed(ARNAB_GRID))[1::2]    # not sorted
    results = build_attack(dict(type=name), 1).run_grid(model, images, grid, labels=labels, meter=meter)
    shared = {eps: r.shared_gradient_passes for eps, r in zip(grid, results)}
    if integer:
        assert shared == {32: 0, 16: 17, 8: 9, 4: 5, 2: 3, 1: 2, 0.5: 1, 0.25: 1}
        assert model.grad_calls == 36 + (20 - 17) + (10 - 9) == 40
    else:
        assert shared == {32: 0, 16: 16, 8: 8, 4: 4, 2: 2, 1: 1, 0.5: 1, 0.25: 1}
        assert model.grad_calls == 36 + 4 + 2 + 1 + 1 + 1 == 45
    for i, (eps, r) in enumerate(zip(grid, results)):
        assert r.gradient_passes == arnab_num_steps(eps)
        assert meter.calls[i] == r.own_gradient_passes == r.gradient_passes - shared[eps]
    assert sum(meter.calls.values()) == model.grad_calls


@pytest.mark.parametrize('name', ['fgsm', 'fgsm_ll'])
def test_fgsm_grid_takes_one_gradient(name):
    toy, images, labels, _, _ = make_batch(integer=False)
    model = CountingModel(toy)
    meter = _Meter(model)
    results = build_attack(dict(type=name), 8).run_grid(model, images, ARNAB_GRID, meter=meter)
    assert model.grad_calls == 1
    assert [r.gradient_passes for r in results] == [1] * 8
    assert [r.shared_gradient_passes for r in results] == [1] * 7 + [0]    # paid with ε = 32
    assert meter.calls == {i: int(i == 7) for i in range(8)}
    for eps, r in zip(ARNAB_GRID, results):   # labels from the clean prediction, as run computes them
        assert torch.equal(r.adv, build_attack(dict(type=name), eps).run(toy, images).adv)


def test_repeated_epsilon_is_computed_once():
    toy, images, labels, _, _ = make_batch(integer=True)
    model = CountingModel(toy)
    results = attacks.IterativeFGSM(4).run_grid(model, images, [4, 4.0, 2], labels=labels)
    assert model.grad_calls == 5      # ε = 2 continues after 2 steps, from the sign ε = 4 took there
    assert torch.equal(results[0].adv, results[1].adv)
    assert [r.shared_gradient_passes for r in results] == [0, 5, 3]


class _GlobalNoise(Attack):
    """Test double drawing from the global RNG (not registered)."""

    name = 'test_global_noise'

    def gradient_passes(self):
        return 0

    def perturb(self, model, images, labels, target, mask):
        noise = (torch.rand(images.shape) * 2 - 1) * self.epsilon
        return images.add(noise).clamp(0, 255)


def test_default_grid_starts_every_epsilon_from_the_callers_random_state():
    model, images, *_ = make_batch(integer=True)
    torch.manual_seed(7)
    results = _GlobalNoise(1).run_grid(model, images, [1, 2, 4])
    after = torch.rand(3)
    for eps, r in zip([1, 2, 4], results):
        torch.manual_seed(7)
        assert torch.equal(r.adv, _GlobalNoise(eps).run(model, images).adv)
    torch.manual_seed(7)
    assert torch.equal(after, torch.rand(3))     # the caller's random state is left as it was


# -- with_epsilon --------------------------------------------------------------------------------
def roundtrip_cases():
    cases = [pytest.param(spec, id=f'{name}-{i}') for name in library_attacks()
             for i, spec in enumerate(SPECS.get(name) or [])]
    cases += [pytest.param(dict(type='universal', tile_size=(4, 4), num_steps=3), id='universal'),
              pytest.param(dict(type='gap', ngf=4, n_blocks=1, num_iters=2, epochs=None), id='gap')]
    return cases


@pytest.mark.parametrize('spec', roundtrip_cases())
@pytest.mark.parametrize('eps', [0.5, 3, 32])
def test_with_epsilon_round_trip(spec, eps):
    kwargs = {k: v for k, v in spec.items() if k != 'type'}
    attack = build_attack(spec, 8)
    other = attack.with_epsilon(eps)
    built = build_attack(spec, eps)
    assert type(other) is type(attack) and other.epsilon == float(eps)
    assert other.params() == built.params() and repr(other) == repr(built)
    assert other.gradient_passes() == built.gradient_passes()
    assert attack.init_kwargs == other.init_kwargs == kwargs
    back = other.with_epsilon(8)
    assert back.params() == attack.params() and repr(back) == repr(attack)


def test_with_epsilon_recomputes_what_defaults_from_epsilon():
    assert attacks.IterativeFGSM(8).with_epsilon(32).num_steps == 36
    assert attacks.IterativeFGSM(8, 1, 10).with_epsilon(32).num_steps == 10      # given: kept
    assert attacks.IterativeFGSM(8, 1, 10).init_kwargs == {'alpha': 1, 'num_steps': 10}
    assert attacks.PGD(8).with_epsilon(2).alpha == attacks.PGD(2).alpha
    assert attacks.UniversalPerturbation().with_epsilon(5).epsilon == 5.0      # ε had a default


# -- fitted attacks --------------------------------------------------------------------------------
def fitted_universal():
    attack = UniversalPerturbation(6, tile_size=(4, 4))
    g = torch.Generator().manual_seed(0)
    attack.load_state_dict({STATE_KEY: (torch.rand(3, 4, 4, generator=g) * 2 - 1) * 6})
    return attack


def fitted_gap():
    return GenerativePerturbation(6, ngf=4, n_blocks=1, num_iters=1, epochs=None).initialize((10, 14))


@pytest.mark.parametrize('make', [fitted_universal, fitted_gap], ids=['universal', 'gap'])
def test_fitted_attacks_run_their_own_epsilon_only(make):
    model, images, labels, _, mask = make_batch(integer=False)
    attack = make()
    for mode in ('project', 'posthoc'):
        results = attack.run_grid(model, images, [6, 6], labels=labels, mask=mask, mask_mode=mode)
        alone = attack.run(model, images, labels=labels, mask=mask, mask_mode=mode)
        assert all(torch.equal(r.adv, alone.adv) for r in results)
        assert all(r.gradient_passes == 0 for r in results)
    with pytest.raises(AttackInputError, match=r'fitted for ε=6 .* ε=2, 8: fit one attack per ε'):
        attack.run_grid(model, images, [6, 2, 8], labels=labels)
    assert not attack.with_epsilon(2).fitted        # fitted state belongs to its ε
