"""One run per model directory at a time: an advisory lock on the directory itself.

Two runs on the same results directory (two terminals, two Slurm jobs on a shared file system,
a crashed run restarted while the first is still alive) must not compute the same cell twice or
clobber each other's files. The runner holds an exclusive ``flock`` on
``<results>/<suite>/<model>/`` while it computes that model's cells, and re-reads which cells are
stored once it holds it.

``flock`` on the directory's own file descriptor needs no lock file, so nothing is left behind by
a killed run (the kernel releases the lock when the process dies, SIGKILL included). It is
advisory and local to one machine's kernel (and NFS-aware through ``flock`` emulation on Linux);
that is the same guarantee mmengine's and pip's own file locks give.
"""
from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from typing import Optional

from common.errors import ResultsError


class DirectoryLock:
    """An exclusive advisory lock on a directory (created if missing).

    Use :meth:`acquire` with ``blocking=False`` to test it; as a context manager it blocks.
    """

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self._fd: Optional[int] = None

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock; returns False when ``blocking`` is False and another process holds it."""
        if self._fd is not None:
            return True
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.directory, os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0))
        except OSError as e:
            raise ResultsError(f'cannot create or open the results directory {self.directory}: '
                               f'{e.strerror}. Expected a writable directory (check the path and '
                               'its permissions, or choose another --results-dir).') from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> 'DirectoryLock':
        self.acquire(blocking=True)
        return self

    def __exit__(self, *exc) -> None:
        self.release()
