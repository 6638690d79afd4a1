"""Shared command-line plumbing: logging set-up and one-paragraph user errors."""
from __future__ import annotations

import logging
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # tools run from a checkout without installing
    sys.path.insert(0, str(REPO_ROOT))


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format='%(asctime)s %(levelname)s %(name)s: %(message)s', datefmt='%H:%M:%S')
    for noisy in ('mmengine', 'matplotlib', 'PIL'):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main_guard(fn):
    """Run ``fn()``; a BenchmarkError becomes a one-paragraph message on stderr and exit code 2."""
    from benchmark.errors import BenchmarkError
    try:
        return fn()
    except BenchmarkError as e:
        msg = str(e)
        first, _, rest = msg.partition('\n')
        print('error: ' + textwrap.fill(first, width=100, subsequent_indent='  ')
              + ('\n' + rest if rest else ''), file=sys.stderr)
        print('(nothing already stored was changed)', file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print('interrupted: finished cells are stored; run the same command again to resume',
              file=sys.stderr)
        sys.exit(130)
