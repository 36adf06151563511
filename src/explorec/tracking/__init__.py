"""MLflow tracking: the store and run tags (`store`), the run lifecycle, Lightning's logger (`lightning`)."""
