"""Bootstrap confidence intervals over images (leaderboard.stats), on hand-made matrices."""
import numpy as np
import pytest

from benchmark import metrics
from leaderboard import stats

from .records import ResultStore, images, miou, put


def test_resample_counts_are_fixed_draws_of_n_images():
    counts = stats.resample_counts(5, 200, seed=3)
    assert counts.shape == (200, 5) and counts.dtype == np.int64
    assert (counts.sum(axis=1) == 5).all() and (counts >= 0).all()
    np.testing.assert_array_equal(counts, stats.resample_counts(5, 200, seed=3))     # deterministic
    assert not np.array_equal(counts, stats.resample_counts(5, 200, seed=4))
    # the same draws as numpy's generator gives directly
    draws = np.random.default_rng([3, 5]).integers(0, 5, size=(200, 5))
    np.testing.assert_array_equal(counts, np.stack([np.bincount(d, minlength=5) for d in draws]))
    with pytest.raises(ValueError, match='at least one image'):
        stats.resample_counts(0)


def test_miou_of_matrices_is_benchmark_metrics_mean_iou():
    rng = np.random.default_rng(0)
    conf = rng.integers(0, 50, size=(40, 5, 5))
    conf[:, 3, :] = 0
    conf[:, :, 3] = 0            # class 3 absent: left out of the mean
    conf[7] = 0                  # nothing at all: NaN
    got = stats.miou_of_matrices(conf)
    expected = [metrics.mean_iou(c) for c in conf]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    ok = ~np.isnan(got)
    assert (got[ok] == np.asarray(expected)[ok]).all()        # bit-identical


def test_bootstrap_resamples_are_the_sums_of_the_drawn_images():
    per_image = images(30, 20, 10, 5)
    samples = stats.bootstrap_miou(per_image, resamples=50, seed=1)
    counts = stats.resample_counts(4, 50, seed=1)
    for row, value in zip(counts, samples):
        c = int(row @ np.array([30, 20, 10, 5]))
        assert value == pytest.approx(miou(c, 4), abs=1e-15)


def test_interval_contains_the_estimate_and_shrinks_with_more_images():
    rng = np.random.default_rng(1)
    right = rng.integers(5, 30, size=64)
    widths = []
    for n in (4, 16, 64):
        per_image = images(*right[:n])
        estimate = metrics.mean_iou(per_image.sum(0))
        low, high = stats.interval(stats.bootstrap_miou(per_image))
        assert low <= estimate <= high
        assert (low, high) == stats.interval(stats.bootstrap_miou(per_image))     # deterministic
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2] > 0


def test_identical_images_have_a_zero_width_interval():
    low, high = stats.interval(stats.bootstrap_miou(images(12, 12, 12)))
    assert low == high == pytest.approx(miou(36, 3))


def test_interval_without_samples_is_nan():
    assert np.isnan(stats.interval(None)).all()
    assert np.isnan(stats.interval(np.array([np.nan, np.nan]))).all()


def test_ratio_samples_are_paired():
    adv = np.array([0.2, 0.3, np.nan])
    clean = np.array([0.4, 0.0, 0.5])
    out = stats.ratio_samples(adv, clean)
    assert out[0] == pytest.approx(0.5) and np.isnan(out[1]) and np.isnan(out[2])
    assert stats.ratio_samples(adv, None) is None and stats.ratio_samples(adv, clean[:2]) is None


def test_pixel_accuracy_samples():
    per_image = images(30, 0)
    counts = stats.resample_counts(2, 100)
    samples = stats.bootstrap_pixel_accuracy(per_image, 100)
    np.testing.assert_allclose(samples, counts[:, 0] / 2)


def test_loaded_cells_carry_their_intervals(tmp_path):
    """load_results: the CI of each cell's mIoU and the paired CI of its IoU ratio, from its .npz."""
    from leaderboard.data import load_results
    store = ResultStore(tmp_path / 'results')
    clean, adv = images(30, 28, 26, 30, 29, 27), images(20, 10, 15, 25, 5, 12)
    put(store, 'm', 'clean', 0, clean)
    put(store, 'm', 'fgsm', 8, adv)
    df = load_results(tmp_path / 'results').set_index('attack')
    low, high = stats.interval(stats.bootstrap_miou(adv))
    assert (df.loc['fgsm', 'miou_ci_low'], df.loc['fgsm', 'miou_ci_high']) == (low, high)
    assert low < df.loc['fgsm', 'miou'] < high
    ratio = stats.bootstrap_miou(adv) / stats.bootstrap_miou(clean)
    assert (df.loc['fgsm', 'iou_ratio_ci_low'], df.loc['fgsm', 'iou_ratio_ci_high']) == stats.interval(ratio)
    assert df.loc['fgsm', 'iou_ratio_ci_low'] < df.loc['fgsm', 'iou_ratio'] < df.loc['fgsm', 'iou_ratio_ci_high']
    assert df.loc['clean', 'iou_ratio_ci_low'] == df.loc['clean', 'iou_ratio_ci_high'] == 1.0
