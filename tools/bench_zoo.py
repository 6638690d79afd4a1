#!/usr/bin/env python
"""Forward+backward time of the demo models, as the attacks use them (pixel space, input gradient).

    python tools/bench_zoo.py                          # every demo entry, batch 8, 1 thread
    python tools/bench_zoo.py --models enet_synthcity crfrnn_r18-w16_synthcity --threads 2

For each model: build it from its config (random weights: the cost does not depend on them), run
``--warmup`` untimed and ``--repeats`` timed passes of "forward a batch of the built-in val images
(128×256 RGB in [0, 255]; the CRF lattice size depends on image content), per-pixel cross-entropy against the prediction, backward to the input", and print the
median and the fastest pass as a Markdown table. Run it on a quiet machine: other jobs on the same
cores inflate every figure.
"""
from __future__ import annotations

import argparse
import statistics
import time

from _cli import main_guard, setup_logging


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--models', nargs='+', help='zoo names (default: every demo entry)')
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--repeats', type=int, default=3)
    args = p.parse_args(argv)
    setup_logging()
    import os

    import torch
    import torch.nn.functional as F
    torch.set_num_threads(args.threads)
    from model_zoo.builder import build_pixel_model
    from model_zoo.zoo import count_parameters
    from model_zoo.zoo import load_metafile, resolve_model

    zoo = load_metafile()
    names = args.models or [e.name for e in zoo.values() if e.demo]
    from benchmark.datasets.builder import build_eval_dataset
    data = build_eval_dataset(dict(type='synthetic_cityscapes', split='val', seed=0, num_images=args.batch))
    images = next(data.batches(args.batch))[0]
    h, w = images.shape[-2:]
    load = os.getloadavg()[0]
    print(f'fwd+bwd to the input, batch {args.batch}×3×{h}×{w}, {args.threads} thread(s), '
          f'median and fastest of {args.repeats} (load average at start {load:.2f})\n')
    print('| model | parameters | median | fastest | per image |')
    print('|---|---|---|---|---|')
    for name in names:
        entry = resolve_model(name, zoo, require_weights=False)   # timing only: random weights are fine
        model, _ = build_pixel_model(entry.config)
        model.eval()
        params = count_parameters(model.segmentor if hasattr(model, 'segmentor') else model)
        times = []
        for i in range(args.warmup + args.repeats):
            x = images.clone().requires_grad_(True)
            t0 = time.perf_counter()
            logits = model(x)
            loss = F.cross_entropy(logits, logits.detach().argmax(1))
            (grad,) = torch.autograd.grad(loss, x)
            dt = time.perf_counter() - t0
            if not torch.isfinite(grad).all():
                raise SystemExit(f'{name}: non-finite input gradient')
            if i >= args.warmup:
                times.append(dt)
        med = statistics.median(times)
        print(f'| `{name}` | {params / 1e6:.2f} M | {med:.2f} s | {min(times):.2f} s | '
              f'{1000 * med / args.batch:.0f} ms |', flush=True)


if __name__ == '__main__':
    main_guard(main)
