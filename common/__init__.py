"""The bottom layer: what every package of the benchmark shares, and nothing else.

Layers, bottom up (DESIGN.md): ``common`` ← ``attacks`` and ``model_zoo`` ← ``benchmark`` (runner,
store, metrics, suites) ← ``tools``; ``leaderboard`` depends on the store's data format and on
``common`` only. This package imports only the standard library, so any layer can use it.

* :mod:`common.errors` – the user-facing error classes (:class:`~common.errors.BenchmarkError` and
  its subclasses);
* :mod:`common.names` – names that become path components (:func:`~common.names.check_name`) and
  canonical JSON for hashing keys (:func:`~common.names.canonical_json`);
* :mod:`common.hashing` – sha256 of bytes and files;
* :mod:`common.atomic` – atomic, durable file writes (temporary file + ``os.replace``) and checks
  that an output directory is writable.
"""
from .atomic import atomic_write_bytes, check_writable_dir, find_temporary, is_temporary_name
from .errors import (BenchmarkError, CheckpointError, ConfigError, DatasetError, ModelError,
                     ResultsError)
from .hashing import sha256_bytes, sha256_file
from .names import canonical_json, check_name

__all__ = [
    'BenchmarkError', 'ConfigError', 'DatasetError', 'CheckpointError', 'ResultsError', 'ModelError',
    'check_name', 'canonical_json', 'sha256_bytes', 'sha256_file', 'atomic_write_bytes',
    'check_writable_dir', 'is_temporary_name', 'find_temporary',
]
