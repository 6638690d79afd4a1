"""The runner, in stages: plan → generate → store → evaluate → records.

* **Plan.** The suite expands into cells per target (:meth:`Suite.cell_plans`): the target's clean
  cell, then every source × attack × ε. A white-box cell is a source evaluated on itself; a
  transfer cell is another source's adversarial images evaluated on the target. Stored cells are
  skipped (unless ``force``); a stored record is verified before it is trusted.
* **Generate** (per source): the source (a model, a model at a scale, a model's unaries or an
  ensemble: :func:`model_zoo.wrappers.build_source_model`) is built once; its clean prediction of
  every image is computed once (the attacks' labels, the least-likely classes, the target maps);
  each attack entry produces its whole ε grid with :meth:`attacks.base.Attack.run_grid` (sharing
  what the ε values have in common is the attack's business), batch by batch.
* **Store.** The adversarial images go to the :class:`~benchmark.adv_store.AdversarialStore`
  (lossless, compact, keyed by dataset, source, attack, parameters, ε and scale, written batch by
  batch), together with what generation measured per image (cost, statistics, the map targeted
  success is measured against) in small side files. An interrupted generation resumes at the first
  batch not stored.
* **Evaluate** (per target): every pending cell forwards the stored images through the target and
  accumulates per-image confusion matrices (vs. ground truth, vs. the target's clean prediction,
  vs. the attack's target map). Evaluating a target costs forward passes only: a transfer cell's
  record says so (its own gradient passes are 0; the generation cost is named under
  ``attack_stats.generation`` and stays with the source's white-box cell).

A suite that names no ``sources``/``targets`` evaluates each model on itself only; with
``jobs > 1`` its models run in worker processes. A run stopped at any point loses at most the
cells in progress; each target's results folder and each generated group are locked
(:class:`benchmark.locks.DirectoryLock`) so two runs never compute the same thing twice.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from common.atomic import atomic_write_bytes, check_writable_dir
from common.errors import BenchmarkError, ConfigError, DatasetError, ResultsError
from common.hashing import sha256_file
from common.names import canonical_json

from . import metrics
from .adv_store import AdversarialStore, AdvKey
from .cells import CellKey
from .locks import DirectoryLock
from .provenance import git_state, hostname, now_iso, package_versions
from .store import ResultStore, make_record
from .suite import EVAL, FIT, Endpoint, Suite, load_suite

logger = logging.getLogger(__name__)

GENERATION_PREFIX = 'generation_'   #: side files of the adversarial store written by the runner


@dataclass
class CellOutcome:
    key: CellKey
    path: Path
    status: str          # 'computed' or 'stored'
    miou: Optional[float] = None


@dataclass
class CleanMaps:
    """Per-image outputs on clean inputs, computed once per endpoint and dataset."""

    pred: List[np.ndarray]            # (H, W) uint8 (int16 beyond 254 classes) clean predictions
    least_likely: List[np.ndarray]    # (H, W) least-likely classes
    vs_ground_truth: Optional[np.ndarray] = None   # (N, C, C) per-image clean confusion matrices
    top_probability: List[float] = dataclasses.field(default_factory=list)   # per image, pixel mean
    entropy: List[float] = dataclasses.field(default_factory=list)           # nats, per image
    forward_images: int = 0
    wall_time: float = 0.0


@dataclass
class CleanMapsView:
    """Clean outputs of one batch, as attacks' ``reference_target`` receives them."""

    pred: torch.Tensor            # (N, H, W) int64
    least_likely: torch.Tensor    # (N, H, W) int64


def _progress(total: int, desc: str, enabled: bool, position: Optional[int] = None):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, desc=desc, unit='img', dynamic_ncols=True, leave=position is None,
                position=position)


def _config_hash(suite: Suite, entries, attack_spec: Optional[dict],
                 source: Optional[Endpoint] = None) -> str:
    models = [{'config': e.config, 'weights': e.weights, 'sha256': e.sha256} for e in entries]
    payload = {'dataset': suite.dataset, 'model': models[0] if len(models) == 1 else models,
               'attack': attack_spec, 'label_source': suite.label_source, 'seed': suite.seed}
    if source is not None:
        payload['source'] = source.spec
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


class _Need(NamedTuple):
    """Adversarial images some pending cell needs: one source × attack plan (one ε) × dataset."""

    role: str
    source: Endpoint
    plan: Any


class Runner:
    """Runs a suite into a results directory.

    Args:
        suite: A :class:`Suite` or a path to a suite file.
        results_dir: Root of the result records.
        force: Recompute cells that are already stored, regenerate their adversarial images and
            refit stored attack artifacts.
        models: Restrict to the targets built from these models (and the sources they need).
        progress: Show a progress bar.
        device: Torch device.
        share_trajectories: Let an attack share work across its ε grid
            (:meth:`~attacks.base.Attack.run_grid`; identical results, fewer gradient passes).
            False runs every ε on its own.
        jobs: Run this many models at once in worker processes (CPU only, white-box suites;
            default: the suite's ``jobs``). Each worker gets ``torch.get_num_threads() // jobs``
            threads (at least one). Models start in suite order: list the most expensive first.
        adv_dir: Root of the adversarial-example store (default: ``$SEGBENCH_ADV_DIR``, else
            :func:`benchmark.adv_store.default_root`, in the cache, out of git).
    """

    def __init__(self, suite: Union[Suite, str, Path], results_dir: Union[str, Path] = 'results',
                 force: bool = False, models: Optional[Sequence[str]] = None,
                 progress: bool = True, device: str = 'cpu', share_trajectories: bool = True,
                 jobs: Optional[int] = None, adv_dir: Optional[Union[str, Path]] = None,
                 _bar_position: Optional[int] = None):
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
        self.adv_store = AdversarialStore(adv_dir or os.environ.get('SEGBENCH_ADV_DIR') or None)
        self.force = force
        self.progress = progress
        self.device = _check_device(device)
        self._entries = {m.name: m for m in self.suite.models}
        target_ids = self.suite.target_ids()
        if models:
            unknown = set(models) - set(self._entries)
            if unknown:
                raise ConfigError(f'--models names {sorted(unknown)} that the suite does not list; '
                                  f'it lists {list(self._entries)}')
            target_ids = [t for t in target_ids
                          if set(self.suite.endpoint(t).model_names) & set(models)]
        self.target_ids = target_ids
        self._git = git_state()
        self._ckpt_sha: Dict[str, Optional[str]] = {}   # model name -> sha256 of its weights now
        self._plans = None
        self._static_maps: Dict[str, torch.Tensor] = {}
        self._models: Dict[str, Tuple[torch.nn.Module, Optional[str]]] = {}   # built suite models
        self._modules: Dict[str, torch.nn.Module] = {}                        # built endpoints
        self._clean: Dict[Tuple[str, str], CleanMaps] = {}
        self._artifacts: Dict[Tuple[str, int], dict] = {}
        self._generated: set = set()
        self._generation_cache: Dict[str, Dict[str, dict]] = {}
        self._num_classes: Optional[int] = None

    # -- plan ------------------------------------------------------------------------------------
    def run(self) -> List[CellOutcome]:
        """Run every pending cell; returns one outcome per cell of the selected targets.

        Everything that can be checked without a model is checked first (results directory,
        datasets and their labels, target class ids and target images, every model's config and
        checkpoint), so a mistake fails in seconds, not after the first model's hour of work.
        """
        self._check_results_dir()
        datasets = {EVAL: _DatasetRun(_build_dataset(self.suite.dataset))}
        if self.suite.fit_dataset is not None:
            datasets[FIT] = _DatasetRun(_build_dataset(self.suite.fit_dataset))
        self._num_classes = datasets[EVAL].dataset.num_classes
        self._static_maps = self._check_targets(datasets)
        self._plans = self.suite.attack_instances()
        outcomes: List[CellOutcome] = []
        pending: Dict[str, list] = {}
        for tid in self.target_ids:
            stored, cells = self._split_cells(tid, datasets)
            if not cells:
                logger.info('%s: all %d cells stored', tid, len(stored))
                outcomes.extend(stored)
                continue
            pending[tid] = cells
        if not pending:
            return outcomes
        needed_models = sorted({name for cells in pending.values() for _, _, _, s in cells
                                if s is not None for name in s.model_names}
                               | {name for tid in pending for name in self.suite.endpoint(tid).model_names},
                               key=list(self._entries).index)
        self._check_models([self._entries[n] for n in needed_models])
        self.adv_store.check_writable()
        if self.jobs > 1 and len(pending) > 1 and not self.suite.transfer:
            return outcomes + self._run_parallel(list(pending))
        return outcomes + self._run_targets(pending, datasets)

    def _split_cells(self, tid: str, datasets):
        """``(stored outcomes, pending [(role, key, plan, source)])`` of one target.

        A stored record is verified (schema, metrics against its matrices, its per-image file
        against the sha256 it names) before it is trusted; one that fails stops the run with the
        file and the reason, since silently recomputing would hide tampering or a broken disk.
        """
        stored, pending = [], []
        for role, key, plan, source in self.suite.cell_plans(tid, self._plans):
            if self.force or not self.store.exists(key):
                pending.append((role, key, plan, source))
                continue
            try:
                record = self.store.read(key, verify=True)
            except ResultsError as e:
                raise ResultsError(f'{e}. This stored cell cannot be trusted: delete it (the .json '
                                   f'and its .npz) or recompute it with --force --models '
                                   f'{self.suite.endpoint(tid).model_names[0]}.') from None
            if record['dataset']['image_ids_sha256'] != datasets[role].info['image_ids_sha256']:
                raise ResultsError(
                    f'{self.store.record_path(key)} was computed on a different image list '
                    'than this suite now selects. Use --force to recompute, or another '
                    '--results-dir to keep both.')
            for name in self.suite.endpoint(tid).model_names:
                self._check_same_weights(self._entries[name], key, record)
            stored.append(CellOutcome(key, self.store.record_path(key), 'stored',
                                      record['metrics']['miou']))
        return stored, pending

    # -- checks before any work ---------------------------------------------------------------------
    def _check_models(self, entries) -> None:
        """Every needed model's config parses and its checkpoint exists (downloaded once if a URL)
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

    # -- parallel white-box models ------------------------------------------------------------------
    def _run_parallel(self, target_ids) -> List[CellOutcome]:
        """Run the models of a white-box suite in ``self.jobs`` worker processes, one per task.

        A failing model does not stop the others: every worker finishes (its records are
        written as it goes), then the first error is raised.
        """
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        jobs = min(self.jobs, len(target_ids))
        threads = max(1, torch.get_num_threads() // jobs)
        logger.info('running %d models in %d worker processes, %d thread(s) each',
                    len(target_ids), jobs, threads)
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
                                   tid, self.progress, str(self.device), self.share_trajectories,
                                   threads, slots, logging.getLogger().getEffectiveLevel(),
                                   str(self.adv_store.root))
                       for tid in target_ids]
            for tid, future in zip(target_ids, futures):
                try:
                    outcomes.extend(future.result())
                except Exception as e:  # noqa: BLE001 - re-raised below, after the others finish
                    logger.error('%s failed: %s', tid, e)
                    errors.append(e)
        if errors:
            raise errors[0]
        return outcomes

    # -- stages ---------------------------------------------------------------------------------------
    def _run_targets(self, pending: Dict[str, list], datasets) -> List[CellOutcome]:
        """Generate what the pending cells need, source by source; evaluate each target as soon
        as every source it needs is generated (a white-box model right after its own generation,
        reusing the built model and its clean predictions)."""
        target_ids = list(pending)
        needs: Dict[str, List[_Need]] = {}
        waits: Dict[str, set] = {}
        for tid in target_ids:
            waits[tid] = set()
            for role, _, plan, source in pending[tid]:
                if plan is None:
                    continue
                needs.setdefault(source.id, [])
                if not any(n.role == role and n.plan is plan for n in needs[source.id]):
                    needs[source.id].append(_Need(role, source, plan))
                waits[tid].add(source.id)
        outcomes: List[CellOutcome] = []
        order = [s.id for s in self.suite.sources if s.id in needs]
        done: set = set()
        remaining = list(target_ids)
        for sid in order:
            self._generate(needs[sid], datasets)
            done.add(sid)
            for tid in list(remaining):
                if waits[tid] <= done:
                    outcomes += self._evaluate_locked(tid, datasets)
                    remaining.remove(tid)
            self._release_modules()
        for tid in remaining:
            outcomes += self._evaluate_locked(tid, datasets)
        self._release_modules()
        return outcomes

    def _release_modules(self) -> None:
        """Drop built models (one source's worth stays in memory at a time)."""
        self._models.clear()
        self._modules.clear()

    # -- building -------------------------------------------------------------------------------------
    def _model(self, name: str):
        """The built PixelSpaceModel of a suite model and its checkpoint sha256 (built once)."""
        if name not in self._models:
            from model_zoo.zoo import build_zoo_model
            entry = self._entries[name]
            num_classes = self._num_classes
            try:
                model, ckpt_sha = build_zoo_model(entry, num_classes=num_classes)
            except BenchmarkError as e:   # name the model: a suite may list many
                raise type(e)(f'model {entry.name}: {e}') from None
            model = model.to(self.device)
            model.name = entry.name
            self._models[name] = (model, ckpt_sha)
        return self._models[name]

    def _module(self, endpoint: Endpoint) -> torch.nn.Module:
        """The built module of a source or target (a model, at a scale, a part, an ensemble)."""
        if endpoint.id not in self._modules:
            from model_zoo.wrappers import build_source_model
            try:
                module, _ = build_source_model(endpoint.spec, lambda name: self._model(name)[0])
            except ValueError as e:
                raise ConfigError(f'suite {self.suite.name}: {endpoint.id}: {e}') from None
            self._modules[endpoint.id] = module.to(self.device)
        return self._modules[endpoint.id]

    def _checkpoints(self, endpoint: Endpoint) -> List[Optional[str]]:
        return [self._model(name)[1] for name in endpoint.model_names]

    def _clean_maps(self, endpoint: Endpoint, role: str, data: '_DatasetRun', bar=None) -> CleanMaps:
        """Clean prediction of every image of ``data`` by ``endpoint`` (once per run)."""
        if (endpoint.id, role) in self._clean:
            if bar is not None:
                bar.update(0)
            return self._clean[(endpoint.id, role)]
        model, num_classes = self._module(endpoint), data.dataset.num_classes
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
                logp = torch.log_softmax(torch.Tensor.double(logits), dim=1)
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
        self._clean[(endpoint.id, role)] = clean
        return clean

    def _target_builder(self, plan, source: Endpoint):
        from .target_specs import TargetBuilder, resolve_static_map
        static = None
        if plan.target['kind'] == 'static':
            ident = canonical_json(plan.target)
            key = ident if plan.target['source'] == 'ground_truth' else f'{source.id}:{ident}'
            if key not in self._static_maps:
                self._static_maps[key] = resolve_static_map(
                    plan.target, self.suite.dataset, predict=self._module(source).predict_labels)
            static = self._static_maps[key]
        return TargetBuilder(plan.target, plan.mask, static)

    def _reference_and_target(self, plan, source, labels, clean_pred):
        """Labels the attack is given, the target map passed to it, the mask and its mode.

        An attack towards a target map gets the clean prediction as its labels whatever the
        suite's ``label_source``: its target is built from that prediction, and its labels only
        define the pixels to change (Metzen et al.'s ``I_o``, predicted as the hidden class on the
        clean image) and the ignored ones.
        """
        ref = labels if self.suite.label_source == 'ground_truth' else clean_pred
        target = mask = None
        mask_mode = 'project'
        if plan.target is not None:
            ref = clean_pred
            builder = self._target_builder(plan, source)
            target = builder.target(clean_pred)
            mask = builder.mask(clean_pred)
            mask_mode = 'posthoc' if builder.posthoc else 'project'
        return ref, target, mask, mask_mode

    # -- generate -------------------------------------------------------------------------------------
    def _adv_key(self, role: str, source: Endpoint, plan) -> AdvKey:
        data_key = self.suite.dataset_key if role == EVAL else self.suite.fit_dataset_key
        digest = ','.join(str(self._current_checkpoint_sha(self._entries[n]))
                          for n in source.model_names)
        params = dict(plan.cell_params())
        params['_seed'] = self.suite.seed   # random starts and fitting draw from the suite's seed
        if plan.requires_fit:               # the fitted state depends on the fitting split
            params['_fit_dataset'] = self.suite.fit_dataset
        return AdvKey(dataset=data_key, source=source.id, attack=plan.attack.name, params=params,
                      epsilon=plan.epsilon, scale=source.scale, label_source=self.suite.label_source,
                      source_digest=hashlib.sha256(digest.encode()).hexdigest()[:16])

    def _generate(self, needs: List[_Need], datasets) -> None:
        """Generate (or find stored) the adversarial images of one source's needs."""
        source = needs[0].source
        fit = [n.plan for n in needs if n.plan.requires_fit]
        if fit:
            self._fit_attacks(source, datasets[FIT], _unique_plans(fit))
        for role in (EVAL, FIT):
            role_needs = [n for n in needs if n.role == role]
            if not role_needs:
                continue
            data = datasets[role]
            groups: Dict[int, List[_Need]] = {}
            for n in role_needs:
                share = self.share_trajectories and not n.plan.requires_fit
                groups.setdefault(id(n.plan.spec) if share else id(n.plan), []).append(n)
            todo = []
            for group in groups.values():
                keys = [self._adv_key(role, source, n.plan) for n in group]
                if not self.force and all(
                        self.adv_store.has(k, data.dataset.image_ids()) and k.key_hash in self._generated
                        or self._generation_complete(k, data) for k in keys):
                    continue
                todo.append((group, keys))
            if not todo:
                continue
            total = len(data.dataset) * (((source.id, role) not in self._clean) + len(todo))
            bar = _progress(total, f'generate {source.id}', self.progress, self._bar_position)
            try:
                clean = self._clean_maps(source, role, data, bar)
                for group, keys in todo:
                    if bar is not None:
                        eps = ','.join(f'{n.plan.epsilon:g}' for n in group)
                        bar.set_description(f'generate {source.id} {group[0].plan.attack.name} ε={eps}')
                    self._generate_group(source, group, keys, data, clean, bar)
            finally:
                if bar is not None:
                    bar.close()

    def _generation_complete(self, key: AdvKey, data) -> bool:
        """Every image of ``data`` stored under ``key`` with its generation side file."""
        ids = data.dataset.image_ids()
        if not self.adv_store.has(key, ids):
            return False
        return not (set(ids) - set(self._read_generation(key)))

    def _generate_group(self, source, group: List[_Need], keys: List[AdvKey], data, clean, bar) -> None:
        """One attack entry's ε values (a grid when they share work), batch by batch."""
        model = self._module(source)
        epsilons = [n.plan.epsilon for n in group]
        with contextlib.ExitStack() as locks:
            for key in keys:   # two runs never generate the same group at once
                lock = DirectoryLock(self.adv_store.group_dir(key))
                if not lock.acquire(blocking=False):
                    logger.info('%s: another run is generating it; waiting', key.describe())
                    lock.acquire(blocking=True)
                locks.callback(lock.release)
                self._generation_cache.pop(key.key_hash, None)   # another run may have written it
            if self.force:
                for key in keys:
                    if key.key_hash not in self._generated:
                        self.adv_store.discard(key)
                        self._generation_cache.pop(key.key_hash, None)
            self.adv_store.sweep_temporary()
            # images complete under each key: stored, with their generation side file (read once)
            complete = [set(self.adv_store.stored_ids(k)) & set(self._read_generation(k)) for k in keys]
            offset = 0
            for images, labels, ids in data.dataset.batches(self.suite.batch_size):
                n = len(images)
                sl = slice(offset, offset + n)
                offset += n
                # a batch missing for any ε is generated for the whole grid again (the stored ε
                # come out bit-identical), so its records and costs never depend on where an
                # earlier run was interrupted
                todo = [] if all(set(ids) <= c for c in complete) else list(range(len(keys)))
                if not todo:
                    if bar is not None:
                        bar.update(n)
                    continue
                images = images.to(self.device)
                clean_pred = torch.from_numpy(np.stack(clean.pred[sl]).astype(np.int64))
                ll = torch.from_numpy(np.stack(clean.least_likely[sl]).astype(np.int64))
                plan0 = group[0].plan
                ref, target, mask, mask_mode = self._reference_and_target(plan0, source, labels, clean_pred)
                ref = ref.to(self.device)
                target = None if target is None else target.to(self.device)
                mask = None if mask is None else mask.to(self.device)
                costs = [dict(forward_images=0, gradient_images=0, wall=0.0) for _ in todo]

                @contextlib.contextmanager
                def meter(i):
                    t0, f0, g0 = time.time(), model.forward_images, model.gradient_images
                    try:
                        yield
                    finally:
                        costs[i]['wall'] += time.time() - t0
                        costs[i]['forward_images'] += model.forward_images - f0
                        costs[i]['gradient_images'] += model.gradient_images - g0

                torch.manual_seed(self.suite.seed)
                if len(todo) > 1:
                    results = plan0.attack.run_grid(model, images, [epsilons[i] for i in todo],
                                                    labels=ref, target=target, mask=mask,
                                                    mask_mode=mask_mode, meter=meter)
                else:
                    with meter(0):
                        results = [group[todo[0]].plan.attack.run(model, images, labels=ref,
                                                                  target=target, mask=mask,
                                                                  mask_mode=mask_mode)]
                for j, i in enumerate(todo):
                    plan, key, result = group[i].plan, keys[i], results[j]
                    adv = result.adv
                    linf = float((adv - images).abs().max())
                    if linf > plan.epsilon + 1e-3:
                        raise RuntimeError(f'{key.describe()}: perturbation {linf:.4f} exceeds '
                                           f'ε={plan.epsilon}; this is a bug in the attack')
                    cell_target = target
                    if cell_target is None and plan.attack.targeted:
                        cell_target = plan.attack.reference_target(CleanMapsView(clean_pred, ll), ref.cpu())
                    self.adv_store.put(key, ids, images.cpu(), adv.cpu())
                    self._write_generation(key, ids, result, cell_target, linf, costs[j], plan)
                    self._generated.add(key.key_hash)
                    complete[i].update(ids)
                if bar is not None:
                    bar.update(n)

    @staticmethod
    def _generation_file(key_dir: Path, ids: Sequence[str]) -> Path:
        digest = hashlib.sha256('\n'.join(ids).encode()).hexdigest()[:16]
        return key_dir / f'{GENERATION_PREFIX}{digest}.npz'

    def _write_generation(self, key, ids, result, cell_target, linf, cost, plan) -> None:
        """What generation measured for one batch, beside its adversarial images."""
        arrays = {f'info_{k}': np.asarray(v.detach().cpu()) for k, v in result.info.items()}
        if cell_target is not None:
            t = cell_target.cpu().numpy()
            arrays['target_map'] = t.astype(np.uint8 if t.max(initial=0) < 256 and t.min(initial=0) >= 0
                                            else np.int16)
        meta = {'image_ids': list(ids), 'linf_max': linf,
                'gradient_passes_per_image': int(result.gradient_passes if result.gradient_passes is not None
                                                 else plan.attack.gradient_passes()),
                'shared_gradient_passes_per_image': int(result.shared_gradient_passes or 0),
                'forward_images': int(cost['forward_images']),
                'gradient_images': int(cost['gradient_images']), 'wall_time_s': float(cost['wall'])}
        arrays['meta'] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(self._generation_file(self.adv_store.group_dir(key), ids), buf.getvalue())
        self._generation_cache.pop(key.key_hash, None)

    def _read_generation(self, key: AdvKey) -> Dict[str, dict]:
        """Per image id: ``{'meta': batch meta, 'info': {name: value}, 'target_map': array|None}``
        (read once per key and run; a write forgets it)."""
        if key.key_hash not in self._generation_cache:
            self._generation_cache[key.key_hash] = self._load_generation(key)
        return self._generation_cache[key.key_hash]

    def _load_generation(self, key: AdvKey) -> Dict[str, dict]:
        out: Dict[str, dict] = {}
        directory = self.adv_store.group_dir(key)
        if not directory.is_dir():
            return out
        for path in sorted(directory.glob(f'{GENERATION_PREFIX}*.npz')):
            try:
                with np.load(path, allow_pickle=False) as z:
                    arrays = {k: z[k] for k in z.files}
                meta = json.loads(arrays.pop('meta').tobytes().decode())
            except (OSError, ValueError, KeyError) as e:
                raise ResultsError(f'{path}: cannot be read ({e}); delete it to generate its batch '
                                   'again') from None
            target_map = arrays.pop('target_map', None)
            for i, image_id in enumerate(meta['image_ids']):
                out[image_id] = {'meta': meta, 'batch_size': len(meta['image_ids']),
                                 'info': {k[len('info_'):]: v[i] for k, v in arrays.items()},
                                 'target_map': None if target_map is None else target_map[i]}
        return out

    # -- fitted attacks (universal / generative perturbations) ------------------------------------------
    def artifact_path(self, source: Endpoint, plan) -> Path:
        """Where the fitted state of ``plan`` on ``source`` is stored (unique per fitting setup)."""
        entries = [self._entries[n] for n in source.model_names]
        ident = {'model': source.id if len(entries) > 1 or not source.is_plain else entries[0].name,
                 'checkpoint_sha256': entries[0].sha256 if len(entries) == 1 else [e.sha256 for e in entries],
                 'attack': plan.attack.name, 'params': plan.cell_params(), 'epsilon': plan.epsilon,
                 'fit_dataset': self.suite.fit_dataset, 'label_source': self.suite.label_source,
                 'seed': self.suite.seed}
        if not source.is_plain:
            ident['source'] = source.spec
        digest = hashlib.sha256(canonical_json(ident).encode()).hexdigest()[:16]
        eps = f'{plan.epsilon:g}'.replace('.', 'p')
        return (self.store.root / self.suite.name / source.id / 'artifacts'
                / f'{plan.attack.name}_eps{eps}_{digest}.pt')

    def _fit_attacks(self, source: Endpoint, data, plans) -> None:
        """Fit every fitted attack on the fitting split and store it, or load its stored artifact."""
        from attacks.fitted import FitBatch, read_artifact_metadata
        model = self._module(source)
        bar = _progress(len(data.dataset), f'{source.id} clean (fitting split)', self.progress,
                        self._bar_position)
        try:
            clean = self._clean_maps(source, FIT, data, bar)
        finally:
            if bar is not None:
                bar.close()
        for plan in plans:
            if (source.id, id(plan)) in self._artifacts:
                continue
            path = self.artifact_path(source, plan)
            run_meta = {'model': source.id, 'checkpoint_sha256': self._checkpoints(source)[0]
                        if len(source.model_names) == 1 else self._checkpoints(source),
                        'fit_dataset': data.info, 'label_source': self.suite.label_source,
                        'target': plan.target, 'seed': self.suite.seed}
            if path.is_file() and not self.force:
                stored = read_artifact_metadata(path).get('run', {})
                if stored.get('fit_dataset', {}).get('image_ids_sha256') != data.info['image_ids_sha256']:
                    raise ResultsError(f'{path} was fitted on a different image list than this suite '
                                       'selects; use --force to refit')
                plan.attack.load(path)
                logger.info('%s: loaded %s', source.id, path)
            else:
                def batches(plan=plan):
                    offset = 0
                    for images, labels, _ in data.dataset.batches(self.suite.batch_size):
                        n = len(images)
                        clean_pred = torch.from_numpy(np.stack(clean.pred[offset:offset + n]).astype(np.int64))
                        offset += n
                        ref, target, _, _ = self._reference_and_target(plan, source, labels, clean_pred)
                        yield FitBatch(images.to(self.device), ref.to(self.device),
                                       None if target is None else target.to(self.device))
                torch.manual_seed(self.suite.seed)
                t0 = time.time()
                grad0 = model.gradient_images
                plan.attack.fit(model, batches, progress=self.progress)
                plan.attack.fit_info = dict(plan.attack.fit_info, fit_wall_time_s=round(time.time() - t0, 3),
                                            fit_gradient_images=model.gradient_images - grad0)
                plan.attack.save(path, metadata=run_meta)
                logger.info('%s: fitted %s ε=%g in %.0f s -> %s', source.id, plan.attack.name,
                            plan.epsilon, time.time() - t0, path)
            self._artifacts[(source.id, id(plan))] = {'path': str(path.relative_to(self.store.root)),
                                                      'sha256': sha256_file(path)}

    # -- evaluate -------------------------------------------------------------------------------------
    def _evaluate_locked(self, tid: str, datasets) -> List[CellOutcome]:
        """Evaluate one target's pending cells while holding its results folder's lock."""
        lock = DirectoryLock(self.store.root / self.suite.name / tid)
        if not lock.acquire(blocking=False):
            logger.info('%s: another run is computing this model; waiting for it to finish', tid)
            lock.acquire(blocking=True)
        try:
            swept = self.store.sweep_temporary(lock.directory)
            if swept:
                logger.info('%s: removed %d temporary file(s) left by an interrupted run', tid, len(swept))
            # re-read the store: another run may have computed cells while we waited
            stored, pending = self._split_cells(tid, datasets)
            if not pending:
                return stored
            return stored + self._evaluate(tid, pending, datasets)
        finally:
            lock.release()

    def _evaluate(self, tid: str, pending, datasets) -> List[CellOutcome]:
        target = self.suite.endpoint(tid)
        outcomes = []
        for role in (EVAL, FIT):
            cells = [(k, p, s) for r, k, p, s in pending if r == role]
            if not cells:
                continue
            data = datasets[role]
            # adversarial images a cell needs but that are not stored (e.g. deleted from the cache
            # since the run started) are generated now
            missing = [_Need(role, s, p) for _, p, s in cells
                       if p is not None and not self._generation_complete(self._adv_key(role, s, p), data)]
            for sid in dict.fromkeys(n.source.id for n in missing):
                self._generate([n for n in missing if n.source.id == sid], datasets)
            attack_cells = [(k, p, s) for k, p, s in cells if p is not None]
            clean_key = next((k for k, p, _ in cells if p is None), None)
            total = len(data.dataset) * (((tid, role) not in self._clean) + len(attack_cells))
            bar = _progress(total, f'evaluate {tid}', self.progress, self._bar_position)
            try:
                clean = self._clean_maps(target, role, data, bar)
                if clean_key is not None:
                    stats = {'gradient_passes_per_image': 0, 'forward_images': clean.forward_images,
                             'gradient_images': 0, 'linf_max': 0.0,
                             'prediction_confidence': {
                                 'mean_top_probability': float(np.mean(clean.top_probability)),
                                 'mean_entropy_nats': float(np.mean(clean.entropy))}}
                    outcomes.append(self._write(clean_key, target, None, None, data,
                                                clean.vs_ground_truth, None, None, stats, clean.wall_time,
                                                info={'top_probability': np.asarray(clean.top_probability),
                                                      'entropy_nats': np.asarray(clean.entropy)}))
                for key, plan, source in attack_cells:
                    if bar is not None:
                        bar.set_description(f'evaluate {tid} {plan.attack.name} ε={plan.epsilon:g}'
                                            + ('' if key.source_model is None else f' from {source.id}'))
                    outcomes.append(self._evaluate_cell(key, plan, source, target, role, data, clean, bar))
            finally:
                if bar is not None:
                    bar.close()
        return outcomes

    def _evaluate_cell(self, key, plan, source, target, role, data, clean, bar) -> CellOutcome:
        """Forward one cell's stored adversarial images through the target."""
        model = self._module(target)
        num_classes = data.dataset.num_classes
        adv_key = self._adv_key(role, source, plan)
        generation = self._read_generation(adv_key)
        gt_m, clean_m, target_m = [], [], []
        t0, fwd0 = time.time(), model.forward_images
        offset = 0
        for images, labels, ids in data.dataset.batches(self.suite.batch_size):
            n = len(images)
            clean_pred = np.stack(clean.pred[offset:offset + n]).astype(np.int64)
            offset += n
            adv = self.adv_store.get(adv_key, ids, images)
            with torch.no_grad():
                adv_pred = model.predict_labels(adv.to(self.device)).cpu().numpy()
            gt_m.append(metrics.batch_confusion_matrices(labels.numpy(), adv_pred, num_classes))
            clean_m.append(metrics.batch_confusion_matrices(clean_pred, adv_pred, num_classes))
            maps = [generation[i]['target_map'] for i in ids]
            if all(m is not None for m in maps):
                target_m.append(metrics.batch_confusion_matrices(np.stack(maps).astype(np.int64),
                                                                 adv_pred, num_classes))
            if bar is not None:
                bar.update(n)
        eval_wall, eval_fwd = time.time() - t0, model.forward_images - fwd0
        ids = data.dataset.image_ids()
        gens = [generation[i] for i in ids]
        batches = {id(g['meta']): g['meta'] for g in gens}.values()
        gen_cost = {'gradient_passes_per_image': max(m['gradient_passes_per_image'] for m in batches),
                    'shared_gradient_passes_per_image': min(m['shared_gradient_passes_per_image']
                                                            for m in batches),
                    'forward_images': sum(m['forward_images'] for m in batches),
                    'gradient_images': sum(m['gradient_images'] for m in batches),
                    'wall_time_s': round(sum(m['wall_time_s'] for m in batches), 3)}
        linf = max(m['linf_max'] for m in batches)
        info = {}
        names = sorted(set().union(*(g['info'] for g in gens)))
        for name in names:
            info[name] = np.stack([np.asarray(g['info'][name]) for g in gens])
        if key.source_model is None:   # white-box: the generation is this cell's own cost
            stats = {'gradient_passes_per_image': gen_cost['gradient_passes_per_image'],
                     'forward_images': gen_cost['forward_images'] + eval_fwd,
                     'gradient_images': gen_cost['gradient_images'], 'linf_max': linf}
            if gen_cost['shared_gradient_passes_per_image']:
                stats['shared_gradient_passes_per_image'] = gen_cost['shared_gradient_passes_per_image']
            wall = gen_cost['wall_time_s'] + eval_wall
        else:                          # transfer: forward passes only; generation stays with the source
            stats = {'gradient_passes_per_image': 0, 'forward_images': eval_fwd, 'gradient_images': 0,
                     'linf_max': linf, 'generation': dict(gen_cost, source=source.id)}
            wall = eval_wall
        if info:
            stats['per_image_info'] = {name: {'mean': float(v.mean()), 'min': float(v.min()),
                                              'max': float(v.max())} for name, v in info.items()}
        artifact = self._artifacts.get((source.id, id(plan)))
        if artifact is None and plan.requires_fit:
            path = self.artifact_path(source, plan)
            if path.is_file():
                artifact = {'path': str(path.relative_to(self.store.root)), 'sha256': sha256_file(path)}
        return self._write(key, target, plan, source, data, np.concatenate(gt_m), np.concatenate(clean_m),
                           np.concatenate(target_m) if target_m else None, stats, wall, info=info,
                           artifact=artifact)

    def _write(self, key, target, plan, source, data, gt, clean, target_conf, stats, wall, info=None,
               artifact=None):
        entries = [self._entries[n] for n in target.model_names]
        shas = self._checkpoints(target)
        sha, dirty = self._git
        transfer = source is not None and key.source_model is not None
        provenance = {'packages': package_versions(), 'git_sha': sha, 'git_dirty': dirty,
                      'seed': self.suite.seed,
                      'config_hash': _config_hash(self.suite, entries, None if plan is None else plan.spec,
                                                  source if transfer else None),
                      'model_config': entries[0].config, 'checkpoint': entries[0].weights,
                      'checkpoint_sha256': shas[0], 'wall_time_s': round(wall, 3),
                      'created': now_iso(), 'device': str(self.device), 'hostname': hostname(),
                      # iterative cells can differ in the last bits between thread counts
                      'torch_threads': torch.get_num_threads()}
        if any(getattr(e, 'random_weights', False) for e in entries):
            provenance['random_weights'] = True   # asked for explicitly; the report flags it
        if not target.is_plain:
            provenance['target'] = target.spec
        if transfer:
            provenance['source'] = {'id': source.id, 'spec': source.spec,
                                    'checkpoint_sha256': self._checkpoints(source)}
        if plan is not None:
            provenance['attack_spec'] = plan.spec
        if artifact is not None:
            provenance['artifact'] = artifact
        record = make_record(key, dataset=data.info, class_names=list(data.dataset.class_names),
                             conf_gt=gt.sum(0), conf_clean=None if clean is None else clean.sum(0),
                             conf_target=None if target_conf is None else target_conf.sum(0),
                             num_images=len(gt), attack_stats=stats, provenance=provenance)
        per_image = {'vs_ground_truth': gt, 'vs_clean': clean, 'vs_target': target_conf}
        for name, values in (info or {}).items():
            per_image[f'info_{name}'] = values
        path = self.store.write(record, per_image)
        logger.info('%s: mIoU %.4f -> %s', key.describe(), record['metrics']['miou'] or float('nan'), path)
        return CellOutcome(key, path, 'computed', record['metrics']['miou'])


class _DatasetRun:
    """A dataset of the suite with its record description (computed once)."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.info = {'name': dataset.name, 'split': dataset.split, 'root': dataset.root,
                     'image_ids_sha256': dataset.image_ids_sha256()}


def _unique_plans(plans):
    out, seen = [], set()
    for p in plans:
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


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
                      log_level, adv_dir):
    """One model in a worker process of :meth:`Runner._run_parallel`."""
    logging.basicConfig(level=log_level, format='%(asctime)s %(levelname)s %(name)s: %(message)s',
                        datefmt='%H:%M:%S')
    for noisy in ('mmengine', 'matplotlib', 'PIL'):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    torch.set_num_threads(threads)
    position = slots.get() if slots is not None else None
    from tqdm.contrib.logging import logging_redirect_tqdm
    try:
        with logging_redirect_tqdm():   # log lines above this worker's progress bar, not through it
            return Runner(suite, results_dir, force=force, models=[model], progress=progress,
                          device=device, share_trajectories=share, jobs=1, adv_dir=adv_dir,
                          _bar_position=position).run()
    finally:
        if slots is not None:
            slots.put(position)


def run_suite(suite, results_dir='results', **kwargs) -> List[CellOutcome]:
    """Convenience wrapper: ``Runner(suite, results_dir, **kwargs).run()``."""
    return Runner(suite, results_dir, **kwargs).run()
