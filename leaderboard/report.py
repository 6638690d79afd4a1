"""Report generator: result records → tables (Markdown, CSV) and figures.

A pure function of the records under a results directory: it never imports torch, attacks or
model code (only :mod:`benchmark.store`, :mod:`benchmark.integrity` and the numpy-only metric
modules). Every record is verified before it is used (:func:`benchmark.store.inspect_record`:
metrics recomputed from the stored confusion matrices, per-image files, names, paths) and checked
against the other cells of its model (:func:`benchmark.integrity.consistency_problems`); a record
that fails is refused – logged as a warning and listed with file, field and reason under "Refused
records" in the README – and the rest is rendered.

Every string that comes from a record is escaped for Markdown (:func:`md_escape`). Models with
missing cells or with a clean mIoU near chance level are shown but not ranked (``flags`` column).

Outputs (per suite, in ``out_dir``):

* ``README.md`` – per model: clean mIoU, IoU ratio of each attack at ε = 8 and its mean over the ε
  grid, ranked by the mean IoU ratio over attacks (the robustness score);
* ``<suite>.csv`` – one row per cell (model, attack, ε, mIoU, IoU ratio, ...); in a suite with
  transfer cells also a ``source`` column (the source id; the model itself for white-box cells);
* ``<suite>_iou_ratio.png`` – IoU ratio against ε, one panel per attack, one line per model, in the
  style of Arnab et al. (2018) Fig. 2 and 3.

**Transfer.** A cell's ``model`` is the target evaluated and its ``source_model`` the source the
adversarial examples were generated on (None: white-box, the target itself). The summary table,
its ranking and completeness count, the ε plots and the targeted table use white-box cells only
(:func:`white_box`). Per suite and attack configuration (variant, ε) with transfer cells, the
README gets matrices rows = targets × columns = sources of the IoU ratio, pixel accuracy (Xiang
et al. 2018, Table 2) and mIoU, the white-box diagonal marked † and the strongest transfer source
of each row in bold (:func:`transfer_matrix`, :func:`transfer_markdown`), and the files
``<suite>_transfer_<attack>_eps<ε>.csv`` (one row per target and source) and ``.png`` / ``.svg``
(heatmap, :func:`plot_transfer`). When ids of one model at several scales occur (``X.s0.5``,
``X.s0.75``, ``X.s1`` and ``X``), the rows and columns follow Arnab et al. 2018 Table 1 (50 %,
75 %, 100 %, multiscale, then the other models) and a scale table in that paper's layout follows
(:func:`scale_table`). Pandas' ``to_markdown`` needs ``tabulate``, which the venv lacks, so the
tables go through this module's escaping writer.
"""
from __future__ import annotations

import io
import json
import logging
import math
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import pandas as pd

from benchmark import metrics
from benchmark.cells import CLEAN
from benchmark.integrity import consistency_problems, inspect_paths
from benchmark.store import Problem, hidden_class_of
from common.atomic import atomic_write_bytes
from common.errors import ResultsError
from benchmark.targeted_metrics import per_image_hiding

logger = logging.getLogger(__name__)

ATTACK_LABELS = {'fgsm': 'FGSM', 'fgsm_ll': 'FGSM II', 'ifgsm': 'Iterative FGSM',
                 'ifgsm_ll': 'Iterative FGSM II', 'pgd': 'PGD', 'mifgsm': 'MI-FGSM', 'segpgd': 'SegPGD',
                 'cospgd': 'CosPGD', 'square': 'Square Attack', 'targeted_ifgsm': 'Targeted I-FGSM',
                 'universal': 'Universal', 'gap': 'GAP', 'worst_case': 'Worst case'}
REFERENCE_EPSILON = 8.0
#: A model is "near chance level" when its clean mIoU is below this multiple of the mIoU of always
#: predicting the most frequent ground-truth class (see :func:`majority_class_miou`).
CHANCE_FACTOR = 2.0
#: Refused records logged one by one (a copied results folder would otherwise flood the log).
MAX_LOGGED_REFUSALS = 20

_MD_SPECIAL = re.compile(r'([\\`*\[\]|~$])')
#: ``_`` between two letters or digits never starts or ends emphasis (CommonMark's intraword rule),
#: so names such as ``fcn_r18-w16_synthcity`` stay as they are; any other ``_`` is escaped.
_MD_UNDERSCORE = re.compile(r'(?<![^\W_])_|_(?![^\W_])')


def md_escape(text) -> str:
    """``text`` made safe for a Markdown table cell, heading or list item.

    Line breaks become spaces, ``& < >`` HTML entities (no raw HTML), and the characters that
    start code, emphasis, links, tables, strike-through or math (``\\ ` * [ ] | ~ $``, and ``_``
    except inside a word) are backslash-escaped, so a record's strings always render as the plain
    text they are.
    """
    text = re.sub(r'[\r\n\t\v\f]+', ' ', str(text))
    text = text.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')
    return _MD_UNDERSCORE.sub(r'\\_', _MD_SPECIAL.sub(r'\\\1', text))


def _plot_text(text) -> str:
    """A label for matplotlib: ``$`` would start mathtext (and fail to parse)."""
    return str(text).replace('$', r'\$')


def _file_stem(text: str) -> str:
    """A file-name-safe version of a record's name (dataset names are not restricted)."""
    return re.sub(r'[^A-Za-z0-9_.+-]', '_', text)


def attack_label(name: str) -> str:
    return ATTACK_LABELS.get(name, name)


def _short(v) -> str:
    if isinstance(v, float):
        return f'{v:g}'
    if isinstance(v, (list, tuple)):
        return '×'.join(_short(x) for x in v)
    return str(v)


def variant_label(attack: str, spec: Optional[dict], omit=()) -> str:
    """A table label for one attack configuration of a suite: the attack's name plus the options
    its suite entry sets (e.g. ``PGD (num_steps=100)``, ``Universal (hide class 11, tile_size=32×32)``),
    leaving out the keys in ``omit`` (options shared by every configuration of the attack)."""
    base = attack_label(attack)
    parts = _option_labels(spec, omit)
    return f'{base} ({", ".join(parts)})' if parts else base


def _option_labels(spec: Optional[dict], omit=()) -> List[str]:
    parts = []
    for k, v in sorted((spec or {}).items()):
        if k in ('type', 'epsilons') or k in omit:
            continue
        if k == 'target' and isinstance(v, dict):
            parts.append(f"hide class {v.get('hidden_class')}" if v.get('kind') == 'hide_class'
                         else f"static target {v.get('split')}[{v.get('index')}]")
        elif k == 'mask':
            parts.append({'hidden_class': 'masked', 'hidden_class_posthoc': 'masked after'}.get(v, f'mask={v}'))
        elif k == 'attacks' and isinstance(v, list):
            parts.append('+'.join(attack_label(str(m.get('type', '?')) if isinstance(m, dict) else str(m))
                                  for m in v))
        else:
            parts.append(f'{k}={_short(v)}')
    return parts


def _label_variants(df: pd.DataFrame) -> Dict[str, List[str]]:
    """Set ``df.variant`` from each cell's suite entry, leaving out the options every entry of the
    same attack in the suite shares; returns those shared options per suite, for a note."""
    import json
    common_notes: Dict[str, List[str]] = {}
    labels = pd.Series(CLEAN, index=df.index, dtype=object)
    for (suite, attack), g in df[df.attack != CLEAN].groupby(['suite', 'attack'], sort=True):
        specs = {s: json.loads(s) for s in g.spec.unique()}
        dicts = [d for d in specs.values() if d]
        common = set()
        if dicts:
            keys = set.intersection(*(set(d) for d in dicts)) - {'type', 'epsilons'}
            common = {k for k in keys if len({json.dumps(d[k], sort_keys=True) for d in dicts}) == 1}
            shared = _option_labels({k: dicts[0][k] for k in common})
            if shared:
                common_notes.setdefault(suite, []).append(f'{attack_label(attack)}: {", ".join(shared)}')
        for spec_json, spec in specs.items():
            labels[g.index[g.spec == spec_json]] = variant_label(attack, spec, omit=common)
    df['variant'] = labels
    return common_notes


def check_results(results_dir: Union[str, Path]) -> Tuple[list, List[Problem]]:
    """The records under ``results_dir`` that can be trusted, and the problems of the others.

    A record is refused when it fails the per-record checks of
    :func:`benchmark.store.inspect_record` (relative to ``results_dir``: a copied or moved folder
    does not match its records' keys) or disagrees with its model's other cells
    (:func:`benchmark.integrity.consistency_problems`: duplicate cell, other image list, other
    ground truth or image sizes). Returns ``(checked records, problems)``.
    """
    results_dir = Path(results_dir)
    if not results_dir.exists():
        return [], []
    if not results_dir.is_dir():
        raise ResultsError(f'the results path {results_dir} is a file; expected the folder of result '
                           'records (e.g. results/)')
    checked, problems = inspect_paths([results_dir], root=results_dir)
    problems += consistency_problems(checked)
    refused = {p.file for p in problems}
    return [c for c in checked if str(c.path) not in refused], problems


def majority_class_miou(conf_gt) -> float:
    """mIoU of the constant prediction "the most frequent ground-truth class" (a chance level).

    With ``n_k`` pixels of the most frequent class ``k`` out of ``N`` labelled pixels and ``P``
    classes present in the ground truth, predicting ``k`` everywhere gives IoU ``n_k / N`` for
    ``k`` and 0 for the other present classes (absent classes have an empty union and are left
    out of the mean, as in :func:`benchmark.metrics.mean_iou`): ``(n_k / N) / P``. It needs only the
    row sums of any of the model's ``vs_ground_truth`` matrices.
    """
    area = np.asarray(conf_gt, dtype=np.int64).sum(axis=1)
    total, present = area.sum(), int((area > 0).sum())
    return float(area.max() / total / present) if total > 0 else float('nan')


def load_results(results_dir: Union[str, Path]) -> pd.DataFrame:
    """One row per trusted stored cell, metrics recomputed from the confusion matrices.

    Columns: suite, dataset, model, attack, epsilon, source_model, scale, label_source, params,
    num_images, miou, pixel_accuracy, clean_miou, iou_ratio, targeted_success_rate,
    agreement_with_clean, gradient_passes, wall_time_s, path, chance_miou (the
    :func:`majority_class_miou` of the cell's ground truth).

    Records that cannot be trusted (:func:`check_results`) are left out, logged as warnings, and
    listed in ``df.attrs['refused']`` (:class:`benchmark.store.Problem` s).
    """
    checked, refused = check_results(results_dir)
    for problem in refused[:MAX_LOGGED_REFUSALS]:
        logger.warning('refused record: %s', problem)
    if len(refused) > MAX_LOGGED_REFUSALS:
        logger.warning('... and %d more refused record problem(s), all listed in the rendered README',
                       len(refused) - MAX_LOGGED_REFUSALS)
    rows = []
    for item in checked:
        path, rec, key = item.path, item.record, item.key
        conf = rec['confusion']
        gt = np.asarray(conf['vs_ground_truth'], dtype=np.int64)
        hiding = {}
        hidden_class = hidden_class_of(key.params)
        if hidden_class is not None and item.per_image_clean is not None:
            for name, values in zip(('hidden', 'preserved'),
                                    per_image_hiding(item.per_image_clean, hidden_class)):
                values = values[~np.isnan(values)]
                hiding[f'{name}_image_mean'] = float(values.mean()) if len(values) else np.nan
                hiding[f'{name}_image_sd'] = float(values.std()) if len(values) else np.nan
        rows.append({
            **hiding,
            'suite': key.suite, 'dataset': key.dataset, 'model': key.model, 'attack': key.attack,
            'epsilon': key.epsilon, 'source_model': key.source_model, 'scale': key.scale,
            'label_source': key.label_source, 'params': str(key.params), 'cell_id': key.cell_id,
            'num_images': rec['num_images'], 'miou': metrics.mean_iou(gt),
            'pixel_accuracy': metrics.pixel_accuracy(gt),
            'agreement_with_clean': (metrics.pixel_accuracy(np.asarray(conf['vs_clean']))
                                     if conf['vs_clean'] is not None else np.nan),
            'targeted_success_rate': (metrics.targeted_success_rate(conf['vs_target'])
                                      if conf['vs_target'] is not None else np.nan),
            'has_target_map': 'target' in key.params,
            'spec': json.dumps(rec['provenance'].get('attack_spec') or {}, sort_keys=True),
            'fooling_rate': rec['metrics'].get('fooling_rate', np.nan),
            'class_pixels_hidden': rec['metrics'].get('class_pixels_hidden', np.nan),
            'background_preserved': rec['metrics'].get('background_preserved', np.nan),
            'queries': (rec['attack_stats'].get('per_image_info') or {}).get('queries', {}).get('mean', np.nan),
            'gradient_passes': rec['attack_stats']['gradient_passes_per_image'],
            'wall_time_s': rec['provenance']['wall_time_s'], 'path': str(path),
            'chance_miou': majority_class_miou(gt),
            'random_weights': bool(rec['provenance'].get('random_weights', False)),
            '_clean_id': key.clean_key().cell_id,
        })
    df = pd.DataFrame(rows)
    df.attrs['refused'] = refused
    if df.empty:
        return df
    df.attrs['common_options'] = _label_variants(df)
    clean = df[df.attack == CLEAN].set_index('cell_id')['miou']
    clean = clean[~clean.index.duplicated()]
    df['clean_miou'] = df['_clean_id'].map(clean)
    df['iou_ratio'] = metrics.iou_ratios(df['miou'], df['clean_miou'])
    for col in ('fooling_rate', 'class_pixels_hidden', 'background_preserved', 'queries'):
        df[col] = pd.to_numeric(df[col], errors='coerce')
    out = df.drop(columns=['_clean_id']).sort_values(['suite', 'model', 'attack', 'epsilon'],
                                                    ignore_index=True)
    out.attrs.update(df.attrs)
    return out


def _flags(g: pd.DataFrame, expected: set) -> Tuple[List[str], bool]:
    """Why one model's row must not be ranked: ``(flags, rankable)``."""
    flags = []
    have = {(v, float(e)) for v, e in zip(g[g.attack != CLEAN].variant, g[g.attack != CLEAN].epsilon)}
    n_have = len(have & expected)
    clean = g[g.attack == CLEAN]
    if clean.empty:
        flags.append('no clean cell')
    if g.random_weights.any():
        flags.append('random weights (evaluated untrained on purpose)')
    if n_have < len(expected):
        flags.append(f'incomplete ({n_have}/{len(expected)} cells)')
    if not clean.empty:
        miou, chance = float(clean.miou.iloc[0]), float(clean.chance_miou.iloc[0])
        if math.isnan(miou) or miou < CHANCE_FACTOR * chance:
            flags.append(f'near chance level (clean mIoU {_fmt(miou)} < {CHANCE_FACTOR:g} × '
                         f'{_fmt(chance)}, the most frequent class everywhere)')
    return flags, not flags


def summary_table(df: pd.DataFrame, reference_epsilon: float = REFERENCE_EPSILON) -> pd.DataFrame:
    """Per model: clean mIoU, IoU ratio at ``reference_epsilon`` and mean over ε, per attack.

    ``df`` holds the cells of one suite and dataset. Models are ranked by ``robustness`` (the mean
    IoU ratio over attack variants and ε), but only against each other when the comparison means
    something; the others are listed after the ranked ones with an empty rank and a reason in
    ``flags``:

    * **incomplete** – the model lacks some of the (attack variant, ε) cells the suite's other
      models have on this dataset (a model scored on 1 easy cell would otherwise outrank every
      model scored on the whole grid), or its clean cell;
    * **near chance level** – its clean mIoU is below ``CHANCE_FACTOR`` (2) × the mIoU of always
      predicting the most frequent ground-truth class (:func:`majority_class_miou`). Such a model
      segments nothing; its adversarial and clean mIoU are both near that floor, so their ratio
      stays near 1 whatever the attack does and would rank it as the most robust model. Twice the
      constant predictor's mIoU is a deliberately low bar (the demo models reach 19–24× it) that
      only excludes models which have not learnt to segment at all.

    Only white-box cells (``source_model`` None) count: a transfer cell measures the source's
    attack, not the target's robustness, so it enters neither the score nor the completeness count
    (:func:`transfer_matrix` reports it). A target evaluated only on transferred examples (clean
    and transfer cells, no white-box attack) has no row.
    """
    df = _summary_cells(df)
    out = []
    variants = _variant_order(df)
    attacked = df[df.attack != CLEAN]
    expected = {(v, float(e)) for v, e in zip(attacked.variant, attacked.epsilon)}
    for model, g in df.groupby('model', sort=False):
        clean = g[g.attack == CLEAN]['miou']
        row = {'model': model, 'clean mIoU': float(clean.iloc[0]) if len(clean) else np.nan}
        worst = g[(g.attack == 'worst_case') & np.isclose(g.epsilon, reference_epsilon)]['miou']
        if (df.attack == 'worst_case').any():
            row[f'robust mIoU ε={reference_epsilon:g}'] = float(worst.min()) if len(worst) else np.nan
        means = []
        for variant in variants:
            ga = g[g.variant == variant]
            grid = df[df.variant == variant].epsilon.unique()
            if np.isclose(grid, reference_epsilon).any() or len(grid) == 1:
                eps = reference_epsilon if np.isclose(grid, reference_epsilon).any() else float(grid[0])
                at = ga[np.isclose(ga.epsilon, eps)]['iou_ratio']
                row[f'{variant} ε={eps:g}'] = float(at.iloc[0]) if len(at) else np.nan
            if len(grid) > 1:
                row[f'{variant} mean'] = float(ga['iou_ratio'].mean()) if len(ga) else np.nan
            means.append(float(ga['iou_ratio'].mean()) if len(ga) else np.nan)
        row['robustness'] = float(np.nanmean(means)) if means and not all(np.isnan(means)) else np.nan
        flags, row['_rankable'] = _flags(g, expected)
        row['flags'] = '; '.join(flags)
        out.append(row)
    table = pd.DataFrame(out)
    if not table.empty:
        table = table.sort_values(['_rankable', 'robustness'], ascending=[False, False],
                                  ignore_index=True, kind='stable')
        n_ranked = int(table['_rankable'].sum())
        table.insert(0, 'rank', pd.Series([*range(1, n_ranked + 1), *[''] * (len(table) - n_ranked)],
                                          dtype=object))
        table = table.drop(columns=['_rankable'])
        table = table[[c for c in table.columns if c != 'flags'] + ['flags']]
    return table


def white_box(df: pd.DataFrame) -> pd.DataFrame:
    """The white-box and clean cells of ``df`` (``source_model`` None: the source is the target)."""
    if df.empty or 'source_model' not in df:
        return df
    return df[df.source_model.isna()]


def _summary_cells(df: pd.DataFrame) -> pd.DataFrame:
    """The cells the summary table ranks: white-box ones, of the models with a white-box attack
    or without any transfer cell (a suite without transfer keeps every model, even one with only
    its clean cell, which is then flagged incomplete)."""
    wb = white_box(df)
    if len(wb) == len(df):
        return df
    attacked = set(wb[wb.attack != CLEAN].model)
    transferred = set(df[df.source_model.notna()].model)
    return wb[wb.model.isin(attacked) | ~wb.model.isin(transferred)]


def _variant_order(df: pd.DataFrame) -> List[str]:
    """Attack variants (not clean) in the order of :func:`_attack_order`, then by label."""
    out = []
    for attack in _attack_order(df):
        if attack != CLEAN:
            out += sorted(df[df.attack == attack].variant.unique())
    return out


TARGETED_COLUMNS = {'targeted_success_rate': 'success rate', 'class_pixels_hidden': 'class pixels hidden',
                    'background_preserved': 'background preserved', 'fooling_rate': 'fooling rate',
                    'miou': 'mIoU'}


def targeted_table(df: pd.DataFrame) -> pd.DataFrame:
    """Cells of attacks towards a target map (a suite's ``target=``): one row per model, variant, ε.

    (Least-likely attacks also have a target, the clean image's least-likely classes; their success
    rate is in the CSV.) White-box cells only; transfer cells are in the CSV."""
    df = white_box(df)
    rows = df[(df.attack != CLEAN) & df.has_target_map & df.targeted_success_rate.notna()]
    if rows.empty:
        return pd.DataFrame()
    cols = [c for c in TARGETED_COLUMNS if rows[c].notna().any()]
    table = rows[['model', 'variant', 'epsilon'] + cols].rename(columns=TARGETED_COLUMNS)
    for name, label in (('hidden', 'hidden per image'), ('preserved', 'preserved per image')):
        if f'{name}_image_mean' in rows and rows[f'{name}_image_mean'].notna().any():
            table[f'{label} (mean ± sd)'] = [
                '–' if np.isnan(m) else f'{100 * m:.1f} ± {100 * sd:.1f}'
                for m, sd in zip(rows[f'{name}_image_mean'], rows[f'{name}_image_sd'])]
    return table.sort_values(['variant', 'model', 'epsilon'], ignore_index=True)


def _attack_order(df: pd.DataFrame) -> List[str]:
    known = [a for a in ATTACK_LABELS if a in set(df.attack)]
    return [CLEAN] * (CLEAN in set(df.attack)) + known + sorted(set(df.attack) - set(known) - {CLEAN})


def _fmt(v, pct=True) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return '–'
    return f'{100 * v:.1f}' if pct else f'{v:g}'


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table; every text (names, labels, flags) is escaped."""
    cols = list(table.columns)
    lines = ['| ' + ' | '.join(md_escape(c) for c in cols) + ' |',
             '|' + '|'.join('---' if c in ('model', 'flags') else '---:' for c in cols) + '|']
    for _, r in table.iterrows():
        cells = []
        for c in cols:
            v = r[c]
            cells.append(md_escape(v) if c in ('model', 'rank', 'variant') or isinstance(v, str)
                         else _fmt(v, pct=c != 'epsilon'))
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def _epsilon_axis(ax, epsilons, title: str) -> None:
    """A log2 ε axis with the grid's values as ticks and a 0–105 % value axis."""
    eps = sorted(epsilons)
    ax.set_xscale('log', base=2)
    ax.set_xticks(eps)
    ax.set_xticklabels([f'{e:g}' for e in eps], fontsize=7)
    ax.set_xlabel('ε (L∞, 0–255)')
    ax.set_title(title, fontsize=9)
    ax.set_ylim(0, 105)
    ax.grid(alpha=0.3)


def _model_styles(models) -> Dict[str, dict]:
    """A distinct colour / marker / line style per model (20 colours, then the styles repeat
    with other markers), so that a leaderboard with many models stays readable."""
    import matplotlib
    colors = matplotlib.colormaps['tab20'].colors
    markers = 'osD^v<>ph*'
    out = {}
    for i, model in enumerate(models):
        c = (2 * i) % 20 + (i // 10) % 2   # dark shades first, then the light ones
        out[model] = dict(color=colors[c], marker=markers[(i // 20 + i) % len(markers)],
                          linestyle='-' if (i // 10) % 2 == 0 else '--')
    return out


def _save_figure(fig, path: Union[str, Path]) -> Path:
    """Render ``fig`` as PNG and write it atomically (readable by others, never half-written)."""
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format='png', dpi=120)
    finally:
        plt.close(fig)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path


def plot_iou_ratio(df: pd.DataFrame, path: Union[str, Path], title: str = '') -> Path:
    """IoU ratio (%) against ε (log scale), one panel per attack, one line per model (white-box
    cells only)."""
    df = _summary_cells(df)
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    attacks = [v for v in _variant_order(df) if df[df.variant == v].epsilon.nunique() > 1]
    n = max(1, len(attacks))
    order = (df[df.attack == CLEAN].sort_values('miou')['model'].tolist()
             or sorted(df.model.unique()))
    ncol = min(4, max(1, len(order)))
    legend_rows = -(-len(order) // ncol)
    height = 3.2 + 0.2 * legend_rows          # room for the legend under the panels
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, height), sharey=True, squeeze=False)
    styles = _model_styles(order)
    for ax, attack in zip(axes[0], attacks):
        for model in order:
            g = df[(df.variant == attack) & (df.model == model)].sort_values('epsilon')
            if len(g):
                ax.plot(g.epsilon, 100 * g.iou_ratio, ms=3, label=_plot_text(model), **styles[model])
        _epsilon_axis(ax, df[df.variant == attack].epsilon.unique(), _plot_text(attack))
    axes[0][0].set_ylabel('IoU ratio (%)')
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc='lower center', ncol=ncol, fontsize=8,
                   bbox_to_anchor=(0.5, 0.0))
    if title:
        fig.suptitle(_plot_text(title))
    fig.tight_layout(rect=(0, (0.15 + 0.2 * legend_rows) / height, 1, 1))
    return _save_figure(fig, path)


def plot_targeted(df: pd.DataFrame, path: Union[str, Path], title: str = '') -> Optional[Path]:
    """Targeted metrics against ε, one panel per targeted attack variant (Fischer et al. Fig. 2
    style: class pixels hidden and background preserved; success rate for static targets).
    White-box cells only."""
    df = white_box(df)
    rows = df[(df.attack != CLEAN) & df.has_target_map & df.targeted_success_rate.notna()]
    variants = [v for v in _variant_order(rows) if rows[rows.variant == v].epsilon.nunique() > 1]
    if not variants:
        return None
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    n = len(variants)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.6), sharey=True, squeeze=False)
    styles = {'class_pixels_hidden': ('-', 'hidden'), 'background_preserved': ('--', 'background'),
              'targeted_success_rate': (':', 'success')}
    models = sorted(rows.model.unique())
    colors = {m: f'C{i % 10}' for i, m in enumerate(models)}
    for ax, variant in zip(axes[0], variants):
        for model in models:
            g = rows[(rows.variant == variant) & (rows.model == model)].sort_values('epsilon')
            for col, (ls, short) in styles.items():
                if len(g) and g[col].notna().any():
                    if col == 'targeted_success_rate' and g['class_pixels_hidden'].notna().any():
                        continue
                    ax.plot(g.epsilon, 100 * g[col], ls, marker='o', ms=3, color=colors[model],
                            label=_plot_text(f'{model}: {short}'))
        _epsilon_axis(ax, rows[rows.variant == variant].epsilon.unique(), _plot_text(variant))
    axes[0][0].set_ylabel('%')
    handles, labels = {}, []
    for ax in axes[0]:
        for h, l in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(l, h)
    fig.legend(list(handles.values()), list(handles), loc='lower center', ncol=min(3, len(handles)),
               fontsize=8, bbox_to_anchor=(0.5, -0.02))
    if title:
        fig.suptitle(_plot_text(title))
    fig.tight_layout(rect=(0, 0.1 + 0.04 * (len(handles) // 3), 1, 1))
    return _save_figure(fig, path)


# --- transfer: source → target matrices, heatmaps and Arnab et al.'s scale table -------------

#: A source / target id of a model at one scale (``model_zoo.wrappers.source_id``: ``NAME.s0.5``).
_SCALE_ID = re.compile(r'^(?P<base>.+)\.s(?P<scale>[0-9]+(?:\.[0-9]+)?(?:e-?[0-9]+)?)$')
#: Values of a transfer matrix: column of :func:`load_results` → label (all shown in %).
TRANSFER_VALUES = {'iou_ratio': 'IoU ratio', 'pixel_accuracy': 'pixel accuracy', 'miou': 'mIoU'}
WHITE_BOX_MARK = '†'
TRANSFER_NOTE = (f'Rows: the target evaluated; columns: the source the adversarial examples were '
                 f'generated on. {WHITE_BOX_MARK} white-box (the source is the target itself); '
                 '**bold**: the strongest transfer source of the row (lowest value off the white-box '
                 'diagonal); – not run.')


def scale_of_id(ident: str) -> Tuple[str, Optional[float]]:
    """``(base, scale)`` of a scale id (``'X.s0.5'`` → ``('X', 0.5)``), ``(ident, None)`` otherwise."""
    m = _SCALE_ID.match(ident)
    return (m['base'], float(m['scale'])) if m else (ident, None)


def scale_families(ids) -> List[str]:
    """The models (bases) of which ``ids`` hold at least one scale id, sorted."""
    return sorted({base for base, scale in map(scale_of_id, ids) if scale is not None})


def order_ids(ids, families: Optional[List[str]] = None) -> List[str]:
    """Source / target ids in the order of Arnab et al. 2018 Table 1: each model with scale ids
    first (50 %, 75 %, 100 %, ..., then the model itself, i.e. multiscale), then the other ids by
    name. ``families`` (default: :func:`scale_families` of ``ids``) lets rows and columns share
    one order."""
    ids = list(dict.fromkeys(ids))
    families = scale_families(ids) if families is None else list(families)

    def key(ident):
        base, scale = scale_of_id(ident)
        if scale is not None and base in families:
            return (0, families.index(base), scale, '')
        if ident in families:
            return (0, families.index(ident), math.inf, '')
        return (1, 0, 0.0, ident)
    return sorted(ids, key=key)


def id_label(ident: str, families=(), short: bool = False) -> str:
    """A row / column label: ``'X 50%'`` for ``X.s0.5``, ``'X multiscale'`` for ``X`` itself when
    ``X`` has scale ids (Arnab et al.'s "Multiscale" column), the id otherwise; ``short`` leaves
    out ``X`` (``'50%'``, ``'multiscale'``: the paper's column labels)."""
    base, scale = scale_of_id(ident)
    if scale is not None and base in families:
        return f'{100 * scale:g}%' if short else f'{base} {100 * scale:g}%'
    if ident in families:
        return 'multiscale' if short else f'{ident} multiscale'
    return ident


def transfer_groups(df: pd.DataFrame) -> List[Tuple[str, str, float]]:
    """``(attack, variant, ε)`` of every attack configuration with transfer cells in ``df`` (one
    suite and dataset), in the summary table's order."""
    if df.empty or 'source_model' not in df:
        return []
    t = df[df.source_model.notna() & (df.attack != CLEAN)]
    return [(t[t.variant == v].attack.iloc[0], v, float(e))
            for v in _variant_order(t) for e in sorted(t[t.variant == v].epsilon.unique())]


def transfer_cells(df: pd.DataFrame, variant: str, epsilon: float) -> pd.DataFrame:
    """The cells of one attack configuration as ``target, source, white_box`` plus their values
    (:data:`TRANSFER_VALUES`, ``clean_miou``, ``cell_id``); a white-box cell is its target's own
    source."""
    g = df[(df.variant == variant) & np.isclose(df.epsilon, epsilon) & (df.attack != CLEAN)]
    out = pd.DataFrame({'target': g.model, 'source': g.source_model.where(g.source_model.notna(), g.model),
                        'white_box': g.source_model.isna()})
    for col in (*TRANSFER_VALUES, 'clean_miou', 'cell_id'):
        out[col] = g[col]
    return out.reset_index(drop=True)


def transfer_matrix(df: pd.DataFrame, variant: str, epsilon: float, value: str = 'iou_ratio',
                    families: Optional[List[str]] = None) -> pd.DataFrame:
    """Rows = targets, columns = sources, cells = ``value`` (a fraction; NaN where not run).

    The white-box cell of a target that is also a source sits at ``(target, target)``. Rows and
    columns follow :func:`order_ids` (with ``families`` from every id of the matrix by default).
    """
    cells = transfer_cells(df, variant, epsilon)
    if families is None:
        families = scale_families(set(cells.target) | set(cells.source))
    matrix = cells.pivot(index='target', columns='source', values=value)
    matrix = matrix.reindex(index=order_ids(cells.target, families),
                            columns=order_ids(cells.source, families)).astype(float)
    matrix.index.name, matrix.columns.name = 'target', 'source'
    return matrix


def _matrix_markdown(blocks: List[Tuple[str, pd.DataFrame]], families=(), corner: str = 'target \\ source',
                     short_columns: bool = False) -> str:
    """One Markdown table of one or more matrices side by side (same rows, the union in order),
    values in %, the white-box diagonal marked and each block's strongest transfer source per row
    in bold (ties all bold). ``short_columns``: columns of a single scale family labelled as in
    the paper (``50%``, ..., ``multiscale``)."""
    rows = order_ids([t for _, m in blocks for t in m.index], families)
    header = [md_escape(corner)] + [md_escape(f'{title}: ' * bool(title) + id_label(s, families, short_columns))
                                   for title, m in blocks for s in m.columns]
    lines = ['| ' + ' | '.join(header) + ' |', '|---|' + '---:|' * (len(header) - 1)]
    for target in rows:
        cells = [md_escape(id_label(target, families))]
        for _, m in blocks:
            values = m.loc[target] if target in m.index else pd.Series(np.nan, index=m.columns)
            off = values[(values.index != target) & values.notna()]
            best = off.min() if len(off) else None
            for source, v in values.items():
                text = _fmt(float(v))
                if source == target and not math.isnan(v):
                    text += WHITE_BOX_MARK
                elif best is not None and v == best:
                    text = f'**{text}**'
                cells.append(text)
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def transfer_markdown(matrix: pd.DataFrame, families=()) -> str:
    """:func:`transfer_matrix` as a Markdown table (values in %, see :data:`TRANSFER_NOTE`)."""
    return _matrix_markdown([('', matrix)], families)


def _save_figure_as(fig, path: Union[str, Path], formats=('png', 'svg')) -> List[Path]:
    """Write ``fig`` once per format (``path`` with that suffix), atomically and reproducibly
    (no date in the SVG, fixed SVG ids)."""
    import matplotlib
    import matplotlib.pyplot as plt
    out = []
    try:
        for fmt in formats:
            buf = io.BytesIO()
            with matplotlib.rc_context({'svg.hashsalt': 'segbench'}):
                fig.savefig(buf, format=fmt, dpi=120,
                            metadata={'Date': None} if fmt == 'svg' else None)
            target = Path(path).with_suffix(f'.{fmt}')
            atomic_write_bytes(target, buf.getvalue())
            out.append(target)
    finally:
        plt.close(fig)
    return out


def plot_transfer(matrix: pd.DataFrame, path: Union[str, Path], title: str = '', families=(),
                  value_label: str = 'IoU ratio (%)') -> List[Path]:
    """Heatmap of a :func:`transfer_matrix` (values in %, annotated; the white-box cells outlined),
    written as PNG and SVG (``path`` with each suffix); returns both paths."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    values = 100 * matrix.to_numpy(dtype=float)
    n_rows, n_cols = values.shape
    row_labels = [_plot_text(id_label(t, families)) for t in matrix.index]
    col_labels = [_plot_text(id_label(s, families)) for s in matrix.columns]
    longest_row = max(map(len, row_labels), default=0)
    longest_col = max(map(len, col_labels), default=0)
    fig, ax = plt.subplots(figsize=(3.0 + 0.8 * n_cols + 0.065 * longest_row,
                                    1.8 + 0.45 * n_rows + 0.04 * longest_col), layout='constrained')
    image = ax.imshow(np.ma.masked_invalid(values), cmap='viridis', vmin=0, vmax=100, aspect='auto')
    for i, target in enumerate(matrix.index):
        for j, source in enumerate(matrix.columns):
            v = values[i, j]
            ax.text(j, i, '–' if math.isnan(v) else f'{v:.1f}', ha='center', va='center', fontsize=8,
                    color='black' if not math.isnan(v) and v > 60 else 'white' if not math.isnan(v)
                    else 'grey')
            if source == target:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor='red', lw=2))
    ax.set_xticks(range(n_cols))
    ax.set_xticklabels(col_labels, rotation=30, ha='right', fontsize=8)
    ax.set_yticks(range(n_rows))
    ax.set_yticklabels(row_labels, fontsize=8)
    ax.set_xlabel('source (adversarial examples generated on)')
    ax.set_ylabel('target (evaluated)')
    fig.colorbar(image, ax=ax, label=value_label)
    if title:
        ax.set_title(_plot_text(title), fontsize=9)
    return _save_figure_as(fig, path)


def scale_table(df: pd.DataFrame, reference_epsilon: float = REFERENCE_EPSILON
                ) -> Optional[Tuple[List[Tuple[str, pd.DataFrame]], List[str]]]:
    """Arnab et al. 2018 Table 1 (https://arxiv.org/abs/1711.09856, Sec. 6.2): IoU ratio of every
    target (rows) under the examples of every source (columns), one block of columns per attack
    configuration at ``reference_epsilon`` (at every ε when none has it), ids ordered 50 %, 75 %,
    100 %, multiscale, then the other models (:func:`order_ids`).

    Returns ``(blocks, families)`` – ``blocks`` a list of ``(title, matrix)`` – or None when no
    source or target of ``df`` is a scale id (``X.s0.5``).
    """
    groups = transfer_groups(df)
    ids = set()
    for _, variant, eps in groups:
        cells = transfer_cells(df, variant, eps)
        ids |= set(cells.target) | set(cells.source)
    families = scale_families(ids)
    if not families:
        return None
    at_ref = [g for g in groups if math.isclose(g[2], reference_epsilon)]
    return [(f'{variant} ε={eps:g}', transfer_matrix(df, variant, eps, families=families))
            for _, variant, eps in (at_ref or groups)], families


def _transfer_stem(df: pd.DataFrame, attack: str, variant: str, epsilon: float) -> str:
    """``<attack>_eps<ε>`` for a file name, with the variant's options when the attack has several."""
    variants = {v for a, v, _ in transfer_groups(df) if a == attack}
    name = attack
    if len(variants) > 1 and variant != attack_label(attack):
        name += '_' + _file_stem(variant[len(attack_label(attack)):].strip(' ()').replace(', ', '_'))
    return f'{_file_stem(name)}_eps{f"{epsilon:g}".replace(".", "p")}'


def transfer_section(df: pd.DataFrame, out_dir: Union[str, Path], stem: str, suite: str, dataset: str,
                     reference_epsilon: float, written: Dict[str, object]) -> List[str]:
    """README lines (Markdown) of one suite and dataset's transfer cells: per attack configuration
    a matrix of IoU ratio, pixel accuracy (Xiang et al. 2018 Table 2's metric) and mIoU, a heatmap
    and a CSV; then the scale table when sources or targets include scale ids. Adds the tables
    and files to ``written``."""
    out_dir = Path(out_dir)
    groups = transfer_groups(df)
    if not groups:
        return []
    key = (suite, dataset)
    parts = ['### Transfer', '',
             'Adversarial examples generated on one model (the source) and evaluated on another (the '
             'target). The ranking above counts white-box cells only. ' + TRANSFER_NOTE, '']
    only_transfer = sorted(set(df[df.source_model.notna()].model)
                           - set(white_box(df)[white_box(df).attack != CLEAN].model))
    if only_transfer:
        parts += ['Targets evaluated on transferred examples only (no white-box attack, so not in the '
                  'ranking): ' + ', '.join(md_escape(m) for m in only_transfer) + '.', '']
    for attack, variant, eps in groups:
        cells = transfer_cells(df, variant, eps)
        families = scale_families(set(cells.target) | set(cells.source))
        file_stem = f'{stem}_transfer_{_transfer_stem(df, attack, variant, eps)}'
        csv_path = out_dir / f'{file_stem}.csv'
        ordered = cells.assign(_r=cells.target.map({t: i for i, t in enumerate(order_ids(cells.target, families))}),
                               _c=cells.source.map({s: i for i, s in enumerate(order_ids(cells.source, families))}))
        ordered = ordered.sort_values(['_r', '_c']).drop(columns=['_r', '_c'])
        atomic_write_bytes(csv_path, ordered.to_csv(index=False).encode())
        written['files'].append(csv_path)
        parts += [f'#### {md_escape(variant)}, ε = {eps:g}', '']
        for value, label in TRANSFER_VALUES.items():
            matrix = transfer_matrix(df, variant, eps, value, families)
            written['tables'][(*key, 'transfer', variant, eps, value)] = matrix
            parts += [f'{label} (%):', '', transfer_markdown(matrix, families), '']
        figures = plot_transfer(transfer_matrix(df, variant, eps, 'iou_ratio', families),
                                out_dir / f'{file_stem}.png', f'{suite}: {variant}, ε={eps:g}', families)
        written['figures'] += figures
        parts += [f'![IoU ratio, source → target]({figures[0].name}) (also [SVG]({figures[1].name}); '
                  f'cells: [`{csv_path.name}`]({csv_path.name}))', '']
    scale = scale_table(df, reference_epsilon)
    if scale is not None:
        blocks, families = scale
        written['tables'][(*key, 'scale')] = pd.concat(dict(blocks), axis=1)
        sources = {s for _, m in blocks for s in m.columns}
        short = len(families) == 1 and all(scale_of_id(s)[0] == families[0] for s in sources)
        parts += ['### Scale table (layout of Arnab et al. 2018, Table 1)', '',
                  'IoU ratio (%) of each target (rows) under adversarial examples generated at each '
                  'scale (columns' + (f' of {md_escape(families[0])}' if short else '') + '); "X 50%" '
                  'is model X run on the image resized to 50 % (logits resized back, the perturbation '
                  'at full resolution), "X multiscale" the model as listed in the suite. '
                  + TRANSFER_NOTE, '',
                  _matrix_markdown(blocks, families, corner='network evaluated', short_columns=short), '']
    return parts


def make_leaderboard(results_dir: Union[str, Path], out_dir: Union[str, Path],
                     reference_epsilon: float = REFERENCE_EPSILON) -> Dict[str, object]:
    """Render README.md, one CSV and one figure per suite, and the transfer matrices, heatmaps and
    CSVs of suites with transfer cells (:func:`transfer_section`); returns what was written:
    ``written['tables']`` (summary tables by ``(suite, dataset)``, targeted tables, transfer
    matrices by ``(suite, dataset, 'transfer', variant, ε, value)``, scale tables by
    ``(suite, dataset, 'scale')``), ``written['figures']`` and ``written['files']`` (CSVs).

    ``written['refused']`` lists the :class:`benchmark.store.Problem` s of the records that were
    refused (also in the README's "Refused records" section).
    """
    df = load_results(results_dir)
    refused: List[Problem] = df.attrs.get('refused', [])
    out_dir = Path(out_dir)
    if df.empty:
        if refused:
            raise ResultsError(f'no valid result records under {results_dir}: all {len({p.file for p in refused})} '
                               f'record file(s) were refused, the first because {refused[0]}. Run '
                               f'tools/validate_results.py {results_dir} for the full list.')
        if not Path(results_dir).exists():   # a typo in the path, not an empty benchmark
            raise ResultsError(f'no result records under {results_dir}: the folder does not exist; '
                               'expected the folder of result records (e.g. results/) that '
                               'tools/run_benchmark.py writes')
        raise ResultsError(f'no result records under {results_dir}; run tools/run_benchmark.py first')
    parts = ['# Leaderboard', '',
             'Generated by `tools/make_leaderboard.py` from the records under `results/`; do not edit.',
             'IoU ratio = mIoU on adversarial inputs ÷ mIoU on clean inputs, over the whole dataset '
             '(Arnab et al. 2018). All values in %. ε in 0–255 pixel units (L∞). Models are ranked by '
             'the mean IoU ratio over the attacks and the ε grid ("robustness"); a model with missing '
             'cells, a clean mIoU near chance level or random weights is listed after the ranked ones, unranked, with '
             'the reason under "flags".', '']
    written: Dict[str, object] = {'tables': {}, 'figures': [], 'files': [], 'refused': refused}
    for suite, sdf in df.groupby('suite', sort=True):
        for dataset, ddf in sdf.groupby('dataset', sort=True):
            table = summary_table(ddf, reference_epsilon)
            written['tables'][(suite, dataset)] = table
            wb = white_box(ddf)
            stem = suite if sdf.dataset.nunique() == 1 else f'{suite}_{_file_stem(dataset)}'
            csv_path = out_dir / f'{stem}.csv'
            cells = ddf.drop(columns=['path', 'chance_miou', 'random_weights'])
            if len(wb) < len(ddf):   # transfer cells: name every cell's source (the model itself if white-box)
                cells.insert(cells.columns.get_loc('source_model') + 1, 'source',
                             cells.source_model.where(cells.source_model.notna(), cells.model))
            atomic_write_bytes(csv_path, cells.to_csv(index=False).encode())
            written['files'].append(csv_path)
            eps = ', '.join(f'{e:g}' for e in sorted(ddf[ddf.attack != CLEAN].epsilon.unique()))
            n_img = int(ddf.num_images.max())
            role = ''
            fit_keys = set(sdf[sdf.attack.isin(['universal', 'gap'])].dataset) if sdf.dataset.nunique() > 1 else set()
            if fit_keys and dataset.split('-')[1:2] == ['train']:
                role = ' (fitting split of the universal/generative attacks)'
            elif fit_keys:
                role = ' (held-out split)'
            common = df.attrs.get('common_options', {}).get(suite)
            parts += [f'## Suite `{suite}` — {md_escape(dataset)}{role}', '',
                      f'{n_img} images; ε grid: {eps}; labels for untargeted attacks: '
                      f'{ddf.label_source.iloc[0]}.'
                      + (f' Settings shared by all entries of an attack: {md_escape("; ".join(common))}.'
                         if common else ''),
                      '', markdown_table(table), '']
            targeted = targeted_table(ddf)
            if not targeted.empty:
                written['tables'][(suite, dataset, 'targeted')] = targeted
                parts += ['Targeted attacks (success rate = pixel accuracy against the target map; class '
                          'pixels hidden and background preserved as in Metzen et al. 2017; fooling rate '
                          '= pixels whose prediction changed):', '', markdown_table(targeted), '']
                tfig = plot_targeted(ddf, out_dir / f'{stem}_targeted.png', f'{suite}: {dataset}')
                if tfig is not None:
                    written['figures'].append(tfig)
                    parts += [f'![Targeted metrics against ε]({tfig.name})', '']
            queries = wb[wb.queries.notna()]
            if not queries.empty:
                parts += ['Queries per image (black-box attacks): ' + '; '.join(
                    f'{md_escape(r.model)} {md_escape(r.variant)} ε={r.epsilon:g}: {r.queries:.0f}'
                    for r in queries.itertuples()) + '.', '']
            if any(wb[wb.variant == v].epsilon.nunique() > 1 for v in _variant_order(wb)):
                fig = plot_iou_ratio(ddf, out_dir / f'{stem}_iou_ratio.png', f'{suite}: {dataset}')
                written['figures'].append(fig)
                parts += [f'![IoU ratio against ε]({fig.name})', '']
            parts += transfer_section(ddf, out_dir, stem, suite, dataset, reference_epsilon, written)
            parts += [f'All cells: [`{csv_path.name}`]({csv_path.name})', '']
    if refused:
        root = Path(results_dir)
        parts += ['## Refused records', '',
                  f'{len({p.file for p in refused})} record file(s) under the results folder failed '
                  'verification and are left out of every table above (`tools/validate_results.py` runs '
                  'every check):', '']
        for p in refused:
            try:
                shown = Path(p.file).relative_to(root).as_posix()
            except ValueError:
                shown = p.file
            parts.append(f'- {md_escape(shown)}: {md_escape(p.field)}: {md_escape(p.reason)}')
        parts.append('')
    readme = out_dir / 'README.md'
    atomic_write_bytes(readme, '\n'.join(parts).encode())
    written['readme'] = readme
    return written
