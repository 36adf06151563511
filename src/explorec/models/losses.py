"""The two-tower losses: in-batch sampled softmax with logQ correction (global under DDP), full softmax."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.nn import functional

from explorec.models.global_batch import gather_in_batch_items, gather_items, global_mean_share


def sampled_softmax_loss(
    user_vectors: torch.Tensor,
    target_items: torch.Tensor,
    candidate_vectors: torch.Tensor,
    candidate_items: torch.Tensor,
    *,
    temperature: torch.Tensor | float,
    candidate_log_q: torch.Tensor | None = None,
) -> torch.Tensor:
    """Return the mean softmax cross-entropy of each user [T, d] for its target among the candidates [C, d].

    Logits are dot products / temperature. With `candidate_log_q` (log of each candidate's sampling
    probability, [C]) every logit is lowered by it (logQ correction, Yi et al. 2019). A candidate equal to
    the row's target is the positive (its first occurrence); later copies of it are masked out.
    """
    logits = user_vectors @ candidate_vectors.T / temperature
    if candidate_log_q is not None:
        logits = logits - candidate_log_q[None, :]
    matches = target_items[:, None] == candidate_items[None, :]
    if not bool(matches.any(dim=1).all()):
        raise ValueError("every target item must be among the candidates")
    positive = matches.int().argmax(dim=1)
    duplicates = matches.clone()
    duplicates[torch.arange(len(positive), device=positive.device), positive] = False
    logits = logits.masked_fill(duplicates, float("-inf"))
    return functional.cross_entropy(logits.float(), positive)


def full_softmax_loss(
    user_vectors: torch.Tensor,
    item_vectors: torch.Tensor,
    targets: torch.Tensor,
    target_mask: torch.Tensor | None = None,
    *,
    temperature: torch.Tensor | float,
    exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """Return the mean over (row, target) pairs of -log softmax over every item (a multinomial likelihood).

    Users [B, d] score all items [N, d] (dot product / temperature); `targets` [B, K] are item indices, of
    which `target_mask` [B, K] marks the real ones (all when None). Items where `exclude` [B, N] is True (the
    row's input history) get no probability mass; a target may not be excluded. Each pair weighs the same,
    as in Mult-VAE's multinomial log-likelihood (Liang et al. 2018) averaged per target.
    """
    logits = (user_vectors @ item_vectors.T / temperature).float()
    if exclude is not None:
        logits = logits.masked_fill(exclude, float("-inf"))
    mask = torch.ones_like(targets, dtype=torch.bool) if target_mask is None else target_mask
    if not bool(mask.any()):
        raise ValueError("full_softmax_loss needs at least one target")
    if exclude is not None and bool((exclude.gather(1, targets) & mask).any()):
        raise ValueError("a target item is excluded from its own softmax")
    log_probabilities = torch.log_softmax(logits, dim=1).gather(1, targets)
    return -torch.where(mask, log_probabilities, 0.0).sum() / mask.sum()


def in_batch_log_q(item_log_frequency: torch.Tensor, n_draws: int) -> torch.Tensor:
    """Return log P(an item is among `n_draws` draws by train frequency): log(1 - (1 - p)^n)."""
    log_not_drawn = n_draws * torch.log1p(-item_log_frequency.exp().clamp(max=1 - 1e-7))
    return torch.log(-torch.expm1(log_not_drawn))


def in_batch_softmax_loss(
    user_vectors: torch.Tensor,
    target_items: torch.Tensor,
    item_tower: Callable[[torch.Tensor], torch.Tensor],
    *,
    temperature: torch.Tensor | float,
    item_log_frequency: torch.Tensor,
    logq_correction: bool = True,
    extra_uniform_negatives: int = 0,
) -> tuple[torch.Tensor, int]:
    """Return the in-batch sampled softmax loss of this process's (user, target) pairs and the global count.

    Candidates are the distinct targets of the global batch (every process's, all-gathered under DDP with
    the gradient going back to the process that computed each vector) plus every process's
    `extra_uniform_negatives` uniform draws. logQ (when on) uses the item frequencies [n_items] with as many
    draws as the global batch has targets; a target's other copies are masked by item id. Under DDP the loss
    is this process's share of the global mean (see `global_mean_share`), so the gradient DDP averages is
    that of the global batch's mean loss; in one process it is the batch mean.
    """
    n_items = len(item_log_frequency)
    in_batch = torch.unique(target_items)
    uniform = target_items.new_zeros((0,))
    if extra_uniform_negatives > 0:
        uniform = torch.randint(0, n_items, (extra_uniform_negatives,), device=target_items.device)
    vectors = item_tower(torch.cat([in_batch, uniform]))
    n_targets = len(target_items)
    _, n_draws = global_mean_share(vectors.new_zeros(()), n_targets)
    candidates, candidate_vectors = gather_in_batch_items(in_batch, vectors[: len(in_batch)])
    log_q = in_batch_log_q(item_log_frequency[candidates], n_draws)
    if len(uniform):
        uniform, uniform_vectors = gather_items(uniform, vectors[len(in_batch) :])
        uniform_log_q = torch.full((len(uniform),), math.log(len(uniform) / n_items), device=log_q.device)
        candidates = torch.cat([candidates, uniform])
        candidate_vectors = torch.cat([candidate_vectors, uniform_vectors])
        log_q = torch.cat([log_q, uniform_log_q])
    loss = sampled_softmax_loss(
        user_vectors,
        target_items,
        candidate_vectors,
        candidates,
        temperature=temperature,
        candidate_log_q=log_q if logq_correction else None,
    )
    return global_mean_share(loss, n_targets)
