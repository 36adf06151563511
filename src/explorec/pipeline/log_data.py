"""Training data from what the service learned: a base data set plus the impression log's clicks.

`export_logged_data` writes `interactions.csv` (the base source's interactions, then every logged click as an
interaction at the time its slate was served, rated `click_rating`) and `items.csv` (the base catalogue plus
the items added through `POST /items`, with their text), ready for the generic source:

    explorec pipeline data=files data.interactions=<out>/interactions.csv data.items=<out>/items.csv \\
        data.columns.rating=rating data.columns.title=title data.columns.year=year \\
        'data.columns.categories=[genres]' 'data.columns.text=[text]'

Shown-but-not-clicked slots are exposures, not interactions: the two-tower learns from positives only, so
they are counted in the summary but not written. Anonymous requests (no user id) carry no user to learn for.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from explorec.errors import ExplorecError

if TYPE_CHECKING:
    from explorec.config import ExplorecConfig

INTERACTION_COLUMNS = ["user_id", "item_id", "rating", "timestamp"]
ITEM_COLUMNS = ["item_id", "title", "year", "genres", "text"]


@dataclass(frozen=True)
class LoggedData:
    """What `export_logged_data` wrote and counted."""

    interactions: Path
    items: Path
    base: str
    n_base_interactions: int
    n_clicks: int
    n_exposures: int
    n_added_items: int

    def overrides(self) -> list[str]:
        """The overrides that train on the exported files through `data=files`."""
        return files_overrides(self.interactions, self.items)


def files_overrides(interactions: Path, items: Path) -> list[str]:
    """The overrides that train on an interactions and an items file written here, through `data=files`."""
    return [
        "data=files",
        f"data.interactions={interactions}",
        f"data.items={items}",
        "data.columns.rating=rating",
        "data.columns.title=title",
        "data.columns.year=year",
        "data.columns.categories=[genres]",
        "data.columns.text=[text]",
    ]


def logged_clicks(log: Any, click_rating: float) -> tuple[pd.DataFrame, int]:
    """(clicks as interactions, number of shown-but-not-clicked slots) of users with an id, from the log."""
    clicks, exposures = [], 0
    for rows in log.logged_slots():
        for row in rows:
            if row["user_id"] is None:
                continue
            if row["clicked"]:
                clicks.append((row["user_id"], row["item_id"], click_rating, row["served_at"]))
            else:
                exposures += 1
    frame = pd.DataFrame(clicks, columns=INTERACTION_COLUMNS)
    frame["timestamp"] = frame["timestamp"].astype("int64")
    return frame.drop_duplicates(["user_id", "item_id", "timestamp"]), exposures


def _write_atomically(frame: pd.DataFrame, path: Path) -> None:
    """Write a CSV through a temporary file, so a crash never leaves half a file."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    frame.to_csv(partial, index=False)
    partial.replace(path)


def export_logged_data(cfg: ExplorecConfig, *, base: str, out: Path, click_rating: float = 5.0) -> LoggedData:
    """Write the base source's interactions and items with the log's clicks and added items under `out`."""
    from explorec.data.sources import read_source
    from explorec.serving.impressions import ImpressionLog

    if base == "files":
        raise ExplorecError("export-logs --base names a built-in source (e.g. ml100k), not files")
    raw = read_source(dataclasses.replace(cfg.data, name=base))
    log = ImpressionLog(cfg.service.impression_log)
    try:
        return write_training_files(
            interactions=raw.interactions,
            items=raw.items,
            logs=[log],
            out=out,
            base=base,
            click_rating=click_rating,
        )
    finally:
        log.close()


def write_training_files(
    *,
    interactions: pd.DataFrame,
    items: pd.DataFrame,
    logs: Sequence[Any],
    out: Path,
    base: str,
    click_rating: float = 5.0,
) -> LoggedData:
    """Write `interactions` plus the clicks of every log, and `items` plus the logs' added items, under `out`.

    `interactions` has user_id, item_id, rating, timestamp; `items` item_id and whatever of title, year,
    genres, text it has. Nothing is written when a click names an item that neither lists.
    """
    frames, exposures, added = [], 0, []
    for log in logs:
        clicks, skipped = logged_clicks(log, click_rating)
        frames.append(clicks)
        exposures += skipped
        added.extend(log.catalogue_additions())
    clicks = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=INTERACTION_COLUMNS)
    base_rows = interactions.loc[:, INTERACTION_COLUMNS].astype({"user_id": str, "item_id": str})
    catalogue = items.reindex(columns=ITEM_COLUMNS).assign(item_id=lambda f: f["item_id"].astype(str))
    new_items = pd.DataFrame(
        [(item.item_id, item.title, None, "|".join(item.genres), item.text) for item in added],
        columns=ITEM_COLUMNS,
    ).drop_duplicates("item_id", keep="last")
    catalogue = pd.concat(
        [catalogue[~catalogue["item_id"].isin(new_items["item_id"])], new_items], ignore_index=True
    )
    unknown = sorted(set(clicks["item_id"]) - set(catalogue["item_id"]))
    if unknown:
        raise ExplorecError(
            f"the log has clicks on {len(unknown)} items that {base} does not list, e.g. {unknown[:3]}"
        )
    out.mkdir(parents=True, exist_ok=True)
    paths = out / "interactions.csv", out / "items.csv"
    _write_atomically(pd.concat([base_rows, clicks], ignore_index=True), paths[0])
    _write_atomically(catalogue, paths[1])
    return LoggedData(paths[0], paths[1], base, len(base_rows), len(clicks), exposures, len(new_items))
