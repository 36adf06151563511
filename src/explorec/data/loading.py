"""Load the configured data set and split: preprocess it (cached by fingerprint), then read the tables.

Within one process the loaded data set is kept, so the stages of a pipeline run share one instance (and its
cached derived data) and the raw inputs are hashed once. The memo key is the config parts that decide the
output (data, split, the processed folder) and the path, size, modification time and inode of every input
file; an entry is used only while its output folder still holds a manifest with its fingerprint.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

from explorec.config import ExplorecConfig, config_hash, resolve, to_dict
from explorec.data.preprocess import input_files, preprocess, read_manifest
from explorec.data.processed import ProcessedDataset, load_processed
from explorec.data.sources import validate_data_choices

MEMO_SIZE = 4
"""How many loaded data sets one process keeps (the least recently used one is dropped first)."""

_LOADED: OrderedDict[tuple[str, ...], ProcessedDataset] = OrderedDict()
_LOADING = threading.Lock()  # one load at a time, so concurrent tasks share one hashing and one instance


def load_dataset(cfg: ExplorecConfig) -> ProcessedDataset:
    """Preprocess (cached by fingerprint) and load the configured data set and split, once per process."""
    validate_data_choices(cfg)
    with _LOADING:
        key = memo_key(cfg)
        dataset = _LOADED.get(key)
        if dataset is not None and _still_written(dataset):
            _LOADED.move_to_end(key)
            return dataset
        dataset = load_processed(preprocess(cfg).output_dir)
        _LOADED[key] = dataset
        while len(_LOADED) > MEMO_SIZE:
            _LOADED.popitem(last=False)
        return dataset


def memo_key(cfg: ExplorecConfig) -> tuple[str, ...]:
    """Return what decides a load's output without reading the inputs: config parts and input file stats."""
    files, _ = input_files(cfg)
    relevant = {"data": to_dict(cfg.data), "split": to_dict(cfg.split)}
    return (config_hash(relevant), str(resolve(cfg.paths.processed)), *map(_file_stamp, sorted(files)))


def _file_stamp(path: Path) -> str:
    """Return a file's path, size, modification time (ns) and inode."""
    stat = path.stat()
    return f"{path}:{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ino}"


def _still_written(dataset: ProcessedDataset) -> bool:
    """Return whether the data set's folder still holds the manifest with its fingerprint."""
    manifest = read_manifest(dataset.path)
    return manifest is not None and manifest.get("fingerprint") == dataset.fingerprint


def forget_loaded() -> None:
    """Drop every data set this process keeps (the next load reads the tables again)."""
    with _LOADING:
        _LOADED.clear()
