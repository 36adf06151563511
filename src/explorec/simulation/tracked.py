"""Run the simulator on the configured data set and record tables, plots and the summary in MLflow."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from explorec.config import ExplorecConfig, config_hash


def simulate_and_track(cfg: ExplorecConfig) -> dict[str, Any]:
    """Simulate every configured policy (stand-in recommender) and log one MLflow run; return a summary."""
    import mlflow

    from explorec.simulation.simulate import simulate_with_stand_in
    from explorec.tracking import config_params, configure_tracking, run_tags
    from explorec.training import item_text_embeddings, load_dataset

    target = configure_tracking(cfg.tracking)
    dataset = load_dataset(cfg)
    text = item_text_embeddings(dataset, cfg)
    if text is None:
        raise ValueError("the simulator's clusters need text embeddings: use encoder=minilm")
    client = mlflow.MlflowClient(target.tracking_uri)
    tags = run_tags(
        config_hash=config_hash(cfg), data_fingerprint=dataset.fingerprint, extra={"kind": "simulate"}
    )
    run = client.create_run(target.experiment_id, run_name=f"simulate-{cfg.data.name}", tags=tags)
    run_id = run.info.run_id
    try:
        for key, value in config_params({"simulate": _plain(cfg.simulate)}).items():
            client.log_param(run_id, key, value)
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch)
            result = simulate_with_stand_in(
                dataset=dataset, text_embeddings=text, cfg=cfg.simulate, output_dir=folder
            )
            for name in ("summary", "comparisons", "per_replication", "ope"):
                getattr(result, name).to_csv(folder / f"{name}.csv", index=False)
            (folder / "summary.md").write_text(result.markdown)
            client.log_artifacts(run_id, str(folder))
        client.log_metric(run_id, "time/simulate_s", result.runtime_s)
        client.set_terminated(run_id, "FINISHED")
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    return {
        "run_id": run_id,
        "tracking_uri": target.tracking_uri,
        "runtime_s": round(result.runtime_s, 1),
        "world": result.world_info,
        "markdown": result.markdown,
    }


def _plain(section: Any) -> dict[str, Any]:
    """Return a config dataclass as a plain dict."""
    from dataclasses import asdict

    return asdict(section)
