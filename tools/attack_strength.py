#!/usr/bin/env python
"""Attack strength on demo models, side by side in one run: PGD, SegPGD, CosPGD, MI-FGSM, APGD
with every segmentation loss, SEA (Croce, Singh & Hein 2024) and the earlier ``worst_case``
ensemble, and an iterations-vs-mIoU plot of APGD against PGD (Xiang et al., Fig. 3 layout).

    python tools/attack_strength.py                          # the full run (see docs/attack_strength.md)
    python tools/attack_strength.py --num-images 4 --steps 20 --sea-steps 60 \\
        --curve-iterations 5 10 20 40                        # a quick run, a few minutes

For each model and ε (ground-truth labels of the built-in synthetic validation images):

* every member attack runs once on the images: PGD, SegPGD and CosPGD with ``--steps``
  iterations (α as each attack's default), MI-FGSM-20, SEA's three APGD runs (``mask_ce_bal``,
  ``mask_ce_avg``, ``js``; ``--sea-steps`` iterations on SEA's 2ε/1.5ε/ε schedule, tracking the
  cross-entropy) and APGD with each other loss (``ce``, ``segpgd``, ``cospgd``, ``dlr``; ``--steps``
  iterations at ε);
* the ensembles are composed per image from those outputs with the ensembles' own rule
  (:func:`attacks.ensemble.worst_case_choice`: fewest correct pixels, the clean image first), as the
  ``sea`` and ``worst_case`` attacks select (tests/test_attacks/test_sea.py checks that they do),
  without running any member twice: **SEA** (clean + its three runs), **worst case (old)** (clean +
  PGD, SegPGD, CosPGD, MI-FGSM) and **SEA + old** (the robust suite's ensemble);
* **SEA, greedy mIoU** is SEA's reported mIoU (the authors' ``worst_case_miou``): over the
  dataset, per image, the candidate whose confusion counts lower the dataset mIoU, swapped in
  image by image until no swap lowers it; started from every candidate's own selection and from
  the per-image one, keeping the lowest (so it is at most every SEA member's mIoU, by
  construction).

Checks (the run fails if one does not hold): on every model and ε each ensemble's pixel accuracy
is at most each of its members' (a theorem of the per-image rule: it keeps, per image, the
fewest correct pixels) and SEA's greedy mIoU is at most each member's. The per-image rule's mIoU
is *not* guaranteed below every member's (mIoU is a dataset ratio, not a sum over images); the
report says where it is not.

Timing: one torch thread; the figure "s per image-pass" divides the attacks' CPU time by the
forward+backward image passes they spent (as counted by the attacks), the figure the robust
suite's cost estimate uses.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Dict, List

from _cli import REPO_ROOT, main_guard, setup_logging

DEFAULT_MODELS = ['fcn_r18-w16_synthcity', 'pspnet_r18-w16_synthcity', 'deeplabv2-aspp_r18-w16_synthcity']
SEA_LOSSES = ('mask_ce_bal', 'mask_ce_avg', 'js')
OTHER_APGD_LOSSES = ('ce', 'segpgd', 'cospgd', 'dlr')
OLD_MEMBERS = ('pgd', 'segpgd', 'cospgd', 'mifgsm')


def member_specs(steps: int, sea_steps: int) -> Dict[str, dict]:
    """Display name → attack entry (without ε), in the report's order."""
    specs = {
        f'PGD-{steps}': dict(type='pgd', num_steps=steps),
        f'SegPGD-{steps}': dict(type='segpgd', num_steps=steps),
        f'CosPGD-{steps}': dict(type='cospgd', num_steps=steps),
        'MI-FGSM-20': dict(type='mifgsm'),
    }
    for loss in SEA_LOSSES:
        specs[f'APGD-{loss}-{sea_steps} (SEA)'] = dict(type='apgd', loss=loss, num_steps=sea_steps,
                                                       schedule='sea', track_loss='ce')
    for loss in OTHER_APGD_LOSSES:
        specs[f'APGD-{loss}-{steps}'] = dict(type='apgd', loss=loss, num_steps=steps)
    return specs


def ensembles(names: List[str]) -> Dict[str, List[str]]:
    """Ensemble name → its members' display names (clean image implied as candidate 0)."""
    sea = [n for n in names if n.endswith('(SEA)')]
    old = names[:4]
    return {'SEA': sea, 'worst case (old)': old, 'SEA + old': sea + old}


def greedy_worst_miou(conf, starts):
    """SEA's dataset-level selection: the lowest mIoU reachable by swapping, image by image, the
    candidate whose confusion matrix is summed (the authors' ``worst_case_miou``, in a fixed
    order instead of shuffled rounds, from several starting selections).

    Args:
        conf: ``(K, N, C, C)`` int64 per-candidate, per-image confusion matrices.
        starts: Starting selections, each ``(N,)`` candidate indices.

    Returns:
        ``(mIoU, selection)`` of the lowest local minimum found.
    """
    import numpy as np
    from benchmark.metrics import mean_iou
    k_count, n = conf.shape[:2]
    best_miou, best_sel = float('inf'), None
    for start in starts:
        sel = np.array(start, dtype=np.int64)
        total = conf[sel, np.arange(n)].sum(0)
        current = mean_iou(total)
        changed = True
        while changed:
            changed = False
            for i in range(n):
                for k in range(k_count):
                    if k == sel[i]:
                        continue
                    candidate = total - conf[sel[i], i] + conf[k, i]
                    m = mean_iou(candidate)
                    if m < current - 1e-12:
                        total, current, changed = candidate, m, True
                        sel[i] = k
        if current < best_miou:
            best_miou, best_sel = current, sel.copy()
    return best_miou, best_sel


class Evaluated:
    """Per-image outputs of one attack on the dataset: predictions' confusion matrices and
    correct-pixel counts against the ground truth."""

    def __init__(self, conf, correct, passes):
        self.conf, self.correct, self.passes = conf, correct, passes    # passes: per image

    @property
    def passes_per_image(self) -> float:
        return float(self.passes.mean()) if len(self.passes) else 0.0

    def miou(self):
        from benchmark.metrics import mean_iou
        return mean_iou(self.conf.sum(0))

    def aacc(self):
        from benchmark.metrics import pixel_accuracy
        return pixel_accuracy(self.conf.sum(0))


def evaluate_attack(model, batches, spec, epsilon, num_classes, clock):
    """Run one attack entry (or None: the clean images) over the batches."""
    import numpy as np
    import torch
    from attacks import build_attack
    from benchmark.metrics import batch_confusion_matrices
    confs, corrects, passes, seconds = [], [], [], 0.0
    attack = None if spec is None else build_attack(spec, epsilon)
    for images, labels in batches:
        if attack is None:
            adv = images
            passes.append(np.zeros(len(images), dtype=np.int64))
        else:
            t0 = clock()
            result = attack.run(model, images, labels=labels)
            seconds += clock() - t0
            adv = result.adv
            spent = result.info.get('gradient_passes')
            passes.append(spent.numpy().astype(np.int64) if spent is not None
                          else np.full(len(images), result.gradient_passes, dtype=np.int64))
        with torch.no_grad():
            pred = model(adv).max(dim=1).indices
        lab = labels.numpy()
        confs.append(batch_confusion_matrices(lab, pred.cpu().numpy(), num_classes))
        corrects.append((((pred == labels) & (labels != 255)).flatten(1).sum(1)).cpu().numpy())
    return Evaluated(np.concatenate(confs), np.concatenate(corrects), np.concatenate(passes)), seconds


def compose(candidates: List[Evaluated]) -> Evaluated:
    """The per-image worst case over candidates (candidate 0 the clean images); its per-image
    passes are those the ensemble spends: a member counts only on images that still had a correct
    pixel before it (AutoAttack's skipping, as the ensemble attacks do)."""
    import numpy as np
    import torch
    from attacks.ensemble import worst_case_choice
    correct_all = np.stack([c.correct for c in candidates])
    chosen = worst_case_choice(torch.as_tensor(correct_all)).numpy()
    idx = np.arange(len(chosen))
    conf = np.stack([c.conf for c in candidates])[chosen, idx]
    correct = correct_all[chosen, idx]
    passes = np.zeros(len(chosen), dtype=np.int64)
    best = correct_all[0].copy()
    for cand, counts in zip(candidates[1:], correct_all[1:]):
        passes += np.where(best > 0, cand.passes, 0)
        best = np.minimum(best, counts)
    out = Evaluated(conf, correct, passes)
    out.chosen = chosen
    return out


def run(args) -> dict:
    import numpy as np
    import torch
    from benchmark.datasets.builder import build_eval_dataset
    from benchmark.metrics import pixel_accuracy
    from model_zoo.zoo import build_zoo_model, load_metafile, resolve_model
    clock = time.thread_time if args.threads == 1 else time.perf_counter
    data = build_eval_dataset(dict(type='synthetic_cityscapes', split='val', seed=0,
                                   num_images=args.num_images))
    batches = [(images, labels.long()) for images, labels, _ in data.batches(args.batch_size)]
    specs = member_specs(args.steps, args.sea_steps)
    names = list(specs)
    groups = ensembles(names)
    out = {'models': {}, 'settings': {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    total_seconds, total_passes = 0.0, 0
    for model_name in args.models:
        model, _ = build_zoo_model(resolve_model(model_name, load_metafile()))
        num_classes = len(data.class_names)
        clean, _ = evaluate_attack(model, batches, None, 1.0, num_classes, clock)
        per_eps = {}
        for eps in args.epsilons:
            results: Dict[str, Evaluated] = {}
            for name in names:
                t0 = time.perf_counter()
                results[name], seconds = evaluate_attack(model, batches, specs[name], eps, num_classes, clock)
                total_seconds += seconds
                total_passes += int(results[name].passes.sum())
                print(f'  {model_name} ε={eps:g} {name}: mIoU {100 * results[name].miou():.2f} %, '
                      f'{time.perf_counter() - t0:.0f} s', flush=True)
            row = {name: {'miou': r.miou(), 'aacc': r.aacc(), 'passes_per_image': r.passes_per_image}
                   for name, r in results.items()}
            for group, members in groups.items():
                ens = compose([clean] + [results[m] for m in members])
                row[group] = {'miou': ens.miou(), 'aacc': ens.aacc(),
                              'passes_per_image': ens.passes_per_image,
                              'wins': {('clean' if k == 0 else members[k - 1]): int((ens.chosen == k).sum())
                                       for k in range(len(members) + 1)},
                              'members': members}
                if group == 'SEA':
                    cands = [clean] + [results[m] for m in members]
                    conf = np.stack([c.conf for c in cands])
                    starts = [np.full(args.num_images, k) for k in range(len(cands))] + [ens.chosen]
                    greedy, sel = greedy_worst_miou(conf, starts)
                    row['SEA, greedy mIoU'] = {
                        'miou': greedy, 'aacc': pixel_accuracy(conf[sel, np.arange(len(sel))].sum(0)),
                        'passes_per_image': ens.passes_per_image, 'members': members}
            per_eps[f'{eps:g}'] = row
        out['models'][model_name] = {'clean': {'miou': clean.miou(), 'aacc': clean.aacc()}, 'eps': per_eps}
        if args.curve_iterations:
            out['models'][model_name]['curve'] = iteration_curve(model, batches, args, num_classes, clock)
        del model
    out['seconds_per_image_pass'] = total_seconds / max(total_passes, 1)
    out['image_passes'] = total_passes
    return out


def iteration_curve(model, batches, args, num_classes, clock):
    """mIoU after PGD (α = ε / iterations, Xiang et al.) and APGD-CE at each iteration count."""
    curve = {'epsilon': args.curve_epsilon, 'iterations': list(args.curve_iterations),
             'PGD': [], 'APGD': []}
    for it in args.curve_iterations:
        for label, spec in (('PGD', dict(type='pgd', num_steps=it)),
                            ('APGD', dict(type='apgd', num_steps=it, loss='ce'))):
            r, _ = evaluate_attack(model, batches, spec, args.curve_epsilon, num_classes, clock)
            curve[label].append(r.miou())
        print(f'  curve ε={args.curve_epsilon:g} {it} iterations: PGD {100 * curve["PGD"][-1]:.2f} %, '
              f'APGD {100 * curve["APGD"][-1]:.2f} %', flush=True)
    return curve


def check(out) -> List[str]:
    """The ensembles' guarantees; returns the violations (empty: all hold)."""
    bad = []
    for model, m in out['models'].items():
        for eps, row in m['eps'].items():
            for group in ('SEA', 'worst case (old)', 'SEA + old'):
                for member in row[group]['members']:
                    if row[group]['aacc'] > row[member]['aacc'] + 1e-12:
                        bad.append(f'{model} ε={eps}: {group} pixel accuracy {row[group]["aacc"]:.6f} '
                                   f'above {member} {row[member]["aacc"]:.6f}')
            for member in row['SEA, greedy mIoU']['members']:
                if row['SEA, greedy mIoU']['miou'] > row[member]['miou'] + 1e-12:
                    bad.append(f'{model} ε={eps}: SEA greedy mIoU above {member}')
    return bad


def report(out) -> str:
    """Markdown tables: mIoU (pixel accuracy) in % per attack, model and ε; SEA vs the old ensemble."""
    lines = []
    models = list(out['models'])
    eps_list = list(next(iter(out['models'].values()))['eps'])
    for eps in eps_list:
        lines += [f'**ε = {eps}** — mIoU % (pixel accuracy %), passes per image', '',
                  '| attack | ' + ' | '.join(models) + ' | passes |',
                  '|---|' + '---|' * (len(models) + 1)]
        rows = ['clean'] + list(out['models'][models[0]]['eps'][eps])
        for name in rows:
            cells, passes = [], ''
            for model in models:
                r = (out['models'][model]['clean'] if name == 'clean' else out['models'][model]['eps'][eps][name])
                cells.append(f'{100 * r["miou"]:.2f} ({100 * r["aacc"]:.2f})')
                if name != 'clean':
                    passes = f'{r["passes_per_image"]:.0f}'
            lines.append(f'| {name} | ' + ' | '.join(cells) + f' | {passes} |')
        lines.append('')
    lines += ['**SEA against the old worst case** (mIoU and pixel accuracy, percentage points lower '
              'with SEA; positive = SEA stronger)', '',
              '| model | ε | ΔmIoU (per image) | ΔmIoU (greedy) | Δ pixel acc. | SEA wins per image |',
              '|---|---|---|---|---|---|']
    notes = []
    for model in models:
        for eps in eps_list:
            row = out['models'][model]['eps'][eps]
            old, sea, greedy = row['worst case (old)'], row['SEA'], row['SEA, greedy mIoU']
            wins = ', '.join(f'{k.split(" ")[0]}: {v}' for k, v in sea['wins'].items())
            lines.append(f'| {model} | {eps} | {100 * (old["miou"] - sea["miou"]):+.2f} | '
                         f'{100 * (old["miou"] - greedy["miou"]):+.2f} | '
                         f'{100 * (old["aacc"] - sea["aacc"]):+.2f} | {wins} |')
            for member in sea['members']:
                if sea['miou'] > row[member]['miou'] + 1e-12:
                    notes.append(f'- {model} ε={eps}: the per-image SEA mIoU {100 * sea["miou"]:.2f} % is '
                                 f'above {member} alone ({100 * row[member]["miou"]:.2f} %) — possible: mIoU is '
                                 f'a dataset ratio; the greedy selection is not above it')
    lines.append('')
    if notes:
        lines += ['Where the per-image rule is not the lowest mIoU:', ''] + notes + ['']
    lines.append(f'Attack time: {out["seconds_per_image_pass"]:.4f} s per image and forward+backward '
                 f'pass ({out["image_passes"]} image-passes).')
    return '\n'.join(lines)


def plot(out, path: Path) -> List[Path]:
    """mIoU against iterations, PGD and APGD-CE, one panel per model (Xiang et al., Fig. 3)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    models = [m for m in out['models'] if 'curve' in out['models'][m]]
    if not models:
        return []
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.4), squeeze=False)
    for ax, model in zip(axes[0], models):
        c = out['models'][model]['curve']
        for label, style in (('PGD', 'o-'), ('APGD', 's-')):
            ax.plot(c['iterations'], [100 * v for v in c[label]], style,
                    label=f'{label}' + (' (α = ε / iterations)' if label == 'PGD' else '-CE'))
        ax.set_title(f'{model}\nε = {c["epsilon"]:g}', fontsize=9)
        ax.set_xlabel('number of iterations')
        ax.set_ylabel('mIoU (%)')
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix in ('.png', '.svg'):
        target = path.with_suffix(suffix)
        fig.savefig(target, dpi=120)
        written.append(target)
    plt.close(fig)
    return written


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--models', nargs='+', default=DEFAULT_MODELS, help='zoo models with weights')
    p.add_argument('--epsilons', type=float, nargs='+', default=[4.0, 8.0], help='ε in 0-255 units')
    p.add_argument('--num-images', type=int, default=8, help='validation images of the synthetic data')
    p.add_argument('--batch-size', type=int, default=4)
    p.add_argument('--steps', type=int, default=100, help='iterations of PGD, SegPGD, CosPGD and the '
                   'non-SEA APGD runs')
    p.add_argument('--sea-steps', type=int, default=300, help="iterations of each of SEA's APGD runs")
    p.add_argument('--curve-iterations', type=int, nargs='*', default=[20, 40, 60, 80, 100],
                   help='iteration counts of the APGD vs PGD plot (none: no plot)')
    p.add_argument('--curve-epsilon', type=float, default=8.0)
    p.add_argument('--plot', type=Path, default=REPO_ROOT / 'docs' / 'attack_strength_iterations',
                   help='plot path without suffix (.png and .svg are written)')
    p.add_argument('--json', type=Path, help='also write every figure to this JSON file')
    p.add_argument('--threads', type=int, default=1)
    args = p.parse_args(argv)
    for name in ('num_images', 'batch_size', 'steps', 'sea_steps', 'threads'):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be a positive integer")
    if any(i < 1 for i in args.curve_iterations):
        p.error('--curve-iterations must be positive integers')
    if any(not e > 0 for e in args.epsilons + [args.curve_epsilon]):
        p.error('ε must be > 0 (0-255 units)')
    setup_logging()
    import logging
    logging.getLogger('benchmark').setLevel(logging.WARNING)
    import torch
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    print(f'attack strength: {len(args.models)} models, ε {args.epsilons}, {args.num_images} images, '
          f'{args.steps} / {args.sea_steps} (SEA) iterations, {args.threads} thread(s), torch '
          f'{torch.__version__}', flush=True)
    out = run(args)
    out['wall_s'] = round(time.perf_counter() - t0, 1)
    print()
    print(report(out))
    written = plot(out, args.plot) if args.curve_iterations else []
    for path in written:
        print(f'plot: {path}')
    print(f'wall time: {out["wall_s"]:.0f} s')
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2, default=float) + '\n')
    bad = check(out)
    if bad:
        raise SystemExit('an ensemble is weaker than one of its members, which its rule excludes: '
                         'this is a bug\n' + '\n'.join(bad))
    print('checks: every ensemble\'s pixel accuracy is at most each member\'s; SEA\'s greedy mIoU is '
          'at most each member\'s')
    return out


if __name__ == '__main__':
    main_guard(main)
