"""The runner: suite → cells → result records.

For each model of a suite it

1. skips the model entirely when all its cells are stored (unless ``force``),
2. builds the model once and computes the clean prediction of every image once (kept as label
   maps, together with the least-likely class map that targeted attacks are scored against),
3. runs every pending cell over the dataset in batches, accumulating per-image confusion matrices
   (adversarial prediction vs. ground truth, vs. the clean prediction, vs. the attack target),
4. writes one record per cell atomically as soon as the cell is done.

A run stopped at any point loses at most the cell in progress; the next run resumes with the
first cell not stored. A stored cell computed on a different image list is refused rather than
silently mixed.
"""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from . import metrics
from .cells import CellKey, canonical_json
from .errors import ResultsError
from .provenance import git_state, hostname, now_iso, package_versions
from .store import ResultStore, make_record
from .suite import Suite, load_suite

logger = logging.getLogger(__name__)


@dataclass
class CellOutcome:
    key: CellKey
    path: Path
    status: str          # 'computed' or 'stored'
    miou: Optional[float] = None


@dataclass
class CleanMaps:
    """Per-image outputs on clean inputs, computed once per model."""

    pred: List[np.ndarray]            # (H, W) int16 clean predictions
    least_likely: List[np.ndarray]    # (H, W) int16 least-likely classes


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, desc=desc, unit='img', dynamic_ncols=True, leave=True)


def _config_hash(suite: Suite, entry, attack_spec: Optional[dict]) -> str:
    payload = {'dataset': suite.dataset, 'model': {'config': entry.config, 'weights': entry.weights,
                                                   'sha256': entry.sha256},
               'attack': attack_spec, 'label_source': suite.label_source, 'seed': suite.seed}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


class Runner:
    """Runs a suite into a results directory.

    Args:
        suite: A :class:`Suite` or a path to a suite file.
        results_dir: Root of the result records.
        force: Recompute cells that are already stored.
        models: Restrict to these model names.
        progress: Show a progress bar.
        device: Torch device.
    """

    def __init__(self, suite: Union[Suite, str, Path], results_dir: Union[str, Path] = 'results',
                 force: bool = False, models: Optional[Sequence[str]] = None,
                 progress: bool = True, device: str = 'cpu'):
        self.suite = suite if isinstance(suite, Suite) else load_suite(suite)
        self.store = ResultStore(results_dir)
        self.force = force
        self.progress = progress
        self.device = torch.device(device)
        entries = self.suite.models
        if models:
            unknown = set(models) - {m.name for m in entries}
            if unknown:
                from .errors import ConfigError
                raise ConfigError(f'--models names {sorted(unknown)} that the suite does not list; '
                                  f'it lists {[m.name for m in entries]}')
            entries = [m for m in entries if m.name in models]
        self.entries = entries
        self._git = git_state()

    # -----------------------------------------------------------------------------------------
    def run(self) -> List[CellOutcome]:
        """Run every pending cell; returns one outcome per cell of the selected models."""
        from .datasets.builder import build_eval_dataset
        dataset = build_eval_dataset(self.suite.dataset)
        dataset_info = {'name': dataset.name, 'split': dataset.split, 'root': dataset.root,
                        'image_ids_sha256': dataset.image_ids_sha256()}
        outcomes: List[CellOutcome] = []
        attack_grid = self.suite.attack_instances()
        for entry in self.entries:
            keys = self.suite.cells(entry.name)
            pending = []
            for key in keys:
                if self.store.exists(key) and not self.force:
                    record = self.store.read(key)
                    if record['dataset']['image_ids_sha256'] != dataset_info['image_ids_sha256']:
                        raise ResultsError(
                            f'{self.store.record_path(key)} was computed on a different image list '
                            'than this suite now selects. Use --force to recompute, or another '
                            '--results-dir to keep both.')
                    outcomes.append(CellOutcome(key, self.store.record_path(key), 'stored',
                                                record['metrics']['miou']))
                else:
                    pending.append(key)
            if not pending:
                logger.info('%s: all %d cells stored', entry.name, len(keys))
                continue
            outcomes.extend(self._run_model(entry, dataset, dataset_info, keys, pending, attack_grid))
        return outcomes

    # -----------------------------------------------------------------------------------------
    def _run_model(self, entry, dataset, dataset_info, keys, pending, attack_grid):
        from model_zoo.zoo import build_zoo_model
        model, ckpt_sha = build_zoo_model(entry, num_classes=dataset.num_classes)
        model = model.to(self.device)
        num_classes = dataset.num_classes
        bs = self.suite.batch_size
        pending_ids = {k.cell_id for k in pending}
        attacks_by_id = {}
        for key, (spec, eps, attack) in zip(keys[1:], attack_grid):
            attacks_by_id[key.cell_id] = (spec, attack)
        total = len(dataset) * (1 + len(pending_ids - {keys[0].cell_id}))   # clean pass + attack cells
        bar = _progress(total, entry.name, self.progress)
        outcomes = []
        try:
            # clean pass: once per image
            t0 = time.time()
            fwd0 = model.forward_images
            clean = CleanMaps([], [])
            per_image_gt = []
            with torch.no_grad():
                for images, labels, _ in dataset.batches(bs):
                    logits = model(images.to(self.device))
                    pred = logits.argmax(1).cpu().numpy()
                    clean.pred.extend(pred.astype(np.int16))
                    clean.least_likely.extend(logits.argmin(1).cpu().numpy().astype(np.int16))
                    per_image_gt.append(metrics.batch_confusion_matrices(labels.numpy(), pred, num_classes))
                    if bar is not None:
                        bar.update(len(images))
            if keys[0].cell_id in pending_ids:
                gt = np.concatenate(per_image_gt)
                stats = {'gradient_passes_per_image': 0, 'forward_images': model.forward_images - fwd0,
                         'gradient_images': 0, 'linf_max': 0.0}
                outcomes.append(self._write(keys[0], entry, None, dataset, dataset_info, gt, None, None,
                                            stats, time.time() - t0, ckpt_sha))
            for key in keys[1:]:
                if key.cell_id not in pending_ids:
                    continue
                spec, attack = attacks_by_id[key.cell_id]
                if bar is not None:
                    bar.set_description(f'{entry.name} {attack.name} ε={key.epsilon:g}')
                outcomes.append(self._run_cell(key, entry, spec, attack, model, dataset, dataset_info,
                                               clean, ckpt_sha, bar))
        finally:
            if bar is not None:
                bar.close()
        return outcomes

    def _run_cell(self, key, entry, spec, attack, model, dataset, dataset_info, clean, ckpt_sha, bar):
        num_classes = dataset.num_classes
        torch.manual_seed(self.suite.seed)
        t0 = time.time()
        fwd0, grad0 = model.forward_images, model.gradient_images
        gt_m, clean_m, target_m = [], [], []
        linf = 0.0
        offset = 0
        for images, labels, _ in dataset.batches(self.suite.batch_size):
            n = len(images)
            images = images.to(self.device)
            clean_pred = torch.from_numpy(np.stack(clean.pred[offset:offset + n]).astype(np.int64))
            ll = torch.from_numpy(np.stack(clean.least_likely[offset:offset + n]).astype(np.int64))
            ref = labels if self.suite.label_source == 'ground_truth' else clean_pred
            adv = attack(model, images, labels=ref.to(self.device))
            linf = max(linf, float((adv - images).abs().max()))
            with torch.no_grad():
                adv_pred = model.predict_labels(adv).cpu().numpy()
            gt_m.append(metrics.batch_confusion_matrices(labels.numpy(), adv_pred, num_classes))
            clean_m.append(metrics.batch_confusion_matrices(clean_pred.numpy(), adv_pred, num_classes))
            target = attack.reference_target(CleanMapsView(clean_pred, ll), ref) if attack.targeted else None
            if target is not None:
                target_m.append(metrics.batch_confusion_matrices(target.numpy(), adv_pred, num_classes))
            offset += n
            if bar is not None:
                bar.update(n)
        if linf > attack.epsilon + 1e-3:
            raise RuntimeError(f'{key.describe()}: perturbation {linf:.4f} exceeds ε={attack.epsilon}; '
                               'this is a bug in the attack')
        stats = {'gradient_passes_per_image': attack.gradient_passes(),
                 'forward_images': model.forward_images - fwd0,
                 'gradient_images': model.gradient_images - grad0, 'linf_max': linf}
        return self._write(key, entry, spec, dataset, dataset_info, np.concatenate(gt_m),
                           np.concatenate(clean_m), np.concatenate(target_m) if target_m else None,
                           stats, time.time() - t0, ckpt_sha)

    def _write(self, key, entry, spec, dataset, dataset_info, gt, clean, target, stats, wall, ckpt_sha):
        sha, dirty = self._git
        provenance = {'packages': package_versions(), 'git_sha': sha, 'git_dirty': dirty,
                      'seed': self.suite.seed, 'config_hash': _config_hash(self.suite, entry, spec),
                      'model_config': entry.config, 'checkpoint': entry.weights,
                      'checkpoint_sha256': ckpt_sha, 'wall_time_s': round(wall, 3),
                      'created': now_iso(), 'device': str(self.device), 'hostname': hostname()}
        record = make_record(key, dataset=dataset_info, class_names=list(dataset.class_names),
                             conf_gt=gt.sum(0), conf_clean=None if clean is None else clean.sum(0),
                             conf_target=None if target is None else target.sum(0),
                             num_images=len(gt), attack_stats=stats, provenance=provenance)
        per_image = {'vs_ground_truth': gt, 'vs_clean': clean, 'vs_target': target}
        path = self.store.write(record, per_image)
        logger.info('%s: mIoU %.4f -> %s', key.describe(), record['metrics']['miou'] or float('nan'), path)
        return CellOutcome(key, path, 'computed', record['metrics']['miou'])


@dataclass
class CleanMapsView:
    """Clean outputs of one batch, as attacks' ``reference_target`` receives them."""

    pred: torch.Tensor            # (N, H, W) int64
    least_likely: torch.Tensor    # (N, H, W) int64


def run_suite(suite, results_dir='results', **kwargs) -> List[CellOutcome]:
    """Convenience wrapper: ``Runner(suite, results_dir, **kwargs).run()``."""
    return Runner(suite, results_dir, **kwargs).run()
