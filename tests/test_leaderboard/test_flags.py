"""Gradient-masking and sanity flags, robust mIoU and the ranking order, on hand-made records.

Per image 30 pixels of each of two classes; ``images(c, ...)`` gets ``c`` of each class right.
"""
import numpy as np
import pytest

from leaderboard.data import load_results
from leaderboard.flags import CONFIDENCE_LIMIT, TOLERANCE, model_flags
from leaderboard.tables import robust_miou, summary_table

from .records import ResultStore, image, images, miou, put

CLEAN6 = images(30, 30, 30, 30, 30, 30)


def flags_of(root, model='m'):
    return {f.kind: f for f in model_flags(load_results(root)).get(model, [])}


@pytest.fixture
def store(tmp_path):
    return ResultStore(tmp_path / 'results')


def test_iterative_weaker_than_single_step(store):
    put(store, 'm', 'clean', 0, CLEAN6)
    put(store, 'm', 'fgsm', 8, images(*[10] * 6))
    put(store, 'm', 'ifgsm', 8, images(*[20] * 6))          # I-FGSM leaves more right: weaker
    put(store, 'ok', 'clean', 0, CLEAN6)
    put(store, 'ok', 'fgsm', 8, images(*[20] * 6))
    put(store, 'ok', 'ifgsm', 8, images(*[10] * 6))
    flags = flags_of(store.root)
    assert set(flags) == {'iterative_weaker'}
    detail = flags['iterative_weaker'].detail
    assert detail.startswith('Iterative FGSM at ε=8: IoU ratio 50.0 % vs FGSM 20.0 % (+30.0 points')
    assert flags_of(store.root, 'ok') == {}


def test_iterative_least_likely_is_judged_by_its_success_rate(store):
    """FGSM II / Iterative FGSM II aim at the least-likely classes: a higher IoU ratio of the
    iterative one is no flag while it reaches its target more often; a lower success rate is."""
    put(store, 'm', 'clean', 0, CLEAN6)
    hit = np.stack([np.array([[30, 0], [0, 30]])] * 6)        # every pixel predicted as its target
    half = np.stack([np.array([[15, 15], [15, 15]])] * 6)
    put(store, 'm', 'fgsm_ll', 8, images(*[0] * 6), vs_target=half)
    put(store, 'm', 'ifgsm_ll', 8, images(*[10] * 6), vs_target=hit)        # higher IoU, more success
    assert flags_of(store.root) == {}
    put(store, 'w', 'clean', 0, CLEAN6)
    put(store, 'w', 'fgsm_ll', 8, images(*[0] * 6), vs_target=hit)
    put(store, 'w', 'ifgsm_ll', 8, images(*[0] * 6), vs_target=half)        # same IoU, less success
    flags = flags_of(store.root, 'w')
    assert set(flags) == {'iterative_weaker'}
    assert 'success rate towards the least-likely classes 50.0 % vs FGSM II 100.0 %' in flags['iterative_weaker'].detail


def test_transfer_stronger_than_white_box(store):
    put(store, 'm', 'clean', 0, CLEAN6)
    put(store, 'm', 'fgsm', 8, images(*[20] * 6))
    put(store, 'm', 'fgsm', 8, images(*[5] * 6), source='m.unaries',
        stats={'gradient_passes_per_image': 0})
    put(store, 'n', 'clean', 0, CLEAN6)
    put(store, 'n', 'fgsm', 8, images(*[5] * 6))
    put(store, 'n', 'fgsm', 8, images(*[20] * 6), source='m')
    flags = flags_of(store.root)
    assert set(flags) == {'transfer_stronger'}
    assert 'FGSM at ε=8 from m.unaries: IoU ratio 9.1 % vs white-box 50.0 %' in flags['transfer_stronger'].detail
    assert flags_of(store.root, 'n') == {}


def test_black_box_stronger_than_white_box(store):
    queries = {'per_image_info': {'queries': {'mean': 1000.0, 'min': 1000.0, 'max': 1000.0}},
               'gradient_passes_per_image': 0}
    put(store, 'm', 'clean', 0, CLEAN6)
    put(store, 'm', 'pgd', 8, images(*[15] * 6))
    put(store, 'm', 'square', 8, images(*[5] * 6), stats=queries)
    put(store, 'ok', 'clean', 0, CLEAN6)
    put(store, 'ok', 'pgd', 8, images(*[5] * 6))
    put(store, 'ok', 'square', 8, images(*[15] * 6), stats=queries)
    flags = flags_of(store.root)
    assert set(flags) == {'black_box_stronger'}
    assert flags['black_box_stronger'].detail.startswith('Square Attack at ε=8: IoU ratio 9.1 % vs PGD 33.3 %')
    assert flags_of(store.root, 'ok') == {}


def test_iou_not_decreasing_with_epsilon(store):
    put(store, 'm', 'clean', 0, CLEAN6)
    put(store, 'm', 'fgsm', 4, images(*[10] * 6))
    put(store, 'm', 'fgsm', 8, images(*[20] * 6))
    flags = flags_of(store.root)
    assert set(flags) == {'not_decreasing'}
    assert flags['not_decreasing'].detail.startswith('FGSM: IoU ratio 50.0 % at ε=8 vs 20.0 % at ε=4')


def test_iou_increase_within_tolerance_or_noise_is_not_flagged(store):
    # 30 images: ε=8 one pixel better per class on one image in three - below 1 point of IoU ratio
    put(store, 'm', 'clean', 0, images(*[30] * 30))
    put(store, 'm', 'fgsm', 4, images(*[10] * 30))
    put(store, 'm', 'fgsm', 8, images(*([10, 10, 11] * 10)))
    df = load_results(store.root)
    ratios = df.set_index('epsilon').iou_ratio
    assert 0 < ratios[8.0] - ratios[4.0] < TOLERANCE
    assert model_flags(df) == {}
    # 6 images: far higher on average (+5.6 points), but only because of one image: the paired
    # bootstrap interval of the difference reaches below zero
    put(store, 'n', 'clean', 0, CLEAN6)
    put(store, 'n', 'fgsm', 4, images(5, 10, 10, 10, 10, 10))
    put(store, 'n', 'fgsm', 8, images(25, 9, 9, 9, 9, 9))
    df = load_results(store.root)
    n = df[df.model == 'n'].set_index('epsilon').iou_ratio
    assert n[8.0] - n[4.0] > 5 * TOLERANCE
    assert 'n' not in model_flags(df)


def test_without_per_image_matrices_the_tolerance_decides(store):
    put(store, 'm', 'clean', 0, CLEAN6, write_per_image=False)
    put(store, 'm', 'fgsm', 4, images(5, 10, 10, 10, 10, 10), write_per_image=False)
    put(store, 'm', 'fgsm', 8, images(25, 9, 9, 9, 9, 9), write_per_image=False)
    flags = flags_of(store.root)
    assert set(flags) == {'not_decreasing'} and 'bootstrap' not in flags['not_decreasing'].detail


@pytest.mark.parametrize('gradient, fires', [
    ({'zero_fraction_mean': 0.9, 'zero_fraction_max': 0.95, 'all_finite': True}, {'zero_gradient'}),
    ({'zero_fraction_mean': 0.1, 'zero_fraction_max': 1.0, 'all_finite': True}, {'zero_gradient'}),
    ({'zero_fraction_mean': 0.1, 'zero_fraction_max': 0.3, 'all_finite': False}, {'non_finite_gradient'}),
    ({'zero_fraction_mean': 0.1, 'zero_fraction_max': 0.3, 'all_finite': True}, set()),
    (None, set()),                                           # older records: not recorded, no flag
])
def test_input_gradient_flags(store, gradient, fires):
    stats = {'input_gradient': gradient} if gradient else {}
    put(store, 'm', 'clean', 0, CLEAN6, stats=stats)
    put(store, 'm', 'fgsm', 8, images(*[10] * 6))
    assert set(flags_of(store.root)) == fires


@pytest.mark.parametrize('top, fires', [(0.995, True), (CONFIDENCE_LIMIT, False), (0.9, False)])
def test_overconfident_flag(store, top, fires):
    put(store, 'm', 'clean', 0, CLEAN6,
        stats={'prediction_confidence': {'mean_top_probability': top, 'mean_entropy_nats': 0.01}})
    put(store, 'm', 'fgsm', 8, images(*[10] * 6))
    flags = flags_of(store.root)
    assert set(flags) == ({'overconfident'} if fires else set())
    if fires:
        assert flags['overconfident'].detail == 'mean top-class probability 99.50 %'


def test_flagged_model_keeps_its_rank_and_is_marked(store):
    put(store, 'masked', 'clean', 0, CLEAN6)
    put(store, 'masked', 'fgsm', 8, images(*[10] * 6))
    put(store, 'masked', 'ifgsm', 8, images(*[25] * 6))
    put(store, 'plain', 'clean', 0, CLEAN6)
    put(store, 'plain', 'fgsm', 8, images(*[8] * 6))
    put(store, 'plain', 'ifgsm', 8, images(*[4] * 6))
    table = summary_table(load_results(store.root))
    assert list(table.model) == ['masked', 'plain'] and list(table['rank']) == [1, 2]
    assert table['flags'][0] == 'potentially unreliable: iterative weaker than single-step'
    assert table['flags'][1] == ''


def test_robust_miou_is_the_per_image_worst_case(store):
    """Per image the attack with the lowest pixel accuracy against the labels (here the clean
    prediction = the ground truth), the clean image included; then the mIoU of their sum."""
    put(store, 'm', 'clean', 0, images(30, 30, 30))
    put(store, 'm', 'fgsm', 8, images(10, 25, 30))
    put(store, 'm', 'ifgsm', 8, images(20, 5, 30))
    put(store, 'm', 'fgsm', 4, images(0, 0, 0))               # another ε: not a candidate
    df = load_results(store.root)
    value, low, high, n = robust_miou(df, 8.0)
    # image 0: FGSM (10), image 1: I-FGSM (5), image 2: no attack changed it, the clean image
    assert n == 2 and value == pytest.approx(miou(10 + 5 + 30, 3), abs=1e-15)
    assert low <= value <= high
    assert value < min(df[df.epsilon == 8].miou)
    table = summary_table(df)
    assert table.loc[0, 'robust mIoU ε=8'] == pytest.approx(miou(45, 3), abs=1e-15)


def test_robust_miou_with_ground_truth_labels(store):
    """Against the ground truth the clean image is a candidate with its own accuracy."""
    put(store, 'm', 'clean', 0, images(10, 30), label_source='ground_truth')
    put(store, 'm', 'pgd', 8, images(20, 5), label_source='ground_truth')
    value, *_ = robust_miou(load_results(store.root), 8.0)
    assert value == pytest.approx(miou(10 + 5, 2), abs=1e-15)


def test_ranking_robust_miou_first(store):
    # a: best robust mIoU, worst mean IoU ratio; b: the other way round
    put(store, 'b', 'clean', 0, images(30, 30))
    put(store, 'b', 'fgsm', 8, images(29, 29))
    put(store, 'b', 'ifgsm', 8, images(29, 1))
    put(store, 'a', 'clean', 0, images(30, 30))
    put(store, 'a', 'fgsm', 8, images(20, 20))
    put(store, 'a', 'ifgsm', 8, images(20, 20))
    table = summary_table(load_results(store.root))
    assert list(table.model) == ['a', 'b']
    assert table['robust mIoU ε=8'][0] > table['robust mIoU ε=8'][1]
    assert table['mean IoU ratio'][0] < table['mean IoU ratio'][1]


def test_ranking_then_mean_ratio_then_clean_then_name(store):
    """Without per-image matrices there is no robust mIoU: the mean IoU ratio ranks; equal ratios
    fall back to the clean mIoU, equal everything to the name."""
    def cell(model, attack, m):
        put(store, model, attack, 0 if attack == 'clean' else 8, m[None], write_per_image=False)
    full, half = np.array([[30, 0], [0, 30]]), np.array([[20, 10], [10, 20]])
    # IoU ratio 0.25 exactly for both: mIoU 0.25 / 1 and 0.125 / 0.5
    cell('zeta', 'clean', full)
    cell('zeta', 'fgsm', np.array([[30, 0], [30, 0]]))
    cell('alpha', 'clean', half)
    cell('alpha', 'fgsm', np.array([[15, 15], [30, 0]]))
    for name in ('twin_b', 'twin_a'):                          # identical: by name
        cell(name, 'clean', full)
        cell(name, 'fgsm', image(12))
    cell('best', 'clean', half)                               # lowest clean, highest ratio
    cell('best', 'fgsm', image(20))
    table = summary_table(load_results(store.root))
    assert not any(str(c).startswith('robust') for c in table.columns)
    assert list(table.model) == ['best', 'twin_a', 'twin_b', 'zeta', 'alpha']
    assert table['mean IoU ratio'][3] == table['mean IoU ratio'][4] == 0.25
    assert list(table['rank']) == [1, 2, 3, 4, 5]
