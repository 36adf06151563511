"""Load the configured data set and split: preprocess it (cached by fingerprint), then read the tables."""

from __future__ import annotations

from explorec.config import ExplorecConfig
from explorec.data.preprocess import preprocess
from explorec.data.processed import ProcessedDataset, load_processed


def load_dataset(cfg: ExplorecConfig) -> ProcessedDataset:
    """Preprocess (cached by fingerprint) and load the configured data set and split."""
    return load_processed(preprocess(cfg).output_dir)
