"""Simple strong baselines run through the same harness as the two-tower model."""
