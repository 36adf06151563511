"""Pretrained text encoders and their on-disk embedding cache."""
