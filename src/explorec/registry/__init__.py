"""The registry: the recommender as an MLflow pyfunc, promotion gates, champion/challenger aliases.

Modules: `config` (GatesConfig, MetricGate, RegistryConfig), `gates` (pure `decide` → Decision with a
Markdown/JSON table), `bundle` (the files a served model needs, built from a FitResult or a run),
`serving` (request validation, history, cold start, policy slates), `pyfunc` (ExplorecRecommender,
signature, `log_recommender`), `served` (beyond-accuracy metrics of served slates for the gates),
`promotion` (ModelRegistry: register_candidate, evaluate_gates, promote).
"""
