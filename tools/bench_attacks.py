#!/usr/bin/env python
"""Measured cost of the attacks, in one process: grid sharing, the overhead of an attack step,
peak memory, a reference library, fitted attacks and Square Attack's queries.

    python tools/bench_attacks.py                          # FCN demo model, 1 thread, a few minutes
    python tools/bench_attacks.py --json figures.json      # also write every figure as JSON
    python tools/bench_attacks.py --only grid iteration    # some sections only
    python tools/bench_attacks.py --num-images 8 --fit-images 64 --fit-steps 60   # larger

Sections (``--only``; docs/performance.md explains each figure):

grid         Arnab et al.'s grid (FGSM, FGSM II, Iterative FGSM, Iterative FGSM II × ε ∈
             {0.25, ..., 32}) run twice through the Runner, ε cells sharing their work and not
             (``share_trajectories``), each run with its own results and adversarial-example
             store: gradient passes per image (the records' ``gradient_images`` ÷ images, and
             Σ gradient_passes_per_image − shared_gradient_passes_per_image), wall and CPU time of
             each run (clean pass and evaluation included) and whether the records are identical.
iteration    one Iterative FGSM step ÷ one bare forward + backward of the same network on the same
             batch (median of interleaved repeats after a warm-up). "Bare" is the network's own
             function to the input gradient with nothing of ours around it: the normalisation,
             the segmentor's ``mode='tensor'`` forward, the bilinear resize to the input size, the
             summed pixel cross-entropy and ``torch.autograd.grad`` to the pixels; it is checked
             to give the same logits as the PixelSpaceModel. The attack's step adds the wrapper's
             checks, the sign step, the projection and the clones.
memory       peak tensor memory of an Iterative FGSM and a PGD run ÷ that of one bare forward +
             backward (torch's profiler, :func:`peak_tensor_memory`).
torchattacks our Iterative FGSM and PGD (no random start) against torchattacks' BIM and PGD on the
             same model, batch, steps, ε and α (skipped when torchattacks is not installed).
fitted       Metzen et al.'s universal perturbation and Poursaeed et al.'s generative one fitted
             through the Runner on a reduced fitting split: gradient images (exact count against
             steps × images), wall time, images per second, the rate of bare forward + backward
             passes at the fitting batch size, and the suites' fitting cost at these rates.
square       Square Attack's time per query with horizontal and vertical initial stripes.

Timed comparisons use the CPU time of the calling thread with one torch thread (all the work
runs there, and other processes on a shared machine then inflate neither side of a ratio), wall
time with more threads.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _cli import REPO_ROOT, main_guard, setup_logging

SECTIONS = ('grid', 'iteration', 'memory', 'torchattacks', 'fitted', 'square')
ARNAB_ATTACKS = ('fgsm', 'fgsm_ll', 'ifgsm', 'ifgsm_ll')


# -- shared pieces ------------------------------------------------------------------------------

def _load_model(name: str):
    from model_zoo.zoo import build_zoo_model, load_metafile, resolve_model
    model, _ = build_zoo_model(resolve_model(name, load_metafile()))
    return model


def _val_batch(num_images: int):
    from benchmark.datasets.builder import build_eval_dataset
    data = build_eval_dataset(dict(type='synthetic_cityscapes', split='val', seed=0, num_images=num_images))
    return next(data.batches(num_images))[0]


def bare_logits(model, x):
    """The network's own function of the pixels, without the wrapper's checks and counters:
    channel order and mean/std, the segmentor's tensor-mode forward (sliding windows when the
    model uses them), the resize to the input size."""
    import torch.nn.functional as F
    z = model.normalize(x)
    h, w = x.shape[-2:]
    if model.size_divisor:
        d = int(model.size_divisor)
        if (-h) % d or (-w) % d:
            z = F.pad(z, (0, (-w) % d, 0, (-h) % d), value=model.pad_val)
    z = model._slide_logits(z) if model.mode == 'slide' else model._tensor_logits(z)
    return z[:, :, :h, :w]


def bare_gradient(model, images, labels):
    """One bare forward + backward: ∇_x of the summed pixel cross-entropy (the attacks' loss)."""
    import torch
    import torch.nn.functional as F
    x = images.detach().requires_grad_(True)
    loss = F.cross_entropy(bare_logits(model, x), labels, ignore_index=255, reduction='sum')
    grad, = torch.autograd.grad(loss, x)
    return grad


#: the clock of the timed comparisons: with one torch thread all the work runs on the calling
#: thread, so its CPU time is what the work costs, and other processes on a shared machine do not
#: inflate one side of a ratio more than the other; with more threads, wall time (see main())
CLOCK = {'name': 'thread CPU time', 'fn': time.thread_time}


def _timed(fn, clock=None):
    clock = clock or CLOCK['fn']
    t0 = clock()
    fn()
    return clock() - t0


def _interleaved(fns, repeats: int, warmup: int = 1):
    """Median wall time of each of ``fns`` (a dict), run in turn ``repeats`` times after
    ``warmup`` untimed rounds; interleaving spreads a shared machine's load over all of them."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            times[k].append(_timed(fn))
    _interleaved.fastest = {k: min(v) for k, v in times.items()}
    return {k: statistics.median(v) for k, v in times.items()}


# -- 1, 2: the Arnab grid through the Runner, shared and unshared ----------------------------------

def bench_grid(args):
    from benchmark.runner import Runner
    from benchmark.store import ResultStore
    from benchmark.suite import ARNAB_EPSILONS, load_suite
    n = args.num_images
    _val_batch(n)               # the built-in data generated before any timing
    suite = load_suite(dict(
        suite_name='bench', dataset=dict(type='synthetic_cityscapes', split='val', seed=0, num_images=n),
        models=[args.model], attacks=list(ARNAB_ATTACKS), epsilons=list(args.epsilons or ARNAB_EPSILONS),
        batch_size=max(1, min(n, 8)), seed=0))
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for share in (False, True):
            name = 'shared' if share else 'unshared'
            out = Path(tmp) / name
            # each run its own adversarial-example store, so neither reuses the other's images
            t0, c0 = time.perf_counter(), time.process_time()
            Runner(suite, out, progress=False, share_trajectories=share, adv_dir=Path(tmp) / f'adv_{name}').run()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            records = {r['cell_id']: r for _, r in ResultStore(out).iter_records()
                       if r['key']['attack'] != 'clean'}
            stats = [r['attack_stats'] for r in records.values()]
            runs[name] = dict(
                wall_s=wall, cpu_s=cpu, records=records,
                gradient_images=sum(s['gradient_images'] for s in stats),
                own_passes_per_image=sum(s['gradient_passes_per_image']
                                         - s.get('shared_gradient_passes_per_image', 0) for s in stats),
                passes_per_image_alone=sum(s['gradient_passes_per_image'] for s in stats))
    a, s = runs['unshared'], runs['shared']
    same = a['records'].keys() == s['records'].keys() and all(
        a['records'][k]['confusion'] == s['records'][k]['confusion'] for k in a['records'])
    fig = {'model': args.model, 'num_images': n, 'attacks': list(ARNAB_ATTACKS),
           'epsilons': list(args.epsilons or ARNAB_EPSILONS), 'cells': len(s['records']),
           'records_identical': same}
    for name, r in runs.items():
        fig[name] = {'gradient_passes_per_image': r['gradient_images'] / n,
                     'own_passes_per_image_from_records': r['own_passes_per_image'],
                     'passes_per_image_if_alone': r['passes_per_image_alone'],
                     'wall_s': round(r['wall_s'], 2), 'cpu_s': round(r['cpu_s'], 2)}
    fig['wall_ratio_unshared_over_shared'] = a['wall_s'] / s['wall_s']
    fig['cpu_ratio_unshared_over_shared'] = a['cpu_s'] / s['cpu_s']
    fig['pass_ratio_unshared_over_shared'] = a['gradient_images'] / max(s['gradient_images'], 1)
    return fig


def print_grid(fig):
    u, s = fig['unshared'], fig['shared']
    print(f"1-2. Arnab grid through the Runner: {', '.join(fig['attacks'])} × ε = {fig['epsilons']}, "
          f"{fig['num_images']} images, {fig['cells']} cells")
    print('     | run      | gradient passes / image | Σ (passes − shared) in records | wall time | CPU time |')
    for name, r in (('unshared', u), ('shared', s)):
        print(f"     | {name:8s} | {r['gradient_passes_per_image']:23.1f} | "
              f"{r['own_passes_per_image_from_records']:30d} | {r['wall_s']:7.1f} s | {r['cpu_s']:6.1f} s |")
    print(f"     unshared ÷ shared: gradient passes {fig['pass_ratio_unshared_over_shared']:.2f}×, "
          f"wall time {fig['wall_ratio_unshared_over_shared']:.2f}×, CPU time {fig['cpu_ratio_unshared_over_shared']:.2f}×; "
          f"records identical: {fig['records_identical']}")


# -- 3: one attack iteration against a bare forward + backward ---------------------------------------

def bench_iteration(args, model, images, labels):
    import torch
    from attacks.ifgsm import IterativeFGSM
    from attacks.ifgsm_ll import IterativeFGSMLeastLikely
    with torch.no_grad():
        if not torch.equal(bare_logits(model, images), model(images)):
            raise SystemExit('bare forward differs from the PixelSpaceModel: the comparison would be unfair')
    steps = args.steps

    def bare():
        for _ in range(steps):
            bare_gradient(model, images, labels)

    def ours():
        IterativeFGSM(epsilon=32, num_steps=steps).run(model, images, labels=labels)

    def ours_ll():
        IterativeFGSMLeastLikely(epsilon=32, num_steps=steps).run(model, images, labels=labels)

    med = _interleaved({'bare': bare, 'ours': ours, 'ours_ll': ours_ll}, args.repeats)
    fastest = _interleaved.fastest
    return {'batch': len(images), 'steps': steps, 'repeats': args.repeats,
            'ratio_of_fastest': fastest['ours'] / fastest['bare'],
            'll_ratio_of_fastest': fastest['ours_ll'] / fastest['bare'],
            'bare_s_per_pass': med['bare'] / steps, 'attack_s_per_iteration': med['ours'] / steps,
            'ratio': med['ours'] / med['bare'], 'll_s_per_iteration': med['ours_ll'] / steps,
            'll_ratio': med['ours_ll'] / med['bare']}


def print_iteration(fig):
    print(f"3.   one Iterative FGSM iteration ÷ one bare forward+backward (batch {fig['batch']}, "
          f"{fig['steps']} steps, median of {fig['repeats']}): {fig['attack_s_per_iteration'] * 1e3:.1f} ms ÷ "
          f"{fig['bare_s_per_pass'] * 1e3:.1f} ms = {fig['ratio']:.3f} (fastest runs: {fig['ratio_of_fastest']:.3f}); "
          f"Iterative FGSM II {fig['ll_s_per_iteration'] * 1e3:.1f} ms = {fig['ll_ratio']:.3f} "
          f"({fig['ll_ratio_of_fastest']:.3f})")


# -- 4: peak memory ------------------------------------------------------------------------------------

def peak_tensor_memory(fn) -> int:
    """Peak bytes of tensor memory allocated by ``fn()`` above what was allocated before it.

    torch's profiler (``profile_memory=True``) records every allocation and release of its CPU
    allocator with its size; the running sum of those events in time order is the memory held by
    tensors created during the call, and its maximum is the peak. Deterministic (it counts tensor
    bytes, not pages), unlike the resident set size, which also moves with the C allocator's
    caching and fragmentation.
    """
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == '[memory]')
    held = peak = 0
    for _, nbytes in events:
        held += nbytes
        peak = max(peak, held)
    return peak


def bench_memory(args, model, images, labels):
    from attacks.ifgsm import IterativeFGSM
    from attacks.pgd import PGD
    steps = args.steps
    runs = {
        'bare': lambda: bare_gradient(model, images, labels),
        'ifgsm': lambda: IterativeFGSM(epsilon=32, num_steps=steps).run(model, images, labels=labels),
        'pgd': lambda: PGD(epsilon=32, num_steps=steps, random_start=False).run(model, images, labels=labels),
    }
    mb = {k: peak_tensor_memory(fn) / 2 ** 20 for k, fn in runs.items()}
    return {'batch': len(images), 'steps': steps, 'bare_peak_mb': mb['bare'], 'ifgsm_peak_mb': mb['ifgsm'],
            'pgd_peak_mb': mb['pgd'], 'ifgsm_ratio': mb['ifgsm'] / mb['bare'], 'pgd_ratio': mb['pgd'] / mb['bare']}


def print_memory(fig):
    print(f"4.   peak tensor memory (torch profiler) ÷ one bare forward+backward (batch {fig['batch']}, "
          f"{fig['steps']} steps): Iterative FGSM {fig['ifgsm_peak_mb']:.1f} MB ÷ {fig['bare_peak_mb']:.1f} MB = "
          f"{fig['ifgsm_ratio']:.3f}; PGD {fig['pgd_peak_mb']:.1f} MB = {fig['pgd_ratio']:.3f}")


# -- 5: torchattacks ----------------------------------------------------------------------------------

def bench_torchattacks(args, model, images, labels):
    try:
        import torchattacks
    except ImportError:
        return {'skipped': 'torchattacks not installed'}
    import torch
    from torch import nn
    from attacks.ifgsm import IterativeFGSM
    from attacks.pgd import PGD

    class PerPixel(nn.Module):
        """[0, 1] images → per-pixel logits ``(N·H·W, C)``, so a classification attack's mean
        cross-entropy is our summed pixel cross-entropy divided by N·H·W (same gradient sign)."""

        def __init__(self, net, exact: bool = False):
            super().__init__()
            self.net, self.exact = net, exact

        def forward(self, x01):
            x = x01 * 255.0
            if self.exact:
                # the nearest grey level in the forward pass, the identity backwards: the model
                # then sees exactly our integer iterates, not k / 255 · 255 ≠ k
                x = x + (x.round() - x).detach()
            z = self.net(x)
            return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])

    wrapped, exact = PerPixel(model), PerPixel(model, exact=True)
    eps, alpha, steps = args.ta_epsilon, 1.0, args.steps
    x01, flat = images / 255.0, labels.flatten()
    pairs = {
        'ifgsm_vs_BIM': (lambda: IterativeFGSM(eps, alpha=alpha, num_steps=steps).run(model, images, labels=labels).adv,
                         lambda net=wrapped: torchattacks.BIM(net, eps=eps / 255, alpha=alpha / 255, steps=steps)(x01, flat)),
        'pgd_vs_PGD': (lambda: PGD(eps, num_steps=steps, alpha=alpha, random_start=False).run(
                           model, images, labels=labels).adv,
                       lambda net=wrapped: torchattacks.PGD(net, eps=eps / 255, alpha=alpha / 255, steps=steps,
                                                            random_start=False)(x01, flat)),
    }
    fig = {'version': torchattacks.__version__, 'batch': len(images), 'steps': steps, 'epsilon': eps,
           'alpha': alpha, 'repeats': args.repeats}
    for name, (ours, theirs) in pairs.items():
        a, b, c = ours(), theirs(), theirs(exact)
        med = _interleaved({'ours': ours, 'theirs': theirs}, args.repeats, warmup=0)
        fig[name] = {'ours_s': med['ours'], 'theirs_s': med['theirs'], 'ratio': med['ours'] / med['theirs'],
                     'equal_pixels': float((a.round() == (b * 255).round()).float().mean()),
                     'equal_pixels_exact_inputs': float((a.round() == (c * 255).round()).float().mean())}
    return fig


def print_torchattacks(fig):
    if 'skipped' in fig:
        print(f"5.   {fig['skipped']}: skipped")
        return
    print(f"5.   ours ÷ torchattacks {fig['version']} (batch {fig['batch']}, {fig['steps']} steps, ε = "
          f"{fig['epsilon']:g}, α = {fig['alpha']:g}, median of {fig['repeats']}):")
    for name, label in (('ifgsm_vs_BIM', 'Iterative FGSM ÷ BIM'), ('pgd_vs_PGD', 'PGD ÷ PGD (no random start)')):
        r = fig[name]
        print(f"     {label:28s} {r['ours_s']:.2f} s ÷ {r['theirs_s']:.2f} s = {r['ratio']:.3f}; "
              f"equal pixels after ×255 rounding {100 * r['equal_pixels']:.2f} % "
              f"({100 * r['equal_pixels_exact_inputs']:.2f} % when the model sees whole grey levels)")


# -- 6: fitted attacks through the Runner --------------------------------------------------------------

def _suite_attacks(path: str):
    ns: dict = {}
    exec(compile(Path(REPO_ROOT, path).read_text(), path, 'exec'), ns)
    return ns['attacks'], ns['batch_size']


def bench_fitted(args, model):
    import torch
    from attacks.fitted import read_artifact_metadata
    from benchmark.datasets.builder import build_eval_dataset
    from benchmark.runner import Runner
    from benchmark.suite import load_suite
    metzen, batch_size = _suite_attacks('benchmark/suites/metzen2017.py')
    poursaeed, _ = _suite_attacks('benchmark/suites/poursaeed2018.py')
    m = args.fit_images
    fit_spec = dict(type='synthetic_cityscapes', split='train', seed=0, num_images=m)
    fit_images = next(build_eval_dataset(fit_spec).batches(min(batch_size, m)))[0]
    entries = [
        ('metzen static target (no tile)', dict(metzen[0], num_steps=args.fit_steps, epsilons=[10]),
         args.fit_steps * m),
        ('metzen hide person (128×128 tile)', dict(metzen[1], num_steps=args.fit_steps, epsilons=[10]),
         args.fit_steps * m),
        ('poursaeed universal, targeted', dict(poursaeed[0], epochs=args.fit_epochs, epsilons=[10]),
         args.fit_epochs * m),
        ('poursaeed image-dependent, targeted', dict(poursaeed[2], epochs=args.fit_epochs, epsilons=[10]),
         args.fit_epochs * m),
    ]
    fig = {'fit_images': m, 'batch_size': len(fit_images), 'universal_steps': args.fit_steps,
           'generative_epochs': args.fit_epochs, 'fits': []}
    with torch.no_grad():
        fit_labels = model(fit_images).argmax(1)
    med = _interleaved({'bare': lambda: bare_gradient(model, fit_images, fit_labels)}, args.repeats)['bare']
    fig['bare_images_per_s'] = len(fit_images) / med
    # CPU time of each attack's own fit() (the runner calls it on this thread; with one torch
    # thread all of its work runs here), beside the runner's wall time of the fit
    from unittest import mock
    from attacks.generative import GenerativePerturbation
    from attacks.universal import UniversalPerturbation
    fit_cpu = []

    def timed(fit):
        def wrapper(self, *a, **k):
            t0 = time.thread_time()
            try:
                return fit(self, *a, **k)
            finally:
                fit_cpu.append(time.thread_time() - t0)
        return wrapper

    with tempfile.TemporaryDirectory() as tmp, \
            mock.patch.object(UniversalPerturbation, 'fit', timed(UniversalPerturbation.fit)), \
            mock.patch.object(GenerativePerturbation, 'fit', timed(GenerativePerturbation.fit)):
        for label, entry, expected in entries:
            suite = load_suite(dict(
                suite_name='benchfit', dataset=dict(type='synthetic_cityscapes', split='val', seed=0, num_images=1),
                fit_dataset=fit_spec, models=[args.model], attacks=[entry], epsilons=[10],
                label_source='prediction', batch_size=batch_size, seed=0))
            out = Path(tmp) / str(len(fig['fits']))
            Runner(suite, out, progress=False, adv_dir=Path(tmp) / f'adv{len(fig["fits"])}').run()
            info = read_artifact_metadata(next(out.rglob('artifacts/*.pt')))['fit_info']
            # the runner's count over the fit; it includes the fitting split's clean pass (one
            # forward+backward per image) when the runner computes it during the fit
            grads, wall = info['fit_gradient_images'], info['fit_wall_time_s']
            if grads - expected not in (0, m):
                raise SystemExit(f'{label}: {grads} gradient images for {expected} expected (+{m} for the '
                                 'clean pass): the fit spends passes it should not')
            fig['fits'].append({'fit': label, 'attack': entry['type'], 'gradient_images': grads,
                                'expected_gradient_images': expected, 'clean_pass_images': grads - expected,
                                'wall_s': wall, 'cpu_s': fit_cpu[-1], 'images_per_s': grads / wall,
                                'images_per_cpu_s': grads / fit_cpu[-1], 'split_reads': info.get('split_reads')})
    # the suites at their size, at the measured rates: every fit of a suite costs steps (epochs) ×
    # fitting images gradient images (universal: the static-target rate for untiled fits)
    suites = {}
    rate = 'images_per_cpu_s' if CLOCK['fn'] is time.thread_time else 'images_per_s'
    for path, attacks, rate_of, per_fit in (
            ('benchmark/suites/metzen2017.py', metzen,
             lambda a: fig['fits'][1 if a.get('tile_size') else 0][rate],
             lambda a, n: a.get('num_steps', 60) * n),
            ('benchmark/suites/poursaeed2018.py', poursaeed,
             lambda a: fig['fits'][2 if a.get('mode') == 'universal' else 3][rate],
             lambda a, n: a.get('epochs', 20) * n)):
        ns: dict = {}
        exec(compile(Path(REPO_ROOT, path).read_text(), path, 'exec'), ns)
        n_fit = ns['fit_dataset']['num_images']
        fits = [(a, eps) for a in attacks if a['type'] in ('universal', 'gap')
                for eps in a.get('epsilons', ns['epsilons'])]
        suites[path] = {'fits': len(fits), 'fit_images': n_fit, 'rate': rate,
                        'gradient_images': sum(per_fit(a, n_fit) for a, _ in fits),
                        'estimated_s': sum(per_fit(a, n_fit) / rate_of(a) for a, _ in fits)}
    fig['suites'] = suites
    return fig


def print_fitted(fig):
    print(f"6.   fitted attacks through the Runner ({fig['fit_images']} fitting images, batch {fig['batch_size']}; "
          f"universal {fig['universal_steps']} steps, generative {fig['generative_epochs']} epoch(s)); "
          f"bare forward+backward at batch {fig['batch_size']}: {fig['bare_images_per_s']:.1f} images/s ({CLOCK['name']})")
    print('     | fit | gradient images = steps × images + clean pass | wall time | CPU time | images/s (CPU) |')
    for f in fig['fits']:
        print(f"     | {f['fit']} | {f['gradient_images']} = {f['expected_gradient_images']} + "
              f"{f['clean_pass_images']} | {f['wall_s']:.1f} s | {f['cpu_s']:.1f} s | "
              f"{f['images_per_s']:.1f} ({f['images_per_cpu_s']:.1f}) |")
    for path, s in fig['suites'].items():
        basis = 'CPU time' if s['rate'] == 'images_per_cpu_s' else 'wall time'
        print(f"     {path}: {s['fits']} fits on {s['fit_images']} images, {s['gradient_images']} gradient "
              f"images, about {s['estimated_s'] / 60:.0f} min per model at these rates ({basis})")


# -- 7: Square Attack's queries --------------------------------------------------------------------------

def bench_square(args, model, images, labels):
    from attacks.square import SquareAttack
    images = images[:2]
    labels = labels[:2]
    queries = {}

    def run(init):
        def go():
            r = SquareAttack(8, num_queries=args.square_queries, init=init).run(model, images, labels=labels)
            queries[init] = int(r.info['queries'].sum())
        return go

    med = _interleaved({'horizontal': run('horizontal'), 'vertical': run('vertical')}, args.repeats)
    per = {k: med[k] / queries[k] for k in med}
    return {'images': len(images), 'num_queries': args.square_queries, 'queries': queries,
            'horizontal_ms_per_query': 1e3 * per['horizontal'], 'vertical_ms_per_query': 1e3 * per['vertical'],
            'ratio': per['horizontal'] / per['vertical']}


def print_square(fig):
    print(f"7.   Square Attack per query ({fig['images']} images, {fig['num_queries']} queries each): horizontal "
          f"{fig['horizontal_ms_per_query']:.1f} ms ÷ vertical {fig['vertical_ms_per_query']:.1f} ms = "
          f"{fig['ratio']:.3f} (queries {fig['queries']['horizontal']} and {fig['queries']['vertical']})")


# -- main --------------------------------------------------------------------------------------------------

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--model', default='fcn_r18-w16_synthcity', help='a zoo model with weights')
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--only', nargs='+', choices=SECTIONS, help='sections to run (default: all)')
    p.add_argument('--num-images', type=int, default=4, help='images of the grid runs (section grid)')
    p.add_argument('--epsilons', type=float, nargs='+', help="the grid's ε (default Arnab et al.'s 0.25 ... 32)")
    p.add_argument('--batch', type=int, default=2, help='batch of sections iteration, memory, torchattacks, square')
    p.add_argument('--steps', type=int, default=10, help='iterations of sections iteration, memory, torchattacks')
    p.add_argument('--repeats', type=int, default=9, help='timed repeats (median)')
    p.add_argument('--ta-epsilon', type=float, default=8.0, help='ε of the torchattacks comparison')
    p.add_argument('--fit-images', type=int, default=16, help='fitting images (suites: 64)')
    p.add_argument('--fit-steps', type=int, default=5, help='universal perturbation steps (suite: 60)')
    p.add_argument('--fit-epochs', type=int, default=1, help='generator epochs (suite: 60)')
    p.add_argument('--square-queries', type=int, default=30, help="Square Attack's queries per image")
    p.add_argument('--json', type=Path, help='also write the figures to this JSON file')
    args = p.parse_args(argv)
    for name in ('num_images', 'batch', 'steps', 'repeats', 'fit_images', 'fit_steps',
                 'fit_epochs', 'square_queries', 'threads'):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be a positive integer")
    setup_logging()
    import logging
    logging.getLogger('benchmark').setLevel(logging.WARNING)
    import torch
    torch.set_num_threads(args.threads)
    if args.threads > 1:
        CLOCK.update(name='wall time', fn=time.perf_counter)
    sections = args.only or SECTIONS
    print(f'{args.model}, {args.threads} thread(s), torch {torch.__version__}, timed comparisons in '
          f'{CLOCK["name"]}, load average at start {os.getloadavg()[0]:.2f}', flush=True)
    figures = {'model': args.model, 'threads': args.threads, 'torch': torch.__version__, 'clock': CLOCK['name']}
    model = images = labels = None
    if set(sections) & {'iteration', 'memory', 'torchattacks', 'fitted', 'square'}:
        model = _load_model(args.model)
        images = _val_batch(args.batch)
        with torch.no_grad():
            labels = model(images).argmax(1)
    runs = {
        'grid': (lambda: bench_grid(args), print_grid),
        'iteration': (lambda: bench_iteration(args, model, images, labels), print_iteration),
        'memory': (lambda: bench_memory(args, model, images, labels), print_memory),
        'torchattacks': (lambda: bench_torchattacks(args, model, images, labels), print_torchattacks),
        'fitted': (lambda: bench_fitted(args, model), print_fitted),
        'square': (lambda: bench_square(args, model, images, labels), print_square),
    }
    for name in SECTIONS:
        if name in sections:
            t0 = time.perf_counter()
            fig = runs[name][0]()
            fig['section_wall_s'] = round(time.perf_counter() - t0, 1)
            figures[name] = fig
            runs[name][1](fig)
            sys.stdout.flush()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2, default=str) + '\n')
    if 'grid' in figures and not figures['grid']['records_identical']:
        raise SystemExit('sharing across the ε grid changed the results: this is a bug')
    return figures


if __name__ == '__main__':
    main_guard(main)
