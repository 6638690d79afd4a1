#!/usr/bin/env python
"""Cost of Arnab et al.'s iterative attack grid with and without shared trajectories.

    python tools/bench_attacks.py                       # FCN demo model, 4 images, 1 thread
    python tools/bench_attacks.py --model pspnet_r18-w16_synthcity --num-images 8 --threads 2

Runs Iterative FGSM and Iterative FGSM II over the ε grid {0.25, ..., 32} twice in one process,
once with every ε attacked alone and once with the ε cells sharing their first steps, checks the
records are identical, and prints gradient passes, wall time and their ratios.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _cli import main_guard, setup_logging


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--model', default='fcn_r18-w16_synthcity', help='a zoo model with weights')
    p.add_argument('--num-images', type=int, default=4)
    p.add_argument('--threads', type=int, default=1)
    args = p.parse_args(argv)
    setup_logging()
    import logging
    logging.getLogger('benchmark').setLevel(logging.WARNING)
    import torch
    torch.set_num_threads(args.threads)

    from benchmark.runner import Runner
    from benchmark.store import ResultStore
    from benchmark.suite import ARNAB_EPSILONS, load_suite
    suite = load_suite(dict(
        suite_name='bench', dataset=dict(type='synthetic_cityscapes', split='val', seed=0,
                                         num_images=args.num_images),
        models=[args.model], attacks=['ifgsm', 'ifgsm_ll'], epsilons=list(ARNAB_EPSILONS), batch_size=8))
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        for share in (False, True):
            out = Path(tmp) / ('shared' if share else 'alone')
            t0 = time.perf_counter()
            # each run its own adversarial-example store, so neither reuses the other's images
            Runner(suite, out, progress=False, share_trajectories=share, adv_dir=Path(tmp) / f'adv_{share}').run()
            wall = time.perf_counter() - t0
            records = {r['cell_id']: r for _, r in ResultStore(out).iter_records() if r['key']['attack'] != 'clean'}
            figures[share] = (wall, sum(r['attack_stats']['gradient_images'] for r in records.values()), records)
    (wall_a, grad_a, rec_a), (wall_s, grad_s, rec_s) = figures[False], figures[True]
    same = rec_a.keys() == rec_s.keys() and all(rec_a[k]['confusion'] == rec_s[k]['confusion'] for k in rec_a)
    n = args.num_images
    print(f'{args.model}, {n} images, ifgsm + ifgsm_ll over ε = {list(ARNAB_EPSILONS)}, {args.threads} thread(s)')
    print(f'  alone : {grad_a / n:6.1f} gradient passes per image, {wall_a:7.1f} s (clean pass included)')
    print(f'  shared: {grad_s / n:6.1f} gradient passes per image, {wall_s:7.1f} s')
    print(f'  ratio shared/alone: gradient passes {grad_s / grad_a:.3f}, wall time {wall_s / wall_a:.3f}')
    print(f'  records identical: {same}')
    if not same:
        raise SystemExit('shared trajectories changed the results: this is a bug')


if __name__ == '__main__':
    main_guard(main)
