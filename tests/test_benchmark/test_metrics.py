"""Metrics from confusion matrices: exact values on hand-made cases and agreement with mmseg."""
import numpy as np
import pytest
import torch

from benchmark import metrics


def test_confusion_matrix_hand_made():
    ref = np.array([[0, 0, 1], [1, 2, 255]])
    pred = np.array([[0, 1, 1], [1, 0, 2]])
    conf = metrics.confusion_matrix(ref, pred, 3)
    expected = np.array([[1, 1, 0],
                         [0, 2, 0],
                         [1, 0, 0]])
    np.testing.assert_array_equal(conf, expected)
    assert conf.dtype == np.int64
    # IoU: class 0: 1 / (2 + 2 - 1) = 1/3; class 1: 2 / (2 + 3 - 2) = 2/3; class 2: 0 / (1 + 0) = 0
    np.testing.assert_allclose(metrics.per_class_iou(conf), [1 / 3, 2 / 3, 0.0])
    assert metrics.mean_iou(conf) == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)
    assert metrics.pixel_accuracy(conf) == pytest.approx(3 / 5)   # ignore pixel not counted


def test_absent_classes_are_nan_and_excluded():
    conf = np.zeros((4, 4), dtype=np.int64)
    conf[0, 0] = 5
    conf[1, 2] = 5     # class 1 never predicted, class 2 never in reference: both IoU 0
    iou = metrics.per_class_iou(conf)
    assert iou[0] == 1.0 and iou[1] == 0.0 and iou[2] == 0.0 and np.isnan(iou[3])
    assert metrics.mean_iou(conf) == pytest.approx(1 / 3)


def test_iou_ratio():
    assert metrics.iou_ratio(0.3, 0.6) == pytest.approx(0.5)
    assert np.isnan(metrics.iou_ratio(0.3, 0.0))
    assert np.isnan(metrics.iou_ratio(0.3, float('nan'))) and np.isnan(metrics.iou_ratio(0.3, None))


def test_iou_ratios_vectorised_equal_the_scalar_bit_for_bit():
    """The leaderboard's column of ratios and a cell's ratio come from one definition: equal bits,
    and equal to the plain division wherever the clean mIoU is a usable number."""
    rng = np.random.default_rng(0)
    adv, clean = rng.random(200), rng.random(200)
    clean[:5] = [0.0, np.nan, 0.0, np.nan, 1e-300]
    adv[5] = np.nan
    column = metrics.iou_ratios(adv, clean)
    scalar = np.array([metrics.iou_ratio(a, c) for a, c in zip(adv, clean)])
    np.testing.assert_array_equal(column, scalar)                  # NaN == NaN in assert_array_equal
    assert np.isnan(column[:4]).all() and np.isnan(column[5])
    np.testing.assert_array_equal(column[6:], adv[6:] / clean[6:])


def test_targeted_success_rate_is_pixel_accuracy_of_the_target_matrix():
    conf = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 4]])
    assert metrics.targeted_success_rate(conf) == 16 / 20 == metrics.pixel_accuracy(conf)
    assert np.isnan(metrics.targeted_success_rate(np.zeros((3, 3))))
    with pytest.raises(ValueError, match='square'):
        metrics.targeted_success_rate(np.ones((2, 3)))


def test_per_image_sum_equals_dataset_matrix():
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 6, size=(5, 7, 9))
    ref[rng.random(ref.shape) < 0.1] = 255
    pred = rng.integers(0, 6, size=(5, 7, 9))
    per_image = metrics.batch_confusion_matrices(ref, pred, 6)
    np.testing.assert_array_equal(per_image.sum(0), metrics.confusion_matrix(ref, pred, 6))


def test_summarize_keys_and_nan_to_none():
    conf = np.diag([3, 0, 2]).astype(np.int64)
    out = metrics.summarize(conf, conf, conf)
    assert out['miou'] == 1.0 and out['per_class_iou'][1] is None
    assert out['agreement_with_clean'] == 1.0 and out['targeted_success_rate'] == 1.0


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_miou_matches_mmseg_iou_metric(seed):
    """Our mIoU equals mmseg's IoUMetric on the same predictions (19 classes, ignore 255)."""
    from mmengine.structures import PixelData
    from mmseg.evaluation import IoUMetric
    from mmseg.structures import SegDataSample

    rng = np.random.default_rng(seed)
    num_classes = 19
    names = tuple(f'c{i}' for i in range(num_classes))
    metric = IoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = dict(classes=names)
    total = np.zeros((num_classes, num_classes), dtype=np.int64)
    for _ in range(4):
        gt = rng.integers(0, num_classes - 3, size=(16, 24))   # some classes absent from the gt
        gt[rng.random(gt.shape) < 0.05] = 255
        pred = np.where(rng.random(gt.shape) < 0.6, gt, rng.integers(0, num_classes, size=gt.shape))
        pred[pred == 255] = 0
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(data=torch.from_numpy(gt)[None])
        sample.pred_sem_seg = PixelData(data=torch.from_numpy(pred)[None])
        metric.process([], [sample.to_dict()])
        total += metrics.confusion_matrix(gt, pred, num_classes)
    # exact comparison on the per-class areas mmseg accumulates
    inter, union, _, _ = [sum(r[i] for r in metric.results).numpy() for i in range(4)]
    ours_inter, ours_union, _, _ = metrics.intersection_and_union(total)
    np.testing.assert_array_equal(inter, ours_inter)
    np.testing.assert_array_equal(union, ours_union)
    result = metric.compute_metrics(metric.results)
    assert result['mIoU'] == pytest.approx(round(100 * metrics.mean_iou(total), 2), abs=1e-9)
    assert result['aAcc'] == pytest.approx(round(100 * metrics.pixel_accuracy(total), 2), abs=1e-9)
