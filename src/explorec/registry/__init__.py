"""The model registry: promotion gates (`gates`: a pure `decide` → Decision with a Markdown/JSON table) and
champion/challenger aliases moved under a lock (`promotion`: register_candidate, evaluate_gates, promote).
Their settings live in `explorec.config.registry`."""
