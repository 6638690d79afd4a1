"""Generative Adversarial Perturbations, L∞ (Poursaeed et al. 2018, https://arxiv.org/abs/1712.02328).

A generator network ``f_Θ`` is trained (on a training split, against a fixed model) to output the
perturbation; at evaluation it is only applied, without any gradient of the attacked model.

* **Universal** (Sec. 3.1, Fig. 1): "A fixed pattern Z ∈ [0,1]^n, sampled from a uniform
  distribution, is fed to a generator f_Θ to create the perturbation. The output of the generator
  f_Θ(Z) is then scaled to have a fixed norm", and the one resulting perturbation ``U`` is added
  to every image. Here ``Z`` is drawn once, seeded, from U(−1, 1) as the segmentation code does
  (``self.noise_cpu = torch.rand(…)``, ``.mul_(2.0).add_(-1.0)``; −1…1 is also the range of the
  generator's image inputs), with the size of the fitting images.
* **Image-dependent** (Sec. 3.2, Fig. 2): "Input image x is passed through the generator to create
  the perturbation f_Θ(x). The perturbation is then scaled to constrain its norm", i.e. the paper's
  "second approach", ``x + f_Θ(x)``. The generator sees the image as the code feeds it,
  ``x / 128 − 1`` (``image_transform.transform`` mode 1).

**Scaling.** The paper multiplies the output by ``min(1, ε / ‖f_Θ(·)‖_p)`` (Sec. 3.1); the code
(``image_transform.inf_norm_adjust(delta, eps / 128.0)``) does so per image *and per colour
channel*, in the generator's units (1 = 128 grey levels)::

    coef_{n,c} = min(1, (ε/128) / max_{i,j} |f_Θ(·)_{n,c,i,j}|),     δ = 128 · coef · f_Θ(·)

so every channel reaches ``‖δ_c‖∞ = ε`` unless the generator's output is already smaller. As in
the code (which rescales ``.data``), ``coef`` is a constant for back-propagation. "Before feeding the
perturbed image to the [model], we clip it to keep it in the valid range":
``x̂ = clip(x + δ, 0, 255)`` (``mask`` zeroes δ outside the allowed pixels at evaluation). The code
clamps ``.data`` (a straight-through gradient); here the clip is differentiated as usual (no
gradient through clipped pixels).

**Losses** (Sec. 3.1–3.2, the segmentation code ``material/models/main_model.py``, ``H`` the
cross-entropy averaged over the non-ignored pixels of the batch, as ``nn.CrossEntropyLoss()``):

* non-targeted, eq. 1 (universal; eq. 4, image-dependent, is "similar to the universal case"):
  "we define the loss for training the generator to be a decreasing function of the
  cross-entropy H(k(x̂), 1_cx)": ``l_fool = −log H(k(x̂), 1_cx)`` — the code's
  ``-1 * torch.log(self.criterion_pre(self.score, self.class_label))``; ``c_x`` are the reference
  labels of the fitting batch (the clean prediction by default; the code used the ground truth).
  ``untargeted_loss='neg_log_ce'`` (default).
* non-targeted, eq. 2 ("as proposed by [18] and [19], we can consider the least likely class
  k_ll(x) = arg min k(x), and set it as the target"): ``l_fool = log H(k(x̂), 1_{k_ll(x)})``, per
  pixel for segmentation (the classification code's ``torch.log(criterion_pre(output,
  target_label))`` with ``torch.min`` of the clean output). ``untargeted_loss='least_likely'``.
* targeted, eq. 3 (universal) / eq. 5 (image-dependent): "the cross-entropy with the one-hot
  encoding of the target … in semantic segmentation, t ∈ {1, …, C}^n is the target label map":
  ``l_fool = log H(k(x̂), 1_t)`` — the code's ``torch.log(self.criterion_pre(self.score,
  self.target))``. Used when the fitting batches carry a target map (``FitBatch.target``; 255,
  or 255 in the labels, = no loss).

(``H`` is clamped at 1e−12 before the log so an exactly zero cross-entropy cannot give ±inf.)

**Training** follows the segmentation code (``GAP_seg.py``, ``material/options``): Adam with
``lr = 8e−5`` and ``β = (0.9, 0.999)`` (``--lr`` 0.00008, ``--beta1`` 0.9; the *classification*
script ``GAP_clf.py`` uses 2e−4 and β1 = 0.5), 20 epochs (``--nEpochs``), the learning rate halved
after epochs 2, 5 and 8 (``lr_policy='lambda'``: ``0.5**(e>=2) * 0.5**(e>=5) * 0.5**(e>=8)``,
stepped once per epoch), one step per batch of the caller's batch size (the code's default is 1).
The generator defaults are the segmentation code's: ResNet generator (the paper: "In most of our
experiments, the ResNet Generator outperforms U-Net"), ``ngf = 128``, 9 residual blocks, instance
norm, SELU, dropout in the blocks (``define(…, use_dropout=True, n_blocks=block)``); see
:mod:`attacks.generators`. Not reproduced: the code keeps the checkpoint with the best metric on
the *validation* split after each epoch (model selection on the evaluation images); here the
generator after the last iteration is kept.

Everything is seeded by ``seed``: the noise ``Z`` (a local ``torch.Generator``), the generator's
initialisation and its dropout (the global RNG, inside ``torch.random.fork_rng``, so the caller's
RNG state is unchanged). Fitting on CPU is deterministic.

**Fooling rate.** The paper defines it for classification only: "fooling ratio represents the
ratio of images x for which K(f(x)) ≠ K(x)" (Sec. 3.2; the code counts ``predicted_recon !=
predicted_orig``). For segmentation it reports the success rate of targeted attacks ("the
categorical accuracy between the prediction k(x̂) and the target t", in its segmentation
experiments) and the mean IoU of non-targeted ones (Table 6). The benchmark's per-pixel fooling rate
(:func:`benchmark.targeted_metrics.fooling_rate`) is the pixel-level analogue.
"""
from __future__ import annotations

import itertools
import math
import numbers
import time
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .base import IGNORE_INDEX, PIXEL_MAX, PIXEL_MIN, Attack, member_weighted, register_attack
from .fitted import FitBatch, FittedAttack, ReplayedFitData
from .generators import build_generator, check_activation, check_norm, count_parameters
from .pgd import check_positive

MODES = ('universal', 'image_dependent')
GENERATORS = ('resnet', 'unet')
UNTARGETED_LOSSES = ('neg_log_ce', 'least_likely')
#: the generator's unit: images enter as x / 128 − 1 and its tanh output 1 means 128 grey levels
PIXEL_SCALE = 128.0
#: defaults of the segmentation code (GAP_seg.py, material/options/*.py)
GAP_SEG_LR = 8e-5
GAP_SEG_BETA1 = 0.9
GAP_SEG_EPOCHS = 20
GAP_SEG_LR_DECAY_EPOCHS = (2, 5, 8)
GAP_SEG_NGF = 128
GAP_SEG_BLOCKS = 9
GAP_SEG_UNET_DEPTH = 8
_LOG_FLOOR = 1e-12


def _check_int(value, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f'{what} must be an integer >= {minimum}, got {value!r}')
    return int(value)


def _check_choice(value, what: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f'{what} must be one of {tuple(choices)}, got {value!r}')
    return value


def scale_linf(raw: torch.Tensor, epsilon: float) -> torch.Tensor:
    """The code's ``inf_norm_adjust`` in pixel units: generator output ``(N, 3, H, W)`` → δ.

    ``δ = 128 · raw · min(1, (ε/128) / max|raw_{n,c}|)`` per image ``n`` and channel ``c``, the
    factor treated as a constant for gradients, and ``|δ| ≤ ε`` enforced against rounding.
    """
    peak = raw.detach().abs().amax(dim=(-2, -1), keepdim=True)
    coef = torch.clamp((epsilon / PIXEL_SCALE) / peak, max=1.0)   # peak 0 → inf → 1
    return torch.clamp(PIXEL_SCALE * raw * coef, -epsilon, epsilon)


def fit_to_size(delta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """A universal perturbation ``(1, 3, h, w)`` cropped (top-left, as the code's
    ``delta[:, :, 0:w, 0:h]``) or, if smaller, tiled periodically to ``height × width``."""
    h, w = delta.shape[-2:]
    if h < height or w < width:
        delta = delta.repeat(1, 1, math.ceil(height / h), math.ceil(width / w))
    return delta[..., :height, :width]


def _rng_devices():
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


@register_attack
class GenerativePerturbation(FittedAttack):
    """Generative adversarial perturbation (universal or image-dependent), L∞.

    Args:
        epsilon: L∞ bound in 0–255 pixel units (the paper's segmentation experiments: 2.5–20;
            the generator's output is scaled to it per image and channel).
        mode: ``'universal'`` (one perturbation ``U = scale(f_Θ(Z))`` for all images; Z fixed,
            seeded noise) or ``'image_dependent'`` (``δ = scale(f_Θ(x))``).
        generator: ``'resnet'`` (default) or ``'unet'`` (:mod:`attacks.generators`).
        ngf: Filters of the generator's first layer (segmentation code: 128).
        n_blocks: Residual blocks of the ResNet generator (segmentation code: 9; the paper's
            image-dependent classification experiments: 6).
        unet_depth: Down-sampling levels of the U-Net (reference: 8; inputs are padded to a
            multiple of ``2^depth``).
        norm: ``'instance'`` (segmentation code) or ``'batch'`` (classification code).
        activation: ``'selu'`` (segmentation code) or ``'relu'`` (classification code).
        dropout: Dropout 0.5 in the generator during fitting (segmentation code: True).
        epochs: Passes over the fitting split (default 20); None for no limit (``num_iters`` then
            bounds the training).
        num_iters: Maximal number of optimiser steps (one per batch); None for no limit. Fitting
            stops at whichever of ``epochs`` / ``num_iters`` comes first.
        lr: Adam learning rate (segmentation code: 8e−5; classification code: 2e−4).
        beta1: Adam β1 (segmentation code: 0.9; classification code: 0.5); β2 = 0.999.
        lr_decay_epochs: Epochs after which the learning rate is halved (code: 2, 5, 8).
        untargeted_loss: ``'neg_log_ce'`` (eq. 1, the segmentation code) or ``'least_likely'``
            (eq. 2); targeted fitting always uses eq. 3.
        seed: Seed of the noise, the generator's initialisation and its dropout.

    Targeted or not is decided by the fitting data: batches with a ``target`` map train towards it
    (eq. 3). ``__call__`` accepts a ``target`` but ignores it: the fitted generator does not depend
    on it (the runner scores against the target map it built).

    Example:
        >>> gap = GenerativePerturbation(10, mode='universal')
        >>> gap.fit(model, lambda: (FitBatch(x, model(x).argmax(1), None) for x in loader))
        >>> adv = gap(model, images)                        # no model gradient at evaluation
    """

    name = 'gap'
    aliases = ('generative', 'poursaeed2018')
    display_name = 'Generative perturbation'
    accepts_target = True

    def __init__(self, epsilon: float, mode: str = 'universal', generator: str = 'resnet',
                 ngf: int = GAP_SEG_NGF, n_blocks: int = GAP_SEG_BLOCKS,
                 unet_depth: int = GAP_SEG_UNET_DEPTH, norm: str = 'instance', activation: str = 'selu',
                 dropout: bool = True, epochs: Optional[int] = GAP_SEG_EPOCHS,
                 num_iters: Optional[int] = None, lr: float = GAP_SEG_LR, beta1: float = GAP_SEG_BETA1,
                 lr_decay_epochs: Sequence[int] = GAP_SEG_LR_DECAY_EPOCHS,
                 untargeted_loss: str = 'neg_log_ce', seed: int = 0):
        super().__init__(epsilon)
        self.mode = _check_choice(mode, 'mode', MODES)
        self.generator = _check_choice(generator, 'generator', GENERATORS)
        self.ngf = _check_int(ngf, 'ngf', 1)
        self.n_blocks = _check_int(n_blocks, 'n_blocks', 0)
        self.unet_depth = _check_int(unet_depth, 'unet_depth', 2)
        self.norm = check_norm(norm)
        self.activation = check_activation(activation)
        if not isinstance(dropout, bool):
            raise ValueError(f'dropout must be True or False, got {dropout!r}')
        self.dropout = dropout
        self.epochs = None if epochs is None else _check_int(epochs, 'epochs', 1)
        self.num_iters = None if num_iters is None else _check_int(num_iters, 'num_iters', 1)
        if self.epochs is None and self.num_iters is None:
            raise ValueError('epochs and num_iters cannot both be None: fitting would never stop')
        self.lr = check_positive(lr, 'lr')
        if isinstance(beta1, bool) or not isinstance(beta1, numbers.Real) or not 0.0 <= beta1 < 1.0:
            raise ValueError(f'beta1 must be a number in [0, 1), got {beta1!r}')
        self.beta1 = float(beta1)
        if isinstance(lr_decay_epochs, (str, bytes)) or not isinstance(lr_decay_epochs, Sequence):
            raise ValueError(f'lr_decay_epochs must be a list of positive integers, got {lr_decay_epochs!r}')
        self.lr_decay_epochs = tuple(sorted(_check_int(e, 'lr_decay_epochs entries', 1) for e in lr_decay_epochs))
        self.untargeted_loss = _check_choice(untargeted_loss, 'untargeted_loss', UNTARGETED_LOSSES)
        self.seed = _check_int(seed, 'seed', 0)
        self._net: Optional[torch.nn.Module] = None
        self._noise: Optional[torch.Tensor] = None
        self._universal: Optional[torch.Tensor] = None    # cached scale(G(Z)) at evaluation

    # -- description -------------------------------------------------------------------------
    def params(self) -> Dict[str, Any]:
        arch = {'n_blocks': self.n_blocks} if self.generator == 'resnet' else {'unet_depth': self.unet_depth}
        return {'mode': self.mode, 'generator': self.generator, 'ngf': self.ngf, **arch,
                'norm': self.norm, 'activation': self.activation, 'dropout': self.dropout,
                'epochs': self.epochs, 'num_iters': self.num_iters, 'lr': self.lr, 'beta1': self.beta1,
                'lr_decay_epochs': list(self.lr_decay_epochs), 'untargeted_loss': self.untargeted_loss,
                'seed': self.seed}

    def gradient_passes(self) -> int:
        """0 per evaluated image: the cost (``fit_info['gradient_passes']``) is paid at fit time."""
        return 0

    # -- state ---------------------------------------------------------------------------------
    @property
    def fitted(self) -> bool:
        return self._net is not None

    def _new_net(self) -> torch.nn.Module:
        return build_generator(self.generator, self.ngf, self.n_blocks, self.unet_depth, self.norm,
                               self.activation, self.dropout)

    def initialize(self, image_size: Optional[Tuple[int, int]] = None) -> 'GenerativePerturbation':
        """Build the seeded, untrained generator (and, universal, the noise Z of ``image_size``).

        :meth:`fit` starts from exactly this state; on its own it gives the untrained baseline.
        """
        if self.mode == 'universal':
            if image_size is None or len(image_size) != 2 or min(image_size) < 1:
                raise ValueError(f'universal mode needs image_size=(H, W) for its noise, got {image_size!r}')
            g = torch.Generator().manual_seed(self.seed)
            self._noise = torch.rand((1, 3, int(image_size[0]), int(image_size[1])), generator=g) * 2 - 1
        else:
            self._noise = None
        with torch.random.fork_rng(devices=_rng_devices()):
            torch.manual_seed(self.seed)
            self._net = self._new_net()
        self._net.eval()
        self._universal = None
        self.fit_info = {}
        return self

    def state_dict(self) -> Dict[str, torch.Tensor]:
        self.check_fitted()
        state = {f'generator.{k}': v.detach() for k, v in self._net.state_dict().items()}
        if self._noise is not None:
            state['noise'] = self._noise.detach()
        return state

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        noise = state.get('noise')
        if (self.mode == 'universal') != (noise is not None):
            raise ValueError(f'state of a {"universal" if noise is not None else "image-dependent"} '
                             f'perturbation cannot be loaded into mode={self.mode!r}')
        if noise is not None and (noise.dim() != 4 or tuple(noise.shape[:2]) != (1, 3)):
            raise ValueError(f'noise must have shape (1, 3, H, W), got {tuple(noise.shape)}')
        net = self._new_net()
        weights = {k[len('generator.'):]: v for k, v in state.items() if k.startswith('generator.')}
        try:
            net.load_state_dict(weights, strict=True)
        except RuntimeError as e:
            raise ValueError(f'generator weights do not match this attack\'s generator: {e}') from None
        net.eval()
        self._net = net
        self._noise = None if noise is None else noise.detach().float().cpu().clone()
        self._universal = None

    # -- the perturbation ----------------------------------------------------------------------
    def _raw_to_delta(self, images: torch.Tensor) -> torch.Tensor:
        """δ in pixel units for ``images`` (differentiable w.r.t. the generator's weights)."""
        n, _, h, w = images.shape
        if self.mode == 'universal':
            delta = scale_linf(self._net(self._noise.to(images.device)), self.epsilon)
            return fit_to_size(delta, h, w).expand(n, -1, -1, -1)
        return scale_linf(self._net(images / PIXEL_SCALE - 1.0), self.epsilon)

    def perturbation(self, images: torch.Tensor) -> torch.Tensor:
        """The fitted perturbation δ ``(N, 3, H, W)`` for ``images`` (before mask and clipping)."""
        self.check_fitted()
        self._net.to(images.device).eval()
        with torch.no_grad():
            if self.mode != 'universal':
                return self._raw_to_delta(images)
            if self._universal is None or self._universal.device != images.device:
                self._universal = scale_linf(self._net(self._noise.to(images.device)), self.epsilon)
            n, _, h, w = images.shape
            return fit_to_size(self._universal, h, w).expand(n, -1, -1, -1)

    @property
    def universal_perturbation(self) -> torch.Tensor:
        """The universal perturbation ``(1, 3, H, W)`` at the noise's size (universal mode only)."""
        if self.mode != 'universal':
            raise ValueError('an image-dependent perturbation has no single universal pattern')
        self.check_fitted()
        return self.perturbation(torch.zeros((1, 3, *self._noise.shape[-2:]), device=self._noise.device))

    def perturb(self, model, images, labels, target, mask):
        delta = self.perturbation(images)
        if mask is not None:
            delta = delta * mask
        return torch.clamp(images + delta, PIXEL_MIN, PIXEL_MAX)

    def reference_target(self, clean, labels=None):
        """None: a targeted generator's target map is given with the fitting data, so the runner
        scores against the map it built."""
        return None

    # -- fitting -------------------------------------------------------------------------------
    def fooling_loss(self, model, images: torch.Tensor, labels: torch.Tensor,
                     target: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """The paper's ``l_fool`` of one batch with the current generator (eq. 1, 2 or 3).

        None when no pixel carries a loss (all labels / targets 255).
        """
        if target is not None:
            goal, sign = Attack._mask_ignored(target, labels), 1.0            # eq. 3: log H(k(x̂), 1_t)
        elif self.untargeted_loss == 'least_likely':
            with torch.no_grad():
                clean_logits = model(images)
            # eq. 2; min().indices: argmin's indices, several times faster over the channels on CPU
            goal, sign = Attack._mask_ignored(clean_logits.min(dim=1).indices, labels), 1.0
        else:
            goal, sign = labels, -1.0                                         # eq. 1: −log H(k(x̂), 1_cx)
        if not bool((goal != IGNORE_INDEX).any()):
            return None
        adv = torch.clamp(images + self._raw_to_delta(images), PIXEL_MIN, PIXEL_MAX)
        # joint training on several models (an ensemble source) sums their fooling losses
        return member_weighted(model(adv), lambda z: sign * torch.log(
            F.cross_entropy(z, goal, ignore_index=IGNORE_INDEX).clamp_min(_LOG_FLOOR)))

    def _check_batch(self, batch, targeted: Optional[bool]):
        if not isinstance(batch, tuple) or len(batch) != 3:
            raise ValueError(f'fitting batches must be FitBatch(images, labels, target), got {type(batch).__name__}')
        images, labels, target = batch
        images = self.check_images(images)
        labels = self.check_map(labels, images, 'labels')
        if target is not None:
            target = self.check_map(target, images, 'target')
        if targeted is not None and targeted != (target is not None):
            raise ValueError('fitting batches mix targeted (target map given) and untargeted (target=None) '
                             'batches; give a target for every batch or for none')
        return images, labels, target

    def fit(self, model, batches, progress: bool = False) -> 'GenerativePerturbation':
        """Train the generator on the batches of a training split (see the module docstring).

        Args:
            model: The attacked model, pixel-space ``(N, 3, H, W)`` → logits; its weights get no
                gradient.
            batches: Zero-argument callable returning a fresh iterator of :class:`FitBatch`, the
                same batches at every call (read once and replayed from memory when the split
                fits in :data:`~attacks.fitted.FIT_REPLAY_BYTES`, otherwise called once per
                epoch). Batches with a ``target`` map fit a targeted generator.
            progress: Show a tqdm bar.

        ``fit_info`` then holds ``mode``, ``targeted``, ``loss`` (which ``l_fool``),
        ``num_fit_images`` (images of one pass), ``images_seen``, ``iterations`` (optimiser steps),
        ``epochs`` (passes begun), ``skipped_batches`` (batches without any loss pixel),
        ``loss_per_epoch`` / ``loss_per_iteration``, ``lr_per_epoch``, ``gradient_passes``
        (images back-propagated through the model) and ``forward_passes`` (extra clean passes of
        the least-likely loss), ``generator_parameters``, ``noise_shape`` and ``fit_seconds``.
        """
        if not callable(batches):
            raise ValueError('batches must be a zero-argument callable returning a fresh iterator of '
                             'FitBatch(images, labels, target), e.g. lambda: iter(my_batches)')
        from tqdm.auto import tqdm

        t0 = time.time()
        batches = ReplayedFitData(batches)
        iterator = iter(batches())
        try:
            first = next(iterator)
        except StopIteration:
            raise ValueError('batches() yielded no fitting images') from None
        images, _, target = self._check_batch(first, None)
        targeted = target is not None
        device = images.device
        self.initialize(tuple(images.shape[-2:]))
        net = self._net.to(device)
        params = list(net.parameters())
        optimizer = torch.optim.Adam(params, lr=self.lr, betas=(self.beta1, 0.999))
        decay = self.lr_decay_epochs
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda e: 0.5 ** sum(e >= m for m in decay))
        if self.mode == 'universal':
            self._noise = self._noise.to(device)

        losses, epoch_losses, epoch_lrs, num_images, images_seen, skipped = [], [], [], 0, 0, 0
        epoch, gradient_images, forward_images = 0, 0, 0
        bar = tqdm(total=self.num_iters, disable=not progress, desc=f'fit {self.name} ({self.mode})',
                   unit='it', leave=False)
        try:
            with torch.random.fork_rng(devices=_rng_devices()), torch.enable_grad():
                torch.manual_seed(self.seed)                  # dropout
                net.train()
                done = False
                while not done and (self.epochs is None or epoch < self.epochs):
                    data = itertools.chain([first], iterator) if epoch == 0 else iter(batches())
                    epoch_sum, epoch_steps, empty = 0.0, 0, True
                    epoch_lrs.append(optimizer.param_groups[0]['lr'])
                    for batch in data:
                        empty = False
                        images, labels, target = self._check_batch(batch, targeted)
                        images_seen += len(images)
                        if epoch == 0:
                            num_images += len(images)
                        loss = self.fooling_loss(model, images, labels, target)
                        if loss is None:
                            skipped += 1
                            continue
                        gradient_images += len(images)
                        if target is None and self.untargeted_loss == 'least_likely':
                            forward_images += len(images)         # the clean k_ll(x)
                        optimizer.zero_grad(set_to_none=True)
                        loss.backward(inputs=params)          # no gradient into the model's weights
                        optimizer.step()
                        value = float(loss.detach())
                        losses.append(value)
                        epoch_sum += value
                        epoch_steps += 1
                        bar.update(1)
                        bar.set_postfix(epoch=epoch + 1, loss=f'{value:.4f}')
                        if self.num_iters is not None and len(losses) >= self.num_iters:
                            done = True
                            break
                    if empty:
                        raise ValueError(f'batches() yielded no fitting images in epoch {epoch + 1}')
                    if not epoch_steps:
                        raise ValueError('no fitting pixel carries a loss (all labels/targets are 255)')
                    epoch_losses.append(epoch_sum / epoch_steps)
                    if epoch == 0 and self.num_iters is None:
                        bar.total = self.epochs * epoch_steps       # known after the first pass
                        bar.refresh()
                    epoch += 1
                    scheduler.step()
        except BaseException:
            self._net, self._noise, self._universal = None, None, None   # not fitted after a failure
            raise
        finally:
            bar.close()
            net.eval()
        self._universal = None
        self.fit_info = {
            'mode': self.mode, 'targeted': targeted,
            'loss': 'log_ce_target' if targeted else self.untargeted_loss,
            'num_fit_images': num_images, 'images_seen': images_seen, 'iterations': len(losses),
            'epochs': epoch, 'skipped_batches': skipped,
            'loss_per_epoch': [round(v, 6) for v in epoch_losses], 'lr_per_epoch': epoch_lrs,
            'loss_per_iteration': [round(v, 6) for v in losses],
            'gradient_passes': gradient_images, 'forward_passes': forward_images,
            'split_reads': batches.source_calls,
            'generator_parameters': count_parameters(net),
            'noise_shape': None if self._noise is None else list(self._noise.shape),
            'fit_seconds': round(time.time() - t0, 3),
        }
        return self
