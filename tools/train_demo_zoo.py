#!/usr/bin/env python
"""Train the demo models on the built-in synthetic data and record them in the metafile.

    python tools/train_demo_zoo.py                  # every demo entry, in metafile order (4-95 min each
                                                    # on one core of a 2-core CPU, ~7.5 h in all)
    python tools/train_demo_zoo.py --models fcn_r18-w16_synthcity --max-iters 200

Training uses mmengine's Runner with each entry's config. The weights (state dict only) go to the
entry's ``weights`` path; its ``sha256``, ``parameters`` and ``results`` in model_zoo/metafile.yaml
are rewritten, and a model that does not reach ``--min-miou`` on the val split is reported. The
training itself is ``tools/demo_training.py``.
"""
from __future__ import annotations

import argparse
import logging

from _cli import main_guard, setup_logging


def update_metafile(updates):
    """Rewrite sha256 / parameters / results of the given entries, keeping the header comment."""
    import yaml

    from model_zoo.zoo import METAFILE
    text = METAFILE.read_text()
    header = ''.join(line + '\n' for line in text.splitlines() if line.startswith('#'))
    data = yaml.safe_load(text)
    for item in data['models']:
        u = updates.get(item['name'])
        if u is not None:
            item['sha256'] = u['sha256']
            item['parameters'] = u['parameters']
            item['results'] = {'clean_miou_val': round(float(u['miou']), 4),
                               'train_seconds': u['train_seconds']}
    body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120)
    from common.atomic import atomic_write_bytes
    atomic_write_bytes(METAFILE, (header + body).encode())


def shared_weight_entries(zoo, entry):
    """The other demo entries that use ``entry``'s weight file (e.g. its single-scale test variants)."""
    return [e for e in zoo.values() if e.demo and e.weights == entry.weights and e.name != entry.name]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--models', nargs='+', help='names of demo entries (default: all)')
    p.add_argument('--max-iters', type=int, help='override the schedule length')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--min-miou', type=float, default=0.5, help='required clean val mIoU (default 0.5)')
    p.add_argument('--work-dir', help='keep mmengine logs/checkpoints here (default: a temp dir)')
    args = p.parse_args(argv)
    setup_logging()
    logging.getLogger('mmengine').setLevel(logging.INFO)
    from pathlib import Path

    from common.errors import ConfigError
    from demo_training import evaluate_clean_miou, train_demo_model
    from model_zoo.builder import REPO_ROOT
    from model_zoo.zoo import load_metafile
    zoo = load_metafile()
    demo = [e for e in zoo.values() if e.demo]
    if args.models:
        unknown = set(args.models) - {e.name for e in demo}
        if unknown:
            raise ConfigError(f'not demo models: {sorted(unknown)}; demo models are {[e.name for e in demo]}')
        demo = [e for e in demo if e.name in args.models]
    # entries that share a weight file (one model evaluated at several test scales) train once,
    # with the first entry's config; every entry sharing it is then evaluated with its own config
    seen, unique = set(), []
    for entry in demo:
        if entry.weights not in seen:
            seen.add(entry.weights)
            unique.append(entry)
    demo = unique
    results = {}
    for entry in demo:
        work_dir = Path(args.work_dir) / entry.name if args.work_dir else None
        out = train_demo_model(entry, work_dir=work_dir, max_iters=args.max_iters, seed=args.seed)
        results[entry.name] = out
        updates = {entry.name: out}
        print(f'{entry.name}: clean mIoU {100 * out["miou"]:.1f}%, {out["parameters"]:,} parameters, '
              f'{out["train_seconds"]:.0f} s, {out["weights"]} sha256 {out["sha256"][:12]}')
        for other in shared_weight_entries(zoo, entry):
            miou = evaluate_clean_miou(other.config, REPO_ROOT / out['weights'])
            updates[other.name] = dict(out, miou=miou)
            print(f'  {other.name} (same weights, its own config): clean mIoU {100 * miou:.1f}%')
        update_metafile(updates)
    low = {k: v['miou'] for k, v in results.items() if v['miou'] < args.min_miou}
    if low:
        print(f'WARNING: below {100 * args.min_miou:.0f}% clean mIoU: '
              + ', '.join(f'{k} ({100 * v:.1f}%)' for k, v in low.items()))
        raise SystemExit(1)


if __name__ == '__main__':
    main_guard(main)
