"""Metrics computed from integer confusion matrices.

Every number the benchmark reports is derived from confusion matrices of shape ``(C, C)``
(rows: reference labels, columns: predicted labels, ``int64``). Summing matrices is exact, so
per-image matrices merge across batches, shards, resumed runs and distributed ranks without
rounding error, and the leaderboard can recompute every stored metric.

Three references are used per attacked cell (see DESIGN.md):

* ``vs_ground_truth`` – adversarial prediction vs. the annotation (mIoU, pixel accuracy),
* ``vs_clean`` – adversarial prediction vs. the clean prediction (how much the attack changed),
* ``vs_target`` – adversarial prediction vs. the attack's target map (targeted success rate).

The mIoU follows mmsegmentation's ``IoUMetric`` exactly: IoU per class is
``intersection / union`` over the whole dataset, classes whose union is empty are NaN and are left
out of the mean.
"""
from __future__ import annotations

from typing import Dict, Iterable, Optional

import numpy as np

IGNORE_INDEX = 255


def confusion_matrix(reference: np.ndarray, prediction: np.ndarray, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Confusion matrix of one label map against another.

    Args:
        reference: Integer array of reference labels (any shape). Pixels equal to
            ``ignore_index`` (or outside ``[0, num_classes)``) are skipped.
        prediction: Integer array of predicted labels, same shape as ``reference``.
        num_classes: Number of classes ``C``.
        ignore_index: Label of pixels to skip.

    Returns:
        ``(C, C)`` int64 array; entry ``[i, j]`` counts pixels with reference ``i`` predicted ``j``.
    """
    reference = np.asarray(reference).reshape(-1).astype(np.int64)
    prediction = np.asarray(prediction).reshape(-1).astype(np.int64)
    if reference.shape != prediction.shape:
        raise ValueError(f'reference and prediction differ in size: {reference.size} vs {prediction.size}')
    valid = (reference != ignore_index) & (reference >= 0) & (reference < num_classes)
    valid &= (prediction >= 0) & (prediction < num_classes)
    index = reference[valid] * num_classes + prediction[valid]
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def batch_confusion_matrices(reference: np.ndarray, prediction: np.ndarray, num_classes: int,
                             ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Per-image confusion matrices of a batch ``(N, H, W)`` → ``(N, C, C)`` int64."""
    return np.stack([confusion_matrix(r, p, num_classes, ignore_index)
                     for r, p in zip(reference, prediction)])


def intersection_and_union(conf: np.ndarray):
    """Per-class intersection, union, reference area and predicted area of a confusion matrix."""
    conf = np.asarray(conf, dtype=np.int64)
    intersection = np.diag(conf)
    area_reference = conf.sum(axis=1)
    area_prediction = conf.sum(axis=0)
    union = area_reference + area_prediction - intersection
    return intersection, union, area_reference, area_prediction


def per_class_iou(conf: np.ndarray) -> np.ndarray:
    """IoU of each class; NaN for classes absent from both reference and prediction."""
    intersection, union, _, _ = intersection_and_union(conf)
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(union > 0, intersection / np.maximum(union, 1), np.nan)


def mean_iou(conf: np.ndarray) -> float:
    """Mean IoU over classes with a non-empty union (``nanmean``, as mmseg's ``IoUMetric``)."""
    iou = per_class_iou(conf)
    if np.all(np.isnan(iou)):
        return float('nan')
    return float(np.nanmean(iou))


def pixel_accuracy(conf: np.ndarray) -> float:
    """Fraction of counted pixels whose prediction equals the reference (aAcc in mmseg)."""
    conf = np.asarray(conf, dtype=np.int64)
    total = conf.sum()
    return float(np.trace(conf) / total) if total > 0 else float('nan')


def per_class_accuracy(conf: np.ndarray) -> np.ndarray:
    """Recall of each class (NaN where the class does not occur in the reference)."""
    conf = np.asarray(conf, dtype=np.int64)
    area = conf.sum(axis=1)
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(area > 0, np.diag(conf) / np.maximum(area, 1), np.nan)


def iou_ratios(adversarial_miou, clean_miou) -> np.ndarray:
    """Arnab et al.'s IoU ratio, element-wise: adversarial mIoU / clean mIoU.

    `On the Robustness of Semantic Segmentation Models to Adversarial Attacks
    <https://arxiv.org/abs/1711.09856>`_ (CVPR 2018), Sec. 4: both mIoUs are over the whole dataset.
    This is the one definition of the ratio: :func:`iou_ratio` (one cell) and the leaderboard (a
    column of cells) call it.

    Args:
        adversarial_miou: Adversarial mIoU(s), any array-like (NaN allowed).
        clean_miou: The clean mIoU(s) of the same model(s), broadcastable against it.

    Returns:
        float64 array of the ratios; NaN where the clean mIoU is 0 or NaN (no ratio exists).
    """
    adversarial = np.asarray(adversarial_miou, dtype=np.float64)
    clean = np.asarray(clean_miou, dtype=np.float64)
    defined = (clean != 0) & ~np.isnan(clean)
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(defined, adversarial / np.where(defined, clean, 1.0), np.nan)


def iou_ratio(adversarial_miou: float, clean_miou: Optional[float]) -> float:
    """Arnab et al.'s IoU ratio of one cell (see :func:`iou_ratios`); NaN if the clean mIoU is 0, NaN or None."""
    if clean_miou is None:
        return float('nan')
    return float(iou_ratios(adversarial_miou, clean_miou))


def targeted_success_rate(conf_target: np.ndarray) -> float:
    """Fraction of target pixels predicted as their target: ``trace / sum`` of the ``vs_target`` matrix.

    Metzen et al. 2017 (https://arxiv.org/abs/1704.05712), Sec. 4: "the categorical accuracy
    between [the] target segmentation and [the] predicted segmentation of the network on the
    adversarial example" (pixels whose target is 255 are not counted). The one definition:
    :func:`summarize`, :mod:`benchmark.targeted_metrics` and the leaderboard call it.

    Raises:
        ValueError: ``conf_target`` is not a square ``(C, C)`` matrix.
    """
    return pixel_accuracy(square_matrix(conf_target))


def square_matrix(conf) -> np.ndarray:
    """``conf`` as an int64 array, checked to be a square ``(C, C)`` confusion matrix."""
    conf = np.asarray(conf, dtype=np.int64)
    if conf.ndim != 2 or conf.shape[0] != conf.shape[1]:
        raise ValueError(f'a confusion matrix must be square (C, C), got shape {conf.shape}')
    return conf


def sum_matrices(matrices: Iterable[np.ndarray]) -> Optional[np.ndarray]:
    """Exact sum of confusion matrices (None for an empty iterable)."""
    total = None
    for m in matrices:
        m = np.asarray(m, dtype=np.int64)
        total = m.copy() if total is None else total + m
    return total


def summarize(conf_gt: np.ndarray, conf_clean: Optional[np.ndarray] = None,
              conf_target: Optional[np.ndarray] = None) -> Dict[str, object]:
    """All derived metrics of one cell, as plain JSON-friendly Python values.

    Args:
        conf_gt: Confusion matrix vs. ground truth.
        conf_clean: Confusion matrix vs. the clean prediction (optional).
        conf_target: Confusion matrix vs. the attack target (optional).

    Returns:
        Dict with ``miou``, ``pixel_accuracy``, ``per_class_iou`` (NaN → None), and when given,
        ``agreement_with_clean`` (pixel accuracy vs. the clean prediction) and
        ``targeted_success_rate`` (:func:`targeted_success_rate`, pixel accuracy vs. the target).
    """
    out: Dict[str, object] = {
        'miou': _none_if_nan(mean_iou(conf_gt)),
        'pixel_accuracy': _none_if_nan(pixel_accuracy(conf_gt)),
        'per_class_iou': [_none_if_nan(v) for v in per_class_iou(conf_gt)],
    }
    if conf_clean is not None:
        out['agreement_with_clean'] = _none_if_nan(pixel_accuracy(conf_clean))
    if conf_target is not None:
        out['targeted_success_rate'] = _none_if_nan(targeted_success_rate(conf_target))
    return out


def _none_if_nan(value: float):
    value = float(value)
    return None if np.isnan(value) else value
