"""Gradient-masking and sanity flags, computed from the results alone.

An evaluation can under-estimate an attack: a model that masks its gradients (saturated softmax,
non-differentiable or stochastic layers, a CRF whose mean-field iterations flatten the loss
surface) looks robust to gradient attacks without being robust. Athalye et al. (2018, *Obfuscated
Gradients Give a False Sense of Security*, https://arxiv.org/abs/1802.00420, Sec. 3.1) and
Carlini et al. (2019, *On Evaluating Adversarial Robustness*, https://arxiv.org/abs/1902.06705,
Sec. 4.3 and 5) list the symptoms checked here; RobustBench (Croce et al. 2021) marks such entries
"potentially unreliable". Arnab et al. (2018, Sec. 7) found exactly this for CRF-RNN: adversarial
examples transferred from its own unaries hurt it more than white-box attacks on the whole model.

A flagged model is marked on every page that lists it and the flag's numbers are shown; it is
never hidden and its rank is kept. Checks, per suite, dataset and model:

* ``iterative_weaker`` – an iterative attack is weaker than its single-step version at the same ε
  (Iterative FGSM vs FGSM, Iterative FGSM II vs FGSM II; PGD, MI-FGSM, SegPGD, CosPGD, APGD vs FGSM);
* ``transfer_stronger`` – examples transferred from another source hurt the model more than the
  white-box attack of the same configuration and ε on the model itself;
* ``black_box_stronger`` – a black-box (query) attack hurts it more than the strongest white-box
  gradient attack at the same ε;
* ``not_decreasing`` – the IoU ratio of an attack grows with ε (the clean image counts as ε = 0);
* ``zero_gradient`` / ``non_finite_gradient`` – the runner's input-gradient statistic at the clean
  images (``attack_stats.input_gradient`` of the clean record; absent in older records);
* ``overconfident`` – mean top-class probability of the clean prediction above 99 %
  (``attack_stats.prediction_confidence``; Arnab et al. 2018 Sec. 7.1).

**Noise.** The comparisons are between cells of the same model on the same images, so they are
paired: a comparison fires only when the difference exceeds :data:`TOLERANCE` (1 percentage point)
*and*, where the per-image confusion matrices exist, the paired bootstrap distribution of the
difference (:mod:`leaderboard.stats`: the same resampled images for both cells) lies above zero at
the one-sided level 2.5 % ÷ m, m the number of comparisons the check makes for the model (a
Bonferroni correction: one check compares up to a few dozen pairs, and at 2.5 % each about one of
40 pairs of equally strong attacks would fire by chance). With 1000 resamples a level below 1/1000
is the smallest resampled difference. Without per-image matrices the tolerance alone decides.

"Weaker" is measured by each attack's own objective: the IoU ratio (lower is stronger) for
untargeted attacks, the targeted success rate towards the least-likely classes (higher is stronger)
for FGSM II and Iterative FGSM II, whose goal is that target rather than a low IoU.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Optional, Tuple

import numpy as np
import pandas as pd

from benchmark.cells import CLEAN

from . import stats
from .data import natural_key, white_box

#: Smallest difference of IoU ratios (a fraction: 0.01 = 1 percentage point) a comparison flags.
TOLERANCE = 0.01
#: Flag when more than this fraction of the input-gradient entries is exactly zero (mean over the
#: clean images), or when one image's gradient is zero everywhere.
ZERO_GRADIENT_FRACTION = 0.5
#: Flag when the clean prediction's mean top-class probability exceeds this.
CONFIDENCE_LIMIT = 0.99
#: Iterative attack → its single-step version.
SINGLE_STEP_OF = {'ifgsm': 'fgsm', 'ifgsm_ll': 'fgsm_ll', 'pgd': 'fgsm', 'mifgsm': 'fgsm',
                  'segpgd': 'fgsm', 'cospgd': 'fgsm', 'apgd': 'fgsm'}
#: The columns the checks read.
_COLUMNS = ('model', 'attack', 'variant', 'epsilon', 'source_model', 'iou_ratio', 'num_images', '_ratio_samples',
            'targeted_success_rate', '_success_samples',
            'queries', 'gradient_passes', 'has_target_map', 'input_gradient_zero_fraction_mean',
            'input_gradient_zero_fraction_max', 'input_gradient_all_finite', 'mean_top_probability')
#: Most comparisons listed per flag (the rest counted).
MAX_DETAILS = 3

#: kind → (short title, explanation shown beside the table).
KINDS: Dict[str, Tuple[str, str]] = {
    'iterative_weaker': (
        'iterative weaker than single-step',
        'An iterative attack (Iterative FGSM, PGD, ...) does worse than its single-step version (FGSM) '
        'at the same ε, on its own objective: a higher IoU ratio, or for Iterative FGSM II a lower '
        'success rate towards the least-likely classes than FGSM II. Iterating can only help a working '
        'gradient attack, so the gradient is likely masked or the attack misconfigured (Carlini et '
        'al. 2019, Sec. 5).'),
    'transfer_stronger': (
        'transfer stronger than white-box',
        'Adversarial examples generated on another source lower the IoU ratio more than the white-box '
        'attack on the model itself (same attack and ε): the white-box gradient is not informative, '
        'as Arnab et al. (2018, Sec. 7) found for CRF-RNN.'),
    'black_box_stronger': (
        'black-box stronger than white-box',
        'A query-based (black-box) attack lowers the IoU ratio more than the strongest white-box '
        'gradient attack at the same ε, which has strictly more information (Athalye et al. 2018).'),
    'not_decreasing': (
        'IoU not decreasing as ε grows',
        'An attack reaches a higher IoU ratio at a larger ε than at a smaller one (the clean image '
        'counts as ε = 0). A larger budget contains the smaller one, so a working attack never does '
        'worse (Carlini et al. 2019, Sec. 5).'),
    'zero_gradient': (
        'zero input gradients',
        f'More than {100 * ZERO_GRADIENT_FRACTION:g} % of the input-gradient entries of the '
        'cross-entropy are exactly zero at the clean images, or some image\'s gradient is zero '
        'everywhere: gradient attacks have nothing to follow (shattered gradients, Athalye et al. 2018).'),
    'non_finite_gradient': (
        'non-finite input gradients',
        'The input gradient at the clean images holds NaN or infinite values.'),
    'overconfident': (
        'mean top-class probability above 99 %',
        f'The clean prediction\'s mean top-class probability exceeds {100 * CONFIDENCE_LIMIT:g} %: a '
        'saturated softmax gives vanishing cross-entropy gradients (Arnab et al. 2018, Sec. 7.1, on '
        'CRF-RNN).'),
}


@dataclasses.dataclass(frozen=True)
class Flag:
    """One reason a model's numbers are potentially unreliable, with the numbers behind it."""

    kind: str
    detail: str

    @property
    def title(self) -> str:
        return KINDS[self.kind][0]

    @property
    def explanation(self) -> str:
        return KINDS[self.kind][1]

    def __str__(self) -> str:
        return f'{self.title}: {self.detail}'


def _pct(v: float) -> str:
    return f'{100 * v:.1f} %'


#: One-sided level of each check per model (before the Bonferroni division).
LEVEL = 0.025


def higher(a: pd.Series, b: pd.Series, tolerance: float = TOLERANCE, comparisons: int = 1,
           metric: str = 'iou_ratio') -> Optional[Tuple[float, Tuple[float, float]]]:
    """Whether cell ``a``'s ``metric`` (``iou_ratio`` or ``targeted_success_rate``) is higher than
    cell ``b``'s beyond the noise: ``(difference, (lower bound, 95 % interval's upper end))`` when
    it is (NaN bounds without per-image matrices), None otherwise. See the module docstring for
    the rule; ``comparisons`` is the Bonferroni m."""
    diff = float(a[metric]) - float(b[metric])
    if math.isnan(diff) or diff <= tolerance:
        return None
    column = '_ratio_samples' if metric == 'iou_ratio' else '_success_samples'
    sa, sb = a.get(column), b.get(column)
    if isinstance(sa, np.ndarray) and isinstance(sb, np.ndarray) and len(sa) == len(sb) \
            and a.num_images == b.num_images:
        d = sa - sb
        d = d[~np.isnan(d)]
        if not len(d):
            return None
        low = float(np.quantile(d, LEVEL / max(1, comparisons)))
        if not low > 0:
            return None
        return diff, (low, stats.interval(d)[1])
    return diff, (float('nan'), float('nan'))


def _difference(found: Tuple[float, Tuple[float, float]], comparisons: int, what: str = 'points') -> str:
    diff, (low, high) = found
    text = f'+{100 * diff:.1f} {what}'
    if not math.isnan(low):
        text += (f'; paired bootstrap lower bound {100 * low:.1f}'
                 + (f' after Bonferroni over {comparisons} comparisons' if comparisons > 1 else ''))
    return text


def _join(details: List[str]) -> str:
    shown = '; '.join(details[:MAX_DETAILS])
    return shown + (f'; and {len(details) - MAX_DETAILS} more' if len(details) > MAX_DETAILS else '')


def _clean_row(g: pd.DataFrame) -> Optional[pd.Series]:
    clean = g[(g.attack == CLEAN) & g.source_model.isna()]
    return clean.iloc[0] if len(clean) else None


def _rows(df: pd.DataFrame) -> List[pd.Series]:
    """Rows in variant (numbers by value), ε and source order."""
    return [r for _, r in sorted(df.iterrows(), key=lambda r: (natural_key(r[1].variant), r[1].epsilon,
                                                               natural_key(r[1].source_model or '')))]


def _evaluate(pairs, tolerance: float) -> List[str]:
    """``pairs``: ``(a, b, metric, describe)``; the details of those where ``a`` is higher beyond
    the noise, m = the number of pairs with both values."""
    valid = [p for p in pairs if not (pd.isna(p[0][p[2]]) or pd.isna(p[1][p[2]]))]
    out = []
    for a, b, metric, describe in valid:
        found = higher(a, b, tolerance, len(valid), metric)
        if found:
            out.append(describe(found, len(valid)))
    return out


def model_flags(df: pd.DataFrame, tolerance: float = TOLERANCE) -> Dict[str, List[Flag]]:
    """The flags of every model of ``df`` (the cells of one suite and dataset, transfer cells
    included), ``{model: [Flag, ...]}`` (models without flags are left out)."""
    out: Dict[str, List[Flag]] = {}
    if df.empty:
        return out
    df = df[[c for c in _COLUMNS if c in df.columns]]     # narrow: the checks filter it often
    for model, g in df.groupby('model', sort=True):
        flags = []
        wb = white_box(g)
        attacked = wb[wb.attack != CLEAN]
        clean = _clean_row(g)
        # iterative vs single step at the same ε, on the attack's own objective
        pairs = []
        for it in _rows(attacked[attacked.attack.isin(list(SINGLE_STEP_OF))]):
            single = attacked[(attacked.attack == SINGLE_STEP_OF[it.attack]) & np.isclose(attacked.epsilon, it.epsilon)]
            for s in _rows(single):
                targeted = not (pd.isna(it.targeted_success_rate) or pd.isna(s.targeted_success_rate))
                if targeted:     # least-likely: the single step reaching its target more often
                    pairs.append((s, it, 'targeted_success_rate', lambda f, m, it=it, s=s: (
                        f'{it.variant} at ε={it.epsilon:g}: success rate towards the least-likely classes '
                        f'{_pct(it.targeted_success_rate)} vs {s.variant} {_pct(s.targeted_success_rate)} '
                        f'({_difference(f, m)})')))
                else:
                    pairs.append((it, s, 'iou_ratio', lambda f, m, it=it, s=s: (
                        f'{it.variant} at ε={it.epsilon:g}: IoU ratio {_pct(it.iou_ratio)} vs '
                        f'{s.variant} {_pct(s.iou_ratio)} ({_difference(f, m)})')))
        details = _evaluate(pairs, tolerance)
        if details:
            flags.append(Flag('iterative_weaker', _join(details)))
        # transfer vs white-box, same variant and ε
        pairs = []
        for t in _rows(g[g.source_model.notna() & (g.attack != CLEAN)]):
            own = attacked[(attacked.variant == t.variant) & np.isclose(attacked.epsilon, t.epsilon)]
            for w in _rows(own):
                pairs.append((w, t, 'iou_ratio', lambda f, m, t=t, w=w: (
                    f'{t.variant} at ε={t.epsilon:g} from {t.source_model}: IoU ratio {_pct(t.iou_ratio)} '
                    f'vs white-box {_pct(w.iou_ratio)} ({_difference(f, m)})')))
        details = _evaluate(pairs, tolerance)
        if details:
            flags.append(Flag('transfer_stronger', _join(details)))
        # black-box vs the strongest white-box gradient attack, same ε
        pairs = []
        gradient = attacked[attacked.queries.isna() & (attacked.gradient_passes > 0) & ~attacked.has_target_map]
        for b in _rows(attacked[attacked.queries.notna()]):
            same = gradient[np.isclose(gradient.epsilon, b.epsilon) & gradient.iou_ratio.notna()]
            if not same.empty:
                w = same.loc[same.iou_ratio.idxmin()]
                pairs.append((w, b, 'iou_ratio', lambda f, m, b=b, w=w: (
                    f'{b.variant} at ε={b.epsilon:g}: IoU ratio {_pct(b.iou_ratio)} vs '
                    f'{w.variant} {_pct(w.iou_ratio)} ({_difference(f, m)})')))
        details = _evaluate(pairs, tolerance)
        if details:
            flags.append(Flag('black_box_stronger', _join(details)))
        # monotonicity in ε, the clean cell as ε = 0: every pair of a variant's ε
        pairs = []
        for variant, v in attacked.groupby('variant', sort=False):
            series = [clean] * (clean is not None) + [r for _, r in v.sort_values('epsilon').iterrows()]
            for i in range(len(series)):
                for j in range(i + 1, len(series)):
                    lo, hi = series[i], series[j]
                    pairs.append((hi, lo, 'iou_ratio', lambda f, m, lo=lo, hi=hi, variant=variant: (
                        f'{variant}: IoU ratio {_pct(hi.iou_ratio)} at ε={hi.epsilon:g} vs '
                        f'{_pct(lo.iou_ratio)} at ε={lo.epsilon:g} ({_difference(f, m)})')))
        details = _evaluate(pairs, tolerance)
        if details:
            flags.append(Flag('not_decreasing', _join(details)))
        # what the runner measured at the clean images
        if clean is not None:
            mean_zero = clean.get('input_gradient_zero_fraction_mean', np.nan)
            max_zero = clean.get('input_gradient_zero_fraction_max', np.nan)
            if (not pd.isna(mean_zero) and mean_zero > ZERO_GRADIENT_FRACTION) or \
                    (not pd.isna(max_zero) and max_zero >= 1.0):
                flags.append(Flag('zero_gradient', f'{_pct(mean_zero)} of the entries zero on average, '
                                  f'{_pct(max_zero)} in the worst image'))
            if clean.get('input_gradient_all_finite') is False:
                flags.append(Flag('non_finite_gradient', 'recorded by the runner at the clean images'))
            top = clean.get('mean_top_probability', np.nan)
            if not pd.isna(top) and top > CONFIDENCE_LIMIT:
                flags.append(Flag('overconfident', f'mean top-class probability {100 * top:.2f} %'))
        if flags:
            out[model] = flags
    return out
