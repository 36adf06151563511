"""Serving a trained model: the bundle of files, the recommender that answers requests, the MLflow pyfunc
wrapper, served-slate metrics, the latency benchmark and the session replay."""
