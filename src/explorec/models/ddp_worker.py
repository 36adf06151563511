"""A DDP rank other than the orchestrating one: `python -m explorec.models.ddp_worker JOB_FOLDER LOCAL_RANK`.

It loads the inputs rank 0 wrote (`explorec.models.distributed.write_job`), trains its share and exits: no
Prefect flow, no MLflow run, no registry; rank 0 keeps the checkpoint and does everything after the fit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from explorec.config import from_dict
from explorec.data.processed import load_processed
from explorec.models.distributed import Place
from explorec.models.fit import fit_two_tower, refit_two_tower


def run_worker(folder: Path, local_rank: int) -> None:
    """Train as local rank `local_rank` of the job written to `folder`."""
    document = json.loads((folder / "job.json").read_text())
    cfg = from_dict(document["config"])
    place = Place(**{**document["place"], "local_rank": local_rank})
    dataset = load_processed(folder / "dataset")
    embeddings_path = folder / "text_embeddings.npy"
    embeddings = np.load(embeddings_path) if embeddings_path.is_file() else None
    job = document["job"]
    if job["kind"] == "refit":
        refit_two_tower(dataset, embeddings, cfg, epochs=int(job["epochs"]), place=place)
    else:
        fit_two_tower(dataset, embeddings, cfg, checkpoint_dir=Path(job["checkpoint_dir"]), place=place)


def main(argv: list[str]) -> int:
    """Entry point: JOB_FOLDER LOCAL_RANK."""
    if len(argv) != 2 or not argv[1].isdigit():
        print("usage: python -m explorec.models.ddp_worker JOB_FOLDER LOCAL_RANK", file=sys.stderr)
        return 2
    run_worker(Path(argv[0]), int(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
