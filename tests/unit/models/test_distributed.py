"""DDP pieces: the all-gathered in-batch softmax and the dealt-out global batches match one process."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch.utils.data import DataLoader

from explorec.config import TrainerConfig
from explorec.errors import ExplorecError
from explorec.models.distributed import WORKER_MODULE, free_port, node_place
from explorec.models.global_batch import GlobalBatchShard, contiguous_shard

CASE = Path(__file__).with_name("gathered_softmax_case.py")
ROOT = Path(__file__).resolve().parents[3]


def _run_case(world_size: int, folder: Path) -> list[dict[str, torch.Tensor]]:
    """Run the case in `world_size` processes (gloo when 2); return each process's result."""
    port = free_port()
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    outs = [folder / f"world{world_size}-rank{rank}.pt" for rank in range(world_size)]
    processes = [
        subprocess.Popen(
            [sys.executable, str(CASE), str(rank), str(world_size), str(port), str(out)],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for rank, out in enumerate(outs)
    ]
    for process in processes:
        output, _ = process.communicate(timeout=120)
        assert process.returncode == 0, output.decode(errors="replace")[-3000:]
    return [torch.load(out, weights_only=True) for out in outs]


def _case_module() -> ModuleType:
    """Import the case script (it is run as a file by the other processes)."""
    spec = importlib.util.spec_from_file_location("gathered_softmax_case", CASE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[int, list[dict[str, torch.Tensor]]]:
    """The case in this process (the global batch) and in two gloo processes (half each)."""
    folder = tmp_path_factory.mktemp("gathered")
    return {1: [_case_module().run(0, 1)], 2: _run_case(2, folder)}


def test_gathered_softmax_equals_one_process_on_the_global_batch(results) -> None:
    """Loss and every gradient DDP applies equal those of one process that sees the whole batch."""
    (single,) = results[1]
    for rank, shard in enumerate(results[2]):
        assert int(shard["n_targets"]) == int(single["n_targets"]) == 13
        for name in ("loss", "items", "users", "temperature"):
            where = f"{name}, rank {rank}"
            torch.testing.assert_close(
                shard[name], single[name], rtol=1e-5, atol=1e-6, msg=lambda text, at=where: f"{at}: {text}"
            )


def test_global_batches_are_the_single_process_batches_dealt_out(results) -> None:
    """Each rank's batch k is half of batch k of one process with twice the batch size, disjoint halves."""
    (single,) = results[1]
    torch.manual_seed(1)  # as the case does; one process gets DataLoader(shuffle=True)'s batches exactly
    loader = list(DataLoader(range(23), batch_size=6, shuffle=True))
    keys = sorted(key for key in single if key.startswith("batch"))
    assert len(keys) == len(loader) == 4
    for key, expected in zip(keys, loader, strict=True):
        assert single[key].tolist() == expected.tolist()
        halves = [shard[key].tolist() for shard in results[2]]
        assert halves == [expected.tolist()[0::2], expected.tolist()[1::2]]


def test_a_last_batch_smaller_than_the_world_is_dropped_on_every_rank() -> None:
    """13 examples, 3 per rank on 2 ranks: batches of 6, 6 and one example left over (dropped)."""
    assert len(GlobalBatchShard(13, 3, rank=0, world_size=2)) == 2
    assert len(GlobalBatchShard(14, 3, rank=1, world_size=2)) == 3
    assert len(GlobalBatchShard(13, 6)) == 3


def test_contiguous_shards_cover_every_validation_user_once() -> None:
    """Validation users are split without repeats (DistributedSampler would pad with repeats)."""
    shards = [list(contiguous_shard(7, rank, 3)) for rank in range(3)]
    assert sorted(user for shard in shards for user in shard) == list(range(7))
    assert [len(shard) for shard in shards] == [2, 2, 3]


def test_the_worker_module_rank_zero_starts_exists() -> None:
    """Rank 0 starts the other ranks as `python -m WORKER_MODULE`; a renamed module would leave it waiting."""
    assert importlib.util.find_spec(WORKER_MODULE) is not None


def test_a_node_place_comes_from_node_rank_and_node_zeros_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """Several nodes need MASTER_ADDR / MASTER_PORT; NODE_RANK must name one of the nodes."""
    two_nodes = TrainerConfig(devices=2, num_nodes=2)
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    monkeypatch.setenv("NODE_RANK", "1")
    with pytest.raises(ExplorecError, match="MASTER_ADDR and MASTER_PORT"):
        node_place(two_nodes)
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.5")
    monkeypatch.setenv("MASTER_PORT", "29500")
    place = node_place(two_nodes)
    assert (place.global_rank, place.world_size) == (2, 4)
    assert (place.main_address, place.main_port) == ("10.0.0.5", 29500)
    monkeypatch.setenv("NODE_RANK", "2")
    with pytest.raises(ExplorecError, match=r"NODE_RANK=2 but trainer\.num_nodes=2"):
        node_place(two_nodes)


def test_only_train_runs_on_the_other_nodes(monkeypatch: pytest.MonkeyPatch) -> None:
    """With NODE_RANK > 0 `explorec train` only trains; any other command refuses (it would orchestrate)."""
    from explorec.cli import _other_node

    monkeypatch.setenv("NODE_RANK", "0")
    assert not _other_node("pipeline")
    monkeypatch.setenv("NODE_RANK", "1")
    assert _other_node("train")
    with pytest.raises(ExplorecError, match="only `explorec train`"):
        _other_node("pipeline")
