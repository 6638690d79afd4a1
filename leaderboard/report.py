"""Report generator: result records → tables (Markdown, CSV) and figures.

A pure function of the records under a results directory: it never imports or runs model code.
Every metric is recomputed from the stored confusion matrices and checked against the value the
record states, so a hand-edited or corrupt record is caught here.

Outputs (per suite, in ``out_dir``):

* ``README.md`` – per model: clean mIoU, IoU ratio of each attack at ε = 8 and its mean over the ε
  grid, ranked by the mean IoU ratio over attacks (the robustness score);
* ``<suite>.csv`` – one row per cell (model, attack, ε, mIoU, IoU ratio, ...);
* ``<suite>_iou_ratio.png`` – IoU ratio against ε, one panel per attack, one line per model, in the
  style of Arnab et al. (2018) Fig. 2 and 3.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np
import pandas as pd

from benchmark import metrics
from benchmark.cells import CLEAN, CellKey
from benchmark.errors import ResultsError
from benchmark.store import ResultStore

ATTACK_LABELS = {'fgsm': 'FGSM', 'fgsm_ll': 'FGSM II', 'ifgsm': 'Iterative FGSM',
                 'ifgsm_ll': 'Iterative FGSM II', 'pgd': 'PGD', 'mifgsm': 'MI-FGSM', 'segpgd': 'SegPGD',
                 'cospgd': 'CosPGD'}
REFERENCE_EPSILON = 8.0


def attack_label(name: str) -> str:
    return ATTACK_LABELS.get(name, name)


def load_results(results_dir: Union[str, Path]) -> pd.DataFrame:
    """One row per stored cell, metrics recomputed from the confusion matrices.

    Columns: suite, dataset, model, attack, epsilon, source_model, scale, label_source, params,
    num_images, miou, pixel_accuracy, clean_miou, iou_ratio, targeted_success_rate,
    agreement_with_clean, gradient_passes, wall_time_s, path.
    """
    store = ResultStore(results_dir)
    rows = []
    for path, rec in store.iter_records():
        key = CellKey.from_dict(rec['key'])
        conf = rec['confusion']
        miou = metrics.mean_iou(np.asarray(conf['vs_ground_truth']))
        stated = rec['metrics']['miou']
        if (stated is None) != math.isnan(miou) or (stated is not None and abs(stated - miou) > 1e-9):
            raise ResultsError(f'{path}: stated mIoU {stated} differs from the one its confusion '
                               f'matrix gives ({miou}); the record is corrupt')
        rows.append({
            'suite': key.suite, 'dataset': key.dataset, 'model': key.model, 'attack': key.attack,
            'epsilon': key.epsilon, 'source_model': key.source_model, 'scale': key.scale,
            'label_source': key.label_source, 'params': str(key.params), 'cell_id': key.cell_id,
            'num_images': rec['num_images'], 'miou': miou,
            'pixel_accuracy': metrics.pixel_accuracy(np.asarray(conf['vs_ground_truth'])),
            'agreement_with_clean': (metrics.pixel_accuracy(np.asarray(conf['vs_clean']))
                                     if conf['vs_clean'] is not None else np.nan),
            'targeted_success_rate': (metrics.pixel_accuracy(np.asarray(conf['vs_target']))
                                      if conf['vs_target'] is not None else np.nan),
            'gradient_passes': rec['attack_stats']['gradient_passes_per_image'],
            'wall_time_s': rec['provenance']['wall_time_s'], 'path': str(path),
            '_clean_id': key.clean_key().cell_id,
        })
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    clean = df[df.attack == CLEAN].set_index('cell_id')['miou']
    df['clean_miou'] = df['_clean_id'].map(clean)
    df['iou_ratio'] = df['miou'] / df['clean_miou']
    return df.drop(columns=['_clean_id']).sort_values(['suite', 'model', 'attack', 'epsilon'],
                                                     ignore_index=True)


def summary_table(df: pd.DataFrame, reference_epsilon: float = REFERENCE_EPSILON) -> pd.DataFrame:
    """Per model: clean mIoU, IoU ratio at ``reference_epsilon`` and mean over ε, per attack."""
    out = []
    attacks = [a for a in _attack_order(df) if a != CLEAN]
    for model, g in df.groupby('model', sort=False):
        clean = g[g.attack == CLEAN]['miou']
        row = {'model': model, 'clean mIoU': float(clean.iloc[0]) if len(clean) else np.nan}
        means = []
        for attack in attacks:
            ga = g[g.attack == attack]
            at_ref = ga[np.isclose(ga.epsilon, reference_epsilon)]['iou_ratio']
            row[f'{attack_label(attack)} ε={reference_epsilon:g}'] = float(at_ref.iloc[0]) if len(at_ref) else np.nan
            mean = float(ga['iou_ratio'].mean()) if len(ga) else np.nan
            row[f'{attack_label(attack)} mean'] = mean
            means.append(mean)
        row['robustness'] = float(np.nanmean(means)) if means and not all(np.isnan(means)) else np.nan
        out.append(row)
    table = pd.DataFrame(out)
    if not table.empty:
        table = table.sort_values('robustness', ascending=False, ignore_index=True)
        table.insert(0, 'rank', range(1, len(table) + 1))
    return table


def _attack_order(df: pd.DataFrame) -> List[str]:
    known = [a for a in ATTACK_LABELS if a in set(df.attack)]
    return [CLEAN] * (CLEAN in set(df.attack)) + known + sorted(set(df.attack) - set(known) - {CLEAN})


def _fmt(v, pct=True) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return '–'
    return f'{100 * v:.1f}' if pct else f'{v:g}'


def markdown_table(table: pd.DataFrame) -> str:
    cols = list(table.columns)
    lines = ['| ' + ' | '.join(cols) + ' |', '|' + '|'.join('---' if c == 'model' else '---:' for c in cols) + '|']
    for _, r in table.iterrows():
        cells = []
        for c in cols:
            v = r[c]
            cells.append(str(v) if c in ('model', 'rank') else _fmt(v))
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def plot_iou_ratio(df: pd.DataFrame, path: Union[str, Path], title: str = '') -> Path:
    """IoU ratio (%) against ε (log scale), one panel per attack, one line per model."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    attacks = [a for a in _attack_order(df) if a != CLEAN]
    n = max(1, len(attacks))
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.6), sharey=True, squeeze=False)
    order = (df[df.attack == CLEAN].sort_values('miou')['model'].tolist()
             or sorted(df.model.unique()))
    for ax, attack in zip(axes[0], attacks):
        for model in order:
            g = df[(df.attack == attack) & (df.model == model)].sort_values('epsilon')
            if len(g):
                ax.plot(g.epsilon, 100 * g.iou_ratio, marker='o', ms=3, label=model)
        ax.set_xscale('log', base=2)
        eps = sorted(df[df.attack == attack].epsilon.unique())
        ax.set_xticks(eps)
        ax.set_xticklabels([f'{e:g}' for e in eps], fontsize=7)
        ax.set_xlabel('ε (L∞, 0–255)')
        ax.set_title(attack_label(attack))
        ax.set_ylim(0, 105)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel('IoU ratio (%)')
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc='lower center', ncol=min(4, len(labels)), fontsize=8,
                   bbox_to_anchor=(0.5, -0.02))
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def make_leaderboard(results_dir: Union[str, Path], out_dir: Union[str, Path],
                     reference_epsilon: float = REFERENCE_EPSILON) -> Dict[str, object]:
    """Render README.md, one CSV and one figure per suite; returns what was written."""
    from benchmark.store import atomic_write_bytes
    df = load_results(results_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if df.empty:
        raise ResultsError(f'no result records under {results_dir}; run tools/run_benchmark.py first')
    parts = ['# Leaderboard', '',
             'Generated by `tools/make_leaderboard.py` from the records under `results/`; do not edit.',
             'IoU ratio = mIoU on adversarial inputs ÷ mIoU on clean inputs, over the whole dataset '
             '(Arnab et al. 2018). All values in %. ε in 0–255 pixel units (L∞). Models are ranked by '
             'the mean IoU ratio over the attacks and the ε grid ("robustness").', '']
    written: Dict[str, object] = {'tables': {}, 'figures': []}
    for suite, sdf in df.groupby('suite', sort=True):
        for dataset, ddf in sdf.groupby('dataset', sort=True):
            table = summary_table(ddf, reference_epsilon)
            written['tables'][(suite, dataset)] = table
            csv_path = out_dir / f'{suite}.csv'
            atomic_write_bytes(csv_path, ddf.drop(columns=['path']).to_csv(index=False).encode())
            fig = plot_iou_ratio(ddf, out_dir / f'{suite}_iou_ratio.png', f'{suite}: {dataset}')
            written['figures'].append(fig)
            eps = ', '.join(f'{e:g}' for e in sorted(ddf[ddf.attack != CLEAN].epsilon.unique()))
            n_img = int(ddf.num_images.max())
            parts += [f'## Suite `{suite}` — {dataset}', '',
                      f'{n_img} images; ε grid: {eps}; labels for untargeted attacks: '
                      f'{ddf.label_source.iloc[0]}.', '', markdown_table(table), '',
                      f'![IoU ratio against ε]({fig.name})', '', f'All cells: [`{csv_path.name}`]({csv_path.name})', '']
    readme = out_dir / 'README.md'
    atomic_write_bytes(readme, '\n'.join(parts).encode())
    written['readme'] = readme
    return written
