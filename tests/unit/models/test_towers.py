"""Behaviour of the towers: shapes and norms, padding that changes nothing, cold items that keep a vector."""

from __future__ import annotations

import torch

from explorec.models.towers import ItemTower, UserTower


def _item_tower(
    *, known: torch.Tensor | None = None, id_dropout: float = 0.1, normalize: bool = True
) -> ItemTower:
    """Return a small item tower over 6 items with 5-d text and 2 genres."""
    torch.manual_seed(0)
    return ItemTower(
        n_items=6,
        embedding_dim=8,
        known_items=torch.ones(6, dtype=torch.bool) if known is None else known,
        text_embeddings=torch.randn(6, 5),
        genre_features=torch.tensor([[1, 0], [0, 1], [1, 1], [1, 0], [0, 1], [1, 0]], dtype=torch.float32),
        id_dropout=id_dropout,
        normalize=normalize,
    )


def _user_tower(n_users: int | None = None) -> UserTower:
    """Return a small user tower over histories of up to 4 items."""
    torch.manual_seed(0)
    return UserTower(embedding_dim=8, history_length=4, attention_heads=2, n_users=n_users).eval()


def test_item_tower_shapes_and_unit_norm() -> None:
    tower = _item_tower().eval()
    vectors = tower(torch.tensor([[0, 1, 2], [3, 4, 5]]))
    assert vectors.shape == (2, 3, 8)
    torch.testing.assert_close(vectors.norm(dim=-1), torch.ones(2, 3))


def test_an_unnormalised_item_tower_keeps_the_direction_and_lets_lengths_differ() -> None:
    items = torch.arange(6)
    with torch.no_grad():
        unit = _item_tower().eval()(items)
        free = _item_tower(normalize=False).eval()(items)
    torch.testing.assert_close(torch.nn.functional.normalize(free, dim=-1), unit)
    lengths = free.norm(dim=-1)
    assert not torch.allclose(lengths, torch.ones(6))
    assert float(lengths.max() - lengths.min()) > 1e-3


def test_user_tower_shapes_and_unit_norm() -> None:
    tower = _user_tower(n_users=3)
    vectors = tower(torch.randn(3, 4, 8), torch.zeros(3, 4, dtype=torch.bool), torch.tensor([0, 1, 2]))
    assert vectors.shape == (3, 8)
    torch.testing.assert_close(vectors.norm(dim=-1), torch.ones(3))


def test_padded_positions_do_not_change_the_user_vector() -> None:
    tower = _user_tower()
    history = torch.randn(1, 4, 8)
    padding = torch.tensor([[True, True, False, False]])
    changed = history.clone()
    changed[0, :2] = torch.randn(2, 8) * 100
    with torch.no_grad():
        torch.testing.assert_close(tower(history, padding), tower(changed, padding))
        unpadded = tower(history, torch.zeros_like(padding))
    assert not torch.allclose(tower(history, padding), unpadded)


def test_empty_history_still_gives_a_finite_unit_vector() -> None:
    tower = _user_tower()
    with torch.no_grad():
        vector = tower(torch.randn(2, 4, 8), torch.ones(2, 4, dtype=torch.bool))
    assert torch.isfinite(vector).all()
    torch.testing.assert_close(vector.norm(dim=-1), torch.ones(2))


def test_unseen_item_vector_comes_from_text_and_genres_only() -> None:
    known = torch.tensor([True, True, True, True, True, False])
    tower = _item_tower(known=known).eval()
    before = tower(torch.tensor([5, 0]))
    with torch.no_grad():
        tower.id_embedding.weight.add_(torch.randn_like(tower.id_embedding.weight))
    after = tower(torch.tensor([5, 0]))
    torch.testing.assert_close(after[0], before[0])
    assert not torch.allclose(after[1], before[1])
    torch.testing.assert_close(after.norm(dim=-1), torch.ones(2))


def test_id_dropout_of_one_gives_every_item_its_cold_vector() -> None:
    tower = _item_tower(id_dropout=1.0)
    for module in tower.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    dropped = tower.train()(torch.arange(6))
    tower.known_items.zero_()
    cold = tower.eval()(torch.arange(6))
    torch.testing.assert_close(dropped, cold)


def test_user_tower_is_causal_over_positions() -> None:
    tower = _user_tower()
    history = torch.randn(1, 4, 8)
    changed = history.clone()
    changed[0, 3] = torch.randn(8)
    padding = torch.zeros(1, 4, dtype=torch.bool)
    with torch.no_grad():
        before, after = tower.encode_positions(history, padding), tower.encode_positions(changed, padding)
    assert before.shape == (1, 5, 8)
    torch.testing.assert_close(before[:, :4], after[:, :4])
    assert not torch.allclose(before[:, 4], after[:, 4])


def _mean_tower(n_users: int | None = None) -> UserTower:
    """Return a small mean-pooling (set) user tower."""
    torch.manual_seed(0)
    return UserTower(embedding_dim=8, history_length=4, n_users=n_users, pooling="mean").eval()


def test_mean_pooling_reads_a_set_of_any_length_and_ignores_order_and_padding() -> None:
    tower = _mean_tower(n_users=2)
    assert tower.max_history is None and tower.encoder is None
    history = torch.randn(1, 7, 8)  # longer than history_length: a set tower has no cap
    users = torch.tensor([1])
    padded = torch.cat([torch.randn(1, 3, 8) * 100, history], dim=1)
    padding = torch.tensor([[True] * 3 + [False] * 7])
    with torch.no_grad():
        vector = tower(history, torch.zeros(1, 7, dtype=torch.bool), users)
        torch.testing.assert_close(tower(history.flip(1), torch.zeros(1, 7, dtype=torch.bool), users), vector)
        torch.testing.assert_close(tower(padded, padding, users), vector)
        torch.testing.assert_close(tower.from_sum(history.sum(dim=1), torch.tensor([7.0]), users), vector)
    torch.testing.assert_close(vector.norm(dim=-1), torch.ones(1))


def test_mean_pooling_positions_are_running_means_and_empty_is_the_start_token() -> None:
    tower = _mean_tower()
    history = torch.randn(2, 3, 8)
    padding = torch.tensor([[True, False, False], [False, False, False]])
    with torch.no_grad():
        positions = tower.encode_positions(history, padding)
        assert positions.shape == (2, 4, 8)
        last = tower(history[:1, 1:], torch.zeros(1, 2, dtype=torch.bool))
        torch.testing.assert_close(positions[0, 3], last[0])
        empty = tower(history, torch.ones(2, 3, dtype=torch.bool))
        torch.testing.assert_close(positions[:, 0], empty)
        torch.testing.assert_close(positions[0, 1], empty[0])  # only padding so far


def test_unknown_pooling_is_refused() -> None:
    import pytest

    with pytest.raises(ValueError, match="pooling"):
        UserTower(embedding_dim=8, history_length=4, pooling="max")
