"""Batches of evaluation images for the runner: torch's DataLoader, mmengine's sampler, dealt by batch.

The image list is cut into fixed chunks of ``batch_size`` consecutive images (:func:`plan_chunks`);
mmengine's :class:`~mmengine.dataset.DefaultSampler` (no shuffle, no round-up: no image is ever
counted twice) deals the *chunks* to the ranks of a process group, and a
:class:`torch.utils.data.DataLoader` decodes them, in worker processes when ``workers > 0``.
Dealing chunks rather than single images keeps every image in the same batch whatever the number
of ranks, so an attack (whose floating-point result can depend on the batch it runs in) produces
the same bits with 1 rank or 8, and records do not depend on how a run was scaled out.

A chunk whose images differ in size (VOC) is split into runs of consecutive images of one size,
which torch's default collation cannot stack; that is the one piece of collation written here.
A sample that cannot be loaded travels back from the worker as its exception and is raised in the
runner's process unchanged, so the message names the file and what was expected (a worker's
traceback would bury it).
"""
from __future__ import annotations

import multiprocessing
from typing import Iterator, List, NamedTuple, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class Batch(NamedTuple):
    """Consecutive images of one size: their positions in the dataset, tensors and ids."""

    positions: List[int]
    images: torch.Tensor      # (N, 3, H, W) float32 RGB in [0, 255]
    labels: torch.Tensor      # (N, H, W) int64
    ids: List[str]


def plan_chunks(num_images: int, batch_size: int) -> List[List[int]]:
    """Positions ``0..num_images-1`` cut into consecutive chunks of ``batch_size``."""
    if batch_size < 1:
        raise ValueError(f'batch_size must be a positive integer, got {batch_size}')
    return [list(range(i, min(i + batch_size, num_images))) for i in range(0, num_images, batch_size)]


class _Failure(NamedTuple):
    error: BaseException


class _Samples(Dataset):
    """``dataset[i]`` as ``(i, image, label, id)``, or the exception loading it raised."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, position: int):
        try:
            image, label, image_id = self.dataset[position]
        except Exception as e:  # noqa: BLE001 - re-raised in the runner's process by _collate's caller
            return _Failure(e)
        return position, image, label, image_id


class ChunkSampler(Sampler):
    """Yields this rank's chunks (lists of positions): mmengine's DefaultSampler over the chunks."""

    def __init__(self, chunks: Sequence[List[int]], shard: bool = True):
        self.chunks = list(chunks)
        if shard:
            from mmengine.dataset import DefaultSampler
            self._order = DefaultSampler(self.chunks, shuffle=False, seed=0, round_up=False)
        else:
            self._order = range(len(self.chunks))

    def __iter__(self) -> Iterator[List[int]]:
        for i in self._order:
            yield self.chunks[i]

    def __len__(self) -> int:
        return len(self._order)

    def positions(self) -> List[int]:
        """Every position this sampler yields, in order."""
        return [p for chunk in self for p in chunk]


def _collate(items) -> list:
    """One chunk → runs of consecutive same-size samples (or the first failure)."""
    for item in items:
        if isinstance(item, _Failure):
            return [item]
    runs, current = [], []
    for item in items:
        if current and item[1].shape != current[0][1].shape:
            runs.append(current)
            current = []
        current.append(item)
    if current:
        runs.append(current)
    return [Batch([p for p, *_ in run], torch.stack([i for _, i, _, _ in run]),
                  torch.stack([l for _, _, l, _ in run]), [n for *_, n in run]) for run in runs]


class ImageLoader:
    """The runner's view of one dataset: this rank's batches, decoded by a DataLoader.

    Args:
        dataset: An :class:`~benchmark.datasets.builder.EvalDataset` (``dataset[i]`` →
            image, label, id).
        batch_size: Images per chunk (the suite's ``batch_size``).
        shard: Deal chunks to the ranks of the process group (False: every chunk, e.g. to fit a
            universal perturbation on the whole fitting split on one rank).
        workers: Decoding worker processes (0: decode in this process).
    """

    def __init__(self, dataset, batch_size: int, shard: bool = True, workers: int = 0):
        self.dataset = dataset
        self.sampler = ChunkSampler(plan_chunks(len(dataset), batch_size), shard)
        kwargs = {}
        if workers > 0:
            # fork: workers start in milliseconds (mmengine's init_dist sets the global start
            # method to spawn, which would re-import torch and mmseg in every worker)
            ctx = 'fork' if 'fork' in multiprocessing.get_all_start_methods() else None
            kwargs = dict(num_workers=workers, multiprocessing_context=ctx, persistent_workers=True,
                          prefetch_factor=2)
        self._loader = DataLoader(_Samples(dataset), batch_sampler=self.sampler, collate_fn=_collate,
                                  **kwargs)

    def positions(self) -> List[int]:
        """Positions of this rank's images, in the order they are yielded."""
        return self.sampler.positions()

    def __len__(self) -> int:
        """Images this rank sees."""
        return sum(len(c) for c in self.sampler)

    def __iter__(self) -> Iterator[Batch]:
        for runs in self._loader:
            for run in runs:
                if isinstance(run, _Failure):
                    raise run.error
                yield run

    def close(self) -> None:
        """Stop the worker processes (if any)."""
        iterator = getattr(self._loader, '_iterator', None)
        if iterator is not None and hasattr(iterator, '_shutdown_workers'):
            iterator._shutdown_workers()
        self._loader._iterator = None
