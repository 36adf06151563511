"""Turn a validated raw data set into model-ready, split Parquet tables with a manifest (docs/design.md §2).

Steps: implicit conversion → k-core filter → dense id remapping → item text → split → atomic write.
The output folder is named by a fingerprint of the input files and the resolved config, so an identical
second run finds it and skips all work.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from explorec import __version__
from explorec.config import ExplorecConfig, config_hash, project_root, to_dict
from explorec.data.download import locate_dataset
from explorec.data.files import FILES, inputs_root
from explorec.data.processed import FORMAT_VERSION, SPLIT_NAMES, items_with_text
from explorec.data.raw import RawDataset
from explorec.data.sources import data_source, read_source, validate_data_choices
from explorec.data.splits import Split, check_split_sizes, make_split
from explorec.data.validation import unreadable_file_error
from explorec.errors import DataValidationError

MAX_TAGS_IN_TEXT = 5
FILES_SETTINGS = ("interactions", "items", "users", "columns")
"""The settings only `data=files` reads: left out of other sources' fingerprints, which stay as they were."""
NOT_FINGERPRINTED = ("data_dir", "cache_dir", "timestamp_slack_s")
"""Data settings that do not change an output: where the files are, and how far ahead a timestamp may be
(a check that either accepts the inputs as they are or stops)."""


@dataclass(frozen=True)
class PreprocessResult:
    """Where the processed tables are, their fingerprint and counts, and whether the cache answered."""

    output_dir: Path
    fingerprint: str
    cache_hit: bool
    counts: dict[str, int]
    elapsed_s: float

    def summary(self) -> dict[str, Any]:
        """Return a JSON-serialisable summary for people and for `--json`."""
        return {
            "output_dir": str(self.output_dir),
            "fingerprint": self.fingerprint,
            "cache_hit": self.cache_hit,
            "counts": self.counts,
            "elapsed_s": round(self.elapsed_s, 3),
        }


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint_inputs(files: list[Path], root: Path | None) -> dict[str, str]:
    """Return {path relative to root: sha256} for every input file, sorted by path."""
    hashes = {}
    for path in sorted(files):
        name = str(path.relative_to(root)) if root is not None and path.is_relative_to(root) else path.name
        try:
            hashes[name] = sha256_file(path)
        except OSError as error:
            raise unreadable_file_error(path, error) from error
    return hashes


def run_fingerprint(input_hashes: dict[str, str], cfg: ExplorecConfig) -> str:
    """Return the fingerprint of one preprocessing: inputs, the config parts that matter, format version."""
    relevant = {
        "format_version": FORMAT_VERSION,
        "inputs": input_hashes,
        "data": {key: value for key, value in to_dict(cfg.data).items() if key not in NOT_FINGERPRINTED},
        "split": to_dict(cfg.split),
    }
    if cfg.data.name != "synthetic":
        relevant["data"].pop("synthetic")
    if cfg.data.name != FILES:
        for key in FILES_SETTINGS:
            relevant["data"].pop(key)
    return config_hash(relevant) + config_hash({"v": __version__})[:4]


def output_dir_for(cfg: ExplorecConfig, fingerprint: str) -> Path:
    """Return the folder a preprocessing with this config and fingerprint writes to."""
    base = Path(cfg.paths.processed)
    if not base.is_absolute():
        base = project_root() / base
    return base / f"{cfg.data.name}-{cfg.split.name}-{fingerprint}"


def to_implicit(interactions: pd.DataFrame, threshold: float | None) -> pd.DataFrame:
    """Keep interactions with rating ≥ threshold (None keeps every rating)."""
    if threshold is None:
        return interactions
    return interactions[interactions["rating"] >= threshold]


def k_core(interactions: pd.DataFrame, k: int) -> pd.DataFrame:
    """Repeatedly drop users and items with fewer than k interactions until none remain (k ≤ 1: no-op)."""
    frame = interactions
    while k > 1:
        user_counts = frame["user_id"].map(frame["user_id"].value_counts())
        item_counts = frame["item_id"].map(frame["item_id"].value_counts())
        keep = (user_counts >= k) & (item_counts >= k)
        if keep.all():
            break
        frame = frame[keep]
    return frame


def _sorted_ids(ids: pd.Series) -> np.ndarray:
    """Return the unique ids in natural order: numerically when every id is an integer, else as text."""
    unique = pd.unique(ids.astype(str))
    numeric = pd.to_numeric(pd.Series(unique), errors="coerce")
    if numeric.notna().all():
        return unique[np.argsort(numeric.to_numpy(), kind="stable")]
    return np.sort(unique)


def build_item_text(*, title: str, year: int | None, genres: str, overview: str, tags: str) -> str:
    """Build the encoder input `title (year) | genres | overview | top tags`, skipping empty parts."""
    heading = title.strip()
    if year is not None and f"({year})" not in heading:
        heading = f"{heading} ({year})"
    parts = [heading, ", ".join(g for g in genres.split("|") if g)]
    parts.append(overview.strip())
    top_tags = [tag for tag in tags.split("|") if tag][:MAX_TAGS_IN_TEXT]
    parts.append(", ".join(top_tags))
    return " | ".join(part for part in parts if part)


def _item_table(raw: RawDataset, item_ids: np.ndarray) -> pd.DataFrame:
    """Return the items table in dense-index order with the encoder text."""
    items = raw.items.assign(item_id=raw.items["item_id"].astype(str)).set_index("item_id")
    items = items.reindex(item_ids)
    missing = items["title"].isna()
    if missing.any():
        first = items.index[missing.to_numpy()][0]
        raise DataValidationError(
            file=f"{raw.name} items",
            row=None,
            column="item_id",
            problem=f"rated item {first!r} has no metadata",
        )
    table = items.reset_index()
    table.insert(0, "item_idx", np.arange(len(table), dtype=np.int32))
    table["year"] = table["year"].astype("Int32")
    for column in ("genres", "overview", "tags"):
        table[column] = table[column].fillna("").astype(str)
    table["text"] = [
        build_item_text(
            title=str(row.title),
            year=None if pd.isna(row.year) else int(row.year),
            genres=row.genres,
            overview=row.overview,
            tags=row.tags,
        )
        for row in table.itertuples(index=False)
    ]
    table["has_overview"] = table["overview"].str.len() > 0
    return table[
        ["item_idx", "item_id", "title", "year", "genres", "overview", "tags", "text", "has_overview"]
    ]


def _dense(frame: pd.DataFrame, user_index: pd.Index, item_index: pd.Index) -> pd.DataFrame:
    """Map original ids to dense indices and fix the dtypes of the interaction columns."""
    return pd.DataFrame(
        {
            "user_idx": user_index.get_indexer(frame["user_id"].astype(str)).astype(np.int32),
            "item_idx": item_index.get_indexer(frame["item_id"].astype(str)).astype(np.int32),
            "rating": frame["rating"].to_numpy(dtype=np.float32),
            "timestamp": frame["timestamp"].to_numpy(dtype=np.int64),
        }
    )


def ratings_source(raw: RawDataset) -> str:
    """Name the ratings of a raw data set in messages: its ratings file, or the generated set's name."""
    return str(raw.files[0]) if raw.files else f"{raw.name} (generated)"


def check_interactions_left(
    raw: RawDataset, implicit: pd.DataFrame, kept: pd.DataFrame, *, threshold: float | None, k: int
) -> None:
    """Raise, naming the ratings file, when no ratings are read or the threshold or k-core leaves none."""
    source, n_ratings = ratings_source(raw), len(raw.interactions)
    if n_ratings == 0:
        problem = "holds no ratings"
    elif implicit.empty:
        low, high = raw.interactions["rating"].min(), raw.interactions["rating"].max()
        problem = (
            f"rating_threshold={threshold} keeps none of its {n_ratings} ratings (in [{low:g}, {high:g}])"
        )
    elif kept.empty:
        problem = (
            f"k_core={k} removes every one of the {len(implicit)} interactions left after rating_threshold"
        )
    else:
        return
    raise DataValidationError(file=source, row=None, column=None, problem=problem)


def build_tables(raw: RawDataset, cfg: ExplorecConfig) -> tuple[Split, pd.DataFrame, pd.DataFrame]:
    """Return (split, items, users) for a raw data set under the config; writes nothing."""
    threshold = cfg.data.rating_threshold
    if cfg.split.name == "coat_random":
        threshold = cfg.split.coat_positive_threshold
    implicit = to_implicit(raw.interactions, threshold)
    interactions = k_core(implicit, cfg.data.k_core)
    check_interactions_left(raw, implicit, interactions, threshold=threshold, k=cfg.data.k_core)
    user_ids, item_ids = _sorted_ids(interactions["user_id"]), _sorted_ids(interactions["item_id"])
    user_index, item_index = pd.Index(user_ids), pd.Index(item_ids)
    items = _item_table(raw, item_ids)
    dense = _dense(interactions, user_index, item_index)
    random_test = None
    if cfg.split.name == "coat_random":
        if raw.fixed_test is None:
            raise ValueError("split coat_random needs a source with a random-exposure test set (data=coat)")
        test_raw = to_implicit(raw.fixed_test, threshold)
        known = test_raw["user_id"].astype(str).isin(user_index) & test_raw["item_id"].astype(str).isin(
            item_index
        )
        random_test = _dense(test_raw[known], user_index, item_index)
    split = make_split(
        dense,
        cfg.split,
        eligible_cold_items=items_with_text(items),
        random_test=random_test,
    )
    check_split_sizes(split, split_name=cfg.split.name, source=ratings_source(raw))
    items["is_cold"] = items["item_idx"].isin(split.cold_items)
    users = pd.DataFrame(
        {"user_idx": np.arange(len(user_ids), dtype=np.int32), "user_id": user_ids.astype(str)}
    )
    return split, items, users


def split_counts(split: Split, items: pd.DataFrame, users: pd.DataFrame) -> dict[str, int]:
    """Return the counts a person checks first: interactions, users, items and rows per split."""
    frames = {name: getattr(split, name) for name in SPLIT_NAMES}
    return {
        "interactions": int(sum(len(frame) for frame in frames.values())),
        "users": len(users),
        "items": len(items),
        "items_with_overview": int(items["has_overview"].sum()),
        "cold_items": len(split.cold_items),
        **{name: len(frame) for name, frame in frames.items()},
    }


def remove_stale_staging(output_dir: Path) -> list[Path]:
    """Remove the staging folders of `output_dir` left by a writer that died (its process is gone).

    A staging folder is named `.staging-<output>-<pid>-<random>`; one whose process still runs belongs to
    a concurrent writer and stays. Returns the folders removed.
    """
    removed = []
    for folder in output_dir.parent.glob(f".staging-{output_dir.name}-*"):
        pid = folder.name.removeprefix(f".staging-{output_dir.name}-").split("-")[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _process_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_atomically(
    output_dir: Path, split: Split, items: pd.DataFrame, users: pd.DataFrame, manifest: dict[str, Any]
) -> None:
    """Write every table and the manifest into a temporary sibling folder, then rename it into place."""
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(output_dir)
    staging = output_dir.parent / f".staging-{output_dir.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        for name in SPLIT_NAMES:
            getattr(split, name).to_parquet(staging / f"{name}.parquet", index=False)
        items.to_parquet(staging / "items.parquet", index=False)
        users.to_parquet(staging / "users.parquet", index=False)
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
        if output_dir.exists():
            shutil.rmtree(output_dir)
        os.replace(staging, output_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def read_manifest(output_dir: Path) -> dict[str, Any] | None:
    """Return the manifest of a complete output folder, or None when there is none."""
    path = output_dir / "manifest.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def input_files(cfg: ExplorecConfig) -> tuple[list[Path], Path | None]:
    """Return the source files a reader uses (the fingerprint's inputs) and the data set folder."""
    source = data_source(cfg.data.name)
    layout = source.layout
    if layout is None and source.inputs is not None:
        files = list(source.inputs(cfg.data))
        return files, inputs_root(files)
    if layout is None:
        return [], None
    folder = locate_dataset(layout, cfg.data)
    return [folder / name for name in layout.required], folder


def _manifest(
    cfg: ExplorecConfig,
    fingerprint: str,
    input_hashes: dict[str, str],
    counts: dict[str, int],
    raw: RawDataset,
) -> dict[str, Any]:
    """Return the manifest written beside the tables."""
    return {
        "format_version": FORMAT_VERSION,
        "explorec_version": __version__,
        "fingerprint": fingerprint,
        "dataset": cfg.data.name,
        "split": cfg.split.name,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "inputs": input_hashes,
        "config": {"data": to_dict(cfg.data), "split": to_dict(cfg.split), "seed": cfg.seed},
        "counts": counts,
        "source_notes": dict(raw.notes),
    }


def read_raw(cfg: ExplorecConfig) -> RawDataset:
    """Read and validate the configured source, or generate it."""
    return read_source(cfg.data)


@dataclass(frozen=True)
class PlannedOutput:
    """Where a preprocessing with this config and these inputs writes, and the fingerprint it carries."""

    output_dir: Path
    fingerprint: str
    input_hashes: dict[str, str]


def plan_output(cfg: ExplorecConfig) -> PlannedOutput:
    """Hash the inputs once and return the output folder and fingerprint they determine."""
    validate_data_choices(cfg)
    files, folder = input_files(cfg)
    input_hashes = fingerprint_inputs(files, folder)
    fingerprint = run_fingerprint(input_hashes, cfg)
    return PlannedOutput(output_dir_for(cfg, fingerprint), fingerprint, input_hashes)


def _cached(plan: PlannedOutput, started: float) -> PreprocessResult | None:
    """Return the complete earlier output of this plan as a cache hit, or None."""
    existing = read_manifest(plan.output_dir)
    if existing is None or existing.get("fingerprint") != plan.fingerprint:
        return None
    elapsed = time.perf_counter() - started
    return PreprocessResult(plan.output_dir, plan.fingerprint, True, existing["counts"], elapsed)


def find_cached(cfg: ExplorecConfig) -> PreprocessResult | None:
    """Return the earlier output whose fingerprint matches this config and these inputs, if there is one."""
    started = time.perf_counter()
    return _cached(plan_output(cfg), started)


def preprocess(cfg: ExplorecConfig) -> PreprocessResult:
    """Read, validate, preprocess and split the configured data set; reuse a matching earlier output."""
    started = time.perf_counter()
    plan = plan_output(cfg)
    cached = _cached(plan, started)
    if cached is not None:
        return cached
    raw = read_raw(cfg)
    split, items, users = build_tables(raw, cfg)
    counts = split_counts(split, items, users)
    manifest = _manifest(cfg, plan.fingerprint, plan.input_hashes, counts, raw)
    write_atomically(plan.output_dir, split, items, users, manifest)
    return PreprocessResult(plan.output_dir, plan.fingerprint, False, counts, time.perf_counter() - started)
