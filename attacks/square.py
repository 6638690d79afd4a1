"""Square Attack, L∞, score-based black-box (Andriushchenko et al. 2020, https://arxiv.org/abs/1912.00049).

As used for semantic segmentation by Xiang et al. ("Adversarial Examples for Semantic
Segmentation", section "Square Attack" and "Attack Semantic Segmentation"): a random search that
only reads the model's logits. Per image, with ``L`` the loss oracle below::

    δ_0 = stripes ∈ {−ε, ε}            one random sign per column and channel ('vertical') or per
                                      row and channel ('horizontal'); 1 query for L(x + δ_0)
    for i = 0 … num_queries − 2:      (1 query each)
        s   = side of the square for the fraction p(i) of the pixels
        W   = a random s × s window
        δ'  = δ with δ'_W = v, v ∈ {−ε, ε}^3 one random sign per channel (redrawn while x + δ'
              would equal x + δ on the whole window)
        if L(x + δ') improves on L(x + δ):  δ = δ'

Every candidate is projected: ``x + δ`` is clipped to [0, 255] and ``δ`` zeroed outside ``mask``.

**Loss oracle** (Xiang et al.: "we adopt loss oracle to accept the update when the resulting loss
is larger than the best loss so far. Pixel-wise cross entropy loss is commonly used in semantic
segmentation, so it is natural to define such loss as oracle"): the per-pixel cross-entropy of
the logits against ``labels`` (default the clean prediction; 255 = no loss), averaged over each
image's valid pixels, so every image is scored on its own. Untargeted, a candidate is accepted
when it *strictly increases* that loss. With a ``target``, the oracle is the cross-entropy to the
target and a candidate is accepted when it strictly decreases it.

**Sampling** follows Andriushchenko et al.'s reference code (``square_attack_linf`` and
``p_selection`` in ``attack.py`` of https://github.com/max-andr/square-attack):

* initialisation ``x + choice([−ε, ε], size=[n, c, 1, w])`` – vertical stripes of width one;
  Xiang et al. ("Black-box Attack", Fig. 4) compare it with horizontal stripes (``size=[n, c, h,
  1]``) and find vertical "slightly better", hence the default;
* ``p(i)`` starts at ``p_init`` and is halved at iterations 10, 50, 200, 500, 1000, 2000, 4000,
  6000 and 8000 of a 10 000-query budget; for another budget ``n`` the iteration is rescaled as in
  ``p_selection``: ``it = int(i / n * 10000)`` (see :func:`square_fraction`);
* ``s = round(sqrt(p · H · W))`` (their ``sqrt(p * n_features / c)``), at least 1 and at most
  ``min(H, W)``;
* the new window value: one sign per channel, redrawn (all channels together) as long as the
  candidate equals the current image on the whole window, as their ``while`` loop does.

Deviations from the reference code, all for segmentation-size (non-square, masked) images:

* the window position is uniform over *all* ``(H − s + 1)(W − s + 1)`` positions. Their
  ``randint(0, h − s)`` (exclusive upper bound) never reaches the last row / column, which is why
  they cap ``s`` at ``h − 1``; we cap at ``min(H, W)`` instead;
* with a ``mask``, only windows containing at least one pixel of the mask are drawn (other
  windows cannot change the image and would waste a query); for a full mask this is the same
  draw as without a mask. An image whose mask is empty, or whose labels are all 255 (constant
  loss), stops after the initial query;
* there is no early stop on success (the reference stops an image once it is misclassified):
  Xiang et al. keep maximising the segmentation loss, so every other image spends the whole
  budget.

**Queries**: the initial stripes cost one query, every iteration one more per running image, so an
image spends at most ``num_queries`` (exactly that unless stopped as above). The clean forward pass
that :meth:`Attack.run` makes when ``labels`` is omitted is not counted (the reference code also
computes the clean prediction before the attack). :meth:`run` reports ``info['queries']`` (int64)
and ``info['loss']`` (the oracle's loss of the returned image: CE to the labels, or to the target
in targeted mode). The attack uses no gradient (``gradient_passes() == 0``).

**Randomness** is deterministic and per image, as in :class:`attacks.pgd.PGD`: each image draws
from its own ``torch.Generator`` seeded by ``seed`` and a SHA-256 of the image's bytes, so an image
gets the same result alone or in any batch, shard or position, whatever the global RNG. Runs with
different budgets share the initial stripes (drawn first), but *not* their later trajectories: the
rescaled ``p(i)`` depends on the budget, so a longer run is not a continuation of a shorter one.
"""
from __future__ import annotations

import hashlib
import math
import numbers
from typing import Any, Dict, List, Optional

import torch
import torch.nn.functional as F

from .base import IGNORE_INDEX, Attack, AttackResult, member_weighted, project, register_attack
from .pgd import check_positive

#: Andriushchenko et al.'s L∞ default ``p_init`` (``--p`` in attack.py: "Linf standard: 0.05")
ANDRIUSHCHENKO_P_INIT = 0.05
#: query budget per image; Xiang et al. do not state theirs
DEFAULT_NUM_QUERIES = 1000
#: stripe orientations of the initialisation
INITS = ('vertical', 'horizontal')
#: iterations (of a 10 000-query budget) after which ``p`` is halved (``p_selection``)
P_HALVING_ITERATIONS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
#: draws of the window's signs before giving up on changing the window (unreachable for ε > 0)
_MAX_SIGN_DRAWS = 100


def square_fraction(p_init: float, it: int, n_iters: int) -> float:
    """Fraction of pixels ``p(it)`` changed at iteration ``it`` (0-based) of an ``n_iters`` budget.

    Andriushchenko et al.'s piece-wise constant schedule (``p_selection`` in their ``attack.py``):
    the iteration is rescaled to a 10 000-query budget, ``int(it / n_iters * 10000)``, and
    ``p_init`` is halved after 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 of them.
    """
    it = int(it / n_iters * 10000)
    halvings = sum(it > t for t in P_HALVING_ITERATIONS)
    if it > 10000:          # their last branch (only reachable with it > n_iters)
        halvings = 0
    return p_init / 2 ** halvings


def square_side(p: float, height: int, width: int, channels: int = 3) -> int:
    """Side ``s`` of the square covering the fraction ``p`` of the pixels, in ``[1, min(H, W)]``.

    ``round(sqrt(p · c·H·W / c))`` exactly as the reference code computes it (Python's ``round``:
    halves to even).
    """
    s = int(round(math.sqrt(p * (channels * height * width) / channels)))
    return min(max(s, 1), height, width)


def check_seed(seed) -> int:
    """Validate a seed: a non-negative integer."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f'seed must be a non-negative integer, got {seed!r}')
    return int(seed)


def image_generator(seed: int, image: torch.Tensor, salt: str = 'square') -> torch.Generator:
    """A CPU ``torch.Generator`` seeded by ``salt``, ``seed`` and the SHA-256 of the image's bytes.

    The same recipe as :meth:`attacks.pgd.PGD._uniform_noise` (the image as CPU float32), so the
    draws of an image do not depend on the batch it is in nor on the global RNG.
    """
    digest = hashlib.sha256(f'{salt}:{seed}:'.encode())
    digest.update(image.detach().to(device='cpu', dtype=torch.float32).contiguous().numpy().tobytes())
    return torch.Generator().manual_seed(int.from_bytes(digest.digest()[:8], 'little'))


def per_image_loss(logits: torch.Tensor, labels: torch.Tensor,
                   ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Mean per-pixel cross-entropy of each image over its valid pixels, ``(N,)``; 0 if none."""
    ce = member_weighted(logits, lambda z: F.cross_entropy(z.float(), labels.long(), ignore_index=ignore_index,
                                                           reduction='none'))
    valid = (labels != ignore_index).flatten(1).sum(1)
    return ce.flatten(1).sum(1) / valid.clamp(min=1)


@register_attack
class SquareAttack(Attack):
    """L∞ Square Attack: score-based random search with square-shaped ±ε updates.

    Andriushchenko et al. 2020 (https://arxiv.org/abs/1912.00049; reference code
    https://github.com/max-andr/square-attack) with Xiang et al.'s pixel-wise cross-entropy loss
    oracle for segmentation. See the module docstring for the algorithm and its details.

    Args:
        epsilon: L∞ radius in 0–255 pixel units (Xiang et al.: 8 "among all experiments").
        num_queries: Query budget per image, the initial stripes included (the reference's
            ``n_iters``: 1 initial query + ``n_iters − 1`` iterations). Xiang et al. do not state
            theirs; default 1000. Andriushchenko et al. use 10 000 for untargeted ImageNet.
        p_init: Initial fraction of the image's pixels covered by a square, halved along the
            budget (:func:`square_fraction`). Default 0.05, Andriushchenko et al.'s L∞ value
            ("Linf standard: 0.05"; Xiang et al. do not state theirs).
        init: Initial stripes: ``'vertical'`` (one random ±ε per column and channel, the
            original, Xiang et al.'s better one) or ``'horizontal'`` (per row and channel).
        seed: Seed of the random draws (combined with each image's content hash). Default 0.

    Shapes:
        images ``(N, 3, H, W)`` float RGB in [0, 255]; ``labels`` / ``target`` ``(N, H, W)`` int64
        (255 = no loss); ``mask`` ``(N, H, W)`` or ``(N, 1, H, W)``; returns ``(N, 3, H, W)``;
        :meth:`run` also returns ``info = {'queries': (N,) int64, 'loss': (N,) float}``.

    Example:
        >>> attack = SquareAttack(epsilon=8)                 # 1000 queries, vertical stripes
        >>> adv, info = attack.run(model, images)            # untargeted, labels = clean prediction
        >>> adv = SquareAttack(8, init='horizontal')(model, images)
        >>> adv = SquareAttack(8, num_queries=5000)(model, images, target=target_map)  # targeted
    """

    name = 'square'
    aliases = ('square_attack',)
    display_name = 'Square Attack'
    accepts_target = True

    def __init__(self, epsilon: float, num_queries: int = DEFAULT_NUM_QUERIES,
                 p_init: float = ANDRIUSHCHENKO_P_INIT, init: str = 'vertical', seed: int = 0):
        super().__init__(epsilon)
        if isinstance(num_queries, bool) or not isinstance(num_queries, numbers.Integral) \
                or num_queries < 1:
            raise ValueError(f'num_queries must be a positive integer (query budget per image, '
                             f'the initial query included), got {num_queries!r}')
        self.num_queries = int(num_queries)
        p_init = check_positive(p_init, 'p_init')
        if p_init > 1:
            raise ValueError(f'p_init must be a fraction of the pixels in (0, 1], got {p_init!r}')
        self.p_init = p_init
        if init not in INITS:
            raise ValueError(f'init must be one of {INITS} (stripes of the initialisation), got {init!r}')
        self.init = init
        self.seed = check_seed(seed)

    # -- description -------------------------------------------------------------------------
    def params(self) -> Dict[str, Any]:
        return {'num_queries': self.num_queries, 'p_init': self.p_init, 'init': self.init,
                'seed': self.seed}

    def gradient_passes(self) -> int:
        return 0

    def square_sides(self, height: int, width: int) -> List[int]:
        """Side of the square of every iteration, ``num_queries − 1`` values."""
        return [square_side(square_fraction(self.p_init, i, self.num_queries), height, width)
                for i in range(self.num_queries - 1)]

    # -- pieces ----------------------------------------------------------------------------------
    def _generators(self, images: torch.Tensor) -> List[torch.Generator]:
        return [image_generator(self.seed, img) for img in images]

    def _stripes(self, generator: torch.Generator, height: int, width: int) -> torch.Tensor:
        """``(3, H, W)`` ±ε stripes of one image: constant along columns or rows per channel.

        Materialised row-major for both orientations (never a stride-0 view of the per-column or
        per-row signs), so every later query works on the same contiguous layout and both
        initialisations cost the same per query.
        """
        shape = (3, 1, width) if self.init == 'vertical' else (3, height, 1)
        signs = torch.randint(0, 2, shape, generator=generator).float() * 2 - 1
        return (signs * self.epsilon).expand(3, height, width).clone(memory_format=torch.contiguous_format)

    def initial_delta(self, images: torch.Tensor,
                      generators: Optional[List[torch.Generator]] = None) -> torch.Tensor:
        """Unprojected initial perturbation ``δ_0 ∈ {−ε, ε}`` (stripes), ``(N, 3, H, W)``."""
        _, _, h, w = images.shape
        if generators is None:
            generators = self._generators(images)
        return torch.stack([self._stripes(g, h, w) for g in generators]).to(images.device, images.dtype)

    def initial_point(self, images: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The stripes start ``x + δ_0`` projected (mask, [0, 255]); what ``num_queries=1`` returns.

        Args:
            images: ``(N, 3, H, W)`` float images in [0, 255].
            mask: Optional ``(N, 1, H, W)`` float mask (as validated by ``__call__``).
        """
        images = images.detach().float()
        return project(images + self.initial_delta(images), images, self.epsilon, mask)

    @staticmethod
    def _positions(allowed: torch.Tensor, size: int) -> List[Optional[torch.Tensor]]:
        """Per image, the flat indices of the windows of side ``size`` that meet the mask.

        None means every position (no mask, or a full mask: the same draw).
        """
        windows = F.max_pool2d(allowed, size, stride=1)      # (N, 1, H−s+1, W−s+1)
        out = []
        for win in windows:
            out.append(None if bool(win.all()) else torch.nonzero(win.flatten() > 0)[:, 0].cpu())
        return out

    # -- running ---------------------------------------------------------------------------------
    def perturb(self, model, images, labels, target, mask):
        with torch.no_grad():
            return self._square(model, images.detach(), labels, target, mask)

    def _square(self, model, images, labels, target, mask) -> AttackResult:
        n, c, h, w = images.shape
        targeted = target is not None
        loss_labels = target if targeted else labels
        sign = -1.0 if targeted else 1.0          # maximise score = ±loss
        eps = self.epsilon
        generators = self._generators(images)

        # initialisation: 1 query per image
        delta = self.initial_delta(images, generators)
        x_best = project(images + delta, images, eps, mask)
        loss_best = per_image_loss(model(x_best), loss_labels)
        queries = torch.ones(n, dtype=torch.int64)

        # images that cannot improve: no loss pixel, or nothing may change (empty mask)
        running = (loss_labels != IGNORE_INDEX).flatten(1).any(1)
        allowed = None
        if mask is not None:
            allowed = (mask != 0).float()
            running &= allowed.flatten(1).any(1)
        running = running.cpu()

        positions_cache: Dict[int, List[Optional[torch.Tensor]]] = {}
        for it in range(self.num_queries - 1):
            idx = torch.nonzero(running)[:, 0]
            if len(idx) == 0:
                break
            s = square_side(square_fraction(self.p_init, it, self.num_queries), h, w, c)
            if allowed is not None and s not in positions_cache:
                positions_cache[s] = self._positions(allowed, s)
            n_cols = w - s + 1
            cand_delta = delta[idx].clone()
            for j, b in enumerate(idx.tolist()):
                g = generators[b]
                positions = positions_cache[s][b] if allowed is not None else None
                if positions is None:
                    flat = int(torch.randint(0, (h - s + 1) * n_cols, (1,), generator=g))
                else:
                    flat = int(positions[int(torch.randint(0, len(positions), (1,), generator=g))])
                r, col = divmod(flat, n_cols)
                x_win = images[b, :, r:r + s, col:col + s]
                best_win = x_best[b, :, r:r + s, col:col + s]
                m_win = None if mask is None else mask[b, :, r:r + s, col:col + s]
                for _ in range(_MAX_SIGN_DRAWS):
                    signs = torch.randint(0, 2, (c, 1, 1), generator=g).float() * 2 - 1
                    new = (signs * eps).to(images.device, images.dtype).expand(c, s, s)
                    if not torch.equal(project(x_win + new, x_win, eps, m_win), best_win):
                        break
                cand_delta[j, :, r:r + s, col:col + s] = new
            x_cand = project(images[idx] + cand_delta, images[idx], eps,
                             None if mask is None else mask[idx])
            loss_cand = per_image_loss(model(x_cand), loss_labels[idx])
            improved = sign * loss_cand > sign * loss_best[idx]
            keep = improved.view(-1, 1, 1, 1)
            delta[idx] = torch.where(keep, cand_delta, delta[idx])
            x_best[idx] = torch.where(keep, x_cand, x_best[idx])
            loss_best[idx] = torch.where(improved, loss_cand, loss_best[idx])
            queries[idx] += 1

        return AttackResult(x_best, {'queries': queries, 'loss': loss_best.detach()})
