"""Off-policy cross-check on simulator logs: policy B's value estimated from policy A's logged slates.

Only first-visit decisions are used: at visit 1 every policy faces the same context (prior scores, visible
history excluded, no updates yet), so B's value estimated from A's logs is B's own simulated value there.
Slate propensities are turned into prefix probabilities (`explorec.evaluation.ope.prefix_propensities`), which
makes the per-slot estimand B's on-policy reward per slot under the position-based click model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from explorec.evaluation.ope import ESTIMATORS, estimate_policy_value, prefix_propensities

TARGET_PREFIX = "target_propensity__"


def logs_frame(
    *,
    users: np.ndarray,
    items: np.ndarray,
    propensities: np.ndarray,
    clicks: np.ndarray,
    expected_rewards: np.ndarray,
    target_propensities: dict[str, np.ndarray],
) -> pd.DataFrame:
    """One row per served slot (user, visit, slot, item, propensity, click, expected_reward, target_…)."""
    _, n_visits, k = items.shape
    user, visit, slot = np.meshgrid(users, np.arange(n_visits), np.arange(k), indexing="ij")
    columns = {
        "user": user.ravel(),
        "visit": visit.ravel(),
        "slot": slot.ravel(),
        "item": items.ravel(),
        "propensity": propensities.ravel(),
        "click": clicks.ravel().astype(np.int8),
        "expected_reward": expected_rewards.ravel(),
    }
    columns.update({TARGET_PREFIX + label: values.ravel() for label, values in target_propensities.items()})
    return pd.DataFrame(columns)


def ope_cross_check(
    *, logs: pd.DataFrame, target_values: dict[str, float], visit: int = 0, reward: str = "click"
) -> pd.DataFrame:
    """IPS and SNIPS estimates (95% normal CI) of each target's per-slot value from the logs at `visit`.

    `logs` holds one logging policy's slates (any number of replications; column `replication` optional),
    `target_values[label]` the target's simulated mean expected reward per slot at that visit. Returns one
    row per (target, estimator) with the estimate, interval, simulated value and whether it is covered.
    """
    first = logs[logs["visit"] == visit].sort_values(
        [c for c in ("replication", "user", "slot") if c in logs]
    )
    k = int(first["slot"].max()) + 1
    logging = prefix_propensities(slot_propensities=first["propensity"].to_numpy().reshape(-1, k)).ravel()
    rows = []
    for label, value in target_values.items():
        target = prefix_propensities(
            slot_propensities=first[TARGET_PREFIX + label].to_numpy().reshape(-1, k)
        ).ravel()
        for estimator in ESTIMATORS:
            estimate = estimate_policy_value(
                estimator,
                rewards=first[reward].to_numpy(np.float64),
                logging_propensities=logging,
                target_propensities=target,
            )
            rows.append(
                {
                    "target": label,
                    "estimator": estimate.estimator,
                    "estimate": estimate.estimate,
                    "ci_low": estimate.ci_low,
                    "ci_high": estimate.ci_high,
                    "simulated_value": value,
                    "covered": estimate.contains(value),
                    "n_decisions": estimate.n_decisions,
                }
            )
    return pd.DataFrame(rows)
