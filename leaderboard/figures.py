"""Static figures (matplotlib, PNG and SVG): IoU ratio against ε, IoU ratio per attack for single-ε
suites, targeted metrics against ε, transfer heatmaps.

Every figure is written atomically and reproducibly (no date in the SVG, fixed SVG ids), in both
formats (``path`` with each suffix). Lines of many models stay legible by grouping: models of one
family (:func:`leaderboard.data.family_of`) share a hue, and differ in shade, line style and
marker; the legend lists them family by family (:func:`model_styles`). The site draws its own
interactive charts (a reader can highlight one model); these are for the README and papers.
"""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import pandas as pd

from benchmark.cells import CLEAN
from common.atomic import atomic_write_bytes

from .data import family_of, natural_key, summary_cells, variant_order, white_box

FORMATS = ('png', 'svg')
_LINESTYLES = ('-', '--', ':', '-.')
_MARKERS = 'osD^v<>ph*'
#: Shades of a family's hue for its members (8 distinct, then the markers tell them apart).
_TONES = (0.0, 0.35, -0.35, 0.6, -0.55, 0.18, -0.18, 0.75)


def plot_text(text) -> str:
    """A label for matplotlib: ``$`` would start mathtext (and fail to parse)."""
    return str(text).replace('$', r'\$')


def _matplotlib():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return matplotlib, plt


def save_figure(fig, path: Union[str, Path], formats: Sequence[str] = FORMATS) -> List[Path]:
    """Write ``fig`` once per format (``path`` with that suffix), atomically and reproducibly
    (no date in the SVG, fixed SVG ids); returns the paths, the PNG first."""
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


def model_styles(models: Sequence[str], families: Optional[Dict[str, str]] = None) -> Dict[str, dict]:
    """A distinct ``color`` / ``marker`` / ``linestyle`` per model, grouped by family: the models
    of one family share a hue (tab10, by the family's first appearance) and differ in shade, line
    style and marker (unique up to 40 members of a family); beyond ten families the hues repeat
    with other markers and line styles.

    ``families`` maps model → family (default :func:`leaderboard.data.family_of` of the name).
    """
    import matplotlib
    from matplotlib.colors import to_rgb
    families = families or {m: family_of(m) for m in models}
    hues = matplotlib.colormaps['tab10'].colors
    index: Dict[str, int] = {}
    members: Dict[str, int] = {}
    out = {}
    for model in models:
        fam = families.get(model, model)
        k = index.setdefault(fam, len(index))
        j = members.get(fam, 0)
        members[fam] = j + 1
        base = np.array(to_rgb(hues[k % 10]))
        tone = _TONES[j % len(_TONES)]               # > 0 towards white, < 0 towards black
        color = tuple(base + (1 - base) * tone) if tone >= 0 else tuple(base * (1 + tone))
        out[model] = dict(color=color, marker=_MARKERS[(j + 3 * (k // 10)) % len(_MARKERS)],
                          linestyle=_LINESTYLES[(j + k // 10) % len(_LINESTYLES)])
    return out


def family_order(models: Sequence[str], families: Optional[Dict[str, str]] = None) -> List[str]:
    """Models grouped by family (families by name, members by name, numbers by value)."""
    families = families or {m: family_of(m) for m in models}
    return sorted(models, key=lambda m: (natural_key(families.get(m, m)), natural_key(m)))


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


def _families(df: pd.DataFrame) -> Dict[str, str]:
    if 'family' in df:
        return dict(zip(df.model, df.family))
    return {m: family_of(m) for m in df.model.unique()}


def plot_iou_ratio(df: pd.DataFrame, path: Union[str, Path], title: str = '') -> List[Path]:
    """IoU ratio (%) against ε (log scale), one panel per attack with more than one ε, one line
    per model (white-box cells only), in the style of Arnab et al. (2018) Fig. 2 and 3; models
    grouped by family (:func:`model_styles`), legend on the right. Returns the PNG and SVG paths."""
    df = summary_cells(df)
    _, plt = _matplotlib()
    attacks = [v for v in variant_order(df) if df[df.variant == v].epsilon.nunique() > 1]
    n = max(1, len(attacks))
    families = _families(df)
    order = family_order(list(df.model.unique()), families)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n + 2.6, 3.4 + 0.06 * max(0, len(order) - 15)),
                             sharey=True, squeeze=False, layout='constrained')
    styles = model_styles(order, families)
    for ax, attack in zip(axes[0], attacks):
        for model in order:
            g = df[(df.variant == attack) & (df.model == model)].sort_values('epsilon')
            if len(g):
                ax.plot(g.epsilon, 100 * g.iou_ratio, ms=3, lw=1.2, label=plot_text(model), **styles[model])
        _epsilon_axis(ax, df[df.variant == attack].epsilon.unique(), plot_text(attack))
    axes[0][0].set_ylabel('IoU ratio (%)')
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc='outside right center', fontsize=7, title='model (by family)',
                   title_fontsize=7, frameon=False)
    if title:
        fig.suptitle(plot_text(title), fontsize=10)
    return save_figure(fig, path)


def plot_single_epsilon(df: pd.DataFrame, path: Union[str, Path], title: str = '') -> Optional[List[Path]]:
    """IoU ratio (%) per model of the attacks run at a single ε (white-box cells), horizontal bars
    with their 95 % bootstrap intervals over images; None when every attack has an ε grid."""
    df = summary_cells(df)
    variants = [v for v in variant_order(df) if df[df.variant == v].epsilon.nunique() == 1]
    if not variants:
        return None
    _, plt = _matplotlib()
    import matplotlib
    models = family_order(list(df[df.variant.isin(variants)].model.unique()), _families(df))
    height = 0.8 / len(variants)
    colors = matplotlib.colormaps['tab10'].colors
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.3 * len(models) * max(1, len(variants) / 2)),
                           layout='constrained')
    for k, variant in enumerate(variants):
        g = df[df.variant == variant].set_index('model')
        values = [100 * g.iou_ratio.get(m, np.nan) for m in models]
        low = [100 * g.iou_ratio_ci_low.get(m, np.nan) if 'iou_ratio_ci_low' in g else np.nan for m in models]
        high = [100 * g.iou_ratio_ci_high.get(m, np.nan) if 'iou_ratio_ci_high' in g else np.nan for m in models]
        err = np.array([[v - lo if not math.isnan(lo) else 0 for v, lo in zip(values, low)],
                        [hi - v if not math.isnan(hi) else 0 for v, hi in zip(values, high)]])
        y = np.arange(len(models)) + (k - (len(variants) - 1) / 2) * height
        eps = float(df[df.variant == variant].epsilon.iloc[0])
        ax.barh(y, values, height=height * 0.9, xerr=err, color=colors[k % 10], capsize=2,
                error_kw={'lw': 0.8}, label=plot_text(f'{variant}, ε={eps:g}'))
    ax.set_yticks(np.arange(len(models)))
    ax.set_yticklabels([plot_text(m) for m in models], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 105)
    ax.set_xlabel('IoU ratio (%), 95 % bootstrap interval over images')
    ax.grid(axis='x', alpha=0.3)
    ax.legend(fontsize=7, loc='lower right')
    if title:
        ax.set_title(plot_text(title), fontsize=10)
    return save_figure(fig, path)


def plot_targeted(df: pd.DataFrame, path: Union[str, Path], title: str = '') -> Optional[List[Path]]:
    """Targeted metrics against ε, one panel per targeted attack variant (Fischer et al. Fig. 2
    style: class pixels hidden and background preserved; success rate for static targets).
    White-box cells only; None when no targeted variant has more than one ε."""
    df = white_box(df)
    rows = df[(df.attack != CLEAN) & df.has_target_map & df.targeted_success_rate.notna()]
    variants = [v for v in variant_order(rows) if rows[rows.variant == v].epsilon.nunique() > 1]
    if not variants:
        return None
    _, plt = _matplotlib()
    n = len(variants)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.6), sharey=True, squeeze=False)
    styles = {'class_pixels_hidden': ('-', 'hidden'), 'background_preserved': ('--', 'background'),
              'targeted_success_rate': (':', 'success')}
    models = sorted(rows.model.unique(), key=natural_key)
    colors = {m: f'C{i % 10}' for i, m in enumerate(models)}
    for ax, variant in zip(axes[0], variants):
        for model in models:
            g = rows[(rows.variant == variant) & (rows.model == model)].sort_values('epsilon')
            for col, (ls, short) in styles.items():
                if len(g) and g[col].notna().any():
                    if col == 'targeted_success_rate' and g['class_pixels_hidden'].notna().any():
                        continue
                    ax.plot(g.epsilon, 100 * g[col], ls, marker='o', ms=3, color=colors[model],
                            label=plot_text(f'{model}: {short}'))
        _epsilon_axis(ax, rows[rows.variant == variant].epsilon.unique(), plot_text(variant))
    axes[0][0].set_ylabel('%')
    handles = {}
    for ax in axes[0]:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    fig.legend(list(handles.values()), list(handles), loc='lower center', ncol=min(3, len(handles)),
               fontsize=8, bbox_to_anchor=(0.5, -0.02))
    if title:
        fig.suptitle(plot_text(title))
    fig.tight_layout(rect=(0, 0.1 + 0.04 * (len(handles) // 3), 1, 1))
    return save_figure(fig, path)


def plot_transfer(matrix: pd.DataFrame, path: Union[str, Path], title: str = '', families=(),
                  value_label: str = 'IoU ratio (%)') -> List[Path]:
    """Heatmap of a :func:`leaderboard.tables.transfer_matrix` (values in %, annotated; the
    white-box cells outlined), written as PNG and SVG (``path`` with each suffix); returns both paths."""
    from .tables import id_label
    _, plt = _matplotlib()
    from matplotlib.patches import Rectangle
    values = 100 * matrix.to_numpy(dtype=float)
    n_rows, n_cols = values.shape
    row_labels = [plot_text(id_label(t, families)) for t in matrix.index]
    col_labels = [plot_text(id_label(s, families)) for s in matrix.columns]
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
        ax.set_title(plot_text(title), fontsize=9)
    return save_figure(fig, path)
