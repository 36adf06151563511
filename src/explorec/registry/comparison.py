"""The gate decision as a figure: candidate vs champion on every gated metric, logged beside decision.json.

Kept apart from `promotion` (the registry adapter) so the decision stays a pure table and the figure is
one call after it: `log_gate_comparison` draws `explorec.tracking.plots.version_comparison` and logs it to
the version's training run under `gates/v<version>/comparison.png`.
"""

from __future__ import annotations

from typing import Any

from explorec.registry.gates import Decision

COMPARISON_FILE = "comparison.png"


def comparison_artifact(version: str) -> str:
    """Return the artifact path of a version's comparison figure in its training run."""
    return f"gates/v{version}/{COMPARISON_FILE}"


def log_gate_comparison(
    client: Any, name: str, version: str, decision: Decision, champion: str | None
) -> str | None:
    """Draw the decision (candidate vs champion, bounds drawn) into the version's run; return its path."""
    from explorec.tracking.plots import log_figure, version_comparison

    run_id = client.get_model_version(name, version).run_id
    if not run_id:
        return None
    labels = {
        "candidate": f"v{version} (candidate)",
        "champion": f"v{champion} (champion)" if champion and champion != version else "champion",
    }
    log_figure(
        client,
        run_id,
        lambda folder: version_comparison(decision.to_dict(), folder / COMPARISON_FILE, **labels),
        f"gates/v{version}",
    )
    return comparison_artifact(version)
