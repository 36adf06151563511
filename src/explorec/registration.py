"""From a training run to a gated registry version: package, measure, register, gate, promote.

The steps pass run ids and version numbers, never models: `package_run` logs the pyfunc recommender into
the training run, `register_and_gate` registers it with its metrics and records the gate decision
(passing sets `challenger`), `promote_version` moves `champion` under the registry's lock.
"""

from __future__ import annotations

from typing import Any

from explorec.config import ExplorecConfig


def _policy_spec(cfg: ExplorecConfig) -> Any:
    """Return the serving policy of the config as the registry's PolicySpec."""
    from explorec.registry.bundle import PolicySpec

    params: dict[str, Any] = {}
    if cfg.policy.name in ("linucb", "thompson", "mmr"):
        params["n_candidates"] = cfg.policy.n_candidates
    if cfg.policy.name == "semantic_cluster":
        params["n_clusters"] = cfg.policy.n_clusters
    return PolicySpec(cfg.policy.name, cfg.policy.exploration_rate, params)


def package_run(cfg: ExplorecConfig, run_id: str) -> dict[str, float]:
    """Log the run's recommender as a pyfunc model and its served-slate metrics; return those metrics."""
    import mlflow

    from explorec.registry.bundle import bundle_from_run
    from explorec.registry.pyfunc import log_recommender
    from explorec.registry.served import served_metrics_for_bundle
    from explorec.tracking import configure_tracking, metric_dict
    from explorec.training import load_dataset

    target = configure_tracking(cfg.tracking)
    dataset = load_dataset(cfg)
    bundle = bundle_from_run(run_id, dataset, cfg.model, _policy_spec(cfg), tracking_uri=target.tracking_uri)
    served = served_metrics_for_bundle(bundle, dataset, k=cfg.policy.slate_size, seed=cfg.seed)
    with mlflow.start_run(run_id=run_id):
        log_recommender(bundle, name=cfg.registry.model_artifact)
        mlflow.log_metrics(metric_dict(served))
    return metric_dict(served)


def register_and_gate(
    cfg: ExplorecConfig, run_id: str, *, extra_metrics: dict[str, float] | None = None
) -> dict:
    """Register the run's packaged model, decide the gates against the champion, tag the version."""
    from explorec.registry.promotion import ModelRegistry
    from explorec.tracking import configure_tracking

    target = configure_tracking(cfg.tracking)
    registry = ModelRegistry(target.tracking_uri, cfg.registry)
    name = cfg.tracking.registered_model
    version = registry.register_candidate(run_id, name, metrics=extra_metrics)
    decision = registry.evaluate_gates(name, version, cfg.gates)
    return {
        "registered_model": name,
        "version": version,
        "gate_passed": decision.passed,
        "gate_reasons": list(decision.reasons),
        "decision_markdown": decision.to_markdown(),
        "challenger": registry.alias_version(name, cfg.registry.challenger_alias),
        "champion": registry.champion_version(name),
    }


def promote_version(
    cfg: ExplorecConfig,
    version: str | None,
    *,
    force: bool = False,
    reason: str | None = None,
    dry_run: bool = False,
    actor: str | None = None,
) -> dict[str, Any]:
    """Move `champion` to a version (default: the current challenger), re-checking the gates unless forced."""
    from explorec.registry.promotion import ModelRegistry
    from explorec.tracking import configure_tracking

    target = configure_tracking(cfg.tracking)
    from explorec.errors import ExplorecError

    registry = ModelRegistry(target.tracking_uri, cfg.registry)
    name = cfg.tracking.registered_model
    chosen = version or registry.alias_version(name, cfg.registry.challenger_alias)
    if chosen is None:
        raise ExplorecError(f"{name} has no challenger to promote; pass --version N")
    result = registry.promote(
        name, chosen, cfg.gates, force=force, reason=reason, dry_run=dry_run, actor=actor
    )
    return {
        "registered_model": name,
        "version": chosen,
        "outcome": result.outcome,
        "promoted": result.promoted,
        "champion": registry.champion_version(name),
        "gate_reasons": list(result.decision.reasons) if result.decision is not None else [],
        "decision_markdown": result.decision.to_markdown() if result.decision is not None else "",
    }
