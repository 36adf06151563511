"""The recommender as an MLflow pyfunc model: log it with a signature, an input example, pinned requirements.

Input: a DataFrame with one request per row — `user_id` (string), `recent_item_ids` (list of strings),
`k` (int, default 10), `exploration_rate` (float in [0, 1], default: the policy's), `seed` (int, default:
random), and the session's feedback `shown_item_ids` / `clicked_item_ids` (lists of strings; clicked ⊆
shown); every column is optional (see `explorec.serving.recommender` for history, feedback and cold start).
Output: one row per request with `item_ids`, `titles`, `scores`, `propensities`, `explored` (lists by slot),
`n_unknown_items`, `history_source`, `cold_start` and `n_feedback` (shown items the policy learned from).
Malformed or oversized requests — an unknown or misspelled field (the closest field suggested), an empty
record or call, an id longer than `max_id_length`, too many ids, requests or too large a k — raise an
MlflowException with INVALID_PARAMETER_VALUE, which `mlflow models serve` answers with HTTP 400. The
signature declares no input schema so that MLflow passes unknown fields through to that check (see
`signature`). MLflow's scoring server (FastAPI on uvicorn) sets no limit on the body size: a body is read
whole, within the request timeout (`mlflow models serve -t`, MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT, 60 s
by default, answered 504), and these limits apply once it is parsed; a 413 needs a proxy in front.

Served with `mlflow models serve -m models:/<name>@champion --env-manager local -h 127.0.0.1 -p 5001`:

    curl -s 127.0.0.1:5001/invocations -H 'Content-Type: application/json' \
      -d '{"dataframe_records": [{"user_id": "196", "k": 10}, {"recent_item_ids": ["50", "181"], "k": 5}]}'

The explorec package travels with the model (`code_paths`), so loading needs only the pinned requirements.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, fields
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types.schema import Array, ColSpec, Schema

from explorec.serving.bundle import RecommenderBundle, load_bundle
from explorec.serving.recommender import (
    REQUEST_FIELDS,
    Limits,
    Recommendation,
    Recommender,
    RequestError,
    parse_requests,
)

PINNED_PACKAGES = ("mlflow", "torch", "numpy", "pandas", "scipy", "cloudpickle", "faiss-cpu")
DEFAULT_MODEL_CONFIG = {"torch_threads": 1, "precompute_user_vectors": 1, **asdict(Limits())}
OUTPUT_COLUMNS = tuple(field.name for field in fields(Recommendation))


def request_fields() -> list[str]:
    """Return the request fields a model accepts (recorded in its MLmodel metadata as `request_fields`)."""
    return list(REQUEST_FIELDS)


def output_schema() -> Schema:
    """Return the response columns."""
    return Schema(
        [
            ColSpec("string", "user_id", required=False),
            ColSpec(Array("string"), "item_ids"),
            ColSpec(Array("string"), "titles"),
            ColSpec(Array("double"), "scores"),
            ColSpec(Array("double"), "propensities"),
            ColSpec(Array("boolean"), "explored"),
            ColSpec("long", "n_unknown_items"),
            ColSpec("string", "history_source"),
            ColSpec("boolean", "cold_start"),
            ColSpec("long", "n_feedback"),
        ]
    )


def signature() -> ModelSignature:
    """Return the model signature: the response columns, and no input schema, on purpose.

    With an input schema MLflow drops every column it does not declare before `predict` runs, so a
    misspelled field (`user_ids`, `shown_items`) would be ignored with HTTP 200, and an empty record would
    become zero rows. Without one, `predict` sees the request as sent and `parse_requests` checks every
    field: an unknown one is a 400 naming it. The input example and the `request_fields` metadata document
    the request columns instead.
    """
    return ModelSignature(outputs=output_schema())


def pip_requirements() -> list[str]:
    """Return the pinned requirements of a loaded model (installed versions; local tags like +cpu dropped)."""
    return [f"{name}=={metadata.version(name).split('+')[0]}" for name in PINNED_PACKAGES]


def _records(model_input: Any) -> list[dict[str, Any]]:
    """Return the requests as dicts, from a DataFrame (read column-wise: cheap), a list of dicts or a dict."""
    if isinstance(model_input, pd.DataFrame):
        names = [str(name) for name in model_input.columns]
        return [dict(zip(names, row, strict=True)) for row in model_input.to_numpy(dtype=object).tolist()]
    if isinstance(model_input, dict):
        return [model_input]
    if isinstance(model_input, list) and all(isinstance(row, dict) for row in model_input):
        return model_input
    raise RequestError(f"expected a DataFrame of requests, got {type(model_input).__name__}")


def _answers_frame(answers: list[Recommendation]) -> pd.DataFrame:
    """Return one row per answer with the output schema's columns (built column-wise)."""
    return pd.DataFrame(
        {name: [getattr(answer, name) for answer in answers] for name in OUTPUT_COLUMNS}, dtype=object
    )


class ExplorecRecommender(mlflow.pyfunc.PythonModel):
    """Recommends k items per request with the bundle's exploration policy, logging propensities."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        """Load the bundle (weights-only), set torch's thread count, and build the recommender.

        `torch_threads` (model_config, default 1) is set process-wide: one request's tensors are tiny, and
        more intra-op threads only contend (see docs/results.md on thread counts).
        Pass `model_config={"torch_threads": 0}` to `mlflow.pyfunc.load_model` to leave torch as it is.
        `precompute_user_vectors` (default 1) encodes every known user's stored history at load time, in
        batches, so a known user's request costs no user-tower pass; 0 computes each on first use instead.
        """
        import torch

        config = {**DEFAULT_MODEL_CONFIG, **(context.model_config or {})}
        if int(config["torch_threads"]) > 0:
            torch.set_num_threads(int(config["torch_threads"]))
        limits = Limits(
            **{key: int(value) for key, value in config.items() if key in Limits.__dataclass_fields__}
        )
        self.recommender = Recommender(load_bundle(context.artifacts), limits)
        if int(config["precompute_user_vectors"]):
            self.recommender.precompute_known_users()

    def predict(
        self,
        context: mlflow.pyfunc.PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        """Answer every request row; malformed requests raise INVALID_PARAMETER_VALUE."""
        try:
            requests = parse_requests(_records(model_input), self.recommender.limits)
            answers = self.recommender.recommend(requests)
        except RequestError as error:
            raise MlflowException(str(error), error_code=INVALID_PARAMETER_VALUE) from error
        return _answers_frame(answers)


def input_example(bundle: RecommenderBundle) -> pd.DataFrame:
    """Return two example requests: a known user, and a new user with recent items, exploration, feedback."""
    user = bundle.user_ids[0] if bundle.user_ids else None
    recent, shown = bundle.item_ids[:2], bundle.item_ids[2:5]
    no_feedback = {"shown_item_ids": None, "clicked_item_ids": None}
    return pd.DataFrame(
        [
            {"user_id": user, "recent_item_ids": None, "k": 10, "exploration_rate": None, "seed": None}
            | no_feedback,
            {"user_id": None, "recent_item_ids": recent, "k": 5, "exploration_rate": 0.2, "seed": 7}
            | {"shown_item_ids": shown, "clicked_item_ids": shown[:1]},
        ]
    )


def package_dir() -> Path:
    """Return the explorec package folder (shipped with the model as code)."""
    import explorec

    return Path(explorec.__file__).resolve().parent


def log_recommender(
    bundle: RecommenderBundle,
    *,
    name: str = "recommender",
    limits: Limits | None = None,
    tags: dict[str, str] | None = None,
    model_id: str | None = None,
) -> ModelInfo:
    """Log the bundle as a pyfunc model: into the LoggedModel `model_id` when given (no run is opened; it
    keeps its own tags), else a new LoggedModel with `tags` in the active MLflow run."""
    with tempfile.TemporaryDirectory() as scratch:
        files = bundle.save(Path(scratch) / "bundle")
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=ExplorecRecommender(),
            artifacts={file: str(path) for file, path in files.items()},
            code_paths=[str(package_dir())],
            signature=signature(),
            input_example=input_example(bundle),
            pip_requirements=pip_requirements(),
            model_config={**DEFAULT_MODEL_CONFIG, **asdict(limits or Limits())},
            metadata={"request_fields": request_fields()},
            tags=tags,
            model_id=model_id,
        )
