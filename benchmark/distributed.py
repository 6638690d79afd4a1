"""torch.distributed for the runner, through mmengine's launcher utilities (``mmengine.dist``).

One process per rank, started by ``torchrun`` (``--launcher pytorch``) or ``srun``
(``--launcher slurm``); ``--launcher none`` is one process and no process group. The runner deals
*batches* to ranks (:mod:`benchmark.loader`), gathers what each rank measured and writes every
record on rank 0 only (:class:`Dist`), so a record does not depend on the number of ranks.

On a CPU-only torch, mmengine's ``init_dist`` still calls ``torch.cuda.set_device(local_rank)``,
which a CPU build cannot do: :func:`init` runs it with that call made a no-op and the ``gloo``
backend (everything else, the Slurm node list and port included, is mmengine's own code).
"""
from __future__ import annotations

import contextlib
import os
from typing import Any, List, Optional
from unittest import mock

import torch

from common.errors import ConfigError

LAUNCHERS = ('none', 'pytorch', 'slurm')


def init(launcher: str, device: str = 'cpu', timeout_s: Optional[float] = None) -> 'Dist':
    """Join the process group of ``launcher`` (``'none'``: no group) and return the :class:`Dist`.

    The backend is ``nccl`` for CUDA devices and ``gloo`` for the CPU. With a GPU, each rank uses
    ``cuda:LOCAL_RANK`` (:func:`rank_device`).
    """
    if launcher not in LAUNCHERS:
        raise ConfigError(f'--launcher must be one of {", ".join(LAUNCHERS)}, got {launcher!r}')
    if launcher == 'none':
        if int(os.environ.get('WORLD_SIZE', '1')) > 1:
            raise ConfigError('this process was started by torchrun (WORLD_SIZE='
                              f'{os.environ["WORLD_SIZE"]}) but --launcher is none: pass '
                              '--launcher pytorch so the ranks share the work instead of each '
                              'running all of it')
        return Dist()
    from mmengine import dist as mdist
    if mdist.is_distributed():
        return Dist()
    cuda = torch.device(device).type == 'cuda'
    needed = ('RANK', 'LOCAL_RANK', 'WORLD_SIZE') if launcher == 'pytorch' else (
        'SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST')
    missing = [v for v in needed if v not in os.environ]
    if missing:
        how = ('torchrun --nproc-per-node N tools/run_benchmark.py --launcher pytorch ...'
               if launcher == 'pytorch' else 'srun ... python tools/run_benchmark.py --launcher slurm ...')
        raise ConfigError(f'--launcher {launcher} needs the environment its launcher sets '
                          f'({", ".join(missing)} missing); start the run as `{how}`, or use '
                          '--launcher none for one process')
    kwargs = {'timeout': timeout_s} if timeout_s else {}
    if cuda:
        mdist.init_dist(launcher, backend='nccl', **kwargs)
    else:
        # a CPU build has no cuda.set_device; mmengine calls it unconditionally
        with mock.patch.object(torch.cuda, 'set_device', lambda *_: None):
            mdist.init_dist(launcher, backend='gloo', **kwargs)
    return Dist()


def rank_device(device: str) -> str:
    """The device of this rank: ``cuda`` becomes ``cuda:LOCAL_RANK`` in a process group."""
    dev = torch.device(device)
    if dev.type == 'cuda' and dev.index is None and 'LOCAL_RANK' in os.environ:
        return f'cuda:{int(os.environ["LOCAL_RANK"])}'
    return device


class Dist:
    """Rank, world size and the few collectives the runner needs (identity in one process)."""

    def __init__(self):
        from mmengine import dist as mdist
        self._mdist = mdist
        self.rank, self.world_size = mdist.get_dist_info()

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        """Leave the process group (if this process joined one)."""
        if self.enabled and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

    def barrier(self) -> None:
        if self.enabled:
            self._mdist.barrier()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        self._mdist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> List[Any]:
        """Every rank's ``obj``, in rank order (on every rank)."""
        if not self.enabled:
            return [obj]
        return self._mdist.all_gather_object(obj)

    def all_ok(self, error: Optional[BaseException]) -> None:
        """Raise on every rank if any rank failed: ``error`` is this rank's exception or None.

        A rank that fails alone would leave the others waiting in the next collective; each
        stage ends here instead, so all ranks stop with the failing rank's message.
        """
        if not self.enabled:
            if error is not None:
                raise error
            return
        errors = self.gather(None if error is None else (type(error).__name__, str(error)))
        if error is not None:
            raise error
        failed = [(r, e) for r, e in enumerate(errors) if e is not None]
        if failed:
            rank, (kind, message) = failed[0]
            from common.errors import BenchmarkError
            raise BenchmarkError(f'rank {rank} failed with {kind}: {message}')


@contextlib.contextmanager
def deterministic(enabled: bool):
    """``torch.use_deterministic_algorithms`` (warn only) and no cuDNN autotuning while enabled."""
    if not enabled:
        yield
        return
    os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')
    old = (torch.are_deterministic_algorithms_enabled(),
           torch.is_deterministic_algorithms_warn_only_enabled(), torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(old[0], warn_only=old[1])
        torch.backends.cudnn.benchmark = old[2]

