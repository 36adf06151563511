"""The pipeline's steps and what surrounds them: train → package → simulate → register → gate → promote
(`registration`), reuse of finished steps (`cache`), the accuracy benchmark, report text and local servers."""
