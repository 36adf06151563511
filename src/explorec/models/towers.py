"""The item and user towers: each maps its input to a vector (unit length by default), blind to the loss."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional


def mlp(in_features: int, out_features: int, *, hidden_layers: int, dropout: float) -> nn.Sequential:
    """Return `hidden_layers` × (Linear → GELU → Dropout) of width 2·out, then a Linear to `out_features`."""
    width = 2 * out_features
    layers: list[nn.Module] = []
    for index in range(hidden_layers):
        layers += [nn.Linear(in_features if index == 0 else width, width), nn.GELU(), nn.Dropout(dropout)]
    layers.append(nn.Linear(width if hidden_layers else in_features, out_features))
    return nn.Sequential(*layers)


class ItemTower(nn.Module):
    """Item vector from an ID embedding, a projection of the frozen text embedding and genre features.

    The ID embedding of an item is dropped as a whole row with probability `id_dropout` in training and is
    always zero for items never seen in training (`known_items` False), so such items get a vector from
    their text and genres alone. With `normalize` False the vectors keep their length (a dot-product score
    then lets the length say how broadly an item is liked); by default they are L2-normalised.
    """

    def __init__(
        self,
        *,
        n_items: int,
        embedding_dim: int,
        known_items: torch.Tensor,
        text_embeddings: torch.Tensor | None = None,
        genre_features: torch.Tensor | None = None,
        mlp_layers: int = 1,
        dropout: float = 0.1,
        id_dropout: float = 0.1,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        self.id_dropout = id_dropout
        self.normalize = normalize
        self.id_embedding = nn.Embedding(n_items, embedding_dim)
        nn.init.normal_(self.id_embedding.weight, std=embedding_dim**-0.5)
        self.register_buffer("known_items", known_items.to(torch.bool).reshape(n_items))
        self.text_embeddings: torch.Tensor | None
        self.genre_features: torch.Tensor | None
        self.register_buffer("text_embeddings", _as_float(text_embeddings))
        self.register_buffer("genre_features", _as_float(genre_features))
        self.text_projection = _projection(text_embeddings, embedding_dim)
        self.genre_projection = _projection(genre_features, embedding_dim)
        n_parts = 1 + (text_embeddings is not None) + (genre_features is not None)
        self.input_norm = nn.LayerNorm(n_parts * embedding_dim)
        self.mlp = mlp(n_parts * embedding_dim, embedding_dim, hidden_layers=mlp_layers, dropout=dropout)

    def forward(self, item_idx: torch.Tensor) -> torch.Tensor:
        """Return item vectors [..., d] (unit length unless `normalize` is False) for indices of any shape."""
        parts = [self.id_embedding(item_idx) * self._id_keep(item_idx).unsqueeze(-1)]
        if self.text_projection is not None and self.text_embeddings is not None:
            parts.append(self.text_projection(self.text_embeddings[item_idx]))
        if self.genre_projection is not None and self.genre_features is not None:
            parts.append(self.genre_projection(self.genre_features[item_idx]))
        vectors = self.mlp(self.input_norm(torch.cat(parts, dim=-1)))
        return functional.normalize(vectors, dim=-1) if self.normalize else vectors

    def _id_keep(self, item_idx: torch.Tensor) -> torch.Tensor:
        """Return 1.0 where the ID embedding is used, 0.0 where it is dropped or the item is unseen."""
        keep = self.known_items[item_idx]
        if self.training and self.id_dropout > 0:
            keep = keep & (torch.rand(item_idx.shape, device=item_idx.device) >= self.id_dropout)
        return keep.to(self.id_embedding.weight.dtype)


USER_POOLINGS = ("attention", "mean")


class UserTower(nn.Module):
    """User vector from the history (+ an optional user ID), pooled by causal self-attention or by a mean.

    `pooling="attention"`: input is a learned start token followed by up to N right-aligned history vectors
    (padding between). The output after each position is the user vector given the history up to that
    item, so one pass over a window of N items yields N + 1 training examples; the start token's output is
    the vector of a user with no history. Attention is causal so that each output sees only the items
    before its target.

    `pooling="mean"`: a set model. The user vector is an MLP of the mean of every history vector (order and
    length do not matter, so the whole history is read, not only the last N); an empty history gives the
    start token's vector. `history_length` then caps nothing (`max_history` is None).
    """

    def __init__(
        self,
        *,
        embedding_dim: int,
        history_length: int,
        attention_heads: int = 2,
        attention_layers: int = 1,
        mlp_layers: int = 1,
        dropout: float = 0.1,
        n_users: int | None = None,
        pooling: str = "attention",
    ) -> None:
        super().__init__()
        if pooling not in USER_POOLINGS:
            raise ValueError(f"pooling={pooling!r} is not one of {USER_POOLINGS}")
        self.pooling = pooling
        self.history_length = history_length
        self.input_projection = nn.Linear(embedding_dim, embedding_dim)
        self.start_token = nn.Parameter(torch.zeros(embedding_dim))
        self.positions: nn.Embedding | None = None
        self.encoder: nn.TransformerEncoder | None = None
        if pooling == "attention":
            self.positions = nn.Embedding(history_length + 1, embedding_dim)
            layer = nn.TransformerEncoderLayer(
                d_model=embedding_dim,
                nhead=attention_heads,
                dim_feedforward=2 * embedding_dim,
                dropout=dropout,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            self.encoder = nn.TransformerEncoder(layer, attention_layers, enable_nested_tensor=False)
        self.output_norm = nn.LayerNorm(embedding_dim)
        self.user_embedding = nn.Embedding(n_users, embedding_dim) if n_users else None
        pooled_dim = embedding_dim * (2 if self.user_embedding is not None else 1)
        self.mlp = mlp(pooled_dim, embedding_dim, hidden_layers=mlp_layers, dropout=dropout)

    @property
    def max_history(self) -> int | None:
        """Return how many of the latest history items the tower reads (None: all of them)."""
        return self.history_length if self.pooling == "attention" else None

    def forward(
        self,
        history_vectors: torch.Tensor,
        padding_mask: torch.Tensor,
        user_idx: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return L2-normalised user vectors [B, d] from histories [B, L, d] (padding [B, L]: True = pad)."""
        if self.pooling == "mean":
            keep = (~padding_mask).to(history_vectors.dtype)
            summed = (history_vectors * keep.unsqueeze(-1)).sum(dim=1)
            return self.from_sum(summed, keep.sum(dim=1), user_idx)
        outputs = self.encode_positions(history_vectors, padding_mask, user_idx)
        has_history = ~padding_mask[:, -1]
        last = torch.where(has_history, outputs.shape[1] - 1, 0)
        return outputs[torch.arange(len(last), device=last.device), last]

    def from_sum(
        self, summed: torch.Tensor, counts: torch.Tensor, user_idx: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Return mean-pooled user vectors [..., d] from the sum [..., d] and count [...] of the history."""
        if self.pooling != "mean":
            raise ValueError("from_sum needs pooling='mean'")
        mean = summed / counts.clamp(min=1.0).unsqueeze(-1)
        empty = (counts <= 0).unsqueeze(-1)
        tokens = torch.where(empty, self.start_token.expand_as(mean), self.input_projection(mean))
        return self._head(self.output_norm(tokens), user_idx)

    def encode_positions(
        self,
        history_vectors: torch.Tensor,
        padding_mask: torch.Tensor,
        user_idx: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return L2-normalised user vectors [B, L + 1, d]: after the start token, then after each item."""
        batch, length, _ = history_vectors.shape
        if self.pooling == "mean":
            keep = (~padding_mask).to(history_vectors.dtype)
            sums = torch.cumsum(history_vectors * keep.unsqueeze(-1), dim=1)
            counts = torch.cumsum(keep, dim=1)
            sums = torch.cat([sums.new_zeros(batch, 1, sums.shape[-1]), sums], dim=1)
            counts = torch.cat([counts.new_zeros(batch, 1), counts], dim=1)
            return self.from_sum(sums, counts, user_idx)
        assert self.positions is not None and self.encoder is not None
        if length > self.history_length:
            raise ValueError(f"history of length {length} exceeds history_length={self.history_length}")
        start = self.start_token.expand(batch, 1, -1)
        tokens = torch.cat([start, self.input_projection(history_vectors)], dim=1)
        first = self.history_length - length
        tokens = tokens + self.positions(torch.arange(first, self.history_length + 1, device=tokens.device))
        mask = torch.cat([padding_mask.new_zeros(batch, 1), padding_mask], dim=1)
        tokens = tokens.masked_fill(mask.unsqueeze(-1), 0.0)
        causal = torch.triu(torch.ones(length + 1, length + 1, dtype=torch.bool, device=tokens.device), 1)
        encoded = self.output_norm(self.encoder(tokens, mask=causal, src_key_padding_mask=mask))
        return self._head(encoded, user_idx)

    def _head(self, encoded: torch.Tensor, user_idx: torch.Tensor | None) -> torch.Tensor:
        """Return the normalised MLP output of pooled states [B, ..., d] (+ the user ID embedding)."""
        if self.user_embedding is not None:
            if user_idx is None:
                raise ValueError("this user tower uses user IDs; pass user_idx")
            users = self.user_embedding(user_idx)
            users = users.view(users.shape[0], *([1] * (encoded.dim() - 2)), -1).expand_as(encoded)
            encoded = torch.cat([encoded, users], dim=-1)
        return functional.normalize(self.mlp(encoded), dim=-1)


def _as_float(table: torch.Tensor | None) -> torch.Tensor | None:
    """Return `table` as a float32 tensor (None stays None)."""
    return None if table is None else table.to(torch.float32)


def _projection(table: torch.Tensor | None, embedding_dim: int) -> nn.Linear | None:
    """Return a Linear from the table's feature width to `embedding_dim` (None when there is no table)."""
    return None if table is None else nn.Linear(table.shape[1], embedding_dim)
