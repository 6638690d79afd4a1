"""The static leaderboard site: HTML pages from the loaded cells, through Jinja2 templates.

Static and self-sufficient: it works opened from the file system (``file://``) and from any static
host, with no server and no network – the only script and style sheet are small hand-written
files copied next to the pages (``assets/site.js``, ``assets/site.css``), the charts are inline
SVG drawn here, and nothing is fetched. Downloads (the CSVs, PNG/SVG figures) are the files the
report writes beside ``site/`` in the leaderboard folder, linked relatively: publish that folder.

Every string that comes from a record (model, dataset, class and attack names, options, paper
titles) reaches the page through Jinja2's autoescaping (``autoescape=True`` for every template),
so a model named ``<script>alert(1)</script>`` is shown as that text.

Pages (``site/``): ``index.html`` (per suite and dataset a sortable, filterable ranking with an ε
selector, the ranking rule, the flags and their explanation, how to cite), ``suites/<stem>.html``
(the ranking again, an IoU-ratio-against-ε chart per attack in which a reader can highlight a
model, targeted metrics, downloads), ``models/<name>.html`` (every cell of the model with its
95 % bootstrap interval and the provenance of its number, its charts, per-class IoU, its flags),
``models/index.html``, ``transfer.html`` (source → target matrices), ``scale.html`` (Arnab et al.
2018 Table 1 layout) and ``papers/`` (one page per paper from :mod:`leaderboard.papers` when it
is there).
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from benchmark.cells import CLEAN
from common.atomic import atomic_write_bytes

from . import flags as flag_checks
from . import stats
from .data import natural_key, summary_cells, variant_order, white_box
from .panels import render_panel
from .tables import (RANKING_RULE, TRANSFER_VALUES, UNRELIABLE, WHITE_BOX_MARK, id_label, robust_miou,
                     scale_families, scale_table, suite_epsilon, summary_table,
                     targeted_table, transfer_cells, transfer_groups, transfer_matrix)

logger = logging.getLogger(__name__)
TEMPLATES = Path(__file__).resolve().parent / 'templates'
ASSETS = ('site.css', 'site.js')
#: BibTeX of the benchmark and of the paper whose metric it reports.
CITATION = r"""@misc{segbench,
  title        = {segbench: Adversarial Robustness of Semantic Segmentation Models},
  note         = {Benchmark and leaderboard built on MMSegmentation; results of commit {commit}},
  year         = {{year}}
}

@inproceedings{arnab2018robustness,
  title        = {On the Robustness of Semantic Segmentation Models to Adversarial Attacks},
  author       = {Arnab, Anurag and Miksik, Ondrej and Torr, Philip H. S.},
  booktitle    = {Proceedings of the IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year         = {2018}
}"""
REGENERATE = '.venv/bin/python tools/make_leaderboard.py'


# --- small helpers ----------------------------------------------------------------------------

def slug(text: str) -> str:
    """A file name for a page of ``text`` (a model, a suite): the name itself when it is
    file-name safe (record names are), else a safe version plus a hash of the original."""
    safe = re.sub(r'[^A-Za-z0-9_.+-]', '_', str(text)).lstrip('.') or '_'
    if safe != text:
        safe += '-' + hashlib.sha256(str(text).encode()).hexdigest()[:8]
    return safe


def pct(v, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return '–'
    return f'{100 * v:.{digits}f}'


def _num(v) -> str:
    """A value for ``data-v`` (sorting): the number, or empty when missing."""
    if v is None or isinstance(v, str) or (isinstance(v, float) and math.isnan(v)):
        return ''
    return repr(float(v))


def _is_nan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


@dataclasses.dataclass
class Value:
    """One number on a page: a fraction shown in %, with its 95 % bootstrap interval when known."""

    v: float = math.nan
    low: float = math.nan
    high: float = math.nan

    @property
    def text(self) -> str:
        return pct(self.v)

    @property
    def ci(self) -> str:
        return '' if _is_nan(self.low) else f'[{pct(self.low)}, {pct(self.high)}]'

    @property
    def sort(self) -> str:
        return _num(self.v)


def _value(v, samples=None, low=None, high=None) -> Value:
    if samples is not None and low is None:
        low, high = stats.interval(samples)
    return Value(float(v) if not _is_nan(v) else math.nan,
                 math.nan if low is None else float(low), math.nan if high is None else float(high))


def _mean_samples(samples: Sequence) -> Optional[np.ndarray]:
    """Per-resample mean of several cells' bootstrap samples (paired: the same resampled images),
    the bootstrap distribution of their mean; None when one is missing or the lengths differ."""
    arrays = [s for s in samples if isinstance(s, np.ndarray)]
    if not samples or len(arrays) != len(samples) or len({len(a) for a in arrays}) != 1:
        return None
    return np.mean(np.stack(arrays), axis=0)


def frame(table: pd.DataFrame, percent: Sequence[str] = ()) -> dict:
    """A DataFrame as ``{'columns': [...], 'rows': [[text, ...], ...]}`` for the generic table
    macro: MultiIndex columns joined with " – ", a named or non-default index as first columns,
    the ``percent`` columns (fractions) in %, other floats with 3 significant digits."""
    df = table.copy()
    if not isinstance(df.index, pd.RangeIndex) or any(n is not None for n in df.index.names):
        df = df.reset_index()
    columns = [' – '.join(str(p) for p in c if str(p) != '') if isinstance(c, tuple) else str(c)
               for c in df.columns]
    rows = []
    for values in df.itertuples(index=False):
        row = []
        for col, v in zip(df.columns, values):
            if isinstance(v, (float, np.floating)):
                if math.isnan(v):
                    row.append('–')
                elif col in percent:
                    row.append(pct(v))
                else:
                    row.append(f'{v:.3g}' if abs(v) < 1000 else f'{v:.0f}')
            elif v is None:
                row.append('–')
            else:
                row.append(str(v))
        rows.append(row)
    return {'columns': columns, 'rows': rows}


# --- charts -----------------------------------------------------------------------------------

def _hex(color) -> str:
    r, g, b = (max(0, min(255, int(round(255 * c)))) for c in color[:3])
    return f'#{r:02x}{g:02x}{b:02x}'


def line_chart(series: List[dict], title: str, width: int = 460, height: int = 300,
               y_label: str = 'IoU ratio (%)', whiskers: bool = False) -> dict:
    """An inline SVG chart of values (fractions, shown in %) against ε on a log2 axis.

    ``series``: dicts with ``model``, ``label``, ``color``, ``dash`` and ``points`` – ``(ε, value,
    low, high)``. Returns what the ``line_chart`` macro draws: coordinates, ticks, paths (each
    line a group with ``data-model`` so the page's script can highlight it)."""
    left, right, top, bottom = 44, 10, 24, 38
    eps = sorted({p[0] for s in series for p in s['points'] if p[0] > 0})
    if not eps:
        return {}
    lo, hi = math.log2(eps[0]), math.log2(eps[-1])
    if hi - lo < 1e-9:
        lo, hi = lo - 1, hi + 1
    pw, ph = width - left - right, height - top - bottom

    def x(e):
        return left + (math.log2(e) - lo) / (hi - lo) * pw

    def y(v):
        return top + ph - max(0.0, min(1.05, v)) / 1.05 * ph

    lines = []
    for s in series:
        pts = [(x(e), y(v), e, v, low, high) for e, v, low, high in s['points'] if e > 0 and not _is_nan(v)]
        if not pts:
            continue
        path = 'M' + ' L'.join(f'{px:.1f},{py:.1f}' for px, py, *_ in pts)
        marks = [{'x': f'{px:.1f}', 'y': f'{py:.1f}', 'tip': f'{s["label"]}: ε={e:g}, {pct(v)} %'
                  + (f' (95 % CI {pct(lw)}–{pct(hg)})' if not _is_nan(lw) else ''),
                  'y0': f'{y(lw):.1f}' if whiskers and not _is_nan(lw) else None,
                  'y1': f'{y(hg):.1f}' if whiskers and not _is_nan(hg) else None}
                 for px, py, e, v, lw, hg in pts]
        lines.append({'model': s['model'], 'label': s['label'], 'color': s['color'], 'dash': s.get('dash', ''),
                      'path': path, 'marks': marks})
    return {'title': title, 'width': width, 'height': height, 'y_label': y_label,
            'left': left, 'right': width - right, 'top': top, 'bottom': top + ph,
            'xticks': [{'x': f'{x(e):.1f}', 'label': f'{e:g}'} for e in eps],
            'yticks': [{'y': f'{y(v / 100):.1f}', 'label': str(v)} for v in range(0, 101, 20)],
            'lines': lines, 'legend': [{'model': s['model'], 'label': s['label'], 'color': s['color']}
                                      for s in series]}


_DASHES = {'-': '', '--': '6 3', ':': '2 2', '-.': '6 2 2 2'}


def _styles(models: List[str], families: Dict[str, str]) -> Dict[str, dict]:
    from .figures import model_styles
    return {m: {'color': _hex(s['color']), 'dash': _DASHES.get(s['linestyle'], '')}
            for m, s in model_styles(models, families).items()}


# --- one suite and dataset --------------------------------------------------------------------

@dataclasses.dataclass
class Board:
    """One suite and dataset: its ranking and everything its pages show."""

    suite: str
    dataset: str
    dataset_label: str
    stem: str
    cells: pd.DataFrame
    summary: pd.DataFrame
    flags: Dict[str, List[flag_checks.Flag]]
    num_images: int
    epsilons: List[float]
    label_source: str
    common_options: List[str]
    robust_epsilon: Optional[float]
    reference_epsilon: float
    downloads: List[Tuple[str, str]]          # (label, href relative to the site root)
    role: str = ''
    has_transfer: bool = False

    @property
    def title(self) -> str:
        return f'{self.suite} — {self.dataset_label}{self.role}'

    @property
    def anchor(self) -> str:
        return f'board-{slug(self.stem)}'

    @property
    def page(self) -> str:
        """The suite page, relative to the site root."""
        return f'suites/{slug(self.stem)}.html'


def _eps_key(e) -> float:
    return round(float(e), 9)


def _table(board: Board, model_pages: Dict[str, str]) -> dict:
    """The sortable, filterable ranking of a board: column specs and rows (values with CIs)."""
    df = summary_cells(board.cells)
    attacked = df[df.attack != CLEAN]
    variants = variant_order(attacked)
    cells: Dict[tuple, dict] = {}
    clean: Dict[str, dict] = {}
    grids: Dict[str, set] = {v: set() for v in variants}
    for r in df.to_dict('records'):
        if r['attack'] == CLEAN:
            clean.setdefault(r['model'], r)
        else:
            cells[r['model'], r['variant'], _eps_key(r['epsilon'])] = r
            grids[r['variant']].add(_eps_key(r['epsilon']))
    grids = {v: sorted(g) for v, g in grids.items()}
    all_eps = sorted({e for g in grids.values() for e in g})
    default_eps = (board.reference_epsilon if any(math.isclose(e, board.reference_epsilon) for e in all_eps)
                   else (all_eps[-1] if all_eps else None))
    robust_col = [c for c in board.summary.columns if str(c).startswith('robust mIoU')]
    by_model = {m: g for m, g in df.groupby('model', sort=False)} if robust_col else {}
    info = {r['model']: r for r in df.drop_duplicates('model').to_dict('records')}
    rows = []
    for s in board.summary.to_dict('records'):
        model = s['model']
        c = clean.get(model)
        robust = robust_miou(by_model[model], board.robust_epsilon) if robust_col else None
        ratios, means, variant_samples = {}, {}, []
        for v in variants:
            own = [cells[model, v, e] for e in grids[v] if (model, v, e) in cells]
            for e in all_eps:
                cell = cells.get((model, v, e))
                ratios[v, e] = (_value(cell['iou_ratio'], low=cell['iou_ratio_ci_low'],
                                       high=cell['iou_ratio_ci_high']) if cell else Value())
            samples = _mean_samples([x['_ratio_samples'] for x in own]) if len(own) == len(grids[v]) else None
            variant_samples.append(samples)
            means[v] = _value(float(np.mean([x['iou_ratio'] for x in own])) if own else math.nan, samples)
        overall = _mean_samples(variant_samples) if all(x is not None for x in variant_samples) else None
        warnings = board.flags.get(model, [])
        reasons = [f for f in str(s['flags']).split('; ') if f and not f.startswith(UNRELIABLE)]
        meta = info.get(model)
        params = meta['parameters'] if meta is not None else math.nan
        rows.append({
            'rank': s['rank'], 'model': model, 'href': model_pages.get(model),
            'architecture': '' if meta is None else meta['architecture'],
            'backbone': '' if meta is None else meta['backbone'],
            'parameters': params, 'parameters_text': '–' if _is_nan(params) else f'{params / 1e6:.2f} M',
            'clean': (_value(c['miou'], low=c['miou_ci_low'], high=c['miou_ci_high']) if c is not None else Value()),
            'robust': Value(*robust[:3]) if robust is not None else None,
            'ratios': ratios, 'means': means,
            'mean': _value(s['mean IoU ratio'], overall),
            'reasons': reasons, 'warnings': warnings,
            'search': ' '.join([model, '' if meta is None else
                                f'{meta["architecture"]} {meta["backbone"]} {meta["family"]}',
                                s['flags']]).lower(),
        })
    return {'id': f'table-{slug(board.stem)}', 'variants': variants, 'grids': grids, 'epsilons': all_eps,
            'default_eps': default_eps, 'robust': robust_col[0] if robust_col else None,
            'has_means': {v: len(grids[v]) > 1 for v in variants}, 'rows': rows}


def _suite_charts(board: Board) -> List[dict]:
    """One chart per attack variant with more than one ε: every model's IoU ratio against ε."""
    df = summary_cells(board.cells)
    attacked = df[df.attack != CLEAN]
    families = dict(zip(df.model, df.family))
    models = sorted(df.model.unique(), key=lambda m: (natural_key(families[m]), natural_key(m)))
    styles = _styles(models, families)
    points: Dict[tuple, list] = {}
    for r in attacked[['variant', 'model', 'epsilon', 'iou_ratio', 'iou_ratio_ci_low',
                       'iou_ratio_ci_high']].itertuples(index=False):
        points.setdefault((r.variant, r.model), []).append(tuple(r[2:]))
    charts = []
    for v in variant_order(attacked):
        if len({p[0] for m in models for p in points.get((v, m), [])}) < 2:
            continue
        series = [{'model': m, 'label': m, **styles[m], 'points': sorted(points[v, m])}
                  for m in models if (v, m) in points]
        chart = line_chart(series, v)
        if chart:
            charts.append(chart)
    return charts


def _model_section(board: Board, model: str, g: pd.DataFrame) -> dict:
    """Everything the model page shows about one board (``g``: the model's cells of it): cells
    with CI and provenance, charts, per-class IoU, flags."""
    order = {v: i for i, v in enumerate(['clean'] + variant_order(g[g.attack != CLEAN]))}
    records = sorted(g.to_dict('records'), key=lambda r: (
        order[r['variant']], r['epsilon'], natural_key(r['source_model'] if isinstance(r['source_model'], str) else '')))
    cells = []
    for r in records:
        gen = r['generation_gradient_passes']
        source = r['source_model'] if isinstance(r['source_model'], str) else None
        cells.append({
            'variant': r['variant'], 'epsilon': '–' if r['attack'] == CLEAN else f'{r["epsilon"]:g}',
            'source': source or ('(white-box)' if r['attack'] != CLEAN else ''),
            'images': int(r['num_images']),
            'miou': _value(r['miou'], low=r['miou_ci_low'], high=r['miou_ci_high']),
            'ratio': _value(r['iou_ratio'], low=r['iou_ratio_ci_low'], high=r['iou_ratio_ci_high']),
            'pixel_accuracy': pct(r['pixel_accuracy']),
            'success': pct(r['targeted_success_rate']), 'hidden': pct(r['class_pixels_hidden']),
            'preserved': pct(r['background_preserved']),
            'passes': str(int(r['gradient_passes'])) + ('' if _is_nan(gen) else f' + {int(gen)} (generation)'),
            'wall': f'{r["wall_time_s"]:.2f}', 'commit': r['commit'] or '–',
            'dirty': bool(r['git_dirty']) if r['git_dirty'] is not None and not _is_nan(r['git_dirty']) else False,
            'config_hash': r['config_hash'] or '–', 'checkpoint': r['checkpoint_sha256'] or '–',
            'seed': '–' if r['seed'] is None or _is_nan(r['seed']) else str(int(r['seed'])),
            'created': r['created'], 'record': r['record_path'], 'cell_id': r['cell_id'],
        })
    targeted = bool(g.has_target_map.any())
    # chart: this model's IoU ratio against ε per variant (white-box), with 95 % intervals
    colors = [_hex(c) for c in _tab10()]
    series = []
    white = [r for r in records if r['attack'] != CLEAN and not isinstance(r['source_model'], str)]
    for k, v in enumerate(variant_order(g[g.attack != CLEAN])):
        pts = [(r['epsilon'], r['iou_ratio'], r['iou_ratio_ci_low'], r['iou_ratio_ci_high'])
               for r in white if r['variant'] == v]
        if len({p[0] for p in pts}) > 1:
            series.append({'model': f'{model}::{v}', 'label': v, 'color': colors[k % 10], 'dash': '',
                           'points': sorted(pts)})
    chart = line_chart(series, f'{model}: IoU ratio against ε', width=560, height=320, whiskers=True) \
        if series else {}
    names = list(records[0]['class_names']) if records else []
    per_class = [{'label': f'{r["variant"]}' + ('' if r['attack'] == CLEAN else f' ε={r["epsilon"]:g}')
                  + (f' from {r["source_model"]}' if isinstance(r['source_model'], str) else ''),
                  'values': [pct(v) if v is not None else '–' for v in r['per_class_iou']]}
                 for r in records]
    panels = [{'cell_id': r['cell_id'], 'file': Path(r['path']).parents[2] / r['panel'],
               'label': f'{r["variant"]} ε={r["epsilon"]:g}'
               + (f' from {r["source_model"]}' if isinstance(r['source_model'], str) else ''),
               'class_names': list(r['class_names'])}
              for r in records if isinstance(r.get('panel'), str) and r['panel']
              and (Path(r['path']).parents[2] / r['panel']).is_file()]
    return {'board': board, 'cells': cells, 'targeted': targeted, 'chart': chart,
            'class_names': names, 'per_class': per_class, 'flags': board.flags.get(model, []),
            'rank': _rank_of(board, model), 'panels': panels}


def _rank_of(board: Board, model: str) -> str:
    row = board.summary[board.summary.model == model] if 'model' in board.summary else board.summary
    if row.empty:
        return 'not ranked (transferred examples only)'
    rank = row['rank'].iloc[0]
    return f'{rank} of {int((board.summary["rank"] != "").sum())}' if rank != '' else 'unranked'


def _tab10():
    import matplotlib
    return matplotlib.colormaps['tab10'].colors


def _matrix(matrix: pd.DataFrame, families, model_pages: Dict[str, str], root: str) -> dict:
    """A transfer matrix for the HTML table: values in %, white-box marked, the strongest transfer
    source of each row in bold, a background shade by value."""
    rows = []
    for target in matrix.index:
        values = matrix.loc[target]
        off = values[(values.index != target) & values.notna()]
        best = off.min() if len(off) else None
        cells = []
        for source, v in values.items():
            v = float(v)
            cells.append({'text': pct(v) + (WHITE_BOX_MARK if source == target and not math.isnan(v) else ''),
                          'bold': best is not None and source != target and v == best,
                          'shade': '' if math.isnan(v) else f'hsl(210, 70%, {97 - 45 * (1 - min(1.0, max(0.0, v)))}%)',
                          'tip': f'{target} ← {source}: {pct(v)} %'})
        rows.append({'label': id_label(target, families), 'href': _page(model_pages, target, root),
                     'cells': cells})
    return {'columns': [{'label': id_label(s, families), 'href': _page(model_pages, s, root)}
                        for s in matrix.columns], 'rows': rows}


def _page(model_pages: Dict[str, str], ident: str, root: str) -> Optional[str]:
    page = model_pages.get(ident)
    return root + page if page else None


def _transfer_blocks(board: Board, model_pages: Dict[str, str]) -> List[dict]:
    df = board.cells
    blocks = []
    for attack, variant, eps in transfer_groups(df):
        cells = transfer_cells(df, variant, eps)
        mats = {value: transfer_matrix(df, variant, eps, value, cells=cells) for value in TRANSFER_VALUES}
        ids = set(mats['iou_ratio'].index) | set(mats['iou_ratio'].columns)
        families = scale_families(ids)
        blocks.append({'title': f'{variant}, ε = {eps:g}', 'anchor': f'{slug(board.stem)}-{slug(variant)}-{eps:g}',
                       'matrices': [{'label': label, 'matrix': _matrix(mats[value], families, model_pages, '')}
                                    for value, label in TRANSFER_VALUES.items()]})
    return blocks


def _scale_block(board: Board, model_pages: Dict[str, str]) -> Optional[dict]:
    found = scale_table(board.cells, board.reference_epsilon)
    if found is None:
        return None
    blocks, families = found
    return {'board': board, 'blocks': [{'title': title, 'matrix': _matrix(m, families, model_pages, '')}
                                       for title, m in blocks]}


# --- papers -----------------------------------------------------------------------------------

def load_paper_reports(df: pd.DataFrame):
    """``leaderboard.papers.paper_reports(df)`` when that module is there; None otherwise (the
    site then says there is no paper data yet)."""
    try:
        from . import papers
    except ImportError:
        return None
    fn = getattr(papers, 'paper_reports', None)
    if fn is None:
        return None
    try:
        return list(fn(df))
    except Exception as e:  # noqa: BLE001 - a bad published-values file must not stop the leaderboard
        logger.warning('paper pages not rendered: %s: %s', type(e).__name__, e)
        return PaperError(f'{type(e).__name__}: {e}')


def _paper(report) -> dict:
    """A paper report (:class:`leaderboard.papers.PaperReport`, or anything with ``key``, ``title``,
    ``citation`` and ``sections`` of ``(heading, table, notes, agreement)``) for its template.
    A section with a ``display()`` method gives its own text table and caption lines."""
    sections = []
    for section in getattr(report, 'sections', []) or []:
        caption, command = [], ''
        if hasattr(section, 'heading'):
            heading, table = section.heading, getattr(section, 'table', None)
            notes, agreement = getattr(section, 'notes', []), getattr(section, 'agreement', [])
            command = str(getattr(section, 'command', '') or '')
            if callable(getattr(section, 'display', None)):
                table, caption = section.display()
            elif getattr(section, 'caption', ''):
                caption = [section.caption]
        else:
            heading, table, notes, agreement = section
        sections.append({'heading': str(heading), 'notes': [str(n) for n in notes or []],
                         'agreement': [str(a) for a in agreement or []],
                         'caption': [str(c) for c in caption or []], 'command': command,
                         'table': frame(table) if isinstance(table, pd.DataFrame) and not table.empty else None})
    key = str(getattr(report, 'key', 'paper'))
    return {'key': key, 'page': f'{slug(key)}.html', 'title': str(getattr(report, 'title', key)),
            'citation': str(getattr(report, 'citation', '') or ''), 'sections': sections}


class PaperError(str):
    """Why the paper pages could not be built (shown on the papers page)."""


# --- rendering --------------------------------------------------------------------------------

def _environment():
    import jinja2
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    env.filters['pct'] = pct
    env.filters['num'] = _num
    env.filters['short'] = lambda s, n=12: s if not isinstance(s, str) or len(s) <= n else s[:n] + '…'
    env.globals['KINDS'] = flag_checks.KINDS
    return env


def build_boards(df: pd.DataFrame, reference_epsilon: float, stems: Dict[Tuple[str, str], str],
                 downloads: Dict[Tuple[str, str], List[Tuple[str, str]]],
                 summaries: Optional[Dict[Tuple[str, str], pd.DataFrame]] = None,
                 common_options: Optional[Dict[str, List[str]]] = None) -> List[Board]:
    """One :class:`Board` per suite and dataset of ``df``."""
    boards = []
    common = df.attrs.get('common_options', {}) if common_options is None else common_options
    for suite, sdf in df.groupby('suite', sort=True):
        fit_keys = set(sdf[sdf.attack.isin(['universal', 'gap'])].dataset) if sdf.dataset.nunique() > 1 else set()
        for dataset, ddf in sdf.groupby('dataset', sort=True):
            key = (suite, dataset)
            summary = (summaries or {}).get(key)
            if summary is None:
                summary = summary_table(ddf, reference_epsilon)
            role = ''
            if fit_keys and dataset.split('-')[1:2] == ['train']:
                role = ' (fitting split of the universal/generative attacks)'
            elif fit_keys:
                role = ' (held-out split)'
            attacked = ddf[ddf.attack != CLEAN]
            boards.append(Board(
                suite=suite, dataset=dataset, dataset_label=str(ddf.dataset_label.iloc[0]),
                stem=stems.get(key, suite), cells=ddf, summary=summary,
                flags=(summary.attrs['flags'] if 'flags' in summary.attrs else flag_checks.model_flags(ddf)),
                num_images=int(ddf.num_images.max()),
                epsilons=sorted(set(float(e) for e in attacked.epsilon)),
                label_source=str(ddf.label_source.iloc[0]), common_options=list(common.get(suite, [])),
                robust_epsilon=suite_epsilon(ddf, reference_epsilon), reference_epsilon=reference_epsilon,
                downloads=downloads.get(key, []), role=role))
    return boards


def render_site(df: pd.DataFrame, site_dir: Union[str, Path], *, results_label: str,
                reference_epsilon: float = 8.0, stems: Optional[Dict[Tuple[str, str], str]] = None,
                downloads: Optional[Dict[Tuple[str, str], List[Tuple[str, str]]]] = None,
                summaries: Optional[Dict[Tuple[str, str], pd.DataFrame]] = None,
                papers=None, refused: Sequence = ()) -> List[Path]:
    """Write the site for the cells ``df`` (:func:`leaderboard.data.load_results`) into
    ``site_dir``; returns every file written.

    Args:
        results_label: The results folder the cells come from, as the header names it.
        stems: ``(suite, dataset)`` → the file stem of its CSV and figures (default: the suite).
        downloads: ``(suite, dataset)`` → ``(label, href)`` of its files, relative to ``site_dir``.
        summaries: Summary tables already computed (:func:`leaderboard.tables.summary_table`).
        papers: :class:`leaderboard.papers.PaperReport` s; None: ask :func:`load_paper_reports`.
        refused: The refused records' :class:`benchmark.store.Problem` s (counted in the header).
    """
    site = Path(site_dir)
    env = _environment()
    common_options = df.attrs.get('common_options', {})
    df = df.copy(deep=False)
    df.attrs = {}                 # pandas deep-copies attributes at every operation: none here
    boards = build_boards(df, reference_epsilon, stems or {}, downloads or {}, summaries, common_options)
    models = sorted(df.model.unique(), key=natural_key)
    model_pages = {m: f'models/{slug(m)}.html' for m in models}
    df = df.assign(record_path=df.path.map(lambda p: Path(p).relative_to(Path(p).parents[2]).as_posix()))
    for b in boards:
        b.cells = df[(df.suite == b.suite) & (df.dataset == b.dataset)]
    reports = load_paper_reports(df) if papers is None else papers if isinstance(papers, PaperError) \
        else list(papers)
    created = sorted(c for c in df.created if c)
    commits = [c for c, t in sorted(zip(df.commit, df.created), key=lambda x: x[1]) if c]
    citation = CITATION.replace('{commit}', commits[-1][:12] if commits else 'unknown') \
        .replace('{{year}}', '{' + (created[-1][:4] if created else '') + '}')
    transfer = [(b, _transfer_blocks(b, model_pages)) for b in boards]
    transfer = [(b, blocks) for b, blocks in transfer if blocks]
    for b, _ in transfer:
        b.has_transfer = True
    scales = [s for s in (_scale_block(b, model_pages) for b in boards) if s]
    common = {'results_label': results_label, 'command': REGENERATE, 'n_records': len(df),
              'n_refused': len({p.file for p in refused}), 'has_transfer': bool(transfer),
              'has_scale': bool(scales), 'ranking_rule': RANKING_RULE, 'unreliable': UNRELIABLE,
              'tolerance': flag_checks.TOLERANCE, 'resamples': stats.BOOTSTRAP_RESAMPLES,
              'seed': stats.BOOTSTRAP_SEED, 'confidence': stats.CONFIDENCE}
    written: List[Path] = []

    def page(template: str, path: str, **context):
        depth = path.count('/')
        html = env.get_template(template).render(root='../' * depth, path=path, **common, **context)
        target = site / path
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, html.encode())
        written.append(target)

    tables = {b.stem: _table(b, model_pages) for b in boards}
    page('index.html.j2', 'index.html', title='Leaderboard', boards=boards, tables=tables,
         citation=citation, kinds=flag_checks.KINDS, model_pages=model_pages)
    for b in boards:
        targeted = targeted_table(b.cells)
        page('suite.html.j2', b.page, title=b.title, board=b, table=tables[b.stem],
             charts=_suite_charts(b), targeted=frame(targeted, percent=(
                 'success rate', 'class pixels hidden', 'background preserved', 'fooling rate', 'mIoU'))
             if not targeted.empty else None,
             queries=_queries(b), model_pages=model_pages,
             transfer_anchor=f'transfer.html#{b.anchor}' if any(tb is b for tb, _ in transfer) else None)
    index = []
    per_board = [(b, {m: g for m, g in b.cells.groupby('model', sort=False)}) for b in boards]
    for m in models:
        sections = [_model_section(b, m, groups[m]) for b, groups in per_board if m in groups]
        for section in sections:       # qualitative panels (Fischer et al. Fig. 1), drawn once
            for panel in section['panels']:
                out = site / 'panels' / f'{slug(m)}-{panel["cell_id"]}.jpg'
                written.extend(render_panel(panel['file'], out, panel['class_names'],
                                            title=f'{m}: {panel["label"]}', formats=('jpg',)))
                panel['href'] = out.relative_to(site).as_posix()
        meta = df[df.model == m].iloc[0]
        params = meta.parameters
        index.append({'model': m, 'href': model_pages[m], 'architecture': meta.architecture,
                      'backbone': meta.backbone,
                      'parameters': '–' if _is_nan(params) else f'{params / 1e6:.2f} M',
                      'suites': [s['board'].suite for s in sections],
                      'flagged': any(s['flags'] for s in sections)})
        page('model.html.j2', model_pages[m], title=m, model=m, meta=meta, sections=sections,
             parameters=index[-1]['parameters'], model_pages=model_pages)
    page('models.html.j2', 'models/index.html', title='Models', models=index)
    if transfer:
        page('transfer.html.j2', 'transfer.html', title='Transfer', transfer=transfer)
    if scales:
        page('scale.html.j2', 'scale.html', title='Scale table', scales=scales)
    error = reports if isinstance(reports, PaperError) else None
    papers_ctx = [_paper(r) for r in reports] if reports is not None and error is None else None
    page('papers.html.j2', 'papers/index.html', title='Papers', papers=papers_ctx, error=error)
    for p in papers_ctx or []:
        page('paper.html.j2', f'papers/{p["page"]}', title=p['title'], paper=p)
    for name in ASSETS:
        target = site / 'assets' / name
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, (TEMPLATES / name).read_bytes())
        written.append(target)
    return written


def _queries(board: Board) -> List[str]:
    wb = white_box(board.cells)
    q = wb[wb.queries.notna()]
    return [f'{r.model} {r.variant} ε={r.epsilon:g}: {r.queries:.0f}' for r in q.itertuples()]
