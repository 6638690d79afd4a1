"""Targeted-attack metrics from confusion matrices: exact values on hand-made cases."""
import numpy as np
import pytest

from benchmark import metrics
from benchmark.targeted_metrics import (background_preserved, class_pixels_hidden, fooling_rate,
                                        summarize_targeted, targeted_success_rate)

# vs_clean: rows = clean prediction, columns = adversarial prediction; hidden class h = 2
CONF_CLEAN = np.array([[50, 3, 0, 2],      # background class 0: 50 of 55 preserved
                       [4, 36, 0, 0],      # background class 1: 36 of 40 preserved
                       [6, 5, 2, 7],       # hidden class 2: 18 of 20 pixels hidden
                       [0, 1, 1, 13]])     # background class 3: 13 of 15 preserved


def test_hand_made_values():
    assert class_pixels_hidden(CONF_CLEAN, 2) == pytest.approx(1 - 2 / 20)
    assert background_preserved(CONF_CLEAN, 2) == pytest.approx((50 + 36 + 13) / (55 + 40 + 15))
    assert fooling_rate(CONF_CLEAN) == pytest.approx(1 - (50 + 36 + 2 + 13) / 130)
    conf_target = np.array([[40, 2], [8, 30]])
    assert targeted_success_rate(conf_target) == pytest.approx(70 / 80)


def test_from_label_maps():
    """End to end from maps: hide class 1; the pixel-level counts give the same numbers."""
    clean = np.array([[0, 1, 1, 2], [0, 1, 2, 2]])
    adv = np.array([[0, 0, 1, 2], [1, 0, 2, 0]])
    target = np.array([[0, 0, 2, 2], [0, 0, 2, 255]])
    conf_clean = metrics.confusion_matrix(clean, adv, 3)
    conf_target = metrics.confusion_matrix(target, adv, 3)
    assert class_pixels_hidden(conf_clean, 1) == pytest.approx(2 / 3)       # 2 of 3 class-1 pixels gone
    assert background_preserved(conf_clean, 1) == pytest.approx(3 / 5)      # (0,0) (0,3) (1,2) kept
    assert fooling_rate(conf_clean) == pytest.approx(4 / 8)
    assert targeted_success_rate(conf_target) == pytest.approx(5 / 7)       # 255 pixel not counted


def test_sums_of_per_image_matrices_merge_exactly():
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 4, (5, 6, 7))
    adv = np.where(rng.random(clean.shape) < 0.3, rng.integers(0, 4, clean.shape), clean)
    per_image = metrics.batch_confusion_matrices(clean, adv, 4)
    total = metrics.sum_matrices(per_image)
    h = 2
    hid = clean == h
    assert class_pixels_hidden(total, h) == pytest.approx((adv[hid] != h).mean())
    assert background_preserved(total, h) == pytest.approx((adv[~hid] == clean[~hid]).mean())
    assert fooling_rate(total) == pytest.approx((adv != clean).mean())


def test_empty_denominators_are_nan():
    conf = np.zeros((3, 3), dtype=np.int64)
    conf[0, 0] = 4
    assert np.isnan(class_pixels_hidden(conf, 1))          # class never predicted on clean inputs
    assert background_preserved(conf, 1) == 1.0
    assert np.isnan(background_preserved(np.diag([0, 5, 0]), 1))
    assert np.isnan(targeted_success_rate(np.zeros((2, 2))))
    assert np.isnan(fooling_rate(np.zeros((2, 2))))


def test_summary_and_validation():
    out = summarize_targeted(CONF_CLEAN, np.array([[3, 1], [0, 4]]), hidden_class=2)
    assert out == pytest.approx({'fooling_rate': 29 / 130, 'class_pixels_hidden': 0.9,
                                 'background_preserved': 99 / 110, 'targeted_success_rate': 7 / 8})
    assert set(summarize_targeted(CONF_CLEAN)) == {'fooling_rate'}
    assert summarize_targeted(conf_target=np.zeros((2, 2))) == {'targeted_success_rate': None}
    with pytest.raises(ValueError, match='hidden_class'):
        class_pixels_hidden(CONF_CLEAN, 4)
    with pytest.raises(ValueError, match='square'):
        fooling_rate(np.zeros((2, 3)))


def test_per_image_hiding_on_hand_made_matrices():
    from benchmark.targeted_metrics import per_image_hiding
    a = np.array([[8, 2, 0], [3, 1, 0], [0, 0, 6]])     # class 1: 4 clean pixels, 3 now hidden
    b = np.array([[5, 0, 0], [0, 0, 0], [1, 0, 4]])     # no pixel of class 1 in the clean prediction
    hidden, preserved = per_image_hiding(np.stack([a, b]), hidden_class=1)
    assert hidden[0] == pytest.approx(3 / 4) and np.isnan(hidden[1])
    assert preserved.tolist() == pytest.approx([14 / 16, 9 / 10])
    with pytest.raises(ValueError, match=r'\(N, C, C\)'):
        per_image_hiding(a, hidden_class=1)


def test_one_definition_of_the_targeted_success_rate():
    """benchmark.metrics defines it; targeted_metrics and the record's metrics use that function."""
    from benchmark import metrics, targeted_metrics
    assert targeted_metrics.targeted_success_rate is metrics.targeted_success_rate
    conf = np.array([[3, 1], [0, 4]])
    assert metrics.summarize(conf, conf, conf)['targeted_success_rate'] == \
        summarize_targeted(conf_target=conf)['targeted_success_rate'] == metrics.targeted_success_rate(conf)
