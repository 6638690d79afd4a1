#!/usr/bin/env python
"""Check stored result records: each on its own (schema, finite numbers, metrics against the
matrices, per-image files, names, paths) and against each other (duplicate cells, image lists,
pixel counts, clean cells, provenance, temporary files).

Prints each problem as ``file: field: reason`` and a summary line. Exit status: 0 when the records
are consistent, 1 when problems were found, 2 for bad usage (a path that does not exist).
"""
from __future__ import annotations

import argparse
import time

from _cli import REPO_ROOT, main_guard, setup_logging


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('paths', nargs='*', default=[str(REPO_ROOT / 'results')],
                   help='results folders or record files (default: the repository\'s results/)')
    args = p.parse_args(argv)
    setup_logging()
    from benchmark.integrity import check_paths_counted
    start = time.perf_counter()
    checked, problems = check_paths_counted(args.paths)
    for problem in problems:
        print(problem)
    print(f'{checked} record(s) checked, {len(problems)} problem(s) '
          f'({time.perf_counter() - start:.1f} s)')
    return 1 if problems else 0


if __name__ == '__main__':
    raise SystemExit(main_guard(main))
