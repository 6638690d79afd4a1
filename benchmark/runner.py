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

A suite that names no ``sources``/``targets`` evaluates each model on itself only. Both stages go
batch by batch over the images (:class:`benchmark.loader.ImageLoader`: torch's DataLoader with
mmengine's sampler), and in a torch.distributed process group (``torchrun``, ``srun``:
:mod:`benchmark.distributed`) each rank takes its share of the batches: it generates and stores
those, evaluates them, and rank 0 gathers the per-image confusion matrices and writes every record.
Batches, not images, are dealt, so records are the same bits with any number of ranks.

A run stopped at any point loses at most the cells in progress (each rank resumes at its first
batch not stored); each target's results folder and each generated group (each rank's shard of it)
are locked (:class:`benchmark.locks.DirectoryLock`) so two runs never compute the same thing twice.
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
#: the fixed images (positions in the evaluation split) whose clean and adversarial images and
#: predictions are kept for the report's qualitative panels (Fischer et al. 2017, Fig. 1), for
#: each attack entry at one ε of its grid (:func:`panel_epsilon`)
PANEL_POSITIONS = (0, 1)
PANEL_REFERENCE_EPSILON = 8.0


def panel_epsilon(epsilons: Sequence[float]) -> float:
    """The ε of a grid whose cells keep panel images: the one nearest 8 (in ratio; ties: larger)."""
    import math
    return min(epsilons, key=lambda e: (abs(math.log(e / PANEL_REFERENCE_EPSILON)), -e))


@dataclass
class CellOutcome:
    key: CellKey
    path: Path
    status: str          # 'computed' or 'stored'
    miou: Optional[float] = None


@dataclass
class CleanMaps:
    """Per-image outputs on clean inputs, computed once per endpoint, dataset and image.

    Keyed by the image's position in the dataset (a rank holds the positions of its batches).
    """

    pred: Dict[int, np.ndarray] = dataclasses.field(default_factory=dict)          # (H, W) uint8/int16
    least_likely: Dict[int, np.ndarray] = dataclasses.field(default_factory=dict)  # (H, W)
    vs_ground_truth: Dict[int, np.ndarray] = dataclasses.field(default_factory=dict)   # (C, C)
    top_probability: Dict[int, float] = dataclasses.field(default_factory=dict)   # pixel mean
    entropy: Dict[int, float] = dataclasses.field(default_factory=dict)           # nats, pixel mean
    #: per image: the model's forward passes and seconds its clean prediction cost (a batch's
    #: share), so a clean record counts each image once whichever rank or stage computed it
    forward_images: Dict[int, float] = dataclasses.field(default_factory=dict)
    gradient_images: Dict[int, float] = dataclasses.field(default_factory=dict)
    wall_time: Dict[int, float] = dataclasses.field(default_factory=dict)
    #: per image: fraction of input-gradient entries that are exactly zero (gradient masking
    #: diagnostic: the summed cross-entropy against the clean prediction, at the clean image)
    zero_gradient: Dict[int, float] = dataclasses.field(default_factory=dict)

    def maps(self, positions: Sequence[int]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Clean prediction and least-likely classes of ``positions`` as int64 ``(N, H, W)``."""
        pred = torch.from_numpy(np.stack([self.pred[p] for p in positions]).astype(np.int64))
        ll = torch.from_numpy(np.stack([self.least_likely[p] for p in positions]).astype(np.int64))
        return pred, ll


@dataclass
class CleanMapsView:
    """Clean outputs of one batch, as attacks' ``reference_target`` receives them."""

    pred: torch.Tensor            # (N, H, W) int64
    least_likely: torch.Tensor    # (N, H, W) int64


def _progress(total: int, desc: str, enabled: bool, dist=None):
    """A tqdm bar (one per rank in a process group, labelled with the rank, one row each)."""
    if not enabled or total == 0:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return None
    if dist is not None and dist.enabled:
        return tqdm(total=total, desc=f'[rank {dist.rank}/{dist.world_size}] {desc}', unit='img',
                    dynamic_ncols=True, position=dist.rank, leave=True)
    return tqdm(total=total, desc=desc, unit='img', dynamic_ncols=True)


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
        workers: Worker processes decoding images (0: decode in this process).
        adv_dir: Root of the adversarial-example store (default: ``$SEGBENCH_ADV_DIR``, else
            :func:`benchmark.adv_store.default_root`, in the cache, out of git).
        dist: The process group (:func:`benchmark.distributed.init`); default: mmengine's view of
            this process (one rank unless a group was initialised).

    In a process group every rank runs the same :class:`Runner` (same suite and options): the
    plan is made on rank 0 and broadcast, each rank generates and evaluates its batches, rank 0
    writes the records.
    """

    def __init__(self, suite: Union[Suite, str, Path], results_dir: Union[str, Path] = 'results',
                 force: bool = False, models: Optional[Sequence[str]] = None,
                 progress: bool = True, device: str = 'cpu', share_trajectories: bool = True,
                 workers: int = 0, adv_dir: Optional[Union[str, Path]] = None, dist=None):
        from .distributed import Dist
        self.suite = suite if isinstance(suite, Suite) else load_suite(suite)
        self.share_trajectories = share_trajectories
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ConfigError(f'workers must be a number of decoding processes >= 0, got {workers!r}')
        self.workers = workers
        self.dist = dist if dist is not None else Dist()
        self.store = ResultStore(results_dir)
        self.adv_store = AdversarialStore(adv_dir or os.environ.get('SEGBENCH_ADV_DIR') or None)
        self.force = force
        self.progress = progress
        self.device = _check_device(device)
        if self.device.type == 'cuda':
            # fp32 means fp32: no TensorFloat-32 convolutions or matmuls (torch enables TF32 for
            # cuDNN convolutions by default on Ampere and newer GPUs)
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
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
        self._loaders: Dict[Tuple[str, bool], Any] = {}
        self._model_infos: Dict[str, dict] = {}
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
        split = self._on_main(lambda: self._split_all(datasets))
        outcomes: List[CellOutcome] = []
        pending: Dict[str, list] = {}
        for tid in self.target_ids:
            stored, cell_ids = split[tid]
            if cell_ids:   # its stored cells are re-read under its lock when its turn comes
                pending[tid] = self._cells_by_id(tid, cell_ids)
            else:
                outcomes.extend(stored)
        if not pending:
            return outcomes
        needed_models = sorted({name for cells in pending.values() for _, _, _, s in cells
                                if s is not None for name in s.model_names}
                               | {name for tid in pending for name in self.suite.endpoint(tid).model_names},
                               key=list(self._entries).index)
        self._check_models([self._entries[n] for n in needed_models])
        self.adv_store.check_writable()
        try:
            return outcomes + self._run_targets(pending, datasets)
        finally:
            for loader in self._loaders.values():
                loader.close()
            self._loaders.clear()

    def _on_main(self, fn):
        """``fn()`` on rank 0, its result (or its error) on every rank."""
        result = error = None
        if self.dist.is_main:
            try:
                result = fn()
            except Exception as e:  # noqa: BLE001 - raised on every rank below
                error = e
        if self.dist.enabled:
            sent = error if error is None or isinstance(error, BenchmarkError) else BenchmarkError(
                f'rank 0 failed with {type(error).__name__}: {error}')
            result, sent = self.dist.broadcast((result, sent))
            if error is None and sent is not None:
                raise sent
        if error is not None:
            raise error
        return result

    def _split_all(self, datasets) -> Dict[str, Tuple[List[CellOutcome], List[str]]]:
        """Per target: stored outcomes and the cell ids still to compute (made on rank 0)."""
        out = {}
        for tid in self.target_ids:
            stored, cells = self._split_cells(tid, datasets)
            if not cells:
                logger.info('%s: all %d cells stored', tid, len(stored))
            out[tid] = (stored, [key.cell_id for _, key, _, _ in cells])
        return out

    def _cells_by_id(self, tid: str, cell_ids: Sequence[str]) -> list:
        """The ``(role, key, plan, source)`` plans of ``tid`` with these cell ids, in plan order."""
        wanted = set(cell_ids)
        return [c for c in self.suite.cell_plans(tid, self._plans) if c[1].cell_id in wanted]

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

    def _model_info(self, entry) -> dict:
        """Architecture, backbone (the zoo's description, else the config's module types) and
        parameters at inference of a suite model, for the report (once per model and run)."""
        if entry.name not in self._model_infos:
            from model_zoo.zoo import count_parameters
            arch, backbone = getattr(entry, 'architecture', ''), getattr(entry, 'backbone', '')
            if not arch or not backbone:
                try:
                    from model_zoo.builder import load_config
                    cfg = load_config(entry.config).model
                    head, bb = cfg.get('decode_head') or {}, cfg.get('backbone') or {}
                    head = head[-1] if isinstance(head, (list, tuple)) else head
                    arch = arch or str(head.get('type', cfg.get('type', '')))
                    backbone = backbone or ' '.join(str(x) for x in (bb.get('type', ''), bb.get('depth', ''))
                                                    if x != '')
                except Exception:  # noqa: BLE001 - descriptive only; the config was checked before
                    pass
            model = self._model(entry.name)[0]
            params = count_parameters(getattr(model, 'segmentor', model))
            self._model_infos[entry.name] = {'architecture': arch, 'backbone': backbone,
                                             'parameters': int(params)}
        return self._model_infos[entry.name]

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
        if self.force:    # generated again: stored images of these cells go first (once, on rank 0)
            self._on_main(lambda: self._discard([n for ns in needs.values() for n in ns]))
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

    def _discard(self, needs: List[_Need]) -> None:
        """``--force``: forget the stored adversarial images of these needs (each group under its lock)."""
        for n in needs:
            key = self._adv_key(n.role, n.source, n.plan)
            with DirectoryLock(self.adv_store.group_dir(key)):
                self.adv_store.discard(key)
            self._generation_cache.pop(key.key_hash, None)

    def _release_modules(self) -> None:
        """Drop built models (one source's worth stays in memory at a time)."""
        self._models.clear()
        self._modules.clear()

    def _describe(self, bar, text: str) -> None:
        """Set a progress bar's label (with the rank in a process group)."""
        if bar is not None:
            prefix = f'[rank {self.dist.rank}/{self.dist.world_size}] ' if self.dist.enabled else ''
            bar.set_description_str(prefix + text)

    @contextlib.contextmanager
    def _memory_advice(self, what: str, batch_size: int):
        """A GPU out-of-memory error becomes a message with the fix (a smaller --batch-size: the
        batch size is not part of a cell, and stored batches stay valid)."""
        try:
            yield
        except torch.OutOfMemoryError as e:
            raise BenchmarkError(
                f'{what}: out of memory on {self.device} with batches of {batch_size} images '
                f'({str(e).splitlines()[0]}). Run again with a smaller --batch-size (e.g. '
                f'{max(1, batch_size // 2)}); the batches already stored are kept.') from None

    def _loader(self, data: '_DatasetRun', shard: bool = True):
        """This rank's batches of ``data`` (every batch when ``shard`` is False), built once."""
        from .loader import ImageLoader
        key = (data.info['name'] + ':' + data.info['split'] + ':' + data.info['image_ids_sha256'], shard)
        if key not in self._loaders:
            self._loaders[key] = ImageLoader(data.dataset, self.suite.batch_size, shard=shard,
                                             workers=self.workers)
        return self._loaders[key]

    def _shard_ids(self, data: '_DatasetRun') -> List[str]:
        """Ids of the images of this rank's batches."""
        ids = data.dataset.image_ids()
        return [ids[p] for p in self._loader(data).positions()]

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

    def _clean_batch(self, endpoint: Endpoint, role: str, data: '_DatasetRun', batch) -> CleanMaps:
        """Clean prediction of the images of ``batch`` by ``endpoint`` (once per run and image)."""
        clean = self._clean.setdefault((endpoint.id, role), CleanMaps())
        if all(p in clean.pred for p in batch.positions):
            return clean
        from attacks.base import pixel_cross_entropy
        model, num_classes = self._module(endpoint), data.dataset.num_classes
        t0, fwd0, grad0 = time.time(), model.forward_images, model.gradient_images
        dtype = np.uint8 if num_classes < 255 else np.int16
        # one backward pass: the input gradient of the loss the attacks ascend, at the clean
        # image (a model whose gradient is zero almost everywhere masks gradients: the report
        # flags it; a non-finite one stops the run in the model wrapper)
        x = batch.images.to(self.device).detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model(x)
            grad, = torch.autograd.grad(pixel_cross_entropy(logits, logits.detach().max(1).indices), x)
        zero = (grad == 0).flatten(1).double().mean(1).cpu().numpy()
        del grad, x
        logits = logits.detach()
        with torch.no_grad():
            pred = logits.max(1).indices.cpu().numpy()   # argmax's index, faster on CPU
            # confidence of the clean prediction (Arnab et al. 2018, Sec. 7.1: mean top-class
            # probability and entropy in nats, per image averaged over pixels)
            logp = torch.log_softmax(torch.Tensor.double(logits), dim=1)
            top = logp.max(1).values.exp().mean((1, 2)).cpu().numpy()
            entropy = (-(logp.exp() * logp).sum(1)).mean((1, 2)).cpu().numpy()
            least = logits.min(1).indices.cpu().numpy().astype(dtype)
        conf = metrics.batch_confusion_matrices(batch.labels.numpy(), pred, num_classes)
        for i, p in enumerate(batch.positions):
            clean.pred[p] = pred[i].astype(dtype)
            clean.least_likely[p] = least[i]
            clean.vs_ground_truth[p] = conf[i]
            clean.top_probability[p] = float(top[i])
            clean.entropy[p] = float(entropy[i])
            clean.zero_gradient[p] = float(zero[i])
            clean.gradient_images[p] = (model.gradient_images - grad0) / len(batch.positions)
            clean.forward_images[p] = (model.forward_images - fwd0) / len(batch.positions)
            clean.wall_time[p] = (time.time() - t0) / len(batch.positions)
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
        """Generate (or find stored) the adversarial images of one source's needs, on this
        rank's batches: batch by batch, every attack entry of the source on each batch, so the
        clean pass and the gradients the attacks share (:class:`attacks.base.SharedGradients`)
        are computed once per batch."""
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
            shard = self._shard_ids(data)
            todo = [(group, [self._adv_key(role, source, n.plan) for n in group])
                    for group in groups.values()]
            # all entries or none: an entry complete while another is not (a run killed between
            # them) comes out bit-identical again on the batches still missing, and the passes the
            # entries share (one SharedGradients per batch) are counted as in an uninterrupted run
            if not all(self._generation_complete(k, shard) for _, keys in todo for k in keys):
                self._generate_groups(source, todo, role, data)

    def _generation_complete(self, key: AdvKey, ids: Sequence[str]) -> bool:
        """Every image of ``ids`` stored under ``key`` with its generation side file."""
        if not self.adv_store.has(key, ids):
            return False
        return not (set(ids) - set(self._read_generation(key)))

    def _group_lock(self, key: AdvKey) -> DirectoryLock:
        """The lock of one generated group (of this rank's shard of it in a process group)."""
        directory = self.adv_store.group_dir(key)
        if self.dist.enabled:
            directory = directory / '.locks' / f'shard-{self.dist.rank}-of-{self.dist.world_size}'
        return DirectoryLock(directory)

    def _generate_groups(self, source, todo, role: str, data) -> None:
        """The attack entries ``todo`` (each an ε grid when its ε share work) on this rank's batches."""
        from attacks.base import SharedGradients
        loader = self._loader(data)
        bar = _progress(len(loader) * len(todo), f'generate {source.id}', self.progress, self.dist)
        with contextlib.ExitStack() as stack:
            if bar is not None:
                stack.callback(bar.close)
            for _, keys in todo:
                for key in keys:   # two runs never generate the same group (shard) at once
                    lock = self._group_lock(key)
                    if not lock.acquire(blocking=False):
                        logger.info('%s: another run is generating it; waiting', key.describe())
                        lock.acquire(blocking=True)
                    stack.callback(lock.release)
                    self._generation_cache.pop(key.key_hash, None)   # another run may have written it
                    if not self.dist.enabled:   # ranks write side by side: nothing to sweep then
                        self.adv_store.sweep_temporary(key)
            # images complete under each key: stored, with their generation side file (read once)
            complete = {k.key_hash: set(self.adv_store.stored_ids(k)) & set(self._read_generation(k))
                        for _, keys in todo for k in keys}
            for batch in loader:
                n = len(batch.ids)
                # a batch missing for any key is generated again for every entry (the stored
                # ones come out bit-identical), so records and costs never depend on where an
                # earlier run was interrupted
                if all(set(batch.ids) <= complete[k.key_hash] for _, keys in todo for k in keys):
                    if bar is not None:
                        bar.update(n * len(todo))
                    continue
                clean = self._clean_batch(source, role, data, batch)
                shared = SharedGradients() if self.share_trajectories else None
                for group, keys in todo:
                    eps = ','.join(f'{g.plan.epsilon:g}' for g in group)
                    self._describe(bar, f'generate {source.id} {group[0].plan.attack.name} ε={eps}')
                    with self._memory_advice(source.id, len(batch.ids)):
                        self._generate_batch(source, group, keys, batch, clean, shared)
                    for key in keys:
                        complete[key.key_hash].update(batch.ids)
                    if bar is not None:
                        bar.update(n)

    def _generate_batch(self, source, group: List[_Need], keys: List[AdvKey], batch, clean,
                        shared) -> None:
        """One attack entry's ε values on one batch (one ``run_grid`` when they share work)."""
        model = self._module(source)
        epsilons = [n.plan.epsilon for n in group]
        images, ids = batch.images.to(self.device), batch.ids
        clean_pred, ll = clean.maps(batch.positions)
        plan0 = group[0].plan
        ref, target, mask, mask_mode = self._reference_and_target(plan0, source, batch.labels, clean_pred)
        ref = ref.to(self.device)
        target = None if target is None else target.to(self.device)
        mask = None if mask is None else mask.to(self.device)
        costs = [dict(forward_images=0, gradient_images=0, wall=0.0) for _ in group]

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
        call = plan0.attack.run_grid if len(group) > 1 else plan0.attack.run
        # attacks with their own run (fitted perturbations) share nothing with the others
        kwargs = {'shared': shared} if shared is not None and _accepts(call, 'shared') else {}
        if len(group) > 1:
            results = plan0.attack.run_grid(model, images, epsilons, labels=ref, target=target,
                                            mask=mask, mask_mode=mask_mode, meter=meter, **kwargs)
        else:
            with meter(0):
                results = [plan0.attack.run(model, images, labels=ref, target=target, mask=mask,
                                            mask_mode=mask_mode, **kwargs)]
        for need, key, result, cost in zip(group, keys, results, costs):
            plan, adv = need.plan, result.adv
            linf = float((adv - images).abs().max())
            if linf > plan.epsilon + 1e-3:
                raise RuntimeError(f'{key.describe()}: perturbation {linf:.4f} exceeds '
                                   f'ε={plan.epsilon}; this is a bug in the attack')
            cell_target = target
            if cell_target is None and plan.attack.targeted:
                cell_target = plan.attack.reference_target(CleanMapsView(clean_pred, ll), ref.cpu())
            self.adv_store.put(key, ids, images.cpu(), adv.cpu())
            self._write_generation(key, ids, result, cell_target, linf, cost, plan)
            self._generated.add(key.key_hash)

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
        """Fit every fitted attack on the fitting split and store it, or load its stored artifact.

        In a process group rank 0 fits on the whole fitting split (a universal perturbation is
        one optimisation over all images) while the other ranks wait, then every rank loads it.
        """
        from attacks.fitted import read_artifact_metadata
        for plan in plans:
            if (source.id, id(plan)) in self._artifacts:
                continue
            path = self.artifact_path(source, plan)
            self._on_main(lambda plan=plan, path=path: self._fit_or_load(source, data, plan, path))
            if not self.dist.is_main:
                stored = read_artifact_metadata(path).get('run', {})
                if stored.get('fit_dataset', {}).get('image_ids_sha256') != data.info['image_ids_sha256']:
                    raise ResultsError(f'{path} was fitted on a different image list than this suite '
                                       'selects; use --force to refit')
                plan.attack.load(path)
            self._artifacts[(source.id, id(plan))] = {'path': str(path.relative_to(self.store.root)),
                                                      'sha256': sha256_file(path)}

    def _fit_or_load(self, source: Endpoint, data, plan, path: Path) -> None:
        from attacks.fitted import FitBatch, read_artifact_metadata
        model = self._module(source)
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
            return

        def batches():
            for batch in self._loader(data, shard=False):   # all of the fitting split
                clean = self._clean_batch(source, FIT, data, batch)
                clean_pred, _ = clean.maps(batch.positions)
                ref, target, _, _ = self._reference_and_target(plan, source, batch.labels, clean_pred)
                yield FitBatch(batch.images.to(self.device), ref.to(self.device),
                               None if target is None else target.to(self.device))
        for batch in self._loader(data, shard=False):   # the clean pass first: not the fit's cost
            self._clean_batch(source, FIT, data, batch)
        torch.manual_seed(self.suite.seed)
        t0 = time.time()
        grad0 = model.gradient_images
        plan.attack.fit(model, batches, progress=self.progress)
        plan.attack.fit_info = dict(plan.attack.fit_info, fit_wall_time_s=round(time.time() - t0, 3),
                                    fit_gradient_images=model.gradient_images - grad0)
        plan.attack.save(path, metadata=run_meta)
        logger.info('%s: fitted %s ε=%g in %.0f s -> %s', source.id, plan.attack.name,
                    plan.epsilon, time.time() - t0, path)

    # -- evaluate -------------------------------------------------------------------------------------
    def _evaluate_locked(self, tid: str, datasets) -> List[CellOutcome]:
        """Evaluate one target's pending cells while (rank 0) holds its results folder's lock."""
        lock = None
        if self.dist.is_main:
            lock = DirectoryLock(self.store.root / self.suite.name / tid)
            if not lock.acquire(blocking=False):
                logger.info('%s: another run is computing this model; waiting for it to finish', tid)
                lock.acquire(blocking=True)
        try:
            def recheck():
                swept = self.store.sweep_temporary(lock.directory)
                if swept:
                    logger.info('%s: removed %d temporary file(s) left by an interrupted run', tid, len(swept))
                # re-read the store: another run may have computed cells while we waited
                stored, pending = self._split_cells(tid, datasets)
                return stored, [key.cell_id for _, key, _, _ in pending]
            stored, cell_ids = self._on_main(recheck)
            if not cell_ids:
                return stored
            return stored + self._evaluate(tid, self._cells_by_id(tid, cell_ids), datasets)
        finally:
            if lock is not None:
                lock.release()

    def _evaluate(self, tid: str, pending, datasets) -> List[CellOutcome]:
        """Every rank evaluates its batches; rank 0 gathers the per-image results and writes."""
        target = self.suite.endpoint(tid)
        outcomes = []
        for role in (EVAL, FIT):
            cells = [(k, p, s) for r, k, p, s in pending if r == role]
            if not cells:
                continue
            data = datasets[role]
            part, error = None, None
            try:
                # adversarial images a cell needs but that are not stored (e.g. deleted from the
                # cache since the run started) are generated now
                shard = self._shard_ids(data)
                missing = [_Need(role, s, p) for _, p, s in cells
                           if p is not None and not self._generation_complete(self._adv_key(role, s, p), shard)]
                for sid in dict.fromkeys(n.source.id for n in missing):
                    self._generate([n for n in missing if n.source.id == sid], datasets)
                part = self._evaluate_shard(tid, target, role, data, cells)
            except Exception as e:  # noqa: BLE001 - every rank raises below, none is left waiting
                error = e
            self.dist.all_ok(error)
            parts = self.dist.gather(part)
            outcomes += self._on_main(lambda: self._write_target(target, role, data, cells, parts))
        return outcomes

    def _evaluate_shard(self, tid, target, role, data, cells) -> dict:
        """Forward this rank's batches: clean, then every cell's stored adversarial images."""
        model = self._module(target)
        num_classes = data.dataset.num_classes
        attack_cells = [(k, p, s) for k, p, s in cells if p is not None]
        adv_keys = [self._adv_key(role, s, p) for _, p, s in attack_cells]
        generations = [self._read_generation(k) for k in adv_keys]
        loader = self._loader(data)
        acc = [dict(gt=[], clean=[], target=[], fwd=0, wall=0.0, panels={}) for _ in attack_cells]
        panel = [role == EVAL and p.epsilon == panel_epsilon(p.spec.get('epsilons') or self.suite.epsilons)
                 for _, p, _ in attack_cells]
        positions: List[int] = []
        bar = _progress(len(loader) * (1 + len(attack_cells)), f'evaluate {tid}', self.progress, self.dist)
        try:
            for batch in loader:
                n = len(batch.ids)
                self._describe(bar, f'evaluate {tid} clean')
                clean = self._clean_batch(target, role, data, batch)
                positions += batch.positions
                if bar is not None:
                    bar.update(n)
                clean_pred = np.stack([clean.pred[p] for p in batch.positions]).astype(np.int64)
                for j, ((key, plan, source), adv_key, generation, a) in enumerate(
                        zip(attack_cells, adv_keys, generations, acc)):
                    self._describe(bar, f'evaluate {tid} {plan.attack.name} ε={plan.epsilon:g}'
                                   + ('' if key.source_model is None else f' from {source.id}'))
                    t0, fwd0 = time.time(), model.forward_images
                    adv = self.adv_store.get(adv_key, batch.ids, batch.images)
                    with torch.no_grad():
                        adv_pred = model.predict_labels(adv.to(self.device)).cpu().numpy()
                    a['gt'].append(metrics.batch_confusion_matrices(batch.labels.numpy(), adv_pred,
                                                                    num_classes))
                    a['clean'].append(metrics.batch_confusion_matrices(clean_pred, adv_pred, num_classes))
                    maps = [generation[i]['target_map'] for i in batch.ids]
                    if all(m is not None for m in maps):
                        a['target'].append(metrics.batch_confusion_matrices(
                            np.stack(maps).astype(np.int64), adv_pred, num_classes))
                    a['fwd'] += model.forward_images - fwd0
                    a['wall'] += time.time() - t0
                    if panel[j]:
                        for i, p in enumerate(batch.positions):
                            if p in PANEL_POSITIONS:
                                a['panels'][p] = _panel_item(batch, i, adv, clean_pred, adv_pred,
                                                             maps[i], batch.ids[i])
                    if bar is not None:
                        bar.update(n)
        finally:
            if bar is not None:
                bar.close()
        clean = self._clean.get((target.id, role), CleanMaps())
        ids = data.dataset.image_ids()
        part = {'positions': positions,
                'clean': {'gt': [clean.vs_ground_truth[p] for p in positions],
                          'top_probability': [clean.top_probability[p] for p in positions],
                          'entropy': [clean.entropy[p] for p in positions],
                          'zero_gradient': [clean.zero_gradient[p] for p in positions],
                          'gradient_images': sum(clean.gradient_images[p] for p in positions),
                          'forward_images': sum(clean.forward_images[p] for p in positions),
                          'wall_time': sum(clean.wall_time[p] for p in positions)},
                'cells': []}
        for generation, a in zip(generations, acc):
            gens = [generation[ids[p]] for p in positions]
            metas = {tuple(g['meta']['image_ids']): g['meta'] for g in gens}
            names = sorted(set().union(*(g['info'] for g in gens))) if gens else []
            part['cells'].append({
                'gt': np.concatenate(a['gt']) if a['gt'] else None,
                'clean': np.concatenate(a['clean']) if a['clean'] else None,
                'target': np.concatenate(a['target']) if a['target'] and len(a['target']) == len(a['gt'])
                else None,
                'info': {name: [np.asarray(g['info'][name]) for g in gens] for name in names},
                'metas': metas, 'forward_images': a['fwd'], 'wall_time': a['wall'],
                'panels': a['panels']})
        return part

    def _write_target(self, target, role, data, cells, parts) -> List[CellOutcome]:
        """Merge the ranks' parts in image order and write the records (rank 0)."""
        positions = [p for part in parts for p in part['positions']]
        if sorted(positions) != list(range(len(data.dataset))):
            raise ResultsError(f'evaluate {target.id}: the ranks returned images {sorted(positions)[:10]}… '
                               f'for a dataset of {len(data.dataset)}; every image must be evaluated '
                               'exactly once. This is a bug in the runner.')
        order = np.argsort(positions, kind='stable')

        def merged(values):
            return [values[i] for i in order]

        outcomes = []
        clean_key = next((k for k, p, _ in cells if p is None), None)
        if clean_key is not None:
            gt = np.stack(merged([m for part in parts for m in part['clean']['gt']]))
            top = np.asarray(merged([v for part in parts for v in part['clean']['top_probability']]))
            ent = np.asarray(merged([v for part in parts for v in part['clean']['entropy']]))
            zero = np.asarray(merged([v for part in parts for v in part['clean']['zero_gradient']]))
            stats = {'gradient_passes_per_image': 0,
                     'forward_images': int(round(sum(part['clean']['forward_images'] for part in parts))),
                     'gradient_images': int(round(sum(part['clean']['gradient_images'] for part in parts))),
                     'linf_max': 0.0,
                     'prediction_confidence': {'mean_top_probability': float(np.mean(top)),
                                               'mean_entropy_nats': float(np.mean(ent))},
                     'input_gradient': {'zero_fraction_mean': float(np.mean(zero)),
                                        'zero_fraction_max': float(np.max(zero)),
                                        'all_finite': True}}
            wall = sum(part['clean']['wall_time'] for part in parts)
            outcomes.append(self._write(clean_key, target, None, None, data, gt, None, None, stats, wall,
                                        info={'top_probability': top, 'entropy_nats': ent,
                                              'zero_gradient_fraction': zero}))
        attack_cells = [(k, p, s) for k, p, s in cells if p is not None]
        for j, (key, plan, source) in enumerate(attack_cells):
            cell_parts = [part['cells'][j] for part in parts]
            pieces = {}
            for what in ('gt', 'clean', 'target'):
                arrays = [c[what] for c, part in zip(cell_parts, parts) if part['positions']]
                pieces[what] = (None if any(a is None for a in arrays)
                                else np.concatenate(arrays)[order])
            metas = {}
            for c in cell_parts:
                metas.update(c['metas'])
            batches = [metas[k] for k in sorted(metas)]
            gen_cost = {'gradient_passes_per_image': max(m['gradient_passes_per_image'] for m in batches),
                        'shared_gradient_passes_per_image': min(m['shared_gradient_passes_per_image']
                                                                for m in batches),
                        'forward_images': sum(m['forward_images'] for m in batches),
                        'gradient_images': sum(m['gradient_images'] for m in batches),
                        'wall_time_s': round(sum(m['wall_time_s'] for m in batches), 3)}
            linf = max(m['linf_max'] for m in batches)
            eval_fwd = sum(c['forward_images'] for c in cell_parts)
            eval_wall = sum(c['wall_time'] for c in cell_parts)
            info = {}
            for name in sorted(set().union(*(c['info'] for c in cell_parts))):
                values = [v for c in cell_parts for v in c['info'][name]]
                info[name] = np.stack(merged(values))
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
            panels = {}
            for c in cell_parts:
                panels.update(c['panels'])
            if panels:   # written before its record, which names it
                artifact_panel = self._write_panel(key, panels)
            else:
                artifact_panel = None
            outcomes.append(self._write(key, target, plan, source, data, pieces['gt'], pieces['clean'],
                                        pieces['target'], stats, wall, info=info, artifact=artifact,
                                        panel=artifact_panel))
        return outcomes

    def _write_panel(self, key, panels: Dict[int, dict]) -> dict:
        """The panel images of one cell (``results/<suite>/<model>/panels/<cell>.npz``)."""
        items = [panels[p] for p in sorted(panels)]
        arrays = {name: np.stack([it[name] for it in items]) for name in items[0]
                  if name != 'target' or all(it['target'] is not None for it in items)}
        delta = arrays['delta']
        if np.array_equal(delta, np.round(delta)) and np.abs(delta).max(initial=0) <= 127:
            arrays['delta'] = delta.astype(np.int8)          # integer steps: exact
        else:
            arrays['delta'] = delta.astype(np.float32)
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        path = self.store.panel_path(key)
        atomic_write_bytes(path, buf.getvalue())
        return {'path': str(path.relative_to(self.store.root)), 'sha256': sha256_file(path)}

    def _write(self, key, target, plan, source, data, gt, clean, target_conf, stats, wall, info=None,
               artifact=None, panel=None):
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
        provenance['model_info'] = self._model_info(entries[0])
        if any(getattr(e, 'random_weights', False) for e in entries):
            provenance['random_weights'] = True   # asked for explicitly; the report flags it
        if not target.is_plain:
            provenance['target'] = target.spec
        if transfer:
            provenance['source'] = {'id': source.id, 'spec': source.spec,
                                    'checkpoint_sha256': self._checkpoints(source)}
        if plan is not None:
            provenance['attack_spec'] = plan.spec
            # the attack's own label for tables and plots (the papers' names)
            provenance['attack_display_name'] = type(plan.attack).display_name or plan.attack.name
        if artifact is not None:
            provenance['artifact'] = artifact
        if panel is not None:
            provenance['panel'] = panel
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


def _panel_item(batch, i, adv, clean_pred, adv_pred, target_map, image_id) -> dict:
    """What a qualitative panel shows of one image of one cell (small integer arrays)."""
    image = batch.images[i].numpy()
    label_dtype = np.uint8 if max(int(clean_pred[i].max()), int(adv_pred[i].max())) < 255 else np.int16
    return {'image': np.clip(np.round(image), 0, 255).astype(np.uint8),
            'delta': (adv[i].cpu().numpy() - image).astype(np.float32),
            'ground_truth': batch.labels[i].numpy().astype(label_dtype if batch.labels[i].max() < 256
                                                            else np.int16),
            'clean_pred': clean_pred[i].astype(label_dtype), 'adv_pred': adv_pred[i].astype(label_dtype),
            'target': None if target_map is None else np.asarray(target_map).astype(np.int16),
            'image_id': np.asarray(image_id)}


def _accepts(fn, name: str) -> bool:
    import inspect
    return name in inspect.signature(fn).parameters


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


def run_suite(suite, results_dir='results', **kwargs) -> List[CellOutcome]:
    """Convenience wrapper: ``Runner(suite, results_dir, **kwargs).run()``."""
    return Runner(suite, results_dir, **kwargs).run()
