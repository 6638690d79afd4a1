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

import json
import math
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np
import pandas as pd

from benchmark import metrics
from benchmark.cells import CLEAN, CellKey
from benchmark.errors import ResultsError
from benchmark.store import ResultStore
from benchmark.target_specs import hidden_class_of
from benchmark.targeted_metrics import per_image_hiding

ATTACK_LABELS = {'fgsm': 'FGSM', 'fgsm_ll': 'FGSM II', 'ifgsm': 'Iterative FGSM',
                 'ifgsm_ll': 'Iterative FGSM II', 'pgd': 'PGD', 'mifgsm': 'MI-FGSM', 'segpgd': 'SegPGD',
                 'cospgd': 'CosPGD', 'square': 'Square Attack', 'targeted_ifgsm': 'Targeted I-FGSM',
                 'universal': 'Universal', 'gap': 'GAP', 'worst_case': 'Worst case'}
REFERENCE_EPSILON = 8.0


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
            parts.append('+'.join(attack_label(m['type'] if isinstance(m, dict) else m) for m in v))
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
        hiding = {}
        hidden_class = hidden_class_of(key.params)
        if hidden_class is not None and rec.get('per_image') and conf['vs_clean'] is not None:
            per_image = store.read_per_image(path, rec)['vs_clean']
            for name, values in zip(('hidden', 'preserved'), per_image_hiding(per_image, hidden_class)):
                values = values[~np.isnan(values)]
                hiding[f'{name}_image_mean'] = float(values.mean()) if len(values) else np.nan
                hiding[f'{name}_image_sd'] = float(values.std()) if len(values) else np.nan
        rows.append({
            **hiding,
            'suite': key.suite, 'dataset': key.dataset, 'model': key.model, 'attack': key.attack,
            'epsilon': key.epsilon, 'source_model': key.source_model, 'scale': key.scale,
            'label_source': key.label_source, 'params': str(key.params), 'cell_id': key.cell_id,
            'num_images': rec['num_images'], 'miou': miou,
            'pixel_accuracy': metrics.pixel_accuracy(np.asarray(conf['vs_ground_truth'])),
            'agreement_with_clean': (metrics.pixel_accuracy(np.asarray(conf['vs_clean']))
                                     if conf['vs_clean'] is not None else np.nan),
            'targeted_success_rate': (metrics.pixel_accuracy(np.asarray(conf['vs_target']))
                                      if conf['vs_target'] is not None else np.nan),
            'has_target_map': 'target' in key.params,
            'spec': json.dumps(rec['provenance'].get('attack_spec') or {}, sort_keys=True),
            'fooling_rate': rec['metrics'].get('fooling_rate', np.nan),
            'class_pixels_hidden': rec['metrics'].get('class_pixels_hidden', np.nan),
            'background_preserved': rec['metrics'].get('background_preserved', np.nan),
            'queries': (rec['attack_stats'].get('per_image_info') or {}).get('queries', {}).get('mean', np.nan),
            'gradient_passes': rec['attack_stats']['gradient_passes_per_image'],
            'wall_time_s': rec['provenance']['wall_time_s'], 'path': str(path),
            '_clean_id': key.clean_key().cell_id,
        })
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df.attrs['common_options'] = _label_variants(df)
    clean = df[df.attack == CLEAN].set_index('cell_id')['miou']
    df['clean_miou'] = df['_clean_id'].map(clean)
    df['iou_ratio'] = df['miou'] / df['clean_miou']
    for col in ('fooling_rate', 'class_pixels_hidden', 'background_preserved', 'queries'):
        df[col] = pd.to_numeric(df[col], errors='coerce')
    return df.drop(columns=['_clean_id']).sort_values(['suite', 'model', 'attack', 'epsilon'],
                                                     ignore_index=True)


def summary_table(df: pd.DataFrame, reference_epsilon: float = REFERENCE_EPSILON) -> pd.DataFrame:
    """Per model: clean mIoU, IoU ratio at ``reference_epsilon`` and mean over ε, per attack."""
    out = []
    variants = _variant_order(df)
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
            at_ref = ga[np.isclose(ga.epsilon, reference_epsilon)]['iou_ratio']
            if np.isclose(grid, reference_epsilon).any() or len(grid) == 1:
                eps = reference_epsilon if np.isclose(grid, reference_epsilon).any() else float(grid[0])
                at = ga[np.isclose(ga.epsilon, eps)]['iou_ratio']
                row[f'{variant} ε={eps:g}'] = float(at.iloc[0]) if len(at) else np.nan
            if len(grid) > 1:
                row[f'{variant} mean'] = float(ga['iou_ratio'].mean()) if len(ga) else np.nan
            means.append(float(ga['iou_ratio'].mean()) if len(ga) else np.nan)
        row['robustness'] = float(np.nanmean(means)) if means and not all(np.isnan(means)) else np.nan
        out.append(row)
    table = pd.DataFrame(out)
    if not table.empty:
        table = table.sort_values('robustness', ascending=False, ignore_index=True)
        table.insert(0, 'rank', range(1, len(table) + 1))
    return table


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
    rate is in the CSV.)"""
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
    cols = list(table.columns)
    lines = ['| ' + ' | '.join(cols) + ' |', '|' + '|'.join('---' if c == 'model' else '---:' for c in cols) + '|']
    for _, r in table.iterrows():
        cells = []
        for c in cols:
            v = r[c]
            cells.append(str(v) if c in ('model', 'rank', 'variant') or isinstance(v, str)
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


def plot_iou_ratio(df: pd.DataFrame, path: Union[str, Path], title: str = '') -> Path:
    """IoU ratio (%) against ε (log scale), one panel per attack, one line per model."""
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
                ax.plot(g.epsilon, 100 * g.iou_ratio, ms=3, label=model, **styles[model])
        _epsilon_axis(ax, df[df.variant == attack].epsilon.unique(), attack)
    axes[0][0].set_ylabel('IoU ratio (%)')
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc='lower center', ncol=ncol, fontsize=8,
                   bbox_to_anchor=(0.5, 0.0))
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, (0.15 + 0.2 * legend_rows) / height, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_targeted(df: pd.DataFrame, path: Union[str, Path], title: str = '') -> Optional[Path]:
    """Targeted metrics against ε, one panel per targeted attack variant (Fischer et al. Fig. 2
    style: class pixels hidden and background preserved; success rate for static targets)."""
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
                            label=f'{model}: {short}')
        _epsilon_axis(ax, rows[rows.variant == variant].epsilon.unique(), variant)
    axes[0][0].set_ylabel('%')
    handles, labels = {}, []
    for ax in axes[0]:
        for h, l in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(l, h)
    fig.legend(list(handles.values()), list(handles), loc='lower center', ncol=min(3, len(handles)),
               fontsize=8, bbox_to_anchor=(0.5, -0.02))
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.1 + 0.04 * (len(handles) // 3), 1, 1))
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
            stem = suite if dataset == sdf.dataset.iloc[0] and sdf.dataset.nunique() == 1 else f'{suite}_{dataset}'
            csv_path = out_dir / f'{stem}.csv'
            atomic_write_bytes(csv_path, ddf.drop(columns=['path']).to_csv(index=False).encode())
            eps = ', '.join(f'{e:g}' for e in sorted(ddf[ddf.attack != CLEAN].epsilon.unique()))
            n_img = int(ddf.num_images.max())
            role = ''
            fit_keys = set(sdf[sdf.attack.isin(['universal', 'gap'])].dataset) if sdf.dataset.nunique() > 1 else set()
            if fit_keys and dataset.split('-')[1:2] == ['train']:
                role = ' (fitting split of the universal/generative attacks)'
            elif fit_keys:
                role = ' (held-out split)'
            common = df.attrs.get('common_options', {}).get(suite)
            parts += [f'## Suite `{suite}` — {dataset}{role}', '',
                      f'{n_img} images; ε grid: {eps}; labels for untargeted attacks: '
                      f'{ddf.label_source.iloc[0]}.'
                      + (f' Settings shared by all entries of an attack: {"; ".join(common)}.' if common else ''),
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
            queries = ddf[ddf.queries.notna()]
            if not queries.empty:
                parts += ['Queries per image (black-box attacks): ' + '; '.join(
                    f'{r.model} {r.variant} ε={r.epsilon:g}: {r.queries:.0f}' for r in queries.itertuples()) + '.', '']
            if any(ddf[ddf.variant == v].epsilon.nunique() > 1 for v in _variant_order(ddf)):
                fig = plot_iou_ratio(ddf, out_dir / f'{stem}_iou_ratio.png', f'{suite}: {dataset}')
                written['figures'].append(fig)
                parts += [f'![IoU ratio against ε]({fig.name})', '']
            parts += [f'All cells: [`{csv_path.name}`]({csv_path.name})', '']
    readme = out_dir / 'README.md'
    atomic_write_bytes(readme, '\n'.join(parts).encode())
    written['readme'] = readme
    return written
