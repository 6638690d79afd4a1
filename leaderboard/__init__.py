"""Leaderboard: renders tables and figures from result records only (no model code)."""
