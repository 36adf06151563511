"""LazyAdamW: AdamW's update on dense parameters, SparseAdam's on row-sparse embedding gradients (only the
batch's rows move), and what training with a large ID table uses."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from lightning import pytorch as lp
from torch import nn

from explorec.config import ExplorecConfig, ModelConfig, TrainerConfig
from explorec.data.processed import ProcessedDataset
from explorec.models.fit import build_two_tower, fit_two_tower
from explorec.models.optimizers import LazyAdamW, sparsify_large_embeddings


def _steps(
    optimizer: torch.optim.Optimizer, params: list[torch.Tensor], grads: list[list[torch.Tensor]]
) -> None:
    """Apply a fixed sequence of gradients."""
    for step in grads:
        for param, grad in zip(params, step, strict=True):
            param.grad = grad.clone()
        optimizer.step()


def test_dense_parameters_follow_adamw_exactly() -> None:
    """With weight decay, five steps of LazyAdamW equal torch's AdamW on the same gradients."""
    generator = torch.Generator().manual_seed(0)
    start = [torch.randn(6, 3, generator=generator), torch.randn(4, generator=generator)]
    grads = [[torch.randn_like(p, generator=None) for p in start] for _ in range(5)]
    ours = [p.clone().requires_grad_() for p in start]
    theirs = [p.clone().requires_grad_() for p in start]
    _steps(LazyAdamW(ours, lr=0.05, weight_decay=0.1), ours, grads)
    _steps(torch.optim.AdamW(theirs, lr=0.05, weight_decay=0.1), theirs, grads)
    for mine, reference in zip(ours, theirs, strict=True):
        torch.testing.assert_close(mine, reference)


def test_sparse_gradients_move_only_their_rows_as_sparse_adam_does() -> None:
    """Rows a batch never touched keep their weights; touched rows match torch's SparseAdam."""
    torch.manual_seed(1)
    ours, theirs = nn.Embedding(50, 4, sparse=True), nn.Embedding(50, 4, sparse=True)
    theirs.load_state_dict(ours.state_dict())
    start = ours.weight.detach().clone()
    lazy, reference = (
        LazyAdamW(ours.parameters(), lr=0.1),
        torch.optim.SparseAdam(theirs.parameters(), lr=0.1),
    )
    batches = [torch.tensor([1, 3, 3, 7]), torch.tensor([3, 9]), torch.tensor([1, 20, 20])]
    for rows in batches:
        for embedding, optimizer in ((ours, lazy), (theirs, reference)):
            optimizer.zero_grad()
            (embedding(rows) ** 2).sum().backward()
            assert embedding.weight.grad.is_sparse
            optimizer.step()
    torch.testing.assert_close(ours.weight, theirs.weight)
    touched = torch.zeros(50, dtype=torch.bool)
    touched[torch.cat(batches)] = True
    assert torch.equal(ours.weight[~touched], start[~touched])
    assert not torch.isclose(ours.weight[touched], start[touched]).all(dim=1).any()


def test_only_tables_of_the_configured_size_become_sparse() -> None:
    """Embeddings with at least min_rows rows get sparse gradients, smaller ones stay dense."""
    model = nn.ModuleDict({"catalogue": nn.Embedding(100, 4), "positions": nn.Embedding(6, 4)})
    assert sparsify_large_embeddings(model, 100)
    assert model["catalogue"].sparse and not model["positions"].sparse
    assert not sparsify_large_embeddings(nn.ModuleDict({"small": nn.Embedding(5, 2)}), 100)


def test_one_process_with_a_large_id_table_trains_lazily_and_ddp_stays_dense(
    tiny: ProcessedDataset, tiny_text_embeddings: np.ndarray
) -> None:
    """At the threshold the item table gets sparse gradients and LazyAdamW; below it, or under DDP, AdamW."""
    at_size = ModelConfig(embedding_dim=8, history_length=4, sparse_embeddings_from=tiny.n_items)
    cases = [
        (at_size, {}, LazyAdamW, True),
        (replace(at_size, sparse_embeddings_from=tiny.n_items + 1), {}, torch.optim.AdamW, False),
        (at_size, {"strategy": "ddp", "devices": 2}, torch.optim.AdamW, False),
    ]
    for model_cfg, trainer_settings, optimizer_type, sparse in cases:
        model = build_two_tower(tiny, tiny_text_embeddings, model_cfg)
        model.trainer = lp.Trainer(accelerator="cpu", logger=False, **trainer_settings)
        assert type(model.configure_optimizers()) is optimizer_type
        assert model.item_tower.id_embedding.sparse is sparse


def test_training_with_a_large_id_table_learns(
    tiny: ProcessedDataset, tiny_text_embeddings: np.ndarray, tmp_path: Path
) -> None:
    """A sparse fit lowers its loss and ends elsewhere than the dense fit of the same seed."""
    cfg = ExplorecConfig(
        model=ModelConfig(embedding_dim=8, history_length=4, learning_rate=1e-2),
        trainer=TrainerConfig(max_epochs=2, batch_size=16, num_threads=1, enable_progress_bar=False),
        seed=7,
    )
    sparse_cfg = replace(cfg, model=replace(cfg.model, sparse_embeddings_from=tiny.n_items))
    dense = fit_two_tower(tiny, tiny_text_embeddings, cfg, checkpoint_dir=tmp_path / "dense")
    sparse = fit_two_tower(tiny, tiny_text_embeddings, sparse_cfg, checkpoint_dir=tmp_path / "sparse")
    losses = [epoch["train/loss_epoch"] for epoch in sparse.history]
    assert losses[-1] < losses[0]
    assert not np.allclose(dense.item_vectors(), sparse.item_vectors())
