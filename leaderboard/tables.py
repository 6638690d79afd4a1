"""Tables: the ranking, targeted attacks, transfer matrices and the scale table, and their Markdown.

Pure functions of the cells :func:`leaderboard.data.load_results` returns (values are fractions;
the writers show percent). Every string that comes from a record is escaped for Markdown
(:func:`md_escape`); the HTML pages escape through Jinja2's autoescaping instead.

**Ranking** (:data:`RANKING_RULE`): robust mIoU – the per-image worst case over the suite's
attacks at the suite's ε (:func:`robust_miou`) – where the suite has it, then the mean IoU ratio
over attacks and ε, then the clean mIoU, then the name. Models with missing cells, a clean mIoU
near chance level or random weights are listed after the ranked ones, unranked, with the reason
under "flags"; models with a gradient-masking or sanity flag (:mod:`leaderboard.flags`) keep
their rank and are marked "potentially unreliable".

**Transfer.** A cell's ``model`` is the target evaluated and its ``source_model`` the source the
adversarial examples were generated on (None: white-box, the target itself). The summary table,
its ranking and completeness count and the targeted table use white-box cells only
(:func:`leaderboard.data.white_box`). Per suite and attack configuration (variant, ε) with
transfer cells there are matrices rows = targets × columns = sources of the IoU ratio, pixel
accuracy (Xiang et al. 2018, Table 2) and mIoU, the white-box diagonal marked † and the strongest
transfer source of each row in bold (:func:`transfer_matrix`, :func:`transfer_markdown`). When ids
of one model at several scales occur (``X.s0.5``, ``X.s0.75``, ``X.s1`` and ``X``), the rows and
columns follow Arnab et al. 2018 Table 1 (50 %, 75 %, 100 %, multiscale, then the other models)
and a scale table in that paper's layout follows (:func:`scale_table`). Pandas' ``to_markdown``
needs ``tabulate``, which the venv lacks, so the tables go through this module's escaping writer.
"""
from __future__ import annotations

import math
import re
from typing import Dict, List, Optional, Tuple

import numpy as np
import pandas as pd

from benchmark.cells import CLEAN

from . import flags as flag_checks
from . import stats
from .data import (CHANCE_FACTOR, REFERENCE_EPSILON, fmt_pct, natural_key,
                   summary_cells, variant_order, white_box)

#: How models are ordered, as stated on the pages.
RANKING_RULE = ('Models are ranked by robust mIoU (the worst case per image over the suite\'s '
                'attacks at the suite\'s ε) where the suite has it, then by the mean IoU ratio over '
                'the attacks and the ε grid, then by the clean mIoU, then by name. A model with missing '
                'cells, a clean mIoU near chance level or random weights is listed after the ranked '
                'ones, unranked, with the reason under "flags"; a model with a gradient-masking or '
                'sanity flag keeps its rank and is marked "potentially unreliable".')
UNRELIABLE = 'potentially unreliable'

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


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table; every text (names, labels, flags) is escaped; numbers
    are fractions shown in % (ε as it is)."""
    cols = list(table.columns)
    lines = ['| ' + ' | '.join(md_escape(c) for c in cols) + ' |',
             '|' + '|'.join('---' if c in ('model', 'flags') else '---:' for c in cols) + '|']
    for _, r in table.iterrows():
        cells = []
        for c in cols:
            v = r[c]
            cells.append(md_escape(v) if c in ('model', 'rank', 'variant') or isinstance(v, str)
                         else fmt_pct(v, pct=c != 'epsilon'))
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


# --- ranking ----------------------------------------------------------------------------------

def suite_epsilon(df: pd.DataFrame, reference_epsilon: float = REFERENCE_EPSILON) -> Optional[float]:
    """The ε of a suite's robust mIoU: ``reference_epsilon`` when one of its attacks (on the model
    itself, without a target map) was run at it, else the one ε all of them share, else None."""
    cands = _worst_case_candidates(white_box(df))
    grid = sorted(set(float(e) for e in cands.epsilon))
    if any(math.isclose(e, reference_epsilon) for e in grid):
        return float(reference_epsilon)
    return grid[0] if len(grid) == 1 else None


def _worst_case_candidates(wb: pd.DataFrame) -> pd.DataFrame:
    return wb[(wb.attack != CLEAN) & ~wb.has_target_map]


def robust_miou(g: pd.DataFrame, epsilon: Optional[float]) -> Tuple[float, float, float, int]:
    """Robust mIoU of one model: ``(mIoU, 95 % CI low, high, number of attacks)``, NaN when it
    cannot be computed.

    The per-image worst case of SEA (Croce et al. 2024, https://arxiv.org/abs/2306.12941) and the
    ``worst_case`` attack, recomputed from the stored per-image confusion matrices: for each image,
    of the clean image and the adversarial images of every attack on the model itself at ``epsilon``
    (white-box or query-based, without a target map; in the suite's order, ties keep the earlier
    one), the one with the lowest pixel accuracy against the labels the attacks were given (the
    clean prediction or the ground truth); the mIoU of the sum of their ``vs_ground_truth``
    matrices. Needs the per-image matrices of every candidate (NaN otherwise); the CI resamples
    the chosen images (:mod:`leaderboard.stats`).
    """
    if epsilon is None:
        return math.nan, math.nan, math.nan, 0
    wb = white_box(g)
    clean = wb[wb.attack == CLEAN]
    attacks = _worst_case_candidates(wb)
    attacks = attacks[np.isclose(attacks.epsilon, epsilon)]
    if clean.empty or attacks.empty:
        return math.nan, math.nan, math.nan, 0
    order = {v: i for i, v in enumerate(variant_order(attacks))}
    attacks = attacks.assign(_o=attacks.variant.map(order)).sort_values('_o', kind='stable')
    cands = [clean.iloc[0]] + [r for _, r in attacks.iterrows()]
    if any(not isinstance(c['_per_image'], np.ndarray) or not isinstance(c['_label_accuracy'], np.ndarray)
           for c in cands) or len({len(c['_per_image']) for c in cands}) != 1:
        return math.nan, math.nan, math.nan, len(attacks)
    accuracy = np.stack([c['_label_accuracy'] for c in cands])        # (K + 1, n)
    chosen = np.argmin(accuracy, axis=0)                                # first minimum: ties keep the earlier
    matrices = np.stack([c['_per_image'] for c in cands])              # (K + 1, n, C, C)
    worst = matrices[chosen, np.arange(matrices.shape[1])]
    low, high = stats.interval(stats.bootstrap_miou(worst))
    return float(stats.miou_of_matrices(worst.sum(axis=0))), low, high, len(attacks)


def _unranked_reasons(g: pd.DataFrame, expected: set) -> List[str]:
    """Why one model's row must not be ranked (empty: it is ranked)."""
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
            flags.append(f'near chance level (clean mIoU {fmt_pct(miou)} < {CHANCE_FACTOR:g} × '
                         f'{fmt_pct(chance)}, the most frequent class everywhere)')
    return flags


def _desc(v) -> float:
    """Sort key component: larger first, NaN last."""
    return -math.inf if v is None or (isinstance(v, float) and math.isnan(v)) else v


def summary_table(df: pd.DataFrame, reference_epsilon: float = REFERENCE_EPSILON,
                  with_flags: bool = True, flags: Optional[Dict[str, list]] = None) -> pd.DataFrame:
    """Per model: clean mIoU, robust mIoU, IoU ratio at ``reference_epsilon`` and mean over ε per
    attack, the mean IoU ratio, flags; in the order of :data:`RANKING_RULE`.

    ``df`` holds the cells of one suite and dataset. Models are ranked against each other only when
    the comparison means something; the others are listed after the ranked ones with an empty rank
    and a reason in ``flags``:

    * **incomplete** – the model lacks some of the (attack variant, ε) cells the suite's other
      models have on this dataset (a model scored on 1 easy cell would otherwise outrank every
      model scored on the whole grid), or its clean cell;
    * **near chance level** – its clean mIoU is below ``CHANCE_FACTOR`` (2) × the mIoU of always
      predicting the most frequent ground-truth class (:func:`leaderboard.data.majority_class_miou`).
      Such a model segments nothing; its adversarial and clean mIoU are both near that floor, so
      their ratio stays near 1 whatever the attack does and would rank it as the most robust model.
      Twice the constant predictor's mIoU is a deliberately low bar (the demo models reach 19–24×
      it) that only excludes models which have not learnt to segment at all.

    ``flags`` also names the gradient-masking and sanity checks a model fails
    (:func:`leaderboard.flags.model_flags`, "potentially unreliable": ranked, marked);
    ``with_flags=False`` leaves them out; ``flags`` passes them in when already computed. They are
    also in ``table.attrs['flags']`` (``{model: [Flag, ...]}``).

    Only white-box cells (``source_model`` None) count: a transfer cell measures the source's
    attack, not the target's robustness, so it enters neither the score nor the completeness count
    (:func:`transfer_matrix` reports it; the flags compare it with the white-box cell). A target
    evaluated only on transferred examples (clean and transfer cells, no white-box attack) has no
    row.
    """
    warnings = (flags if flags is not None else flag_checks.model_flags(df)) if with_flags else {}
    robust_eps = suite_epsilon(df, reference_epsilon)
    df = summary_cells(df)
    out = []
    variants = variant_order(df)
    attacked = df[df.attack != CLEAN]
    expected = {(v, float(e)) for v, e in zip(attacked.variant, attacked.epsilon)}
    for model, g in df.groupby('model', sort=False):
        clean = g[g.attack == CLEAN]['miou']
        row = {'model': model, 'clean mIoU': float(clean.iloc[0]) if len(clean) else np.nan}
        row['_robust'] = robust_miou(g, robust_eps)[0]
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
        row['mean IoU ratio'] = float(np.nanmean(means)) if means and not all(np.isnan(means)) else np.nan
        reasons = _unranked_reasons(g, expected)
        row['_rankable'] = not reasons
        marks = [f.title for f in warnings.get(model, [])]
        row['flags'] = '; '.join(reasons + ([f'{UNRELIABLE}: ' + ', '.join(marks)] if marks else []))
        out.append(row)
    table = pd.DataFrame(out)
    table.attrs['flags'] = warnings
    if table.empty:
        return table
    has_robust = table['_robust'].notna().any()
    if has_robust:
        table.insert(2, f'robust mIoU ε={robust_eps:g}', table['_robust'])
    keys = [(not r['_rankable'], _desc(r['_robust']) if has_robust else 0, _desc(r['mean IoU ratio']),
             _desc(r['clean mIoU']), natural_key(r['model'])) for _, r in table.iterrows()]
    order = sorted(range(len(table)), key=lambda i: (keys[i][0], -keys[i][1], -keys[i][2], -keys[i][3], keys[i][4]))
    table = table.iloc[order].reset_index(drop=True)
    n_ranked = int(table['_rankable'].sum())
    table.insert(0, 'rank', pd.Series([*range(1, n_ranked + 1), *[''] * (len(table) - n_ranked)],
                                      dtype=object))
    table = table.drop(columns=['_rankable', '_robust'])
    table = table[[c for c in table.columns if c != 'flags'] + ['flags']]
    table.attrs['flags'] = warnings
    return table


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
    order = {v: i for i, v in enumerate(variant_order(rows))}
    table = table.assign(_v=table.variant.map(order), _m=table.model.map(natural_key))
    return table.sort_values(['_v', '_m', 'epsilon'], ignore_index=True).drop(columns=['_v', '_m'])


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
    t = df.loc[df.source_model.notna() & (df.attack != CLEAN), ['attack', 'variant', 'epsilon']]
    return [(t[t.variant == v].attack.iloc[0], v, float(e))
            for v in variant_order(t) for e in sorted(t[t.variant == v].epsilon.unique())]


def transfer_cells(df: pd.DataFrame, variant: str, epsilon: float) -> pd.DataFrame:
    """The cells of one attack configuration as ``target, source, white_box`` plus their values
    (:data:`TRANSFER_VALUES`, ``clean_miou``, ``cell_id``); a white-box cell is its target's own
    source."""
    g = df.loc[(df.variant == variant) & np.isclose(df.epsilon, epsilon) & (df.attack != CLEAN),
               ['model', 'source_model', *TRANSFER_VALUES, 'clean_miou', 'cell_id']]
    out = pd.DataFrame({'target': g.model, 'source': g.source_model.where(g.source_model.notna(), g.model),
                        'white_box': g.source_model.isna()})
    for col in (*TRANSFER_VALUES, 'clean_miou', 'cell_id'):
        out[col] = g[col]
    return out.reset_index(drop=True)


def transfer_matrix(df: pd.DataFrame, variant: str, epsilon: float, value: str = 'iou_ratio',
                    families: Optional[List[str]] = None, cells: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """Rows = targets, columns = sources, cells = ``value`` (a fraction; NaN where not run).

    The white-box cell of a target that is also a source sits at ``(target, target)``. Rows and
    columns follow :func:`order_ids` (with ``families`` from every id of the matrix by default).
    ``cells``: :func:`transfer_cells` of the configuration, when already computed.
    """
    cells = transfer_cells(df, variant, epsilon) if cells is None else cells
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
                text = fmt_pct(float(v))
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


