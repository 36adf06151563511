"""The global batch under DDP: how the ranks deal it out, and how they all-gather its items.

Every rank deals out the batches one process with batch_size × world size would see (`GlobalBatchShard`),
validation users go out in contiguous shards (each counted once), and the in-batch negatives of every
rank's batch are all-gathered with their gradient (`gather_in_batch_items`), so the sampled softmax of each
rank sees the global batch. Outside a process group everything here is the one-process identity.
Only torch is needed here (the gathered-softmax test starts processes that import nothing else).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


def world() -> tuple[int, int]:
    """Return (this process's rank, number of processes): (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def global_sum(value: int) -> int:
    """Return the sum of `value` over every process (the value itself outside a process group)."""
    if world()[1] == 1:
        return value
    total = torch.tensor([value], dtype=torch.int64)
    dist.all_reduce(total)
    return int(total.item())


def global_mean_share(loss: torch.Tensor, n_local: int) -> tuple[torch.Tensor, int]:
    """Return (this process's share of the global mean loss, the global count) from a local mean loss.

    Under DDP the share is loss × n_local × world size / n_global: DDP averages gradients over processes,
    so the averaged gradient is that of sum(local sums) / n_global, the mean one process would take over
    the global batch. In one process: (loss, n_local) unchanged.
    """
    _, size = world()
    if size == 1:
        return loss, n_local
    n_global = global_sum(n_local)
    return loss * (n_local * size / n_global), n_global


def gather_in_batch_items(items: torch.Tensor, vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the distinct items of every process's batch (sorted) and their vectors [n, d].

    `items` [c] are this process's distinct batch items, sorted (`torch.unique`), and `vectors` [c, d] their
    tower outputs. Each item's vector is the one computed by the lowest rank that has it; gradients reach
    that rank's tower (`GatherWithGradient`). Outside a process group: the inputs.
    """
    _, size = world()
    if size == 1:
        return items, vectors
    widest = int(max(_all_gather_plain(torch.tensor([len(items)], device=items.device))).item())
    padding = widest - len(items)
    padded_items = torch.cat([items, items.new_full((padding,), -1)])
    padded_vectors = torch.cat([vectors, vectors.new_zeros((padding, vectors.shape[1]))])
    all_items = torch.cat(_all_gather_plain(padded_items))
    all_vectors = GatherWithGradient.apply(padded_vectors)
    real = torch.nonzero(all_items >= 0).squeeze(1)
    distinct, inverse = torch.unique(all_items[real], return_inverse=True)
    first = torch.full_like(distinct, len(real)).scatter_reduce(
        0, inverse, torch.arange(len(real), device=real.device), reduce="amin"
    )
    return distinct, all_vectors[real[first]]


def gather_items(items: torch.Tensor, vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return every process's `items` [c] and `vectors` [c, d] concatenated (same c on each; with grad)."""
    if world()[1] == 1:
        return items, vectors
    return torch.cat(_all_gather_plain(items)), GatherWithGradient.apply(vectors)


class GatherWithGradient(torch.autograd.Function):
    """All-gather of equal-shaped [c, ...] tensors into [world × c, ...] whose gradient reaches each shard.

    Backward sums every process's gradient of the gathered tensor (all_reduce; gloo has no reduce-scatter)
    and hands each process the rows of its own shard: the gradient of the sum of all processes' losses.
    (`torch.distributed.nn.functional.all_gather` does the same and is deprecated as of torch 2.13.)
    """

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        """Return every process's `tensor`, concatenated in rank order."""
        rank, _ = world()
        ctx.rows = slice(rank * tensor.shape[0], (rank + 1) * tensor.shape[0])
        return torch.cat(_all_gather_plain(tensor))

    @staticmethod
    def backward(ctx: Any, gradient: torch.Tensor) -> torch.Tensor:
        """Return the summed gradient of this process's rows."""
        total = gradient.contiguous().clone()
        dist.all_reduce(total)
        return total[ctx.rows]


def _all_gather_plain(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Return `tensor` of every process (same shape on each), without gradient."""
    parts = [torch.empty_like(tensor) for _ in range(world()[1])]
    dist.all_gather(parts, tensor.contiguous())
    return parts


class GlobalBatchShard(Sampler[list[int]]):
    """This rank's training batches: its share of the batches one process with the global batch would see.

    Each epoch draws a shuffle seed from torch's global generator (as `RandomSampler` does, so one process
    gets the batches of `DataLoader(shuffle=True)` exactly) and, under DDP, takes rank 0's seed, so every
    rank shuffles alike. Batches of batch_size × world size are cut from that order and dealt out
    [rank::world size]. A last batch with fewer examples than processes is dropped (no rank may go
    without a batch while the others wait for it).
    """

    def __init__(self, n_examples: int, batch_size: int, *, rank: int = 0, world_size: int = 1) -> None:
        self.n_examples = n_examples
        self.global_batch = batch_size * world_size
        self.rank = rank
        self.world_size = world_size

    def __len__(self) -> int:
        """Number of batches per epoch (the same on every rank)."""
        full, rest = divmod(self.n_examples, self.global_batch)
        return full + (rest >= self.world_size)

    def __iter__(self) -> Iterator[list[int]]:
        """Yield this rank's index batches of one epoch."""
        seed = torch.empty((), dtype=torch.int64).random_()
        if self.world_size > 1:
            dist.broadcast(seed, src=0)
        generator = torch.Generator()
        generator.manual_seed(int(seed.item()))
        order = torch.randperm(self.n_examples, generator=generator).tolist()
        for index in range(len(self)):
            batch = order[index * self.global_batch : (index + 1) * self.global_batch]
            yield batch[self.rank :: self.world_size]


def contiguous_shard(n: int, rank: int, world_size: int) -> range:
    """Return rank `rank`'s contiguous share of range(n): every position in exactly one shard."""
    return range(n * rank // world_size, n * (rank + 1) // world_size)
