"""Demo models: small versions of zoo architectures trained on the built-in synthetic data.

Used by ``tools/train_demo_zoo.py`` (it lives with the tools because it needs both layers below
them: ``model_zoo`` for the models and ``benchmark`` for the built-in dataset and the metrics).

:func:`train_demo_model` trains one zoo entry with mmengine's ``Runner`` (the standard mmseg training
loop: the entry's config names dataset, pipeline and schedule), keeps only the weights
(``state_dict``, loadable with ``weights_only=True``), evaluates clean mIoU on the val split through
the benchmark's own pixel-space path (:func:`evaluate_clean_miou`), and returns what the metafile
records.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch

from benchmark import metrics
from benchmark.datasets.builder import build_eval_dataset
from benchmark.datasets.synthetic import ensure_synthetic_cityscapes
from common.errors import CheckpointError
from common.hashing import sha256_file
from model_zoo.builder import REPO_ROOT, build_pixel_model, build_segmentor, load_config, sanitize_model_cfg
from model_zoo.zoo import ModelEntry, count_parameters

logger = logging.getLogger(__name__)

#: the synthetic dataset every demo model is trained on (must match benchmark/suites/demo.py)
DEMO_DATASET = dict(type='synthetic_cityscapes', seed=0)


def demo_dataset_root(progress: bool = True) -> Path:
    """The built-in dataset the demo models are trained on, generated into the cache if missing."""
    params = {k: v for k, v in DEMO_DATASET.items() if k != 'type'}
    return ensure_synthetic_cityscapes(progress=progress, **params)


def train_demo_model(entry: ModelEntry, work_dir: Optional[Path] = None, max_iters: Optional[int] = None,
                     seed: int = 0, progress: bool = True) -> Dict[str, object]:
    """Train one demo entry and write its weights to ``entry.weights``.

    Args:
        entry: A demo entry of the zoo (its config names dataset, pipeline and schedule).
        work_dir: Where mmengine keeps logs and checkpoints (default: a temporary directory).
        max_iters: Shorten the schedule to this many iterations, keeping its shape.
        seed: mmengine's random seed.
        progress: Show a progress bar while the dataset is generated.

    Returns:
        Dict with ``weights``, ``sha256``, ``parameters``, ``miou`` (clean, val split, in [0, 1])
        and ``train_seconds``.

    Raises:
        CheckpointError: the config starts from another demo model's weights that do not exist.
    """
    from mmengine.runner import Runner

    import model_zoo.models  # noqa: F401  (registers this project's architectures for the Runner)
    root = demo_dataset_root(progress)
    cfg = load_config(entry.config)
    cfg.model = sanitize_model_cfg(cfg.model.to_dict())
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader]['dataset']['data_root'] = str(root)
    if max_iters is not None:  # shorten the schedule, keeping its shape (warm-up fraction etc.)
        scale = max_iters / cfg.train_cfg.max_iters
        cfg.train_cfg.max_iters = max_iters
        cfg.train_cfg.val_interval = max_iters
        cfg.default_hooks.checkpoint.interval = max_iters
        for sched in cfg.param_scheduler:
            sched['begin'] = int(round(sched.get('begin', 0) * scale))
            sched['end'] = max(sched['begin'] + 1, int(round(sched['end'] * scale)))
    if cfg.get('load_from') and not Path(cfg.load_from).is_absolute():
        # a demo model fine-tuned from another demo model's committed weights (e.g. CRF-RNN from FCN)
        start = REPO_ROOT / cfg.load_from
        if not start.is_file():
            raise CheckpointError(f'{entry.name} starts from {cfg.load_from}, which does not exist; '
                                  'train that demo model first (tools/train_demo_zoo.py)')
        cfg.load_from = str(start)
    cfg.randomness = dict(seed=seed, deterministic=False)
    cfg.default_hooks.pop('visualization', None)
    # mmengine keeps one global visualizer per name: a fresh name per run lets one process train
    # several models (the second run would otherwise write into the first run's work_dir)
    cfg.visualizer = dict(cfg.get('visualizer', {}), name=f'visualizer_{entry.name}_{time.time_ns()}')
    tmp = None
    if work_dir is None:
        tmp = tempfile.mkdtemp(prefix=f'train_{entry.name}_')
        work_dir = Path(tmp)
    cfg.work_dir = str(work_dir)
    t0 = time.time()
    try:
        runner = Runner.from_cfg(cfg)
        runner.train()
        state = {k: v.detach().clone() for k, v in runner.model.state_dict().items()}
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    seconds = time.time() - t0
    out = Path(entry.weights)
    if not out.is_absolute():
        out = REPO_ROOT / out
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, out)
    miou = evaluate_clean_miou(entry.config, out)
    segmentor = build_segmentor(entry.config)
    return {'weights': str(out.relative_to(REPO_ROOT)) if out.is_relative_to(REPO_ROOT) else str(out),
            'sha256': sha256_file(out), 'parameters': count_parameters(segmentor),
            'miou': miou, 'train_seconds': round(seconds, 1)}


def evaluate_clean_miou(config, weights, batch_size: int = 8) -> float:
    """Clean mIoU on the synthetic val split through the benchmark's pixel-space path.

    Args:
        config: The model's config (path or mmengine ``Config``).
        weights: Its checkpoint file.
        batch_size: Images per forward pass.

    Returns:
        The mIoU over the whole val split, in [0, 1] (mmseg's ``IoUMetric`` definition).
    """
    dataset = build_eval_dataset(dict(DEMO_DATASET, split='val'))
    model, _ = build_pixel_model(config, str(weights), num_classes=dataset.num_classes)
    conf = np.zeros((dataset.num_classes,) * 2, dtype=np.int64)
    for images, labels, _ in dataset.batches(batch_size):
        pred = model.predict_labels(images).numpy()
        conf += metrics.batch_confusion_matrices(labels.numpy(), pred, dataset.num_classes).sum(0)
    return metrics.mean_iou(conf)
