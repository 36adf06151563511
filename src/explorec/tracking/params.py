"""Which parts of the config a run logs as MLflow params: only the sections that shaped it.

A plain training run is shaped by the data, split, encoder, model and trainer sections and the seed; the
search space, the simulator, the gates and the benchmark grids did nothing to it, and as params they bury
the ones that matter. The whole resolved config is still logged with the run as `config.yaml`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from explorec.tracking.store import config_params

TRAINING_SECTIONS = ("data", "split", "encoder", "model", "trainer", "seed")
"""The config sections (and top-level values) that decide a two-tower training run."""
MAX_PARAMS_PER_BATCH = 100  # MLflow's limit on params in one log_batch call


def active_params(values: Mapping[str, Any], sections: Sequence[str] = TRAINING_SECTIONS) -> dict[str, str]:
    """Return the params of the named sections of a config dict (dotted keys, string values)."""
    return config_params({name: values[name] for name in sections if name in values})


def log_active_params(
    client: Any, run_id: str, values: Mapping[str, Any], sections: Sequence[str] = TRAINING_SECTIONS
) -> dict[str, str]:
    """Log the active sections' params into a run in batches; return what was logged."""
    from mlflow.entities import Param

    params = active_params(values, sections)
    items = [Param(key, value) for key, value in params.items()]
    for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
        client.log_batch(run_id, params=items[start : start + MAX_PARAMS_PER_BATCH])
    return params
