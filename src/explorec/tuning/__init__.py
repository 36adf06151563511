"""Optuna search over the two-tower's settings and the exploration rate (docs/design.md §7).

Modules: `config` (TuneConfig: search space as data, objectives, sampler, pruner, storage, workers, the
selection floor), `space` (map suggestions onto config dataclasses), `served` (accuracy and diversity of the
slates a policy serves on validation users), `trial_run` (train and evaluate one trial as a nested MLflow
run), `objective` (the only Optuna-aware function besides study setup), `study` (storage, sampler, pruner,
stale-trial recovery, the resumable budget), `workers` (N local worker processes on shared storage),
`report` (Pareto front, selection rule, trials table, importances, plot, parent-run logging).
"""
