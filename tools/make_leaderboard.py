#!/usr/bin/env python
"""Render the leaderboard (Markdown, CSV, figures, the static site under site/) from stored result
records only.

Suites with transfer cells also get source → target matrices (README, CSV, PNG/SVG heatmap) and,
when a model appears at several scales, the scale table of Arnab et al. 2018 Table 1.

Records that fail verification are refused (listed under "Refused records" in the README and
logged as warnings) and the rest is rendered; ``--strict`` then exits with status 1.

``--paper KEY`` (or ``--paper all``) regenerates only that paper's tables, our numbers beside the
published ones (``leaderboard/papers.py``, published values in ``leaderboard/published/``), into
``<out-dir>/papers/<key>.md`` and ``.tex``, and prints the Markdown.
"""
from __future__ import annotations

import argparse
import sys

from _cli import REPO_ROOT, check_output_dir, main_guard, setup_logging


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--results-dir', default=str(REPO_ROOT / 'results'))
    p.add_argument('--out-dir', default=str(REPO_ROOT / 'leaderboard'))
    p.add_argument('--reference-epsilon', type=float, default=8.0,
                   help='ε of the per-attack column in the summary table and of the blocks of '
                        'the scale table (default 8)')
    p.add_argument('--strict', action='store_true',
                   help='exit with status 1 when a record was refused (after rendering the rest)')
    p.add_argument('--paper', metavar='KEY',
                   help="regenerate only one paper's tables beside its published numbers "
                        '(arnab2018, metzen2017, fischer2017, xiang2022, poursaeed2018, or all) into '
                        '<out-dir>/papers/<key>.md and .tex, and print the Markdown')
    args = p.parse_args(argv)
    setup_logging()
    if args.paper is not None:
        check_output_dir(args.out_dir, '--out-dir')
        from leaderboard.papers import make_paper_tables
        for written in make_paper_tables(args.results_dir, args.out_dir, args.paper):
            print(written.markdown)
            print(f'wrote {written.markdown_path} and {written.latex_path}', file=sys.stderr)
        return 0
    import math

    from benchmark.errors import ConfigError
    eps = args.reference_epsilon
    if not math.isfinite(eps) or not 0 < eps <= 255:
        raise ConfigError(f'--reference-epsilon {eps:g} is not valid; expected the ε of the summary '
                          "column, an ε of the suites' grid in 0-255 pixel units (default 8)")
    check_output_dir(args.out_dir, '--out-dir')   # before reading any record
    from leaderboard.report import make_leaderboard
    written = make_leaderboard(args.results_dir, args.out_dir, args.reference_epsilon)
    print(f'wrote {written["readme"]}, {len(written["files"])} CSV file(s), '
          f'{len(written["figures"])} figure file(s) and the site ({len(written["site"])} files, '
          f'{args.out_dir}/site/index.html)')
    if written['removed']:
        print(f'removed {len(written["removed"])} file(s) an earlier run wrote and this one no longer '
              'does: ' + ', '.join(str(p) for p in written['removed'][:10])
              + (' ...' if len(written['removed']) > 10 else ''))
    column = f'ε={eps:g}'
    if not any(column in str(c) for table in written['tables'].values() for c in table.columns):
        # legal, but almost certainly a typo: say so rather than render tables without the column
        print(f'warning: --reference-epsilon {eps:g} is in no suite\'s ε grid, so no summary table '
              f'has a column at {column} (single-ε suites show their own ε); use an ε of the grid, '
              'e.g. the default 8', file=sys.stderr)
    refused = {p.file for p in written['refused']}
    if refused:
        print(f'{len(refused)} record file(s) refused (listed under "Refused records" in '
              f'{written["readme"]}; tools/validate_results.py checks everything)')
        return 1 if args.strict else 0
    return 0


if __name__ == '__main__':
    raise SystemExit(main_guard(main))
