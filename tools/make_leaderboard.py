#!/usr/bin/env python
"""Render the leaderboard (Markdown, CSV, figures) from stored result records only."""
from __future__ import annotations

import argparse

from _cli import REPO_ROOT, main_guard, setup_logging


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--results-dir', default=str(REPO_ROOT / 'results'))
    p.add_argument('--out-dir', default=str(REPO_ROOT / 'leaderboard'))
    p.add_argument('--reference-epsilon', type=float, default=8.0,
                   help='ε of the per-attack column in the summary table (default 8)')
    args = p.parse_args(argv)
    setup_logging()
    from leaderboard.report import make_leaderboard
    written = make_leaderboard(args.results_dir, args.out_dir, args.reference_epsilon)
    print(f'wrote {written["readme"]} and {len(written["figures"])} figure(s)')


if __name__ == '__main__':
    main_guard(main)
