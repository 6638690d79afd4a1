"""Metrics of targeted dense attacks, computed from integer confusion matrices.

Like :mod:`benchmark.metrics` (rows: reference labels, columns: adversarial prediction), so every
number is exact under summation over images, shards and ranks. Only numpy is imported.

* ``vs_target`` matrix (reference = the attack's target map):
  :func:`targeted_success_rate` (defined in :mod:`benchmark.metrics`, re-exported here) – Metzen et al. 2017 (https://arxiv.org/abs/1704.05712), Sec. 4:
  "the categorical accuracy between [the] target segmentation and [the] predicted segmentation of
  the network on the adversarial example".
* ``vs_clean`` matrix (reference = the clean prediction):
  :func:`class_pixels_hidden` – Metzen et al., Sec. 4 ("Pedestrian pixels hidden"), Fischer et al.
  2017 (https://arxiv.org/abs/1703.01101), Sec. 2: the percentage of pixels predicted as the hidden
  class on the clean input that are assigned to any other class on the adversarial input;
  :func:`background_preserved` – Metzen et al., Sec. 4 ("Background pixels preserved"): the
  categorical accuracy on pixels not predicted as the hidden class on the clean input (there the
  dynamic target equals the clean prediction, so ``vs_clean`` suffices);
  :func:`fooling_rate` – the fraction of pixels whose prediction changed: the per-pixel analogue of
  the classification fooling rate (Moosavi-Dezfooli et al.; Poursaeed et al. 2018,
  https://arxiv.org/abs/1712.02328: "the ratio of images x for which K(f(x)) ≠ K(x)"). For
  segmentation Poursaeed et al. report the targeted success rate and mIoU instead.

Empty denominators give NaN (as :func:`benchmark.metrics.pixel_accuracy`).
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from .metrics import _none_if_nan, pixel_accuracy
from .metrics import square_matrix as _square
from .metrics import targeted_success_rate  # noqa: F401 (defined once, in benchmark.metrics)


def _class_index(conf: np.ndarray, hidden_class: int) -> int:
    if isinstance(hidden_class, bool) or not isinstance(hidden_class, (int, np.integer)) \
            or not 0 <= hidden_class < conf.shape[0]:
        raise ValueError(f'hidden_class must be a class id in [0, {conf.shape[0]}), got {hidden_class!r}')
    return int(hidden_class)


def class_pixels_hidden(conf_clean, hidden_class: int) -> float:
    """Fraction of the clean hidden-class pixels no longer predicted as that class.

    ``1 − conf[h, h] / Σ_j conf[h, j]`` of the ``vs_clean`` matrix (NaN if the class never occurs
    in the clean prediction).
    """
    conf = _square(conf_clean)
    h = _class_index(conf, hidden_class)
    total = conf[h].sum()
    return float(1.0 - conf[h, h] / total) if total > 0 else float('nan')


def background_preserved(conf_clean, hidden_class: int) -> float:
    """Fraction of the other (background) pixels whose adversarial prediction equals the clean one.

    ``Σ_{i≠h} conf[i, i] / Σ_{i≠h} Σ_j conf[i, j]`` of the ``vs_clean`` matrix.
    """
    conf = _square(conf_clean)
    h = _class_index(conf, hidden_class)
    keep = np.arange(conf.shape[0]) != h
    total = conf[keep].sum()
    return float(np.diag(conf)[keep].sum() / total) if total > 0 else float('nan')


def fooling_rate(conf_clean) -> float:
    """Fraction of pixels whose prediction changed: ``1 − trace / sum`` of ``vs_clean``."""
    agreement = pixel_accuracy(_square(conf_clean))
    return float('nan') if np.isnan(agreement) else float(1.0 - agreement)


def per_image_hiding(conf_clean_per_image, hidden_class: int):
    """Per-image class pixels hidden and background preserved, ``(hidden, preserved)`` arrays.

    Fischer et al. (Fig. 2) report the mean and standard deviation of these percentages over the
    images; an image whose clean prediction has no pixel of the class (or only that class) gets
    NaN in the corresponding array.
    """
    mats = np.asarray(conf_clean_per_image, dtype=np.int64)
    if mats.ndim != 3 or mats.shape[1] != mats.shape[2]:
        raise ValueError(f'per-image confusion matrices must be (N, C, C), got shape {mats.shape}')
    hidden = np.array([class_pixels_hidden(m, hidden_class) for m in mats], dtype=float)
    preserved = np.array([background_preserved(m, hidden_class) for m in mats], dtype=float)
    return hidden, preserved


def summarize_targeted(conf_clean=None, conf_target=None,
                       hidden_class: Optional[int] = None) -> Dict[str, Optional[float]]:
    """The targeted-attack metrics of one cell as JSON-friendly values (NaN → None).

    Returns a dict with ``fooling_rate`` (if ``conf_clean``), ``targeted_success_rate`` (if
    ``conf_target``), and ``class_pixels_hidden`` / ``background_preserved`` (if ``conf_clean`` and
    ``hidden_class``).
    """
    out: Dict[str, Optional[float]] = {}
    if conf_clean is not None:
        out['fooling_rate'] = _none_if_nan(fooling_rate(conf_clean))
        if hidden_class is not None:
            out['class_pixels_hidden'] = _none_if_nan(class_pixels_hidden(conf_clean, hidden_class))
            out['background_preserved'] = _none_if_nan(background_preserved(conf_clean, hidden_class))
    if conf_target is not None:
        out['targeted_success_rate'] = _none_if_nan(targeted_success_rate(conf_target))
    return out
