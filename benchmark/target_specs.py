"""Target maps and perturbation masks described in a suite, and built per image by the runner.

An attack entry of a suite may carry two fields that the runner handles (they are not constructor
arguments of the attack)::

    dict(type='targeted_ifgsm', omega=0.9999,
         target=dict(kind='hide_class', hidden_class=11),   # Metzen's dynamic target / Fischer's
         mask='hidden_class')                               # Fischer: noise on that class only
    dict(type='universal', target=dict(kind='static', split='train', index=0))   # Metzen's static target

Target kinds:

* ``hide_class`` (``hidden_class``): every pixel of the clean prediction predicted as the class
  takes the class of its nearest pixel of another class; all other pixels keep the clean prediction
  (:func:`attacks.targets.hide_class_target`). Built from each image's clean prediction.
* ``static`` (``split``, ``index``, ``source``): one fixed segmentation for every image (Metzen et
  al.'s static target, for which they chose "an arbitrary ground-truth segmentation" of the
  Cityscapes train set): the ground truth (``source='ground_truth'``, default) or the model's clean
  prediction (``source='prediction'``) of image ``index`` of the dataset's ``split``.

Mask kinds (both need a ``hide_class`` target; the mask is the set of pixels predicted as the
hidden class on the clean image):

* ``hidden_class``: the attack optimises its perturbation under the mask (zero elsewhere at every
  step);
* ``hidden_class_posthoc``: Fischer et al.'s protocol (Sec. 3): "we restricted the adversarial
  perturbations computed above and applied them only on person class pixels" — the attack runs on
  the whole image and its perturbation is zeroed outside the mask afterwards.

The fields become part of the cell key, so the same attack with and without a mask, or towards
different targets, are different cells.
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, Dict, Optional

import torch

from attacks.targets import hidden_class_mask, hide_class_target, static_target

from .store import hidden_class_of  # noqa: F401  (one torch-free rule, shared with the records)

TARGET_KINDS = ('hide_class', 'static')
MASK_KINDS = ('hidden_class', 'hidden_class_posthoc')
_FIELDS = {'hide_class': {'kind', 'hidden_class'}, 'static': {'kind', 'split', 'index', 'source'}}
_EXAMPLES = ("dict(kind='hide_class', hidden_class=11) or "
             "dict(kind='static', split='train', index=0, source='ground_truth')")


def check_target_spec(spec: Any) -> Dict[str, Any]:
    """Validate a target description; returns it with defaults filled in (canonical form)."""
    if not isinstance(spec, dict) or spec.get('kind') not in TARGET_KINDS:
        raise ValueError(f'target must be a dict with kind in {list(TARGET_KINDS)}, e.g. {_EXAMPLES}; '
                         f'got {spec!r}')
    kind = spec['kind']
    unknown = set(spec) - _FIELDS[kind]
    if unknown:
        raise ValueError(f'target kind {kind!r} takes {sorted(_FIELDS[kind])}, got unknown {sorted(unknown)}')
    if kind == 'hide_class':
        c = spec.get('hidden_class')
        if isinstance(c, bool) or not isinstance(c, numbers.Integral) or not 0 <= c < 255:
            raise ValueError(f"target kind 'hide_class' needs hidden_class = a class id (e.g. 11 for "
                             f'Cityscapes person), got {c!r}')
        return {'kind': kind, 'hidden_class': int(c)}
    out = {'kind': kind, 'split': spec.get('split', 'train'), 'index': spec.get('index', 0),
           'source': spec.get('source', 'ground_truth')}
    if not isinstance(out['split'], str) or not out['split']:
        raise ValueError(f"static target: split must be a split name such as 'train', got {out['split']!r}")
    if isinstance(out['index'], bool) or not isinstance(out['index'], numbers.Integral) or out['index'] < 0:
        raise ValueError(f"static target: index must be an image index >= 0, got {out['index']!r}")
    if out['source'] not in ('ground_truth', 'prediction'):
        raise ValueError(f"static target: source must be 'ground_truth' or 'prediction', got {out['source']!r}")
    out['index'] = int(out['index'])
    return out


def check_mask_spec(mask: Any, target: Optional[Dict[str, Any]]) -> Optional[str]:
    """Validate a mask description (None = perturb everywhere)."""
    if mask is None:
        return None
    if mask not in MASK_KINDS:
        raise ValueError(f'mask must be one of {list(MASK_KINDS)} or None, got {mask!r}')
    if target is None or target.get('kind') != 'hide_class':
        raise ValueError(f"mask={mask!r} needs target=dict(kind='hide_class', hidden_class=...) "
                         'to know which class the perturbation is restricted to')
    return mask


class TargetBuilder:
    """Builds one batch's target map and mask from its clean prediction.

    Args:
        spec: A validated target spec (:func:`check_target_spec`).
        mask: A validated mask spec or None.
        static_map: For ``static`` targets, the fixed ``(H, W)`` segmentation (resolved once by
            :func:`resolve_static_map`).
    """

    def __init__(self, spec: Dict[str, Any], mask: Optional[str] = None,
                 static_map: Optional[torch.Tensor] = None):
        self.spec = spec
        self.mask_spec = mask
        if spec['kind'] == 'static' and static_map is None:
            raise ValueError('a static target needs its map (resolve_static_map)')
        self.static_map = static_map

    def target(self, clean_pred: torch.Tensor) -> torch.Tensor:
        if self.spec['kind'] == 'hide_class':
            return hide_class_target(clean_pred, self.spec['hidden_class'])
        if tuple(self.static_map.shape) != tuple(clean_pred.shape[1:]):
            raise ValueError(f'the static target map is {tuple(self.static_map.shape)} but the images are '
                             f'{tuple(clean_pred.shape[1:])}; choose a target image of the same size')
        return static_target(self.static_map, len(clean_pred)).to(clean_pred.device)

    @property
    def posthoc(self) -> bool:
        """Whether the mask is applied to the finished perturbation rather than given to the attack."""
        return self.mask_spec == 'hidden_class_posthoc'

    def mask(self, clean_pred: torch.Tensor) -> Optional[torch.Tensor]:
        if self.mask_spec is None:
            return None
        return hidden_class_mask(clean_pred, self.spec['hidden_class'])


def resolve_static_map(spec: Dict[str, Any], dataset_spec: Dict[str, Any],
                       predict: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> torch.Tensor:
    """The ``(H, W)`` map of a static target: ground truth or prediction of one dataset image.

    Args:
        spec: A validated ``static`` target spec.
        dataset_spec: The suite's dataset description; the target image comes from the same dataset
            type and options, split ``spec['split']``, all images (``num_images`` is dropped).
        predict: ``images (1, 3, H, W) -> labels (1, H, W)``; needed when ``source='prediction'``.
    """
    from .datasets.builder import build_eval_dataset
    ds_spec = {k: v for k, v in dataset_spec.items() if k not in ('num_images', 'image_list')}
    ds_spec['split'] = spec['split']
    dataset = build_eval_dataset(ds_spec)
    if spec['index'] >= len(dataset):
        raise ValueError(f"static target: index {spec['index']} is out of range; split "
                         f"{spec['split']!r} has {len(dataset)} images")
    image, label, _ = dataset[spec['index']]
    if spec['source'] == 'ground_truth':
        return label.long()
    if predict is None:
        raise ValueError("static target with source='prediction' needs the model")
    with torch.no_grad():
        return predict(image[None])[0].long().cpu()
