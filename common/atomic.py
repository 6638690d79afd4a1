"""Atomic, durable file writes, and checks that an output directory is writable.

Every file the benchmark keeps (result records and their per-image matrices, rendered leaderboards,
metafile entries, fitted-attack state) is written the same way:

1. the bytes go to a temporary file beside the target (``.<name>.XXXXXXXX.tmp``, ``mkstemp``), which
   is flushed, fsynced and given the mode a plain ``open()`` would give (``0o666 & ~umask``, not
   ``mkstemp``'s owner-only ``0600``);
2. it is renamed over the target with ``os.replace`` (atomic on POSIX and Windows), and the
   directory is fsynced so the rename survives a power cut.

A reader therefore sees the old file or the new one, never a part. An ``OSError`` (full disk,
read-only directory, missing permission, a file where a directory is expected) becomes a
:class:`~common.errors.ResultsError` naming the path and what to do; the temporary file is removed
and what was stored stays as it was. Temporary files of a killed process are recognised by
:func:`is_temporary_name` and found by :func:`find_temporary`.

:func:`write_temporary` and :func:`commit` are the two halves, for writers that must make several
files complete before renaming any of them (a record and its per-image file).
"""
from __future__ import annotations

import errno
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

from .errors import ResultsError

__all__ = ['atomic_write_bytes', 'write_temporary', 'commit', 'remove_quietly', 'current_umask',
           'fsync_directory', 'check_writable_dir', 'is_temporary_name', 'find_temporary',
           'TEMPORARY_NAME']

#: Names of the temporary files written by :func:`write_temporary` (``mkstemp``: 8 characters).
TEMPORARY_NAME = re.compile(r'^\..+\.[A-Za-z0-9_]{8}\.tmp$')

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows.

    Linux reports it in ``/proc/self/status``; elsewhere it can only be read by setting it, which is
    done under a lock and restored at once (``os.umask`` is process-wide).
    """
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('Umask:'):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def fsync_directory(directory: Union[str, os.PathLike]) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be fsynced)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_error(path: Path, e: OSError) -> ResultsError:
    """A one-paragraph :class:`ResultsError` for a failed write of ``path``."""
    what = e.strerror or str(e)
    if e.errno in (errno.ENOSPC, getattr(errno, 'EDQUOT', errno.ENOSPC)):
        advice = ('the disk (or your quota) is full. Free some space and run the same command '
                  'again; finished records are kept and the run resumes where it stopped')
    elif e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        advice = (f'{what}. Expected a writable directory: fix the permissions of {path.parent}, '
                  'or write to another directory (--results-dir / --out-dir)')
    elif e.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        advice = (f'{what}: a component of this path is a file where a directory is expected, or '
                  'the target is a directory. Move that file away or choose another directory')
    else:
        advice = f'{what}. Check the path and the file system, then run the same command again'
    return ResultsError(f'cannot write {path}: {advice}. Nothing already stored was changed '
                        '(the temporary file was removed).')


def remove_quietly(path: Union[str, os.PathLike]) -> None:
    """Remove a file if it exists; errors are ignored (used to clean up temporary files)."""
    try:
        os.unlink(path)
    except OSError:
        pass


def write_temporary(path: Union[str, os.PathLike], data: bytes) -> Path:
    """Write ``data`` durably to a temporary file beside ``path`` with ``open()``'s default mode.

    The parent directory is created if missing. Returns the temporary file's path, to be renamed
    into place by :func:`commit`.

    Raises:
        ResultsError: the directory or the file cannot be written (nothing is left behind).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(path, e) from None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    except OSError as e:
        raise write_error(path, e) from None
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            # mkstemp creates 0600; a record must be as readable as any file the user writes
            os.fchmod(f.fileno(), 0o666 & ~current_umask())
            os.fsync(f.fileno())
    except BaseException as e:
        remove_quietly(tmp)
        if isinstance(e, OSError):
            raise write_error(path, e) from None
        raise
    return Path(tmp)


def commit(tmps: Sequence[Tuple[Path, Path]], retire: Optional[Path] = None) -> None:
    """Rename each ``(temporary, final)`` pair into place, then fsync the directories.

    ``retire`` (an existing file) is removed first: e.g. the record being replaced, so that an
    interruption between the renames leaves no old record naming a new per-image file (the cell
    is then simply missing, and recomputed by the next run).

    Raises:
        ResultsError: a rename failed; every temporary file is removed.
    """
    path = tmps[0][1]
    try:
        if retire is not None:
            path = retire
            retire.unlink()
        for tmp, path in tmps:
            os.replace(tmp, path)
    except BaseException as e:
        for tmp, _ in tmps:
            remove_quietly(tmp)
        if isinstance(e, OSError):
            raise write_error(path, e) from None
        raise
    for directory in {path.parent for _, path in tmps}:
        fsync_directory(directory)


def atomic_write_bytes(path: Union[str, os.PathLike], data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory and ``os.replace``.

    The file gets the mode ``open()`` would give it (``0o666 & ~umask``) and the rename is made
    durable. An ``OSError`` (full disk, read-only or missing permission, a file where a directory
    is expected) becomes a :class:`ResultsError` naming the path; the temporary file is removed and
    an existing ``path`` is left as it was.
    """
    path = Path(path)
    commit([(write_temporary(path, data), path)])


def check_writable_dir(path: Union[str, os.PathLike], what: str) -> None:
    """``path`` is a directory this process can write to (created if missing), checked before any
    work starts; otherwise a :class:`ResultsError` naming ``what`` (e.g. ``--results-dir``)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ResultsError(f'{what} {path} is a file; expected a directory (it is created if missing)')
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise ResultsError(f'cannot write under {what} {path}: {e.strerror}. Expected a writable '
                           'directory: fix its permissions or free space, or choose another '
                           'directory.') from None


def is_temporary_name(name: str) -> bool:
    """Whether ``name`` is a temporary file name of :func:`write_temporary`."""
    return bool(TEMPORARY_NAME.match(name))


def find_temporary(root: Union[str, os.PathLike]) -> List[Path]:
    """Temporary files left by interrupted writes anywhere under ``root`` (sorted; nothing removed)."""
    root = Path(root)
    if root.is_file():
        return [root] if is_temporary_name(root.name) else []
    return sorted(p for p in root.rglob('.*.tmp') if p.is_file() and is_temporary_name(p.name))
