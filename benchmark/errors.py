"""User-facing errors: re-exported from :mod:`common.errors`, where they are defined.

Kept so that ``from benchmark.errors import ConfigError`` keeps working; new code imports
:mod:`common.errors` (or :mod:`common`) directly.
"""
from common.errors import (BenchmarkError, CheckpointError, ConfigError, DatasetError,  # noqa: F401
                           ModelError, ResultsError)

__all__ = ['BenchmarkError', 'ConfigError', 'DatasetError', 'CheckpointError', 'ResultsError',
           'ModelError']
