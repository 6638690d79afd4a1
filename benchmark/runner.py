"""The runner: suite → cells → result records.

For each model of a suite it

1. skips the model entirely when all its cells are stored (unless ``force``),
2. builds the model once and computes the clean prediction of every image once (kept as label
   maps, together with the least-likely class map that targeted attacks are scored against),
3. runs every pending cell over the dataset in batches, accumulating per-image confusion matrices
   (adversarial prediction vs. ground truth, vs. the clean prediction, vs. the attack target),
4. writes one record per cell atomically as soon as the cell is done.

With ``jobs > 1`` the models run in that many worker processes at once (each with its share of
the CPU threads), which uses a multi-core CPU better than one process whose small convolutions
and sparse products do not scale over all cores. Every worker writes its own model's records;
the results are the same as a sequential run.

A run stopped at any point loses at most the cell in progress; the next run resumes with the
first cell not stored. A stored cell computed on a different image list is refused rather than
silently mixed.
"""
from __future__ import annotations

import hashlib
import logging
import time
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from . import metrics
from .cells import CellKey, canonical_json
from .errors import BenchmarkError, ConfigError, DatasetError, ResultsError
from .locks import DirectoryLock
from .provenance import git_state, hostname, now_iso, package_versions
from .store import ResultStore, check_writable_dir, make_record, sha256_file
from .suite import EVAL, FIT, Suite, load_suite

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

    pred: List[np.ndarray]            # (H, W) uint8 (int16 beyond 254 classes) clean predictions
    least_likely: List[np.ndarray]    # (H, W) least-likely classes
    vs_ground_truth: Optional[np.ndarray] = None   # (N, C, C) per-image clean confusion matrices
    top_probability: List[float] = dataclasses.field(default_factory=list)   # per image, pixel mean
    entropy: List[float] = dataclasses.field(default_factory=list)           # nats, per image
    forward_images: int = 0
    wall_time: float = 0.0


def _progress(total: int, desc: str, enabled: bool, position: Optional[int] = None):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, desc=desc, unit='img', dynamic_ncols=True, leave=position is None,
                position=position)


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
        force: Recompute cells that are already stored (and refit stored attack artifacts).
        models: Restrict to these model names.
        progress: Show a progress bar.
        device: Torch device.
        share_trajectories: Let the cells of an iterative FGSM entry share the steps their ε
            grid has in common (identical results, fewer gradient passes).
        jobs: Run this many models at once in worker processes (CPU only; default: the suite's
            ``jobs``, itself 1 by default). Each worker gets
            ``torch.get_num_threads() // jobs`` threads (at least one). Models start in suite
            order, so list the most expensive first.
    """

    def __init__(self, suite: Union[Suite, str, Path], results_dir: Union[str, Path] = 'results',
                 force: bool = False, models: Optional[Sequence[str]] = None,
                 progress: bool = True, device: str = 'cpu', share_trajectories: bool = True,
                 jobs: Optional[int] = None, _bar_position: Optional[int] = None):
        self.suite = suite if isinstance(suite, Suite) else load_suite(suite)
        self.share_trajectories = share_trajectories
        jobs = int(self.suite.jobs if jobs is None else jobs)
        if jobs < 1:
            raise ConfigError(f'jobs must be a positive number of worker processes, got {jobs}')
        if jobs > 1 and torch.device(device).type != 'cpu':
            raise ConfigError(f'jobs > 1 runs models in parallel CPU processes; with device '
                              f'{device!r} use jobs=1')
        self.jobs = jobs
        self._bar_position = _bar_position
        self.store = ResultStore(results_dir)
        self.force = force
        self.progress = progress
        self.device = _check_device(device)
        entries = self.suite.models
        if models:
            unknown = set(models) - {m.name for m in entries}
            if unknown:
                raise ConfigError(f'--models names {sorted(unknown)} that the suite does not list; '
                                  f'it lists {[m.name for m in entries]}')
            entries = [m for m in entries if m.name in models]
        self.entries = entries
        self._git = git_state()
        self._ckpt_sha: Dict[str, Optional[str]] = {}   # model name -> sha256 of its weights now

    # -----------------------------------------------------------------------------------------
    def run(self) -> List[CellOutcome]:
        """Run every pending cell; returns one outcome per cell of the selected models.

        Everything that can be checked without a model is checked first (results directory,
        datasets and their labels, target class ids and target images), so a mistake fails in
        seconds, not after the first model's hour of work.
        """
        self._check_results_dir()
        datasets = {EVAL: _DatasetRun(_build_dataset(self.suite.dataset))}
        if self.suite.fit_dataset is not None:
            datasets[FIT] = _DatasetRun(_build_dataset(self.suite.fit_dataset))
        self._static_maps = self._check_targets(datasets)
        outcomes: List[CellOutcome] = []
        todo = []
        for entry in self.entries:
            stored, pending = self._split_cells(entry, datasets)
            if not pending:
                logger.info('%s: all %d cells stored', entry.name, len(stored))
                outcomes.extend(stored)
                continue
            todo.append(entry)
        self._check_models(todo)
        if self.jobs > 1 and len(todo) > 1:
            return outcomes + self._run_parallel(todo)
        # a model another run is computing right now is taken last, once that run releases it
        deferred = []
        for entry in todo:
            lock = DirectoryLock(self._model_dir(entry))
            if lock.acquire(blocking=False):
                outcomes.extend(self._run_model_locked(entry, datasets, lock))
            else:
                deferred.append((entry, lock))
        for entry, lock in deferred:
            logger.info('%s: another run is computing this model; waiting for it to finish',
                        entry.name)
            lock.acquire(blocking=True)
            outcomes.extend(self._run_model_locked(entry, datasets, lock))
        return outcomes

    def _check_models(self, entries) -> None:
        """Every pending model's config parses and its checkpoint exists (downloaded once if a URL)
        and matches its sha256, before the first model is built: a typo in the last model's
        checkpoint path must not surface after the first model's hour of work. (Building and
        loading, with the key and class checks, happen when each model's turn comes.)"""
        from model_zoo.builder import load_config, resolve_checkpoint, verify_sha256
        for entry in entries:
            try:
                cfg = load_config(entry.config)
                if 'model' not in cfg:
                    raise ConfigError(f'config {entry.config} has no `model` entry; expected an '
                                      'mmseg model config')
                if entry.weights is not None:
                    verify_sha256(resolve_checkpoint(entry.weights), entry.sha256)
            except BenchmarkError as e:
                raise type(e)(f'model {entry.name}: {e}') from None

    def _model_dir(self, entry) -> Path:
        return self.store.root / self.suite.name / entry.name

    def _split_cells(self, entry, datasets):
        """``(stored outcomes, pending [(role, key, plan)])`` of one model, reading the store.

        A stored record is verified (schema, metrics against its matrices, its per-image file
        against the sha256 it names) before it is trusted; one that fails stops the run with the
        file and the reason, since silently recomputing would hide tampering or a broken disk.
        """
        stored, pending = [], []
        for role, key, plan, _ in self.suite.cell_plans(entry.name):
            if self.force or not self.store.exists(key):
                pending.append((role, key, plan))
                continue
            try:
                record = self.store.read(key, verify=True)
            except ResultsError as e:
                raise ResultsError(f'{e}. This stored cell cannot be trusted: delete it (the .json '
                                   f'and its .npz) or recompute it with --force --models {entry.name}.'
                                   ) from None
            if record['dataset']['image_ids_sha256'] != datasets[role].info['image_ids_sha256']:
                raise ResultsError(
                    f'{self.store.record_path(key)} was computed on a different image list '
                    'than this suite now selects. Use --force to recompute, or another '
                    '--results-dir to keep both.')
            self._check_same_weights(entry, key, record)
            stored.append(CellOutcome(key, self.store.record_path(key), 'stored',
                                      record['metrics']['miou']))
        return stored, pending

    def _current_checkpoint_sha(self, entry) -> Optional[str]:
        """sha256 of the weights the suite now names for ``entry`` (the metafile's or suite's
        ``sha256`` if given, else the local file's, hashed once per run); None when it cannot be
        known without a download (a URL not cached yet) or the file is gone."""
        if entry.weights is None:
            return None
        if entry.name not in self._ckpt_sha:
            digest = entry.sha256.lower() if entry.sha256 else None
            if digest is None:
                from model_zoo.builder import REPO_ROOT as MODEL_ROOT
                from model_zoo.builder import is_url, url_cache_path
                path = (url_cache_path(entry.weights) if is_url(entry.weights)
                        else Path(entry.weights).expanduser())
                if not path.is_file() and not path.is_absolute() and (MODEL_ROOT / path).is_file():
                    path = MODEL_ROOT / path
                digest = sha256_file(path) if path.is_file() else None
            self._ckpt_sha[entry.name] = digest
        return self._ckpt_sha[entry.name]

    def _check_same_weights(self, entry, key, record) -> None:
        """A stored cell computed with other weights than the suite now names (a retrained or
        replaced checkpoint under the same model name) is refused, not reported as this model's."""
        stored_sha = (record.get('provenance') or {}).get('checkpoint_sha256')
        current = self._current_checkpoint_sha(entry)
        if stored_sha and current and stored_sha.lower() != current:
            raise ResultsError(
                f'{self.store.record_path(key)} was computed with checkpoint sha256 {stored_sha[:16]}… '
                f'but model {entry.name} now names {entry.weights} (sha256 {current[:16]}…): the '
                'stored cells belong to other weights. Recompute them with --force --models '
                f'{entry.name}, keep both with another --results-dir, or give the new weights '
                'another model name.')

    def _run_model_locked(self, entry, datasets, lock) -> List[CellOutcome]:
        """Run one model's pending cells while holding its directory lock (released here)."""
        try:
            swept = self.store.sweep_temporary(lock.directory)
            if swept:
                logger.info('%s: removed %d temporary file(s) left by an interrupted run',
                            entry.name, len(swept))
            # re-read the store: another run may have computed cells while we waited
            stored, pending = self._split_cells(entry, datasets)
            if not pending:
                return stored
            return stored + self._run_model(entry, datasets, pending)
        finally:
            lock.release()

    def _check_results_dir(self) -> None:
        """The results directory (and this suite's folder in it) is writable (checked before any work)."""
        if self.store.root.exists() and not self.store.root.is_dir():
            check_writable_dir(self.store.root, '--results-dir')
        check_writable_dir(self.store.root / self.suite.name, 'the result records folder')

    def _check_targets(self, datasets) -> Dict[str, torch.Tensor]:
        """Target class ids within the dataset's classes and static target images that exist
        and fit the evaluation images; returns the ground-truth static maps, resolved once."""
        from .target_specs import resolve_static_map
        static: Dict[str, torch.Tensor] = {}
        eval_shapes = {role: tuple(d.dataset[0][1].shape) for role, d in datasets.items()}
        for spec in self.suite.attacks:
            target = spec.get('target')
            if target is None:
                continue
            where = f'suite {self.suite.name}: attack {spec["type"]} target {target}'
            if target['kind'] == 'hide_class':
                for role, data in datasets.items():
                    names = data.dataset.class_names
                    if target['hidden_class'] >= len(names):
                        raise ConfigError(f'{where}: hidden_class {target["hidden_class"]} is not a class '
                                          f'of the {data.info["name"]} dataset, whose ids are 0-'
                                          f'{len(names) - 1} ({", ".join(f"{i}={n}" for i, n in enumerate(names))})')
                continue
            try:
                gt = resolve_static_map(dict(target, source='ground_truth'), self.suite.dataset)
            except ValueError as e:
                raise ConfigError(f'{where}: {e}') from None
            for role, shape in eval_shapes.items():
                if tuple(gt.shape) != shape:
                    raise ConfigError(f'{where}: the target image is {tuple(gt.shape)} (H, W) but the '
                                      f'{role} images are {shape}; a static target needs images of '
                                      'the same size')
            if target['source'] == 'ground_truth':
                static[canonical_json(target)] = gt
        return static

    def _run_parallel(self, entries) -> List[CellOutcome]:
        """Run ``entries`` in ``self.jobs`` worker processes, one model per task.

        A failing model does not stop the others: every worker finishes (its records are
        written as it goes), then the first error is raised.
        """
        import contextlib
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        jobs = min(self.jobs, len(entries))
        threads = max(1, torch.get_num_threads() // jobs)
        logger.info('running %d models in %d worker processes, %d thread(s) each',
                    len(entries), jobs, threads)
        mp = multiprocessing.get_context('spawn')
        outcomes: List[CellOutcome] = []
        errors = []
        with contextlib.ExitStack() as stack:
            slots = None  # progress-bar rows, handed from one worker's model to the next
            if self.progress:
                slots = stack.enter_context(mp.Manager()).Queue()
                for position in range(jobs):
                    slots.put(position)
            pool = stack.enter_context(ProcessPoolExecutor(jobs, mp_context=mp))
            futures = [pool.submit(_run_model_worker, self.suite, str(self.store.root), self.force,
                                   entry.name, self.progress, str(self.device),
                                   self.share_trajectories, threads, slots,
                                   logging.getLogger().getEffectiveLevel())
                       for entry in entries]
            for entry, future in zip(entries, futures):
                try:
                    outcomes.extend(future.result())
                except Exception as e:  # noqa: BLE001 - re-raised below, after the others finish
                    logger.error('%s failed: %s', entry.name, e)
                    errors.append(e)
        if errors:
            raise errors[0]
        return outcomes

    # -----------------------------------------------------------------------------------------
    def _run_model(self, entry, datasets, pending):
        from model_zoo.zoo import build_zoo_model
        num_classes = datasets[EVAL].dataset.num_classes
        try:
            model, ckpt_sha = build_zoo_model(entry, num_classes=num_classes)
        except BenchmarkError as e:   # name the model: a suite may list many
            raise type(e)(f'model {entry.name}: {e}') from None
        model = model.to(self.device)
        model.name = entry.name
        ctx = _ModelContext(entry, model, ckpt_sha, self._static_maps)
        outcomes = []
        # attacks fitted on the training split are fitted (or loaded) before any cell applies them
        fit_plans = _unique_plans(p for _, _, p in pending if p is not None and p.requires_fit)
        if fit_plans:
            self._fit_attacks(ctx, datasets[FIT], fit_plans)
        for role in (EVAL, FIT):
            cells = [(k, p) for r, k, p in pending if r == role]
            if cells:
                outcomes += self._run_cells(ctx, datasets[role], cells)
        return outcomes

    def _clean_maps(self, ctx, data: '_DatasetRun', bar) -> 'CleanMaps':
        """Clean prediction of every image of ``data`` (computed once per model and dataset)."""
        if id(data) in ctx.clean:
            return ctx.clean[id(data)]
        model, num_classes = ctx.model, data.dataset.num_classes
        t0, fwd0 = time.time(), model.forward_images
        clean = CleanMaps([], [])
        per_image_gt = []
        dtype = np.uint8 if num_classes < 255 else np.int16
        with torch.no_grad():
            for images, labels, _ in data.dataset.batches(self.suite.batch_size):
                logits = model(images.to(self.device))
                pred = logits.argmax(1).cpu().numpy()
                # confidence of the clean prediction (Arnab et al. 2018, Sec. 7.1: mean top-class
                # probability and entropy in nats, per image averaged over pixels)
                logp = torch.log_softmax(logits.double(), dim=1)
                clean.top_probability.extend(logp.max(1).values.exp().mean((1, 2)).cpu().numpy())
                clean.entropy.extend((-(logp.exp() * logp).sum(1)).mean((1, 2)).cpu().numpy())
                clean.pred.extend(pred.astype(dtype))
                clean.least_likely.extend(logits.argmin(1).cpu().numpy().astype(dtype))
                per_image_gt.append(metrics.batch_confusion_matrices(labels.numpy(), pred, num_classes))
                if bar is not None:
                    bar.update(len(images))
        clean.vs_ground_truth = np.concatenate(per_image_gt)
        clean.forward_images = model.forward_images - fwd0
        clean.wall_time = time.time() - t0
        ctx.clean[id(data)] = clean
        return clean

    def _run_cells(self, ctx, data, cells):
        """The clean cell and every pending attack cell of one dataset."""
        attack_cells = [(k, p) for k, p in cells if p is not None]
        clean_key = next((k for k, p in cells if p is None), None)
        outcomes = []
        total = len(data.dataset) * ((id(data) not in ctx.clean) + len(attack_cells))
        bar = _progress(total, ctx.entry.name, self.progress, self._bar_position)
        try:
            clean = self._clean_maps(ctx, data, bar)
            if clean_key is not None:
                stats = {'gradient_passes_per_image': 0, 'forward_images': clean.forward_images,
                         'gradient_images': 0, 'linf_max': 0.0,
                         'prediction_confidence': {
                             'mean_top_probability': float(np.mean(clean.top_probability)),
                             'mean_entropy_nats': float(np.mean(clean.entropy))}}
                outcomes.append(self._write(clean_key, ctx, None, data, clean.vs_ground_truth, None, None,
                                            stats, clean.wall_time,
                                            info={'top_probability': np.asarray(clean.top_probability),
                                                  'entropy_nats': np.asarray(clean.entropy)}))
            for group in _groups(attack_cells, self.share_trajectories):
                key, plan = group[0]
                if bar is not None:
                    eps = ','.join(f'{p.epsilon:g}' for _, p in group)
                    bar.set_description(f'{ctx.entry.name} {plan.attack.name} ε={eps}')
                outcomes += self._run_group(group, ctx, data, clean, bar)
        finally:
            if bar is not None:
                bar.close()
        return outcomes

    def _reference_and_target(self, ctx, plan, labels, clean_pred):
        """Labels the attack is given, the target map passed to it, and the perturbation mask.

        An attack towards a target map gets the clean prediction as its labels whatever the
        suite's ``label_source``: its target is built from that prediction, and its labels only
        define the pixels to change (Metzen et al.'s ``I_o``, predicted as the hidden class on the
        clean image) and the ignored ones.
        """
        ref = labels if self.suite.label_source == 'ground_truth' else clean_pred
        target = mask = None
        posthoc = False
        if plan.target is not None:
            ref = clean_pred
            builder = ctx.target_builder(plan, self.suite)
            target = builder.target(clean_pred)
            mask = builder.mask(clean_pred)
            posthoc = builder.posthoc
        return ref, target, mask, posthoc

    def _run_group(self, cells, ctx, data, clean, bar):
        """Run cells of one suite entry together, batch by batch; returns their outcomes.

        A group of iterative FGSM cells (same entry, several ε) shares its trajectory: with step α,
        the first ⌊ε/α⌋ steps never touch the ε-ball, so they are the same for every ε ≥ that
        many steps; the largest ε is attacked from scratch and each smaller ε continues from the
        iterate where its own projection would first act (bit-identical to running it alone).
        """
        model, dataset = ctx.model, data.dataset
        num_classes = dataset.num_classes
        cells = sorted(cells, key=lambda kp: -kp[1].epsilon)
        acc = {key.cell_id: _CellAccumulator() for key, _ in cells}
        plan0 = cells[0][1]
        offset = 0
        for images, labels, _ in dataset.batches(self.suite.batch_size):
            n = len(images)
            images = images.to(self.device)
            clean_pred = torch.from_numpy(np.stack(clean.pred[offset:offset + n]).astype(np.int64))
            ll = torch.from_numpy(np.stack(clean.least_likely[offset:offset + n]).astype(np.int64))
            offset += n
            ref, target, mask, posthoc = self._reference_and_target(ctx, plan0, labels, clean_pred)
            ref = ref.to(self.device)
            target = None if target is None else target.to(self.device)
            mask = None if mask is None else mask.to(self.device)
            if len(cells) == 1:
                torch.manual_seed(self.suite.seed)
                a = acc[cells[0][0].cell_id]
                t0, fwd0, grad0 = time.time(), model.forward_images, model.gradient_images
                result = plan0.attack.run(model, images, labels=ref, target=target,
                                          mask=None if posthoc else mask)
                a.add_cost(time.time() - t0, model.forward_images - fwd0, model.gradient_images - grad0)
                advs = {cells[0][0].cell_id: (result.adv, result.info)}
            else:
                advs = self._shared_trajectories(cells, acc, model, images, ref, target,
                                                 None if posthoc else mask)
            for key, plan in cells:
                a = acc[key.cell_id]
                adv, info = advs[key.cell_id]
                t0, fwd0 = time.time(), model.forward_images
                if posthoc:   # Fischer et al.: the finished perturbation, kept on the masked pixels only
                    adv = images + (adv - images) * mask[:, None].to(adv.dtype)
                for name, values in info.items():
                    a.info.setdefault(name, []).append(np.asarray(values.detach().cpu()))
                a.linf = max(a.linf, float((adv - images).abs().max()))
                with torch.no_grad():
                    adv_pred = model.predict_labels(adv).cpu().numpy()
                a.gt.append(metrics.batch_confusion_matrices(labels.numpy(), adv_pred, num_classes))
                a.clean.append(metrics.batch_confusion_matrices(clean_pred.numpy(), adv_pred, num_classes))
                cell_target = target
                if cell_target is None and plan.attack.targeted:
                    cell_target = plan.attack.reference_target(CleanMapsView(clean_pred, ll), ref.cpu())
                if cell_target is not None:
                    a.target.append(metrics.batch_confusion_matrices(cell_target.cpu().numpy(), adv_pred,
                                                                     num_classes))
                a.add_cost(time.time() - t0, model.forward_images - fwd0, 0)
                if bar is not None:
                    bar.update(n)
        outcomes = []
        for key, plan in cells:
            a = acc[key.cell_id]
            if a.linf > plan.attack.epsilon + 1e-3:
                raise RuntimeError(f'{key.describe()}: perturbation {a.linf:.4f} exceeds '
                                   f'ε={plan.attack.epsilon}; this is a bug in the attack')
            stats = {'gradient_passes_per_image': plan.attack.gradient_passes(),
                     'forward_images': a.forward_images, 'gradient_images': a.gradient_images,
                     'linf_max': a.linf}
            if a.shared_steps:
                stats['shared_gradient_passes_per_image'] = a.shared_steps
            info = {name: np.concatenate(v) for name, v in a.info.items()}
            if info:
                stats['per_image_info'] = {name: {'mean': float(v.mean()), 'min': float(v.min()),
                                                  'max': float(v.max())} for name, v in info.items()}
            outcomes.append(self._write(key, ctx, plan, data, np.concatenate(a.gt), np.concatenate(a.clean),
                                        np.concatenate(a.target) if a.target else None, stats, a.wall,
                                        info=info, artifact=ctx.artifacts.get(id(plan))))
        return outcomes

    @staticmethod
    def _shared_trajectories(cells, acc, model, images, ref, target, mask):
        """Adversarial images of a shared-trajectory group (cells sorted by decreasing ε)."""
        from attacks.base import Attack
        leader = cells[0][1].attack
        images = Attack._check_images(images)
        ref = Attack._check_map(ref, images, 'labels')
        target = None if target is None else Attack._check_map(target, images, 'target')
        mask = None if mask is None else Attack._check_mask(mask, images)
        exact = bool(torch.equal(images, images.round())) and all(
            float(plan.attack.alpha).is_integer() for _, plan in cells)
        starts = {key.cell_id: min(plan.attack.unclipped_steps(exact), leader.num_steps)
                  for key, plan in cells[1:]}
        wanted = set(starts.values())
        snapshots = {0: images}
        out = {}
        with torch.enable_grad():
            t0, fwd0, grad0 = time.time(), model.forward_images, model.gradient_images
            x = images
            for step, x in enumerate(leader.iterate(model, images, ref, target, mask), start=1):
                if step in wanted:
                    snapshots[step] = x
            a = acc[cells[0][0].cell_id]
            a.add_cost(time.time() - t0, model.forward_images - fwd0, model.gradient_images - grad0)
            out[cells[0][0].cell_id] = (x.detach(), {})
            for key, plan in cells[1:]:
                s = starts[key.cell_id]
                t0, fwd0, grad0 = time.time(), model.forward_images, model.gradient_images
                x = snapshots[s]
                for x in plan.attack.iterate(model, images, ref, target, mask, start=x,
                                             num_steps=plan.attack.num_steps - s):
                    pass
                a = acc[key.cell_id]
                a.add_cost(time.time() - t0, model.forward_images - fwd0, model.gradient_images - grad0)
                a.shared_steps = s if a.shared_steps is None else min(a.shared_steps, s)
                out[key.cell_id] = (x.detach(), {})
        return out

    # -- fitted attacks (universal / generative perturbations) ------------------------------------
    def artifact_path(self, entry, plan) -> Path:
        """Where the fitted state of ``plan`` for ``entry`` is stored (unique per fitting setup)."""
        ident = {'model': entry.name, 'checkpoint_sha256': entry.sha256, 'attack': plan.attack.name,
                 'params': plan.cell_params(), 'epsilon': plan.epsilon,
                 'fit_dataset': self.suite.fit_dataset, 'label_source': self.suite.label_source,
                 'seed': self.suite.seed}
        digest = hashlib.sha256(canonical_json(ident).encode()).hexdigest()[:16]
        eps = f'{plan.epsilon:g}'.replace('.', 'p')
        return (self.store.root / self.suite.name / entry.name / 'artifacts'
                / f'{plan.attack.name}_eps{eps}_{digest}.pt')

    def _fit_attacks(self, ctx, data, plans):
        """Fit every fitted attack on the fitting split and store it, or load its stored artifact."""
        from attacks.fitted import FitBatch, read_artifact_metadata
        bar = _progress(len(data.dataset), f'{ctx.entry.name} clean (fitting split)', self.progress,
                        self._bar_position)
        try:
            clean = self._clean_maps(ctx, data, bar)
        finally:
            if bar is not None:
                bar.close()
        for plan in plans:
            path = self.artifact_path(ctx.entry, plan)
            run_meta = {'model': ctx.entry.name, 'checkpoint_sha256': ctx.ckpt_sha,
                        'fit_dataset': data.info, 'label_source': self.suite.label_source,
                        'target': plan.target, 'seed': self.suite.seed}
            if path.is_file() and not self.force:
                stored = read_artifact_metadata(path).get('run', {})
                if stored.get('fit_dataset', {}).get('image_ids_sha256') != data.info['image_ids_sha256']:
                    raise ResultsError(f'{path} was fitted on a different image list than this suite '
                                       'selects; use --force to refit')
                plan.attack.load(path)
                logger.info('%s: loaded %s', ctx.entry.name, path)
            else:
                def batches(plan=plan):
                    offset = 0
                    for images, labels, _ in data.dataset.batches(self.suite.batch_size):
                        n = len(images)
                        clean_pred = torch.from_numpy(np.stack(clean.pred[offset:offset + n]).astype(np.int64))
                        offset += n
                        ref, target, _, _ = self._reference_and_target(ctx, plan, labels, clean_pred)
                        yield FitBatch(images.to(self.device), ref.to(self.device),
                                       None if target is None else target.to(self.device))
                torch.manual_seed(self.suite.seed)
                t0 = time.time()
                grad0 = ctx.model.gradient_images
                plan.attack.fit(ctx.model, batches, progress=self.progress)
                plan.attack.fit_info = dict(plan.attack.fit_info, fit_wall_time_s=round(time.time() - t0, 3),
                                            fit_gradient_images=ctx.model.gradient_images - grad0)
                plan.attack.save(path, metadata=run_meta)
                logger.info('%s: fitted %s ε=%g in %.0f s -> %s', ctx.entry.name, plan.attack.name,
                            plan.epsilon, time.time() - t0, path)
            ctx.artifacts[id(plan)] = {'path': str(path.relative_to(self.store.root)),
                                       'sha256': sha256_file(path)}

    def _write(self, key, ctx, plan, data, gt, clean, target, stats, wall, info=None, artifact=None):
        entry = ctx.entry
        sha, dirty = self._git
        provenance = {'packages': package_versions(), 'git_sha': sha, 'git_dirty': dirty,
                      'seed': self.suite.seed,
                      'config_hash': _config_hash(self.suite, entry, None if plan is None else plan.spec),
                      'model_config': entry.config, 'checkpoint': entry.weights,
                      'checkpoint_sha256': ctx.ckpt_sha, 'wall_time_s': round(wall, 3),
                      'created': now_iso(), 'device': str(self.device), 'hostname': hostname(),
                      # iterative cells can differ in the last bits between thread counts
                      'torch_threads': torch.get_num_threads()}
        if getattr(entry, 'random_weights', False):
            provenance['random_weights'] = True   # asked for explicitly; the report flags it
        if plan is not None:
            provenance['attack_spec'] = plan.spec
        if artifact is not None:
            provenance['artifact'] = artifact
        record = make_record(key, dataset=data.info, class_names=list(data.dataset.class_names),
                             conf_gt=gt.sum(0), conf_clean=None if clean is None else clean.sum(0),
                             conf_target=None if target is None else target.sum(0),
                             num_images=len(gt), attack_stats=stats, provenance=provenance)
        per_image = {'vs_ground_truth': gt, 'vs_clean': clean, 'vs_target': target}
        for name, values in (info or {}).items():
            per_image[f'info_{name}'] = values
        path = self.store.write(record, per_image)
        logger.info('%s: mIoU %.4f -> %s', key.describe(), record['metrics']['miou'] or float('nan'), path)
        return CellOutcome(key, path, 'computed', record['metrics']['miou'])


class _CellAccumulator:
    """Per-image matrices, statistics and costs of one cell while its batches run."""

    def __init__(self):
        self.gt, self.clean, self.target = [], [], []
        self.info: Dict[str, List[np.ndarray]] = {}
        self.linf = 0.0
        self.wall = 0.0
        self.forward_images = 0
        self.gradient_images = 0
        self.shared_steps = None

    def add_cost(self, wall, forward_images, gradient_images):
        self.wall += wall
        self.forward_images += forward_images
        self.gradient_images += gradient_images


def _groups(cells, share: bool):
    """Cells of iterative FGSM entries grouped per suite entry (they share trajectories); every
    other cell alone. Keeps the suite's order of entries."""
    from attacks.ifgsm import IterativeFGSM
    groups: Dict[int, list] = {}
    order = []
    for key, plan in cells:
        attack = plan.attack
        if share and isinstance(attack, IterativeFGSM) and not getattr(attack, 'requires_fit', False):
            gid = id(plan.spec)
        else:
            gid = id(key)
        if gid not in groups:
            groups[gid] = []
            order.append(gid)
        groups[gid].append((key, plan))
    return [groups[g] for g in order]


class _DatasetRun:
    """A dataset of the suite with its record description (computed once)."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.info = {'name': dataset.name, 'split': dataset.split, 'root': dataset.root,
                     'image_ids_sha256': dataset.image_ids_sha256()}


class _ModelContext:
    """What the runner keeps per model: the model, clean maps per dataset, targets, artifacts."""

    def __init__(self, entry, model, ckpt_sha, static_maps: Optional[Dict[str, torch.Tensor]] = None):
        self.entry, self.model, self.ckpt_sha = entry, model, ckpt_sha
        self.clean: Dict[int, CleanMaps] = {}
        self.artifacts: Dict[int, dict] = {}
        self._static: Dict[str, torch.Tensor] = dict(static_maps or {})

    def target_builder(self, plan, suite):
        from .target_specs import TargetBuilder, resolve_static_map
        static = None
        if plan.target['kind'] == 'static':
            ident = canonical_json(plan.target)
            if ident not in self._static:
                self._static[ident] = resolve_static_map(plan.target, suite.dataset,
                                                         predict=self.model.predict_labels)
            static = self._static[ident]
        return TargetBuilder(plan.target, plan.mask, static)


def _unique_plans(plans):
    out, seen = [], set()
    for p in plans:
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


@dataclass
class CleanMapsView:
    """Clean outputs of one batch, as attacks' ``reference_target`` receives them."""

    pred: torch.Tensor            # (N, H, W) int64
    least_likely: torch.Tensor    # (N, H, W) int64


def _build_dataset(spec: dict):
    """:func:`benchmark.datasets.builder.build_eval_dataset`, with an operating-system error while
    preparing it (the built-in dataset generated into a cache directory that cannot be written,
    a full disk) reported as a :class:`DatasetError` naming the path, not a traceback."""
    from .datasets.builder import build_eval_dataset
    try:
        return build_eval_dataset(spec)
    except OSError as e:
        where = f' {e.filename}' if e.filename else ''
        hint = ''
        if spec.get('type') == 'synthetic_cityscapes' and 'root' not in spec:
            hint = (' The built-in dataset is generated into $SEGBENCH_CACHE (default '
                    '~/.cache/segbench): point SEGBENCH_CACHE at a writable directory.')
        raise DatasetError(f'cannot prepare the {spec.get("type")} dataset: {e.strerror or e}{where}; '
                           f'expected a readable dataset and a writable cache directory.{hint}') from None


def _check_device(device) -> torch.device:
    """A torch device that exists here (checked before any work)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f'--device {device!r} is not a torch device; expected cpu, cuda or '
                          'cuda:N') from None
    if dev.type == 'cuda':
        if not torch.cuda.is_available():
            raise ConfigError(f'--device {device} asks for a GPU but torch sees none here (CPU build '
                              f'of torch {torch.__version__} or no driver); use --device cpu')
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f'--device {device}: this machine has {torch.cuda.device_count()} GPU(s), '
                              f'cuda:0 to cuda:{torch.cuda.device_count() - 1}')
    elif dev.type != 'cpu':
        raise ConfigError(f'--device {device}: only cpu and cuda devices are supported')
    return dev


def _run_model_worker(suite, results_dir, force, model, progress, device, share, threads, slots,
                      log_level):
    """One model in a worker process of :meth:`Runner._run_parallel`."""
    logging.basicConfig(level=log_level, format='%(asctime)s %(levelname)s %(name)s: %(message)s',
                        datefmt='%H:%M:%S')
    for noisy in ('mmengine', 'matplotlib', 'PIL'):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    torch.set_num_threads(threads)
    position = slots.get() if slots is not None else None
    try:
        return Runner(suite, results_dir, force=force, models=[model], progress=progress,
                      device=device, share_trajectories=share, jobs=1,
                      _bar_position=position).run()
    finally:
        if slots is not None:
            slots.put(position)


def run_suite(suite, results_dir='results', **kwargs) -> List[CellOutcome]:
    """Convenience wrapper: ``Runner(suite, results_dir, **kwargs).run()``."""
    return Runner(suite, results_dir, **kwargs).run()
