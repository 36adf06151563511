"""Human-readable summaries (plain text and Markdown) of what a command did."""

from __future__ import annotations

from typing import Any

from explorec.evaluation.targets import metrics_markdown
from explorec.tracking.links import mlflow_run_url, mlflow_version_url


def preprocess_text(summary: dict[str, Any]) -> str:
    """Return the few lines the `preprocess` command prints for a person."""
    counts = summary["counts"]
    status = "cache hit (nothing recomputed)" if summary["cache_hit"] else "computed"
    if summary.get("orchestrated") is False:
        status = "up to date: cache hit, no flow run needed (--force-flow runs it through Prefect)"
    title = f"explorec preprocess: {summary['dataset']} / {summary['split']}"
    lines = [
        f"{title} - {status} in {summary['elapsed_s']:.2f}s",
        f"  interactions {counts['interactions']:,}  users {counts['users']:,}  items {counts['items']:,}"
        f"  (with overview {counts['items_with_overview']:,}; cold {counts['cold_items']:,})",
        f"  train {counts['train']:,}  valid {counts['valid']:,}  test {counts['test']:,}",
        f"  output {summary['output_dir']}",
        f"  fingerprint {summary['fingerprint']}",
    ]
    return "\n".join(lines)


def preprocess_markdown(summary: dict[str, Any]) -> str:
    """Return the Markdown table published as the preprocess flow's Prefect artifact."""
    counts = summary["counts"]
    rows = "\n".join(f"| {name} | {value:,} |" for name, value in counts.items())
    return (
        f"# Preprocess: {summary['dataset']} / {summary['split']}\n\n"
        f"- cache hit: **{summary['cache_hit']}**\n- fingerprint: `{summary['fingerprint']}`\n"
        f"- output: `{summary['output_dir']}`\n- elapsed: {summary['elapsed_s']:.2f} s\n\n"
        f"| count | value |\n|---|---:|\n{rows}\n"
    )


def train_text(summary: dict[str, Any]) -> str:
    """Return the lines the `train` command prints: run id, fit time and the metrics table."""
    heading = (
        f"explorec train: {summary['dataset']} / {summary['split']} / encoder {summary['encoder']}"
        f" - run {summary['run_id']}, {summary['epochs_run']} epochs in {summary['fit_time_s']:.1f}s"
    )
    table = metrics_markdown({"two_tower": summary["metrics"]})
    note = summary.get("evaluation_sample")
    return heading + "\n" + table + (f"\n{note}\n" if note else "")


def train_markdown(summary: dict[str, Any]) -> str:
    """Return the train flow's Prefect artifact: the MLflow run (linked when a UI is known), its metrics."""
    return f"# Train run\n\n- MLflow run: {run_link(summary, summary['run_id'])}\n\n" + metrics_markdown(
        {"two_tower": summary["metrics"]}
    )


def benchmark_markdown(table: dict[str, Any]) -> str:
    """Return the benchmark comparison: test metrics per model, then validation, then chosen parameters."""
    lines = [f"# Benchmark: {table['dataset']} / {table['split']}", ""]
    evaluations = list(table["rows"][0]["metrics"]) if table["rows"] else []
    for evaluation in evaluations:
        lines += [f"## {evaluation}", ""]
        lines.append(
            metrics_markdown(
                {row["model"]: {evaluation: row["metrics"][evaluation]} for row in table["rows"]}
            )
        )
    lines += [
        "## Chosen parameters (selected on validation NDCG@10)",
        "",
        "| model | params | fit time (s) |",
    ]
    lines.append("|---|---|---:|")
    lines += [f"| {row['model']} | `{row['params']}` | {row['fit_time_s']:.1f} |" for row in table["rows"]]
    lines += paired_markdown(table.get("paired"))
    if table.get("evaluation_sample"):
        lines += ["", str(table["evaluation_sample"])]
    lines += [
        "",
        f"Wall time: {table.get('wall_time_s', float('nan')):.0f} s; parent run `{table['parent_run_id']}`.",
    ]
    return "\n".join(lines) + "\n"


def paired_markdown(paired: dict[str, Any] | None) -> list[str]:
    """Return the lines of the paired-differences section (none when nothing was paired)."""
    if not paired or not paired.get("rows"):
        return []
    lines = [
        "",
        f"## Paired differences ({paired['evaluation']} {paired['metric']}, per user, 95% t interval)",
        "",
        "Model minus the other on the same users; Holm-adjusted across the rows. An interval that contains 0",
        "does not tell the two apart on this split.",
        "",
        "| model | versus | difference | 95% interval | p (Holm) | users |",
        "|---|---|---:|---|---:|---:|",
    ]
    lines += [
        f"| {row['model']} | {row['versus']} | {row['mean_difference']:+.4f} | "
        f"[{row['ci_low']:+.4f}, {row['ci_high']:+.4f}] | {row['p_holm']:.3g} | {row['n_users']} |"
        for row in paired["rows"]
    ]
    return lines


def benchmark_text(summary: dict[str, Any]) -> str:
    """Return what the `benchmark` command prints: the Markdown comparison and where it was written."""
    return summary["markdown"] + f"\nwritten to {summary['output_dir']}/benchmark.md and benchmark.json\n"


def lift_lines(metrics: dict[str, float]) -> list[str]:
    """Return one line per calibration: the candidate's expected-click lift over greedy_online with its CI."""
    calibrations = sorted({key.split("/")[1] for key in metrics if key.count("/") == 2})
    return [
        f"{name}: lift {metrics[f'sim/{name}/lift']:+.4f} expected clicks per user "
        f"[{metrics[f'sim/{name}/lift_ci_low']:+.4f}, {metrics[f'sim/{name}/lift_ci_high']:+.4f}]"
        f" (Holm p {metrics[f'sim/{name}/p_holm']:.3g})"
        for name in calibrations
    ]


def serving_policy(
    name: str, rate: float, served: dict[str, float], search: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The policy the registered model serves: its exploration rate, where the rate came from, and the
    share of served slots that explored and that differ from greedy (measured on the test users' slates)."""
    chosen = (search or {}).get("chosen_trial")
    return {
        "name": name,
        "exploration_rate": float(rate),
        "rate_from": f"chosen by search trial {chosen['number']}" if chosen else "set in the config",
        "explored_share": served.get("served/policy/explored_share"),
        "deviation_rate": served.get("served/policy/deviation_rate"),
    }


def policy_line(policy: dict[str, Any] | None) -> str:
    """Say which policy is served at which exploration rate, and how much it actually explored."""
    if not policy:
        return ""
    line = (
        f"policy {policy['name']} at exploration rate {policy['exploration_rate']:g}, {policy['rate_from']}"
    )
    measured = [
        f"{label} {policy[key]:.3f}"
        for key, label in (("explored_share", "explored slots"), ("deviation_rate", "slots unlike greedy"))
        if policy.get(key) is not None
    ]
    return line + (f"; served to test users: {', '.join(measured)}" if measured else "")


def pipeline_text(summary: dict[str, Any]) -> str:
    """Return what `pipeline` prints: the runs (reused or new), the gate decision and the champion."""
    registration, simulation = summary["registration"], summary.get("simulation") or {}
    cache = summary.get("cache", {})
    if cache.get("training") == "hit":
        training = f"reused training run {summary['run_id']} (cache hit)"
    else:
        training = f"trained run {summary['run_id']} (cache {cache.get('training', 'miss')})"
    lines = [f"explorec pipeline: MLflow run {summary['run_id']}", f"  {training}"]
    if summary.get("policy"):
        lines.append(f"  {policy_line(summary['policy'])}")
    if simulation.get("run_id"):
        verb = "reused simulation run" if simulation["cache"] == "hit" else "simulation run"
        lines.append(
            f"  {verb} {simulation['run_id']} (cache {simulation['cache']}): {simulation['policy']} vs "
            f"{simulation['control']}, gate value {simulation['gate_metric']} = "
            f"{simulation['metrics'][simulation['gate_metric']]:.4g}"
        )
        lines += [f"    {line}" for line in lift_lines(simulation["metrics"])]
    elif simulation:
        lines.append(f"  simulation skipped: {simulation['skipped']}")
    reused = " (reused: cache hit, no new version)" if cache.get("registration", "").startswith("hit") else ""
    lines.append(
        f"  registered {registration['registered_model']} v{registration['version']}{reused}:"
        f" gate {'passed' if registration['gate_passed'] else 'FAILED'}"
    )
    lines += [f"    - {reason}" for reason in registration["gate_reasons"]]
    lines.append(f"  champion: v{summary['champion']}" if summary["champion"] else "  champion: none yet")
    if summary.get("metrics"):
        lines.append(metrics_markdown({"two_tower": summary["metrics"]}))
    return "\n".join(lines)


def registration_text(summary: dict[str, Any]) -> str:
    """Return what `register` prints: the version, the gate decision table, the aliases."""
    verdict = "passed: alias challenger set" if summary["gate_passed"] else "FAILED: not a challenger"
    return (
        f"explorec register: {summary['registered_model']} v{summary['version']} - gates {verdict}\n"
        f"{summary['decision_markdown']}\n"
        f"challenger: v{summary['challenger']}  champion: v{summary['champion']}"
    )


def promotion_text(summary: dict[str, Any]) -> str:
    """Return what `promote` prints: interrupted earlier attempts, the outcome, the decision, the champion."""
    notes = "".join(f"interrupted attempt: {note}\n" for note in summary.get("interrupted") or [])
    return notes + (
        f"explorec promote: {summary['registered_model']} v{summary['version']} - {summary['outcome']}\n"
        f"{summary['decision_markdown']}\n"
        f"champion: v{summary['champion']}"
    )


def log_evaluation_text(summary: dict[str, Any]) -> str:
    """Return what `evaluate-logs` prints: clicks per slot of the logged traffic and of the candidate."""
    metrics = summary["metrics"]
    lines = [
        f"explorec evaluate-logs: {summary['registered_model']} v{summary['version']} on "
        f"{metrics['ope/n_impressions']:.0f} logged slates ({metrics['ope/n_slots']:.0f} slots) of "
        f"{summary['impression_log']}",
        "",
        "| estimate | clicks per slot | 95% interval |",
        "|---|---|---|",
        f"| logged traffic | {metrics['ope/logged_ctr']:.4f} | |",
    ]
    from explorec.evaluation.ope import ESTIMATOR_NAMES

    for name in (*ESTIMATOR_NAMES, "lift"):
        if f"ope/{name}" in metrics:
            lines.append(
                f"| candidate {name} | {metrics[f'ope/{name}']:+.4f} | "
                f"[{metrics[f'ope/{name}_ci_low']:+.4f}, {metrics[f'ope/{name}_ci_high']:+.4f}] |"
                if name == "lift"
                else f"| candidate {name} | {metrics[f'ope/{name}']:.4f} | "
                f"[{metrics[f'ope/{name}_ci_low']:.4f}, {metrics[f'ope/{name}_ci_high']:.4f}] |"
            )
    lines += [
        "",
        f"lift: {summary['lift_estimator']} minus the logged clicks per slot"
        + (
            f" (no position-based estimators: {summary['why_no_position_based']})"
            if summary.get("why_no_position_based")
            else ""
        ),
        f"effective samples {metrics['ope/effective_sample_size']:.0f}; support "
        f"{metrics['ope/support']:.1%} of logged slots; ope_lift gate: {summary['ope_gate']}",
        f"MLflow run {summary['run_id']}; metrics added to the version's metrics.json",
    ]
    return "\n".join(lines)


def export_logs_text(summary: dict[str, Any]) -> str:
    """Return what `export-logs` prints: what was written and the command that trains on it."""
    overrides = " ".join(f"'{item}'" if "[" in item else item for item in summary["overrides"])
    return (
        f"explorec export-logs: {summary['n_base_interactions']} {summary['base']} interactions + "
        f"{summary['n_clicks']} logged clicks → {summary['interactions']}\n"
        f"{summary['n_added_items']} added items in {summary['items']}; "
        f"{summary['n_exposures']} shown but not clicked (exposures, not written)\n"
        f"train on it: explorec pipeline {overrides}"
    )


def simulate_text(summary: dict[str, Any]) -> str:
    """Return what `simulate` prints: the Markdown summary and the MLflow run."""
    return f"{summary['markdown']}\n\nMLflow run {summary['run_id']} ({summary['runtime_s']} s)"


def replay_text(summary: dict[str, Any]) -> str:
    """Return what `replay` prints: the Markdown table and the MLflow run."""
    return (
        f"{summary['markdown']}\nMLflow run {summary['run_id']} (replayed run {summary['replayed_run_id']})"
    )


def loop_text(summary: dict[str, Any]) -> str:
    """Return what `loop` prints: the rounds table, the interval coverage and where the run lives."""
    return (
        f"{summary['markdown']}\n\nMLflow run {summary['run_id']} (rounds table, curves in plots/); "
        f"logs and training files in {summary['folder']}"
    )


def study_text(summary: dict[str, Any]) -> str:
    """Return what `study` prints: the Markdown report and the MLflow run."""
    return (
        f"{summary['markdown']}\n\nMLflow run {summary['run_id']} (study {summary['runtime_s']} s, "
        f"recommenders {summary['recommenders_s']} s, total {summary['total_s']} s)"
    )


def tune_text(summary: dict[str, Any]) -> str:
    """Return what `tune` prints: the study's counts, the Pareto front size and the chosen trial."""
    from explorec.tuning.report import summary_markdown

    return summary_markdown(summary)


def without_decision(summary: dict[str, Any]) -> dict[str, Any]:
    """Return a registration or promotion summary without its decision's Markdown (the artifact holds it)."""
    return {key: value for key, value in summary.items() if key != "decision_markdown"}


def run_link(summary: dict[str, Any], run_id: str) -> str:
    """Return a Markdown link to an MLflow run's UI page, or the run id and its store when no UI is known."""
    ui = summary.get("mlflow_ui_url")
    if ui:
        return f"[`{run_id}`]({mlflow_run_url(str(ui), str(summary['experiment_id']), run_id)})"
    uri = str(summary["tracking_uri"])
    return f"`{run_id}` (store `{uri}`; `mlflow server --backend-store-uri {uri}` shows it)"


def version_link(summary: dict[str, Any], name: str, version: str) -> str:
    """Return a Markdown link to a registered version's MLflow UI page (plain text when no UI is known)."""
    text = f"`{name}` version {version}"
    ui = summary.get("mlflow_ui_url")
    return f"[{text}]({mlflow_version_url(str(ui), name, version)})" if ui else text


def reuse_text(state: str) -> str:
    """Say in words whether a step's result is new or reused (a cache state of the summary)."""
    if state.startswith("hit"):
        detail = state.removeprefix("hit").strip(" ()")
        return f"reused (cache hit; {detail})" if detail else "reused (cache hit)"
    return {"miss": "new (cache miss)", "forced": "new (pipeline.force=true)"}.get(state, state)


def pipeline_markdown(summary: dict[str, Any], decision_markdown: str) -> str:
    """Return the pipeline's Prefect artifact: the MLflow runs, the gate decision, the champion, reuse."""
    reg, simulation, cache = summary["registration"], summary["simulation"], summary["cache"]
    version = version_link(summary, reg["registered_model"], str(reg["version"]))
    lines = [
        "# explorec pipeline",
        "",
        f"- training run: {run_link(summary, summary['run_id'])} — {reuse_text(cache['training'])}",
    ]
    if summary.get("policy"):
        lines.append(f"- {policy_line(summary['policy'])}")
    if simulation.get("run_id"):
        gate_value = simulation["metrics"][simulation["gate_metric"]]
        link = run_link(summary, simulation["run_id"])
        lines.append(
            f"- simulation run: {link} — {reuse_text(cache['simulation'])}; "
            f"`{simulation['policy']}` vs `{simulation['control']}`, "
            f"smallest lower 95% bound of the expected-click lift: {gate_value:.4g}"
        )
        lines += [f"  - {line}" for line in lift_lines(simulation["metrics"])]
    else:
        lines.append(f"- simulation: skipped — {simulation['skipped']}")
    lines += [
        f"- registered: {version} — {reuse_text(cache['registration'])}",
        f"- gate passed: **{reg['gate_passed']}**",
        f"- champion: version {summary['champion']}" if summary["champion"] else "- champion: none",
        f"- code version: `{summary['code_version']}`",
    ]
    if summary["search"]:
        lines.append(f"- search: parent run {run_link(summary, summary['search']['parent_run_id'])}")
    lines += ["", "## Gate decision", "", decision_markdown]
    return "\n".join(lines)


NOT_PROMOTED = "Not promoted"
"""The name of the pipeline flow run's final (Completed) state when its candidate did not become champion."""


def not_promoted_reason(summary: dict[str, Any], *, promote: bool) -> str | None:
    """Say why the pipeline's candidate did not become champion (None: it is the champion now).

    A failed gate, a promotion refused when the gates were re-checked under the lock, or promotion
    switched off (`pipeline.promote=false`) each leave the champion where it was.
    """
    registration, promotion = summary["registration"], summary.get("promotion")
    version = f"{registration['registered_model']} v{registration['version']}"
    champion = f"v{summary['champion']}" if summary.get("champion") else "none"
    if not registration["gate_passed"]:
        reasons = "; ".join(registration["gate_reasons"]) or "no reason recorded"
        return f"gate failed, {version} not promoted (champion: {champion}): {reasons}"
    if promotion is not None and not promotion["promoted"]:
        reasons = "; ".join(promotion["gate_reasons"]) or promotion["outcome"]
        return f"promotion {promotion['outcome']}, {version} not promoted (champion: {champion}): {reasons}"
    if promotion is None and summary.get("champion") != registration["version"] and not promote:
        return f"gates passed but pipeline.promote=false: {version} is the challenger, not promoted"
    return None
