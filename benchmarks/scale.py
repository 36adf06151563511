"""Scale: every phase of the pipeline on synthetic data from 10k to 1M users, timed, with peak RSS per phase.

Each size is `data=synthetic` with U users, U/10 items and 30·U interactions (1M × 100k × 30M at the top).
Every phase runs in its own child process (this script with `--child`), through the library's own
functions, in a fresh EXPLOREC_HOME per size (so no cache from another size is reused):

    preprocess  explorec.data.preprocess.preprocess (generation of the synthetic set included)
    encode      explorec.encoders.text.item_text_embeddings of every item text (encoder minilm)
    train       explorec.models.train.train_and_evaluate, one epoch (trainer.max_epochs=1); the phase time
                is the fit (the epoch and its validation on the evaluation sample), the run is what
                packaging reads
    evaluate    explorec.evaluation.targets.evaluate_per_user of the trained model on a seeded sample of
                `--eval-users` users (evaluation.max_users)
    package     explorec.pipeline.registration.package_run (bundle, calibration, served-slate metrics on
                the sample, the faiss index and its recall@10, the logged pyfunc model)
    load        mlflow.pyfunc.load_model of the packaged model (bundle read, every known user's vector)
    serve       explorec.serving.latency.in_process_latency: k = 10 requests with exploration, one at a time

Peak RSS is the child's ru_maxrss (os.wait4). Each size's rows are appended to `--results` (JSON), so a
ladder can be run one size per invocation, largest last; every invocation prints the table of all rows so
far, the fitted exponent of each phase (slope of log time against log interactions) and the training
examples/s of the largest size over the smallest, draws the log-log plot and logs it all to an MLflow run in
`--home`'s store.

    nice -n 5 python benchmarks/scale.py --users 10000 30000 --results benchmarks/out/scale.json
    nice -n 5 python benchmarks/scale.py --users 1000000 --results benchmarks/out/scale.json
    nice -n 5 python benchmarks/scale.py --users 1000000 --phases preprocess --results ...  # one phase only
    python benchmarks/scale.py --report-only --results benchmarks/out/scale.json   # table, plot, MLflow
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

PHASES = ("preprocess", "encode", "train", "evaluate", "package", "load", "serve")
TIMED_PHASES = ("preprocess", "encode", "train", "evaluate", "package", "load")
"""Phases whose time is fitted against interactions (serving's per-request latency is reported apart)."""
RSS_CEILING_GIB = 12.0


def size_overrides(
    n_users: int, *, items_per_user: float, interactions_per_user: int, eval_users: int
) -> list[str]:
    """The Hydra overrides of one ladder size: the synthetic shape, one epoch, the evaluation sample."""
    return [
        "data=synthetic",
        f"data.synthetic.n_users={n_users}",
        f"data.synthetic.n_items={max(int(n_users * items_per_user), 1)}",
        f"data.synthetic.n_interactions={n_users * interactions_per_user}",
        "encoder=minilm",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        f"evaluation.max_users={eval_users}",
    ]


# ---------------------------------------------------------------------------------------------- children


def child_preprocess(overrides: list[str], state: dict[str, Any]) -> dict[str, Any]:
    """Generate and preprocess the synthetic set."""
    from explorec.data.preprocess import preprocess
    from explorec.pipeline.config import load_config

    cfg = load_config(overrides)
    started, cpu_started = time.perf_counter(), time.process_time()
    result = preprocess(cfg)
    return {
        "time_s": time.perf_counter() - started,
        "cpu_s": time.process_time() - cpu_started,
        "counts": result.summary().get("counts"),
    }


def child_encode(overrides: list[str], state: dict[str, Any]) -> dict[str, Any]:
    """Encode every item text (an empty cache: a fresh home per size)."""
    from explorec.data.loading import load_dataset
    from explorec.encoders.text import item_text_embeddings
    from explorec.pipeline.config import load_config

    cfg = load_config(overrides)
    dataset = load_dataset(cfg)
    started, cpu_started = time.perf_counter(), time.process_time()
    embeddings = item_text_embeddings(dataset, cfg)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    n_texts = 0 if embeddings is None else len(embeddings)
    return {"time_s": elapsed, "cpu_s": cpu, "texts": n_texts, "texts_per_s": n_texts / elapsed}


def child_train(overrides: list[str], state: dict[str, Any]) -> dict[str, Any]:
    """One epoch through train_and_evaluate (the MLflow run packaging reads)."""
    import mlflow

    from explorec.models.train import train_and_evaluate
    from explorec.pipeline.config import load_config

    cfg = load_config(overrides)
    started, cpu_started = time.perf_counter(), time.process_time()
    trained = train_and_evaluate(cfg)
    total, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    metrics = mlflow.MlflowClient().get_run(trained.run_id).data.metrics
    return {
        "time_s": trained.fit_time_s,
        "run_total_s": total,
        "cpu_s": cpu,  # of the whole run: the epoch, its validation, the run's evaluation and logging
        "run_id": trained.run_id,
        "examples_per_s": metrics.get("train/mean_examples_per_sec", float("nan")),
        "epoch_time_s": metrics.get("train/epoch_time_s", float("nan")),
    }


def child_evaluate(overrides: list[str], state: dict[str, Any]) -> dict[str, Any]:
    """Evaluate the trained checkpoint on the seeded user sample."""
    import torch

    from explorec.config import resolve
    from explorec.data.loading import load_dataset
    from explorec.encoders.text import item_text_embeddings
    from explorec.evaluation.targets import evaluate_per_user, sample_note, user_sample
    from explorec.models.fit import FitResult, build_two_tower, load_weights, resolve_model_config
    from explorec.pipeline.config import load_config

    cfg = load_config(overrides)
    torch.set_num_threads(cfg.trainer.num_threads)
    dataset = load_dataset(cfg)
    embeddings = item_text_embeddings(dataset, cfg)
    model_cfg = resolve_model_config(cfg.model, cfg.split.name)
    checkpoint = resolve(cfg.paths.root) / "checkpoints" / state["train"]["run_id"] / "best.ckpt"
    model = load_weights(build_two_tower(dataset, embeddings, model_cfg), checkpoint).eval()
    fit = FitResult(
        model=model,
        dataset=dataset,
        best_score=math.nan,
        best_metrics={},
        epochs_run=1,
        best_checkpoint=checkpoint,
        fit_time_s=0.0,
        history=[],
    )
    sample = user_sample(cfg.evaluation)
    started, cpu_started = time.perf_counter(), time.process_time()
    results, _ = evaluate_per_user(fit, dataset, batch_size=cfg.trainer.eval_batch_size, sample=sample)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {
        "time_s": elapsed,
        "cpu_s": cpu,
        "sample": sample_note(results, sample) or "every user with a target",
        "test_ndcg@10": results["test"]["ndcg@10"],
    }


def child_package(overrides: list[str], state: dict[str, Any]) -> dict[str, Any]:
    """Package the training run: bundle, faiss index and its recall, the logged pyfunc model."""
    import mlflow

    from explorec.pipeline.config import load_config
    from explorec.pipeline.registration import package_run

    cfg = load_config(overrides)
    run_id = state["train"]["run_id"]
    started, cpu_started = time.perf_counter(), time.process_time()
    package_run(cfg, run_id)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    run = mlflow.MlflowClient().get_run(run_id)
    return {
        "time_s": elapsed,
        "cpu_s": cpu,
        "model_id": run.outputs.model_outputs[-1].model_id,
        "index_kind": run.data.tags.get("index.kind"),
        "index_recall_at_10": run.data.tags.get("index.recall_at_10"),
    }


def child_load(overrides: list[str], state: dict[str, Any]) -> dict[str, Any]:
    """Load the packaged model as a server does (bundle read, known users' vectors precomputed)."""
    model, elapsed, cpu = _load_model(overrides, state)
    return {
        "time_s": elapsed,
        "cpu_s": cpu,
        "users": len(model.unwrap_python_model().recommender.bundle.user_ids),
    }


def child_serve(overrides: list[str], state: dict[str, Any], requests: int = 1000) -> dict[str, Any]:
    """In-process p50/p99 of single k = 10 exploring requests (80% known users, 10% recent items, 10% new)."""
    from explorec.serving.latency import benchmark_requests, in_process_latency

    model, load_s, _ = _load_model(overrides, state)
    bundle = model.unwrap_python_model().recommender.bundle
    started, cpu_started = time.perf_counter(), time.process_time()
    latency = in_process_latency(model, benchmark_requests(bundle, requests, k=10, seed=0))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {"time_s": elapsed, "cpu_s": cpu, "load_s": load_s, **latency}


def _load_model(overrides: list[str], state: dict[str, Any]) -> tuple[Any, float, float]:
    """(the packaged pyfunc model, seconds to load it, CPU seconds to load it)."""
    import mlflow

    from explorec.pipeline.config import load_config
    from explorec.tracking.store import configure_tracking

    configure_tracking(load_config(overrides).tracking)
    started, cpu_started = time.perf_counter(), time.process_time()
    model = mlflow.pyfunc.load_model(f"models:/{state['package']['model_id']}")
    return model, time.perf_counter() - started, time.process_time() - cpu_started


CHILDREN = {
    "preprocess": child_preprocess,
    "encode": child_encode,
    "train": child_train,
    "evaluate": child_evaluate,
    "package": child_package,
    "load": child_load,
    "serve": child_serve,
}


# ------------------------------------------------------------------------------------------------ parent


def run_phase(phase: str, home: Path, overrides: list[str], state: dict[str, Any], log: Path) -> dict:
    """Run one phase in a child process; return its result with wall time and peak RSS (GiB)."""
    state_file, result_file = home / "scale_state.json", home / f"scale_{phase}.json"
    state_file.write_text(json.dumps(state))
    command = [sys.executable, __file__, "--child", phase, "--state", str(state_file)]
    command += ["--result", str(result_file), "--overrides", *overrides]
    started = time.perf_counter()
    with log.open("a") as output:
        output.write(f"\n===== {phase} =====\n")
        output.flush()
        child = subprocess.Popen(
            command, env={**os.environ, "EXPLOREC_HOME": str(home)}, stdout=output, stderr=subprocess.STDOUT
        )
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"phase {phase} failed (exit {code}); see {log}")
    result = json.loads(result_file.read_text())
    cpu = usage.ru_utime + usage.ru_stime
    return {**result, "wall_s": wall, "child_cpu_s": cpu, "peak_rss_gib": usage.ru_maxrss / 2**20}  # KiB


def run_size(n_users: int, args: argparse.Namespace, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every phase of one size, each in a child; the rows with this size's row, saved after each phase.

    A phase that fails ends the size; the phases before it stay in its row (and in `--results`), so a
    later invocation with `--phases` from the failed one on, same `--home` and `--results`, resumes it.
    """
    overrides = size_overrides(
        n_users,
        items_per_user=args.items_per_user,
        interactions_per_user=args.interactions_per_user,
        eval_users=args.eval_users,
    )
    home = Path(args.home) / f"users_{n_users}"
    home.mkdir(parents=True, exist_ok=True)
    log = home / "scale.log"
    earlier = next((old["phases"] for old in rows if old["users"] == n_users), {})
    row: dict[str, Any] = {
        "users": n_users,
        "items": max(int(n_users * args.items_per_user), 1),
        "interactions": n_users * args.interactions_per_user,
        # phases not run now keep their earlier result (a resumed size reads the train run and model from it)
        "phases": {phase: result for phase, result in earlier.items() if phase not in args.phases},
    }
    rows = [old for old in rows if old["users"] != n_users] + [row]
    print(f"\nsize {n_users:,} users: home {home}, log {log}", flush=True)
    for phase in [phase for phase in PHASES if phase in args.phases]:
        try:
            row["phases"][phase] = run_phase(phase, home, overrides, row["phases"], log)
        except RuntimeError as error:
            print(f"  {error}", flush=True)
            break
        shown = {k: v for k, v in row["phases"][phase].items() if k not in ("counts", "run_id", "model_id")}
        print(f"  {phase}: {json.dumps(shown, default=str)}", flush=True)
        Path(args.results).write_text(json.dumps({"rows": rows}, indent=1, default=str))
    return rows


# ------------------------------------------------------------------------------------------------ report


def fitted_exponent(interactions: list[float], times: list[float]) -> float:
    """Slope of log(time) against log(interactions) by least squares (NaN with fewer than two sizes)."""
    points = [(x, y) for x, y in zip(interactions, times, strict=True) if x > 0 and y > 0]
    if len({x for x, _ in points}) < 2:
        return float("nan")
    xs, ys = np.log([x for x, _ in points]), np.log([y for _, y in points])
    return float(np.polyfit(xs, ys, 1)[0])


def exponents(rows: list[dict[str, Any]], key: str = "time_s") -> dict[str, float]:
    """Each timed phase's fitted exponent of `key` (time_s: wall, cpu_s: CPU) over the sizes that have it."""
    fitted = {}
    for phase in TIMED_PHASES:
        measured = [row for row in rows if key in row["phases"].get(phase, {})]
        fitted[phase] = fitted_exponent(
            [row["interactions"] for row in measured], [row["phases"][phase][key] for row in measured]
        )
    return fitted


def throughput_ratio(rows: list[dict[str, Any]]) -> float:
    """Training examples/s of the largest size over that of the smallest (NaN with one size)."""
    trained = sorted((row for row in rows if "train" in row["phases"]), key=lambda row: row["interactions"])
    if len(trained) < 2:
        return float("nan")
    return trained[-1]["phases"]["train"]["examples_per_s"] / trained[0]["phases"]["train"]["examples_per_s"]


def table_markdown(rows: list[dict[str, Any]]) -> str:
    """A Markdown table, a row per size and phase: time, child wall time, peak RSS, the phase's figures."""
    lines = [
        "| users | items | interactions | phase | time (s) | CPU (s) | wall (s) | peak RSS (GiB) | notes |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for row in sorted(rows, key=lambda row: row["interactions"]):
        for phase in PHASES:
            if phase not in row["phases"]:
                continue
            result = row["phases"][phase]
            lines.append(
                f"| {row['users']:,} | {row['items']:,} | {row['interactions']:,} | {phase} | "
                f"{result['time_s']:.1f} | {_seconds(result.get('cpu_s'))} | {result['wall_s']:.1f} | "
                f"{result['peak_rss_gib']:.2f} | "
                f"{phase_note(phase, result)} |"
            )
    return "\n".join(lines)


def _seconds(value: float | None) -> str:
    """Seconds with one decimal, or a dash when not measured."""
    return "–" if value is None else f"{value:.1f}"


def phase_note(phase: str, result: dict[str, Any]) -> str:
    """The phase's own figures in a few words."""
    if phase == "encode":
        return f"{result['texts']:,} texts, {result['texts_per_s']:.0f} texts/s"
    if phase == "train":
        return f"one epoch {result['epoch_time_s']:.1f} s, {result['examples_per_s']:,.0f} examples/s"
    if phase == "evaluate":
        sample = result["sample"].partition(": ")[2].partition(" (")[0] or result["sample"]
        return f"{sample}; test ndcg@10 {result['test_ndcg@10']:.4f}"
    if phase == "package":
        return f"index {result['index_kind']}, recall@10 {result['index_recall_at_10']}"
    if phase == "load":
        return f"{result['users']:,} users' vectors precomputed"
    if phase == "serve":
        return (
            f"k=10 exploring, {result['requests']} requests: p50 {result['p50_ms']:.2f} ms, "
            f"p99 {result['p99_ms']:.2f} ms"
        )
    return ""


def summary_markdown(rows: list[dict[str, Any]]) -> str:
    """The fitted exponents, the throughput ratio and the peak RSS against their targets."""
    fitted, fitted_cpu = exponents(rows), exponents(rows, "cpu_s")
    peak = max(result["peak_rss_gib"] for row in rows for result in row["phases"].values())
    sizes = sorted(row["users"] for row in rows)
    trained = sorted(row["users"] for row in rows if "train" in row["phases"]) or [0]
    lines = [
        f"Sizes measured: {', '.join(f'{size:,}' for size in sizes)} users.",
        "",
        "| phase | fitted exponent of time (log time vs log interactions; target ≤ 1.1) | of CPU time |",
        "|---|---:|---:|",
        *(f"| {phase} | {value:.2f} | {fitted_cpu[phase]:.2f} |" for phase, value in fitted.items()),
        "",
        f"Training examples/s, {trained[-1]:,} users over {trained[0]:,} users: {throughput_ratio(rows):.2f} "
        "(target ≥ 0.8).",
        f"Peak RSS of any phase: {peak:.2f} GiB (ceiling {RSS_CEILING_GIB:.0f} GiB).",
    ]
    return "\n".join(lines)


def scale_plot(rows: list[dict[str, Any]], path: Path) -> Path:
    """Log-log plots of each timed phase's wall and CPU seconds against interactions, a line per phase."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(12.0, 4.8))
    for axis, key, title in ((axes[0], "time_s", "wall seconds"), (axes[1], "cpu_s", "CPU seconds")):
        fitted = exponents(rows, key)
        for phase in TIMED_PHASES:
            measured = [row for row in rows if key in row["phases"].get(phase, {})]
            measured.sort(key=lambda row: row["interactions"])
            if measured:
                axis.plot(
                    [row["interactions"] for row in measured],
                    [row["phases"][phase][key] for row in measured],
                    marker="o",
                    label=f"{phase} (slope {fitted[phase]:.2f})",
                )
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("interactions (synthetic: users × 30, items = users / 10)")
        axis.set_ylabel(title)
        axis.set_title(f"explorec phases against data size: {title}")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def log_to_mlflow(rows: list[dict[str, Any]], home: Path, plot: Path, markdown: str) -> str:
    """Log the table, exponents and plot as one MLflow run in `home`'s store; return its id."""
    os.environ["EXPLOREC_HOME"] = str(home)
    import mlflow

    from explorec.pipeline.config import load_config
    from explorec.tracking.store import configure_tracking

    target = configure_tracking(load_config([]).tracking)
    client = mlflow.MlflowClient(target.tracking_uri)
    run = client.create_run(target.experiment_id, run_name="scale-benchmark", tags={"benchmark": "scale"})
    run_id = run.info.run_id
    for phase, value in exponents(rows).items():
        if math.isfinite(value):
            client.log_metric(run_id, f"exponent/{phase}", value)
    for phase, value in exponents(rows, "cpu_s").items():
        if math.isfinite(value):
            client.log_metric(run_id, f"exponent_cpu/{phase}", value)
    ratio = throughput_ratio(rows)
    if math.isfinite(ratio):
        client.log_metric(run_id, "train/examples_per_s_ratio", ratio)
    for row in rows:
        for phase, result in row["phases"].items():
            step = row["users"]
            client.log_metric(run_id, f"time_s/{phase}", result["time_s"], step=step)
            client.log_metric(run_id, f"peak_rss_gib/{phase}", result["peak_rss_gib"], step=step)
    client.log_text(run_id, markdown, "scale.md")
    client.log_dict(run_id, {"rows": rows}, "scale.json")
    client.log_artifact(run_id, str(plot))
    client.set_terminated(run_id)
    return run_id


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """Print the table and summary, draw the plot, log both to MLflow."""
    markdown = table_markdown(rows) + "\n\n" + summary_markdown(rows)
    print("\n" + markdown, flush=True)
    results = Path(args.results)
    plot = scale_plot(rows, results.with_suffix(".png"))
    results.with_suffix(".md").write_text(markdown + "\n")
    run_id = log_to_mlflow(rows, Path(args.home), plot, markdown)
    print(f"\nplot {plot}; table {results.with_suffix('.md')}; MLflow run {run_id} in {args.home}/mlruns")


def main() -> None:
    """Run the ladder (or one child phase) and report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="*", default=[10_000, 30_000, 100_000, 300_000, 1_000_000])
    parser.add_argument("--items-per-user", type=float, default=0.1)
    parser.add_argument("--interactions-per-user", type=int, default=30)
    parser.add_argument("--eval-users", type=int, default=10_000)
    parser.add_argument("--results", default="benchmarks/out/scale.json", help="rows so far (appended to)")
    parser.add_argument("--home", default=None, help="EXPLOREC_HOME of the runs (default: a new temp dir)")
    parser.add_argument("--report-only", action="store_true", help="only report the rows in --results")
    parser.add_argument(
        "--phases",
        nargs="*",
        choices=PHASES,
        default=list(PHASES),
        help="run only these phases (each needs the ones before it, except preprocess alone)",
    )
    parser.add_argument("--child", choices=PHASES, help=argparse.SUPPRESS)
    parser.add_argument("--state", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--overrides", nargs="*", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        state = json.loads(Path(args.state).read_text())
        Path(args.result).write_text(json.dumps(CHILDREN[args.child](args.overrides, state), default=str))
        return
    args.home = args.home or tempfile.mkdtemp(prefix="explorec-scale-")
    results = Path(args.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    rows = json.loads(results.read_text())["rows"] if results.is_file() else []
    if not args.report_only:
        for n_users in sorted(args.users):
            rows = run_size(n_users, args, rows)
    report(rows, args)


if __name__ == "__main__":
    main()
