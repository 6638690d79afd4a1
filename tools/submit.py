#!/usr/bin/env python
"""Submit a model to the leaderboard: check it, run the standard suite on it, validate the records
and write its metadata entry ``model_zoo/submissions/NAME.yaml``.

    python tools/submit.py CONFIG CHECKPOINT --name NAME [--paper CITATION] [--code URL]
    python tools/submit.py model_zoo/configs/mine/my_fcn.py https://example.org/my_fcn.pth \\
        --name my_fcn_synthcity --paper "Doe et al. 2026, ..." --code https://github.com/me/my_fcn
    python tools/submit.py CONFIG CHECKPOINT --name NAME --quick     # a smoke test first (seconds)

1. Checks, before any long computation: the name (a valid name, not a zoo model, not another
   model's submission), the config (it builds, and predicts the suite dataset's class count), the
   checkpoint (loaded without running pickled code; keys, shapes and classes; its sha256 is
   recorded), one clean forward pass on an image of the dataset, and records already stored under
   the name (they must come from the same checkpoint).
2. Runs the suite with the submitted model as its only model: by default the main job's suite
   ``benchmark/suites/demo.py`` (Arnab et al.'s 4 attacks x 8 ε on the built-in synthetic val
   images, meaningful for models trained on the built-in data); ``--suite`` takes another suite
   file (e.g. ``benchmark/suites/arnab2018_cityscapes.py --data-root data/cityscapes``).
   ``--quick`` runs a smoke subset instead (:data:`QUICK`: 2 images, FGSM and Iterative FGSM at
   ε = 2 and 8) under the suite name ``<suite>_quick``, so quick records never mix with full ones.
   Cells already stored for the same checkpoint are kept (an interrupted submission resumes).
3. Validates every record it wrote (``benchmark.integrity.check_paths``).
4. Writes the metadata entry (the fields of an entry of ``model_zoo/metafile.yaml``; format in
   ``model_zoo/submissions/README.md``) and prints what to commit and how to open a pull request.
   The checkpoint itself is not committed: host it at a URL and name that URL in the entry.

It renders nothing else (no leaderboard). Every problem with the input is one paragraph on
stderr and exit status 2, and nothing is written.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from _cli import REPO_ROOT, main_guard, setup_logging

logger = logging.getLogger('submit')

DEFAULT_SUITE = REPO_ROOT / 'benchmark' / 'suites' / 'demo.py'
SUBMISSIONS_DIR = REPO_ROOT / 'model_zoo' / 'submissions'
#: ``--quick``: a smoke subset of the suite (suite name ``<suite>_quick``)
QUICK = dict(num_images=2, attacks=[dict(type='fgsm'), dict(type='ifgsm')], epsilons=[2, 8])
#: the entry fields (a subset of model_zoo.zoo.ModelEntry's), in the order they are written
ENTRY_FIELDS = ('name', 'architecture', 'backbone', 'config', 'dataset', 'num_classes', 'weights',
                'sha256', 'parameters', 'paper', 'code', 'results')


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='mmseg config of the model (commit it with the submission)')
    p.add_argument('checkpoint', help='weights: a URL where you host them (or a local .pth file)')
    p.add_argument('--name', required=True, help='model name on the leaderboard (letters, digits, _ . + -)')
    p.add_argument('--paper', default='', help='paper (URL or citation)')
    p.add_argument('--code', default='', help='URL of the code')
    p.add_argument('--architecture', help="architecture (default: the config's decode head type)")
    p.add_argument('--backbone', help="backbone (default: the config's backbone type and depth)")
    p.add_argument('--weights-url', help='URL recorded as `weights` when CHECKPOINT is a local file '
                                         'you host there (same file, same sha256)')
    p.add_argument('--suite', default=str(DEFAULT_SUITE),
                   help='suite file (default: benchmark/suites/demo.py, the main job)')
    p.add_argument('--quick', action='store_true',
                   help='smoke test: 2 images, FGSM and Iterative FGSM at ε = 2 and 8, suite <suite>_quick')
    p.add_argument('--data-root', help="the suite dataset's data_root (real Cityscapes or VOC); for the "
                                       'built-in synthetic data: the directory it is generated in')
    p.add_argument('--results-dir', help='where records are stored (default: results/, or for --quick '
                                         'a scratch folder in the cache, $SEGBENCH_CACHE/submit_quick, so '
                                         'smoke-test records never reach the committed results)')
    p.add_argument('--submissions-dir', default=str(SUBMISSIONS_DIR),
                   help='where the metadata entry is written (default: model_zoo/submissions)')
    p.add_argument('--device', default='cpu', help='torch device (default: cpu)')
    p.add_argument('--no-progress', action='store_true', help='no progress bar')
    p.add_argument('-v', '--verbose', action='store_true')
    return p.parse_args(argv)


# -- helpers ------------------------------------------------------------------------------------
def display_path(path) -> str:
    """``path`` relative to the repository root when inside it (as it is committed), else as is."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(REPO_ROOT))
    except (ValueError, OSError):
        return str(p)


def normalize_config(config: str) -> str:
    """The config as the entry and the records name it: repository-relative when it lies in the
    repository (found from the working directory or the repository root), else as given."""
    if '::' in config:   # a package config, e.g. mmseg::pspnet/...
        return config
    p = Path(config).expanduser()
    if not p.is_file() and not p.is_absolute() and (REPO_ROOT / p).is_file():
        p = REPO_ROOT / p
    if not p.is_file():
        return config     # load_config reports it
    return display_path(p) if _inside_repo(p) else str(p.resolve())


def _inside_repo(path: Path) -> bool:
    try:
        path.resolve().relative_to(REPO_ROOT)
        return True
    except ValueError:
        return False


def _is_url(value: str) -> bool:
    return '://' in value


def read_entry(path: Path) -> Dict[str, Any]:
    """A submission entry (a YAML mapping), or a ConfigError naming the file."""
    import yaml

    from common.errors import ConfigError
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f'submission entry {path} cannot be read ({type(e).__name__}: {e}); '
                          'expected a YAML mapping written by tools/submit.py') from None
    if not isinstance(data, dict):
        raise ConfigError(f'submission entry {path} is not a YAML mapping of model fields')
    return data


def quick_overrides(suite) -> Dict[str, Any]:
    """Suite overrides of ``--quick``: :data:`QUICK` on the suite's dataset, suite ``<name>_quick``."""
    dataset = dict(suite.dataset)
    n = dataset.get('num_images')
    valid = isinstance(n, int) and not isinstance(n, bool) and n > 0
    dataset['num_images'] = min(n, QUICK['num_images']) if valid else QUICK['num_images']
    return dict(suite_name=f'{suite.name}_quick', dataset=dataset, attacks=list(QUICK['attacks']),
                epsilons=list(QUICK['epsilons']), fit_dataset=None)


def load_submission_suite(args, model: Dict[str, Any]):
    """The suite to run: ``--suite`` with the submitted model as its only model, ``--data-root``
    and ``--quick`` applied (validated by :func:`benchmark.suite.load_suite`)."""
    from benchmark.suite import load_suite
    overrides: Dict[str, Any] = {'models': [model]}
    suite = load_suite(args.suite, overrides)
    if args.data_root is not None:
        dataset = dict(suite.dataset)
        # the synthetic dataset's directory option is `root`; real datasets read `data_root`
        dataset['root' if dataset['type'] == 'synthetic_cityscapes' else 'data_root'] = args.data_root
        overrides['dataset'] = dataset
        suite = load_suite(args.suite, overrides)
    if args.quick:
        overrides.update(quick_overrides(suite))
        suite = load_suite(args.suite, overrides)
    return suite


# -- step 1: checks -----------------------------------------------------------------------------
def check_name_free(name: str, submissions_dir: Path) -> Optional[Dict[str, Any]]:
    """The name is valid and not a zoo model; returns the existing submission entry of that name
    (the caller refuses it unless it records the same checkpoint), or None."""
    from common.errors import ConfigError
    from common.names import check_name
    try:
        check_name(name, 'model')
    except ValueError as e:
        raise ConfigError(f'--name: {e}') from None
    own = submissions_dir / f'{name}.yaml'
    existing = read_entry(own) if own.is_file() else None
    from model_zoo.zoo import load_metafile
    if existing is None and name in load_metafile():
        raise ConfigError(f'--name {name} is already a model of the zoo (model_zoo/metafile.yaml); '
                          'choose another name for your model, e.g. with your method or group in it')
    return existing


def describe_architecture(segmentor) -> Tuple[str, str]:
    """``(architecture, backbone)`` read from a built mmseg segmentor: the decode head's type
    without 'Head' (the last head of a cascade) and the backbone's type with its depth."""
    from torch import nn
    head = getattr(segmentor, 'decode_head', None)
    if isinstance(head, nn.ModuleList):
        head = head[-1]
    architecture = type(head).__name__ if head is not None else type(segmentor).__name__
    if architecture.endswith('Head') and len(architecture) > 4:
        architecture = architecture[:-4]
    backbone_module = getattr(segmentor, 'backbone', None)
    backbone = type(backbone_module).__name__ if backbone_module is not None else ''
    depth = getattr(backbone_module, 'depth', None)
    if backbone and isinstance(depth, int):
        backbone += f'-{depth}'
    return architecture, backbone


@dataclasses.dataclass
class Checked:
    """What the checks established about a submission."""

    config: str                        #: the config as the entry and the records name it
    sha256: str                        #: of the checkpoint file
    num_classes: int
    parameters: int
    architecture: str
    backbone: str
    suite: Any                         #: the benchmark.suite.Suite to run
    existing: Optional[Dict[str, Any]]  #: an earlier entry of the same name and checkpoint


def check_submission(args) -> Checked:
    """Step 1: every check that needs no attack (see the module docstring)."""
    import torch

    from benchmark.datasets.builder import build_eval_dataset
    from common.errors import CheckpointError, ConfigError
    from model_zoo.builder import build_segmentor, load_weights, resolve_checkpoint
    from model_zoo.zoo import count_parameters
    from model_zoo.pixel_model import PixelSpaceModel

    from _cli import check_output_dir
    submissions_dir = Path(args.submissions_dir)
    # the name first: a bad or taken name fails before anything is built or loaded
    existing = check_name_free(args.name, submissions_dir)
    check_output_dir(submissions_dir, '--submissions-dir')
    if args.weights_url is not None and not _is_url(args.weights_url):
        raise ConfigError(f'--weights-url {args.weights_url!r} is not a URL; expected the https://... '
                          'address where the checkpoint is hosted')
    config = normalize_config(args.config)
    # the suite is validated before anything is built (its own checks name the suite file)
    suite = load_submission_suite(args, dict(name=args.name, config=config, checkpoint=args.checkpoint))
    segmentor = build_segmentor(config)
    parameters = count_parameters(segmentor)
    resolve_checkpoint(args.checkpoint)   # a missing file fails before the dataset is prepared
    dataset = build_eval_dataset(suite.dataset)
    num_classes = dataset.num_classes
    predicted = PixelSpaceModel.from_segmentor(segmentor).num_classes
    classes = ', '.join(dataset.class_names[:4]) + ', ...'
    if predicted is not None and predicted != num_classes:
        raise ConfigError(f'config {config} predicts {predicted} classes but the dataset of suite '
                          f'{suite.name} ({suite.dataset["type"]}) has {num_classes} ({classes}); a '
                          'submission is evaluated on the suite it was trained for: set num_classes='
                          f'{num_classes} in the decode (and auxiliary) head, or choose the suite of '
                          'your dataset with --suite')
    sha256 = load_weights(segmentor, args.checkpoint, num_classes=num_classes)
    if existing is not None and existing.get('sha256') != sha256:
        raise ConfigError(f'--name {args.name} is already used by the submission '
                          f'{display_path(submissions_dir / (args.name + ".yaml"))} (checkpoint sha256 '
                          f'{str(existing.get("sha256"))[:12]}..., this one {sha256[:12]}...); choose '
                          'another name, or delete that file if it is your own earlier submission')
    _check_stored_records(Path(args.results_dir) / suite.name / args.name, sha256)
    # the runner loads exactly this file: a checkpoint replaced meanwhile is refused
    suite.models[0] = dataclasses.replace(suite.models[0], sha256=sha256)
    model = PixelSpaceModel.from_segmentor(segmentor)
    image, _, image_id = dataset[0]
    try:
        with torch.no_grad():
            logits = model(image[None])
    except Exception as e:  # noqa: BLE001 - any failure of user model code becomes one paragraph
        raise ConfigError(f'the model of config {config} fails on image {image_id} of the suite '
                          f'dataset ({tuple(image.shape[1:])} pixels): {type(e).__name__}: '
                          f'{str(e).splitlines()[0] if str(e) else ""}') from None
    if logits.dim() != 4 or logits.shape[1] != num_classes:
        raise ConfigError(f'the model of config {config} outputs logits of shape {tuple(logits.shape)}; '
                          f'expected (N, {num_classes}, H, W) for the {num_classes} classes of the dataset')
    if not torch.isfinite(logits).all():
        raise CheckpointError(f'checkpoint {args.checkpoint} gives NaN or infinite logits on image '
                              f'{image_id}; no benchmark number can be computed from it')
    architecture, backbone = describe_architecture(segmentor)
    return Checked(config=config, sha256=sha256, num_classes=num_classes, parameters=parameters,
                   architecture=args.architecture or architecture, backbone=args.backbone or backbone,
                   suite=suite, existing=existing)


def _check_stored_records(model_dir: Path, sha256: str) -> None:
    """Records already stored under the model's directory must be of this checkpoint (they are
    kept and resumed from); records of another checkpoint would mix two models under one name."""
    from common.errors import ResultsError
    if not model_dir.is_dir():
        return
    for path in sorted(model_dir.glob('*.json')):
        try:
            stored = json.loads(path.read_text())['provenance']['checkpoint_sha256']
        except (OSError, ValueError, KeyError, TypeError):
            continue   # the runner verifies every stored record and names a broken one
        if stored != sha256:
            raise ResultsError(f'{display_path(model_dir)} already holds records of another checkpoint '
                               f'({path.name}: sha256 {str(stored)[:12]}..., this one {sha256[:12]}...); '
                               'delete that directory if they are your own earlier results, or choose '
                               'another --name or --results-dir')


# -- steps 2 to 4 ------------------------------------------------------------------------------
def summarize(records: List[dict], suite_name: str, dataset_key: str) -> Dict[str, float]:
    """The entry's ``results``: clean mIoU and mean IoU ratio over the suite's evaluation cells.

    The mean IoU ratio is the leaderboard's robustness score: per attack configuration (suite
    entry) the mean over ε of mIoU / clean mIoU, then the mean over attack configurations.
    Computed here from the records this run validated, rather than through
    ``leaderboard.report``, which loads and verifies a whole results tree.
    """
    from benchmark import metrics
    from benchmark.cells import CLEAN
    from common.names import canonical_json
    cells = [r for r in records if r['key']['dataset'] == dataset_key]
    clean = next((r['metrics']['miou'] for r in cells if r['key']['attack'] == CLEAN), None)
    out: Dict[str, float] = {}
    if clean is None:
        return out
    out[f'{suite_name}_clean_miou'] = round(float(clean), 4)
    ratios: Dict[str, List[float]] = {}
    for r in cells:
        key, miou = r['key'], r['metrics']['miou']
        if key['attack'] == CLEAN or miou is None or clean <= 0:
            continue
        # one attack configuration = one suite entry (its cells differ only in ε and in what ε
        # implies, e.g. Iterative FGSM's step count), as the leaderboard's variants
        spec = (r.get('provenance') or {}).get('attack_spec') or {'type': key['attack']}
        ratios.setdefault(canonical_json(spec), []).append(metrics.iou_ratio(miou, clean))
    if ratios:
        score = sum(sum(v) / len(v) for v in ratios.values()) / len(ratios)
        if math.isfinite(score):
            out[f'{suite_name}_mean_iou_ratio'] = round(score, 4)
    return out


def chance_warning(records: List[dict], dataset_key: str) -> Optional[str]:
    """A warning when the clean mIoU is near chance level by the leaderboard's own rule
    (``leaderboard.report``: below ``CHANCE_FACTOR`` x the mIoU of predicting the most frequent
    class everywhere): such a model is listed on the leaderboard without a rank."""
    import numpy as np

    from benchmark import metrics
    from benchmark.cells import CLEAN
    from leaderboard.report import CHANCE_FACTOR, majority_class_miou
    clean = next((r for r in records if r['key']['dataset'] == dataset_key and r['key']['attack'] == CLEAN),
                 None)
    if clean is None:
        return None
    conf = np.asarray(clean['confusion']['vs_ground_truth'])
    miou, chance = metrics.mean_iou(conf), majority_class_miou(conf)
    if math.isnan(miou) or miou < CHANCE_FACTOR * chance:
        return (f'WARNING: the clean mIoU ({100 * miou:.1f} %) is near chance level (below '
                f'{CHANCE_FACTOR:g} x {100 * chance:.1f} %, the mIoU of predicting the most frequent class '
                'everywhere): the leaderboard will list this model without a rank. Is the checkpoint '
                'trained on this dataset, and is the config the one it was trained with?')
    return None


def make_entry(args, checked: Checked, results: Dict[str, float]) -> Dict[str, Any]:
    """The metadata entry (fields of a metafile entry), merged into an earlier submission of the
    same checkpoint: its results of other suites are kept, empty options keep its values."""
    old = dict(checked.existing or {})
    entry = {
        'name': args.name,
        'architecture': checked.architecture,
        'backbone': checked.backbone,
        'config': checked.config,
        'dataset': checked.suite.dataset['type'],
        'num_classes': checked.num_classes,
        'weights': _weights(args, old),
        'sha256': checked.sha256,
        'parameters': checked.parameters,
        'paper': args.paper or old.get('paper', ''),
        'code': args.code or old.get('code', ''),
        'results': dict(old.get('results') or {}, **results),
    }
    return {k: entry[k] for k in ENTRY_FIELDS}


def _weights(args, old: Dict[str, Any]) -> str:
    """Where the checkpoint is hosted: --weights-url, a URL checkpoint, the URL an earlier entry of
    the same checkpoint named, or else the local path as given (the printed instructions ask for a URL)."""
    if args.weights_url:
        return args.weights_url
    if _is_url(args.checkpoint):
        return args.checkpoint
    if _is_url(str(old.get('weights', ''))):
        return old['weights']
    return args.checkpoint


def write_entry(path: Path, entry: Dict[str, Any], suite_name: str, records: str, num_records: int) -> None:
    """Write the entry atomically, with a comment header saying where it comes from."""
    import yaml

    from benchmark.provenance import now_iso
    from common.atomic import atomic_write_bytes
    header = (f'# Submission entry written by tools/submit.py on {now_iso()} from suite {suite_name}\n'
              f'# ({num_records} records under {records}). Format: '
              'model_zoo/submissions/README.md\n')
    body = yaml.safe_dump(entry, sort_keys=False, allow_unicode=True, width=100)
    atomic_write_bytes(path, (header + body).encode())


def validate_records(model_dir: Path) -> None:
    """Step 3: every record (and per-image file) under the model's directory passes the
    integrity checks of ``tools/validate_results.py``."""
    from benchmark.integrity import check_paths
    from common.errors import ResultsError
    problems = check_paths([model_dir])
    if problems:
        listed = '; '.join(str(p) for p in problems[:8])
        more = f' ... ({len(problems)} in all)' if len(problems) > 8 else ''
        raise ResultsError(f'the records of this submission fail validation: {listed}{more}. '
                           'No entry was written; delete the records named and run the same '
                           'command again to recompute them')


def instructions(entry_path: Path, checked: Checked, results_dir: Path, quick: bool,
                 weights: str, results: Dict[str, float]) -> str:
    """What was done, what to fix before committing, what to commit and how to open a pull
    request (printed at the end; a --quick run gets no commit commands)."""
    suite = checked.suite.name
    name = entry_path.stem
    records = display_path(results_dir / suite / name)
    config = checked.config
    labels = {'clean_miou': 'clean mIoU', 'mean_iou_ratio': 'mean IoU ratio'}
    scores = ', '.join(f'{labels.get(k[len(suite) + 1:], k)} {100 * v:.1f} %' for k, v in results.items())
    lines = [f'{name}: checked and evaluated on suite {suite} ({scores or "no clean mIoU"}).',
             f'  entry:   {display_path(entry_path)}',
             f'  records: {records}/', '']
    if quick:
        return '\n'.join(lines + [
            'This was a --quick smoke run: it is not a submission. Do not commit its records (delete',
            f'{records}/ when done). Run the same command without --quick to produce the records to',
            'submit; it prints what to commit.'])
    notes = []
    if not _is_url(weights):
        notes.append(f'- `weights` names the local file {weights}: upload it where others can download '
                     f'it and put that URL in {display_path(entry_path)} (the sha256 stays the same), or '
                     'run again with --weights-url URL.')
    if '::' not in config and not _inside_repo(Path(config)):
        notes.append(f'- the config {config} is outside the repository: copy it (and any _base_ '
                     'files of yours) into model_zoo/configs/ and run again with that path.')
    if notes:
        lines += ['Before you commit:'] + notes + ['']
    add = [display_path(entry_path)] + ([config] if '::' not in config else []) + [records]
    lines += ['To submit, commit these files on a branch and open a pull request:',
              f'  git checkout -b submit-{name}',
              f'  git add {" ".join(add)}',
              f'  git commit -m "Submission: {name}"',
              f'  git push -u origin submit-{name}',
              'then open a pull request from that branch on the repository\'s hosting site, naming the',
              'checkpoint URL, the paper and the code. Reviewers rerun tools/validate_results.py, may',
              'recompute cells, and review the config like code (configs are Python).']
    return '\n'.join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.results_dir is None:
        from model_zoo.builder import cache_dir
        args.results_dir = str(cache_dir() / 'submit_quick' if args.quick else REPO_ROOT / 'results')
    setup_logging(args.verbose)
    from common.errors import ConfigError
    checked = check_submission(args)
    suite = checked.suite
    logger.info('%s: checks passed (config %s, %d classes, %s parameters, checkpoint sha256 %s)',
                args.name, checked.config, checked.num_classes, f'{checked.parameters:,}',
                checked.sha256[:12])

    from benchmark.runner import Runner
    from benchmark.store import ResultStore
    outcomes = Runner(suite, args.results_dir, progress=not args.no_progress, device=args.device).run()
    paths = [o.path for o in outcomes]
    if not paths:
        raise ConfigError(f'suite {suite.name} produced no records for {args.name}')
    validate_records(Path(args.results_dir) / suite.name / args.name)
    store = ResultStore(args.results_dir)
    records = [store.read(p) for p in paths]
    results = summarize(records, suite.name, suite.dataset_key)
    entry = make_entry(args, checked, results)
    entry_path = Path(args.submissions_dir) / f'{args.name}.yaml'
    write_entry(entry_path, entry, suite.name,
                display_path(Path(args.results_dir) / suite.name / args.name), len(paths))
    print(instructions(entry_path, checked, Path(args.results_dir), args.quick, entry['weights'], results))
    warning = chance_warning(records, suite.dataset_key)
    if warning:
        print('\n' + warning)


if __name__ == '__main__':
    main_guard(main)
