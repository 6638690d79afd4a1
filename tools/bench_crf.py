"""Benchmark the CRF-RNN mean-field layer: forward time and peak memory vs image size.

The permutohedral lattice makes the layer linear in the number of pixels, so doubling both sides
should cost ~4x time and memory. Each size runs in a fresh subprocess, so that its peak resident
memory (``ru_maxrss``, minus the resident size just before the forward pass) is its own.

Example::

    OMP_NUM_THREADS=2 python tools/bench_crf.py --threads 2 --sizes 256x512 512x1024
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _rss_mb() -> float:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2 ** 20


def run_one(height: int, width: int, classes: int, iters: int, threads: int, repeats: int,
            spatial_filter: str, seed: int = 0) -> dict:
    """Time ``repeats`` eval-mode forward passes (lattice construction included) at one size."""
    import resource
    import time

    import torch
    import torch.nn.functional as F
    sys.path.insert(0, str(REPO_ROOT))
    from model_zoo.models.crf_rnn import MeanFieldCRF
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(seed)
    # A natural-looking image: smooth colour field (1/16 resolution, upsampled) + 2 grey levels
    # of noise; unaries: smooth random logits.
    img = F.interpolate(torch.rand((1, 3, height // 16, width // 16), generator=g) * 255,
                        size=(height, width), mode='bilinear', align_corners=False)
    img = (img + 2 * torch.randn(img.shape, generator=g)).clamp(0, 255)
    unary = F.interpolate(3 * torch.randn((1, classes, height // 8, width // 8), generator=g),
                          size=(height, width), mode='bilinear', align_corners=False)
    crf = MeanFieldCRF(classes, num_iter_test=iters, spatial_filter=spatial_filter).eval()
    base = _rss_mb()
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = crf(unary, img)
            times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    _, bilateral = crf.kernels(img)
    return dict(height=height, width=width, pixels=height * width, classes=classes, iters=iters,
                threads=threads, seconds=min(times), peak_mb=round(peak - base, 1),
                lattice_vertices=bilateral.lattice.num_vertices,
                finite=bool(torch.isfinite(out).all()))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--sizes', nargs='+', default=['256x512', '512x1024'], help='HxW sizes')
    p.add_argument('--classes', type=int, default=19)
    p.add_argument('--iters', type=int, default=10, help='mean-field iterations')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--repeats', type=int, default=1)
    p.add_argument('--spatial-filter', default='lattice', choices=['lattice', 'separable'])
    p.add_argument('--one', help=argparse.SUPPRESS)  # internal: run one size, print JSON
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.one:
        h, w = (int(v) for v in args.one.split('x'))
        print(json.dumps(run_one(h, w, args.classes, args.iters, args.threads, args.repeats,
                                 args.spatial_filter)))
        return
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    rows = []
    for size in args.sizes:
        cmd = [sys.executable, __file__, '--one', size, '--classes', str(args.classes),
               '--iters', str(args.iters), '--threads', str(args.threads),
               '--repeats', str(args.repeats), '--spatial-filter', args.spatial_filter]
        out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"{r['height']}x{r['width']}: {r['pixels']} px, {r['classes']} classes, "
              f"{r['iters']} iterations, {r['threads']} thread(s): forward {r['seconds']:.2f} s, "
              f"peak memory +{r['peak_mb']:.0f} MB, {r['lattice_vertices']} bilateral lattice "
              'vertices', flush=True)
    for a, b in zip(rows, rows[1:]):
        print(f"{b['height']}x{b['width']} vs {a['height']}x{a['width']}: pixels x"
              f"{b['pixels'] / a['pixels']:.2f}, time x{b['seconds'] / a['seconds']:.2f}, "
              f"memory x{b['peak_mb'] / max(a['peak_mb'], 1e-9):.2f}")


if __name__ == '__main__':
    main()
