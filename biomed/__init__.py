"""Biomedical tasks, tokenizers, models, data and metrics. Nothing here knows about Ray."""
