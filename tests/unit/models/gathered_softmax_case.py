"""One process of the gathered-softmax test: `python gathered_softmax_case.py RANK WORLD PORT OUT`.

With WORLD 1 the process sees the whole global batch; with WORLD 2 each process sees its rows and the two
meet over gloo on 127.0.0.1:PORT. Every process writes, to OUT, the loss DDP would report (the mean of the
processes' shares), the parameter gradients DDP would apply (averaged over processes) and the training
batches `GlobalBatchShard` dealt it, so the test can compare one process with two.
"""

from __future__ import annotations

import sys
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from explorec.models.global_batch import GlobalBatchShard
from explorec.models.losses import in_batch_softmax_loss

N_USERS, N_ITEMS, DIM = 10, 12, 4
# the global batch: (user, target item) pairs; items 1, 3 and 7 recur across the two halves and within one
USERS = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 2, 5])
TARGETS = torch.tensor([1, 3, 7, 1, 2, 3, 7, 9, 3, 11, 5, 7, 1])
ROWS = {0: torch.arange(0, 8), 1: torch.arange(8, 13)}  # unequal shares: 8 and 5 pairs
GLOBAL_BATCH = 6  # of 23 training examples, dealt out by GlobalBatchShard
COUNTS = torch.tensor([9.0, 4, 1, 6, 3, 1, 1, 5, 1, 2, 1, 1])  # train counts per item (logQ)


def run(rank: int, world_size: int) -> dict[str, torch.Tensor]:
    """Return the reported loss, DDP-averaged gradients and dealt batches of this process."""
    torch.manual_seed(0)
    item_table = torch.nn.Embedding(N_ITEMS, DIM)
    user_table = torch.nn.Embedding(N_USERS, DIM)
    log_temperature = torch.nn.Parameter(torch.tensor(-1.0))
    rows = torch.arange(len(USERS)) if world_size == 1 else ROWS[rank]
    users = torch.nn.functional.normalize(user_table(USERS[rows]), dim=-1)

    def item_tower(items: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(item_table(items), dim=-1)

    loss, n_targets = in_batch_softmax_loss(
        users,
        TARGETS[rows],
        item_tower,
        temperature=log_temperature.exp(),
        item_log_frequency=torch.log(COUNTS / COUNTS.sum()),
    )
    loss.backward()
    parameters = {"items": item_table.weight, "users": user_table.weight, "temperature": log_temperature}
    result = {name: parameter.grad.detach().clone() for name, parameter in parameters.items()}
    result["loss"] = loss.detach().clone()
    if world_size > 1:  # what DDP does: average gradients (and the logged loss) over the processes
        for value in result.values():
            dist.all_reduce(value)
            value /= world_size
    result["n_targets"] = torch.tensor(n_targets)
    torch.manual_seed(1)
    dealt = GlobalBatchShard(23, GLOBAL_BATCH // world_size, rank=rank, world_size=world_size)
    for index, batch in enumerate(DataLoader(range(23), batch_sampler=dealt)):  # as the data module uses it
        result[f"batch{index}"] = batch
    return result


def main() -> None:
    """Run one process and save its result."""
    rank, world_size, port, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    if world_size > 1:
        dist.init_process_group(
            "gloo",
            init_method=f"tcp://127.0.0.1:{port}",
            rank=rank,
            world_size=world_size,
            timeout=timedelta(seconds=60),
        )
    torch.save(run(rank, world_size), out)
    if world_size > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
