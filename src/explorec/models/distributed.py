"""Multi-process (DDP) training: which process orchestrates, how the other ranks start, what they share.

Under `trainer.devices` × `trainer.num_nodes` > 1 the process that calls the fit (the train flow's task, on
node 0) is global rank 0 and the only one that orchestrates: it alone runs the Prefect flow, owns the MLflow
run and registers models. It writes the exact training inputs (processed tables, text embeddings, resolved
config) to a private job folder and starts the node's other ranks as plain Python processes
(`python -m explorec.models.ddp_worker`), which load that folder, train and exit: they never start Prefect
or MLflow. Every rank is told its place explicitly (`FixedPlace`), so Lightning launches nothing itself; its
own DDP launcher re-runs the command line, which would re-run the whole flow (or pytest, or `explorec up`)
on every rank. On another node `explorec train` with NODE_RANK=n only trains (see `explorec.cli`).

What the ranks share at every step (the global batch, its gathered items) is `explorec.models.global_batch`.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from lightning import pytorch as lp
from lightning.fabric.plugins.environments import ClusterEnvironment
from lightning.pytorch.callbacks import Callback

from explorec.config import ExplorecConfig, TrainerConfig, to_dict
from explorec.data.processed import SPLIT_NAMES, ProcessedDataset
from explorec.errors import ExplorecError

WORKER_MODULE = "explorec.models.ddp_worker"
WORKER_WAIT_S = 600.0
"""Seconds rank 0 waits for the other ranks of its node to exit after its own fit returned."""


@dataclass(frozen=True)
class Place:
    """Where one training process sits in a DDP job: node, rank on the node, and where rank 0 listens."""

    node_rank: int
    local_rank: int
    devices: int
    num_nodes: int
    main_address: str
    main_port: int

    @property
    def world_size(self) -> int:
        """Number of training processes in the job."""
        return self.devices * self.num_nodes

    @property
    def global_rank(self) -> int:
        """This process's rank in the job (0 orchestrates)."""
        return self.node_rank * self.devices + self.local_rank


class FixedPlace(ClusterEnvironment):
    """A Lightning cluster environment whose ranks are given, not read from variables or launched."""

    def __init__(self, place: Place) -> None:
        self.place = place

    @property
    def creates_processes_externally(self) -> bool:
        """True: explorec starts the ranks, Lightning must not re-run the command line."""
        return True

    @property
    def main_address(self) -> str:
        """Address of rank 0's rendezvous."""
        return self.place.main_address

    @property
    def main_port(self) -> int:
        """Port of rank 0's rendezvous."""
        return self.place.main_port

    @staticmethod
    def detect() -> bool:
        """Never chosen automatically."""
        return False

    def world_size(self) -> int:
        """Number of training processes."""
        return self.place.world_size

    def set_world_size(self, size: int) -> None:
        """Accept Lightning's count only when it agrees with the place."""
        if size != self.place.world_size:
            raise ExplorecError(f"Lightning counts {size} processes; the DDP job has {self.place.world_size}")

    def global_rank(self) -> int:
        """This process's rank in the job."""
        return self.place.global_rank

    def set_global_rank(self, rank: int) -> None:
        """Accept Lightning's rank only when it agrees with the place."""
        if rank != self.place.global_rank:
            raise ExplorecError(f"Lightning ranks this process {rank}; its place is {self.place.global_rank}")

    def local_rank(self) -> int:
        """Rank on this node."""
        return self.place.local_rank

    def node_rank(self) -> int:
        """Rank of this node."""
        return self.place.node_rank


class KeepRandomState(Callback):
    """Give the fit back the random state it started with, which Lightning's DDP setup replaces.

    DDPStrategy re-seeds every rank with the global seed when it connects; one process is not re-seeded.
    Restoring the state taken when this callback was made (just before `fit`) keeps every later draw,
    the shuffles included, that of one process with the same seed.
    """

    def __init__(self) -> None:
        self.states = (torch.get_rng_state(), np.random.get_state(), random.getstate())

    def setup(self, trainer: lp.Trainer, pl_module: lp.LightningModule, stage: str) -> None:
        """Restore the torch, numpy and Python random states (after the strategy connected)."""
        torch_state, numpy_state, python_state = self.states
        torch.set_rng_state(torch_state)
        np.random.set_state(numpy_state)
        random.setstate(python_state)


def is_distributed(trainer: TrainerConfig) -> bool:
    """True when the config asks for more than one training process."""
    return trainer.devices * trainer.num_nodes > 1


def node_rank_from_environment() -> int:
    """Return NODE_RANK (the node of a multi-node job; 0 when unset)."""
    value = os.environ.get("NODE_RANK", "0")
    if not value.isdigit():
        raise ExplorecError(f"NODE_RANK={value!r} must be a whole number >= 0")
    return int(value)


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def node_place(trainer: TrainerConfig) -> Place:
    """Return local rank 0's place on this node: MASTER_ADDR / MASTER_PORT when set, else 127.0.0.1:free."""
    node = node_rank_from_environment()
    if node >= trainer.num_nodes:
        raise ExplorecError(f"NODE_RANK={node} but trainer.num_nodes={trainer.num_nodes}")
    address = os.environ.get("MASTER_ADDR")
    port = os.environ.get("MASTER_PORT")
    if trainer.num_nodes > 1 and (address is None or port is None):
        raise ExplorecError("a multi-node job needs MASTER_ADDR and MASTER_PORT (node 0's) on every node")
    return Place(
        node_rank=node,
        local_rank=0,
        devices=trainer.devices,
        num_nodes=trainer.num_nodes,
        main_address=address or "127.0.0.1",
        main_port=int(port) if port else free_port(),
    )


def write_job(
    folder: Path,
    dataset: ProcessedDataset,
    text_embeddings: np.ndarray | None,
    cfg: ExplorecConfig,
    *,
    place: Place,
    job: dict[str, Any],
) -> None:
    """Write what the other ranks need to train exactly what rank 0 trains: tables, embeddings, config."""
    tables = folder / "dataset"
    tables.mkdir(parents=True)
    for name in (*SPLIT_NAMES, "items", "users"):
        getattr(dataset, name).to_parquet(tables / f"{name}.parquet", index=False)
    (tables / "manifest.json").write_text(json.dumps(dataset.manifest, default=str))
    if text_embeddings is not None:
        np.save(folder / "text_embeddings.npy", np.asarray(text_embeddings))
    document = {"config": to_dict(cfg), "place": asdict(place), "job": job}
    (folder / "job.json").write_text(json.dumps(document, default=str))


def start_workers(folder: Path, place: Place) -> list[subprocess.Popen[bytes]]:
    """Start local ranks 1..devices-1 of this node; each one's output goes to rank<r>.log in `folder`.

    The workers import explorec from where this process did (its folder leads PYTHONPATH), so every rank
    runs the same code even when this process found it outside the installed package.
    """
    source = str(Path(__file__).resolve().parents[2])
    paths = [source, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    workers = []
    for local_rank in range(1, place.devices):
        with (folder / f"rank{local_rank}.log").open("wb") as log:
            command = [sys.executable, "-m", WORKER_MODULE, str(folder), str(local_rank)]
            workers.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment))
    return workers


def _log_tail(folder: Path, local_rank: int, n_lines: int = 15) -> str:
    """Return the last lines of a worker's log (where it says why it failed)."""
    path = folder / f"rank{local_rank}.log"
    lines = path.read_text(errors="replace").splitlines() if path.is_file() else []
    return "\n".join(lines[-n_lines:])


def finish_workers(folder: Path, workers: Sequence[subprocess.Popen[bytes]], *, failed: bool) -> None:
    """Wait for the workers (stop them when rank 0 failed); raise when one of them failed."""
    for worker in workers:
        if failed and worker.poll() is None:
            worker.terminate()
    for local_rank, worker in enumerate(workers, start=1):
        try:
            code = worker.wait(timeout=30 if failed else WORKER_WAIT_S)
        except subprocess.TimeoutExpired:
            worker.kill()
            code = worker.wait()
        if code != 0 and not failed:
            tail = _log_tail(folder, local_rank)
            raise ExplorecError(f"DDP rank {local_rank} exited with code {code}; its last lines:\n{tail}")


def end_process_group() -> None:
    """Leave the process group (so a later fit in this process starts a fresh one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def ddp_job(
    dataset: ProcessedDataset,
    text_embeddings: np.ndarray | None,
    cfg: ExplorecConfig,
    *,
    job: dict[str, Any],
    place: Place | None,
) -> Iterator[FixedPlace | None]:
    """Run the body as this process's rank of a DDP job; yields the Lightning environment (None: one process).

    With `place` None this process is local rank 0 of its node: it starts the node's other ranks on the
    same inputs first and waits for them after. A worker passes its own `place` and starts nothing.
    """
    if not is_distributed(cfg.trainer):
        yield None
        return
    if place is not None:
        try:
            yield FixedPlace(place)
        finally:
            end_process_group()
        return
    place = node_place(cfg.trainer)
    with tempfile.TemporaryDirectory(prefix="explorec-ddp-") as scratch:
        folder = Path(scratch)
        write_job(folder, dataset, text_embeddings, cfg, place=place, job=job)
        workers = start_workers(folder, place)
        failed = True
        try:
            yield FixedPlace(place)
            failed = False
        finally:
            end_process_group()
            finish_workers(folder, workers, failed=failed)
