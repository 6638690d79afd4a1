"""Sources that are not a plain model: a model at a scale, an ensemble, a model's part (unaries).

Every wrapper keeps the pixel-space contract of :class:`model_zoo.PixelSpaceModel`: a module that
maps float RGB images ``(N, 3, H, W)`` in ``[0, 255]`` to logits ``(N, C, H, W)`` at the input
size, differentiably (gradients reach the pixels), always in eval mode, with the counters
``forward_images`` / ``gradient_images`` (images passed through *this* module, without / with
autograd to the input) that the runner's cost bookkeeping reads, a ``name`` and
``predict_labels``. A suite names such sources with a small spec (:func:`check_source_spec`);
:func:`build_source_model` turns a spec into the module and a file-name-safe id.

**A model at a scale** (:class:`ScaledModel`, spec ``dict(model=NAME, scale=0.5)``): the image is
resized bilinearly to ``round(H s) x round(W s)`` (``align_corners`` of the model's decode head, no
antialiasing, as mmseg's ``resize``), the model runs on it, and its logits are
resized bilinearly back to ``H x W``. The perturbation always lives at full resolution; the
gradient flows through both resizes. This is Arnab et al. 2018's convention for Table 1
(https://arxiv.org/abs/1711.09856, Sec. 6.2): "Deeplab v2 50% scale" is the *multiscale-trained*
DeepLab v2 run with a single input branch, the image at 50 %, scores upsampled back. So for a
multiscale segmentor (one exposing ``multiscale_logits(inputs, scales)``, i.e.
:class:`model_zoo.models.multiscale.MultiScaleEncoderDecoder`) a scale spec runs only its 100 %
branch on the resized image (:func:`single_scale_of`): ``dict(model=MSC, scale=0.5)`` is the
paper's 50 % row, ``scale=1`` its 100 % row, and the plain name ``MSC`` its "Multiscale" column.
The zoo's ``..._test-s50`` entries (``test_scales=(0.5,)``) are the same network on the same
resized image; they differ only in how the scores get back to full size (one bilinear resize from
the score map instead of two, score map → resized image → image) and in resizing after instead of
before normalisation (identical up to rounding: bilinear weights sum to one). A model trained at
one scale (FCN, DeepLab v2 single scale) is simply run on the resized image. Measured on the
demo multiscale DeepLab v2 (two 128x256 images): ``scale=0.5`` and the ``_test-s50`` entry give the
same label on 99.7 % of the pixels, ``scale=1`` and ``_test-s100`` on 100 %.

**An ensemble** (:class:`EnsembleModel`, spec ``dict(ensemble=[A, B], weights=[wA, wB])``): one
attack on the weighted sum of the members' losses, ``L(x) = Σ_k w_k L(f_k(x), y)`` (Poursaeed et
al. 2018, https://arxiv.org/abs/1712.02328, "fooling multiple target models": a linear
combination of the target models' fooling losses; Table 4's generator trained jointly on VGG-16
and VGG-19). It is *not* a loss of averaged logits nor of combined log-probabilities: the forward
pass returns :class:`EnsembleLogits`, a tensor whose values are the ensemble's *prediction*,
``log Σ_k w̄_k softmax(f_k(x))`` with ``w̄ = w / Σ w`` (so ``argmax`` is the argmax of the
weighted sum of softmax probabilities, ``argmin`` its least-likely class, and ``softmax`` gives
the mixture's probabilities), and which carries the members' own logits and weights in
``loss_terms``. Losses go through :func:`member_weighted`, which evaluates ``Σ_k w_k loss(z_k)``
when it is given such a tensor (:func:`ensemble_pixel_cross_entropy` for the attacks' pixel
cross-entropy). Weights default to 1 each (a plain sum); they scale the loss as given (not
normalised). An attack whose loss does not go through :func:`member_weighted` sees only the
mixture's log-probabilities, so each attack's loss must call it (see its docstring).

**A model's part** (:func:`part_of`, :func:`unaries_of`, spec ``dict(model=NAME,
part='unaries')``): a segmentor names the parts that run on their own in its ``model_parts``
attribute (part name → method returning that part's logits at the input size); e.g.
:class:`model_zoo.models.crf_rnn.CRFRNN` declares ``{'unaries': 'unary_logits'}``, the network
without its mean-field layer (Arnab et al. 2018, Sec. 7.2, Fig. 4b). Nothing is inferred from a
model's name.

**Source ids** (:func:`source_id`): letters, digits and ``_ . + -`` only (a path component)::

    'NAME'                                 -> NAME
    dict(model=NAME, part='unaries')       -> NAME.unaries
    dict(model=NAME, scale=0.5)            -> NAME.s0.5     (scale 1 -> NAME.s1; part first:
                                                             NAME.unaries.s0.5)
    dict(ensemble=[A, B])                  -> A+B           (members' ids joined by '+')
    dict(ensemble=[A, B], weights=[1, 3])  -> A+B.w1-3      (weights appended unless all are 1)

Numbers are printed in their shortest form (``format(x, '.10g')``), so an id is stable whatever
the spec's spelling (``0.50``, ``1`` vs ``1.0``). :func:`check_sources` refuses two sources of a
suite with the same id, or an id that is the name of another model of the suite.
"""
from __future__ import annotations

import logging
import math
import numbers
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

# one definition each, re-exported: the attacks' pixel cross-entropy is already ensemble-aware
from attacks.base import member_weighted  # noqa: F401
from attacks.base import pixel_cross_entropy as ensemble_pixel_cross_entropy  # noqa: F401
from common.errors import ConfigError
from common.names import NAME_PATTERN

from .pixel_model import PixelSpaceModel

__all__ = ['ScaledModel', 'EnsembleModel', 'EnsembleLogits', 'member_weighted',
           'ensemble_pixel_cross_entropy', 'part_of', 'unaries_of', 'single_scale_of',
           'check_source_spec', 'check_sources', 'source_id', 'build_source_model',
           'KNOWN_PARTS', 'MAX_SCALE']

logger = logging.getLogger(__name__)

#: Parts a source spec may name (a segmentor declares which it has in ``model_parts``).
KNOWN_PARTS = ('unaries',)
#: Largest scale a source spec may ask for (scales are in (0, MAX_SCALE]).
MAX_SCALE = 4.0

_SPEC_FORMS = ("a model name, dict(model=NAME[, scale=S][, part='unaries']) or "
               'dict(ensemble=[A, B, ...][, weights=[wA, wB, ...]])')


# -- common behaviour -------------------------------------------------------------------------
class _PixelWrapper(nn.Module):
    """Counters, ``name``, eval mode and ``predict_labels`` as :class:`PixelSpaceModel` has them."""

    def __init__(self):
        super().__init__()
        self.forward_images = 0
        self.gradient_images = 0
        #: shown in errors; :func:`build_source_model` sets it to the source id
        self.name: Optional[str] = None

    def train(self, mode: bool = True) -> '_PixelWrapper':
        """Always stays in eval mode: the benchmark never trains through a wrapper."""
        return super().train(False)

    def _count(self, images: torch.Tensor) -> None:
        if not torch.is_tensor(images) or images.dim() != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
            raise ValueError(f'expected images of shape (N, 3, H, W), got {shape}')
        n = images.shape[0]
        self.forward_images += n
        if torch.is_grad_enabled() and images.requires_grad:
            self.gradient_images += n

    @torch.no_grad()
    def predict_labels(self, images: torch.Tensor) -> torch.Tensor:
        """Argmax label map ``(N, H, W)`` (int64) of RGB images in ``[0, 255]``."""
        return self(images).argmax(dim=1)


def _check_scale(scale: Any) -> float:
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or \
            not math.isfinite(float(scale)) or not 0.0 < float(scale) <= MAX_SCALE:
        raise ValueError(f'scale must be a number in (0, {MAX_SCALE:g}] (a fraction of the image '
                         f'size, e.g. 0.5 for 50 %), got {scale!r}')
    return float(scale)


def _check_weights(weights: Any, count: int) -> Tuple[float, ...]:
    if weights is None:
        return (1.0,) * count
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
        raise ValueError(f'weights must be a list of {count} positive numbers (one per ensemble '
                         f'member), got {weights!r}')
    if len(weights) != count:
        raise ValueError(f'weights {list(weights)!r} has {len(weights)} value(s) for {count} '
                         f'ensemble members: give one positive number per member')
    out = []
    for w in weights:
        if isinstance(w, bool) or not isinstance(w, numbers.Real) or \
                not math.isfinite(float(w)) or float(w) <= 0:
            raise ValueError(f'weights must be finite numbers > 0 (one per ensemble member), got '
                             f'{list(weights)!r}')
        out.append(float(w))
    return tuple(out)


# -- a model at a scale -----------------------------------------------------------------------
class ScaledModel(_PixelWrapper):
    """A model run on the image resized by ``scale``, its logits resized back to the image size.

    Arnab et al. 2018, Table 1 (https://arxiv.org/abs/1711.09856): the multiscale-trained
    DeepLab v2 evaluated at one scale. See the module docstring for the convention; for a
    multiscale segmentor wrap :func:`single_scale_of` of it (as :func:`build_source_model` does).

    Args:
        model: A pixel-space model (``(N, 3, h, w)`` in [0, 255] → ``(N, C, h, w)`` logits).
        scale: Input scale in ``(0, 4]``; the model sees ``round(H * scale) x round(W * scale)``
            (at least 1 x 1), as :meth:`MultiScaleEncoderDecoder.resize_input` resizes.
        align_corners: Of both bilinear resizes; ``None`` takes ``model.align_corners`` (the decode
            head's, as :class:`PixelSpaceModel` reads it), or False if the model has none.

    Shapes:
        ``forward((N, 3, H, W)) -> (N, C, H, W)``. When the resized size equals the input size
        (``scale=1``) nothing is resized and the output is exactly ``model``'s.

    Example:
        >>> half = ScaledModel(PixelSpaceModel.from_segmentor(segmentor), 0.5)
        >>> logits = half(images)          # (N, C, H, W), computed from a (H/2, W/2) input
    """

    def __init__(self, model: nn.Module, scale: float, align_corners: Optional[bool] = None):
        super().__init__()
        self.scale = _check_scale(scale)
        self.model = model
        self.align_corners = bool(getattr(model, 'align_corners', False)
                                  if align_corners is None else align_corners)
        self.num_classes = getattr(model, 'num_classes', None)
        self.eval()

    def scaled_size(self, height: int, width: int) -> Tuple[int, int]:
        """Size the model sees for an ``height x width`` image."""
        return (max(1, int(round(height * self.scale))), max(1, int(round(width * self.scale))))

    def extra_repr(self) -> str:
        return f'scale={self.scale:g}, align_corners={self.align_corners}'

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, C, H, W)`` at the input size, computed at ``scaled_size(H, W)``."""
        self._count(images)
        h, w = images.shape[-2:]
        size = self.scaled_size(h, w)
        x = images if size == (h, w) else F.interpolate(
            images.float(), size=size, mode='bilinear', align_corners=self.align_corners)
        logits = self.model(x)
        if logits.shape[-2:] != (h, w):
            logits = F.interpolate(logits, size=(h, w), mode='bilinear',
                                   align_corners=self.align_corners)
        return logits


# -- an ensemble ------------------------------------------------------------------------------
class EnsembleLogits(torch.Tensor):
    """An ensemble's output: the ensemble prediction as values, the members' logits alongside.

    Values: ``log Σ_k w̄_k softmax(z_k)`` (``w̄ = w / Σ w``), log-probabilities of the weighted
    mixture of the members' softmax outputs, for ``argmax`` (prediction), ``argmin`` (least-likely
    class) and confidence. ``loss_terms``: ``((w_1, z_1), ..., (w_K, z_K))``, the members' logits
    (attached to the autograd graph) with their unnormalised weights, for
    :func:`member_weighted`.

    Any operation on it (slicing, arithmetic, ``detach``) returns a plain tensor without
    ``loss_terms`` (``__torch_function__`` is disabled), so a loss computed from a transformed
    copy sees the mixture's log-probabilities only: losses must receive the ensemble's output
    itself.
    """

    __torch_function__ = torch._C._disabled_torch_function_impl
    loss_terms: Tuple[Tuple[float, torch.Tensor], ...]

    @classmethod
    def wrap(cls, prediction: torch.Tensor,
             terms: Iterable[Tuple[float, torch.Tensor]]) -> 'EnsembleLogits':
        """``prediction`` (still in the autograd graph) as an :class:`EnsembleLogits` with ``terms``.

        A term whose logits are themselves an ensemble's output is flattened into its members,
        with the product of the weights.
        """
        flat: List[Tuple[float, torch.Tensor]] = []
        for weight, logits in terms:
            inner = getattr(logits, 'loss_terms', None)
            if inner is None:
                flat.append((float(weight), logits))
            else:
                flat.extend((float(weight) * w, z) for w, z in inner)
        out = prediction.as_subclass(cls)
        out.loss_terms = tuple(flat)
        return out


class EnsembleModel(_PixelWrapper):
    """Several pixel-space models attacked as one: the loss is ``Σ_k w_k L(f_k(x), y)``.

    Poursaeed et al. 2018 (https://arxiv.org/abs/1712.02328), Fig. 3 and Table 4: a generator
    trained to fool several networks at once minimises a linear combination of their fooling
    losses; the same objective serves iterative attacks. See the module docstring.

    Args:
        models: The members (pixel-space models with the same classes).
        weights: One positive weight per member; default 1 each. The loss uses them as given;
            the prediction uses them normalised to sum to 1.

    Shapes:
        ``forward((N, 3, H, W)) -> EnsembleLogits (N, C, H, W)``: values
        ``log Σ_k w̄_k softmax(f_k(x))``, members' logits in ``loss_terms``. Each call runs
        every member once; ``forward_images``/``gradient_images`` count images through the
        ensemble (one per image and call), each member keeps counting its own.

    Example:
        >>> ens = EnsembleModel([model_a, model_b], weights=[1.0, 2.0])
        >>> out = ens(x.requires_grad_())
        >>> loss = ensemble_pixel_cross_entropy(out, labels)   # 1 * CE_a + 2 * CE_b
        >>> pred = out.argmax(1)                               # argmax of (p_a + 2 p_b) / 3
    """

    def __init__(self, models: Sequence[nn.Module], weights: Optional[Sequence[float]] = None):
        super().__init__()
        models = list(models)
        if not models:
            raise ValueError('an ensemble needs at least one model')
        self.members = nn.ModuleList(models)
        self.weights = _check_weights(weights, len(models))
        classes = {getattr(m, 'num_classes', None) for m in models} - {None}
        if len(classes) > 1:
            raise ValueError(f'ensemble members predict different numbers of classes '
                             f'{sorted(classes)}: an ensemble needs models of one label set')
        self.num_classes = classes.pop() if classes else None
        total = sum(self.weights)
        self._log_shares = tuple(math.log(w / total) for w in self.weights)
        self.eval()

    def extra_repr(self) -> str:
        return f'weights={list(self.weights)}'

    def forward(self, images: torch.Tensor) -> EnsembleLogits:
        """The ensemble prediction (log mixture probabilities) carrying the members' logits."""
        self._count(images)
        outputs = [member(images) for member in self.members]
        shapes = {tuple(z.shape) for z in outputs}
        if len(shapes) != 1:
            raise ValueError(f'ensemble members returned logits of different shapes {sorted(shapes)} '
                             f'for images {tuple(images.shape)}')
        mixture = torch.stack([torch.log_softmax(z.float(), dim=1) + share
                               for z, share in zip(outputs, self._log_shares)]).logsumexp(dim=0)
        return EnsembleLogits.wrap(mixture, zip(self.weights, outputs))


# -- parts of a model -------------------------------------------------------------------------
class _SegmentorView(nn.Module):
    """A segmentor seen through one of its methods: ``forward(x, mode='tensor')`` calls it."""

    def __init__(self, segmentor: nn.Module, method: str, **kwargs):
        super().__init__()
        self.segmentor = segmentor
        self.method = method
        self.kwargs = kwargs
        self.align_corners = getattr(segmentor, 'align_corners', False)

    def extra_repr(self) -> str:
        args = ''.join(f', {k}={v!r}' for k, v in self.kwargs.items())
        return f'method={self.method!r}{args}'

    def forward(self, inputs: torch.Tensor, mode: str = 'tensor', data_samples=None) -> torch.Tensor:
        if mode != 'tensor':
            raise ValueError(f"a view of {type(self.segmentor).__name__}.{self.method} only runs "
                             f"with mode='tensor', got mode={mode!r}")
        return getattr(self.segmentor, self.method)(inputs, **self.kwargs)


def _view(model: PixelSpaceModel, segmentor: nn.Module, suffix: str) -> PixelSpaceModel:
    """A :class:`PixelSpaceModel` with ``model``'s pre-processing around another segmentor."""
    mean = None if model.mean is None else model.mean.detach().flatten().tolist()
    std = None if model.std is None else model.std.detach().flatten().tolist()
    out = PixelSpaceModel(segmentor, mean=mean, std=std, input_order=model.input_order,
                          size_divisor=model.size_divisor, pad_val=model.pad_val, mode=model.mode,
                          crop_size=model.crop_size, stride=model.stride,
                          align_corners=model.align_corners, num_classes=model.num_classes)
    out.check_finite = model.check_finite
    out.name = f'{model.name}.{suffix}' if model.name else None
    return out


def _label(model: nn.Module) -> str:
    name = getattr(model, 'name', None)
    return repr(name) if name else type(getattr(model, 'segmentor', model)).__name__


def part_of(model: nn.Module, part: str) -> PixelSpaceModel:
    """The part ``part`` of a segmentor as a pixel-space model (same weights, same pre-processing).

    Args:
        model: A :class:`PixelSpaceModel` whose segmentor declares ``model_parts`` (part name →
            method computing that part's logits at the input size from the pre-processed input).
        part: The part's name, e.g. ``'unaries'``.

    Raises:
        ConfigError: ``model`` is not a :class:`PixelSpaceModel`, or its segmentor does not declare
            ``part``.
    """
    if not isinstance(model, PixelSpaceModel):
        raise ConfigError(f'part {part!r} of model {_label(model)} was asked for, but parts can only '
                          f'be taken of a plain zoo model (a PixelSpaceModel), not of a '
                          f'{type(model).__name__}. Expected dict(model=NAME, part={part!r}) naming '
                          'one model of the suite.')
    parts = getattr(model.segmentor, 'model_parts', None) or {}
    if part not in parts:
        declared = ', '.join(repr(p) for p in sorted(parts)) or 'none'
        raise ConfigError(f'model {_label(model)} has no part {part!r}: its segmentor '
                          f'{type(model.segmentor).__name__} declares the parts {declared} (a '
                          "segmentor lists them in its model_parts attribute, e.g. CRFRNN's "
                          "{'unaries': 'unary_logits'}). Expected a model that has that part, e.g. "
                          "a CRF-RNN for part='unaries'.")
    method = parts[part]
    if not callable(getattr(model.segmentor, method, None)):
        raise ConfigError(f'model {_label(model)}: its segmentor {type(model.segmentor).__name__} '
                          f'declares part {part!r} as method {method!r}, which it does not have')
    return _view(model, _SegmentorView(model.segmentor, method), part)


def unaries_of(model: nn.Module) -> PixelSpaceModel:
    """The unaries of a CRF model: the network without its mean-field layer (Arnab Fig. 4b).

    Same as ``part_of(model, 'unaries')``; the logits are exactly what the CRF layer receives.
    """
    return part_of(model, 'unaries')


def single_scale_of(model: nn.Module) -> nn.Module:
    """A multiscale segmentor's 100 % branch alone; any other model unchanged.

    A segmentor is multiscale when it exposes ``multiscale_logits(inputs, scales)`` (as
    :class:`model_zoo.models.multiscale.MultiScaleEncoderDecoder` does); the view runs it with
    ``scales=(1.0,)``, whatever its ``test_scales``. Wrapped in :class:`ScaledModel`, this is
    Arnab et al.'s single-scale evaluation of the multiscale-trained DeepLab v2 (Table 1).
    """
    segmentor = getattr(model, 'segmentor', None)
    if isinstance(model, PixelSpaceModel) and callable(getattr(segmentor, 'multiscale_logits', None)):
        return _view(model, _SegmentorView(segmentor, 'multiscale_logits', scales=(1.0,)), 'branch1')
    return model


# -- source specs -----------------------------------------------------------------------------
def _number(value: float) -> str:
    return format(float(value), '.10g')


def _check_model_name(name: Any, spec: Any, model_names: Optional[set]) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(f'source {spec!r}: model {name!r} is not a model name (letters, digits '
                         'and _ . + -); expected ' + _SPEC_FORMS)
    if model_names is not None and name not in model_names:
        known = ', '.join(sorted(model_names)) or 'none'
        raise ValueError(f'source {spec!r}: model {name!r} is not one of the suite\'s models '
                         f'({known}); a source must name models of the suite')
    return name


def _check_model_spec(spec: Any, model_names: Optional[set]) -> Dict[str, Any]:
    if isinstance(spec, str):
        return {'model': _check_model_name(spec, spec, model_names)}
    unknown = sorted(set(spec) - {'model', 'scale', 'part'})
    if unknown or 'model' not in spec:
        what = (f"unknown key(s) {', '.join(repr(k) for k in unknown)}" if unknown
                else "no 'model' key")
        raise ValueError(f'source {spec!r}: {what}; expected {_SPEC_FORMS}')
    out: Dict[str, Any] = {'model': _check_model_name(spec['model'], spec, model_names)}
    if 'part' in spec:
        if spec['part'] not in KNOWN_PARTS:
            raise ValueError(f"source {spec!r}: unknown part {spec['part']!r}; known parts: "
                             f"{', '.join(repr(p) for p in KNOWN_PARTS)}")
        out['part'] = spec['part']
    if 'scale' in spec:
        try:
            out['scale'] = _check_scale(spec['scale'])
        except ValueError as exc:
            raise ValueError(f'source {spec!r}: {exc}') from None
    return out


def check_source_spec(spec: Any, model_names: Optional[Iterable[str]] = None) -> Dict[str, Any]:
    """Validate a suite's source spec without building anything; return its normal form.

    Args:
        spec: ``'NAME'``, ``dict(model=NAME)`` with optional ``scale`` (a number in (0, 4]) and
            ``part`` (one of :data:`KNOWN_PARTS`), or ``dict(ensemble=[m1, m2, ...])`` with
            optional ``weights`` (one positive number per member). Ensemble members are model
            specs (a name or a ``dict(model=...)``), at least two, all different.
        model_names: The suite's model names; ``None`` skips the membership check.

    Returns:
        ``{'model': NAME[, 'part': P][, 'scale': float]}`` or
        ``{'ensemble': [member normal forms], 'weights': [floats]}`` (weights filled in, 1 each
        by default). Equal sources give equal normal forms (``'A'`` and ``dict(model='A')``).

    Raises:
        ValueError: With a message naming the spec, what is wrong and what is expected (the suite
            loader re-raises it as its own error, adding the suite file).
    """
    names = None if model_names is None else set(model_names)
    if isinstance(spec, str):
        return _check_model_spec(spec, names)
    if not isinstance(spec, dict):
        raise ValueError(f'source {spec!r} is a {type(spec).__name__}; expected {_SPEC_FORMS}')
    if 'ensemble' not in spec:
        return _check_model_spec(spec, names)
    unknown = sorted(set(spec) - {'ensemble', 'weights'})
    if unknown:
        raise ValueError(f"source {spec!r}: unknown key(s) {', '.join(repr(k) for k in unknown)} "
                         f'in an ensemble; expected {_SPEC_FORMS}')
    members = spec['ensemble']
    if isinstance(members, (str, bytes, dict)) or not isinstance(members, Sequence) or len(members) < 2:
        raise ValueError(f'source {spec!r}: ensemble must be a list of at least two models, got '
                         f'{members!r}')
    normal = []
    for member in members:
        if isinstance(member, dict) and 'ensemble' in member:
            raise ValueError(f'source {spec!r}: an ensemble member cannot be an ensemble; list '
                             'all models in one ensemble (with weights) instead')
        if not isinstance(member, (str, dict)):
            raise ValueError(f'source {spec!r}: ensemble member {member!r} is not a model name or '
                             'dict(model=NAME[, scale=S][, part=P])')
        normal.append(_check_model_spec(member, names))
    ids = [source_id(m) for m in normal]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"source {spec!r}: ensemble member(s) {', '.join(duplicates)} listed twice; "
                         'give a member a larger weight instead')
    try:
        weights = _check_weights(spec.get('weights'), len(normal))
    except ValueError as exc:
        raise ValueError(f'source {spec!r}: {exc}') from None
    return {'ensemble': normal, 'weights': list(weights)}


def source_id(spec: Any) -> str:
    """The source's id: short, stable, a valid name (letters, digits, ``_ . + -``).

    See the module docstring for the scheme. ``spec`` may be raw or normalised.
    """
    spec = check_source_spec(spec)
    if 'ensemble' in spec:
        out = '+'.join(source_id(m) for m in spec['ensemble'])
        if any(w != 1.0 for w in spec['weights']):
            out += '.w' + '-'.join(_number(w) for w in spec['weights'])
    else:
        out = spec['model']
        if 'part' in spec:
            out += '.' + spec['part']
        if 'scale' in spec:
            out += '.s' + _number(spec['scale'])
    if not NAME_PATTERN.match(out):  # pragma: no cover - guaranteed by the parts' checks
        raise ValueError(f'source id {out!r} is not a valid name')
    return out


def check_sources(specs: Iterable[Any], model_names: Iterable[str]) -> List[Tuple[Dict[str, Any], str]]:
    """Validate a suite's list of sources: each spec, and that their ids identify them.

    Returns:
        ``[(normal form, source id), ...]`` in the given order.

    Raises:
        ValueError: A spec is invalid (:func:`check_source_spec`), two sources have the same id
            (the same source listed twice, e.g. ``'A'`` and ``dict(model='A')``), or a derived
            source's id is the name of another model of the suite (its results would share a
            folder).
    """
    names = set(model_names)
    out, seen = [], {}
    for spec in specs:
        normal = check_source_spec(spec, names)
        ident = source_id(normal)
        if ident in seen:
            raise ValueError(f'sources {seen[ident]!r} and {spec!r} are the same source ({ident}); '
                             'list each source once')
        if ident in names and normal != {'model': ident}:
            raise ValueError(f'source {spec!r} has the id {ident!r}, which is also the name of a '
                             'model of the suite; rename that model')
        seen[ident] = spec
        out.append((normal, ident))
    return out


def build_source_model(spec: Any, build: Callable[[str], nn.Module]) -> Tuple[nn.Module, str]:
    """Build the pixel-space module of a source spec, and its id.

    Args:
        spec: A source spec (see :func:`check_source_spec`).
        build: ``build(name)`` returns the built :class:`PixelSpaceModel` of a suite model (called
            once per model the spec names; caching is the caller's business).

    Returns:
        ``(module, source_id)``: the model itself for a plain name; :func:`part_of` it for a
        ``part``; ``ScaledModel(single_scale_of(...), scale)`` for a ``scale`` (part first, then
        scale); an :class:`EnsembleModel` of the members for an ensemble. A derived module's
        ``name`` is the source id.

    Raises:
        ValueError: The spec is invalid.
        ConfigError: The model has no such part.
    """
    normal = check_source_spec(spec)
    ident = source_id(normal)
    if 'ensemble' in normal:
        module: nn.Module = EnsembleModel([build_source_model(m, build)[0] for m in normal['ensemble']],
                                          normal['weights'])
    else:
        module = build(normal['model'])
        if 'part' in normal:
            module = part_of(module, normal['part'])
        if 'scale' in normal:
            module = ScaledModel(single_scale_of(module), normal['scale'])
    if normal != {'model': ident}:
        module.name = ident
    logger.debug('source %s built as %s', ident, type(module).__name__)
    return module, ident
