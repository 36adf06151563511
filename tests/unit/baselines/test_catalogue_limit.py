"""EASE and ItemKNN refuse a catalogue above `benchmark.item_item_max_items` before any item × item work."""

from __future__ import annotations

import pytest
import scipy.sparse as sp

from explorec.baselines.ease import EASE, EASEParams
from explorec.baselines.factory import build_baseline
from explorec.baselines.item_knn import ItemKNN, ItemKNNParams
from explorec.config import compose
from explorec.errors import CatalogueTooLargeError, ConfigError


@pytest.mark.parametrize(
    ("name", "model"),
    [("ease", EASE(EASEParams(max_items=39))), ("item_knn", ItemKNN(ItemKNNParams(max_items=39)))],
)
def test_a_catalogue_above_the_limit_is_refused_naming_limit_and_setting(
    planted_blocks: tuple[sp.csr_matrix, sp.csr_matrix], name: str, model: EASE | ItemKNN
) -> None:
    train, _ = planted_blocks  # 40 items
    with pytest.raises(CatalogueTooLargeError) as caught:
        model.fit(train)
    message = str(caught.value)
    assert message.startswith(f"{name} refuses a catalogue of 40 items: the limit is 39")
    assert "benchmark.item_item_max_items" in message and "\n" not in message
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("name", ["ease", "item_knn"])
def test_a_catalogue_at_the_limit_fits(
    planted_blocks: tuple[sp.csr_matrix, sp.csr_matrix], name: str
) -> None:
    train, _ = planted_blocks
    assert build_baseline(name, max_items=40).fit(train).score([0]).shape == (1, 40)
    with pytest.raises(CatalogueTooLargeError):
        build_baseline(name, max_items=20).fit(train)


def test_baselines_without_item_item_structures_ignore_the_limit(
    planted_blocks: tuple[sp.csr_matrix, sp.csr_matrix],
) -> None:
    train, _ = planted_blocks
    for name in ("popularity", "als"):
        assert build_baseline(name, max_items=1).fit(train).score([0]).shape == (1, 40)


def test_the_setting_has_one_default_and_must_be_positive() -> None:
    assert compose([]).benchmark.item_item_max_items == 20000
    with pytest.raises(ConfigError, match=r"benchmark\.item_item_max_items=0 must be >= 1"):
        compose(["benchmark.item_item_max_items=0"])
