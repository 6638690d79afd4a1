"""Report generator: result records → README (Markdown), CSV, figures (PNG, SVG) and the static site.

A pure function of the records under a results directory: it never imports torch, attacks or
model code. The work is split by concern, and this module puts it together
(:func:`make_leaderboard`) and re-exports the public names the tools and tests use:

* :mod:`leaderboard.data` – loading and verifying records into one DataFrame row per cell (a
  record that fails verification is refused and listed under "Refused records"), bootstrap
  confidence intervals (:mod:`leaderboard.stats`);
* :mod:`leaderboard.tables` – the ranking (:data:`leaderboard.tables.RANKING_RULE`), targeted,
  transfer and scale tables, and their escaping Markdown writer;
* :mod:`leaderboard.flags` – gradient-masking and sanity flags;
* :mod:`leaderboard.figures` – matplotlib figures;
* :mod:`leaderboard.site` and ``leaderboard/templates/`` – the HTML pages (Jinja2, autoescaped).

Outputs (in ``out_dir``):

* ``README.md`` – per suite and dataset the ranking (clean mIoU, robust mIoU where the suite has
  it, IoU ratio of each attack at ε = 8 and its mean over the ε grid, the mean IoU ratio, flags),
  targeted and transfer tables, figures, the command that regenerates each;
* ``<stem>.csv`` – one row per cell, values as fractions (with 95 % bootstrap intervals); in a suite
  with transfer cells also a ``source`` column (the source id; the model itself for white-box
  cells); ``<stem>_per_class_iou.csv`` – the per-class IoU of every cell;
* ``<stem>_iou_ratio.png|svg`` (IoU ratio against ε, Arnab et al. 2018 Fig. 2 and 3),
  ``<stem>_single_eps.png|svg`` (attacks run at one ε), ``<stem>_targeted.png|svg``,
  ``<stem>_transfer_<attack>_eps<ε>.csv|png|svg`` (source → target heatmaps);
* ``site/`` – the static site (:mod:`leaderboard.site`);
* ``manifest.json`` – every file of the list above this run wrote. A file the previous run wrote
  and this one did not is removed (an orphan: a suite renamed, an attack dropped); files the
  generator never wrote (e.g. ``papers/`` of ``--paper``) are never touched.

``<stem>`` is the suite, or ``<suite>_<dataset>`` for a suite with several datasets.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, Union

import pandas as pd

from benchmark.cells import CLEAN
from benchmark.store import Problem
from common.atomic import atomic_write_bytes
from common.errors import ResultsError

from . import flags as flag_checks
from .data import (ATTACK_LABELS, CHANCE_FACTOR, MAX_LOGGED_REFUSALS, REFERENCE_EPSILON,  # noqa: F401
                   attack_label, attack_order, check_results, csv_frame, fmt_pct, load_results,
                   majority_class_miou, natural_key, summary_cells, variant_label, variant_order, white_box)
from .figures import (model_styles, plot_iou_ratio, plot_single_epsilon, plot_targeted,  # noqa: F401
                      plot_text, plot_transfer, save_figure)
from .tables import (RANKING_RULE, TARGETED_COLUMNS, TRANSFER_NOTE, TRANSFER_VALUES, UNRELIABLE,  # noqa: F401
                     WHITE_BOX_MARK, _matrix_markdown, id_label, markdown_table, md_escape, order_ids,
                     robust_miou, scale_families, scale_of_id, scale_table, summary_table, targeted_table,
                     transfer_cells, transfer_groups, transfer_markdown, transfer_matrix)

#: Names kept for callers of the single-module report (plot_iou_ratio and plot_targeted now
#: return the PNG and SVG paths).
_model_styles = model_styles
_fmt = fmt_pct
_plot_text = plot_text
_variant_order = variant_order
_attack_order = attack_order
_summary_cells = summary_cells
_save_figure_as = save_figure

REPO_ROOT = Path(__file__).resolve().parent.parent
MANIFEST = 'manifest.json'
SITE_DIR = 'site'
REGENERATE = '.venv/bin/python tools/make_leaderboard.py'


def _file_stem(text: str) -> str:
    """A file-name-safe version of a record's name (dataset names are not restricted)."""
    import re
    return re.sub(r'[^A-Za-z0-9_.+-]', '_', text)


def results_label(results_dir: Union[str, Path]) -> str:
    """How the pages name the results folder: relative to the repository when inside it
    (``results/``), else the absolute path."""
    path = Path(os.path.abspath(results_dir))
    try:
        return path.relative_to(REPO_ROOT).as_posix().rstrip('/') + '/'
    except ValueError:
        return str(path)


def _narrow(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` without its array columns and attributes (the transfer tables filter it often)."""
    out = df[[c for c in df.columns if not c.startswith('_') and c not in ('per_class_iou', 'class_names')]]
    out.attrs = {}
    return out


def _transfer_stem(df: pd.DataFrame, attack: str, variant: str, epsilon: float, groups=None) -> str:
    """``<attack>_eps<ε>`` for a file name, with the variant's options when the attack has several."""
    variants = {v for a, v, _ in (groups if groups is not None else transfer_groups(df)) if a == attack}
    name = attack
    label = df[df.attack == attack].attack_label.iloc[0] if 'attack_label' in df else attack_label(attack)
    if len(variants) > 1 and variant != label:
        name += '_' + _file_stem(variant[len(label):].strip(' ()').replace(', ', '_'))
    return f'{_file_stem(name)}_eps{f"{epsilon:g}".replace(".", "p")}'


def _regenerate(what: str) -> str:
    return f'Regenerate {what}: `{REGENERATE}`.'


def transfer_section(df: pd.DataFrame, out_dir: Union[str, Path], stem: str, suite: str, dataset: str,
                     reference_epsilon: float, written: Dict[str, object]) -> List[str]:
    """README lines (Markdown) of one suite and dataset's transfer cells: per attack configuration
    a matrix of IoU ratio, pixel accuracy (Xiang et al. 2018 Table 2's metric) and mIoU, a heatmap
    and a CSV; then the scale table when sources or targets include scale ids. Adds the tables
    and files to ``written``."""
    out_dir = Path(out_dir)
    df = _narrow(df)
    groups = transfer_groups(df)
    if not groups:
        return []
    key = (suite, dataset)
    parts = ['### Transfer', '',
             'Adversarial examples generated on one model (the source) and evaluated on another (the '
             'target). The ranking above counts white-box cells only. ' + TRANSFER_NOTE, '']
    only_transfer = sorted(set(df[df.source_model.notna()].model)
                           - set(white_box(df)[white_box(df).attack != CLEAN].model), key=natural_key)
    if only_transfer:
        parts += ['Targets evaluated on transferred examples only (no white-box attack, so not in the '
                  'ranking): ' + ', '.join(md_escape(m) for m in only_transfer) + '.', '']
    for attack, variant, eps in groups:
        cells = transfer_cells(df, variant, eps)
        families = scale_families(set(cells.target) | set(cells.source))
        file_stem = f'{stem}_transfer_{_transfer_stem(df, attack, variant, eps, groups)}'
        csv_path = out_dir / f'{file_stem}.csv'
        ordered = cells.assign(_r=cells.target.map({t: i for i, t in enumerate(order_ids(cells.target, families))}),
                               _c=cells.source.map({s: i for i, s in enumerate(order_ids(cells.source, families))}))
        ordered = ordered.sort_values(['_r', '_c']).drop(columns=['_r', '_c'])
        atomic_write_bytes(csv_path, ordered.to_csv(index=False).encode())
        written['files'].append(csv_path)
        written['downloads'].setdefault(key, []).append((f'{variant}, ε={eps:g}: cells (CSV)', csv_path.name))
        parts += [f'#### {md_escape(variant)}, ε = {eps:g}', '']
        for value, label in TRANSFER_VALUES.items():
            matrix = transfer_matrix(df, variant, eps, value, families, cells=cells)
            written['tables'][(*key, 'transfer', variant, eps, value)] = matrix
            parts += [f'{label} (%):', '', transfer_markdown(matrix, families), '']
        figures = plot_transfer(written['tables'][(*key, 'transfer', variant, eps, 'iou_ratio')],
                                out_dir / f'{file_stem}.png', f'{suite}: {variant}, ε={eps:g}', families)
        written['figures'] += figures
        written['downloads'][key] += [(f'{variant}, ε={eps:g}: heatmap ({f.suffix[1:].upper()})', f.name)
                                      for f in figures]
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
    parts += [_regenerate('these matrices, CSV files and heatmaps'), '']
    return parts


def per_class_frame(df: pd.DataFrame) -> pd.DataFrame:
    """One row per cell (model, variant, ε, source) and one column per class: its IoU (a fraction;
    empty where the class is absent from both ground truth and prediction)."""
    names = list(df.class_names.iloc[0])
    out = df[['model', 'variant', 'epsilon', 'source_model', 'cell_id']].copy()
    values = pd.DataFrame([[float('nan') if v is None else v for v in r] for r in df.per_class_iou],
                          columns=names, index=df.index)
    return pd.concat([out, values], axis=1)


def _citation_block(df: pd.DataFrame) -> List[str]:
    from .site import CITATION
    created = sorted(c for c in df.created if c)
    commits = [c for c, t in sorted(zip(df.commit, df.created), key=lambda x: x[1]) if c]
    text = CITATION.replace('{commit}', commits[-1][:12] if commits else 'unknown') \
        .replace('{{year}}', '{' + (created[-1][:4] if created else '') + '}')
    return ['## How to cite', '', '```bibtex', text, '```', '']


def _remove_orphans(out_dir: Path, written: List[Path]) -> List[Path]:
    """Remove the files the previous run listed in the manifest and this run did not write; write
    the new manifest. Only files under ``out_dir`` that the manifest names are ever removed."""
    out_dir = out_dir.resolve()
    manifest = out_dir / MANIFEST
    now = sorted({Path(os.path.abspath(p)).relative_to(out_dir).as_posix() for p in written})
    before: List[str] = []
    if manifest.is_file():
        try:
            before = list(json.loads(manifest.read_text()).get('files', []))
        except (ValueError, AttributeError, OSError):
            before = []
    removed = []
    for rel in sorted(set(before) - set(now)):
        if not isinstance(rel, str) or rel.startswith('/') or '..' in Path(rel).parts or rel == MANIFEST:
            continue
        path = out_dir / rel
        if path.is_file() and not path.is_symlink():
            path.unlink()
            removed.append(path)
            parent = path.parent
            while parent != out_dir and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent
    atomic_write_bytes(manifest, (json.dumps({
        'about': 'Files tools/make_leaderboard.py wrote here; the next run removes those it no longer writes.',
        'files': now}, indent=1) + '\n').encode())
    return removed


def make_leaderboard(results_dir: Union[str, Path], out_dir: Union[str, Path],
                     reference_epsilon: float = REFERENCE_EPSILON, site: bool = True,
                     papers=None) -> Dict[str, object]:
    """Render README.md, the CSVs and figures of every suite and dataset, the transfer matrices,
    heatmaps and CSVs of suites with transfer cells (:func:`transfer_section`), and the site
    (``site=False`` leaves it out; ``papers``: paper reports for it, default
    :func:`leaderboard.site.load_paper_reports`); remove the files of the previous run this one no
    longer writes. Returns what was written: ``written['tables']`` (summary tables by ``(suite,
    dataset)``, targeted tables, transfer matrices by ``(suite, dataset, 'transfer', variant, ε,
    value)``, scale tables by ``(suite, dataset, 'scale')``), ``written['figures']``,
    ``written['files']`` (CSVs), ``written['site']`` (pages and assets), ``written['removed']``
    (orphans) and ``written['readme']``.

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
    out_dir.mkdir(parents=True, exist_ok=True)
    label = results_label(results_dir)
    parts = ['# Leaderboard', '',
             f'Generated by `{REGENERATE}` from the records under `{md_escape(label)}`; do not edit. '
             f'The site: [`site/index.html`]({SITE_DIR}/index.html) (sortable, filterable tables, a page per '
             'model with the provenance of every number, transfer matrices, papers).',
             '',
             'IoU ratio = mIoU on adversarial inputs ÷ mIoU on clean inputs, over the whole dataset '
             '(Arnab et al. 2018). Values in the tables are in %; the CSV files hold fractions (0–1). ε in '
             '0–255 pixel units (L∞). ' + RANKING_RULE + ' Flags are explained under "Flags" below; 95 % '
             'bootstrap intervals over images are in the CSV files and on the site.', '']
    written: Dict[str, object] = {'tables': {}, 'figures': [], 'files': [], 'refused': refused,
                                  'downloads': {}, 'stems': {}}
    for suite, sdf in df.groupby('suite', sort=True):
        for dataset, ddf in sdf.groupby('dataset', sort=True):
            key = (suite, dataset)
            table = summary_table(ddf, reference_epsilon)
            written['tables'][key] = table
            wb = white_box(ddf)
            stem = suite if sdf.dataset.nunique() == 1 else f'{suite}_{_file_stem(dataset)}'
            written['stems'][key] = stem
            downloads = written['downloads'].setdefault(key, [])
            csv_path = out_dir / f'{stem}.csv'
            cells = csv_frame(ddf)
            if len(wb) < len(ddf):   # transfer cells: name every cell's source (the model itself if white-box)
                cells.insert(cells.columns.get_loc('source_model') + 1, 'source',
                             cells.source_model.where(cells.source_model.notna(), cells.model))
            atomic_write_bytes(csv_path, cells.to_csv(index=False).encode())
            class_path = out_dir / f'{stem}_per_class_iou.csv'
            atomic_write_bytes(class_path, per_class_frame(ddf).to_csv(index=False).encode())
            written['files'] += [csv_path, class_path]
            downloads += [('every cell (CSV, fractions)', csv_path.name),
                          ('per-class IoU of every cell (CSV, fractions)', class_path.name)]
            eps = ', '.join(f'{e:g}' for e in sorted(ddf[ddf.attack != CLEAN].epsilon.unique()))
            n_img = int(ddf.num_images.max())
            role = ''
            fit_keys = set(sdf[sdf.attack.isin(['universal', 'gap'])].dataset) if sdf.dataset.nunique() > 1 else set()
            if fit_keys and dataset.split('-')[1:2] == ['train']:
                role = ' (fitting split of the universal/generative attacks)'
            elif fit_keys:
                role = ' (held-out split)'
            common = df.attrs.get('common_options', {}).get(suite)
            parts += [f'## Suite `{suite}` — {md_escape(ddf.dataset_label.iloc[0])}{role}', '',
                      f'{n_img} images; ε grid: {eps}; labels for untargeted attacks: '
                      f'{ddf.label_source.iloc[0]}; dataset key `{md_escape(dataset)}`.'
                      + (f' Settings shared by all entries of an attack: {md_escape("; ".join(common))}.'
                         if common else ''),
                      '', markdown_table(table), '',
                      f'Records: `.venv/bin/python tools/run_benchmark.py benchmark/suites/{suite}.py`. '
                      + _regenerate('this table'), '']
            targeted = targeted_table(ddf)
            if not targeted.empty:
                written['tables'][(suite, dataset, 'targeted')] = targeted
                parts += ['Targeted attacks (success rate = pixel accuracy against the target map; class '
                          'pixels hidden and background preserved as in Metzen et al. 2017; fooling rate '
                          '= pixels whose prediction changed):', '', markdown_table(targeted), '']
                tfig = plot_targeted(ddf, out_dir / f'{stem}_targeted.png', f'{suite}: {ddf.dataset_label.iloc[0]}')
                if tfig is not None:
                    written['figures'] += tfig
                    downloads += [(f'targeted metrics against ε ({f.suffix[1:].upper()})', f.name) for f in tfig]
                    parts += [f'![Targeted metrics against ε]({tfig[0].name}) (also [SVG]({tfig[1].name})). '
                              + _regenerate('this figure'), '']
            queries = wb[wb.queries.notna()]
            if not queries.empty:
                parts += ['Queries per image (black-box attacks): ' + '; '.join(
                    f'{md_escape(r.model)} {md_escape(r.variant)} ε={r.epsilon:g}: {r.queries:.0f}'
                    for r in queries.itertuples()) + '.', '']
            title = f'{suite}: {ddf.dataset_label.iloc[0]}'
            if any(wb[wb.variant == v].epsilon.nunique() > 1 for v in variant_order(wb)):
                fig = plot_iou_ratio(ddf, out_dir / f'{stem}_iou_ratio.png', title)
                written['figures'] += fig
                downloads += [(f'IoU ratio against ε ({f.suffix[1:].upper()})', f.name) for f in fig]
                parts += [f'![IoU ratio against ε]({fig[0].name}) (also [SVG]({fig[1].name}); models of one '
                          'family share a colour). ' + _regenerate('this figure'), '']
            single = plot_single_epsilon(ddf, out_dir / f'{stem}_single_eps.png', title)
            if single is not None:
                written['figures'] += single
                downloads += [(f'IoU ratio of the single-ε attacks ({f.suffix[1:].upper()})', f.name) for f in single]
                parts += [f'![IoU ratio of the attacks run at one ε]({single[0].name}) (also '
                          f'[SVG]({single[1].name}); bars: 95 % bootstrap intervals). ' + _regenerate('this figure'), '']
            parts += transfer_section(ddf, out_dir, stem, suite, dataset, reference_epsilon, written)
            parts += [f'All cells: [`{csv_path.name}`]({csv_path.name}); per-class IoU: '
                      f'[`{class_path.name}`]({class_path.name}) (fractions).', '']
    parts += ['## Flags', '',
              f'A model that fails a gradient-masking or sanity check is marked "{UNRELIABLE}" '
              '(as RobustBench marks such entries), keeps its rank and is never hidden. Comparisons are '
              f'paired (same images): a check fires when the difference of IoU ratios exceeds '
              f'{100 * flag_checks.TOLERANCE:g} percentage point and its 95 % paired bootstrap interval '
              'lies above zero (the tolerance alone without per-image matrices).', '']
    parts += [f'- **{md_escape(title)}**: {md_escape(text)}' for title, text in flag_checks.KINDS.values()]
    parts += ['']
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
    parts += _citation_block(df)
    readme = out_dir / 'README.md'
    atomic_write_bytes(readme, '\n'.join(parts).encode())
    written['readme'] = readme
    written['site'] = []
    if site:
        from .site import render_site
        downloads = {k: [(lab, f'../{name}') for lab, name in v] for k, v in written['downloads'].items()}
        written['site'] = render_site(df, out_dir / SITE_DIR, results_label=label,
                                      reference_epsilon=reference_epsilon, stems=written['stems'],
                                      downloads=downloads, summaries=written['tables'], papers=papers,
                                      refused=refused)
    written['removed'] = _remove_orphans(out_dir, [readme, *written['files'], *written['figures'],
                                                   *written['site']])
    return written
