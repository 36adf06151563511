"""Settings of `explorec loop`: the production loop played against the simulator's users."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LoopConfig:
    """K rounds of serve → simulated clicks → log → judge the next candidate on the log → promote → retrain.

    The simulated world (users, ground truth, click models, pools) is `simulate`'s; the served model and its
    policy are the registry's champion trained with the rest of the config.
    """

    rounds: int = 3
    """Rounds of traffic after the first champion; each after the first judges one candidate."""
    pool: str = "tune"
    """Simulator pool whose users send the traffic (the test pool is kept for reported simulator figures)."""
    users: int | None = None
    """Traffic users per round, a seeded sample of the pool (None: every user of the pool)."""
    visits: int = 3
    """Visits per user and round; a visit's earlier slates and clicks travel in its next request."""
    slate_size: int = 10
    calibration: str = "main"
    """Which of `simulate.calibrations` draws the clicks."""
    exploration_floor: float = 0.2
    """Share of random slates mixed into what the champion serves, so that its logs support the off-policy
    evaluation of the next candidate (the service's `exploration_floor`)."""
    floor_pool: int | None = 30
    """A floor slate's items: the champion's best this many for the request (None: any item; the service's
    `exploration_floor_pool`). Retrained candidates put most of their top 10 among the champion's top 30
    (docs/results.md, "The loop"), so these slates give the off-policy estimate its overlap."""
    truth_draws: int = 10
    """Slates of the candidate sampled per logged request to compute its simulated on-policy value."""
    registered_model: str = "explorec-loop"
    """Registry entry of the loop's versions: its promotions never move the production champion."""
    out: str = "mlruns/loop"
    """Folder of each loop's round logs and training files (one sub-folder per loop run)."""
