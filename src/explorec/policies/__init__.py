"""Exploration policies that serve slates and log their propensities."""
