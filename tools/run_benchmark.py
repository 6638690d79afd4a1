#!/usr/bin/env python
"""Run a benchmark suite, store one result record per cell, then render the leaderboard.

Example (the main job on the built-in data: about 35 s from the committed records, about 8 minutes
with --force on a 2-core CPU):

    python tools/run_benchmark.py benchmark/suites/demo.py

Cells already stored are skipped (an interrupted run resumes); ``--force`` recomputes them.
On several cores, GPUs or a Slurm cluster, start it with ``torchrun`` or ``srun`` and
``--launcher pytorch`` / ``slurm`` (docs/scaling.md):

    torchrun --standalone --nproc-per-node 2 tools/run_benchmark.py --launcher pytorch benchmark/suites/demo.py
"""
from __future__ import annotations

import argparse

from _cli import REPO_ROOT, check_output_dir, main_guard, setup_logging


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('suite', help='suite config file, e.g. benchmark/suites/demo.py')
    p.add_argument('--results-dir', default=str(REPO_ROOT / 'results'), help='where records are stored')
    p.add_argument('--leaderboard-dir', default=str(REPO_ROOT / 'leaderboard'),
                   help='where the leaderboard is rendered')
    p.add_argument('--no-leaderboard', action='store_true', help='do not render the leaderboard')
    p.add_argument('--force', action='store_true', help='recompute cells that are already stored')
    p.add_argument('--models', nargs='+', help='only these models of the suite')
    p.add_argument('--num-images', type=int, help='override the number of dataset images')
    p.add_argument('--batch-size', type=int, help='override the suite batch size')
    p.add_argument('--device', default='cpu', help='torch device (default: cpu)')
    p.add_argument('--threads', type=int, help='torch CPU threads (default: torch\'s choice, one per core)')
    p.add_argument('--launcher', choices=('none', 'pytorch', 'slurm'), default='none',
                   help='process group launcher: none (one process), pytorch (started by torchrun) or '
                        'slurm (started by srun); see docs/scaling.md')
    p.add_argument('--nproc', type=int, default=1,
                   help='run N ranks on this machine: starts itself under torchrun --standalone '
                        '--nproc-per-node N with --launcher pytorch (one thread per rank unless '
                        'OMP_NUM_THREADS or --threads says otherwise)')
    p.add_argument('--workers', type=int, default=1,
                   help='image-decoding worker processes per rank (0: decode in the main process)')
    p.add_argument('--deterministic', action='store_true',
                   help='torch.use_deterministic_algorithms (warn only) and no cuDNN autotuning')
    p.add_argument('--no-progress', action='store_true', help='no progress bar')
    p.add_argument('-v', '--verbose', action='store_true')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    setup_logging(args.verbose)
    import logging

    from common.errors import ConfigError
    for option, value in (('--threads', args.threads), ('--num-images', args.num_images),
                          ('--batch-size', args.batch_size)):
        if value is not None and value < 1:
            raise ConfigError(f'{option} must be a positive integer, got {value}')
    if args.nproc < 1:
        raise ConfigError(f'--nproc must be a positive number of ranks, got {args.nproc}')
    if args.nproc > 1 and args.launcher != 'none':
        raise ConfigError(f'--nproc starts the ranks itself; with --launcher {args.launcher} the '
                          'launcher (torchrun, srun) starts them: drop --nproc')
    if args.workers < 0:
        raise ConfigError(f'--workers must be 0 or more decoding processes, got {args.workers}')
    check_output_dir(args.leaderboard_dir if not args.no_leaderboard else None, '--leaderboard-dir')
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    from benchmark.runner import Runner
    from benchmark.suite import load_suite
    overrides = {}
    if args.batch_size is not None:
        overrides['batch_size'] = args.batch_size
    suite = load_suite(args.suite, overrides)
    if args.num_images is not None:
        suite.dataset['num_images'] = args.num_images
    from common.errors import CheckpointError
    from model_zoo.zoo import missing_demo_weights
    missing = missing_demo_weights(suite.models)
    if missing:
        raise CheckpointError(
            f'demo weights are missing for {", ".join(e.name for e in missing)} ({missing[0].weights}). '
            'They are committed to the repository; restore them with git checkout, or retrain them with '
            'python tools/train_demo_zoo.py --models NAME (4 to 95 minutes per model on one core '
            'of a 2-core CPU; see model_zoo/README.md).')
    if args.nproc > 1:
        return _relaunch(args.nproc, argv)
    from benchmark import distributed
    from benchmark.runner import _check_device
    _check_device(args.device)   # a typo fails here, not inside the process group's set-up
    dist = distributed.init(args.launcher, args.device)
    if not dist.is_main:   # one voice: the other ranks log warnings and errors only
        logging.getLogger().setLevel(logging.WARNING)
    from tqdm.contrib.logging import logging_redirect_tqdm
    try:
        with logging_redirect_tqdm(), distributed.deterministic(args.deterministic):
            # log lines go above the progress bar instead of through it
            outcomes = Runner(suite, args.results_dir, force=args.force, models=args.models,
                              progress=not args.no_progress, device=distributed.rank_device(args.device),
                              workers=args.workers, dist=dist).run()
    finally:
        dist.close()
    if not dist.is_main:
        return
    computed = sum(o.status == 'computed' for o in outcomes)
    log = logging.getLogger('run_benchmark')
    log.info('%d cells computed, %d already stored, records under %s', computed,
             len(outcomes) - computed, args.results_dir)
    if not args.no_leaderboard:
        from leaderboard.report import make_leaderboard
        written = make_leaderboard(args.results_dir, args.leaderboard_dir)
        log.info('leaderboard: %s', written['readme'])
        for key, table in written['tables'].items():
            if len(key) != 2:   # (suite, dataset, 'targeted'): the targeted tables stay in the files
                continue
            suite_name, dataset = key
            if suite_name == suite.name:
                print(f'\n{suite_name} ({dataset}), IoU ratio in %:')
                print(table.to_string(index=False, float_format=lambda v: f'{100 * v:.1f}'))


def _relaunch(nproc: int, argv=None) -> None:
    """This command again, under ``torchrun --standalone --nproc-per-node N`` (torch's own
    launcher, run in this process), every rank with ``--launcher pytorch``."""
    import sys

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    args = list(sys.argv[1:] if argv is None else argv)
    rest, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a == '--nproc':
            skip = True
        elif not a.startswith('--nproc='):
            rest.append(a)
    try:
        torchrun(['--standalone', f'--nproc-per-node={nproc}', __file__, *rest, '--launcher', 'pytorch'])
    except ChildFailedError:
        # each rank has printed its own message; torch's report of the failure adds nothing
        sys.exit(2)


if __name__ == '__main__':
    main_guard(main)
