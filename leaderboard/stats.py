"""Bootstrap confidence intervals over images, from the per-image confusion matrices.

A cell's mIoU is computed from the *sum* of its per-image confusion matrices (one dataset-level
matrix, as mmsegmentation's ``IoUMetric``), so the spread over images is estimated by resampling
whole images: a bootstrap resample draws ``n`` of the cell's ``n`` images with replacement, sums
their matrices and recomputes the mIoU (Efron & Tibshirani 1993, *An Introduction to the
Bootstrap*, ch. 13: the percentile interval). The IoU ratio of Arnab et al. (2018) is resampled
*paired*: the adversarial and the clean mIoU of one resample come from the same images, as the
ratio itself does.

Everything is vectorised: a resample is a row of image counts (``(B, n)``, how often each image
was drawn), and the ``B`` resampled matrices are one integer matrix product ``counts @ per_image``
(exact: integer sums, held in float64 far below 2**53). The counts depend only on ``n``, the number of resamples and the seed, so
every cell with the same images shares the same resamples – which is what makes differences
between two cells of one model (an attack against another, ε against ε) paired as well.
"""
from __future__ import annotations

import functools
from typing import Optional, Tuple

import numpy as np

#: Number of bootstrap resamples per cell.
BOOTSTRAP_RESAMPLES = 1000
#: Seed of the resampling (with the image count: one fixed set of resamples per image count).
BOOTSTRAP_SEED = 0
#: Coverage of the percentile intervals.
CONFIDENCE = 0.95


@functools.lru_cache(maxsize=64)
def _counts(n: int, resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, n])
    draws = rng.integers(0, n, size=(resamples, n))
    offsets = (np.arange(resamples, dtype=np.int64) * n)[:, None]
    counts = np.bincount((draws + offsets).ravel(), minlength=resamples * n).reshape(resamples, n)
    counts.setflags(write=False)
    return counts


def resample_counts(n: int, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """``(resamples, n)`` int64: how often each of ``n`` images is drawn in each resample (rows
    sum to ``n``). Deterministic in ``(n, resamples, seed)``; read-only (cached)."""
    if n < 1:
        raise ValueError(f'a bootstrap needs at least one image, got n={n}')
    return _counts(int(n), int(resamples), int(seed))


def miou_of_matrices(conf: np.ndarray) -> np.ndarray:
    """mIoU of each matrix of a stack ``(..., C, C)``, as :func:`benchmark.metrics.mean_iou`:
    per class ``intersection / union``, classes with an empty union left out of the mean (NaN when
    every union is empty)."""
    conf = np.asarray(conf, dtype=np.float64)
    intersection = np.diagonal(conf, axis1=-2, axis2=-1)
    union = conf.sum(axis=-1) + conf.sum(axis=-2) - intersection
    present = union > 0
    # an empty union has an empty intersection: 0 / 1 adds nothing to the sum of the present classes
    total = (intersection / np.where(present, union, 1.0)).sum(axis=-1)
    count = present.sum(axis=-1)
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def bootstrap_miou(per_image: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES,
                   seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """``(resamples,)`` mIoU of the resampled sums of ``per_image`` (``(n, C, C)`` integer
    confusion matrices, one per image)."""
    per_image = np.asarray(per_image)
    if per_image.ndim != 3 or per_image.shape[1] != per_image.shape[2]:
        raise ValueError(f'per-image confusion matrices must be (n, C, C), got {per_image.shape}')
    n, c = per_image.shape[0], per_image.shape[1]
    counts = resample_counts(n, resamples, seed)
    # float64 holds these integer sums exactly (far below 2**53) and multiplies through BLAS
    sums = counts.astype(np.float64) @ per_image.reshape(n, c * c).astype(np.float64)
    return miou_of_matrices(sums.reshape(-1, c, c))


def bootstrap_pixel_accuracy(per_image: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES,
                             seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """``(resamples,)`` pixel accuracy (trace ÷ total) of the resampled sums of ``per_image``
    (``(n, C, C)``); with the ``vs_target`` matrices, the targeted success rate."""
    per_image = np.asarray(per_image)
    n, c = per_image.shape[0], per_image.shape[1]
    counts = resample_counts(n, resamples, seed).astype(np.float64)
    flat = per_image.reshape(n, c * c).astype(np.float64)
    right = counts @ flat[:, ::c + 1].sum(axis=1)
    total = counts @ flat.sum(axis=1)
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(total > 0, right / np.maximum(total, 1), np.nan)


def interval(samples: Optional[np.ndarray], confidence: float = CONFIDENCE) -> Tuple[float, float]:
    """The percentile interval ``(low, high)`` of bootstrap samples (NaN samples, e.g. resamples
    without any labelled class, are left out); ``(nan, nan)`` without samples."""
    if samples is None:
        return float('nan'), float('nan')
    samples = np.asarray(samples, dtype=np.float64)
    samples = samples[~np.isnan(samples)]
    if not len(samples):
        return float('nan'), float('nan')
    tail = (1 - confidence) / 2
    low, high = np.quantile(samples, [tail, 1 - tail])
    return float(low), float(high)


def ratio_samples(adversarial: Optional[np.ndarray], clean: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """Paired bootstrap samples of the IoU ratio (adversarial ÷ clean mIoU of the same
    resample); None when either is missing or they were drawn over different image counts."""
    if adversarial is None or clean is None or len(adversarial) != len(clean):
        return None
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where((clean != 0) & ~np.isnan(clean), adversarial / np.where(clean != 0, clean, 1.0),
                        np.nan)
