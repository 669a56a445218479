"""Evaluation: the evaluate step (step) scores the test split and draws plots, choosing what to do by the
task's kind (SCORERS): tables and images (metrics, image), series (series), texts (text), token sequences (tokens),
with shared plots (plots) and attention maps (attention).

Imports: components.core, components.config, components.data, components.train.
"""
