"""Ranking and beyond-accuracy metrics, the full-ranking harness and off-policy estimators."""
