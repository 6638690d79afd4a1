"""User-facing errors, shared by every package.

A :class:`BenchmarkError` is a mistake in what the user asked for (an unknown model, a bad ε, a
missing dataset, a checkpoint that does not fit). Command-line tools print its message as one
paragraph, without a traceback, and exit with status 2. Everything already stored stays stored:
errors are raised before a cell starts or abort only the cell being computed.

Defined here, in the bottom layer, so that every package (``attacks``, ``model_zoo``, ``benchmark``,
``leaderboard``, ``tools``) raises the same classes; :mod:`benchmark.errors` re-exports them.
"""


class BenchmarkError(Exception):
    """A problem with the user's input, with a message saying what was wrong and what was expected."""


class ConfigError(BenchmarkError):
    """A suite, model config or attack specification is invalid."""


class DatasetError(BenchmarkError):
    """A dataset directory is missing or does not have the expected layout."""


class CheckpointError(BenchmarkError):
    """A checkpoint cannot be loaded into the model it was given for."""


class ResultsError(BenchmarkError):
    """A stored result record is unreadable or does not satisfy the schema."""


class ModelError(BenchmarkError):
    """A model produced output no benchmark number can be computed from (NaN or infinite logits or
    input gradients, e.g. from NaN weights): the run stops rather than record a meaningless cell."""
