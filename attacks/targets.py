"""Target maps and perturbation masks for targeted dense attacks.

Pure functions of label maps (no model calls): the runner computes the clean prediction once per
image and builds the attack's ``target`` (and optionally ``mask``) from it with these functions.

* :func:`static_target` – Metzen et al. 2017 (https://arxiv.org/abs/1704.05712), Sec. 3.1,
  *static target segmentation*: one fixed segmentation (e.g. the prediction on a chosen frame
  ``t_0``, or in their Sec. 4 experiment an arbitrary ground-truth map) is the target of every input.
* :func:`hide_class_target` – Metzen et al. 2017, Sec. 3.1, *dynamic target segmentation*, and
  Fischer et al. 2017 (https://arxiv.org/abs/1703.01101), Sec. 2, "Definition of adversarial
  target": keep the clean prediction except on the pixels of the class ``o`` to hide, which take
  the class of their nearest pixel not predicted as ``o``.
* :func:`hidden_class_mask` – Fischer et al. 2017, Sec. 3: the perturbation restricted to the
  pixels predicted as the hidden class.

All maps are ``(N, H, W)`` int64 tensors; ``255`` marks pixels without a target (no loss, and not
counted by the ``vs_target`` confusion matrix).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from .base import IGNORE_INDEX


def static_target(target_map: torch.Tensor, n: int) -> torch.Tensor:
    """Metzen et al.'s static target: the same segmentation for all ``n`` inputs.

    Metzen et al. 2017, Sec. 3.1: "the adversary defines a fixed segmentation, such as the system's
    prediction at a time step ``t_0``, as target for all subsequent time steps":
    ``y_target^t = f(x^{t_0})`` for ``t > t_0``.

    Args:
        target_map: The fixed segmentation, ``(H, W)`` or ``(1, H, W)``, integer class ids
            (``255`` = no target at that pixel, e.g. the void label of a ground-truth map).
        n: Batch size.

    Returns:
        ``(n, H, W)`` int64 tensor (a copy, on ``target_map``'s device).
    """
    if not torch.is_tensor(target_map):
        target_map = torch.as_tensor(np.asarray(target_map))
    if target_map.dim() == 3 and target_map.shape[0] == 1:
        target_map = target_map[0]
    if target_map.dim() != 2:
        raise ValueError(f'target_map must be (H, W) or (1, H, W), got {tuple(target_map.shape)}')
    if target_map.is_floating_point() or target_map.is_complex():
        raise ValueError(f'target_map must hold integer class ids, got dtype {target_map.dtype}')
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f'n must be a positive integer, got {n!r}')
    return target_map.long().unsqueeze(0).expand(n, -1, -1).clone()


def hidden_class_mask(clean_pred: torch.Tensor, hidden_class: int) -> torch.Tensor:
    """Fischer et al.'s perturbation mask: the pixels predicted as ``hidden_class``.

    Fischer et al. 2017, Sec. 3: the adversarial noise is "applied only on person class pixels of
    the network's prediction on the original image". Pass the result as ``mask`` to an attack
    (the attack's projection then keeps the perturbation zero elsewhere at every step).

    Args:
        clean_pred: Clean predictions ``(N, H, W)`` (or ``(H, W)``).
        hidden_class: Class id to hide (e.g. Cityscapes person = 11).

    Returns:
        Bool tensor of the same shape, True where the clean prediction is ``hidden_class``.
    """
    _check_class(hidden_class)
    return torch.as_tensor(clean_pred) == int(hidden_class)


def hide_class_target(clean_pred: torch.Tensor, hidden_class: int,
                      ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Metzen et al.'s dynamic target / Fischer et al.'s hiding target.

    With ``o = hidden_class``, ``I_o = {(i, j) | f(x)_ij = o}`` and ``I_bg = I \\ I_o`` (Metzen et
    al. 2017, Sec. 3.1)::

        y_target_ij = f(x)_ij           for (i, j) in I_bg
        y_target_ij = f(x)_i'j'         for (i, j) in I_o, (i', j') = argmin_{(i', j') in I_bg}
                                                                  (i - i')^2 + (j - j')^2

    i.e. every pixel of the hidden class takes the class of its nearest (Euclidean, in the image
    plane) pixel of another class; all other pixels keep the clean prediction.

    The nearest neighbour is exact: scipy's exact Euclidean distance transform
    (``scipy.ndimage.distance_transform_edt(..., return_indices=True)``, O(H·W) per image) on the
    CPU. When several pixels are equally near, the transform's (deterministic) choice is taken.

    Special cases:

    * pixels equal to ``ignore_index`` in ``clean_pred`` are never sources and stay
      ``ignore_index``;
    * an image whose every pixel is the hidden class (or ignored) has no pixel to copy from: its
      hidden pixels get ``ignore_index`` (no loss, and left out of the ``vs_target`` confusion
      matrix), so the attack leaves the image unchanged and the success rate skips it;
    * an image without the hidden class is returned unchanged (target = clean prediction).

    Args:
        clean_pred: Clean predictions ``(N, H, W)`` integer tensor.
        hidden_class: The class ``o`` to hide (e.g. Cityscapes person = 11).
        ignore_index: Label of pixels without a target. Default 255.

    Returns:
        ``(N, H, W)`` int64 target map on ``clean_pred``'s device.
    """
    _check_class(hidden_class)
    if int(hidden_class) == int(ignore_index):
        raise ValueError(f'hidden_class must differ from ignore_index ({ignore_index})')
    if not torch.is_tensor(clean_pred):
        clean_pred = torch.as_tensor(np.asarray(clean_pred))
    if clean_pred.dim() != 3:
        raise ValueError(f'clean_pred must be (N, H, W), got {tuple(clean_pred.shape)}')
    if clean_pred.is_floating_point() or clean_pred.is_complex():
        raise ValueError(f'clean_pred must hold integer class ids, got dtype {clean_pred.dtype}')
    pred = clean_pred.detach().cpu().numpy().astype(np.int64)
    target = pred.copy()
    for k, p in enumerate(pred):
        hidden = p == hidden_class
        if not hidden.any():
            continue
        source = ~hidden & (p != ignore_index)
        if not source.any():
            target[k][hidden] = ignore_index
            continue
        # distance from every non-source pixel to the nearest source (zero) pixel, with its index
        rows, cols = ndimage.distance_transform_edt(~source, return_distances=False,
                                                    return_indices=True)
        target[k][hidden] = p[rows[hidden], cols[hidden]]
    return torch.from_numpy(target).to(clean_pred.device)


def _check_class(hidden_class) -> None:
    if isinstance(hidden_class, bool) or not isinstance(hidden_class, (int, np.integer)) or hidden_class < 0:
        raise ValueError(f'hidden_class must be a non-negative integer class id, got {hidden_class!r}')
