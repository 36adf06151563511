"""Off-policy coverage of an `explorec loop` run, re-estimated from what the loop stored.

For every round of the loop that judged a candidate, the candidate version (from the loop's registry
entry) is evaluated again on that round's impression log with the current estimators, and each 95%
interval is compared with the candidate's simulated on-policy value the loop recorded for that round. The
logs, the candidates and the truths are the loop's own, so estimators can be compared on the same traffic.

    EXPLOREC_HOME=<home> python benchmarks/loop_ope.py [--run-id <loop run>] [--overlap]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from typing import Any

import numpy as np


def overlap_line(candidate: Any, champion: Any, log: Any) -> str:
    """How the candidate's top 10 meets the champion's on the round's logged requests (means per request)."""
    from explorec.serving.log_evaluation import logged_batches

    shared, within_30, same_first = [], [], []
    for batch in logged_batches(log):
        mine = candidate.ranked_items(batch.requests, 10)
        theirs = champion.ranked_items(batch.requests, 30)
        for own, served in zip(mine, theirs, strict=True):
            shared.append(len(set(own) & set(served[:10])))
            within_30.append(len(set(own) & set(served)))
            same_first.append(own[0] == served[0])
    return (
        f"candidate's top 10: {np.mean(shared):.2f} in the champion's top 10, {np.mean(within_30):.2f} "
        f"in its top 30; same first item in {np.mean(same_first):.0%} of {len(shared)} requests"
    )


def main() -> None:
    """Print one line per judged round and the coverage of every estimator."""
    from mlflow import MlflowClient

    from explorec.pipeline.config import load_config
    from explorec.pipeline.service import load_recommender, logging_recommenders
    from explorec.serving.impressions import ImpressionLog
    from explorec.serving.log_evaluation import evaluate_on_logs
    from explorec.tracking.store import configure_tracking

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-id", help="the loop's MLflow run (default: the newest loop run)")
    parser.add_argument(
        "--overlap",
        action="store_true",
        help="also compare each candidate's top 10 with the serving champion's top 10 and 30 per request",
    )
    args = parser.parse_args()
    cfg = load_config([])
    target = configure_tracking(cfg.tracking)
    client = MlflowClient(target.tracking_uri)
    run_id = args.run_id
    if run_id is None:
        (run,) = client.search_runs(
            [target.experiment_id],
            "attributes.run_name = 'loop'",
            order_by=["start_time DESC"],
            max_results=1,
        )
        run_id = run.info.run_id
    run = client.get_run(run_id)
    folder, model = run.data.tags["loop.folder"], run.data.params["loop.registered_model"]
    truths = {m.step: m.value for m in client.get_metric_history(run_id, "candidate/simulated_value")}
    versions = {m.step: int(m.value) for m in client.get_metric_history(run_id, "candidate/version")}
    champions = {m.step: int(m.value) for m in client.get_metric_history(run_id, "champion/version")}
    covered: dict[str, list[bool]] = defaultdict(list)
    logging = logging_recommenders(1)
    print(f"loop run {run_id}: {len(truths)} judged rounds; estimate [95%] vs simulated value")
    for step in sorted(truths):
        candidate = load_recommender(model, str(versions[step]), 1)
        log = ImpressionLog(f"sqlite:///{folder}/round-{step:03d}/impressions.db")
        try:
            evaluation = evaluate_on_logs(candidate, log, seed=cfg.seed, logging_recommender=logging)
            overlap = (
                overlap_line(candidate, logging(model, str(champions[step])), log) if args.overlap else ""
            )
        finally:
            log.close()
        truth = truths[step]
        cells = []
        for name, estimate in evaluation.estimates.items():
            hit = estimate.ci_low <= truth <= estimate.ci_high
            covered[name].append(hit)
            interval = f"[{estimate.ci_low:.4f}, {estimate.ci_high:.4f}]"
            cells.append(f"{name} {estimate.estimate:.4f} {interval}{'' if hit else ' ✗'}")
        print(
            f"round {step:2d} v{versions[step]:<3d} truth {truth:.4f} "
            f"ESS {evaluation.effective_sample_size:7.0f} | " + " | ".join(cells)
        )
        if overlap:
            print(f"         {overlap}")
    for name, hits in covered.items():
        print(f"{name:13s} covers {int(np.sum(hits))} of {len(hits)}")


if __name__ == "__main__":
    main()
