"""Training data from the impression log: ML-100K plus the logged clicks of known users and the items added
through the service, exported as files that `data=files` preprocesses (real data)."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from explorec.pipeline.config import load_config
from explorec.pipeline.log_data import export_logged_data
from explorec.serving.impressions import FeedbackEvent, ImpressionLog, ImpressionRecord, SlotRecord
from explorec.serving.new_items import NewItem


def slate(impression: str, user: str | None, items: list[str]) -> ImpressionRecord:
    """A logged slate of `items` for `user`."""
    slots = tuple(SlotRecord(item, 0.5, 1.0, False) for item in items)
    return ImpressionRecord(
        impression,
        "r",
        time.time(),
        user,
        "m",
        "1",
        "greedy",
        0.0,
        len(items),
        "user",
        False,
        "deterministic",
        "{}",
        slots,
    )


@pytest.mark.realdata
def test_export_adds_clicks_and_new_items_to_ml100k(real_data_dir: Path, isolated_home: Path) -> None:
    """Clicks of known users become interactions; anonymous clicks and skips do not; added items get text."""
    from explorec.data.loading import load_dataset
    from explorec.data.preprocess import preprocess

    cfg = load_config(["data=ml100k", f"data.data_dir={real_data_dir}"])
    log = ImpressionLog(cfg.service.impression_log)
    log.append([slate("a", "196", ["50", "181", "new-1"]), slate("b", None, ["50"])])
    log.record_feedback([FeedbackEvent("a", "181", "click"), FeedbackEvent("a", "new-1", "click")])
    log.record_feedback([FeedbackEvent("b", "50", "click")])
    log.record_additions([NewItem("new-1", "A new film", "A heist in Lisbon.", ("Crime",))])
    log.close()
    exported = export_logged_data(cfg, base="ml100k", out=isolated_home / "logged")
    assert (exported.n_base_interactions, exported.n_clicks, exported.n_exposures) == (100_000, 2, 1)
    written = pd.read_csv(exported.interactions, dtype={"user_id": str, "item_id": str})
    assert len(written) == 100_002
    assert set(written.tail(2)["item_id"]) == {"181", "new-1"} and set(written.tail(2)["user_id"]) == {"196"}
    files_cfg = load_config([*exported.overrides(), f"data.data_dir={real_data_dir}"])
    preprocess(files_cfg)
    dataset = load_dataset(files_cfg)
    assert dataset.n_items == 1683
    new = dataset.items[dataset.items["item_id"].astype(str) == "new-1"].iloc[0]
    assert "A heist in Lisbon." in new["text"] and "Crime" in new["text"]
    total = len(dataset.train) + len(dataset.valid) + len(dataset.test)
    assert total == 100_002
