"""Prefect flows: thin orchestration over the explorec library (no ML logic here)."""
