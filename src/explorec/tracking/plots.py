"""The figures explorec logs as run artifacts (matplotlib, headless Agg backend): one plotting module.

- `training_curves`: train loss and validation NDCG@10 per epoch, best epoch marked (every training run).
- `lift_intervals`: a policy's expected-click lift over a control with its 95% interval, per calibration
  and policy (a forest plot; the pipeline's simulation has one row per calibration).
- `version_comparison`: candidate vs champion on every gated metric, with the gate's floor (or ceiling)
  and the champion's tolerance bound drawn; the simulator's lift bound against 0.
- `tradeoff`: clicks, diversity and discovery against the exploration rate, readable with one policy at
  one rate (the rate axis is always [0, 1]; baselines are legend entries, never overlapping labels).

Every function takes plain data (dicts, a DataFrame), writes one PNG and returns its path; nothing here
reads MLflow. `log_figure` writes a figure into a temporary folder and logs it into a run.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

LOSS_KEYS = ("train/loss_epoch", "train/loss")
NDCG_KEY = "val/ndcg@10"
PASS_COLOUR, FAIL_COLOUR = "#2a9d5c", "#c0392b"
BASELINE_STYLES = {
    "greedy_online": ("#444444", "--"),
    "static": ("#888888", ":"),
    "random": ("#bbbbbb", "-."),
}


def pyplot() -> Any:
    """Return matplotlib.pyplot on the headless Agg backend (no display is ever needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure: Any, path: Path, dpi: int = 110, *, tight: bool = True) -> Path:
    """Lay out (unless laid out already), save as PNG and close a figure; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if tight:
        figure.tight_layout()
    figure.savefig(path, dpi=dpi, format="png")
    pyplot().close(figure)
    return path


def log_figure(client: Any, run_id: str, write: Callable[[Path], Path], artifact_path: str) -> None:
    """Write a figure with `write(folder)` into a temporary folder and log it into the run's artifacts."""
    with tempfile.TemporaryDirectory(prefix="explorec-figure-") as scratch:
        client.log_artifact(run_id, str(write(Path(scratch))), artifact_path=artifact_path)


def _finite(value: Any) -> float | None:
    """Return a finite float, or None for a missing or NaN value."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _series(history: Sequence[Mapping[str, float]], keys: Sequence[str]) -> tuple[list[int], list[float]]:
    """Return (epoch numbers from 1, values) of the first of `keys` each epoch record holds."""
    epochs, values = [], []
    for index, record in enumerate(history):
        value = next((_finite(record[key]) for key in keys if key in record), None)
        if value is not None:
            epochs.append(int(record.get("epoch", index)) + 1)
            values.append(value)
    return epochs, values


def training_curves(history: Sequence[Mapping[str, float]], path: Path, title: str = "") -> Path:
    """Plot train loss and validation NDCG@10 per epoch (best epoch marked) into `path`."""
    return save_figure(training_curves_figure(history, title), path)


def training_curves_figure(history: Sequence[Mapping[str, float]], title: str = "") -> Any:
    """Return the figure of train loss and validation NDCG@10 per epoch (best epoch marked)."""
    plt = pyplot()
    figure, (loss_axis, ndcg_axis) = plt.subplots(1, 2, figsize=(10, 4))
    epochs, losses = _series(history, LOSS_KEYS)
    loss_axis.plot(epochs, losses, "o-", color="#1f77b4", label="train loss (epoch mean)")
    loss_axis.set(title="train loss", xlabel="epoch", ylabel="sampled / full softmax loss")
    val_epochs, ndcg = _series(history, (NDCG_KEY,))
    ndcg_axis.plot(val_epochs, ndcg, "o-", color="#ff7f0e", label="validation NDCG@10")
    if ndcg:
        best = max(range(len(ndcg)), key=lambda index: ndcg[index])
        ndcg_axis.scatter(
            [val_epochs[best]],
            [ndcg[best]],
            s=120,
            facecolors="none",
            edgecolors="black",
            zorder=3,
            label=f"best: epoch {val_epochs[best]}, {ndcg[best]:.4f}",
        )
    else:
        ndcg_axis.text(0.5, 0.5, "no validation (refit)", ha="center", transform=ndcg_axis.transAxes)
    ndcg_axis.set(title="validation NDCG@10", xlabel="epoch", ylabel="NDCG@10")
    for axis in (loss_axis, ndcg_axis):
        axis.xaxis.get_major_locator().set_params(integer=True)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    if title:
        figure.suptitle(title)
    return figure


def lift_intervals(rows: Sequence[Mapping[str, Any]], path: Path, *, control: str, outcome: str) -> Path:
    """Plot each policy's lift over `control` with its 95% interval, one panel per calibration."""
    return save_figure(lift_intervals_figure(rows, control=control, outcome=outcome), path)


def lift_intervals_figure(rows: Sequence[Mapping[str, Any]], *, control: str, outcome: str) -> Any:
    """Return the lift chart: one panel per calibration, one interval per policy, 0 drawn.

    `rows`: dicts with calibration, policy, mean_difference, ci_low, ci_high.
    """
    plt = pyplot()
    calibrations = list(dict.fromkeys(str(row["calibration"]) for row in rows)) or ["none"]
    policies = list(dict.fromkeys(str(row["policy"]) for row in rows))
    height = 1.4 + 0.55 * max(len(policies), 1)
    figure, axes = plt.subplots(
        1, len(calibrations), figsize=(6.5 * len(calibrations), height), squeeze=False
    )
    for axis, calibration in zip(axes[0], calibrations, strict=True):
        chosen = {str(row["policy"]): row for row in rows if str(row["calibration"]) == calibration}
        labels, edges = [], [0.0]
        for position, policy in enumerate(policies):
            row = chosen.get(policy)
            if row is None:
                labels.append(f"{policy}\n(not simulated)")
                continue
            mean, low, high = (float(row[key]) for key in ("mean_difference", "ci_low", "ci_high"))
            colour = PASS_COLOUR if low > 0 else FAIL_COLOUR if high < 0 else "#555555"
            axis.errorbar(
                [mean], [position], xerr=[[mean - low], [high - mean]], fmt="o", color=colour, capsize=5
            )
            labels.append(
                f"{policy}\n{mean:+.3g} [{low:+.3g}, {high:+.3g}]"
            )  # numbers beside, not on, the bar
            edges += [low, high]
        span = max(max(edges) - min(edges), 1e-9)
        axis.set_xlim(min(edges) - 0.1 * span, max(edges) + 0.1 * span)
        axis.axvline(0.0, color="black", linewidth=1)
        axis.set_yticks(range(len(policies)), labels, fontsize=8)
        axis.set_ylim(-0.6, len(policies) - 0.4)
        axis.invert_yaxis()  # the first policy on top
        axis.set(title=f"calibration {calibration}", xlabel=f"lift in {outcome} vs {control} (95% CI)")
        axis.grid(axis="x", alpha=0.3)
    figure.suptitle(
        "green: lower bound above 0; red: upper bound below 0; grey: the interval holds 0", fontsize=9
    )
    return figure


def _gate_panels(table: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Group a decision table's rows by metric (absolute and vs-champion rows of one metric together)."""
    panels: dict[str, list[Mapping[str, Any]]] = {}
    for row in table:
        panels.setdefault(str(row["metric"]), []).append(row)
    return panels


def version_comparison(
    decision: Mapping[str, Any],
    path: Path,
    *,
    candidate: str = "candidate",
    champion: str = "champion",
) -> Path:
    """Plot candidate vs champion for every gated metric with the gate's bounds into `path`."""
    figure = version_comparison_figure(decision, candidate=candidate, champion=champion)
    return save_figure(figure, path)


def version_comparison_figure(
    decision: Mapping[str, Any], *, candidate: str = "candidate", champion: str = "champion"
) -> Any:
    """Return candidate vs champion for every gated metric with the gate's bounds; title says the verdict.

    `decision`: `Decision.to_dict()` of `explorec.registry.gates` (rows with metric, candidate, reference,
    bound, comparison, passed). Each panel: a bar per version, the absolute bound and the champion's
    tolerance bound as lines, the panel titled pass or FAIL.
    """
    plt = pyplot()
    panels = _gate_panels(decision.get("table", []))
    columns = min(max(len(panels), 1), 3)
    rows_n = max(math.ceil(len(panels) / columns), 1)
    figure, axes = plt.subplots(rows_n, columns, figsize=(4.2 * columns, 3.4 * rows_n), squeeze=False)
    for axis, (metric, gate_rows) in zip(axes.flat, panels.items(), strict=False):
        _gate_panel(axis, metric, gate_rows, candidate=candidate, champion=champion)
    for axis in list(axes.flat)[len(panels) :]:
        axis.set_visible(False)
    verdict = "PASSED" if decision.get("passed") else "FAILED"
    figure.suptitle(
        f"gates {verdict}: {candidate} vs {champion}",
        color=PASS_COLOUR if decision.get("passed") else FAIL_COLOUR,
    )
    return figure


def _gate_panel(
    axis: Any, metric: str, rows: Sequence[Mapping[str, Any]], *, candidate: str, champion: str
) -> None:
    """Draw one gated metric: candidate (and champion) bars, each rule's bound as a labelled line."""
    value = next((_finite(row.get("candidate")) for row in rows), None)
    reference = next(
        (_finite(row.get("reference")) for row in rows if row.get("reference") is not None), None
    )
    names, values = [candidate], [value if value is not None else 0.0]
    if reference is not None:
        names.append(champion)
        values.append(reference)
    passed = all(bool(row.get("passed")) for row in rows)
    colours = [PASS_COLOUR if passed else FAIL_COLOUR, "#7f7f7f"][: len(names)]
    axis.bar(names, values, color=colours, width=0.55)
    for name, number in zip(names, values, strict=True):
        axis.annotate(f"{number:.4g}", (name, number), xytext=(0, 3), textcoords="offset points", ha="center")
    if value is None:
        axis.text(0, 0, "missing / NaN", ha="center", va="bottom", color=FAIL_COLOUR)
    styles = ("--", ":")
    for index, row in enumerate(row for row in rows if _finite(row.get("bound")) is not None):
        axis.axhline(
            float(row["bound"]),
            color="black",
            linestyle=styles[index % 2],
            linewidth=1,
            label=f"{row['comparison']}: {float(row['bound']):.4g}",
        )
    bounds = [float(row["bound"]) for row in rows if _finite(row.get("bound")) is not None]
    low, high = min([0.0, *values, *bounds]), max([*values, *bounds, 1e-9])
    axis.set_ylim(low - 0.05 * (high - low), high + 0.18 * (high - low))
    axis.set_title(f"{metric}\n{'pass' if passed else 'FAIL'}", fontsize=9, color=colours[0])
    axis.legend(fontsize=7, loc="lower right")
    axis.grid(axis="y", alpha=0.3)


def tradeoff(frame: pd.DataFrame, path: Path, *, calibration: str, not_exploring: Sequence[str]) -> Path:
    """Plot expected clicks, ILD and new clusters against the exploration rate into `path`."""
    figure = tradeoff_figure(frame, calibration=calibration, not_exploring=not_exploring)
    figure.tight_layout(rect=(0, 0.1, 1, 1))  # room for the shared legend below the panels
    return save_figure(figure, path, tight=False)


def tradeoff_figure(frame: pd.DataFrame, *, calibration: str, not_exploring: Sequence[str]) -> Any:
    """Return expected clicks, ILD and new clusters against the exploration rate, baselines as lines.

    `frame`: one row per policy label (columns policy, exploration_rate and the three outcomes);
    `not_exploring`: the baseline labels (of which greedy_online, static and random are drawn). The rate
    axis is [0, 1] whatever the rates, so one policy at one rate is a point in its place, not a point on
    an axis from 0.96 to 1.04; each baseline is a coloured horizontal line named in the legend.
    """
    plt = pyplot()
    columns = {
        "expected_clicks": "expected clicks per user",
        "ild": "intra-list diversity",
        "new_clusters_clicked": "new clusters clicked",
    }
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    exploring = frame[~frame["policy"].isin(not_exploring)].copy()
    drawn = [name for name in BASELINE_STYLES if name in set(frame["policy"])]
    exploring["name"] = exploring["policy"].str.split("@").str[0]
    for axis, (column, label) in zip(axes, columns.items(), strict=True):
        for name, group in exploring.groupby("name", sort=False):
            group = group.sort_values("exploration_rate")
            axis.plot(group["exploration_rate"], group[column], "o-", markersize=7, label=str(name))
        for baseline in drawn:
            colour, style = BASELINE_STYLES[baseline]
            value = float(frame.loc[frame["policy"] == baseline, column].iloc[0])
            axis.axhline(value, color=colour, linestyle=style, label=baseline)
        values = frame.loc[frame["policy"].isin([*exploring["policy"], *drawn]), column].astype(float)
        low, high = float(values.min()), float(values.max())
        pad = 0.08 * (high - low) if high > low else max(abs(high) * 0.1, 1e-3)
        axis.set_ylim(low - pad, high + pad)
        axis.set_xlim(-0.05, 1.05)
        axis.set(xlabel="exploration rate", title=label)
        axis.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=8)
    figure.suptitle(f"accuracy, diversity and discovery per exploration rate ({calibration})")
    return figure
