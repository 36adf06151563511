"""Simple strong baselines run through the same harness as the two-tower model.

`base.Recommender` is the interface (`fit(train) -> self`, `score(users) -> [n, n_items]`); the models live in
`popularity`, `item_knn`, `ease` and `als`, each with a frozen `*Params` dataclass of defaults, and
`factory.build_baseline(name, **params)` builds any of them by name. `scorer.BaselineScorer` makes a baseline
a `Scorer` (evaluation/scoring.py): fitted once on each history of a data set it is asked to score from.
"""
