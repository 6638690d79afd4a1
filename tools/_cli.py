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
    # mmseg warns about its own internals every time a model with a decode head is built (a
    # deprecated builder it calls itself, a loss default); nothing a user can act on, and it would
    # bury the one-paragraph error or the results under warnings
    import warnings
    for message in (r'``build_loss`` would be deprecated', r'Default ``avg_non_ignore`` is False'):
        warnings.filterwarnings('ignore', message=message, category=UserWarning)


def check_output_dir(path, option: str) -> None:
    """An output directory that is writable, or can be created (checked before any work)."""
    if path is not None:
        from benchmark.store import check_writable_dir
        check_writable_dir(path, option)


def main_guard(fn):
    """Run ``fn()``; a BenchmarkError becomes a one-paragraph message on stderr and exit code 2."""
    from benchmark.errors import BenchmarkError
    try:
        return fn()
    except BenchmarkError as e:
        # never let a file name or a quoted exception put terminal escape codes on the screen
        msg = ''.join(ch if ch in '\n\t' or ch.isprintable() else repr(ch)[1:-1] for ch in str(e))
        first, _, rest = msg.partition('\n')
        # never break inside a path or a name: the user copies them back from the message
        print('error: ' + textwrap.fill(first, width=100, subsequent_indent='  ',
                                        break_on_hyphens=False, break_long_words=False)
              + ('\n' + rest if rest else ''), file=sys.stderr)
        print('(nothing already stored was changed)', file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print('interrupted: finished cells are stored; run the same command again to resume',
              file=sys.stderr)
        sys.exit(130)
