"""Seeded semi-synthetic interactive simulator (docs/design.md §6): judges policies by long-run clicks.

Modules: `config` (SimulateConfig), `ground_truth` (pools, hidden interests, leak-free training set, EASE),
`calibration` (click model a, b; Platt prior), `environment` (SimulationWorld, build_world), `recommender`
(RecommenderOutputs, PureSVD stand-in), `online` (batched residual Bayesian linear model), `runner` (the
serving loop), `metrics`, `statistics` (paired t, Holm), `ope_check`, `report` (plots, Markdown),
`simulate` (run_simulation, SimulationResult).
"""
