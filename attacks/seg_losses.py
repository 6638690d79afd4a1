"""Per-pixel segmentation losses by name, reduced to one value per image (for APGD and friends).

Every loss is a map ``ℓ(z_i, y_i)`` over the pixels ``i`` of an image with logits ``z_i ∈ R^C``
and label ``y_i`` (255 = ignored: ``ℓ = 0`` there), summed over the image's pixels::

    L(z, y) = Σ_i ℓ(z_i, y_i)                                       → an (N,) tensor per batch

The sum (not SEA's mean over the ``H·W`` pixels) is the convention of every attack here: it keeps
each image independent of the others, and a per-image positive constant changes neither a sign
step, nor an L2-normalised step, nor any comparison of one image's losses across iterations —
the only uses APGD makes of them. For an ensemble source (logits carrying ``loss_terms``) the
result is the weighted sum of the members' losses, through :func:`attacks.base.member_weighted`.

With ``CE_i = −log softmax(z_i)_{y_i}``, ``p_i = softmax(z_i)`` and
``m_i = 1[argmax_c z_{i,c} = y_i]`` (the pixel is still correctly classified; computed from the
detached logits, so a constant of the gradient):

``ce``
    ``CE_i`` (the per-pixel cross-entropy of every attack of this library).
``mask_ce_avg``
    ``m_i · CE_i``: the cross-entropy of the pixels still correctly classified only (Croce, Singh
    & Hein 2024, "Towards Reliable Evaluation and Fast Training of Robust Semantic Segmentation
    Models", https://arxiv.org/abs/2306.12941, the masked cross-entropy ``L_Mask-CE``; their code,
    ``masked_cross_entropy``, averages it over all ``H·W`` pixels of the image — hence "avg").
    Pixels already fooled stop pulling the gradient, which then goes to the pixels left.
``mask_ce_bal``
    ``w_{y_i} · m_i · CE_i``: the masked cross-entropy balanced over the classes (Croce et al.
    2024, ``L_Mask-Bal-CE``), so that small classes — which weigh as much as large ones in the
    mIoU — are not drowned by large ones. "Balanced" is a *class* weighting, not a normalisation
    by the number of masked pixels: the authors' code passes per-class ``weight`` to the
    cross-entropy (``masked_cross_entropy_balanced``), with weights pre-computed as the inverse
    class frequencies of the evaluation dataset (their ``VOC_WTS`` / ``ADE_WTS``, summing to 1).
    An attack here sees one batch, not the dataset, so by default the weights are each image's
    own inverse class frequencies among its labelled pixels, normalised to mean 1 over them::

        w_c = n / (K · n_c)        n_c = labelled pixels of class c, n = Σ_c n_c,
                                   K = number of classes present in the image's labels

    (every class present then carries the same total weight ``n / K``; with equally frequent
    classes ``mask_ce_bal = mask_ce_avg``). ``class_weights=[w_0, …, w_{C−1}]`` gives fixed
    weights instead, e.g. dataset frequencies as in the authors' code.
``js``
    The Jensen–Shannon divergence between the prediction and the one-hot label (Croce et al.
    2024, ``L_JS``; Lin 1991)::

        JS(p_i ‖ e_{y_i}) = ½ KL(p_i ‖ q_i) + ½ KL(e_{y_i} ‖ q_i),   q_i = (p_i + e_{y_i}) / 2

    summed over the classes. It depends on the label's probability ``π = p_{i, y_i}`` only:
    ``JS = log 2 + ½ (π log π − (1 + π) log(1 + π))``, which is how it is computed here (from
    ``log_softmax``, finite gradients even where a softmax entry underflows to 0). It is bounded
    by ``log 2``, reached when ``π = 0``, so a pixel already fooled with confidence contributes
    little gradient.
``segpgd``
    SegPGD's weighting (Gu et al. 2022, https://arxiv.org/abs/2207.12391): ``(1 − λ_t)`` on pixels
    still correct, ``λ_t`` on the others, times ``CE_i``, ``λ_t = (t − 1) / (2T)`` at gradient
    evaluation ``t = 1 … T`` — the weights of :meth:`attacks.segpgd.SegPGD.pixel_weights`
    themselves. Needs ``step`` and ``num_steps``.
``cospgd``
    CosPGD's weighting (Agnihotri et al. 2024, https://arxiv.org/abs/2302.02213):
    ``sg(cos(p_i, e_{y_i})) · CE_i`` with :func:`attacks.cospgd.softmax_onehot_cosine`.
``dlr``
    The difference of logits ratio (Croce & Hein 2020, https://arxiv.org/abs/2003.01690, eq. 6)
    per pixel, with ``z_{π1} ≥ z_{π2} ≥ z_{π3}`` the sorted logits::

        DLR_i = −(z_{i,y_i} − max_{c ≠ y_i} z_{i,c}) / (z_{i,π1} − z_{i,π3} + 10⁻¹²)

    defined for ``C ≥ 3`` classes only (refused otherwise).
"""
from __future__ import annotations

import math
import numbers
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from .base import IGNORE_INDEX, member_weighted
from .cospgd import softmax_onehot_cosine
from .segpgd import SegPGD

#: the names :func:`image_losses` accepts, in the order of the module docstring
LOSSES = ('ce', 'mask_ce_avg', 'mask_ce_bal', 'js', 'segpgd', 'cospgd', 'dlr')

#: losses whose value depends on the iteration (``step`` / ``num_steps``); they cannot be compared
#: across iterations, so APGD never tracks them for its step-size rule
STEP_DEPENDENT = ('segpgd',)

#: the DLR denominator's guard (Croce & Hein 2020, eq. 6)
DLR_GUARD = 1e-12


def check_loss_name(name, what: str = 'loss') -> str:
    """A loss name of :data:`LOSSES`; ``ValueError`` listing them otherwise."""
    if not isinstance(name, str) or name not in LOSSES:
        raise ValueError(f'{what} must be one of {", ".join(LOSSES)}, got {name!r}')
    return name


def check_class_weights(class_weights) -> Optional[tuple]:
    """None, or a non-empty sequence of finite numbers ≥ 0 (one weight per class)."""
    if class_weights is None:
        return None
    if isinstance(class_weights, (str, bytes)) or not isinstance(class_weights, Sequence) \
            or not class_weights:
        raise ValueError(f'class_weights must be None or a list of one weight per class, got '
                         f'{class_weights!r}')
    out = []
    for w in class_weights:
        if isinstance(w, bool) or not isinstance(w, numbers.Real) or not math.isfinite(w) or w < 0:
            raise ValueError(f'class_weights must be finite numbers >= 0, got {w!r} in {list(class_weights)!r}')
        out.append(float(w))
    return tuple(out)


def _valid_labels(labels: torch.Tensor):
    """``(valid, y0)``: where the label counts, and the labels with 255 replaced by class 0."""
    valid = labels != IGNORE_INDEX
    return valid, torch.where(valid, labels, torch.zeros_like(labels))


def predicted_classes(logits: torch.Tensor) -> torch.Tensor:
    """``argmax_c z_{i,c}``, ``(N, H, W)``, detached: the same indices as ``argmax(dim=1)`` (the
    first maximal class on ties), computed as ``max(dim=1).indices``, which is several times
    faster over the channels of an ``(N, C, H, W)`` tensor on CPU (see
    ``model_zoo.pixel_model.channel_argmax``, measured there)."""
    return logits.detach().max(dim=1).indices


def correctly_classified(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``m_i``: ``(N, H, W)`` bool, labelled pixels whose arg-max is their label (detached)."""
    return (predicted_classes(logits) == labels) & (labels != IGNORE_INDEX)


def pixel_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``CE_i`` per pixel, ``(N, H, W)``; 0 where the label is 255."""
    return F.cross_entropy(logits, labels.long(), ignore_index=IGNORE_INDEX, reduction='none')


def balanced_class_weights(labels: torch.Tensor, num_classes: int,
                           class_weights: Optional[Sequence[float]] = None,
                           dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``w_{y_i}`` per pixel, ``(N, H, W)``, 0 where the label is 255 (see ``mask_ce_bal``).

    Default: each image's inverse class frequencies, ``w_c = n / (K · n_c)``; with
    ``class_weights`` the fixed weight of each pixel's class.
    """
    valid, y0 = _valid_labels(labels)
    if class_weights is not None:
        if len(class_weights) != num_classes:
            raise ValueError(f'class_weights has {len(class_weights)} weights but the model '
                             f'predicts {num_classes} classes')
        table = torch.tensor(class_weights, dtype=dtype, device=labels.device)
        return torch.where(valid, table[y0], torch.zeros((), dtype=dtype, device=labels.device))
    n = labels.shape[0]
    flat, vflat = y0.reshape(n, -1), valid.reshape(n, -1).to(dtype)
    counts = torch.zeros(n, num_classes, dtype=dtype, device=labels.device).scatter_add_(1, flat, vflat)
    present = counts > 0
    k = present.sum(1, keepdim=True).to(dtype)
    total = counts.sum(1, keepdim=True)
    weights = torch.where(present, total / (k * counts.clamp_min(1)), torch.zeros_like(counts))
    return (weights.gather(1, flat) * vflat).view(labels.shape)


def js_to_onehot(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``JS(softmax(z_i) ‖ e_{y_i})`` per pixel, ``(N, H, W)``; 0 where the label is 255.

    Computed as ``log 2 + ½ (π log π − (1 + π) log(1 + π))`` with ``π`` the label's probability
    (the closed form of the definition; see the module docstring).
    """
    valid, y0 = _valid_labels(labels)
    log_pi = F.log_softmax(logits, dim=1).gather(1, y0[:, None])[:, 0]
    pi = log_pi.exp()
    js = math.log(2.0) + 0.5 * (pi * log_pi - (1.0 + pi) * torch.log1p(pi))
    return torch.where(valid, js, torch.zeros_like(js))


def pixel_dlr(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-pixel DLR loss (Croce & Hein 2020, eq. 6), ``(N, H, W)``; 0 where the label is 255."""
    num_classes = logits.shape[1]
    if num_classes < 3:
        raise ValueError(f'the dlr loss needs at least 3 classes (its denominator is the gap '
                         f'between the largest and the third largest logit); the model predicts '
                         f'{num_classes}')
    valid, y0 = _valid_labels(labels)
    z_y = logits.gather(1, y0[:, None])[:, 0]
    others = logits.masked_fill(F.one_hot(y0, num_classes).permute(0, 3, 1, 2).bool(), float('-inf'))
    top = logits.topk(3, dim=1).values
    dlr = -(z_y - others.max(dim=1).values) / (top[:, 0] - top[:, 2] + DLR_GUARD)
    return torch.where(valid, dlr, torch.zeros_like(dlr))


def pixel_losses(name: str, logits: torch.Tensor, labels: torch.Tensor, *,
                 step: Optional[int] = None, num_steps: Optional[int] = None,
                 class_weights: Optional[Sequence[float]] = None) -> torch.Tensor:
    """The per-pixel loss map ``ℓ(z_i, y_i)`` of one set of logits, ``(N, H, W)``.

    Args:
        name: One of :data:`LOSSES`.
        logits: ``(N, C, H, W)`` logits (one model's; see :func:`image_losses` for ensembles).
        labels: ``(N, H, W)`` int64 labels, 255 = ignored (loss 0 there).
        step, num_steps: Gradient evaluation ``t`` (1-based) and total ``T`` (``segpgd`` only).
        class_weights: Fixed per-class weights for ``mask_ce_bal`` (default: per image).
    """
    check_loss_name(name)
    labels = labels.long()
    if name == 'ce':
        return pixel_ce(logits, labels)
    if name == 'mask_ce_avg':
        return correctly_classified(logits, labels).to(logits.dtype) * pixel_ce(logits, labels)
    if name == 'mask_ce_bal':
        weights = balanced_class_weights(labels, logits.shape[1], class_weights, logits.dtype)
        return weights * correctly_classified(logits, labels).to(logits.dtype) * pixel_ce(logits, labels)
    if name == 'js':
        return js_to_onehot(logits, labels)
    if name == 'segpgd':
        if step is None or num_steps is None:
            raise ValueError('the segpgd loss needs the iteration: step (1-based) and num_steps')
        weights = SegPGD(1.0, num_steps=num_steps).pixel_weights(logits.detach(), labels, step,
                                                                 targeted=False)
        return weights * pixel_ce(logits, labels)
    if name == 'cospgd':
        return softmax_onehot_cosine(logits.detach(), labels) * pixel_ce(logits, labels)
    return pixel_dlr(logits, labels)


def image_losses(name: str, logits: torch.Tensor, labels: torch.Tensor, **kwargs) -> torch.Tensor:
    """``L(z, y) = Σ_i ℓ(z_i, y_i)`` per image, ``(N,)``; an ensemble's weighted member sum.

    ``kwargs`` are those of :func:`pixel_losses`. Each image's value (and gradient) depends on that
    image alone.
    """
    check_loss_name(name)

    def per_image(z: torch.Tensor) -> torch.Tensor:
        return pixel_losses(name, z, labels, **kwargs).flatten(1).sum(1)

    return member_weighted(logits, per_image)

