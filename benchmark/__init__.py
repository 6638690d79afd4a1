"""Benchmark harness: suites, cells, datasets, metrics, result records and the runner.

Light modules (``metrics``, ``store``, ``cells``, ``errors``) import only numpy and the standard
library so that the leaderboard can use them without importing torch or mmsegmentation.
"""
